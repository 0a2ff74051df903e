"""EASE (Steck, 2019): closed-form item-item weights B = I - P diagMat(1 / diag(P)), P = (X'X + lambda I)^-1.

The Gram matrix is items x items in fp32, so EASE suits catalogues up to a few tens of thousands of items;
beyond that use BPR-MF. Users are scored in batches so memory stays bounded at serving and evaluation time.
"""

from __future__ import annotations

import torch

from ..settings import EASEConfig
from .base import Recommender

MAX_ITEMS = 40_000  # 40k^2 fp32 = 6.4 GB for the Gram matrix, and as much again for its inverse


class EASE(Recommender):
    name = "ease"
    config_class = EASEConfig
    config: EASEConfig

    def _fit(self, generator: torch.Generator) -> None:
        if self.n_items > MAX_ITEMS:
            raise ValueError(
                f"ease: {self.n_items} items need an items x items matrix; above {MAX_ITEMS} use bpr"
            )
        gram = torch.zeros(self.n_items, self.n_items, dtype=torch.float32)
        for start in range(0, self.n_users, self.config.batch_size):
            rows = self.interactions(torch.arange(start, min(start + self.config.batch_size, self.n_users)))
            gram += rows.T @ rows
        gram.diagonal().add_(self.config.l2)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))
        weights = precision / (-precision.diagonal())
        weights.diagonal().zero_()
        # cholesky_inverse returns a column-major result; a loaded model is row-major, and the two layouts
        # round differently in the matmul. Keep one layout so a reloaded model scores bit for bit the same.
        self.weights = weights.contiguous()

    def _score(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.interactions(user_index) @ self.weights

    def _state(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.weights = state["weights"]
