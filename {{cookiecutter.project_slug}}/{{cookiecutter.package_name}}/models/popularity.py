"""Most-popular items: the baseline every model must beat.

An item's score is the number of distinct training users who interacted with it (repeats count once, as
everywhere); equally popular items rank in item-index order, that is by raw item id (see `base.top_k`).
"""

from __future__ import annotations

import torch

from ..settings import PopularityConfig
from .base import Recommender


class Popularity(Recommender):
    """Popularity: one score per item for every user, its count of training users (`model.popularity`)."""

    name = "popularity"
    config_class = PopularityConfig

    def _fit(self, generator: torch.Generator) -> None:
        _, items = self.user_pairs()
        self.counts = torch.bincount(items, minlength=self.n_items).to(torch.float32)

    def _score(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(user_index.numel(), -1).clone()

    def _state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counts = state["counts"]
