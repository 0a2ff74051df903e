"""The ingest flow: every batch waiting in the landing zone (or one file) into the current snapshot.

Good batches become new snapshots; refused ones go to quarantine with their reasons, and the flow then ends
Failed naming the failed expectations, with the current snapshot and model untouched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from flows.ui import ARTIFACT_PREFIX
from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone
from {{ cookiecutter.package_name }}.ingestion import ingest_batch
from {{ cookiecutter.package_name }}.settings import IngestConfig, Settings, settings_for_flow


@task(name="list-landing-zone")
def waiting_task(cfg: IngestConfig) -> list[str]:
    return [str(p) for p in LandingZone(cfg).waiting()]


@task(name="ingest-batch")
def ingest_batch_task(file: str, settings: Settings) -> dict[str, Any]:
    outcome = ingest_batch(Path(file), settings, open_store(settings.storage), now=int(time.time()))
    log = get_run_logger()
    if outcome.accepted:
        log.info(
            "%s: taken in, %d new events, snapshot %s", file, outcome.added, (outcome.snapshot or "")[:12]
        )
    else:
        log.error(
            "%s: refused, quarantined to %s: %s", file, outcome.quarantined_to, "; ".join(outcome.reasons)
        )
    return outcome.to_dict()


@flow(name="ingest")
def ingest(
    config: dict[str, Any] | None = None, config_files: list[str] | None = None, path: str | None = None
) -> list[dict[str, Any]] | State:
    """Ingest `path`, or every file waiting in the landing zone, one batch after the other.

    Ends Failed, naming the failed expectations, when any batch is refused (its outcome is in the state).
    """
    settings = settings_for_flow(config, config_files)
    files = [path] if path else waiting_task(settings.ingest)
    outcomes = [ingest_batch_task(file, settings) for file in files]
    refused = [o for o in outcomes if not o["accepted"]]
    lines = [f"# Ingest: {len(outcomes) - len(refused)} batch(es) taken in, {len(refused)} refused", ""]
    for o in outcomes:
        verdict = "taken in" if o["accepted"] else f"**refused**, quarantined to `{o['quarantined_to']}`"
        lines += [f"## `{Path(o['file']).name}`: {verdict}", "", o["report"], ""]
    create_markdown_artifact(key=f"{ARTIFACT_PREFIX}-ingest", markdown="\n".join(lines), description="Ingest")
    if refused:
        names = "; ".join(f"{Path(o['file']).name}: {', '.join(o['reasons'])}" for o in refused)
        # A Failed final state that still carries every batch's outcome, for whoever reports on the run.
        return Failed(message=f"{len(refused)} batch(es) refused and quarantined: {names}", data=outcomes)
    return outcomes
