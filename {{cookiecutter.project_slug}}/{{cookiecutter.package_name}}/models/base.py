"""The one recommender protocol, and the base class every model shares.

Orientation is users x items everywhere. A fitted model owns its vocabulary (raw ids <-> dense indices) and
the training interactions it saw (as CSR), so it can exclude seen items and needs nothing else to serve.
A model is saved as ONE safetensors file: every tensor plus metadata (model name, config, format version).
Nothing is pickled, and saving the same model twice gives byte-identical files (the file's sha256 is its id).
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel
from safetensors import safe_open
from safetensors.torch import save_file
from torch.nn import functional

from ..canonical import canonical_json

FORMAT_VERSION = "1"
# Item-item models hold dense items x items matrices: 40k^2 fp32 is 6.4 GB, and fitting needs twice that.
MAX_DENSE_ITEMS = 40_000
# A column slice of an items x items matrix this size fits a core's L2 cache (1-2 MB on current x86 servers).
L2_SLICE_BYTES = 1 << 20
_METADATA_KEY = "recommender"
_REGISTRY: dict[str, type[Recommender]] = {}
log = logging.getLogger(__name__)
EpochCallback = Callable[["Recommender", dict[str, float]], None]


@dataclass(frozen=True)
class Vocabulary:
    """Sorted unique raw ids; a raw id's index is its position. Unknown ids map to -1."""

    users: np.ndarray
    items: np.ndarray

    @classmethod
    def from_frame(cls, interactions: pl.DataFrame) -> Vocabulary:
        """The users and items present in `interactions` (the training frame: nothing else gets an index)."""
        return cls(
            users=interactions.get_column("user_id").unique().sort().to_numpy().astype(np.int64),
            items=interactions.get_column("item_id").unique().sort().to_numpy().astype(np.int64),
        )

    @property
    def n_users(self) -> int:
        """Users with an index: the rows of every user-side tensor."""
        return int(self.users.size)

    @property
    def n_items(self) -> int:
        """Items with an index: the columns of every score matrix."""
        return int(self.items.size)

    def user_index(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Indices of raw user ids, -1 for a user unseen in training."""
        return _lookup(self.users, np.asarray(ids, dtype=np.int64))

    def item_index(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Indices of raw item ids, -1 for an item unseen in training."""
        return _lookup(self.items, np.asarray(ids, dtype=np.int64))


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if sorted_ids.size and ids.size > sorted_ids.size:
        low, high = int(sorted_ids[0]), int(sorted_ids[-1])
        if high - low < 4 * ids.size:
            # Many lookups over a compact id range (a fit's whole column): a table indexed by id is several
            # times faster than a binary search per id, and gives the same indices.
            table = np.full(high - low + 1, -1, dtype=np.int64)
            table[sorted_ids - low] = np.arange(sorted_ids.size)
            inside = (ids >= low) & (ids <= high)
            return np.where(inside, table[np.where(inside, ids - low, 0)], -1)
    pos = np.searchsorted(sorted_ids, ids)
    found = (pos < sorted_ids.size) & (sorted_ids[np.minimum(pos, sorted_ids.size - 1)] == ids)
    return np.where(found, pos, -1).astype(np.int64)


class Recommender(ABC):
    """The protocol: fit / score / recommend / save / load; subclasses implement the `_` hooks below."""

    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.vocabulary: Vocabulary | None = None
        self._indptr = torch.zeros(1, dtype=torch.int64)
        self._indices = torch.zeros(0, dtype=torch.int64)
        # Iterative models append one record per epoch: {"epoch": n, and what they measured}.
        self.epochs: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self._on_epoch: EpochCallback | None = None
        self._epoch_started = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    # -- training --------------------------------------------------------------------------------------------

    def fit(self, interactions: pl.DataFrame, seed: int, on_epoch: EpochCallback | None = None) -> Self:
        """Learn from (user_id, item_id) pairs; repeated pairs count once (implicit feedback).

        Iterative models call `on_epoch(model, record)` after each epoch (a progress bar, a checkpoint).
        """
        if interactions.height == 0:
            raise ValueError(f"{self.name}: cannot fit on an empty interactions frame")
        self.vocabulary = Vocabulary.from_frame(interactions)
        users = self.vocabulary.user_index(interactions.get_column("user_id").to_numpy())
        items = self.vocabulary.item_index(interactions.get_column("item_id").to_numpy())
        self._indptr, self._indices = _csr(users, items, self.vocabulary.n_users, self.vocabulary.n_items)
        self.epochs, self.epoch_seconds, self._on_epoch = [], [], on_epoch
        self._epoch_started = time.perf_counter()
        try:
            self._fit(torch.Generator().manual_seed(seed))
        finally:
            self._on_epoch = None
        return self

    def _end_epoch(self, total: int, **measured: float) -> None:
        """Record, log and report one finished epoch (called by iterative models' `_fit`).

        Wall times go to `epoch_seconds`, apart from the records: the records are saved with the weights,
        and a saved model's bytes must not depend on how fast the machine was.
        """
        now = time.perf_counter()
        record = {"epoch": len(self.epochs) + 1, **measured}
        self.epochs.append(record)
        self.epoch_seconds.append(now - self._epoch_started)
        self._epoch_started = now
        shown = " ".join(f"{key} {value:.4f}" for key, value in measured.items())
        seconds = self.epoch_seconds[-1]
        log.info("%s epoch %d/%d %s (%.2fs)", self.name, record["epoch"], total, shown, seconds)
        if self._on_epoch is not None:
            self._on_epoch(self, record)

    @property
    def n_users(self) -> int:
        """Users the model was fitted on (raises before `fit`)."""
        return self._vocab().n_users

    @property
    def n_items(self) -> int:
        """Items the model can recommend: those of its training data (raises before `fit`)."""
        return self._vocab().n_items

    def interactions(self, user_index: torch.Tensor) -> torch.Tensor:
        """Binary float32 rows (batch, n_items) of the training interactions of these users."""
        rows = torch.zeros(user_index.numel(), self.n_items, dtype=torch.float32)
        rows[self._seen_coordinates(user_index)] = 1.0
        return rows

    def seen(self, user_index: torch.Tensor) -> torch.Tensor:
        """Boolean rows (batch, n_items): True where the user had the item in training."""
        return self.interactions(user_index) > 0

    def exclude_seen(self, scores: torch.Tensor, user_index: torch.Tensor) -> torch.Tensor:
        """`scores` (batch, n_items) with each user's training items set to -inf, in place.

        Writes only the seen entries: a dense boolean mask and `masked_fill` cost more than the top-k after.
        """
        scores[self._seen_coordinates(user_index)] = float("-inf")
        return scores

    def _seen_coordinates(self, user_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in the batch, item index) of every training pair of these users."""
        starts, ends = self._indptr[user_index], self._indptr[user_index + 1]
        counts = ends - starts
        row = torch.repeat_interleave(torch.arange(user_index.numel()), counts)
        # Position of each entry inside its user's slice of `_indices`.
        offset = torch.arange(int(counts.sum())) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return row, self._indices[torch.repeat_interleave(starts, counts) + offset]

    def times_interactions(self, user_index: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """X[user_index] @ matrix for the binary training matrix X, without densifying X.

        Each user's row is the sum of `matrix`'s rows for their training items: an `embedding_bag` sum, which
        reads only those rows (about 3x faster than the dense product at MovieLens 1M's density). The sum runs
        over slices of columns narrow enough that a slice of `matrix` stays in a core's L2 cache: the rows are
        then read from cache, not memory, about 3x faster again at ML-1M's shape. Each entry is still summed
        over the same items in the same order, so the result is bit for bit that of one wide sum.
        """
        _, items = self._seen_coordinates(user_index)
        counts = self._indptr[user_index + 1] - self._indptr[user_index]
        offsets = torch.cumsum(counts, 0) - counts
        width = max(32, L2_SLICE_BYTES // (4 * max(matrix.shape[0], 1)))
        if width >= matrix.shape[1]:
            return functional.embedding_bag(items, matrix, offsets, mode="sum")
        out = torch.empty(user_index.numel(), matrix.shape[1], dtype=matrix.dtype)
        for start in range(0, matrix.shape[1], width):
            columns = matrix[:, start : start + width].contiguous()
            out[:, start : start + width] = functional.embedding_bag(items, columns, offsets, mode="sum")
        return out

    def item_gram(self, batch_size: int = 1_024) -> torch.Tensor:
        """X'X (items x items, fp32) of the binary training matrix, accumulated over batches of users.

        X is 0/1, so the products are exact in int8 with an int32 sum (4x faster than fp32 on CPUs with
        VNNI); where the int8 kernel is missing, the fp32 product gives the same integers.
        """
        if self.n_items > MAX_DENSE_ITEMS:
            raise ValueError(
                f"{self.name}: {self.n_items} items need an items x items matrix; "
                f"above {MAX_DENSE_ITEMS} items use bpr or ials"
            )
        try:
            return self._item_gram_int8(batch_size)
        except (RuntimeError, NotImplementedError):
            gram = torch.zeros(self.n_items, self.n_items, dtype=torch.float32)
            for start in range(0, self.n_users, batch_size):
                rows = self.interactions(torch.arange(start, min(start + batch_size, self.n_users)))
                gram += rows.T @ rows
            return gram

    def _item_gram_int8(self, batch_size: int) -> torch.Tensor:
        n = self.n_items
        width = -(-n // 64) * 64  # the int8 kernel wants aligned shapes: pad with zero columns and rows
        gram = torch.zeros(width, width, dtype=torch.int32)
        for start in range(0, self.n_users, batch_size):
            rows = self.interactions(torch.arange(start, min(start + batch_size, self.n_users)))
            rows = functional.pad(rows.to(torch.int8), (0, width - n, 0, -rows.shape[0] % 8))
            gram += torch._int_mm(rows.T.contiguous(), rows)
        return gram[:n, :n].to(torch.float32)

    def user_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training (user index, item index) pair, sorted by user then item."""
        users = torch.repeat_interleave(torch.arange(self.n_users), self._indptr[1:] - self._indptr[:-1])
        return users, self._indices

    # -- serving ---------------------------------------------------------------------------------------------

    def score(self, user_index: torch.Tensor) -> torch.Tensor:
        """Float32 scores (batch, n_items) over internal item indices, a new tensor the caller may modify."""
        self._vocab()
        with torch.no_grad():
            return self._score(user_index.to(torch.int64))

    def recommend(
        self, user_ids: Sequence[int] | np.ndarray, k: int, exclude_seen: bool = True
    ) -> pl.DataFrame:
        """Top-k items per known user (user_id, item_id, score, rank from 1); unknown users get no rows.

        Equal scores rank in raw item id order, so the top k is always the start of the top k + 1.
        """
        vocab = self._vocab()
        index = vocab.user_index(user_ids)
        known = torch.from_numpy(index[index >= 0])
        scores = self.score(known)
        if exclude_seen:
            scores = self.exclude_seen(scores, known)
        values, indices = top_k(scores, k)
        keep = torch.isfinite(values)  # a user who saw everything gets fewer rows, not -inf rows
        width = indices.shape[1]
        return pl.DataFrame(
            {
                "user_id": np.repeat(vocab.users[known.numpy()], width)[keep.flatten().numpy()],
                "item_id": vocab.items[indices.flatten().numpy()][keep.flatten().numpy()],
                "score": values.flatten()[keep.flatten()].numpy(),
                "rank": np.tile(np.arange(1, width + 1), known.numel())[keep.flatten().numpy()],
            },
            schema={"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float32, "rank": pl.Int64},
        )

    # -- persistence -----------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the model as one safetensors file (no pickle); the same model always gives the same bytes."""
        vocab = self._vocab()
        tensors = {
            "vocabulary.users": torch.from_numpy(vocab.users),
            "vocabulary.items": torch.from_numpy(vocab.items),
            "seen.indptr": self._indptr,
            "seen.indices": self._indices,
        }
        tensors |= {f"state.{key}": value.detach().contiguous() for key, value in self._state().items()}
        header = {
            "format": FORMAT_VERSION,
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "epochs": self.epochs,
            "extra": self._metadata(),
        }
        # One metadata key holding canonical JSON: safetensors writes several keys in hash order, which would
        # make the bytes (and so the artifact id) of the same model differ between runs.
        metadata = {_METADATA_KEY: canonical_json(header).decode()}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: Path) -> Recommender:
        """Load any saved model; the stored name picks the class (so `Recommender.load` works for all)."""
        with safe_open(str(path), framework="pt") as fh:
            metadata = json.loads((fh.metadata() or {}).get(_METADATA_KEY, "{}"))
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
        if metadata.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: model format {metadata.get('format')!r}, expected {FORMAT_VERSION}")
        model_class = _REGISTRY.get(metadata.get("model", ""))
        if model_class is None:
            raise ValueError(f"{path}: unknown model {metadata.get('model')!r}; known: {sorted(_REGISTRY)}")
        model = model_class(model_class.config_class.model_validate(metadata["config"]))
        model.vocabulary = Vocabulary(
            users=tensors["vocabulary.users"].numpy(), items=tensors["vocabulary.items"].numpy()
        )
        model._indptr, model._indices = tensors["seen.indptr"], tensors["seen.indices"]
        model._load_state({k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")})
        model.epochs = list(metadata.get("epochs", []))
        model._load_metadata(metadata.get("extra", {}))
        return model

    # -- subclass hooks --------------------------------------------------------------------------------------

    @abstractmethod
    def _fit(self, generator: torch.Generator) -> None: ...

    @abstractmethod
    def _score(self, user_index: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, torch.Tensor]) -> None: ...

    def _metadata(self) -> dict[str, Any]:
        """Small JSON-able facts worth keeping with the weights (e.g. a training curve)."""
        return {}

    def _load_metadata(self, extra: dict[str, Any]) -> None:
        return None

    def _vocab(self) -> Vocabulary:
        if self.vocabulary is None:
            raise RuntimeError(f"{self.name} model is not fitted")
        return self.vocabulary


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (value, item index) per row, best first; equal scores in item-index order.

    `torch.topk` picks and orders tied items differently with k, the row length and the torch build, so a
    ranking with ties (popularity has many) would not be reproducible. Here topk proposes the k; in a row
    where the k-th value is tied with an item left out, the lowest-index tied items are taken instead; then a
    stable sort of the k by value, from item-index order, puts ties in item-index order.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k == 0 or scores.shape[0] == 0:
        return scores[:, :k], torch.zeros(scores.shape[0], k, dtype=torch.int64)
    # One more than asked: the (k+1)-th value tells whether ties run past the cut.
    top = torch.topk(scores, min(k + 1, n), dim=1)
    if torch.isnan(top.values).any():  # topk ranks NaN first, so a NaN anywhere in a row shows up here
        raise ValueError("scores contain NaN; the model is broken (diverged training or a bad weight file)")
    indices = top.indices[:, :k]
    if k < n:
        kth = top.values[:, k - 1 : k]
        straddling = (top.values[:, k] == kth[:, 0]).nonzero()[:, 0]
        if straddling.numel():
            rows, cut = scores[straddling], kth[straddling]
            at = rows == cut
            room = k - (rows > cut).sum(1, keepdim=True)
            chosen = (rows > cut) | (at & (torch.cumsum(at.to(torch.int64), 1) <= room))
            # Exactly k per straddling row; nonzero lists them row by row in ascending item index.
            indices = indices.index_copy(0, straddling, chosen.nonzero()[:, 1].reshape(-1, k))
    indices = indices.sort(1).values
    values = scores.gather(1, indices)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), indices.gather(1, order)


def _csr(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    # One int64 key per pair: sorted keys run by user, then item; repeats are dropped after the sort (a 1-D
    # sort, many times faster than np.unique over rows, and than np.unique itself: 1.0 s vs 0.07 s at 1M).
    keys = np.sort(users.astype(np.int64) * n_items + items)
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    keys = keys[first]
    counts = np.bincount(keys // n_items, minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return torch.from_numpy(indptr), torch.from_numpy(keys % n_items)
