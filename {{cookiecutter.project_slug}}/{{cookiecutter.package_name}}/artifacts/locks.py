"""A named lock held in the artifact store, so processes on any host that share the store take turns.

The lock is one small JSON object, `<root>/locks/<name>.lock`, recording its holder (token, host, pid, when)
and an expiry that the holder pushes forward from a background thread every ttl/3 seconds.

- Taking it is an exclusive create: `O_CREAT|O_EXCL` on a local store, a conditional PUT
  (`If-None-Match: *`) on S3. Whoever creates the object holds the lock; everyone else polls.
- A lock is stale when its holder runs on this host and its pid is gone (a SIGKILLed ingest: broken at once),
  or when its expiry has passed (a holder on another host that stopped refreshing: broken after at most the
  ttl). Expiries are compared with the waiter's clock, so hosts sharing a store need clocks in step (NTP)
  to well within the ttl.
- Breaking a stale lock must not break a fresh one taken meanwhile by another waiter. On S3 the waiter
  replaces the stale object with its own by a PUT conditional on the stale ETag (`If-Match`): a compare and
  swap. A local file has no compare and swap, so the waiter renames the stale file aside, checks that what it
  renamed is the stale record it judged, and puts it back otherwise.
- A holder whose refresh finds someone else's record lost the lock (it was paused for longer than the ttl).
  `Lease.check()` raises `LockLost` then, so a critical section can refuse to publish anything.
"""

from __future__ import annotations

import errno
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import fsspec.asyn


class LockTimeout(TimeoutError):
    """The lock stayed held by a live holder for longer than the caller would wait."""


class LockLost(RuntimeError):
    """The holder's lock expired and another process took it: the holder must not publish anything now."""


class _Backend(Protocol):
    """Exclusive create, read with a version, compare-and-swap replace and remove of one lock object."""

    def create(self, data: bytes) -> str | None: ...  # the new version, or None when the lock exists

    def read(self) -> tuple[bytes, str, float] | None: ...  # (data, version, age in seconds) or None

    def refresh(self, data: bytes, version: str) -> str | None: ...  # None when `version` is not current

    def take_over(self, data: bytes, version: str) -> str | None: ...  # replace a stale lock, likewise

    def remove(self, version: str) -> bool: ...  # False when `version` is not current


@contextmanager
def hold(backend: _Backend, name: str, ttl: float, wait: float) -> Iterator[Lease]:
    """Hold the lock for the `with` block (waiting up to `wait` seconds); refreshed until the block ends."""
    lease = _acquire(backend, name, ttl, wait)
    try:
        yield lease
    finally:
        lease.release()


class Lease:
    """A held lock: refreshes itself in a daemon thread until released."""

    def __init__(self, backend: _Backend, record: dict[str, Any], version: str, ttl: float) -> None:
        self.record, self._backend, self._version, self._ttl = record, backend, version, ttl
        self._mutex = threading.Lock()  # the refresher and check() must not see a version half-replaced
        self._stop = threading.Event()
        self._lost = False
        self._refresher = threading.Thread(
            target=self._refresh_loop, name=f"lock-{record['name']}", daemon=True
        )
        self._refresher.start()

    def check(self) -> None:
        """Raise `LockLost` unless the stored lock is still this holder's (call it before publishing)."""
        with self._mutex:
            current = self._backend.read()
            if self._lost or current is None or current[1] != self._version:
                self._lost = True
                raise LockLost(f"lock {self.record['name']!r} was taken over: {_holder(current)}")

    def release(self) -> None:
        """Stop refreshing and remove the lock, unless it was lost (then someone else's lock stays)."""
        self._stop.set()
        self._refresher.join()
        with self._mutex:
            if not self._lost:
                self._backend.remove(self._version)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            with self._mutex:
                record = {**self.record, "expires": time.time() + self._ttl}
                version = self._backend.refresh(_encode(record), self._version)
                if version is None:
                    self._lost = True
                    return
                self.record, self._version = record, version


def _acquire(backend: _Backend, name: str, ttl: float, wait: float) -> Lease:
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        now = time.time()
        record = {
            "name": name,
            "token": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired": now,
            "expires": now + ttl,
        }
        version = backend.create(_encode(record))
        current = None if version is not None else backend.read()
        if version is None and current is not None and _stale(current, ttl):
            version = backend.take_over(_encode(record), current[1])
        if version is not None:
            return Lease(backend, record, version, ttl)
        if time.monotonic() > deadline:
            raise LockTimeout(f"lock {name!r} still held after {wait:.0f} s: {_holder(current)}")
        # Jitter keeps waiters that started together from polling in lockstep.
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 1.0)


def _stale(current: tuple[bytes, str, float], ttl: float) -> bool:
    data, _, age = current
    try:
        record = json.loads(data)
        host, pid, expires = record["host"], int(record["pid"]), float(record["expires"])
    except (ValueError, KeyError, TypeError):
        return age > ttl  # a holder killed between creating and writing its lock file
    if host == socket.gethostname() and not _alive(pid):
        return True
    return time.time() > expires


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        # A killed child its parent has not reaped yet is a zombie: it exists but will never release.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


def _holder(current: tuple[bytes, str, float] | None) -> str:
    if current is None:
        return "no holder"
    try:
        record = json.loads(current[0])
        return f"held by pid {record['pid']} on {record['host']} since {time.ctime(record['acquired'])}"
    except (ValueError, KeyError, TypeError):
        return "held by an unreadable lock record"


# -- backends --------------------------------------------------------------------------------------------


class LocalBackend:
    """A lock file in a local (or NFS-mounted) directory; a version is the file's content."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, data: bytes) -> str | None:
        """The new version, or None when the lock file exists; written and fsynced before it counts."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return data.decode()

    def read(self) -> tuple[bytes, str, float] | None:
        """(data, version, age in seconds from the file's mtime), or None when there is no lock."""
        try:
            with open(self.path, "rb") as fh:
                data, mtime = fh.read(), os.fstat(fh.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return data, data.decode(errors="replace"), time.time() - mtime

    def refresh(self, data: bytes, version: str) -> str | None:
        """Rewrite the holder's record (through a rename); None when `version` is no longer the file's."""
        # Only the holder refreshes, and nobody breaks a lock that is being refreshed, so check-then-rename
        # is safe here.
        current = self.read()
        if current is None or current[1] != version:
            return None
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return data.decode()

    def take_over(self, data: bytes, version: str) -> str | None:
        """Break the stale lock `version` and create ours; None when another waiter got there first."""
        return self.create(data) if self.remove(version) else None

    def remove(self, version: str) -> bool:
        """Remove the lock only if it is still `version` (renamed aside, checked, put back otherwise)."""
        aside = f"{self.path}.{uuid.uuid4().hex}.broken"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        with open(aside, "rb") as fh:
            moved = fh.read().decode(errors="replace")
        if moved != version:
            # Another waiter broke the stale lock and took a fresh one between our read and our rename: put
            # it back (link fails only if a third process created a lock meanwhile; its holder then wins).
            with suppress(FileExistsError):
                os.link(aside, self.path)
        os.unlink(aside)
        return moved == version


class S3Backend:
    """A lock object on S3 (or an S3-compatible store with conditional writes); a version is its ETag."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)

    def create(self, data: bytes) -> str | None:
        """The new ETag, or None when the lock object exists (`If-None-Match: *`)."""
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str, float] | None:
        """(data, ETag, age in seconds from LastModified), or None when there is no lock."""

        async def get() -> tuple[bytes, str, float] | None:
            try:
                response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            except FileNotFoundError:
                return None
            async with response["Body"] as body:
                data = await body.read()
            age = time.time() - response["LastModified"].timestamp()
            return data, response["ETag"], age

        return fsspec.asyn.sync(self.fs.loop, get)

    def refresh(self, data: bytes, version: str) -> str | None:
        """Rewrite the holder's record if the ETag is still `version`; None otherwise."""
        return self._put(data, IfMatch=version)

    def take_over(self, data: bytes, version: str) -> str | None:
        """Replace the stale lock `version` with ours; None when another waiter's PUT matched first."""
        return self._put(data, IfMatch=version)  # a compare and swap: only one waiter's PUT matches

    def remove(self, version: str) -> bool:
        """Delete the lock if its ETag is still `version`; False when it is gone or someone else's."""
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=version)
        except (FileNotFoundError, OSError):
            return False
        return True

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except (FileExistsError, FileNotFoundError):
            return None  # If-None-Match: the lock exists; If-Match: it is gone
        except OSError as exc:
            # 412 on If-Match (someone else's version now), 409 when two conditional writes raced.
            if exc.errno in (errno.EINVAL, errno.EBUSY) or "Conditional" in str(exc):
                return None
            raise
        return response["ETag"]
