"""Commands that read the runs in the artifact store: `runs`, `lineage`, `compare`, `verify`, `dashboard`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..artifacts import open_store
from ..artifacts import runs as runs_catalog
from ..artifacts.manifest import RunManifest
from .common import (
    ConfigOption,
    JsonOption,
    SetOption,
    TagOption,
    cell,
    console,
    fail,
    link,
    load,
    print_json,
    store_of,
    tags,
)

app = typer.Typer()

_RUN_COLUMNS = (
    "run",
    "status",
    "finished (UTC)",
    "user",
    "tags",
    "config",
    "dataset",
    "model",
    "ndcg@10",
    "cached",
)


@app.command()
def runs(
    config: ConfigOption = None, tag: TagOption = None, set_: SetOption = None, as_json: JsonOption = False
) -> None:
    """List the runs in the artifact store (filter with --tag key=value)."""
    store = store_of(config, set_)
    statuses = runs_catalog.run_statuses(store)
    rows = [_run_row(m, statuses.get(m.run_id)) for m in runs_catalog.list_runs(store, tags(tag or []))]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"runs in {store.uri_of('')}")
    for column in _RUN_COLUMNS:
        table.add_column(column)
    for row in rows:
        state = f"[red]{row['status']}[/] at {row['failed_at']}" if row["failed_at"] else row["status"]
        table.add_row(
            row["run_id"][:8],
            state,
            row["finished_at"].replace("T", " ")[:19],
            row["user"],
            ",".join(f"{k}={v}" for k, v in sorted(row["tags"].items())),
            row["config_fingerprint"][:12],
            row["dataset"][:12],
            row["model"],
            f"{row['ndcg@10']:.4f}" if row["ndcg@10"] is not None else "nan",
            f"{row['cached_tasks']}/{row['tasks']}",
        )
    console.print(table)


def _run_row(m: RunManifest, status: dict[str, Any] | None) -> dict[str, Any]:
    """What `runs` shows of one run."""
    state = runs_catalog.run_state(status)
    failed = state in (runs_catalog.FAILED, runs_catalog.STOPPED) and status
    return {
        "run_id": m.run_id,
        "status": state,
        "failed_at": (status.get("step") or "?") if failed and status else None,
        "finished_at": m.finished_at,
        "user": m.environment.user,
        "tags": m.tags,
        "config_fingerprint": m.config_fingerprint,
        "dataset": m.dataset.id,
        "dataset_name": m.dataset.name,
        "model": m.model,
        "ndcg@10": m.metrics.get("ndcg@10"),
        "cached_tasks": sum(t.state == "Cached" for t in m.tasks.values()),
        "tasks": len(m.tasks),
    }


@app.command()
def lineage(
    key: Annotated[str, typer.Argument(help="A run id (prefix), `latest`, or an artifact id (prefix).")],
    out: Annotated[Path | None, typer.Option(help="Mermaid graph file to write [lineage-<id>.mmd]")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Show what made an artifact: raw input bytes -> snapshot -> split -> model -> metrics."""
    if out is not None and not out.parent.is_dir():
        fail(f"--out {out}: the folder {out.parent} does not exist", code=2)
    store = store_of(config, set_)
    manifest, name = runs_catalog.find_artifact(store, key)
    entry = manifest.artifacts[name]
    console.print(f"{name} {entry.id} (run {manifest.run_id}, {manifest.finished_at})", soft_wrap=True)
    for line in runs_catalog.describe_chain(manifest, name):
        console.print("  " + line, soft_wrap=True, highlight=False)
    target = out or Path(f"lineage-{entry.id[:12]}.mmd")
    target.write_text(runs_catalog.mermaid(manifest))
    console.print(f"graph: {target}")


@app.command("compare")
def compare_runs(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B")],
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what differs between two runs: config, data, artifacts, metrics, environment and packages."""
    store = store_of(config, set_)
    a, b = runs_catalog.find_run(store, run_a), runs_catalog.find_run(store, run_b)
    diff = runs_catalog.compare(a, b)
    if as_json:
        print_json({"a": a.run_id, "b": b.run_id, **diff})
        return
    for section in ("config", "data", "artifacts", "metrics", "environment", "packages"):
        table = Table(title=section)
        for column in ("", a.run_id[:8], b.run_id[:8]):
            table.add_column(column)
        if section == "metrics":
            table.add_column("b - a", justify="right")
        for key, old, new in diff[section]:
            row = [str(key), cell(old), cell(new)]
            if section == "metrics":
                row.append(f"{new - old:+.4f}" if old is not None and new is not None else "")
            table.add_row(*row)
        if not diff[section]:
            table.add_row("(same)", "", "")
        console.print(table)


@app.command()
def verify(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Check the whole store: objects against their ids, manifests, snapshot pointers, registry references."""
    from ..artifacts.registry import RegistryError, registry_problems
    from ..artifacts.verify import Problem, existing_registry, verify_store

    settings = load(config, set_)
    store = open_store(settings.storage)
    try:
        registry, opening = existing_registry(settings.registry, settings.storage), []
    except RegistryError as exc:
        registry, opening = None, [Problem("registry", "", "registry", str(exc))]
    result = verify_store(store, registry)
    if registry is not None:  # versions the runs registered that it lost; versions killed runs left undecided
        found = registry_problems(registry.url, store)
        opening += [Problem("registry", "", "registry", problem) for problem in found]
    for problem in opening + result.problems:
        console.print(str(problem), soft_wrap=True, highlight=False)
    if opening or not result.ok:
        fail(f"store {store.uri_of('')}: {result.summary()}", code=1)
    console.print(f"store {store.uri_of('')}: {result.summary()}", soft_wrap=True, highlight=False)


@app.command()
def dashboard(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the page here instead of into the store.")
    ] = None,
) -> None:
    """Rebuild the HTML dashboard across runs (default: dashboard/index.html in the store); print where."""
    from ..dashboard import collect_for
    from ..dashboard_page import render_page, store_page

    board, store = collect_for(load(config, set_))
    if out is None:
        typer.echo(link(store, store_page(store, board)))
        return
    # Away from the store, its files are linked as `serve-files` (or S3) serves them.
    out.write_text(render_page(board, store.link))
    typer.echo(str(out))
