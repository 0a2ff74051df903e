"""The dashboard across runs, rebuilt when a pipeline or monitor run ends (promotion is part of the pipeline
run; `models promote|rollback` rebuild it from the command line).

`after_run` is a Prefect state hook (`on_completion` and `on_failure` of those flows): it runs once the run's
final state is known, so a failed run is on the page too, and whatever goes wrong in it is logged as a
warning and never changes the run's state. It also records what a failed run would otherwise leave nowhere:
a pipeline run that failed before its record step (no manifest, no status yet) gets a `failed` status with
its error, and a failed monitor run a check saying so; the dashboard counts both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from prefect.logging.loggers import flow_run_logger

from flows.ui import publish_link
from {{ cookiecutter.package_name }}.artifacts import ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.runs import FAILED, read_status, update_status
from {{ cookiecutter.package_name }}.dashboard import CHECKS, collect_for
from {{ cookiecutter.package_name }}.dashboard_page import store_page
from {{ cookiecutter.package_name }}.settings import Settings, settings_for_flow


def publish_dashboard(settings: Settings) -> str:
    """Rebuild the page at its stable place in the store and link it in the Prefect UI; returns the link."""
    dashboard, store = collect_for(settings)
    uri = store_page(store, dashboard)
    return publish_link(store, "dashboard", uri, "Dashboard across runs", "Every run, champion and check")


def after_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Record a failure nothing else recorded, then rebuild the dashboard; never fails the run."""
    log = flow_run_logger(flow_run, flow)
    try:
        parameters = flow_run.parameters or {}
        settings = settings_for_flow(parameters.get("config"), parameters.get("config_files"))
        if state.is_failed():
            _note_failure(open_store(settings.storage), settings, flow.name, str(flow_run.id), state)
        url = publish_dashboard(settings)
        log.info("dashboard: %s", url)
    except Exception as exc:  # the run's outcome stands whatever happens to its dashboard
        log.warning("dashboard not rebuilt: %s: %s", type(exc).__name__, exc)


def _note_failure(store: ArtifactStore, settings: Settings, flow: str, run_id: str, state: Any) -> None:
    error = state.result(raise_on_failure=False)
    reason = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)
    dataset = settings.data.dataset_name()
    if flow == "pipeline" and read_status(store, run_id) is None:
        update_status(store, run_id, status=FAILED, step="before record", reason=reason, dataset=dataset)
    elif flow == "monitor":
        at = datetime.now(UTC).isoformat(timespec="seconds")
        record = {"checked_at": at, "dataset": dataset, "failed": reason, "drifted": False}
        store.write_text(f"{CHECKS}/{at.replace(':', '')}-{run_id}.json", json.dumps(record, sort_keys=True))
