"""The monitor flow's drift event against a real (temporary) Prefect server: one event per champion and data
window, re-armed by new data or a new champion, and no more often than the cooldown allows.

The champion and the snapshots are put in place directly (a model trained in the test, registered and
promoted; snapshot pointers moved), so each check is the monitor alone on a small synthetic window.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from factories import pipeline_result
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import advance_snapshot
from {{ cookiecutter.package_name }}.artifacts.manifest import ArtifactEntry
from {{ cookiecutter.package_name }}.artifacts.registry import open_registry
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import ModelConfig, Settings, SyntheticConfig
from {{ cookiecutter.package_name }}.simulation import shift
from {{ cookiecutter.package_name }}.training import train

monitor = load_entrypoint("flows/monitoring.py:monitor")

pytestmark = pytest.mark.usefixtures("prefect_server")

EVENTS = generate(SyntheticConfig(n_users=400, n_items=200, n_interactions=12_000, days=40), seed=5).sort(
    "timestamp", "user_id", "item_id"
)
CUT = int(EVENTS.height * 0.7)
REFERENCE = EVENTS.head(CUT)


def _champion(settings: Settings, model: str) -> int:
    """Train `model` on the reference window, register it and make it the champion."""
    store, registry = open_store(settings.storage), open_registry(settings.registry, settings.storage)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        train(ModelConfig(name=model), REFERENCE, seed=0).save(path)
        model_ref = store.put_file(path, kind="model").model_dump()
    data = store.put_frame(REFERENCE, kind="train").model_dump()
    frames = {name: data for name in ("snapshot", "train", "test", "metrics_per_user")}
    # The monitor watches this dataset's champion; ndcg 0: no decay, drift alone decides.
    result = pipeline_result(uuid.uuid4().hex, model=model, ndcg=0.0, dataset=settings.data.dataset_name())
    stored = {name: ArtifactEntry(**ref, task="test") for name, ref in {"model": model_ref, **frames}.items()}
    result = result.model_copy(update={"artifacts": {**result.artifacts, **stored}})
    version = registry.register(result, actor="test").version
    registry.promote(version, actor="test", reason="the champion under watch")
    return version


def _snapshot(settings: Settings, new_events: int) -> str:
    """The reference plus `new_events` later events moved to the long tail at night: a drifted window."""
    shifted = shift(EVENTS.slice(CUT, new_events), REFERENCE)
    store = open_store(settings.storage)
    ref = store.put_frame(pl.concat([REFERENCE, shifted]), kind="snapshot")
    advance_snapshot(store, {"snapshot": ref.model_dump()})
    return ref.id


def _count_events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every drift event the flow emits (still sent to the server)."""
    emitted: list[dict[str, Any]] = []
    real = monitor.fn.__globals__["emit_event"]

    def emit(**event: Any) -> Any:
        emitted.append(event)
        return real(**event)

    monkeypatch.setitem(monitor.fn.__globals__, "emit_event", emit)
    return emitted


def test_the_same_window_emits_once_and_new_data_or_a_new_champion_rearms_it(
    small_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_settings.updated({"deploy": {"drift_cooldown_minutes": 0}})
    emitted = _count_events(monkeypatch)
    v1, first = _champion(settings, "popularity"), _snapshot(settings, 2_000)

    checked = monitor(settings.resolved())
    assert checked["drifted"] and checked["event"]["emit"], checked["reasons"]
    again = monitor(settings.resolved())
    assert again["drifted"] and not again["event"]["emit"]
    message = again["event"]["message"]
    assert message.startswith("drift already reported at ")
    assert message.endswith(f"UTC for champion v{v1} on snapshot {first[:12]}: no new event")
    assert [e["payload"]["snapshot"] for e in emitted] == [first]

    second = _snapshot(settings, 2_500)  # new data arrived: the event is due again
    assert monitor(settings.resolved())["event"]["emit"]
    v2 = _champion(settings, "itemknn")  # a new champion on the same data: due again
    assert monitor(settings.resolved())["event"]["emit"]

    assert [(e["payload"]["champion"], e["payload"]["snapshot"]) for e in emitted] == [
        (v1, first),
        (v1, second),
        (v2, second),
    ]
    acknowledged = open_registry(settings.registry, settings.storage).drift_acknowledgements()
    assert [(a.champion, a.snapshot_id) for a in acknowledged] == [(v1, first), (v1, second), (v2, second)]
    assert "item_popularity" in acknowledged[0].signals


def test_the_cooldown_holds_back_drift_on_new_data_and_the_cli_says_so(
    small_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted = _count_events(monkeypatch)
    v1, first = _champion(small_settings, "popularity"), _snapshot(small_settings, 2_000)
    assert monitor(small_settings.resolved())["event"]["emit"]
    _snapshot(small_settings, 2_500)
    args = ["monitor", "--set", f"storage.uri={small_settings.storage.uri}"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output  # drifted, but no new event within the 360-minute cooldown
    assert f"for champion v{v1} on snapshot {first[:12]}, within the 360-minute cooldown" in result.output
    assert "no new event" in result.output and len(emitted) == 1
