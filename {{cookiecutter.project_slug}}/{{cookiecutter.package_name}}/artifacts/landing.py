"""The landing zone, the quarantine and the current-snapshot pointer: where batches move, and nothing is lost.

Arrival protocol (what writers into `ingest.landing` should do, and what `ingest` and `watch` rely on):

- Write under a temporary name, then rename into place: a dot-prefixed name (`.events.csv`) or one ending in
  `.part`, `.tmp`, `.partial` or `.crdownload` is never a batch. A rename is atomic: the batch appears whole.
- Independently, a file is ready only once its size and mtime have held still for `ingest.settle_seconds`
  (mtime compared with this machine's clock; a zone object that looks repeatedly also restarts the wait when
  it sees a file change). So a plain `cp` into the landing zone is safe as long as it never stalls that long.
- A ready file's bytes are read once; everything (hash, parse, validation, storage) is done from those bytes.
  Taken in, the bytes are stored content-addressed (kind `batch`) and found in the store before the file
  leaves the landing zone; refused, they are written to `ingest.quarantine` with `<name>.reason.json` beside
  them before it leaves. Either way the file is removed only if it is still exactly what was read (size,
  mtime, inode, sha256); one that changed stays for the next ingest.
- Only regular files directly in the landing zone are batches. A symbolic link, a FIFO or a device there is
  refused without being opened or followed (lstat, O_NOFOLLOW): it is moved, as it is, into the quarantine
  with a reason naming it and its size, so it is reported once. A path that resolves outside the landing
  zone (an event's `payload.path`, `../x`, a file below a linked folder) is never ingested.
- The current snapshot is a small JSON pointer in the store (`snapshots/current.json`); every move of it is
  also written to `snapshots/history/`, so older snapshots stay reachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from ..settings import IngestConfig
from .store import ArtifactRef, ArtifactStore

CURRENT = "snapshots/current.json"
TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class FileStamp(NamedTuple):
    """What a file looked like: a write changes the mtime (and usually the size), a rename-over the inode."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class Arrival:
    """A landed file's bytes, read once, and the file's stamp when they were read."""

    path: Path
    data: bytes
    stamp: FileStamp
    sha256: str

    def describe(self) -> dict[str, Any]:
        """The batch as the ingest result and its quarantine reason name it."""
        return {"name": self.path.name, "size": len(self.data), "sha256": self.sha256}


class Look(NamedTuple):
    """Batch files in the landing zone, oldest name first: ready ones, and ones still settling."""

    ready: list[Path]
    settling: list[Path]


@dataclass(frozen=True)
class Stray:
    """A landing-zone entry that is not a regular file; only its name, size (lstat) and kind are known."""

    path: Path
    size: int
    kind: str  # "a symbolic link", "a FIFO", ...

    def describe(self) -> dict[str, Any]:
        """The entry as the ingest result and its quarantine reason name it (its bytes were never read)."""
        return {"name": self.path.name, "size": self.size}

    def reason(self) -> str:
        """Why the entry was refused, for its `.reason.json`."""
        return (
            f"{self.path.name} ({self.size} bytes) is {self.kind}, not a regular file: "
            "refused without reading or following it"
        )


class OutsideLandingZone(ValueError):
    """A path to ingest that does not name a file directly in the landing zone (after resolving links)."""


class BatchMissing(IOError):
    """A batch's bytes are not (fully) in the store although they were just written: the file must stay."""


class LandingZone:
    """The landing and quarantine folders of `ingest`: which batches are ready, read once, cleared or refused.

    An instance remembers what it saw, so `watch` keeps one for its whole life (see `look`).
    """

    def __init__(self, cfg: IngestConfig) -> None:
        self.landing = Path(cfg.landing)
        self.quarantine_dir = Path(cfg.quarantine)
        self.settle_seconds = cfg.settle_seconds
        # For a zone that looks more than once (`watch`): each file's last stamp and when it last changed.
        self._seen: dict[Path, tuple[FileStamp, float]] = {}

    def look(self) -> Look:
        """Ready and settling batch files (regular files only); temporary names are in neither list."""
        files = self._entries(regular=True)
        ready: list[Path] = []
        settling: list[Path] = []
        for file in files:
            try:
                (ready if self._ready(file, stamp(file)) else settling).append(file)
            except FileNotFoundError:  # taken by another ingest (or renamed) since the listing
                continue
        self._seen = {f: seen for f, seen in self._seen.items() if f in files}
        return Look(ready, settling)

    def refused(self) -> list[Path]:
        """Entries that are not regular files (symbolic links, FIFOs, ...): never batches, never opened."""
        return self._entries(regular=False)

    def waiting(self) -> list[Path]:
        """Batch files ready to be taken in, oldest name first."""
        return self.look().ready

    def holds(self, file: Path) -> bool:
        """Whether `file` names an entry directly in the landing zone (the entry itself is not followed)."""
        file = Path(file)
        return file.name not in ("", ".", "..") and file.parent.resolve() == self.landing.resolve()

    def confine(self, file: Path | str) -> Path:
        """`file` as an entry of the landing zone, or OutsideLandingZone: the one check on a path someone else
        names (an event's payload, a flow parameter), made before anything is opened."""
        file = Path(file)
        if not self.holds(file):
            raise OutsideLandingZone(
                f"{file} is not in the landing zone {self.landing.resolve()}: only files there are ingested"
            )
        return self.landing / file.name

    def stray(self, file: Path) -> Stray | None:
        """What `file` is, if not a regular file: looked at with lstat, never opened or followed."""
        st = os.lstat(file)
        if stat.S_ISREG(st.st_mode):
            return None
        return Stray(file, st.st_size, _kind(st.st_mode))

    def land(self, source: Path) -> Path:
        """Copy a file named from elsewhere into the landing zone as writers should (a temporary name, then a
        rename), its mtime kept; the file itself stays. For a person's `ingest --path`: links are followed."""
        self.landing.mkdir(parents=True, exist_ok=True)
        target = self.landing / _free_name(self.landing, safe_name(source.name))
        partial = self.landing / f".{target.name}.part"
        shutil.copy2(source, partial)
        partial.replace(target)
        return target

    def await_ready(self, file: Path) -> bool:
        """Wait while a landed file settles; False, at once, if it changes meanwhile (it is being written).

        Waits about `ingest.settle_seconds` at most, longer only for an mtime ahead of this machine's clock.
        """
        if is_temporary(file.name):
            return False
        first = stamp(file)
        deadline = time.monotonic() + 2 * self.settle_seconds + 1
        while not self._ready(file, current := stamp(file)):
            if current != first or time.monotonic() > deadline:
                return False
            time.sleep(min(0.2, self.settle_seconds))
        return True

    def read(self, file: Path) -> Arrival | Stray | None:
        """The file's bytes, read once; a Stray, unread, if it is not a regular file (a link swapped in after
        it was listed is caught by O_NOFOLLOW); None if the file changed while they were read."""
        try:
            fh = _open_regular(file)
        except _NotRegular:
            return self.stray(file) or Stray(file, 0, "not a regular file")
        with fh:
            before = _stamp_of(os.fstat(fh.fileno()))
            data = fh.read()
        if stamp(file) != before or len(data) != before.size:
            return None
        return Arrival(file, data, before, hashlib.sha256(data).hexdigest())

    def unchanged(self, arrival: Arrival) -> bool:
        """Whether the file is still exactly the bytes that were read (stamp and content)."""
        try:
            with _open_regular(arrival.path) as fh:
                now = _stamp_of(os.fstat(fh.fileno()))
                digest = hashlib.file_digest(fh, "sha256").hexdigest() if now == arrival.stamp else ""
        except (FileNotFoundError, _NotRegular):
            return False
        return now == arrival.stamp and digest == arrival.sha256

    def take_in(self, arrival: Arrival, ref: ArtifactRef, store: ArtifactStore) -> bool:
        """Clear a batch whose bytes are stored as `ref` from the landing zone.

        False if the file changed since it was read: it stays, for the next ingest. Files outside the landing
        zone stay where they are.
        """
        if not store.holds(ref):
            raise BatchMissing(f"{ref.uri} is not in the store: {arrival.path} stays in the landing zone")
        return self._clear(arrival)

    def quarantine(self, arrival: Arrival, reasons: list[str], details: dict[str, Any]) -> tuple[Path, bool]:
        """Keep a refused batch's bytes aside with its reasons, then clear it from the landing zone.

        Returns where the bytes went and whether the landed file was cleared (False if it changed since it was
        read: the refused version is kept, the changed file stays for the next ingest).
        """
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / _free_name(self.quarantine_dir, safe_name(arrival.path.name))
        _write_durably(target, arrival.data)
        reason = {"file": arrival.path.name, "quarantined_at": _now(), "reasons": reasons, **details}
        _write_durably(
            target.parent / f"{target.name}.reason.json", json.dumps(reason, indent=2, default=str).encode()
        )
        return target, self._clear(arrival)

    def set_aside(self, stray: Stray) -> Path:
        """Move a refused entry, as it is (a link stays a link, its target untouched and unread), into the
        quarantine with its reason, so it is reported once rather than at every ingest."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / _free_name(self.quarantine_dir, safe_name(stray.path.name))
        try:
            os.rename(stray.path, target)  # renames the entry itself: never follows a link
        except OSError:
            if not stray.path.is_symlink():
                raise
            # Another file system: a link is only its target's name, so it is re-created there.
            os.symlink(os.readlink(stray.path), target)
            stray.path.unlink()
        reason = {
            "file": stray.path.name,
            "quarantined_at": _now(),
            "reasons": [stray.reason()],
            "batch": stray.describe(),
        }
        _write_durably(target.parent / f"{target.name}.reason.json", json.dumps(reason, indent=2).encode())
        return target

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined batch's `.reason.json` plus its file `name`, by name; empty before the first."""
        if not self.quarantine_dir.is_dir():
            return []
        out = []
        for reason in sorted(self.quarantine_dir.glob("*.reason.json")):
            out.append({"name": reason.name.removesuffix(".reason.json"), **json.loads(reason.read_text())})
        return out

    def release(self, name: str) -> Path:
        """Move a (fixed) batch back to the landing zone, to be ingested again."""
        source = self.quarantine_dir / safe_name(name)
        if not os.path.lexists(source):
            raise FileNotFoundError(f"no quarantined batch named {name!r} in {self.quarantine_dir}")
        if stray := self.stray(source):
            raise FileNotFoundError(f"{stray.reason()}; put the file itself in the landing zone instead")
        self.landing.mkdir(parents=True, exist_ok=True)
        target = self.landing / _free_name(self.landing, source.name)
        shutil.move(source, target)
        (self.quarantine_dir / f"{source.name}.reason.json").unlink(missing_ok=True)
        return target

    def _entries(self, regular: bool) -> list[Path]:
        """Regular files, or the other entries, named directly in the landing zone (folders and temporary
        names are in neither), by name. DirEntry answers from lstat here: nothing is followed."""
        if not self.landing.is_dir():
            return []
        with os.scandir(self.landing) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if not is_temporary(e.name)
                and not e.is_dir(follow_symlinks=False)
                and e.is_file(follow_symlinks=False) == regular
            )

    def _ready(self, file: Path, current: FileStamp) -> bool:
        now = time.time()
        previous = self._seen.get(file)
        if previous is None or previous[0] != current:
            # First sight: trust the mtime. A change seen by this zone: the wait starts again now.
            self._seen[file] = (current, float("-inf") if previous is None else now)
        changed_at = self._seen[file][1]
        quiet = min(now - current.mtime_ns / 1e9, now - changed_at)
        return quiet >= self.settle_seconds

    def _clear(self, arrival: Arrival) -> bool:
        if not self.holds(arrival.path) or not arrival.path.exists():
            return True  # elsewhere: stays; gone: a concurrent ingest of the same bytes cleared it
        if not self.unchanged(arrival):
            return False
        arrival.path.unlink(missing_ok=True)
        return True


def is_temporary(name: str) -> bool:
    """A name writers use while a file is incomplete: hidden, or `.part`/`.tmp`/`.partial`/`.crdownload`."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def stamp(file: Path) -> FileStamp:
    """The entry's stamp from lstat: a link is described, not followed."""
    return _stamp_of(os.lstat(file))


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


def _stamp_of(st: os.stat_result) -> FileStamp:
    return FileStamp(st.st_size, st.st_mtime_ns, st.st_ino)


class _NotRegular(OSError):
    """Opened with O_NOFOLLOW, the path was a link, or it is not a regular file."""


def _open_regular(file: Path) -> Any:
    """`file` opened for reading only if it is a regular file: a link is not followed (O_NOFOLLOW) and a FIFO
    does not block the open (O_NONBLOCK, then refused by its mode)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(file, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _NotRegular(str(file)) from exc  # ELOOP: a symbolic link; ENXIO: a socket or FIFO
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotRegular(str(file))
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    kinds = {stat.S_ISLNK: "a symbolic link", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    kinds |= {stat.S_ISCHR: "a device", stat.S_ISBLK: "a device", stat.S_ISDIR: "a folder"}
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def _write_durably(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: the quarantined copy exists whole before the original goes."""
    tmp = path.parent / f".{path.name}.tmp"
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _free_name(directory: Path, name: str) -> str:
    candidate, n = name, 1
    while (directory / candidate).exists():
        candidate, n = f"{Path(name).stem}-{n}{Path(name).suffix}", n + 1
    return candidate


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
