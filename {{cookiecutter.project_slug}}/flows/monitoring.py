"""The monitor flow: is the champion's data drifting, is it decaying? Emits the drift event when so.

Reads the configured dataset's champion (registry), its training data (store) and the current snapshot
(landing pointer), runs `monitoring.check`, stores the result (JSON) and the Evidently reports (HTML) as
artifacts, publishes a markdown summary and links in the Prefect UI, and emits `deploy.drift_event` when
drift or decay passes a threshold; the `retrain` deployment listens for that event. The event goes out once
per champion and snapshot and at most once per `deploy.drift_cooldown_minutes` (alerts.py): the registry
records each one, and a check that finds it recorded says so instead of emitting again.

What is watched is the evidence the champion was promoted on: its evaluated model and its training split,
against every event after that split (its test period and whatever arrived since), the events that model
never saw. The refit that serves users saw the test period too, but the metrics that made the version
champion did not: once the data moves away from what they were measured on, a retrain earns them again
(and a shift that came with the batch that made the champion is still seen as one).
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from flows.dashboard import after_run
from flows.ui import ARTIFACT_PREFIX, label_run, publish_link
from {{ cookiecutter.package_name }} import alerts, monitoring
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.landing import current_snapshot
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, ModelVersion, Registry, open_registry
from {{ cookiecutter.package_name }}.dashboard import CHECKS
from {{ cookiecutter.package_name }}.settings import PACKAGE, Settings, settings_for_flow

DATASET_RESOURCE = f"{PACKAGE}.dataset.interactions"
LATEST = "monitor/latest.json"  # the newest check, by name, for people and for `simulate`


@flow(name="monitor", flow_run_name="monitor", on_completion=[after_run], on_failure=[after_run])
def monitor(config: dict[str, Any] | None = None, config_files: list[str] | None = None) -> dict[str, Any]:
    """Compare the data since the champion's training data with it; report; emit the drift event if needed."""
    settings = settings_for_flow(config, config_files)
    log = get_run_logger()
    registry, store = open_registry(settings.registry, settings.storage), open_store(settings.storage)
    dataset = settings.data.dataset_name()
    champion = registry.alias(CHAMPION, dataset)
    if champion is None:
        log.info("dataset %s: no champion yet: nothing to monitor", dataset)
        return _latest(
            store,
            {"drifted": False, "reasons": ["no champion yet"], "champion": None, "dataset": dataset},
        )
    pointer = current_snapshot(store)
    if pointer is None:
        log.info("nothing ingested yet (no current snapshot): nothing to monitor")
        return _latest(
            store,
            {
                "drifted": False,
                "reasons": ["no current snapshot"],
                "champion": champion.version,
                "dataset": dataset,
            },
        )
    label_run(f"monitor {dataset} v{champion.version} on {pointer['snapshot']['id'][:12]}", settings.tags)
    from {{ cookiecutter.package_name }} import serving  # torch: only once there is a model to load

    _, model = serving.load_model(registry, store, champion.version, dataset, served=False)
    reference = store.get_frame(ArtifactRef(**champion.artifact("train")))
    snapshot = store.get_frame(ArtifactRef(**pointer["snapshot"]))
    current = monitoring.new_events(snapshot, reference)
    result = monitoring.check(
        reference,
        current,
        model,
        champion.metrics,
        settings.evaluation.primary_metric,
        settings.monitor,
        settings.seed,
    )
    outcome = {
        **result.to_dict(),
        "champion": champion.version,
        "dataset": dataset,
        "served_by": "refit" if champion.serving else "evaluated model",
        "snapshot": pointer["snapshot"]["id"],
    }
    ref = store.put_json(outcome, kind="drift-check")
    outcome["result_ref"] = ref.model_dump()
    links = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in result.save_html(Path(tmp)).items():
            report = store.put_file(path, kind=f"drift-report-{name}")
            outcome[f"{name}_report"] = report.uri
            url = publish_link(store, f"drift-{name}", report.uri, f"Evidently {name} drift")
            links.append(f"- [Evidently {name} drift report]({url})")
    create_markdown_artifact(
        key=f"{ARTIFACT_PREFIX}-monitor",
        markdown="\n".join([result.markdown(), "", *links]),
        description="Drift and decay",
    )
    log.info("monitor %s v%d: %s", dataset, champion.version, "; ".join(result.reasons))
    if result.drifted:
        outcome["event"] = _emit_once(settings, registry, champion, pointer["snapshot"]["id"], result)
    return _latest(store, outcome)


def _emit_once(
    settings: Settings,
    registry: Registry,
    champion: ModelVersion,
    snapshot_id: str,
    result: monitoring.DriftCheck,
) -> dict[str, Any]:
    """Emit the drift event unless this champion and snapshot were reported already or the cooldown holds.

    The acknowledgement is recorded before the event goes out, in the transaction that decides, so two
    monitors at once cannot both emit. Should this process die between the two, the window's event is lost:
    at most one retrain is the promise, and the nightly retrain still comes.
    """
    signals = alerts.signals(result, settings.monitor.max_decay)
    decision = registry.acknowledge_drift(
        champion.version,
        snapshot_id,
        signals,
        actor=f"monitor run {flow_run.get_id() or 'local'}",
        cooldown=timedelta(minutes=settings.deploy.drift_cooldown_minutes),
    )
    if decision.emit:
        emit_event(
            event=settings.deploy.drift_event,
            resource={"prefect.resource.id": DATASET_RESOURCE},
            payload={
                "reasons": result.reasons,
                "champion": champion.version,
                "signals": list(signals),
                "event_drift_share": result.event_drift_share,
                "decay": result.performance.get("decay"),
                "snapshot": snapshot_id,
            },
        )
    get_run_logger().info("%s: %s", settings.deploy.drift_event, decision.message)
    return decision.to_dict()


def _latest(store: ArtifactStore, outcome: dict[str, Any]) -> dict[str, Any]:
    outcome = {**outcome, "checked_at": datetime.now(UTC).isoformat(timespec="seconds")}
    text = json.dumps(outcome, indent=2, sort_keys=True, default=str)
    store.write_text(LATEST, text)
    # And one per run, which the dashboard draws over time (`latest` is overwritten).
    stamp = outcome["checked_at"].replace(":", "")
    store.write_text(f"{CHECKS}/{stamp}-{flow_run.get_id() or 'local'}.json", text)
    return outcome
