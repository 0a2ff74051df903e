"""The pipeline flow: inspect inputs -> ingest -> validate -> split -> train -> evaluate -> record -> promote.

Each task wraps one core call, reads its inputs from the artifact store, writes its outputs there and returns
artifact references (content hash + URI), never frames or models. Tasks are cached on their inputs and the
code, with results persisted, so a rerun on unchanged data and config skips every step (each shows `Cached`).
A cached result is used only if every object it names is still in the store and hashes to its id; otherwise
the task runs again, which rewrites the damaged objects (`repaired` in its manifest entry).
The record task writes the run manifest, the report and the Prefect UI artifacts. Then (unless
`promotion.enabled` is off) the model is registered and judged for promotion, see `flows/promotion.py`: that
step reads the registry, so it is never cached and is not part of what `reproduce` checks.
Each task's wall time and peak resident memory go into the manifest's `tasks`; those of record and promotion,
which end after the manifest is written, into the returned summary's `after_manifest`.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows.caching import CACHED, PROJECT_DIR
from flows.dashboard import after_run
from flows.promotion import promote_model
from flows.steps import measured, timed
from flows.ui import ARTIFACT_PREFIX, label_run, publish_link
from {{ cookiecutter.package_name }} import environment, report
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.landing import current_snapshot
from {{ cookiecutter.package_name }}.artifacts.manifest import (
    ArtifactEntry,
    PipelineResult,
    RunManifest,
    RunOutputs,
    build_manifest,
    leakage_record,
)
from {{ cookiecutter.package_name }}.artifacts.runs import COMPLETED, FAILED, RUNNING, mermaid, update_status, write_manifest
from {{ cookiecutter.package_name }}.data import sources
from {{ cookiecutter.package_name }}.data.leakage import check_split, ensure_no_leakage
from {{ cookiecutter.package_name }}.data.split import describe_strategy, resolved_strategy, split
from {{ cookiecutter.package_name }}.settings import (
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    Settings,
    SplitConfig,
    StorageConfig,
    TrainingConfig,
    settings_for_flow,
)
from {{ cookiecutter.package_name }}.settings import ValidationConfig as ValidationSettings
from {{ cookiecutter.package_name }}.validation import validate

if TYPE_CHECKING:
    from {{ cookiecutter.package_name }}.models.base import Recommender

# torch (training, evaluation, the models) is imported by the tasks that rank or train, not when this module
# is loaded: deployments, `serve` and the CLI load it only to find the flow.


class ValidationFailed(RuntimeError):
    """The snapshot did not pass the data-quality gate; nothing downstream ran."""


@task(name="inspect-inputs")
def inspect_inputs_task(data: DataConfig, storage: StorageConfig) -> list[dict[str, Any]]:
    """Each input file's path, size and sha256 (or the current snapshot's): what `ingest` is cached on."""
    # Not cached: hashing the input files is what lets `ingest` notice a changed byte behind the same path.
    if data.source == "snapshot":
        store = open_store(storage)
        pointer = current_snapshot(store)
        if pointer is None:
            raise FileNotFoundError(
                "data.source is 'snapshot' but nothing was ingested yet: run `ingest` first"
            )
        snapshot = ArtifactRef(**pointer["snapshot"])
        path = f"snapshot:{store.locate(snapshot)}"  # inside the store, whatever wrote it
        return [{"path": path, "size": snapshot.size, "sha256": snapshot.id}]
    return sources.fingerprint_inputs(data)


@task(name="ingest", **CACHED)
def ingest_task(
    data: DataConfig, seed: int, inputs: list[dict[str, Any]], storage: StorageConfig
) -> ArtifactRef:
    """The snapshot: the inputs read in contract shape and stored (the current snapshot, for `snapshot`)."""
    if data.source == "snapshot":  # the current snapshot, as `inspect-inputs` found it
        (found,) = inputs
        uri = found["path"].removeprefix("snapshot:")
        return ArtifactRef(id=found["sha256"], uri=uri, kind="snapshot", size=found["size"])
    frame = sources.load(data, seed)
    ref = open_store(storage).put_frame(frame, kind="snapshot")
    get_run_logger().info("snapshot %s: %d interactions from %s", ref.id[:12], frame.height, data.source)
    return ref


@task(name="validate", **CACHED)
def validate_task(snapshot: ArtifactRef, cfg: ValidationSettings, storage: StorageConfig) -> dict[str, Any]:
    """The data-quality gate on the snapshot: whether it passed, a summary, the stored result."""
    store = open_store(storage)
    result = validate(store.get_frame(snapshot), cfg, now=int(time.time()))
    ref = store.put_json(result.to_dict(), kind="validation")
    get_run_logger().info("validation: %s", result.summary())
    return {"passed": result.passed, "summary": result.summary(), "ref": ref}


@task(name="split", **CACHED)
def split_task(
    snapshot: ArtifactRef, cfg: SplitConfig, seed: int, storage: StorageConfig
) -> list[ArtifactRef]:
    """Train and test parts, and the leakage check that proves them apart (stored even when it fails, for
    the post-mortem; the task then fails and nothing trains)."""
    store = open_store(storage)
    parts = split(store.get_frame(snapshot), cfg, seed)
    has_time = "timestamp" in parts.train.columns
    strategy = describe_strategy(cfg.strategy, has_time)
    get_run_logger().info("%s split: %d train / %d test", strategy, parts.train.height, parts.test.height)
    check = check_split(parts.train, parts.test, resolved_strategy(cfg.strategy, has_time))
    refs = [store.put_frame(parts.train, kind="train"), store.put_frame(parts.test, kind="test")]
    checked = store.put_json(check.document(), kind="leakage-check")
    get_run_logger().info("leakage check %s: %s", checked.id[:12], check.summary())
    ensure_no_leakage(check)
    return [*refs, checked]


@task(name="train", **CACHED)
def train_task(
    train: ArtifactRef, cfg: ModelConfig, seed: int, reporting: TrainingConfig, storage: StorageConfig
) -> dict[str, Any]:
    """The model, and torch's settings it was trained under (its thread count decides the last bits): kept
    with the cached result, so a rerun elsewhere records what made the model, not what it runs on."""
    from {{ cookiecutter.package_name }} import training

    store = open_store(storage)
    model = training.train(cfg, store.get_frame(train), seed, reporting)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        model.save(path)
        ref = store.put_file(path, kind="model")
    get_run_logger().info("%s model %s", cfg.name, ref.id[:12])
    return {"model": ref, "torch": environment.torch_facts()}


@task(name="evaluate", **CACHED)
def evaluate_task(
    model: ArtifactRef,
    train: ArtifactRef,
    test: ArtifactRef,
    cfg: EvaluationConfig,
    seed: int,
    storage: StorageConfig,
) -> list[ArtifactRef]:
    """The model's metrics (summary, per user, intervals), then the popularity baseline's on the same split
    (summary, per user): what the promotion judge compares, read back instead of ranking again."""
    from {{ cookiecutter.package_name }}.evaluation import bootstrap_intervals, evaluate, popularity_baseline

    store = open_store(storage)
    train_frame, test_frame = store.get_frame(train), store.get_frame(test)
    result = evaluate(_load_model(store, model), train_frame, test_frame, cfg.k, cfg.batch_size)
    intervals = bootstrap_intervals(result, n_resamples=cfg.bootstrap_resamples, seed=seed)
    baseline = popularity_baseline(train_frame, test_frame, cfg.k, cfg.batch_size, seed)
    get_run_logger().info("metrics: %s", {k: round(v, 4) for k, v in result.summary.items()})
    return [
        store.put_json(result.summary, kind="metrics"),
        store.put_frame(result.per_user, kind="metrics-per-user"),
        store.put_json({name: list(bounds) for name, bounds in intervals.items()}, kind="metric-intervals"),
        store.put_json(baseline.summary, kind="baseline-metrics"),
        store.put_frame(baseline.per_user, kind="baseline-metrics-per-user"),
    ]


@task(name="record")
def record_task(
    settings: Settings,
    artifacts: dict[str, ArtifactEntry],
    inputs: list[dict[str, Any]],
    tasks: dict[str, dict[str, Any]],
    validation: str,
    started_at: str,
    trained_with: dict[str, Any],
) -> dict[str, Any]:
    """Write the run's manifest, report and lineage, publish them in the UI; the `PipelineResult` as JSON."""
    store = open_store(settings.storage)
    run_id = str(flow_run.get_id() or "local")
    # Running from before the manifest exists: a run killed from here on is never listed as a success.
    update_status(store, run_id, status=RUNNING, step="record")
    snapshot, train, test = (store.get_frame(artifacts[k].ref()) for k in ("snapshot", "train", "test"))
    manifest = build_manifest(
        run_id=run_id,
        flow_run_name=flow_run.get_name(),
        started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        settings=settings,
        dataset={
            "name": settings.data.dataset_name(),
            "id": artifacts["snapshot"].id,
            "source": settings.data.source,
            "inputs": inputs,
            **report.describe_interactions(snapshot),
        },
        split={
            "strategy": describe_strategy(settings.split.strategy, "timestamp" in snapshot.columns),
            "train_rows": train.height,
            "test_rows": test.height,
            "leakage": leakage_record(
                store.get_json(artifacts["leakage_check"].ref()), artifacts["train"].id, artifacts["test"].id
            ),
        },
        validation=validation,
        metrics=store.get_json(artifacts["metrics"].ref()),
        metric_intervals=store.get_json(artifacts["metric_intervals"].ref()),
        artifacts=artifacts,
        tasks=tasks,
        environment=environment.capture(trained_with, PROJECT_DIR),
    )
    manifest_ref, manifest_uri = write_manifest(store, manifest)
    markdown = report.render_markdown(manifest)
    # Paths inside the store (the registry keeps the manifest's): a moved store still finds them.
    outputs = RunOutputs(
        manifest=store.relative(manifest_uri),
        manifest_id=manifest_ref.id,
        report=store.relative(store.write_text(f"runs/{run_id}/report.md", markdown)),
        lineage=store.relative(store.write_text(f"runs/{run_id}/lineage.mmd", mermaid(manifest))),
        store=store.uri_of(""),
    )
    _publish(store, settings, manifest, markdown, outputs)
    # The flow's result is JSON (a deployment's result is stored as such): `PipelineResult` reads it back.
    return PipelineResult(**dict(manifest), outputs=outputs).document()


def _run_name() -> str:
    """What ran, before the dataset is known (the flow adds it once the snapshot is made)."""
    parameters = flow_run.parameters
    settings = settings_for_flow(parameters.get("config"), parameters.get("config_files"))
    return f"pipeline {settings.model.name} cfg {settings.fingerprint()[:8]}"


@flow(name="pipeline", flow_run_name=_run_name, on_completion=[after_run], on_failure=[after_run])
def pipeline(config: dict[str, Any] | None = None, config_files: list[str] | None = None) -> dict[str, Any]:
    """Ingest, validate, split, train, evaluate and record one run; returns its `PipelineResult` as JSON.

    `config` is a resolved settings dict (what the CLI passes); a deployment passes `config_files` instead,
    and they are loaded here with the worker's environment (default: configs/default.yaml).
    """
    settings = settings_for_flow(config, config_files)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    storage, seed = settings.storage, settings.seed
    tasks: dict[str, dict[str, Any]] = {}
    step = partial(timed, tasks, storage)
    label_run(tags=settings.tags)

    inputs = step(inspect_inputs_task, settings.data, storage)
    snapshot = step(ingest_task, settings.data, seed, inputs, storage)
    label_run(f"pipeline {settings.model.name} on {snapshot.id[:12]} cfg {settings.fingerprint()[:8]}")
    gate = step(validate_task, snapshot, settings.validation, storage)
    if not gate["passed"]:
        raise ValidationFailed(f"snapshot {snapshot.id[:12]} failed validation: {gate['summary']}")
    train, test, leakage = step(split_task, snapshot, settings.split, seed, storage)
    trained = step(train_task, train, settings.model, seed, settings.training, storage)
    model = trained["model"]
    metrics, per_user, intervals, baseline, baseline_per_user = step(
        evaluate_task, model, train, test, settings.evaluation, seed, storage
    )

    artifacts = {
        "snapshot": ArtifactEntry.of(snapshot, "ingest", ["inputs"]),
        "validation": ArtifactEntry.of(gate["ref"], "validate", ["snapshot"]),
        "train": ArtifactEntry.of(train, "split", ["snapshot"]),
        "test": ArtifactEntry.of(test, "split", ["snapshot"]),
        "leakage_check": ArtifactEntry.of(leakage, "split", ["train", "test"]),
        "model": ArtifactEntry.of(model, "train", ["train"]),
        "metrics": ArtifactEntry.of(metrics, "evaluate", ["model", "train", "test"]),
        "metrics_per_user": ArtifactEntry.of(per_user, "evaluate", ["model", "train", "test"]),
        "metric_intervals": ArtifactEntry.of(intervals, "evaluate", ["model", "train", "test"]),
        "baseline_metrics": ArtifactEntry.of(baseline, "evaluate", ["train", "test"]),
        "baseline_metrics_per_user": ArtifactEntry.of(baseline_per_user, "evaluate", ["train", "test"]),
    }
    # Record and promotion run after the manifest is written, so their cost is in the return value only, and
    # their failure is noted beside the manifest: the run then shows as failed, not as a success.
    after: dict[str, dict[str, float]] = {}
    run_id, failing = str(flow_run.get_id() or "local"), "record"
    promotion, store = None, open_store(storage)
    try:
        recorded = measured(
            after,
            "record",
            record_task,
            settings,
            artifacts,
            inputs,
            tasks,
            gate["summary"],
            started_at,
            trained["torch"],
        )
        if settings.promotion.enabled:
            failing = "promotion"
            update_status(store, run_id, status=RUNNING, step=failing)
            result = PipelineResult.model_validate(recorded)
            promotion = measured(after, "promotion", promote_model, settings, result)
    except Exception as exc:
        try:
            reason = f"{type(exc).__name__}: {exc}"
            update_status(store, run_id, status=FAILED, step=failing, reason=reason)
        except Exception as unwritten:  # noqa: BLE001  (the first error is the one to raise)
            get_run_logger().warning("the run's failed status was not written: %s", unwritten)
        raise
    update_status(store, run_id, status=COMPLETED, step=None)
    return PipelineResult.model_validate(
        {**recorded, "promotion": promotion, "after_manifest": after}
    ).document()


def _publish(
    store: ArtifactStore,
    settings: Settings,
    manifest: RunManifest,
    markdown: str,
    outputs: RunOutputs,
) -> None:
    """Prefect UI artifacts with stable keys, so each key's page shows the history across runs."""
    create_markdown_artifact(
        key=f"{ARTIFACT_PREFIX}-report", markdown=markdown, description="Pipeline run report"
    )
    intervals = manifest.metric_intervals
    create_table_artifact(
        key=f"{ARTIFACT_PREFIX}-metrics",
        table=[
            {"metric": name, "value": round(value, 6), **_bounds(intervals.get(name))}
            for name, value in report.metric_items(manifest.metrics)
        ],
        description=f"{settings.model.name} on dataset {manifest.dataset.id[:12]}: value and 95% "
        "bootstrap interval over users (low, high)",
    )
    links = {"manifest": outputs.manifest, "report": outputs.report, "lineage": outputs.lineage}
    links["model"] = manifest.artifacts["model"].uri
    for name, uri in links.items():
        publish_link(store, f"{name}-file", uri, f"{name} of this run")


def _bounds(interval: list[float] | None) -> dict[str, float | None]:
    """A metric's 95% interval as table columns (empty where the manifest has none)."""
    low, high = interval or (None, None)
    return {
        "low": None if low is None else round(low, 6),
        "high": None if high is None else round(high, 6),
    }


def _load_model(store: ArtifactStore, ref: ArtifactRef) -> Recommender:
    from {{ cookiecutter.package_name }}.models.base import Recommender

    with tempfile.TemporaryDirectory() as tmp:
        return Recommender.load(store.fetch_file(ref, Path(tmp) / "model.safetensors"))
