"""How much memory a block of code needed: the peak resident set size of this process while it ran.

Sampled by a background thread (psutil, every 10 ms) rather than read from the kernel's high-water mark:
that mark is per process and cannot be reset portably, so it would report an earlier step's peak. A spike
shorter than the interval can be missed; the steps measured here hold their large arrays for seconds.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

_MB = 2**20


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
        self._start = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)

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
