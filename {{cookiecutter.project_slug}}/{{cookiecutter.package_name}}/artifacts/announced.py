"""What `watch` already announced, kept in the landing zone so a restarted watch does not repeat itself."""

from __future__ import annotations

import json
from pathlib import Path


class Announced:
    """Files announced, by name, size and modification time (a file replaced under the same name is new),
    kept in a hidden file of the landing zone."""

    def __init__(self, landing: Path) -> None:
        self.path = landing / ".announced.json"
        self.keys: set[str] = set(json.loads(self.path.read_text())) if self.path.is_file() else set()

    @staticmethod
    def _key(file: Path) -> str:
        stat = file.stat()
        return f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}"

    def seen(self, file: Path) -> bool:
        """Whether `file`, as it is now, was announced."""
        return file.exists() and self._key(file) in self.keys

    def add(self, file: Path) -> None:
        """Record `file` as announced (written at once: a watch may be stopped at any moment)."""
        self.keys.add(self._key(file))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(sorted(self.keys)))
