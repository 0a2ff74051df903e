"""Item-based k-nearest neighbours: cosine similarity between item columns, each item's top-k neighbours kept.

A user's score for item j sums the similarities between j and the items the user has (Sarwar et al., 2001;
Deshpande & Karypis, 2004). Like EASE it holds an items x items matrix, so it suits catalogues up to a few
tens of thousands of items.
"""

from __future__ import annotations

import torch

from ..settings import ItemKNNConfig
from .base import Recommender


class ItemKNN(Recommender):
    """ItemKNN: items x items cosine similarities, each item's top-k kept (`model.itemknn`)."""

    name = "itemknn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    def _fit(self, generator: torch.Generator) -> None:
        gram = self.item_gram()
        norms = gram.diagonal().sqrt()
        similarity = gram / (norms[:, None] * norms[None, :] + self.config.shrink + 1e-12)
        similarity.diagonal().zero_()
        k = min(self.config.neighbours, self.n_items)
        # Keep, for every item j (a column), its k most similar items; stable order for equal similarities.
        keep = torch.topk(similarity, k, dim=0).indices
        sparse = torch.zeros_like(similarity)
        sparse.scatter_(0, keep, similarity.gather(0, keep))
        self.similarity = sparse.contiguous()

    def _score(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.times_interactions(user_index, self.similarity)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"similarity": self.similarity}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.similarity = state["similarity"]
