"""BPR-MF (Rendle et al., 2009): matrix factorisation trained on (user, positive, sampled negative) triples.

Negatives are drawn uniformly from the catalogue with the explicit generator (a drawn negative that is in fact
a positive is kept: rare, and the standard simplification). Everything random goes through that generator,
so the same seed gives the same weights on CPU.
"""

from __future__ import annotations

import logging

import torch
from torch.nn import functional

from ..settings import BPRConfig
from .base import Recommender

log = logging.getLogger(__name__)


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
        optimizer = torch.optim.Adam(
            [self.user_factors, self.item_factors, self.item_bias], lr=cfg.learning_rate
        )
        self.history: list[float] = []
        for epoch in range(cfg.epochs):
            order = torch.randperm(users.numel(), generator=generator)
            negatives = torch.randint(0, self.n_items, (users.numel(),), generator=generator)
            total = 0.0
            for start in range(0, users.numel(), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                loss = self._loss(users[batch], items[batch], negatives[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.numel()
            self.history.append(total / users.numel())
            log.info("bpr epoch %d/%d loss %.4f", epoch + 1, cfg.epochs, self.history[-1])
        for parameter in (self.user_factors, self.item_factors, self.item_bias):
            parameter.requires_grad_(False)

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

    def _metadata(self) -> dict[str, list[float]]:
        return {"loss_history": self.history}

    def _load_metadata(self, extra: dict[str, list[float]]) -> None:
        self.history = list(extra.get("loss_history", []))
