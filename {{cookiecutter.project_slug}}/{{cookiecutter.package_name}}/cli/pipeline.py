"""Commands that run the pipeline: `run`, `reproduce`, and `config` (what a run would use)."""

from __future__ import annotations

import json
import tempfile
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .. import reproduce as reproduction
from ..artifacts import ArtifactStore, open_store
from ..artifacts import runs as runs_catalog
from ..artifacts.manifest import PipelineResult, TaskRecord
from ..settings import PACKAGE, Settings, dotted_overrides
from .common import (
    ConfigOption,
    ModelOption,
    PathOption,
    SetOption,
    SourceOption,
    TagOption,
    checked_data,
    console,
    err,
    fail,
    link,
    load,
    state_message,
    store_of,
    tags,
)
from .runner import run_pipeline

app = typer.Typer()


@app.command()
def run(
    config: ConfigOption = None,
    source: SourceOption = None,
    path: PathOption = None,
    model: ModelOption = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for data generation, splitting and training.")
    ] = None,
    tag: TagOption = None,
    set_: SetOption = None,
) -> None:
    """Run the whole pipeline (ingest, validate, train, evaluate, record) and print a summary."""
    settings = checked_data(load(config, set_, source=source, path=path, model=model, seed=seed))
    if tag:
        settings = settings.model_copy(update={"tags": {**settings.tags, **tags(tag)}})
    console.print(
        f"[bold]{PACKAGE}[/] pipeline: dataset {settings.data.dataset_name()} "
        f"(source={settings.data.source}) model={settings.model.name} config={settings.fingerprint()[:12]}"
    )
    state = run_pipeline(settings)
    if not state.is_completed():
        fail(f"pipeline {state.name}: {state_message(state)}", code=1)
    _print_summary(PipelineResult.model_validate(state.result()), open_store(settings.storage))


@app.command()
def reproduce(
    run_key: Annotated[str, typer.Argument(metavar="RUN", help="A run id (prefix) or `latest`.")],
    change: Annotated[
        list[str] | None, typer.Option(help="Rebuild with one setting changed, e.g. --change seed=7.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Rebuild a run from its manifest alone and check that every artifact id matches."""
    from ..artifacts.verify import check_run

    changes = dotted_overrides(change or [])  # a bad --change is refused before anything is read
    store = store_of(config, set_)
    expected = runs_catalog.find_run(store, run_key)
    # Equal ids prove little if the stored bytes are not the ones the ids name.
    damaged = check_run(store, expected)
    for problem in damaged:
        console.print(str(problem), soft_wrap=True, highlight=False)
    if damaged:
        fail(f"not reproduced: {len(damaged)} stored artifact(s) of run {expected.run_id} are damaged", 1)
    reproduction.pin_threads(expected)
    with tempfile.TemporaryDirectory(prefix="reproduce-") as scratch:
        resolved = reproduction.rebuild_config(expected, changes, scratch)
        console.print(f"rebuilding run {expected.run_id} from its manifest, in a scratch store")
        state = run_pipeline(Settings.from_resolved(resolved))
        if not state.is_completed():
            fail(f"rebuild {state.name}: {state_message(state)}", code=1)
        actual = PipelineResult.model_validate(state.result())
    verdict = reproduction.judge(expected, actual)
    for note in verdict.config_notes:
        console.print(note)
    if not verdict.reproduced:
        for note in verdict.environment_notes:
            console.print(note)
        fail(f"not reproduced; first difference: {verdict.difference}", code=1)
    console.print(
        f"[green]reproduced[/]: all {len(expected.artifacts)} artifact ids match run "
        f"{expected.run_id}, and its stored objects hash to them"
    )


@app.command("config")
def show_config(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved settings as JSON, with their fingerprint."""
    settings = load(config, set_)
    console.print_json(json.dumps({"fingerprint": settings.fingerprint(), "settings": settings.resolved()}))


def _task_states(tasks: dict[str, TaskRecord]) -> str:
    cached = [name for name, t in tasks.items() if t.state == "Cached"]
    if len(cached) == len(tasks):
        return f"all {len(tasks)} cached (nothing recomputed)"
    return f"{len(tasks) - len(cached)} ran, {len(cached)} cached" + (
        f" ({', '.join(cached)})" if cached else ""
    )


def _print_summary(result: PipelineResult, store: ArtifactStore) -> None:
    from ..report import metrics_caveat

    data, split, outputs = result.dataset, result.split, result.outputs
    table = Table(title=f"{result.model} on dataset {data.name} ({data.source}, {data.id[:12]})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    for name, value in sorted(result.metrics.items()):
        low, high = result.metric_intervals.get(name, (None, None))
        bounds = f"{low:.4f} - {high:.4f}" if low is not None else ""
        table.add_row(name, f"{value:.4f}" if "@" in name else f"{int(value):,}", bounds)
    console.print(table)
    console.print(
        f"dataset: {data.rows:,} interactions, {data.users:,} users, {data.items:,} items\n"
        f"split: {split.strategy}, {split.train_rows:,} train / {split.test_rows:,} test\n"
        f"tasks: {_task_states(result.tasks)}\n"
        f"report:   {link(store, outputs.report)}\nmanifest: {link(store, outputs.manifest)}\n"
        f"store:    {outputs.store}",
        soft_wrap=True,  # keep URIs whole (copyable) whatever the terminal width
    )
    caveat = metrics_caveat(result)
    if caveat:
        err.print(f"[yellow]warning:[/] {escape(caveat)}", soft_wrap=True, highlight=False)
    promotion = result.promotion
    if promotion and promotion.get("decided_before"):  # the same model on the same data: nothing judged
        console.print(f"model {promotion['summary']}", soft_wrap=True, highlight=False)
    elif promotion:
        verdict = "[green]promoted to champion[/]" if promotion["promoted"] else "[yellow]not promoted[/]"
        reused = " (reused: same model and data, judged now)" if promotion.get("reused") else ""
        console.print(
            f"model version {promotion['version']}{reused}: {verdict}. {promotion['decision']['reason']}",
            soft_wrap=True,
            highlight=False,
        )
