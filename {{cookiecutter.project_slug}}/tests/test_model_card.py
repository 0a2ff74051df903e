"""The model card: written when a version is judged, shown in the Prefect UI, printed by `models card`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from typer.testing import CliRunner

from {{ cookiecutter.package_name }} import model_card
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, open_store, runs
from {{ cookiecutter.package_name }}.artifacts.manifest import RunManifest, read_manifest
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, ModelVersion, open_registry
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.cli.app import app
from {{ cookiecutter.package_name }}.settings import PACKAGE, Settings

pipeline = load_entrypoint("flows/pipeline.py:pipeline")
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def _run(settings: Settings, model: str) -> dict[str, Any]:
    resolved = settings.resolved()
    resolved["model"] = {**resolved["model"], "name": model}
    state = pipeline(resolved, return_state=True)
    assert state.is_completed(), state.message
    return state.result()


@pytest.mark.usefixtures("prefect_server")
def test_card_is_stored_shown_and_printed_after_judging(small_settings: Settings) -> None:
    _run(small_settings, "popularity")
    result = _run(small_settings, "ease")
    promotion = result["promotion"]
    assert promotion["promoted"] and promotion["version"] == 2

    registry, store = (
        open_registry(small_settings.registry, small_settings.storage),
        open_store(small_settings.storage),
    )
    version = registry.get(2)
    card = model_card.stored(store, version)
    assert card is not None, "no card stored beside the version's run"

    # The figures are the run's and the judge's own, as they were stored.
    manifest = read_manifest(json.loads(store.read_text(store.relative(version.manifest_uri))))
    primary = small_settings.evaluation.primary_metric
    low, high = manifest.metric_intervals[primary]
    assert f"| **{primary}** | {manifest.metrics[primary]:.4f} | [{low:.4f}, {high:.4f}] |" in card
    decision = store.get_json(ArtifactRef(**promotion["decision_ref"]))
    comparison = decision["comparison"]
    assert "Decision: **promote**" in card and decision["reason"] in card
    assert f"Against the champion v1, paired bootstrap over the {comparison['users']:,} test users" in card
    assert f"| difference | {comparison['difference']:+.4f} |" in card
    p_value = comparison["p_value"]
    assert f"| p-value (two-sided) | {'< 0.0005' if p_value == 0 else f'{p_value:.4f}'} |" in card
    users = int(manifest.metrics["users"])
    assert f"Evaluated on {users:,} test users" in card
    assert f"| users | {manifest.metrics['users']:.4f}" not in card  # a count, not a metric row
    for guard in decision["guards"]:
        assert f"| {guard['metric']} | {guard['challenger']:.4f} |" in card
    assert f"Latency: {decision['latency']['ms_per_1k']:.1f} ms" in card
    assert f"| snapshot id | `{manifest.dataset.id}` |" in card
    assert f"| interactions | {manifest.dataset.rows:,} |" in card
    for name, value in (
        ("run", manifest.run_id),
        ("run manifest", version.manifest_id),
        ("config fingerprint", manifest.config_fingerprint),
        ("model", version.model_id),
        ("promotion decision", promotion["decision_ref"]["id"]),
    ):
        assert f"| {name} | `{value}" in card, name
    assert f"Strategy: {manifest.split.strategy}." in card
    # The run's own leakage check and environment digest, as its manifest recorded them.
    assert manifest.split.leakage is not None and manifest.environment.digest is not None
    assert "Leakage check: passed: disjoint: 0 event(s) in both parts" in card
    assert f"(train {manifest.split.leakage.train[:12]}, test {manifest.split.leakage.test[:12]})" in card
    assert f"| environment digest | `{manifest.environment.digest}` |" in card

    # Kept content-addressed too (so `verify` checks its bytes), and the run's status points at that copy.
    status = runs.read_status(store, result["run_id"])
    assert status is not None
    assert store.get_bytes(ArtifactRef(**status["registry"]["card"])).decode() == card

    # In the Prefect UI: a Markdown artifact under the project's key.
    with get_client(sync_client=True) as client:
        shown = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"{PACKAGE.replace('_', '-')}-model-card"])
            )
        )
    assert any(a.data == card for a in shown)

    printed = CliRunner().invoke(
        app,
        [
            "models",
            "card",
            CHAMPION,
            "--config",
            str(DEFAULT),
            f"--set=storage.uri={small_settings.storage.uri}",
        ],
    )
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == card

    _older_and_newer_manifests(manifest, version, decision)


def _older_and_newer_manifests(
    manifest: RunManifest, version: ModelVersion, decision: dict[str, Any]
) -> None:
    """A manifest from before the leakage check and the environment digest were recorded reads "not
    recorded" for both."""
    document = manifest.document()
    document["split"].pop("leakage")
    document["environment"].pop("digest")
    document["environment"].pop("lock")
    older = model_card.render(read_manifest(document), version, decision)
    assert "Leakage check: not recorded." in older
    assert "| environment digest | not recorded |" in older and "| lock file | not recorded |" in older


@pytest.mark.usefixtures("prefect_server")
def test_card_of_a_version_judged_before_cards_is_built_on_demand(small_settings: Settings) -> None:
    _run(small_settings, "popularity")
    registry, store = (
        open_registry(small_settings.registry, small_settings.storage),
        open_store(small_settings.storage),
    )
    version = registry.get(1)
    kept = model_card.stored(store, version)
    # As a release from before cards left it (the store is a local folder here).
    (Path(small_settings.storage.uri) / model_card.card_path(version)).unlink()

    assert model_card.stored(store, version) is None
    assert model_card.build(registry, store, version) == kept
