"""The sweep flow: the pipeline's data steps once, then one trial per grid setting in parallel on Dask.

Ingest, validate and split are the pipeline's own tasks (cache hits after a run on the same data). Each trial
trains and evaluates one model config on that split, on a Dask worker, and stores its model and metrics. A
table artifact compares the trials with their 95% intervals. The best trial's setting is then rebuilt by
the pipeline itself, as a subflow without promotion, so the model it registers (as the `challenger`) is
bit for bit what `run` gives with that setting and `reproduce` can check it: a trial ran with the worker's
thread count, and some kernels round differently with another. `models promote` makes it the champion.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from flows.caching import CACHED, in_store
from flows.pipeline import (
    ValidationFailed,
    ingest_task,
    inspect_inputs_task,
    pipeline,
    split_task,
    validate_task,
)
from flows.promotion import register_task
from flows.server import prefect_api
from flows.ui import ARTIFACT_PREFIX
from {{ cookiecutter.package_name }} import sweeps
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, open_store
from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult
from {{ cookiecutter.package_name }}.settings import (
    EvaluationConfig,
    ModelConfig,
    Settings,
    StorageConfig,
    SweepConfig,
    TrainingConfig,
    settings_for_flow,
)


@task(name="trial", **CACHED)
def trial_task(
    train: ArtifactRef,
    test: ArtifactRef,
    cfg: ModelConfig,
    seed: int,
    evaluation: EvaluationConfig,
    threads: int | None,
    storage: StorageConfig,
) -> dict[str, Any]:
    """Train and evaluate one trial's model on the sweep's split; its metrics, intervals and timings."""
    import torch

    from {{ cookiecutter.package_name }} import training
    from {{ cookiecutter.package_name }}.evaluation import bootstrap_intervals, evaluate

    if threads:  # one core's worth per worker, so parallel trials do not fight over the cores
        torch.set_num_threads(threads)
    store = open_store(storage)
    train_frame, test_frame = store.get_frame(train), store.get_frame(test)
    started = time.perf_counter()
    model = training.train(cfg, train_frame, seed, TrainingConfig(progress_bar=False))
    fitted = time.perf_counter()
    result = evaluate(model, train_frame, test_frame, evaluation.k, evaluation.batch_size)
    evaluated = time.perf_counter()
    intervals = bootstrap_intervals(result, n_resamples=evaluation.bootstrap_resamples, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        model.save(path)
        model_ref = store.put_file(path, kind="model")
    return {
        "model": model_ref.model_dump(),
        "metrics": result.summary,
        "metrics_ref": store.put_json(result.summary, kind="metrics").model_dump(),
        "intervals": {name: list(bounds) for name, bounds in intervals.items()},
        "fit_seconds": fitted - started,
        "eval_seconds": evaluated - fitted,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def task_runner(cfg: SweepConfig) -> DaskTaskRunner:
    """The configured Dask scheduler, or a local cluster of worker processes on loopback."""
    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.workers,
            "threads_per_worker": cfg.threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,  # no web dashboard on a fixed port
        }
    )


# The default runner, for a call without `run_sweep` (a deployment, a test): a loopback cluster as configured
# by default; `run_sweep` swaps in the one the settings name.
# Prefect types task_runner as TaskRunner[PrefectFuture], a parameter its generic is invariant in, so its own
# Dask runner (TaskRunner[PrefectDaskFuture]) is refused although the flow runs on it.
@flow(name="sweep", task_runner=task_runner(SweepConfig()))  # type: ignore[arg-type]
def sweep(config: dict[str, Any] | None = None, config_files: list[str] | None = None) -> dict[str, Any]:
    """Run every trial of `sweep.grid` on one split; register the best as the challenger."""
    settings = settings_for_flow(config, config_files)
    storage, seed, logger = settings.storage, settings.seed, get_run_logger()

    inputs = inspect_inputs_task(settings.data, storage)
    snapshot = in_store(ingest_task, storage)(settings.data, seed, inputs, storage)
    gate = in_store(validate_task, storage)(snapshot, settings.validation, storage)
    if not gate["passed"]:
        raise ValidationFailed(f"snapshot {snapshot.id[:12]} failed validation: {gate['summary']}")
    # The split step's leakage check guards the trials too: a leaky split fails here, before any trial.
    train, test, _checked = in_store(split_task, storage)(snapshot, settings.split, seed, storage)

    trials = sweeps.trials(settings.sweep.grid, settings.model)
    threads = settings.sweep.threads_per_worker if settings.sweep.dask_address is None else None
    logger.info("%d trials on split %s / %s", len(trials), train.id[:12], test.id[:12])
    trial = in_store(trial_task, storage)
    futures = [
        trial.submit(train, test, cfg, seed, settings.evaluation, threads, storage) for _, cfg in trials
    ]
    results = [
        {**future.result(), "label": name, "config": cfg.model_dump()}
        for (name, cfg), future in zip(trials, futures, strict=True)
    ]

    compared = compare_task(results, settings.evaluation, snapshot)
    summary: dict[str, Any] = {"snapshot": snapshot.id, "trials": results, **compared}
    if settings.sweep.register_best:
        best = ModelConfig(**results[compared["best"]]["config"])
        summary["challenger"] = _rebuild_and_register(settings, best)
    return summary


@task(name="compare")
def compare_task(
    results: list[dict[str, Any]], evaluation: EvaluationConfig, snapshot: ArtifactRef
) -> dict[str, Any]:
    """Rank the trials by the primary metric; publish the comparison as a table artifact."""
    metric = evaluation.primary_metric
    winner = sweeps.best(results, metric)
    shown = [metric] + [m for m in (f"recall@{evaluation.k[0]}",) if m != metric]
    rows = sweeps.table(results, shown, winner)
    create_table_artifact(
        key=f"{ARTIFACT_PREFIX}-sweep",
        table=rows,
        description=f"{len(results)} trials on snapshot {snapshot.id[:12]}; best by {metric}",
    )
    get_run_logger().info(
        "best of %d trials: %s (%s)", len(results), results[winner]["label"], rows[winner][metric]
    )
    return {"metric": metric, "best": winner, "table": rows}


def _rebuild_and_register(settings: Settings, best: ModelConfig) -> dict[str, Any]:
    """The winner, rebuilt by the pipeline (a subflow; its data steps are cache hits), as the challenger."""
    chosen = settings.updated({"model": best.model_dump(), "promotion": {"enabled": False}})
    result = PipelineResult.model_validate(pipeline(chosen.resolved()))
    version = register_task(result, settings.registry, settings.storage)["version"]
    get_run_logger().info(
        "version %d (%s, run %s) is the challenger; `models promote %d --reason ...` makes it the champion",
        version,
        best.name,
        result.run_id,
        version,
    )
    return {"version": version, "run_id": result.run_id, "metrics": result.metrics}


def run_sweep(settings: Settings) -> Any:
    """The sweep flow on the configured Dask runner; returns its final state.

    Trials run in other processes, which report to the Prefect API this process names: the configured one,
    else the project's server (server.py), named here so the workers report to it too rather than each
    starting a temporary server of its own.
    """
    runnable = sweep.with_options(task_runner=task_runner(settings.sweep))  # type: ignore[arg-type]  # as above
    with prefect_api():
        return runnable(settings.resolved(), return_state=True)
