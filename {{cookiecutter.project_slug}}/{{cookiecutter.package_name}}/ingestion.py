"""Taking a new batch file into the current snapshot, or refusing it with reasons, and losing nothing.

`ingest_batch` is the one call the ingest flow's task wraps. Order matters for "nothing lost": the new
snapshot is stored and the pointer moved before the batch leaves the landing zone; a refused batch is moved
to quarantine with its reasons and the current snapshot is not touched. A batch whose bytes were already
taken in changes nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .artifacts import ArtifactRef, ArtifactStore
from .artifacts.landing import LandingZone, advance_snapshot, current_snapshot, safe_name
from .data import schema, sources
from .settings import Settings
from .validation import validate_batch

EVENT = ["user_id", "item_id", "timestamp"]


@dataclass(frozen=True)
class BatchOutcome:
    file: str
    accepted: bool
    batch: dict[str, Any]  # name, size, sha256 of the file's bytes
    rows: int = 0
    added: int = 0  # new events the batch brought to the snapshot
    snapshot: str | None = None  # the current snapshot id after this batch
    previous: str | None = None
    reasons: list[str] = field(default_factory=list)
    quarantined_to: str | None = None
    report: str = ""  # Markdown: failed expectations with offending rows
    docs: str | None = None  # URI of the GX Data Docs of this batch's validation
    validation: str | None = None  # artifact id of the stored validation result

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_batch(file: Path, settings: Settings, store: ArtifactStore, now: int) -> BatchOutcome:
    landing = LandingZone(settings.ingest)
    info = describe_file(file)
    pointer = current_snapshot(store)
    previous = pointer["snapshot"]["id"] if pointer else None
    if pointer and info["sha256"] in {b["sha256"] for b in pointer["batches"]}:
        landing.take_in(file, store)  # already part of the snapshot: just clear it from the landing zone
        return BatchOutcome(
            str(file), True, info, snapshot=previous, previous=previous, reasons=["already ingested"]
        )

    def refuse(
        reasons: list[str],
        report: str = "",
        docs: str | None = None,
        validation: str | None = None,
        **details: Any,
    ) -> BatchOutcome:
        details = {"batch": info, "current_snapshot": previous, "validation": validation, **details}
        target = landing.quarantine(file, reasons, details)
        return BatchOutcome(
            str(file), False, info, previous=previous, snapshot=previous, reasons=reasons,
            quarantined_to=str(target), report=report or "\n".join(f"- {r}" for r in reasons), docs=docs,
            validation=validation,
        )  # fmt: skip

    if safe_name(file.name) != file.name:
        return refuse([f"file name {file.name!r} has characters outside [A-Za-z0-9._-]; rename it"])
    try:
        batch = sources.read_file(file, settings.data, strict_columns=True)
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
    batch_ref = store.put_file(file, kind="batch")
    batches = [
        *(pointer["batches"] if pointer else []),
        {**info, "artifact": batch_ref.id, "validation": validation},
    ]
    advance_snapshot(
        store, {"snapshot": ref.model_dump(), "previous": previous, "rows": merged.height, "batches": batches}
    )
    landing.take_in(file, store)
    added = merged.height - (current.height if current is not None else 0)
    return BatchOutcome(
        str(file), True, info, rows=batch.height, added=added, snapshot=ref.id, previous=previous, docs=docs,
        report=result.markdown(), validation=validation,
    )  # fmt: skip


def merge(current: pl.DataFrame | None, batch: pl.DataFrame) -> pl.DataFrame:
    """The snapshot after `batch`: previous events plus new ones, one row per event, in canonical order."""
    frames = [batch] if current is None else [current, batch]
    merged = pl.concat(frames, how="diagonal_relaxed").unique(EVENT, keep="first", maintain_order=True)
    return schema.conform(merged, "snapshot").sort("timestamp", "user_id", "item_id", maintain_order=True)


def describe_file(file: Path) -> dict[str, Any]:
    data = file.read_bytes()
    return {"name": file.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
