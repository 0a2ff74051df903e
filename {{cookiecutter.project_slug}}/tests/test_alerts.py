"""When the monitor may emit the drift event (alerts.py): pure, no registry and no Prefect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from {{ cookiecutter.package_name }}.alerts import DECAY, Acknowledgement, should_emit, signals
from {{ cookiecutter.package_name }}.monitoring import DriftCheck

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _ack(champion: int, snapshot: str, at: datetime) -> Acknowledgement:
    return Acknowledgement(at, champion, snapshot, signals=("rating",), actor="monitor")


def test_the_first_drift_is_emitted() -> None:
    decision = should_emit(3, "a" * 64, None, None, T0, HOUR)
    assert decision.emit and decision.previous is None
    assert decision.message == f"drift event for champion v3 on snapshot {'a' * 12}"


def test_the_same_champion_and_snapshot_are_reported_once_whatever_the_time() -> None:
    earlier = _ack(3, "b" * 64, T0)
    decision = should_emit(3, "b" * 64, earlier, earlier, T0 + 100 * HOUR, HOUR)
    assert not decision.emit and decision.previous == earlier
    assert decision.message == (
        f"drift already reported at 2026-03-01 09:30:00 UTC for champion v3 on snapshot {'b' * 12}: "
        "no new event"
    )
    assert decision.to_dict()["previous"]["at"] == "2026-03-01T09:30:00+00:00"


def test_a_new_window_waits_for_the_cooldown() -> None:
    latest = _ack(3, "old", T0)
    held = should_emit(3, "new", None, latest, T0 + HOUR / 2, HOUR)
    assert not held.emit and "within the 60-minute cooldown" in held.message
    assert held.message.endswith("no new event")
    assert should_emit(3, "new", None, latest, T0 + HOUR, HOUR).emit
    assert should_emit(4, "old", None, latest, T0, timedelta(0)).emit  # a new champion, no cooldown


def test_signals_are_the_counted_drifted_features_and_decay() -> None:
    column = {"method": "wasserstein", "threshold": 0.1, "score": 0.5}
    check = DriftCheck(
        drifted=True,
        reasons=[],
        reference_events=1,
        current_events=1,
        event_columns=[
            {**column, "column": "item_popularity", "drifted": True, "counted": True},
            {**column, "column": "hour_of_day", "drifted": True, "counted": False},
            {**column, "column": "rating", "drifted": False, "counted": True},
        ],
        prediction_columns=[{**column, "column": "score", "drifted": True, "counted": True}],
        event_drift_share=0.5,
        prediction_drift_share=1.0,
        new_user_share=0.0,
        new_item_share=0.0,
        performance={"metric": "ndcg@10", "registered": 0.3, "current": 0.2, "decay": 0.1},
    )
    assert signals(check, max_decay=0.05) == (DECAY, "item_popularity", "score")
    assert signals(check, max_decay=0.2) == ("item_popularity", "score")
