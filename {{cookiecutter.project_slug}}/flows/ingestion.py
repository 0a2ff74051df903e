"""The ingest flow: every batch waiting in the landing zone (or one file) into the current snapshot.

Good batches become new snapshots; refused ones go to quarantine with their reasons, and the flow then ends
Failed naming the failed expectations, with the current snapshot and model untouched. The Failed state holds
a `BatchesRefused` carrying every batch's outcome (`outcomes_of` reads them back); a refusal is an outcome,
not a crash, so no traceback of it reaches the run's logs.

`path` must name a file directly in the landing zone (an event's `payload.path` is anyone's word): any other
path ends the run Failed with one line, before anything is opened. A symbolic link or other non-regular
entry in the landing zone is moved into quarantine unread, named with its size, and reported once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows.ui import ARTIFACT_PREFIX, label_run, publish_link
from {{ cookiecutter.package_name }}.artifacts import ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone, OutsideLandingZone
from {{ cookiecutter.package_name }}.ingestion import ingest_batch
from {{ cookiecutter.package_name }}.settings import IngestConfig, Settings, settings_for_flow


class BatchesRefused(Exception):
    """Batches were quarantined: the one-line `message`, and what the flow would have returned (`result`)."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message, result)  # both in args, so it pickles
        self.message, self.result = message, result

    def __str__(self) -> str:
        return self.message


class _RefusalIsNotACrash(logging.Filter):
    """Drops the engine's "exited with unexpected exception" record, traceback included, for a refusal.

    A deployment run's engine re-raises its final state's exception and logs it with its traceback; for
    quarantined batches, or a path outside the landing zone, the Failed state's message says all there is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], (BatchesRefused, OutsideLandingZone)))


def refused(message: str, result: Any) -> State:
    """The Failed final state of a flow that quarantined batches (ingest, ingest-and-train)."""
    return _failed_without_traceback(BatchesRefused(message, result))


def outside(error: OutsideLandingZone) -> State:
    """The Failed final state of a flow asked to ingest a path outside the landing zone: one line."""
    return _failed_without_traceback(error)


def _failed_without_traceback(error: Exception) -> State:
    for name in ("prefect.flow_runs", "prefect.engine"):  # where the engine logs an exception it re-raises
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RefusalIsNotACrash) for f in logger.filters):
            logger.addFilter(_RefusalIsNotACrash())
    return Failed(message=str(error), data=error)


def outcomes_of(state: State) -> list[dict[str, Any]] | None:
    """Every batch's outcome from an ingest run's final state; None when it crashed before reporting."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, Exception):
        result = getattr(result, "result", None)  # a BatchesRefused (of this file, however it was loaded)
    return result if isinstance(result, list) else None


def _run_name() -> str:
    path = flow_run.parameters.get("path")
    return f"ingest {Path(path).name}" if path else "ingest landing zone"


@task(name="list-landing-zone")
def waiting_task(cfg: IngestConfig) -> list[str]:
    """The landing zone's files ready to ingest, oldest name first."""
    # Refused entries (links, FIFOs) too: ingesting one moves it into quarantine, so it is reported once.
    zone = LandingZone(cfg)
    return [str(p) for p in sorted(zone.waiting() + zone.refused())]


@task(name="ingest-batch")
def ingest_batch_task(file: str, settings: Settings) -> dict[str, Any]:
    """One batch into the current snapshot or into quarantine (`ingestion.ingest_batch`); its outcome."""
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


@flow(name="ingest", flow_run_name=_run_name)
def ingest(
    config: dict[str, Any] | None = None, config_files: list[str] | None = None, path: str | None = None
) -> list[dict[str, Any]] | State:
    """Ingest `path`, or every file waiting in the landing zone, one batch after the other.

    Ends Failed, naming the failed expectations, when any batch is refused (its outcome is in the state).
    """
    settings = settings_for_flow(config, config_files)
    label_run(tags=settings.tags)
    if path:
        try:
            path = str(LandingZone(settings.ingest).confine(path))
        except OutsideLandingZone as exc:
            return outside(exc)
    store = open_store(settings.storage)
    files = [path] if path else waiting_task(settings.ingest)
    outcomes = [ingest_batch_task(file, settings) for file in files]
    # Refused means quarantined; a file still being written (or taken by another ingest) is left for later.
    refusals = [o for o in outcomes if o["quarantined_to"]]
    taken = sum(o["accepted"] for o in outcomes)
    lines = [f"# Ingest: {taken} batch(es) taken in, {len(refusals)} refused", ""]
    for o in outcomes:
        lines += [f"## `{Path(o['file']).name}`: {_verdict(o)}", ""]
        if o.get("docs"):
            lines += [f"[GX Data Docs of this batch]({_docs_link(store, o)})", ""]
        lines += [o["report"], ""]
    create_markdown_artifact(key=f"{ARTIFACT_PREFIX}-ingest", markdown="\n".join(lines), description="Ingest")
    if refusals:
        names = "; ".join(f"{Path(o['file']).name}: {', '.join(o['reasons'])}" for o in refusals)
        return refused(f"{len(refusals)} batch(es) refused and quarantined: {names}", outcomes)
    return outcomes


def _verdict(outcome: dict[str, Any]) -> str:
    if outcome["accepted"]:
        return "taken in"
    if outcome["quarantined_to"]:
        return f"**refused**, quarantined to `{outcome['quarantined_to']}`"
    return "left in the landing zone"


def _docs_link(store: ArtifactStore, outcome: dict[str, Any]) -> str:
    """The batch's GX Data Docs (a folder in the store), as a link artifact and a URL for the report."""
    name = Path(outcome["file"]).name
    return publish_link(
        store, "ingest-data-docs", f"{outcome['docs']}/index.html", f"GX Data Docs of {name}", "Ingest"
    )
