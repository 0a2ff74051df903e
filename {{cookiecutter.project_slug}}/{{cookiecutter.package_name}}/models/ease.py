"""EASE (Steck, 2019): closed-form item-item weights B = I - P diagMat(1 / diag(P)), P = (X'X + lambda I)^-1.

The Gram matrix is items x items in fp32, so EASE suits catalogues up to a few tens of thousands of items;
beyond that use BPR-MF. Users are scored in batches so memory stays bounded at serving and evaluation time.
"""

from __future__ import annotations

import torch

from ..settings import EASEConfig
from .base import Recommender


class EASE(Recommender):
    """EASE: one items x items weight matrix, solved in closed form (`model.ease`)."""

    name = "ease"
    config_class = EASEConfig
    config: EASEConfig

    def _fit(self, generator: torch.Generator) -> None:
        gram = self.item_gram(self.config.batch_size)
        gram.diagonal().add_(self.config.l2)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))
        weights = precision / (-precision.diagonal())
        weights.diagonal().zero_()
        # cholesky_inverse returns a column-major result; a loaded model is row-major, and the two layouts
        # round differently in the matmul. Keep one layout so a reloaded model scores bit for bit the same.
        self.weights = weights.contiguous()

    def _score(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.times_interactions(user_index, self.weights)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.weights = state["weights"]
