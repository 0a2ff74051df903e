"""The command line: `run` the pipeline, `ingest` batches, `runs`/`lineage`/`compare`/`reproduce`, `verify`
the store, the `models` registry, `recommend`, `benchmark`, `config`, `serve-files` (the store's links for
the Prefect UI).

This is the entry point, so it is where settings are loaded (once) and where process-wide defaults for
Prefect, GX and Evidently (telemetry off, a patient local-server start) are set, before they are imported.
It is also the one error boundary (`_Boundary`): a bad input (config file, setting, store, registry, run
id, path) ends the command with one `error: ...` line and exit 2; `--verbose` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import unquote, urlsplit

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from .artifacts import ArtifactRef, ArtifactStore, StoreUnusable, open_store
from .artifacts import runs as runs_catalog
from .settings import PACKAGE, ConfigError, Settings, deep_merge, dotted_overrides, load_settings

DEFAULT_CONFIG = Path("configs/default.yaml")
_QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # A cold start of Prefect's temporary local server takes 10-15 s on two cores; the default allows 20.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def _one_line(exc: Exception) -> str | None:
    """The one line a bad input ends in; None for anything else (a bug: its traceback is shown)."""
    from .artifacts.registry import RegistryError  # sqlalchemy: imported only once something failed

    if isinstance(exc, ConfigError | StoreUnusable | RegistryError | runs_catalog.RunNotFound):
        return str(exc)
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return f"invalid settings: {problems}"
    # A path given (or configured) that cannot be used.
    unusable = FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError
    if isinstance(exc, unusable) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return None


class _Boundary(TyperGroup):
    """Every command runs inside `invoke`, so this is the one place a bad input becomes one line."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # an exit chosen (`_fail`), or a usage error typer reports itself
        except Exception as exc:
            line = _one_line(exc)
            if line is None:
                raise
            if ctx.params.get("verbose"):
                traceback.print_exception(exc)
            _fail(line, code=2)


# Locals are never shown in a traceback: they may hold a password or a storage key.
app = typer.Typer(
    cls=_Boundary,
    help=f"{PACKAGE}: a reproducible recommender pipeline on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
err = Console(stderr=True)
# The running command's root context (set by the app's callback): what lives as long as the command does.
_COMMAND: ContextVar[typer.Context | None] = ContextVar("_COMMAND", default=None)


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", envvar=f"{PACKAGE.upper()}_VERBOSE", help="On a bad input, also show the traceback."
        ),
    ] = False,
) -> None:
    ctx.call_on_close(_WarningLines.install())
    # Rich reads COLUMNS when a console is made (at import); a command run later in the same process (tests,
    # scripts) follows the COLUMNS it runs with.
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        console.width = err.width = int(columns)
    token = _COMMAND.set(ctx)
    ctx.call_on_close(lambda: _COMMAND.reset(token))


class _WarningLines(logging.Handler):
    """The package's warnings (such as a damaged manifest skipped) as `warning: ...` lines on stderr, and
    only there (not also through Prefect's handlers), each once, for one command."""

    @classmethod
    def install(cls) -> Callable[[], None]:
        """Install; returns what undoes it (tests run many commands in one process)."""
        package_log, handler = logging.getLogger(PACKAGE), cls(logging.WARNING)
        propagate, package_log.propagate = package_log.propagate, False
        package_log.addHandler(handler)

        def uninstall() -> None:
            package_log.removeHandler(handler)
            package_log.propagate = propagate

        return uninstall

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.shown: set[str] = set()  # `compare` reads the catalog twice, and would say it all twice

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.shown:
            self.shown.add(message)
            err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)


ConfigOption = Annotated[
    list[Path] | None,
    typer.Option("--config", "-c", help=f"YAML file layered over {DEFAULT_CONFIG}; repeat to stack several."),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Label the run (or filter runs) with key=value (repeatable)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set model.ease.l2=500 (repeatable)."),
]
# The data interface of `run`, `benchmark`, `ingest` and `simulate`: the same options, meaning the same.
SourceOption = Annotated[
    str | None,
    typer.Option(help="Data source: synthetic, movielens, file or snapshot [data.source]."),
]
PathOption = Annotated[
    Path | None,
    typer.Option(help="MovieLens directory, or a data file (any name) or directory of them [data.path]."),
]


@app.command()
def run(
    config: ConfigOption = None,
    source: SourceOption = None,
    path: PathOption = None,
    model: Annotated[
        str | None, typer.Option(help="Model to train: popularity, itemknn, ease, bpr or ials.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for data generation, splitting and training.")
    ] = None,
    tag: TagOption = None,
    set_: SetOption = None,
) -> None:
    """Run the whole pipeline (ingest, validate, train, evaluate, record) and print a summary."""
    overrides = _cli_overrides(source=source, path=path, model=model, seed=seed, pairs=set_ or [])
    settings = _checked_data(_load(config, overrides))
    if tag:
        settings = settings.model_copy(update={"tags": {**settings.tags, **_tags(tag)}})

    console.print(
        f"[bold]{PACKAGE}[/] pipeline: dataset {settings.data.dataset_name()} "
        f"(source={settings.data.source}) model={settings.model.name} config={settings.fingerprint()[:12]}"
    )
    state = _run_pipeline(settings)
    if not state.is_completed():
        _fail(f"pipeline {state.name}: {_state_message(state)}", code=1)
    _print_summary(state.result(), open_store(settings.storage))


@app.command()
def runs(config: ConfigOption = None, tag: TagOption = None, set_: SetOption = None) -> None:
    """List the runs in the artifact store (filter with --tag key=value)."""
    store = _store(config, set_)
    table = Table(title=f"runs in {store.uri_of('')}")
    for column in (
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
    ):
        table.add_column(column)
    for m in runs_catalog.list_runs(store, _tags(tag or [])):
        cached = sum(t["state"] == "Cached" for t in m["tasks"].values())
        table.add_row(
            m["run_id"][:8],
            _run_status(m["status"]),
            m["finished_at"].replace("T", " ")[:19],
            m["environment"]["user"],
            ",".join(f"{k}={v}" for k, v in sorted(m["tags"].items())),
            m["config_fingerprint"][:12],
            m["dataset"]["id"][:12],
            m["model"],
            f"{m['metrics'].get('ndcg@10', float('nan')):.4f}",
            f"{cached}/{len(m['tasks'])}",
        )
    console.print(table)


def _run_status(status: dict[str, Any] | None) -> str:
    """`completed`, or what went wrong after the manifest: `failed at promotion`, `stopped at record`."""
    state = runs_catalog.run_state(status)
    if state in (runs_catalog.FAILED, runs_catalog.STOPPED) and status:
        return f"[red]{state}[/] at {status.get('step') or '?'}"
    return state


@app.command()
def lineage(
    key: Annotated[str, typer.Argument(help="A run id (prefix), `latest`, or an artifact id (prefix).")],
    out: Annotated[Path | None, typer.Option(help="Mermaid graph file to write [lineage-<id>.mmd]")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Show what made an artifact: raw input bytes -> snapshot -> split -> model -> metrics."""
    if out is not None and not out.parent.is_dir():
        _fail(f"--out {out}: the folder {out.parent} does not exist", code=2)
    store = _store(config, set_)
    manifest, name = runs_catalog.find_artifact(store, key)
    entry = manifest["artifacts"][name]
    console.print(
        f"{name} {entry['id']} (run {manifest['run_id']}, {manifest['finished_at']})", soft_wrap=True
    )
    for line in runs_catalog.describe_chain(manifest, name):
        console.print("  " + line, soft_wrap=True, highlight=False)
    target = out or Path(f"lineage-{entry['id'][:12]}.mmd")
    target.write_text(runs_catalog.mermaid(manifest))
    console.print(f"graph: {target}")


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
    store = _store(config, set_)
    changes = dotted_overrides(change or [])
    expected = runs_catalog.find_run(store, run_key)
    from .artifacts.verify import check_run

    # Equal ids prove little if the stored bytes are not the ones the ids name.
    damaged = check_run(store, expected)
    for problem in damaged:
        console.print(str(problem), soft_wrap=True, highlight=False)
    if damaged:
        _fail(f"not reproduced: {len(damaged)} stored artifact(s) of run {expected['run_id']} are damaged", 1)
    import torch

    # Float sums are split across threads, so a different thread count changes the last bits of the weights.
    torch.set_num_threads(expected["environment"]["torch"]["threads"])
    with tempfile.TemporaryDirectory(prefix="reproduce-") as scratch:
        # A private store: the rebuild neither reads the original outputs nor shares their cache entries.
        # Promotion reads and moves the registry: a rebuild must not register anything.
        isolated = {"storage": {"uri": scratch}, "promotion": {"enabled": False}}
        resolved = deep_merge(expected["config"], {**changes, **isolated})
        console.print(f"rebuilding run {expected['run_id']} from its manifest, in a scratch store")
        state = _run_pipeline(Settings.from_resolved(resolved))
        if not state.is_completed():
            _fail(f"rebuild {state.name}: {_state_message(state)}", code=1)
        actual = state.result()
    diff = runs_catalog.compare(expected, actual)
    for key, old, new in diff["config"]:
        if not key.startswith(("storage.", "promotion.")):
            console.print(f"config {key}: {old!r} in the run, {new!r} in the rebuild")
    difference = runs_catalog.first_difference(expected, actual)
    if difference is not None:
        for key, old, new in diff["environment"]:
            console.print(f"environment {key}: {old} then, {new} now")
        _fail(f"not reproduced; first difference: {difference}", code=1)
    console.print(
        f"[green]reproduced[/]: all {len(expected['artifacts'])} artifact ids match run "
        f"{expected['run_id']}, and its stored objects hash to them"
    )


@app.command()
def verify(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Check the whole store: objects against their ids, manifests, snapshot pointers, registry references."""
    from .artifacts.registry import RegistryError, registry_problems
    from .artifacts.verify import Problem, existing_registry, verify_store

    settings = _load(config, _cli_overrides(pairs=set_ or []))
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
        _fail(f"store {store.uri_of('')}: {result.summary()}", code=1)
    console.print(f"store {store.uri_of('')}: {result.summary()}", soft_wrap=True, highlight=False)


@app.command("compare")
def compare_runs(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Show what differs between two runs: config, data, artifacts, metrics and environment."""
    store = _store(config, set_)
    a, b = runs_catalog.find_run(store, run_a), runs_catalog.find_run(store, run_b)
    diff = runs_catalog.compare(a, b)
    for section in ("config", "data", "artifacts", "metrics", "environment"):
        table = Table(title=section)
        for column in ("", a["run_id"][:8], b["run_id"][:8]):
            table.add_column(column)
        if section == "metrics":
            table.add_column("b - a", justify="right")
        for key, old, new in diff[section]:
            row = [str(key), _cell(old), _cell(new)]
            if section == "metrics":
                row.append(f"{new - old:+.4f}" if old is not None and new is not None else "")
            table.add_row(*row)
        if not diff[section]:
            table.add_row("(same)", "", "")
        console.print(table)


@app.command()
def ingest(
    path: Annotated[
        Path | None,
        typer.Option(
            help="One batch file to ingest, laid out as data.* says (default: all in the landing zone); "
            "from elsewhere, a copy; with --source movielens, a MovieLens directory."
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="file (a batch in the data.* layout) or movielens (its ratings file) [file]."),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Take new batch files into the current snapshot; refuse bad ones into quarantine, with reasons."""
    from .data import sources

    overrides = _cli_overrides(pairs=set_ or [])
    if source not in (None, "file", "movielens"):
        _fail(f"--source {source}: ingest takes files (file or movielens)", code=2)
    if path is not None and not path.exists():
        _fail(f"batch file does not exist: {path}", code=2)
    if source == "movielens" and path is not None:
        try:  # its ratings file, landed as a batch read with MovieLens' layout
            path, layout = sources.movielens_layout(path)
        except sources.SourceError as exc:
            _fail(f"data.path: {exc}", code=2)
        overrides = deep_merge(overrides, {"data": layout})
    elif path is not None and not path.is_file():
        _fail(f"--path {path}: not a file (a batch is one file)", code=2)
    settings = _load(config, overrides)
    if path is not None:
        from . import preflight

        _report_preflight(preflight.check_file(path, settings))
    from .artifacts.landing import LandingZone

    zone = LandingZone(settings.ingest)
    if path is not None and not zone.holds(path):
        # The flow ingests only files in the landing zone; one named here from elsewhere lands as a copy.
        path = zone.land(path)
    ingest_flow = load_entrypoint("flows/ingest.py:ingest")
    outcomes_of = load_entrypoint("flows/ingest.py:outcomes_of")

    state = ingest_flow(settings.resolved(), path=str(path) if path else None, return_state=True)
    outcomes = outcomes_of(state)
    if outcomes is None:  # the flow crashed before it could report on batches
        _fail(f"ingest {state.name}: {_state_message(state)}", code=1)
    store = open_store(settings.storage)
    for o in outcomes:
        name = Path(o["file"]).name
        if o["accepted"]:
            note = "already ingested" if o["reasons"] else f"{o['rows']:,} rows, {o['added']:,} new events"
            console.print(
                f"[green]taken in[/] {name}: {note}; snapshot {str(o['snapshot'])[:12]}", soft_wrap=True
            )
        elif o["quarantined_to"]:
            console.print(f"[red]refused[/] {name} -> {o['quarantined_to']}", soft_wrap=True)
        else:
            console.print(f"[yellow]left[/] {name} in the landing zone", soft_wrap=True)
        if not o["accepted"]:
            for reason in o["reasons"]:
                console.print(f"  - {reason}", soft_wrap=True, highlight=False)
        if o.get("docs"):
            console.print(f"  data docs: {_link(store, o['docs'] + '/index.html')}", soft_wrap=True)
    if not outcomes:
        arriving = len(zone.look().settling)
        later = f" ({arriving} file(s) still arriving: ingest again once they settle)" if arriving else ""
        console.print(f"nothing waiting in {settings.ingest.landing}{later}", soft_wrap=True)
    if not state.is_completed():
        _fail(f"ingest {state.name}: {state.message}", code=1)


@app.command()
def quarantine(
    release: Annotated[
        str | None, typer.Option(help="Move this (fixed) batch back to the landing zone.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """List quarantined batches with their reasons, or release one after it is fixed."""
    from .artifacts.landing import LandingZone

    zone = LandingZone(_load(config, _cli_overrides(pairs=set_ or [])).ingest)
    if release is not None:
        try:
            target = zone.release(release)
        except FileNotFoundError as exc:
            _fail(str(exc), code=2)
        console.print(f"released {release} -> {target}; run `ingest` to take it in")
        return
    entries = zone.quarantined()
    if not entries:
        console.print(f"nothing in quarantine ({zone.quarantine_dir})")
    for entry in entries:
        console.print(f"[bold]{entry['name']}[/] (quarantined {entry['quarantined_at']})", soft_wrap=True)
        for reason in entry["reasons"]:
            console.print(f"  - {reason}", soft_wrap=True, highlight=False)


@app.command()
def benchmark(
    out: Annotated[Path, typer.Option(help="JSON file to write; PNG plots go beside it.")],
    source: SourceOption = None,
    path: PathOption = None,
    data: Annotated[
        str | None, typer.Option(hidden=True, help="Older spelling: a MovieLens directory, or `synthetic`.")
    ] = None,
    protocol: Annotated[
        str, typer.Option(help="random-80-20, temporal-80-20, leave-last-out, ...")
    ] = "random-80-20",
    seed: Annotated[int, typer.Option(help="Seed of the split, the models and the bootstrap.")] = 42,
    models: Annotated[
        str, typer.Option(help="Comma-separated; the first is the baseline of the paired tests.")
    ] = ("popularity,itemknn,ease,bpr,ials"),
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Train and evaluate models under one protocol: metrics with 95% intervals, timings, memory, plots."""
    from . import benchmark as bench
    from .data import sources
    from .data.split import NEEDS_TIME

    if data is not None and source is None and path is None:
        source, path = ("synthetic", None) if data == "synthetic" else ("movielens", Path(data))
    overrides = _cli_overrides(source=source, path=path, seed=seed, pairs=set_ or [])
    settings = _load(config, overrides)
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(type(settings.model).model_fields) - {"name"})
    if unknown or not names:
        _fail(f"unknown model(s) {unknown}; choose from popularity, itemknn, ease, bpr, ials", code=2)
    if protocol not in bench.PROTOCOLS:
        _fail(f"unknown protocol {protocol!r}; choose one of {sorted(bench.PROTOCOLS)}", code=2)
    if settings.data.source == "snapshot":
        _fail("benchmark reads a dataset: --source synthetic, movielens or file", code=2)
    chosen = bench.PROTOCOLS[protocol]
    if (
        settings.data.source == "file"
        and settings.data.columns.timestamp is None
        and chosen.strategy in NEEDS_TIME
    ):
        _fail(
            f"--protocol {protocol} needs event times and data.columns.timestamp is null: use --protocol "
            "random-80-20 or user-random-80-20",
            code=2,
        )
    settings = _checked_data(settings, chosen)
    frame = sources.load(settings.data, seed)
    results = bench.run_benchmark(frame, protocol, names, seed, settings.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    plots = bench.plot(results, str(out.with_suffix("")))

    rows = results["interactions"]
    table = Table(title=f"{settings.data.dataset_name()} · {protocol} · seed {seed} · {rows:,} interactions")
    for column in (
        "model",
        "NDCG@10 (95% CI)",
        "Recall@10",
        "MAP@10",
        "Coverage@10",
        "fit s",
        "eval s",
        "peak MB",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results["models"].items():
        m = r["metrics"]
        ndcg = m["ndcg@10"]
        table.add_row(
            name,
            f"{ndcg['value']:.4f} ({ndcg['low']:.3f}-{ndcg['high']:.3f})",
            f"{m['recall@10']['value']:.4f}",
            f"{m['map@10']['value']:.4f}",
            f"{m['coverage@10']['value']:.3f}",
            f"{r['fit_seconds']:.2f}",
            f"{r['eval_seconds']:.2f}",
            f"{r['peak_memory_mb']:.0f}",
        )
    console.print(table)
    for test in results[f"paired_vs_{names[0]}"]:
        console.print(
            f"{test['model']}: NDCG@10 {test['difference']:+.4f} vs {names[0]} "
            f"(95% CI {test['interval'][0]:+.4f} to {test['interval'][1]:+.4f}, p={test['p_value']:.4f})"
        )
    console.print(f"results: {out}\nplots:   {', '.join(plots)}", soft_wrap=True)


models_app = typer.Typer(help="The model registry: versions, champion/challenger, promotions, history.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Every registered model version of every dataset, with its aliases and primary metric."""
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    metric = settings.evaluation.primary_metric
    registry = _registry(settings)
    table = Table(title=f"model versions ({registry.url.split('://')[0]})")
    for column in ("version", "dataset", "aliases", "model", "created (UTC)", "run", "snapshot", metric):
        table.add_column(column, no_wrap=True)
    for v in registry.versions():
        table.add_row(
            str(v.version),
            v.dataset,
            ",".join(v.aliases),
            v.model_name,
            v.created_at.replace("T", " ")[:16],
            v.run_id[:8],
            v.snapshot_id[:12],
            f"{v.metrics.get(metric, float('nan')):.4f}",
        )
    console.print(table)


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="A version number, `champion`, `challenger` or `latest`.")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """One version (an alias: the configured dataset's): artifacts, run, metrics, serving model, decisions."""
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    registry = _registry(settings)
    v = registry.get(version, settings.data.dataset_name())
    held = f" ({', '.join(v.aliases)})" if v.aliases else ""
    console.print(f"[bold]dataset {v.dataset}: version {v.version}[/] {v.model_name}{held}", highlight=False)
    served = v.serving or {}
    for label, value in (
        ("created", f"{v.created_at} by {v.created_by}"),
        ("run", v.run_id),
        ("model", f"{v.model_id} {v.model_uri} (evaluated)"),
        (
            "serving",
            f"{served['model']['id']} {served['model']['uri']} (refit on the snapshot)"
            if served
            else "none (served by the evaluated model until promoted)",
        ),
        ("snapshot", v.snapshot_id),
        ("manifest", f"{v.manifest_id} {v.manifest_uri}"),
        ("config", v.config_fingerprint),
    ):
        console.print(f"  {label:<9}{value}", soft_wrap=True, highlight=False)
    console.print("  metrics  " + ", ".join(f"{k} {x:.4f}" for k, x in sorted(v.metrics.items()) if "@" in k))
    for d in registry.decisions(v.version):
        verdict = "promoted" if d.promoted else "not promoted"
        console.print(
            f"  decision {d.at} vs {d.reference}: {verdict}. {d.reason}", soft_wrap=True, highlight=False
        )


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Make a version the champion of the configured dataset by hand, bypassing the policy (the reason is
    recorded); it is refit on its whole snapshot for serving first."""
    from . import serving
    from .artifacts.registry import CHAMPION, default_actor

    settings = _load(config, _cli_overrides(pairs=set_ or []))
    dataset, registry, store = settings.data.dataset_name(), _registry(settings), open_store(settings.storage)
    held = registry.get(version)
    if held.dataset != dataset:
        _fail(
            f"version {version} is a model of dataset {held.dataset}, not of {dataset} (the configured "
            f"dataset); --set data.name={held.dataset} promotes it there",
            code=2,
        )
    entry, fresh = serving.refit_for_serving(registry, store, version, actor=default_actor())
    refit = f"refit on {entry['interactions']:,} interactions in {entry['seconds']:.1f}s" if fresh else "kept"
    if CHAMPION in held.aliases and fresh:  # a champion from before serving refits: now served by one
        console.print(f"dataset {dataset}: version {version} is the champion; serving model {refit}")
        return
    move = registry.promote(version, actor=default_actor(), reason=reason)
    console.print(
        f"dataset {dataset}: champion is version {move.to_version} (was {move.from_version}); serving model "
        f"{entry['model']['id'][:12]} {refit}",
        highlight=False,
    )


@models_app.command("rollback")
def models_rollback(
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "rollback",
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Give the configured dataset's champion alias back to its previous champion."""
    from . import serving
    from .artifacts.registry import default_actor

    settings = _load(config, _cli_overrides(pairs=set_ or []))
    dataset, registry = settings.data.dataset_name(), _registry(settings)
    move = registry.rollback(actor=default_actor(), reason=reason, dataset=dataset)
    assert move.to_version is not None  # a rollback always names the champion it returns to
    # A champion from before serving refits gets one now, as a promotion would give it.
    store = open_store(settings.storage)
    _, fresh = serving.refit_for_serving(registry, store, move.to_version, default_actor())
    console.print(
        f"dataset {dataset}: champion is version {move.to_version} again (was {move.from_version})"
        + ("; refit for serving" if fresh else ""),
        highlight=False,
    )


@models_app.command("rebuild")
def models_rebuild(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Rebuild an empty or damaged registry from the runs in the artifact store: versions, decisions, serving
    models, and each dataset's aliases as those decisions moved them (moves by hand are not in the store)."""
    from .artifacts.registry import default_actor, rebuild_from_store, registry_url

    settings = _load(config, _cli_overrides(pairs=set_ or []))
    store = open_store(settings.storage)
    done = rebuild_from_store(registry_url(settings.registry, settings.storage), store, default_actor())
    datasets = sorted(set(done.champions) | set(done.challengers))
    aliases = "; ".join(
        f"dataset {d}: "
        + ", ".join(
            f"{alias} v{held[d]}" if d in held else f"no {alias}"
            for alias, held in (("champion", done.champions), ("challenger", done.challengers))
        )
        for d in datasets
    )
    console.print(
        f"rebuilt {done.versions} versions and {done.decisions} decisions from {store.uri_of('runs')}: "
        f"{aliases or 'no aliases'}. `models history` marks the rows as rebuilt.",
        soft_wrap=True,
        highlight=False,
    )
    if done.unrecorded:
        console.print(
            f"{len(done.unrecorded)} runs have no registration record (promotion off, or made before runs "
            f"kept one): {', '.join(r[:8] for r in done.unrecorded)}",
            soft_wrap=True,
        )


@models_app.command("history")
def models_history(config: ConfigOption = None, set_: SetOption = None) -> None:
    """The configured dataset's alias moves and version reuses: when, what, by whom or which run, and why."""
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    dataset = settings.data.dataset_name()
    moves = _registry(settings).history(dataset=dataset)
    console.print(f"dataset {dataset}:", highlight=False)
    for m in moves:
        before = "-" if m.from_version is None else f"v{m.from_version}"
        after = "-" if m.to_version is None else f"v{m.to_version}"
        console.print(
            f"{m.at.replace('T', ' ')[:19]}  {m.alias or '-':<10} {m.action:<8} {before:>4} -> {after:<4} "
            f"by {m.actor}: {m.reason}",
            soft_wrap=True,
            highlight=False,
        )
    if not moves:
        console.print("no alias moves yet")


@app.command()
def recommend(
    user: Annotated[list[int] | None, typer.Option("--user", help="A user id (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many items per user.")] = 10,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user, by the batch flow, to Parquet.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="With --all: also copy the Parquet file here.")] = None,
    version: Annotated[str, typer.Option(help="Registry version or alias to serve from.")] = "champion",
    source: SourceOption = None,
    path: PathOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Top-k unseen items from the configured dataset's champion, with titles where the dataset has a
    catalogue; a user the model does not know gets the snapshot's most popular items. Reads only the
    registry, the artifact store and the catalogue. The dataset is the one --source/--path, --config and
    --set data.* describe, as for `run`."""
    settings = _load(config, _cli_overrides(source=source, path=path, pairs=set_ or []))
    dataset = settings.data.dataset_name()
    if all_users:
        batch_recommend = load_entrypoint("flows/recommend.py:batch_recommend")
        state = batch_recommend(settings.resolved(), k=k, version=version, return_state=True)
        if not state.is_completed():
            _fail(f"batch-recommend {state.name}: {_state_message(state)}", code=1)
        result, store = state.result(), open_store(settings.storage)
        where = _link(store, result["ref"]["uri"])
        console.print(
            f"dataset {dataset}: version {result['version']}: top-{k} for {result['users']:,} users -> "
            f"{where}",
            soft_wrap=True,
            highlight=False,
        )
        if out is not None:
            out.write_bytes(store.get_bytes(ArtifactRef(**result["ref"])))
            console.print(f"copied to {out}")
        return
    if not user:
        _fail("give --user ID (repeatable) or --all", code=2)
    too_large = [u for u in user if not -(2**63) <= u < 2**63]
    if too_large:  # user ids are 64-bit integers everywhere (the data contract); polars would overflow
        _fail(f"--user {too_large[0]}: not a user id (ids are 64-bit integers)", code=2)
    from . import catalogue, serving

    held, model = serving.load_model(_registry(settings), open_store(settings.storage), version, dataset)
    recs, unknown = serving.recommend_users(model, user, k)
    recs = catalogue.with_titles(recs, catalogue.item_titles(settings.data))
    role = ", ".join(held.aliases) or "version"
    served = "refit on the whole snapshot" if held.serving else "trained on its train split"
    # Said above the table, not as its title: a title wraps to the table's width.
    header = f"dataset {dataset}: {role} v{held.version} ({held.model_name}, {served}), top-{k}"
    console.print(header, soft_wrap=True, highlight=False)
    table = Table()
    columns = ["user", "rank", "item", *(["title"] if "title" in recs.columns else []), "score"]
    for column in columns:
        table.add_column(column, justify="left" if column == "title" else "right")
    for row in recs.iter_rows(named=True):
        cells = [str(row["user_id"]), str(row["rank"]), str(row["item_id"])]
        if "title" in recs.columns:
            cells.append(escape(row["title"] or ""))
        table.add_row(*cells, f"{row['score']:.4f}")
    console.print(table)
    if unknown:
        data = "the snapshot" if held.serving else "its training data"
        console.print(
            f"note: {', '.join(map(str, unknown))} unknown to version {held.version} (no events in {data}): "
            f"showing the {k} items most users of {data} have instead",
            soft_wrap=True,
            highlight=False,
        )
    if not held.serving:
        console.print(
            f"note: version {held.version} has no serving refit and may recommend items a user has in its "
            f"held-out events; `models promote {held.version}` refits it",
            soft_wrap=True,
            highlight=False,
        )


@app.command()
def monitor(
    source: SourceOption = None,
    path: PathOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Check the configured dataset's champion for drift and decay now (the `monitor` flow); exit 1 when it
    drifted."""
    settings = _load(config, _cli_overrides(source=source, path=path, pairs=set_ or []))
    monitor_flow = load_entrypoint("flows/monitor.py:monitor")

    state = monitor_flow(settings.resolved(), return_state=True)
    if not state.is_completed():
        _fail(f"monitor {state.name}: {_state_message(state)}", code=2)
    result = state.result()
    verdict = "[red]drift or decay[/]" if result["drifted"] else "[green]no drift[/]"
    dataset = result.get("dataset", settings.data.dataset_name())
    console.print(f"dataset {dataset}: champion v{result.get('champion')}: {verdict}", highlight=False)
    for reason in result["reasons"]:
        console.print(f"  - {reason}", soft_wrap=True, highlight=False)
    store = open_store(settings.storage)
    for name in ("events_report", "predictions_report"):
        if name in result:
            console.print(f"  {name.replace('_', ' ')}: {_link(store, result[name])}", soft_wrap=True)
    if "event" in result:  # emitted, or held back as already reported
        console.print(f"  event: {result['event']['message']}", soft_wrap=True, highlight=False)
    if result["drifted"]:
        raise typer.Exit(1)


@app.command()
def serve(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Serve every deployment on this machine: nightly retrain, hourly monitor, on-new-data, on-drift.

    Reports to PREFECT_API_URL, or to the project's server (`server status`); runs until interrupted.
    """
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    serve_all = load_entrypoint("flows/schedule.py:serve_all")

    serve_all(settings, {"config": settings.resolved()})


@app.command("serve-files")
def serve_files(
    port: Annotated[int | None, typer.Option(help="Port [the one in storage.public_url]")] = None,
    host: Annotated[str, typer.Option(help="Interface (loopback: this machine only).")] = "127.0.0.1",
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Serve the local artifact store read-only over HTTP, so the links in the Prefect UI open.

    Start it next to `prefect server start`; links point at storage.public_url. Runs until interrupted.
    """
    from .artifacts.files import file_server

    settings = _load(config, _cli_overrides(pairs=set_ or []))
    store = open_store(settings.storage)
    if not store.uri_of("").startswith("file://"):
        _fail("the artifact store is on S3: its links are presigned, there is nothing to serve", code=2)
    public = urlsplit(settings.storage.public_url or "")
    try:
        server = file_server(Path(store.root), host, port or public.port or 4201)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port or public.port or 4201}: {exc}", code=2)
    bound = f"http://{server.server_address[0]}:{server.server_address[1]}"
    console.print(f"serving {store.root} read-only on {bound} (links: {settings.storage.public_url})")
    if settings.storage.public_url is None:
        console.print("[yellow]storage.public_url is null: links in the UI stay file:// until it is set[/]")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


server_app = typer.Typer(
    help="The project's Prefect server (.prefect/), which commands start on first use where no "
    "PREFECT_API_URL is configured, and reuse."
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start() -> None:
    """Start the project's Prefect server in the background, unless it runs; print its URL."""
    server = _server()
    try:
        state = server.project_server(Path.cwd())
    except server.ServerError as exc:
        _fail(f"the project's Prefect server did not start: {exc}", code=1)
    ui = state.url.removesuffix("/api")
    console.print(f"project Prefect server on {state.url} (UI {ui}), pid {state.pid}", soft_wrap=True)
    _note_configured_api()


@server_app.command("status")
def server_status() -> None:
    """The project's Prefect server: URL, pid, uptime, database, log; exit 1 when none runs."""
    import time

    import httpx

    server = _server()
    state = server.read_state(Path.cwd() / server.SERVER_DIR)
    if state is None or not state.is_running():
        console.print("no project Prefect server runs (the next command that needs one starts it)")
        _note_configured_api()
        raise typer.Exit(1)
    try:
        answering = httpx.get(f"{state.url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        answering = False
    up = int(time.time() - state.created)
    console.print(
        f"project Prefect server on {state.url} (UI {state.url.removesuffix('/api')})\n"
        f"  pid {state.pid}, up {up // 3600}h{up // 60 % 60:02d}m{up % 60:02d}s, "
        f"{'answering' if answering else '[red]not answering[/] (the next command replaces it)'}\n"
        f"  database: {state.database}\n  log:      {state.log}",
        soft_wrap=True,
        highlight=False,
    )
    _note_configured_api()


@server_app.command("stop")
def server_stop() -> None:
    """Stop the project's Prefect server and its processes (nothing to do if none runs)."""
    stopped = _server().stop_server(Path.cwd())
    console.print(f"stopped the project Prefect server (pid {stopped.pid})" if stopped else "no server ran")


def _note_configured_api() -> None:
    if os.environ.get("PREFECT_API_URL"):
        console.print(
            f"note: PREFECT_API_URL is set ({os.environ['PREFECT_API_URL']}): commands use that server",
            soft_wrap=True,
            highlight=False,
        )


@app.command()
def watch(
    interval: Annotated[float, typer.Option(help="Seconds between looks at the landing zone.")] = 2.0,
    once: Annotated[
        bool, typer.Option(help="Announce what is ready (after files still arriving settle), then exit.")
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Emit the new-data event for each file that lands in the landing zone (the served deployments react)."""
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    _quiet_defaults()
    import time

    from .artifacts.landing import LandingZone

    emit_new_data = load_entrypoint("flows/schedule.py:emit_new_data")

    # One zone for the whole watch: it remembers what it saw, so a file seen changing waits again.
    zone, announced = LandingZone(settings.ingest), _Announced(Path(settings.ingest.landing))
    console.print(f"watching {zone.landing} (event {settings.deploy.new_data_event})")
    while True:
        ready, settling = zone.look()  # ready: unchanged for ingest.settle_seconds, not a temporary name
        for file in ready:
            if not announced.seen(file):
                size = file.stat().st_size
                emit_new_data(settings, str(file.resolve()), size)
                announced.add(file)
                console.print(f"announced {file.name} ({size:,} bytes)")
        if once and not settling:  # --once still waits for files that are arriving
            return
        time.sleep(interval)


@app.command()
def simulate(
    source: SourceOption = None,
    path: PathOption = None,
    data: Annotated[
        Path | None, typer.Option(hidden=True, help="Older spelling of --source movielens --path DIR.")
    ] = None,
    batches: Annotated[int, typer.Option(min=3, help="Batches after the initial load.")] = 4,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Replay a dataset as time-ordered batches through the served deployments and print a timeline.

    Normal batches go ingest -> validate -> train -> evaluate -> promotion; a shifted batch raises drift and
    a retrain; a corrupt batch is quarantined while the champion keeps serving. Starts a temporary Prefect
    server unless PREFECT_API_URL is set, and `serve` against it; stops both at the end.
    """
    if data is not None and source is None and path is None:
        source, path = "movielens", data
    settings = _load(config, _cli_overrides(source=source, path=path, pairs=set_ or []))
    if settings.data.source == "snapshot":
        _fail("simulate replays a dataset: --source synthetic, movielens or file", code=2)
    settings = _checked_data(settings)
    _quiet_defaults()
    import time

    from .data import sources

    # `served` starts its own server (with the UI), each of its processes dying with this one.
    format_step = load_entrypoint("flows/simulate.py:format_step", local_server=False)
    served = load_entrypoint("flows/simulate.py:served", local_server=False)
    replay = load_entrypoint("flows/simulate.py:simulate", local_server=False)
    from .simulation import plan_batches

    planned = plan_batches(sources.load(settings.data, settings.seed), n_batches=batches)
    for batch in planned:
        console.print(f"{batch.name:<18} {batch.rows:>8,} events  {batch.describe()}")
    started = time.monotonic()
    logs = Path(settings.ingest.landing).resolve().parent / "simulate-logs"
    with served(settings, Path.cwd(), console.print, logs) as url:
        console.print(f"Prefect UI: {url.removesuffix('/api')}  (server and serve logs in {logs})")
        steps = replay(settings, planned, lambda step: console.print(format_step(step), highlight=False))
    console.print(f"\n[bold]timeline[/] ({time.monotonic() - started:.0f} s)")
    for step in steps:
        console.print(format_step(step), soft_wrap=True, highlight=False)


class _Announced:
    """Files `watch` announced, kept in the landing zone (a hidden file) so a restart does not repeat them."""

    def __init__(self, landing: Path) -> None:
        self.path = landing / ".announced.json"
        self.keys: set[str] = set(json.loads(self.path.read_text())) if self.path.is_file() else set()

    @staticmethod
    def _key(file: Path) -> str:
        stat = file.stat()
        return f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}"

    def seen(self, file: Path) -> bool:
        return file.exists() and self._key(file) in self.keys

    def add(self, file: Path) -> None:
        self.keys.add(self._key(file))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(sorted(self.keys)))


@app.command()
def sweep(
    config: ConfigOption = None,
    dask_address: Annotated[
        str | None, typer.Option(help="A running Dask scheduler (tcp://host:8786); default: a local cluster.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes of the local cluster.")] = None,
    set_: SetOption = None,
) -> None:
    """Train and evaluate every setting of `sweep.grid` on one split, in parallel on Dask; the best becomes
    the challenger."""
    overrides = _cli_overrides(pairs=set_ or [])
    sweep_options = {k: v for k, v in {"dask_address": dask_address, "workers": workers}.items() if v}
    settings = _load(config, deep_merge(overrides, {"sweep": sweep_options}) if sweep_options else overrides)
    run_sweep = load_entrypoint("flows/sweep.py:run_sweep")
    from .sweeps import trials

    where = settings.sweep.dask_address or f"a local Dask cluster of {settings.sweep.workers} workers"
    try:
        count = len(trials(settings.sweep.grid, settings.model))
    except ValueError as exc:  # an unknown parameter or a value out of range, before anything runs
        _fail(str(exc), code=2)
    console.print(f"[bold]{PACKAGE}[/] sweep: {count} trials on {where}")
    state = run_sweep(settings)
    if not state.is_completed():
        _fail(f"sweep {state.name}: {_state_message(state)}", code=1)
    summary = state.result()
    table = Table(title=f"sweep on snapshot {summary['snapshot'][:12]}, best by {summary['metric']}")
    for column in summary["table"][0]:
        table.add_column(column)
    for row in summary["table"]:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)
    if "challenger" in summary:
        held = summary["challenger"]
        console.print(
            f"challenger: version {held['version']} ({summary['trials'][summary['best']]['label']}), "
            f"{summary['metric']} {held['metrics'][summary['metric']]:.4f}; "
            f"`{PACKAGE} models promote {held['version']} --reason ...` makes it the champion"
        )


@app.command("config")
def show_config(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved settings as JSON, with their fingerprint."""
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    console.print_json(json.dumps({"fingerprint": settings.fingerprint(), "settings": settings.resolved()}))


def _cli_overrides(pairs: list[str], **options: Any) -> dict[str, Any]:
    overrides = dotted_overrides(pairs)
    data = overrides.setdefault("data", {})
    if options.get("source") is not None:
        data["source"] = options["source"]
    if options.get("path") is not None:
        data["path"] = str(options["path"])
    if options.get("model") is not None:
        overrides.setdefault("model", {})["name"] = options["model"]
    if options.get("seed") is not None:
        overrides["seed"] = options["seed"]
    if not data:
        overrides.pop("data")
    return overrides


def _load(config: list[Path] | None, overrides: dict[str, Any]) -> Settings:
    files = list(config or [])
    if DEFAULT_CONFIG.is_file() and DEFAULT_CONFIG.resolve() not in {f.resolve() for f in files}:
        files.insert(0, DEFAULT_CONFIG)
    elif not files:
        _fail(f"no {DEFAULT_CONFIG} here: run from the project root or pass --config FILE", code=2)
    settings = load_settings(files, overrides)
    # Flows get `resolved()`, which holds no secret, and read secrets from the environment: a password given
    # in a config file or with --set reaches this process's flows (and the processes it starts) that way,
    # never as a flow-run parameter.
    os.environ.update(settings.secret_environment())
    return settings


def _checked_data(settings: Settings, split: Any = None) -> Settings:
    """`settings` once its data passed the preflight (before any server or flow starts); else one line per
    problem, naming the setting to change, and exit 2."""
    from . import preflight

    _report_preflight(preflight.check(settings, split))
    return settings


def _report_preflight(found: Any) -> None:
    for warning in found.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True, highlight=False)
    for problem in found.problems[:-1]:
        err.print(f"[red]error:[/] {escape(problem)}", soft_wrap=True, highlight=False)
    if found.problems:
        _fail(found.problems[-1], code=2)


def _quiet_defaults() -> None:
    for key, value in _QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _run_pipeline(settings: Settings) -> Any:
    """Run the pipeline flow in this process (Prefect's local mode)."""
    pipeline = load_entrypoint("flows/pipeline.py:pipeline")
    return pipeline(settings.resolved(), return_state=True)


def load_entrypoint(entrypoint: str, local_server: bool = True) -> Any:
    """An object of the project's `flows/` (`flows/<module>.py:<name>`), loaded the way Prefect loads a
    deployment's entrypoint on a worker: by file path, from the project root (the working directory).

    The flows are not an installed package: they are the project's orchestration layer, found beside
    `configs/`, so the CLI, `serve`, `prefect deploy` and workers all run the same files. Within a command,
    `local_server` also provides the Prefect API the flows report to (`_prefect_api`).
    """
    path, _, name = entrypoint.partition(":")
    if not (Path.cwd() / path).is_file():
        _fail(f"no {path} here: run {PACKAGE} from the project root", code=2)
    module = _flows_module(path)
    if local_server:
        _prefect_api()
    return getattr(module, name)


def _prefect_api() -> None:
    """Within a command: the Prefect API its flows report to, the configured PREFECT_API_URL or else the
    project's server, started in the background on first use, reused by later commands (flows/server.py)."""
    command = _COMMAND.get()
    if command is None:  # a test or a script loading flows: its Prefect set-up is its own
        return
    if "prefect_api" not in command.meta:
        server = _server()
        try:
            command.meta["prefect_api"] = command.with_resource(server.prefect_api())
        except server.ServerError as exc:
            _fail(f"the project's Prefect server did not start: {exc}", code=1)


@cache
def _server() -> Any:
    """flows/server.py, loaded without Prefect's loader: it imports Prefect only to start or use a server, so
    `server status` and `server stop` answer at once."""
    import importlib.util
    import sys

    path = Path("flows/server.py")
    if not path.is_file():
        _fail(f"no {path} here: run {PACKAGE} from the project root", code=2)
    _quiet_defaults()
    spec = importlib.util.spec_from_file_location("_project_server", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@cache
def _flows_module(path: str) -> Any:
    # Once per file: Prefect's loader executes the file again on every call.
    _quiet_defaults()
    from prefect.utilities.importtools import load_script_as_module  # heavy: import late

    return load_script_as_module(path)


def _store(config: list[Path] | None, pairs: list[str] | None) -> ArtifactStore:
    return open_store(_load(config, _cli_overrides(pairs=pairs or [])).storage)


def _registry(settings: Settings) -> Any:
    from .artifacts.registry import open_registry

    return open_registry(settings.registry, settings.storage)


def _tags(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"tag '{pair}' is not of the form key=value", code=2)
        out[key] = value
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _task_states(tasks: dict[str, dict[str, Any]]) -> str:
    cached = [name for name, t in tasks.items() if t["state"] == "Cached"]
    if len(cached) == len(tasks):
        return f"all {len(tasks)} cached (nothing recomputed)"
    return f"{len(tasks) - len(cached)} ran, {len(cached)} cached" + (
        f" ({', '.join(cached)})" if cached else ""
    )


def _print_summary(summary: dict[str, Any], store: ArtifactStore) -> None:
    from .report import metrics_caveat

    data, outputs = summary["dataset"], summary["outputs"]
    named = data.get("name", data["source"])
    table = Table(title=f"{summary['model']} on dataset {named} ({data['source']}, {data['id'][:12]})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    intervals = summary.get("metric_intervals", {})
    for name, value in sorted(summary["metrics"].items()):
        low, high = intervals.get(name, (None, None))
        bounds = f"{low:.4f} - {high:.4f}" if low is not None else ""
        table.add_row(name, f"{value:.4f}" if "@" in name else f"{int(value):,}", bounds)
    console.print(table)
    console.print(
        f"dataset: {data['rows']:,} interactions, {data['users']:,} users, {data['items']:,} items\n"
        f"split: {summary['split']['strategy']}, {summary['split']['train_rows']:,} train / "
        f"{summary['split']['test_rows']:,} test\n"
        f"tasks: {_task_states(summary['tasks'])}\n"
        f"report:   {_link(store, outputs['report'])}\nmanifest: {_link(store, outputs['manifest'])}\n"
        f"store:    {outputs['store']}",
        soft_wrap=True,  # keep URIs whole (copyable) whatever the terminal width
    )
    caveat = metrics_caveat(summary)
    if caveat:
        err.print(f"[yellow]warning:[/] {escape(caveat)}", soft_wrap=True, highlight=False)
    promotion = summary.get("promotion")
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


def _link(store: ArtifactStore, uri: str) -> str:
    """Where to open a stored file: its http(s) link (`serve-files`, or presigned on S3), else its path."""
    link = store.link(uri)
    return link if link.startswith(("http://", "https://")) else unquote(link.removeprefix("file://"))


def _state_message(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:  # the flow's own exception carries the useful message
        return f"{type(exc).__name__}: {exc}"
    return state.message or "no message"


def _fail(message: str, code: int) -> NoReturn:
    # Escaped: a message quoting a value such as `[y` or `[default]` must print as it is, not as markup.
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)
