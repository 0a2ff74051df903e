"""BPR-MF (Rendle et al., 2009): matrix factorisation trained on (user, positive, sampled negative) triples.

Negatives are drawn uniformly from the catalogue with the explicit generator (a drawn negative that is in fact
a positive is kept: rare, and the standard simplification). Training stops early when a sampled hit rate on
held-out pairs has not improved for `patience` epochs, keeping the best epoch's weights. Everything random
goes through that generator, so the same seed gives the same weights on CPU.

Training is Adam on the mean loss of each batch, with the gradient written out by hand: user and item factors
live in one table, so a batch is one gather of its 3 x batch rows, a few passes over them, and one
`index_add_` of their gradients (deterministic on CPU) before the fused Adam step. Autograd's indexing
backward and a fresh tensor per operation cost several times that step.
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
    """BPR-MF: user and item factors and an item bias, trained with Adam on sampled triples (`model.bpr`)."""

    name = "bpr"
    config_class = BPRConfig
    config: BPRConfig

    def _fit(self, generator: torch.Generator) -> None:
        cfg = self.config
        users, items = self.user_pairs()
        # Rows 0..n_users-1 are the users, the items follow; the users' bias stays 0 (its gradient is 0).
        factors = torch.cat(
            [
                torch.randn(self.n_users, cfg.factors, generator=generator) * 0.1,
                torch.randn(self.n_items, cfg.factors, generator=generator) * 0.1,
            ]
        )
        bias = torch.zeros(self.n_users + self.n_items)
        parameters = [factors, bias]
        optimizer = _Adam(parameters, cfg.learning_rate)
        self._use(factors, bias)
        # Early stopping: a seeded share of the pairs (with fixed negatives) is held out to score each epoch.
        held_out = int(users.numel() * cfg.validation_fraction) if cfg.patience else 0
        shuffled = torch.randperm(users.numel(), generator=generator)
        fit_pairs, check_pairs = shuffled[held_out:], shuffled[:held_out]
        check_negatives = torch.randint(0, self.n_items, (held_out, _CHECK_NEGATIVES), generator=generator)
        best, best_state, stale = -1.0, None, 0
        for _ in range(cfg.epochs):
            # index_select, not x[order]: the indexing kernel takes ten times longer on a million indices.
            order = fit_pairs.index_select(0, torch.randperm(fit_pairs.numel(), generator=generator))
            negatives = torch.randint(0, self.n_items, (order.numel(),), generator=generator)
            triples = torch.stack(
                [
                    users.index_select(0, order),
                    items.index_select(0, order) + self.n_users,
                    negatives + self.n_users,
                ]
            )
            loss = self._epoch(optimizer, triples)
            if not held_out:
                self._end_epoch(cfg.epochs, loss=loss)
                continue
            checked = self._sampled_hit_rate(users[check_pairs], items[check_pairs], check_negatives)
            self._end_epoch(cfg.epochs, loss=loss, validation_hr10=checked)
            if checked > best:
                best, stale = checked, 0
                best_state = [p.clone() for p in parameters]
            else:
                stale += 1
                if stale >= cfg.patience:
                    epoch = len(self.epochs)
                    log.info("bpr stops early after epoch %d (best validation HR@10 %.4f)", epoch, best)
                    break
        if best_state is not None:
            for parameter, value in zip(parameters, best_state, strict=True):
                parameter.copy_(value)
        self._use(factors.clone(), bias.clone())  # own storage each: a saved model holds no shared tensors

    def _use(self, factors: torch.Tensor, bias: torch.Tensor) -> None:
        """Point the model's tensors at the training table (views), so checkpoints see the current weights."""
        self.user_factors, self.item_factors = factors[: self.n_users], factors[self.n_users :]
        self.item_bias = bias[self.n_users :]

    def _epoch(self, optimizer: _Adam, triples: torch.Tensor) -> float:
        """Adam steps over `triples` (3 x n rows of the table: user, positive, negative) in batches.

        Returns the mean loss per triple, the batch losses weighted by batch size. Every buffer is allocated
        once: fresh tensors of a few MB per operation cost page faults on every step.
        """
        cfg = self.config
        (factors, bias), (factor_grad, bias_grad) = optimizer.parameters, optimizer.grads
        n = triples.shape[1]
        width = min(cfg.batch_size, n)
        gathered, grad = torch.empty(3 * width, cfg.factors), torch.empty(3 * width, cfg.factors)
        difference, product = torch.empty(width, cfg.factors), torch.empty(width, cfg.factors)
        biases, margins, squares = torch.empty(2 * width), torch.empty(n), 0.0
        for start in range(0, n, cfg.batch_size):
            index = triples[:, start : start + cfg.batch_size].reshape(-1)  # users, positives, negatives
            size = index.numel() // 3
            rows = torch.index_select(factors, 0, index, out=gathered[: 3 * size])
            u, p, q = rows[:size], rows[size : 2 * size], rows[2 * size :]
            b = torch.index_select(bias, 0, index[size:], out=biases[: 2 * size])
            diff = torch.sub(p, q, out=difference[:size])
            margin = torch.mul(u, diff, out=product[:size]).sum(1).add_(b[:size]).sub_(b[size:])
            margins[start : start + size] = margin
            # loss = mean(-log sigmoid(margin)) + weight_decay * sum of the batch's squared rows / size, so
            # d loss / d margin = -sigmoid(-margin) / size and each row adds 2 * weight_decay / size * row.
            pull = torch.sigmoid(margin.neg_()).div_(size)
            step = torch.mul(rows, 2.0 * cfg.weight_decay / size, out=grad[: 3 * size])
            step[:size].addcmul_(pull[:, None], diff, value=-1.0)
            step[size : 2 * size].addcmul_(pull[:, None], u, value=-1.0)
            step[2 * size :].addcmul_(pull[:, None], u)
            factor_grad.zero_().index_add_(0, index, step)
            bias_grad.zero_().index_add_(0, index[size:], torch.cat([pull.neg(), pull]))
            optimizer.step()
            squares += float(torch.dot(rows.view(-1), rows.view(-1)))
        data_loss = functional.softplus(margins.neg_()).sum(dtype=torch.float64)
        return float(data_loss + cfg.weight_decay * squares) / n

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


class _Adam:
    """Adam (the defaults: betas 0.9 / 0.999, eps 1e-8) with one fused kernel per step.

    The kernel is the one `torch.optim.Adam(fused=True)` runs, with the same arguments, so the weights are
    the same bit for bit; the optimizer's per-step Python bookkeeping cost about as much as the kernel itself
    at 4,096-triple batches. The caller writes the gradients into `grads` before each step.
    """

    def __init__(self, parameters: list[torch.Tensor], learning_rate: float) -> None:
        self.parameters = parameters
        self.learning_rate = learning_rate
        self.grads = [torch.zeros_like(p) for p in parameters]
        self._exp_avg = [torch.zeros_like(p) for p in parameters]
        self._exp_avg_sq = [torch.zeros_like(p) for p in parameters]
        self._steps = [torch.zeros(()) for _ in parameters]

    def step(self) -> None:
        for step in self._steps:  # the step count, advanced before the update as torch.optim.Adam does
            step.add_(1)
        torch._fused_adam_(
            self.parameters,
            self.grads,
            self._exp_avg,
            self._exp_avg_sq,
            [],
            self._steps,
            lr=self.learning_rate,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=1e-8,
            amsgrad=False,
            maximize=False,
        )
