"""iALS (Hu, Koren & Volinsky, 2008): weighted matrix factorisation of implicit feedback, by alternating
least squares with a few conjugate-gradient steps per solve (Takács, Pilászy & Tikk, 2011).

Every observed (user, item) pair has confidence 1 + alpha, every other pair confidence 1 and target 0. The
per-user system (Y'Y + lambda I + alpha sum_{i in I_u} y_i y_i') x_u = (1 + alpha) sum_{i in I_u} y_i is
solved for all users at once without forming it, as implicit's conjugate gradient does: a product with it is
Y'Y v plus one pass over the observed pairs, in two sparse kernels that read the fixed side's rows from cache
(a sampled dot product per pair, then a weighted sum of rows per user). Nothing per pair is materialised
beyond one float, and both kernels give each row to one thread, so a fixed thread count repeats bit for bit.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch.nn import functional

from ..settings import IALSConfig
from .base import Recommender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pairs:
    """The observed pairs grouped by one side as CSR: a row per user (or per item), its partners in order."""

    pattern: torch.Tensor  # sparse CSR rows x partners with zero values: the pattern the dot products fill
    partners: torch.Tensor
    offsets: torch.Tensor  # start of each row's slice (embedding_bag's offsets)

    @classmethod
    def from_csr(cls, indptr: torch.Tensor, partners: torch.Tensor, n_partners: int) -> _Pairs:
        shape = (indptr.numel() - 1, n_partners)
        with warnings.catch_warnings():  # torch flags its CSR layout as beta on first use; we rely on 2.13's
            warnings.simplefilter("ignore", UserWarning)
            zeros = torch.zeros(partners.numel())
            pattern = torch.sparse_csr_tensor(indptr, partners, zeros, shape, check_invariants=False)
        return cls(pattern=pattern, partners=partners, offsets=indptr[:-1])

    def dots(self, rows: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
        """rows[r] . partners[p] for every observed pair (r, p), in CSR order."""
        return torch.sparse.sampled_addmm(self.pattern, rows, partners.T, beta=0.0).values()

    def sums(self, partners: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Per row, the (weighted) sum of its partners' rows."""
        return functional.embedding_bag(
            self.partners, partners, self.offsets, mode="sum", per_sample_weights=weights
        )


class IALS(Recommender):
    """iALS: user and item factors by alternating least squares, observed pairs weighted (`model.ials`)."""

    name = "ials"
    config_class = IALSConfig
    config: IALSConfig

    def _fit(self, generator: torch.Generator) -> None:
        cfg = self.config
        by_user = _Pairs.from_csr(self._indptr, self._indices, self.n_items)
        by_item = _Pairs.from_csr(*self._item_csr(), self.n_users)
        scale = 1.0 / cfg.factors**0.5
        self.user_factors = torch.randn(self.n_users, cfg.factors, generator=generator) * scale * 0.1
        self.item_factors = torch.randn(self.n_items, cfg.factors, generator=generator) * scale * 0.1
        for _ in range(cfg.iterations):
            self.user_factors = self._solve(self.user_factors, self.item_factors, by_user)
            self.item_factors = self._solve(self.item_factors, self.user_factors, by_item)
            self._end_epoch(cfg.iterations, loss=self._loss(by_user))

    def _item_csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training pairs grouped by item (indptr, user indices), users ascending within an item."""
        users, items = self.user_pairs()
        order = torch.sort(items, stable=True).indices
        counts = torch.bincount(items, minlength=self.n_items)
        indptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
        return indptr, users.index_select(0, order)

    def _solve(self, rows: torch.Tensor, fixed: torch.Tensor, pairs: _Pairs) -> torch.Tensor:
        """A few CG steps on every row's normal equations, warm-started from the current factors."""
        cfg = self.config
        gram = fixed.T @ fixed + cfg.regularization * torch.eye(cfg.factors)

        def product(v: torch.Tensor) -> torch.Tensor:
            return v @ gram + pairs.sums(fixed, pairs.dots(v, fixed) * cfg.alpha)

        target = pairs.sums(fixed) * (1.0 + cfg.alpha)
        x = rows.clone()
        residual = target - product(x)
        direction = residual.clone()
        norm = (residual * residual).sum(1, keepdim=True)
        for _ in range(cfg.cg_steps):
            step_product = product(direction)
            step = norm / (direction * step_product).sum(1, keepdim=True).clamp(min=1e-20)
            x = x + step * direction
            residual = residual - step * step_product
            new_norm = (residual * residual).sum(1, keepdim=True)
            direction = residual + (new_norm / norm.clamp(min=1e-20)) * direction
            norm = new_norm
        return x

    def _loss(self, by_user: _Pairs) -> float:
        """The weighted squared error plus penalty, per user, computed without the dense matrix.

        Sum over all pairs of p^2 is |X Y'|^2 = trace((X'X)(Y'Y)); observed pairs add their
        confidence-weighted correction. A falling loss is the per-epoch sign that the solves converge.
        """
        cfg = self.config
        x, y = self.user_factors, self.item_factors
        predicted = by_user.dots(x, y)
        everywhere = ((x.T @ x) * (y.T @ y)).sum()
        observed = ((1.0 + cfg.alpha) * (1.0 - predicted).square() - predicted.square()).sum()
        penalty = cfg.regularization * (x.square().sum() + y.square().sum())
        return float((everywhere + observed + penalty) / self.n_users)

    def _score(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.user_factors[user_index] @ self.item_factors.T

    def _state(self) -> dict[str, torch.Tensor]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.user_factors, self.item_factors = state["user_factors"], state["item_factors"]
