"""May the monitor emit the drift event now? At most once per champion and data window, and no more often than
a cooldown allows.

A drift event starts a retrain. For the same champion and the same snapshot a second event brings nothing:
the retrain sees the same data, builds the same model (its steps are cache hits) and the registry hands back
the version it already judged. So each emitted event is recorded as an acknowledgement (champion, snapshot,
what drifted), and a later check of the same window stays quiet; a new snapshot or a new champion re-arms
the event. The cooldown bounds the rate whatever changes, so hourly batches that all look drifted start one
retrain per cooldown, not one per hour.

Pure: the acknowledgements come in as values (the registry keeps them, see `Registry.acknowledge_drift`,
which calls `should_emit` and records the result in one transaction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .monitoring import DriftCheck

DECAY = "decay"  # the signal name of a fall of the primary metric, beside the drifted feature names


@dataclass(frozen=True)
class Acknowledgement:
    """A drift event that was emitted: for which champion and snapshot, what drifted, when, by which run."""

    at: datetime
    champion: int
    snapshot_id: str
    signals: tuple[str, ...]
    actor: str

    def describe(self) -> str:
        """The reason a later check stays quiet, as the monitor logs it."""
        return (
            f"drift already reported at {self.at:%Y-%m-%d %H:%M:%S} UTC for champion v{self.champion} "
            f"on snapshot {self.snapshot_id[:12]}"
        )


@dataclass(frozen=True)
class EmitDecision:
    """The monitor's answer: emit or not, and a message saying why, for the run's log."""

    emit: bool
    message: str
    previous: Acknowledgement | None = None  # the acknowledgement that holds the event back

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the acknowledgement's time as ISO text): what the monitor's task returns."""
        out = asdict(self)
        if self.previous is not None:
            out["previous"]["at"] = self.previous.at.isoformat(timespec="seconds")
        return out


def signals(check: DriftCheck, max_decay: float) -> tuple[str, ...]:
    """What made the check drift: the counted features beyond their threshold, and `decay`."""
    names = {
        c["column"] for c in check.event_columns + check.prediction_columns if c["drifted"] and c["counted"]
    }
    if check.performance.get("decay", 0.0) > max_decay:
        names.add(DECAY)
    return tuple(sorted(names))


def should_emit(
    champion: int,
    snapshot_id: str,
    same_window: Acknowledgement | None,
    latest: Acknowledgement | None,
    now: datetime,
    cooldown: timedelta,
) -> EmitDecision:
    """Emit unless this champion and snapshot were reported already (`same_window`) or the latest event of
    any window (`latest`) is younger than `cooldown`."""
    if same_window is not None:
        return EmitDecision(False, f"{same_window.describe()}: no new event", same_window)
    if latest is not None and now - latest.at < cooldown:
        minutes = cooldown.total_seconds() / 60
        return EmitDecision(
            False,
            f"{latest.describe()}, within the {minutes:g}-minute cooldown (deploy.drift_cooldown_minutes): "
            "no new event",
            latest,
        )
    return EmitDecision(True, f"drift event for champion v{champion} on snapshot {snapshot_id[:12]}")
