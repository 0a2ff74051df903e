"""How much memory a block of code needed: the peak resident set size of this process while it ran.

On Linux the kernel keeps the process's high-water mark (VmHWM) and lets the process reset it
(`/proc/self/clear_refs`), so the peak is exact: an array allocated and freed within a millisecond still
counts. The mark is one per process, so blocks that overlap (nested, or in two threads) share it: before a
block resets it, every open block takes the mark into its own peak, and none loses what it saw.
Elsewhere (or where /proc forbids the reset) a background thread samples the RSS every 10 ms; a spike
shorter than that can be missed there.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Self

_MB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_lock = threading.Lock()
_open: set[PeakMemory] = set()  # blocks using the kernel's mark, to fold it into before each reset


def _high_water() -> int | None:
    """The kernel's peak RSS of this process since the last reset, in bytes (None off Linux)."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _reset_high_water() -> bool:
    """Set the peak RSS back to the current RSS ("5" in clear_refs); False where that is not allowed."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _high_water() is not None


@cache
def _exact() -> bool:
    return _reset_high_water()


class PeakMemory:
    """Context manager: `peak_rss_mb` is the largest RSS seen in the block, `peak_mb` its rise above entry.

    RSS is the whole process (what the machine must provide), including what was held before the block.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self._interval = interval
        self._start = self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        import psutil

        self._process = psutil.Process()
        if _exact():
            with _lock:
                self._fold_high_water()
                _reset_high_water()
                self._start = self._peak = self._process.memory_info().rss
                _open.add(self)
            return self
        self._start = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._thread is None:
            with _lock:
                self._fold_high_water()
                _open.discard(self)
        else:
            self._stop.set()
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)

    @staticmethod
    def _fold_high_water() -> None:
        """Give every open block the kernel's mark as it stands (called under the lock)."""
        mark = _high_water()
        if mark is not None:
            for block in _open:
                block._peak = max(block._peak, mark)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def peak_rss_mb(self) -> float:
        """The largest RSS of the whole process seen in the block, in MiB."""
        return self._peak / _MB

    @property
    def peak_mb(self) -> float:
        """How far the RSS rose above its value on entry, in MiB: what the block itself needed."""
        return (self._peak - self._start) / _MB
