"""iALS (Hu, Koren & Volinsky, 2008): weighted matrix factorisation of implicit feedback, by alternating
least squares with a few conjugate-gradient steps per solve (Takács, Pilászy & Tikk, 2011).

Every observed (user, item) pair has confidence 1 + alpha, every other pair confidence 1 and target 0. The
per-user system (Y'Y + lambda I + alpha sum_{i in I_u} y_i y_i') x_u = (1 + alpha) sum_{i in I_u} y_i is
solved for all users at once without forming it: a product with it costs one pass over the observed pairs.
"""

from __future__ import annotations

import logging

import torch

from ..settings import IALSConfig
from .base import Recommender

log = logging.getLogger(__name__)


class IALS(Recommender):
    name = "ials"
    config_class = IALSConfig
    config: IALSConfig

    def _fit(self, generator: torch.Generator) -> None:
        cfg = self.config
        users, items = self.user_pairs()
        scale = 1.0 / cfg.factors**0.5
        self.user_factors = torch.randn(self.n_users, cfg.factors, generator=generator) * scale * 0.1
        self.item_factors = torch.randn(self.n_items, cfg.factors, generator=generator) * scale * 0.1
        for _ in range(cfg.iterations):
            self.user_factors = self._solve(self.user_factors, self.item_factors, users, items)
            self.item_factors = self._solve(self.item_factors, self.user_factors, items, users)
            self._end_epoch(cfg.iterations, loss=self._loss(users, items))

    def _solve(
        self, rows: torch.Tensor, fixed: torch.Tensor, row_of: torch.Tensor, col_of: torch.Tensor
    ) -> torch.Tensor:
        """A few CG steps on every row's normal equations, warm-started from the current factors."""
        cfg = self.config
        gram = fixed.T @ fixed + cfg.regularization * torch.eye(cfg.factors)
        observed = fixed[col_of]  # one row of the fixed side per observed pair

        def product(v: torch.Tensor) -> torch.Tensor:
            weights = (observed * v[row_of]).sum(1, keepdim=True) * cfg.alpha
            return v @ gram + torch.zeros_like(v).index_add_(0, row_of, observed * weights)

        target = torch.zeros_like(rows).index_add_(0, row_of, observed * (1.0 + cfg.alpha))
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

    def _loss(self, users: torch.Tensor, items: torch.Tensor) -> float:
        """The weighted squared error plus penalty, per user, computed without the dense matrix.

        Sum over all pairs of p^2 is |X Y'|^2 = trace((X'X)(Y'Y)); observed pairs add their
        confidence-weighted correction. A falling loss is the per-epoch sign that the solves converge.
        """
        cfg = self.config
        x, y = self.user_factors, self.item_factors
        predicted = (x[users] * y[items]).sum(1)
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
