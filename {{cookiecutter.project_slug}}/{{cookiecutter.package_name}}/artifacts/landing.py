"""The landing zone, the quarantine and the current-snapshot pointer: where batches move, and nothing is lost.

- A batch file arrives in `ingest.landing`. Taken in, its bytes are stored content-addressed (kind `batch`)
  before it leaves the landing zone; refused, it moves to `ingest.quarantine` with `<name>.reason.json` beside
  it. Either way the original bytes survive.
- The current snapshot is a small JSON pointer in the store (`snapshots/current.json`); every move of it is
  also written to `snapshots/history/`, so older snapshots stay reachable.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..settings import IngestConfig
from .store import ArtifactRef, ArtifactStore

CURRENT = "snapshots/current.json"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class LandingZone:
    def __init__(self, cfg: IngestConfig) -> None:
        self.landing = Path(cfg.landing)
        self.quarantine_dir = Path(cfg.quarantine)

    def waiting(self) -> list[Path]:
        """Batch files waiting in the landing zone, oldest name first (hidden and partial files skipped)."""
        if not self.landing.is_dir():
            return []
        return sorted(p for p in self.landing.iterdir() if p.is_file() and not p.name.startswith("."))

    def take_in(self, file: Path, store: ArtifactStore) -> ArtifactRef:
        """Keep the batch's bytes in the store, then clear it from the landing zone (files elsewhere stay)."""
        ref = store.put_file(file, kind="batch")
        if file.resolve().parent == self.landing.resolve():
            file.unlink()
        return ref

    def quarantine(self, file: Path, reasons: list[str], details: dict[str, Any]) -> Path:
        """Move (or, for a file outside the landing zone, copy) a refused batch aside with its reasons."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / _free_name(self.quarantine_dir, safe_name(file.name))
        if file.resolve().parent == self.landing.resolve():
            shutil.move(file, target)
        else:
            shutil.copy2(file, target)
        reason = {
            "file": file.name,
            "quarantined_at": _now(),
            "reasons": reasons,
            **details,
        }
        (target.parent / f"{target.name}.reason.json").write_text(json.dumps(reason, indent=2, default=str))
        return target

    def quarantined(self) -> list[dict[str, Any]]:
        if not self.quarantine_dir.is_dir():
            return []
        out = []
        for reason in sorted(self.quarantine_dir.glob("*.reason.json")):
            out.append({"name": reason.name.removesuffix(".reason.json"), **json.loads(reason.read_text())})
        return out

    def release(self, name: str) -> Path:
        """Move a (fixed) batch back to the landing zone, to be ingested again."""
        source = self.quarantine_dir / safe_name(name)
        if not source.is_file():
            raise FileNotFoundError(f"no quarantined batch named {name!r} in {self.quarantine_dir}")
        self.landing.mkdir(parents=True, exist_ok=True)
        target = self.landing / _free_name(self.landing, source.name)
        shutil.move(source, target)
        (self.quarantine_dir / f"{source.name}.reason.json").unlink(missing_ok=True)
        return target


def safe_name(name: str) -> str:
    """A plain file name (no directories, no odd characters): `..\\..\\evil.csv` becomes `evil.csv`."""
    cleaned = _SAFE_NAME.sub("_", Path(name).name).strip("._") or "batch"
    return cleaned


def current_snapshot(store: ArtifactStore) -> dict[str, Any] | None:
    """The pointer to the current snapshot ({snapshot: ref, rows, batches, ...}), or None before the first."""
    try:
        return json.loads(store.read_text(CURRENT))
    except FileNotFoundError:
        return None


def advance_snapshot(store: ArtifactStore, pointer: dict[str, Any]) -> None:
    """Move the current-snapshot pointer (an atomic write) and keep the move in the history."""
    pointer = {**pointer, "at": _now()}
    text = json.dumps(pointer, indent=2, sort_keys=True)
    store.write_text(
        f"snapshots/history/{pointer['at'].replace(':', '')}-{pointer['snapshot']['id'][:12]}.json", text
    )
    store.write_text(CURRENT, text)


def _free_name(directory: Path, name: str) -> str:
    candidate, n = name, 1
    while (directory / candidate).exists():
        candidate, n = f"{Path(name).stem}-{n}{Path(name).suffix}", n + 1
    return candidate


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
