"""Full-ranking evaluation, vectorized in torch over batches of users.

Protocol: every test user who also appears in training is ranked against the whole catalogue minus the items
that user interacted with in training. Users absent from training cannot be ranked; they are counted in
`users_skipped`. A repeated (user, item) test event counts once.

Metrics, per user, then averaged over evaluated users (binary relevance; T = the user's test items):
- NDCG@K = DCG@K / IDCG@K, DCG = sum over hits at rank r (1-based) of 1 / log2(r + 1), IDCG over min(|T|, K).
- Recall@K = hits@K / |T|.
- HitRate@K = 1 if hits@K > 0 else 0.
Test items the model never saw in training stay in T: they count in IDCG and in the recall denominator but
cannot be hit, which is what such an item costs a deployed model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from .models import Recommender


@dataclass(frozen=True)
class Evaluation:
    per_user: pl.DataFrame  # user_id, n_test, then ndcg@K, recall@K, hitrate@K for each K
    summary: dict[str, float]  # metric means, plus `users` and `users_skipped`

    def table(self) -> list[dict[str, Any]]:
        return [{"metric": name, "value": value} for name, value in sorted(self.summary.items())]


def evaluate(
    model: Recommender, train: pl.DataFrame, test: pl.DataFrame, ks: Sequence[int], batch_size: int = 1024
) -> Evaluation:
    """Rank every evaluable test user's unseen items and score the top max(ks) against their test items."""
    ks = sorted(set(ks))
    vocab = model.vocabulary
    if vocab is None:
        raise ValueError("evaluate needs a fitted model")
    truth = test.select("user_id", "item_id").unique()
    known_users = truth.join(pl.DataFrame({"user_id": vocab.users}), on="user_id", how="semi")
    skipped = truth.get_column("user_id").n_unique() - known_users.get_column("user_id").n_unique()
    # The model excludes its own seen-items matrix, so that must be the training data it is judged against.
    if train.select("user_id", "item_id").unique().height != int(model.user_pairs()[1].numel()):
        raise ValueError("the model was not fitted on this training frame")

    per_user = _per_user_truth(known_users, vocab.user_index, vocab.item_index)
    columns: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for k in ks for m in ("ndcg", "recall", "hitrate")}
    for start in range(0, per_user.height, batch_size):
        chunk = per_user.slice(start, batch_size)
        for name, values in _batch_metrics(model, chunk, ks).items():
            columns[name].append(values)

    metrics = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
    table = per_user.select("user_id", "n_test").with_columns(
        [pl.Series(name, values, dtype=pl.Float64) for name, values in metrics.items()]
    )
    summary = {
        name: float(values.mean()) if values.size else float("nan") for name, values in metrics.items()
    }
    summary |= {"users": float(per_user.height), "users_skipped": float(skipped)}
    return Evaluation(per_user=table, summary=summary)


def _per_user_truth(truth: pl.DataFrame, user_index: Any, item_index: Any) -> pl.DataFrame:
    """One row per evaluable user: raw id, index, |T| and the indices of T's items known to the model."""
    indexed = truth.with_columns(
        pl.Series("u", user_index(truth.get_column("user_id").to_numpy())),
        pl.Series("i", item_index(truth.get_column("item_id").to_numpy())),
    )
    return (
        indexed.group_by("user_id", "u")
        .agg(pl.len().alias("n_test"), pl.col("i").filter(pl.col("i") >= 0).alias("known_items"))
        .sort("u")
    )


def _batch_metrics(model: Recommender, chunk: pl.DataFrame, ks: list[int]) -> dict[str, np.ndarray]:
    users = torch.from_numpy(chunk.get_column("u").to_numpy().astype(np.int64))
    n_test = torch.from_numpy(chunk.get_column("n_test").to_numpy().astype(np.float64))
    relevant = torch.zeros(users.numel(), model.n_items, dtype=torch.bool)
    items = chunk.get_column("known_items")
    lengths = torch.from_numpy(items.list.len().to_numpy().astype(np.int64))
    flat = torch.from_numpy(items.explode(empty_as_null=False).drop_nulls().to_numpy().astype(np.int64))
    relevant[torch.repeat_interleave(torch.arange(users.numel()), lengths), flat] = True

    scores = model.score(users).masked_fill(model.seen(users), float("-inf"))
    top = torch.topk(scores, min(max(ks), model.n_items), dim=1)
    # A top slot holding -inf (the user has seen nearly everything) is no recommendation, so never a hit.
    hits = relevant.gather(1, top.indices) & torch.isfinite(top.values)
    discount = 1.0 / torch.log2(torch.arange(2, hits.shape[1] + 2, dtype=torch.float64))

    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits_k = hits[:, :k].to(torch.float64)
        dcg = (hits_k * discount[: hits_k.shape[1]]).sum(1)
        ideal_len = torch.clamp(n_test, max=k).to(torch.int64)
        idcg = torch.cumsum(discount, 0)[torch.clamp(ideal_len, max=discount.numel()) - 1]
        n_hits = hits_k.sum(1)
        out[f"ndcg@{k}"] = (dcg / idcg).numpy()
        out[f"recall@{k}"] = (n_hits / n_test).numpy()
        out[f"hitrate@{k}"] = (n_hits > 0).to(torch.float64).numpy()
    return out
