"""Taking a new batch file into the current snapshot, or refusing it with reasons, and losing nothing.

`ingest_batch` is the one call the ingest flow's task wraps. It takes only files directly in the landing
zone (a path elsewhere raises `OutsideLandingZone` before anything is opened); an entry there that is not
a regular file (a symbolic link, a FIFO) is moved into quarantine unread, with its name and size. A file is
taken only once it is ready (see the arrival protocol in `artifacts/landing.py`); its bytes are read once
and everything follows from them. Ingests serialize on the store's `ingest` lock, held from reading the
current pointer to clearing the file, so two at once both land (the second merges on top of the first).
Order matters for "nothing lost": the batch's bytes and the new snapshot are stored and the pointer moved
before the file leaves the landing zone; a refused batch's bytes are written to quarantine with its reasons
before it leaves, and the current snapshot is not touched. A file that changed since it was read is left
where it is for the next ingest. A batch whose bytes were already taken in changes nothing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .artifacts import ArtifactRef, ArtifactStore
from .artifacts.landing import (
    Arrival,
    LandingZone,
    Stray,
    advance_snapshot,
    current_snapshot,
    safe_name,
)
from .data import schema, sources
from .settings import Settings
from .validation import validate_batch

STILL_ARRIVING = "still being written: left in the landing zone for the next ingest"
GONE = "no longer in the landing zone: another ingest took it in or quarantined it"
CHANGED = "changed while it was being taken in: left in the landing zone for the next ingest"


@dataclass(frozen=True)
class BatchOutcome:
    """What became of a landed file: taken in, refused (quarantined) or left for the next ingest, and why."""

    file: str
    accepted: bool
    batch: dict[str, Any]  # name, size, sha256 of the file's bytes (name and size of an entry never read)
    rows: int = 0
    added: int = 0  # new events the batch brought to the snapshot
    snapshot: str | None = None  # the current snapshot id after this batch
    previous: str | None = None
    reasons: list[str] = field(default_factory=list)
    quarantined_to: str | None = None
    report: str = ""  # Markdown: failed expectations with offending rows
    docs: str | None = None  # URI of the GX Data Docs of this batch's validation
    validation: str | None = None  # artifact id of the stored validation result
    # The file stays in the landing zone for the next ingest: not ready yet, or it changed since it was read
    # (reasons say which). A batch is refused exactly when it is quarantined; `accepted` False without
    # `quarantined_to` is a deferral (or the file was gone), not a refusal.
    left_in_landing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: what the ingest task returns."""
        return asdict(self)


def ingest_batch(file: Path, settings: Settings, store: ArtifactStore, now: int) -> BatchOutcome:
    """Validate one landed file and add it to the current snapshot, or quarantine it, under the store's ingest
    lock; `now` (Unix seconds) bounds how far ahead its events may be. `file` must be in the landing zone.
    """
    landing = LandingZone(settings.ingest)
    cfg = settings.ingest
    file = landing.confine(file)
    if os.path.lexists(file) and not landing.stray(file) and not landing.await_ready(file):
        return _left(file, {"name": file.name}, STILL_ARRIVING)
    with store.lock("ingest", ttl=cfg.lock_ttl_seconds, wait=cfg.lock_wait_seconds) as lease:
        if not os.path.lexists(file):  # listed, then taken by an ingest that held the lock
            return BatchOutcome(str(file), False, {"name": file.name}, reasons=[GONE], report=f"- {GONE}")
        arrival = landing.read(file)
        if arrival is None:
            return _left(file, {"name": file.name}, STILL_ARRIVING)
        if isinstance(arrival, Stray):
            return _set_aside(arrival, landing)
        return _ingest(arrival, landing, settings, store, now, lease.check)


def _set_aside(stray: Stray, landing: LandingZone) -> BatchOutcome:
    """Refuse an entry that is not a regular file; its name and size are all that is known or reported."""
    target, reason = landing.set_aside(stray), stray.reason()
    return BatchOutcome(
        str(stray.path), False, stray.describe(), reasons=[reason], quarantined_to=str(target),
        report=f"- {reason}",
    )  # fmt: skip


def _ingest(
    arrival: Arrival,
    landing: LandingZone,
    settings: Settings,
    store: ArtifactStore,
    now: int,
    still_locked: Callable[[], None],
) -> BatchOutcome:
    file, info = arrival.path, arrival.describe()
    pointer = current_snapshot(store)
    previous = pointer["snapshot"]["id"] if pointer else None
    if pointer and info["sha256"] in {b["sha256"] for b in pointer["batches"]}:
        # Already part of the snapshot: make sure its bytes are kept, then clear it from the landing zone.
        kept = store.put_bytes(arrival.data, kind="batch", suffix="".join(file.suffixes))
        cleared = landing.take_in(arrival, kept, store)
        reasons = ["already ingested"] + ([] if cleared else [CHANGED])
        return BatchOutcome(
            str(file), True, info, snapshot=previous, previous=previous, reasons=reasons,
            left_in_landing=not cleared,
        )  # fmt: skip

    def refuse(
        reasons: list[str],
        report: str = "",
        docs: str | None = None,
        validation: str | None = None,
        **details: Any,
    ) -> BatchOutcome:
        details = {"batch": info, "current_snapshot": previous, "validation": validation, **details}
        target, cleared = landing.quarantine(arrival, reasons, details)
        return BatchOutcome(
            str(file), False, info, previous=previous, snapshot=previous,
            reasons=reasons + ([] if cleared else [CHANGED]), quarantined_to=str(target),
            report=report or "\n".join(f"- {r}" for r in reasons), docs=docs, validation=validation,
            left_in_landing=not cleared,
        )  # fmt: skip

    if safe_name(file.name) != file.name:
        return refuse([f"file name {file.name!r} has characters outside [A-Za-z0-9._-]; rename it"])
    try:
        batch = sources.read_file(file, settings.data, strict_columns=True, data=arrival.data)
    except (sources.SourceError, schema.ContractError) as exc:
        return refuse([str(exc)])

    current = store.get_frame(ArtifactRef(**pointer["snapshot"])) if pointer else None
    with tempfile.TemporaryDirectory() as tmp:
        result = validate_batch(batch, current, settings.validation, now, docs_dir=Path(tmp))
        docs = store.write_tree(f"ingests/{info['sha256'][:16]}/data-docs", Path(tmp))
    validation = store.put_json(result.to_dict(), kind="batch-validation").id
    if not result.passed:
        return refuse(
            result.reasons(), result.markdown(batch), docs, validation, checks=result.to_dict()["checks"]
        )

    merged = merge(current, batch)
    ref = store.put_frame(merged, kind="snapshot")
    batch_ref = store.put_bytes(arrival.data, kind="batch", suffix="".join(file.suffixes))
    if not landing.unchanged(arrival):  # its bytes may be a copy in progress: publish nothing
        return _left(file, info, CHANGED, previous)
    batches = [
        *(pointer["batches"] if pointer else []),
        {**info, "artifact": batch_ref.id, "validation": validation},
    ]
    still_locked()  # a holder paused past the lock's ttl must not move the pointer another holder moved
    advance_snapshot(
        store, {"snapshot": ref.model_dump(), "previous": previous, "rows": merged.height, "batches": batches}
    )
    cleared = landing.take_in(arrival, batch_ref, store)
    added = merged.height - (current.height if current is not None else 0)
    return BatchOutcome(
        str(file), True, info, rows=batch.height, added=added, snapshot=ref.id, previous=previous, docs=docs,
        report=result.markdown(), validation=validation, reasons=[] if cleared else [CHANGED],
        left_in_landing=not cleared,
    )  # fmt: skip


def merge(current: pl.DataFrame | None, batch: pl.DataFrame) -> pl.DataFrame:
    """The snapshot after `batch`: previous events plus new ones, one row per event, in canonical order
    (without timestamps: the order of arrival, the batch after what came before)."""
    frames = [batch] if current is None else [current, batch]
    merged = pl.concat(frames, how="diagonal_relaxed")
    merged = merged.unique(schema.event_key(merged), keep="first", maintain_order=True)
    return schema.ordered(schema.conform(merged, "snapshot"))


def _left(file: Path, info: dict[str, Any], reason: str, snapshot: str | None = None) -> BatchOutcome:
    return BatchOutcome(
        str(file),
        False,
        info,
        snapshot=snapshot,
        previous=snapshot,
        reasons=[reason],
        report=f"- {reason}",
        left_in_landing=True,
    )
