"""BPR-MF (Rendle et al., 2009): matrix factorisation trained on (user, positive, sampled negative) triples.

Negatives are drawn uniformly from the catalogue with the explicit generator (a drawn negative that is in fact
a positive is kept: rare, and the standard simplification). Training stops early when a sampled hit rate on
held-out pairs has not improved for `patience` epochs, keeping the best epoch's weights. Everything random
goes through that generator, so the same seed gives the same weights on CPU.
"""

from __future__ import annotations

import logging

import torch
from torch.nn import functional

from ..settings import BPRConfig
from .base import Recommender

log = logging.getLogger(__name__)
_CHECK_NEGATIVES = 100  # random items each held-out positive is ranked against


class BPR(Recommender):
    name = "bpr"
    config_class = BPRConfig
    config: BPRConfig

    def _fit(self, generator: torch.Generator) -> None:
        cfg = self.config
        users, items = self.user_pairs()
        self.user_factors = torch.nn.Parameter(
            torch.randn(self.n_users, cfg.factors, generator=generator) * 0.1
        )
        self.item_factors = torch.nn.Parameter(
            torch.randn(self.n_items, cfg.factors, generator=generator) * 0.1
        )
        self.item_bias = torch.nn.Parameter(torch.zeros(self.n_items))
        parameters = [self.user_factors, self.item_factors, self.item_bias]
        optimizer = torch.optim.Adam(parameters, lr=cfg.learning_rate, fused=True)  # one kernel per step
        # Early stopping: a seeded share of the pairs (with fixed negatives) is held out to score each epoch.
        held_out = int(users.numel() * cfg.validation_fraction) if cfg.patience else 0
        shuffled = torch.randperm(users.numel(), generator=generator)
        fit_pairs, check_pairs = shuffled[held_out:], shuffled[:held_out]
        check_negatives = torch.randint(0, self.n_items, (held_out, _CHECK_NEGATIVES), generator=generator)
        best, best_state, stale = -1.0, None, 0
        for _ in range(cfg.epochs):
            order = fit_pairs[torch.randperm(fit_pairs.numel(), generator=generator)]
            negatives = torch.randint(0, self.n_items, (order.numel(),), generator=generator)
            total = torch.zeros((), dtype=torch.float64)
            for start in range(0, order.numel(), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                loss = self._loss(users[batch], items[batch], negatives[start : start + cfg.batch_size])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * batch.numel()
            if not held_out:
                self._end_epoch(cfg.epochs, loss=float(total) / order.numel())
                continue
            checked = self._sampled_hit_rate(users[check_pairs], items[check_pairs], check_negatives)
            self._end_epoch(cfg.epochs, loss=float(total) / order.numel(), validation_hr10=checked)
            if checked > best:
                best, stale = checked, 0
                best_state = [p.detach().clone() for p in parameters]
            else:
                stale += 1
                if stale >= cfg.patience:
                    epoch = len(self.epochs)
                    log.info("bpr stops early after epoch %d (best validation HR@10 %.4f)", epoch, best)
                    break
        if best_state is not None:
            for parameter, value in zip(parameters, best_state, strict=True):
                parameter.data.copy_(value)
        for parameter in parameters:
            parameter.requires_grad_(False)

    def _sampled_hit_rate(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> float:
        """Share of held-out positives ranked in the top 10 among themselves and 100 random items.

        A top-of-the-list criterion: an AUC keeps the whole order in view and peaks epochs before top-10 does.
        """
        with torch.no_grad():
            u = self.user_factors[users]
            positive = (u * self.item_factors[positives]).sum(1) + self.item_bias[positives]
            negative = torch.einsum("bf,bnf->bn", u, self.item_factors[negatives]) + self.item_bias[negatives]
            return float(((negative > positive[:, None]).sum(1) < 10).to(torch.float64).mean())

    def _loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        u, p, n = self.user_factors[users], self.item_factors[positives], self.item_factors[negatives]
        margin = (u * (p - n)).sum(1) + self.item_bias[positives] - self.item_bias[negatives]
        l2 = (u.square().sum() + p.square().sum() + n.square().sum()) / users.numel()
        return -functional.logsigmoid(margin).mean() + self.config.weight_decay * l2

    def _score(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.user_factors[user_index] @ self.item_factors.T + self.item_bias

    def _state(self) -> dict[str, torch.Tensor]:
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "item_bias": self.item_bias,
        }

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.user_factors, self.item_factors = state["user_factors"], state["item_factors"]
        self.item_bias = state["item_bias"]
