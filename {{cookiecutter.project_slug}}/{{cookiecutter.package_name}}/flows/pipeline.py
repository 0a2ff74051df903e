"""The pipeline flow: ingest -> validate -> split -> train -> evaluate -> report.

Each task wraps one core call, reads its inputs from the artifact store and writes its outputs there, and
returns artifact references (content hash + URI), never frames or models.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from .. import report, training
from ..artifacts import ArtifactRef, ArtifactStore, open_store
from ..data import sources
from ..data.split import split
from ..evaluation import evaluate
from ..models.base import Recommender
from ..settings import (
    PACKAGE,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    Settings,
    SplitConfig,
    StorageConfig,
    load_settings,
)
from ..settings import ValidationConfig as ValidationSettings
from ..validation import validate

ARTIFACT_PREFIX = PACKAGE.replace("_", "-")


class ValidationFailed(RuntimeError):
    """The snapshot did not pass the data-quality gate; nothing downstream ran."""


@task(name="ingest")
def ingest_task(data: DataConfig, seed: int, storage: StorageConfig) -> ArtifactRef:
    frame = sources.load(data, seed)
    ref = open_store(storage).put_frame(frame, kind="snapshot")
    get_run_logger().info("snapshot %s: %d interactions from %s", ref.id[:12], frame.height, data.source)
    return ref


@task(name="validate")
def validate_task(snapshot: ArtifactRef, cfg: ValidationSettings, storage: StorageConfig) -> dict[str, Any]:
    store = open_store(storage)
    result = validate(store.get_frame(snapshot), cfg, now=int(time.time()))
    ref = store.put_json(result.to_dict(), kind="validation")
    get_run_logger().info("validation: %s", result.summary())
    return {"passed": result.passed, "summary": result.summary(), "ref": ref}


@task(name="split")
def split_task(
    snapshot: ArtifactRef, cfg: SplitConfig, seed: int, storage: StorageConfig
) -> tuple[ArtifactRef, ArtifactRef]:
    store = open_store(storage)
    parts = split(store.get_frame(snapshot), cfg, seed)
    get_run_logger().info("%s split: %d train / %d test", cfg.strategy, parts.train.height, parts.test.height)
    return store.put_frame(parts.train, kind="train"), store.put_frame(parts.test, kind="test")


@task(name="train")
def train_task(train: ArtifactRef, cfg: ModelConfig, seed: int, storage: StorageConfig) -> ArtifactRef:
    store = open_store(storage)
    model = training.train(cfg, store.get_frame(train), seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        model.save(path)
        ref = store.put_file(path, kind="model")
    get_run_logger().info("%s model %s", cfg.name, ref.id[:12])
    return ref


@task(name="evaluate")
def evaluate_task(
    model: ArtifactRef, train: ArtifactRef, test: ArtifactRef, cfg: EvaluationConfig, storage: StorageConfig
) -> tuple[ArtifactRef, ArtifactRef]:
    store = open_store(storage)
    result = evaluate(
        _load_model(store, model), store.get_frame(train), store.get_frame(test), cfg.k, cfg.batch_size
    )
    get_run_logger().info("metrics: %s", {k: round(v, 4) for k, v in result.summary.items()})
    return store.put_json(result.summary, kind="metrics"), store.put_frame(
        result.per_user, kind="metrics-per-user"
    )


@task(name="report")
def report_task(settings: Settings, refs: dict[str, ArtifactRef], validation: str) -> dict[str, Any]:
    store = open_store(settings.storage)
    run_id = str(flow_run.get_id() or "local")
    snapshot, train, test = (store.get_frame(refs[k]) for k in ("snapshot", "train", "test"))
    metrics = store.get_json(refs["metrics"])
    summary: dict[str, Any] = {
        "run_id": run_id,
        "model": settings.model.name,
        "seed": settings.seed,
        "config_fingerprint": settings.fingerprint(),
        "tags": settings.tags,
        "dataset": {
            "id": refs["snapshot"].id,
            "source": settings.data.source,
            **report.describe_interactions(snapshot),
        },
        "split": {"strategy": settings.split.strategy, "train_rows": train.height, "test_rows": test.height},
        "validation": validation,
        "metrics": metrics,
        "artifacts": [{"name": name, **ref.model_dump()} for name, ref in refs.items()],
        "config": settings.resolved(),
    }
    markdown = report.render_markdown(summary)
    summary["outputs"] = {
        "summary": store.write_text(f"runs/{run_id}/summary.json", _json(summary)),
        "report": store.write_text(f"runs/{run_id}/report.md", markdown),
        "store": store.uri_of(""),
    }
    create_markdown_artifact(
        key=f"{ARTIFACT_PREFIX}-report", markdown=markdown, description="Pipeline run report"
    )
    create_table_artifact(
        key=f"{ARTIFACT_PREFIX}-metrics",
        table=[{"metric": name, "value": round(value, 6)} for name, value in report.metric_items(metrics)],
        description=f"{settings.model.name} on dataset {refs['snapshot'].id[:12]}",
    )
    return summary


@flow(name="pipeline")
def pipeline(config: dict[str, Any] | None = None, config_files: list[str] | None = None) -> dict[str, Any]:
    """Ingest, validate, split, train, evaluate and report.

    `config` is a resolved settings dict (what the CLI passes); a deployment passes `config_files` instead,
    and they are loaded here with the worker's environment (default: configs/default.yaml).
    """
    if config is not None:
        settings = Settings.from_resolved(config)
    else:
        settings = load_settings([Path(f) for f in config_files or ["configs/default.yaml"]])
    storage = settings.storage
    snapshot = ingest_task(settings.data, settings.seed, storage)
    gate = validate_task(snapshot, settings.validation, storage)
    if not gate["passed"]:
        raise ValidationFailed(f"snapshot {snapshot.id[:12]} failed validation: {gate['summary']}")
    train, test = split_task(snapshot, settings.split, settings.seed, storage)
    model = train_task(train, settings.model, settings.seed, storage)
    metrics, per_user = evaluate_task(model, train, test, settings.evaluation, storage)
    refs = {
        "snapshot": snapshot,
        "validation": gate["ref"],
        "train": train,
        "test": test,
        "model": model,
        "metrics": metrics,
        "metrics_per_user": per_user,
    }
    return report_task(settings, refs, gate["summary"])


def _load_model(store: ArtifactStore, ref: ArtifactRef) -> Recommender:
    with tempfile.TemporaryDirectory() as tmp:
        return Recommender.load(store.fetch_file(ref, Path(tmp) / "model.safetensors"))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)
