"""Full-ranking evaluation, vectorized in torch over batches of users.

Protocol: every test user who also appears in training is ranked against the whole catalogue minus the items
that user interacted with in training. Users absent from training cannot be ranked; they are counted in
`users_skipped`. A repeated (user, item) test event counts once. Equal scores rank in item-index order (raw
item id order), so metrics do not depend on how a torch build breaks ties.

Metrics, per user, then averaged over evaluated users (binary relevance; T = the user's test items):
- NDCG@K = DCG@K / IDCG@K, DCG = sum over hits at rank r (1-based) of 1 / log2(r + 1), IDCG over min(|T|, K).
- Recall@K = hits@K / |T|.
- HitRate@K = 1 if hits@K > 0 else 0.
- Precision@K = hits@K / K.
- MAP@K: AP@K = sum over hits at rank r of Precision@r, divided by min(|T|, K); averaged over users.
- MRR@K = 1 / rank of the first hit within the top K (0 when there is none).
- Novelty@K = mean self-information -log2(share of training users who had the item) of the K recommended
  items: higher means less popular recommendations.
- Coverage@K = share of the catalogue that appears in at least one evaluated user's top K (catalogue-level:
  no per-user value; its interval resamples users like the others, corrected for the resampling bias).
Test items the model never saw in training stay in T: they count in IDCG and in the recall denominator but
cannot be hit, which is what such an item costs a deployed model.

`evaluate(..., as_served=True)` judges a model fitted on other data (the champion, against a challenger's
split): the test users are those with training events in `train`, a user the model does not know gets no
recommendations (zero on every metric), and both the model's own history and `train` are excluded.

`bootstrap_intervals` gives percentile 95% intervals over users for every metric; `paired_test` compares two
models on the same users with a paired bootstrap of the per-user differences. It needs only their `Scores`
(per-user table and summary), which the pipeline stores for its model and for `popularity_baseline` on the
same split, so promotion compares without ranking again.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from .models import Recommender, Vocabulary, build_model
from .models.base import top_k
from .settings import PER_USER_METRICS as PER_USER
from .settings import ModelConfig

_RESAMPLE_CELLS = 1 << 24  # bootstrap counts held at once (128 MB of float64)


@dataclass(frozen=True)
class Scores:
    """What comparing two models needs of an evaluation: what the pipeline stores of it (`paired_test`,
    `promotion.decide`)."""

    per_user: pl.DataFrame  # user_id, n_test, then <metric>@K for each per-user metric and K
    summary: dict[str, float]  # metric means and coverage@K, plus `users` and `users_skipped`


@dataclass(frozen=True)
class Evaluation(Scores):
    """Scores plus the top items recommended to each user, which coverage and its bootstrap interval need."""

    top_items: np.ndarray  # (users, max K) internal item indices recommended per user, -1 for an empty slot
    n_items: int


def evaluate(
    model: Recommender,
    train: pl.DataFrame,
    test: pl.DataFrame,
    ks: Sequence[int],
    batch_size: int = 1024,
    as_served: bool = False,
) -> Evaluation:
    """Rank every evaluable test user's unseen items and score the top max(ks) against their test items."""
    ks = sorted(set(ks))
    vocab = model.vocabulary
    if vocab is None:
        raise ValueError("evaluate needs a fitted model")
    truth = test.select("user_id", "item_id").unique()
    evaluable = truth.join(train.select("user_id").unique(), on="user_id", how="semi")
    skipped = truth.get_column("user_id").n_unique() - evaluable.get_column("user_id").n_unique()
    # The model excludes its own seen-items matrix, so that must be the training data it is judged against
    # (unless it is judged as served, when `train` is excluded on top of it).
    if not as_served and not _same_pairs(train, vocab, model.user_pairs()):
        raise ValueError("the model was not fitted on this training frame")

    per_user = _per_user_truth(evaluable, vocab.user_index, vocab.item_index)
    if as_served:
        per_user = per_user.join(_history(train, vocab), on="user_id", how="left").sort("u", "user_id")
    _, train_items = model.user_pairs()
    share = torch.bincount(train_items, minlength=model.n_items).to(torch.float64) / max(model.n_users, 1)
    self_information = -torch.log2(share.clamp(min=1.0 / max(model.n_users, 1)))
    columns: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for k in ks for m in PER_USER}
    tops: list[np.ndarray] = []
    for start in range(0, per_user.height, batch_size):
        chunk = per_user.slice(start, batch_size)
        values, top = _batch_metrics(model, chunk, ks, self_information)
        for name, column in values.items():
            columns[name].append(column)
        tops.append(top)

    metrics = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
    table = per_user.select("user_id", "n_test").with_columns(
        [pl.Series(name, values, dtype=pl.Float64) for name, values in metrics.items()]
    )
    summary = {
        name: float(values.mean()) if values.size else float("nan") for name, values in metrics.items()
    }
    width = min(max(ks), model.n_items)
    top_items = np.concatenate(tops) if tops else np.zeros((0, width), dtype=np.int64)
    summary |= {f"coverage@{k}": _coverage(top_items[:, :k], model.n_items) for k in ks}
    summary |= {"users": float(per_user.height), "users_skipped": float(skipped)}
    return Evaluation(per_user=table, summary=summary, top_items=top_items, n_items=model.n_items)


def popularity_baseline(
    train: pl.DataFrame, test: pl.DataFrame, ks: Sequence[int], batch_size: int = 1024, seed: int = 0
) -> Evaluation:
    """The popularity model fitted on `train`, evaluated on `test`: the reference a first model must beat."""
    model = build_model(ModelConfig(name="popularity")).fit(train, seed)
    return evaluate(model, train, test, ks, batch_size)


def bootstrap_intervals(
    evaluation: Evaluation, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over users for every metric of `evaluation` (same seed, same bounds)."""
    n = evaluation.per_user.height
    metrics = [name for name in evaluation.per_user.columns if "@" in name]
    coverages = [name for name in evaluation.summary if name.startswith("coverage@")]
    values = {name: evaluation.per_user.get_column(name).to_numpy() for name in metrics}
    covered = {
        name: _covered_by(evaluation.top_items[:, : int(name.split("@")[1])], evaluation.n_items)
        for name in coverages
    }
    means: dict[str, list[np.ndarray]] = {name: [] for name in metrics + coverages}
    # The same resamples for every metric, drawn block by block so that memory stays bounded with many users.
    for weights in _resample_weights(n, n_resamples, seed):
        for name in metrics:
            means[name].append(weights @ values[name] / n)
        for name in coverages:
            # Item i is covered in a resample when some drawn user (weight > 0) was recommended it: a sparse
            # (items x users) product counts those draws exactly, with no users x items matrix.
            drawn = (covered[name] @ torch.from_numpy(weights.T.copy())) > 0
            means[name].append(drawn.to(torch.float64).mean(0).numpy())
    tail = (1 - level) / 2 * 100
    out = {}
    for name in metrics:
        resampled = np.concatenate(means[name])
        out[name] = (float(np.percentile(resampled, tail)), float(np.percentile(resampled, 100 - tail)))
    for name in coverages:
        shares = np.concatenate(means[name])
        # A resample repeats some users and drops others, so its union of items is smaller on average: shift
        # the percentiles by that bias (the observed value minus the resampled mean).
        bias = evaluation.summary[name] - float(shares.mean())
        out[name] = (
            float(np.percentile(shares, tail)) + bias,
            float(np.percentile(shares, 100 - tail)) + bias,
        )
    return out


@dataclass(frozen=True)
class PairedTest:
    """Model A against model B on one metric over the users both evaluated: how far apart, how surely."""

    metric: str
    users: int  # evaluated by both models
    mean_a: float
    mean_b: float
    difference: float  # mean_a - mean_b over the common users
    interval: tuple[float, float]  # paired bootstrap interval of the difference (95% unless asked)
    p_value: float  # two-sided: how often the resampled difference falls on the other side of zero


def paired_test(
    a: Scores, b: Scores, metric: str, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedTest:
    """Paired bootstrap over the users both evaluations ranked: is model a better than model b on `metric`?

    `interval` is the percentile interval of the mean difference at `level` (two-sided).
    """
    joined = a.per_user.select("user_id", pl.col(metric).alias("a")).join(
        b.per_user.select("user_id", pl.col(metric).alias("b")), on="user_id", how="inner"
    )
    if joined.height == 0:
        raise ValueError(f"no user was evaluated by both models on {metric}")
    diff = (joined.get_column("a") - joined.get_column("b")).to_numpy()
    means = np.concatenate(
        [w @ diff / joined.height for w in _resample_weights(joined.height, n_resamples, seed)]
    )
    observed = float(diff.mean())
    tail = (1 - level) / 2 * 100
    other_side = np.mean(means <= 0) if observed > 0 else np.mean(means >= 0)
    return PairedTest(
        metric=metric,
        users=joined.height,
        mean_a=float(joined.select(pl.col("a").mean()).item()),
        mean_b=float(joined.select(pl.col("b").mean()).item()),
        difference=observed,
        interval=(float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))),
        p_value=min(1.0, float(2 * other_side)) if observed != 0 else 1.0,
    )


def _resample_weights(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of rows of the (n_resamples, n) counts of each user in each bootstrap resample.

    One generator draws the blocks in turn, so they are the rows of a single draw of all resamples. Up to
    `_RESAMPLE_CELLS` counts that is one block (a product with it is then bit for bit the unblocked one);
    200k users x 1,000 resamples would otherwise be 1.6 GB at once.
    """
    rng = np.random.default_rng(seed)
    rows = max(1, _RESAMPLE_CELLS // max(n, 1))
    for start in range(0, n_resamples, rows):
        size = min(rows, n_resamples - start)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def _covered_by(top_items: np.ndarray, n_items: int) -> torch.Tensor:
    """Sparse (items, users) 0/1 matrix of which users were recommended each item (CSR: products with it run
    about twice as fast as with the COO form)."""
    users, slots = np.nonzero(top_items >= 0)
    indices = torch.from_numpy(np.stack([top_items[users, slots], users]))
    values = torch.ones(users.size, dtype=torch.float64)
    shape = (n_items, top_items.shape[0])
    coo = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()
    with warnings.catch_warnings():  # torch flags CSR as beta on every build; the product used here is exact
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        return coo.to_sparse_csr()


def _coverage(top_items: np.ndarray, n_items: int) -> float:
    recommended = np.unique(top_items[top_items >= 0])
    return float(recommended.size / n_items) if n_items else float("nan")


def _history(train: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """user_id -> indices of the user's `train` items that the model knows (to exclude as seen)."""
    return (
        train.select("user_id", pl.Series("i", vocab.item_index(train.get_column("item_id").to_numpy())))
        .filter(pl.col("i") >= 0)
        .group_by("user_id")
        .agg(pl.col("i").unique().alias("history"))
    )


def _per_user_truth(truth: pl.DataFrame, user_index: Any, item_index: Any) -> pl.DataFrame:
    """One row per evaluable user: raw id, index (-1 if unknown to the model), |T| and T's known items."""
    indexed = truth.with_columns(
        pl.Series("u", user_index(truth.get_column("user_id").to_numpy())),
        pl.Series("i", item_index(truth.get_column("item_id").to_numpy())),
    )
    return (
        indexed.group_by("user_id", "u")
        .agg(pl.len().alias("n_test"), pl.col("i").filter(pl.col("i") >= 0).alias("known_items"))
        .sort("u", "user_id")
    )


def _batch_metrics(
    model: Recommender, chunk: pl.DataFrame, ks: list[int], self_information: torch.Tensor
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    users = torch.from_numpy(chunk.get_column("u").to_numpy().astype(np.int64))
    n_test = torch.from_numpy(chunk.get_column("n_test").to_numpy().astype(np.float64))
    relevant = torch.zeros(users.numel(), model.n_items, dtype=torch.bool)
    relevant[_list_coordinates(chunk.get_column("known_items"))] = True

    known = users >= 0  # always, unless judged as served: then an unknown user gets an empty list
    if bool(known.all()):
        # The usual case, without a second (batch x items) tensor and a masked copy into it: at 50k items
        # those cost a third of the ranking time.
        scores = model.exclude_seen(model.score(users), users)
    else:
        scores = torch.full((users.numel(), model.n_items), float("-inf"))
        scores[known] = model.exclude_seen(model.score(users[known]), users[known])
    if "history" in chunk.columns:
        scores[_list_coordinates(chunk.get_column("history"))] = float("-inf")
    top_values, top_indices = top_k(scores, max(ks))  # ties in item-index order, whatever the torch build
    # A top slot holding -inf (the user has seen nearly everything) is no recommendation, so never a hit.
    filled = torch.isfinite(top_values)
    hits = relevant.gather(1, top_indices) & filled
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    discount = 1.0 / torch.log2(ranks + 1)
    # The ideal list has min(|T|, K) hits even when K exceeds the catalogue (unknown test items count in T).
    ideal = torch.cumsum(1.0 / torch.log2(torch.arange(2, max(ks) + 2, dtype=torch.float64)), 0)
    precision_at_rank = torch.cumsum(hits.to(torch.float64), 1) / ranks
    first_hit = torch.where(hits.any(1), hits.to(torch.int8).argmax(1) + 1, 0)  # 1-based rank, 0 when none
    information = self_information[top_indices] * filled

    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits_k = hits[:, :k].to(torch.float64)
        width = hits_k.shape[1]
        idcg = ideal[torch.clamp(n_test, max=k).to(torch.int64) - 1]
        n_hits = hits_k.sum(1)
        n_filled = filled[:, :k].sum(1).clamp(min=1)
        out[f"ndcg@{k}"] = ((hits_k * discount[:width]).sum(1) / idcg).numpy()
        out[f"recall@{k}"] = (n_hits / n_test).numpy()
        out[f"hitrate@{k}"] = (n_hits > 0).to(torch.float64).numpy()
        out[f"precision@{k}"] = (n_hits / k).numpy()
        out[f"map@{k}"] = ((precision_at_rank[:, :k] * hits_k).sum(1) / torch.clamp(n_test, max=k)).numpy()
        in_top = (first_hit > 0) & (first_hit <= k)
        out[f"mrr@{k}"] = torch.where(in_top, 1.0 / first_hit.clamp(min=1), 0.0).to(torch.float64).numpy()
        out[f"novelty@{k}"] = (information[:, :k].sum(1) / n_filled).numpy()
    return out, torch.where(filled, top_indices, -1).numpy()


def _list_coordinates(lists: pl.Series) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, value) of every element of a list column (null lists are empty)."""
    lengths = torch.from_numpy(lists.list.len().fill_null(0).to_numpy().astype(np.int64))
    flat = torch.from_numpy(lists.explode(empty_as_null=False).drop_nulls().to_numpy().astype(np.int64))
    return torch.repeat_interleave(torch.arange(lengths.numel()), lengths), flat


def _same_pairs(train: pl.DataFrame, vocab: Vocabulary, pairs: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Whether `train`'s distinct (user, item) pairs are exactly the model's seen-items matrix."""
    users = vocab.user_index(train.get_column("user_id").to_numpy())
    items = vocab.item_index(train.get_column("item_id").to_numpy())
    if (users < 0).any() or (items < 0).any():
        return False
    keys = np.unique(users * vocab.n_items + items)  # sorted by user, then item, like the model's pairs
    model_users, model_items = pairs
    return np.array_equal(keys, (model_users * vocab.n_items + model_items).numpy())
