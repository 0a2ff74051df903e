"""Rebuilding a run from its manifest alone: the settings of the rebuild, the thread rule, the verdict.

The CLI's `reproduce` runs the pipeline flow with `rebuild_config`'s settings and hands both manifests to
`judge`; everything that decides what a rebuild is and whether it matched lives here, without Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .artifacts import runs as runs_catalog
from .artifacts.manifest import RunManifest
from .settings import deep_merge

# Sections a rebuild sets itself, so their differences from the run say nothing about the run.
_REBUILD_OWNS = ("storage.", "promotion.")


def rebuild_config(manifest: RunManifest, changes: dict[str, Any], scratch: str) -> dict[str, Any]:
    """The resolved config of a rebuild of `manifest`'s run, with `changes` laid over it.

    The rebuild writes to a private store (`scratch`): it neither reads the original outputs nor shares
    their cache entries. Promotion is off: it reads and moves the registry, and a rebuild registers nothing.
    """
    isolated = {"storage": {"uri": scratch}, "promotion": {"enabled": False}}
    return deep_merge(manifest.config, {**changes, **isolated})


def torch_threads(manifest: RunManifest) -> int:
    """The torch thread count the run trained with: float sums are split across threads, so another
    count changes the last bits of the weights; a rebuild uses the recorded one, whatever the machine has."""
    return manifest.environment.torch.threads


def pin_threads(manifest: RunManifest) -> int:
    """Set this process's torch thread count to the run's (`torch_threads`); returns it."""
    import torch  # heavy: only a rebuild needs it

    threads = torch_threads(manifest)
    torch.set_num_threads(threads)
    return threads


@dataclass(frozen=True)
class Verdict:
    """Whether a rebuild reproduced its run, and what to say about the differences."""

    difference: str | None  # the first artifact id that differs; None: reproduced
    config_notes: list[str] = field(default_factory=list)
    environment_notes: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        """Whether every artifact of the rebuild has the run's id (the notes may still list differences)."""
        return self.difference is None


def judge(expected: RunManifest, actual: RunManifest) -> Verdict:
    """Compare a rebuild's manifest (`actual`) with the run's (`expected`)."""
    diff = runs_catalog.compare(expected, actual)
    config_notes = [
        f"config {key}: {old!r} in the run, {new!r} in the rebuild"
        for key, old, new in diff["config"]
        if not key.startswith(_REBUILD_OWNS)
    ]
    environment_notes = [f"environment {key}: {old} then, {new} now" for key, old, new in diff["environment"]]
    environment_notes += [f"package {name}: {old} then, {new} now" for name, old, new in diff["packages"]]
    return Verdict(runs_catalog.first_difference(expected, actual), config_notes, environment_notes)
