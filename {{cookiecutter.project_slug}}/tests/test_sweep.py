"""Sweeps: the grid's trials, and the sweep flow on a local Dask cluster against a real Prefect server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from {{ cookiecutter.package_name }} import sweeps
from {{ cookiecutter.package_name }}.artifacts.registry import CHALLENGER, CHAMPION, open_registry
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.settings import ModelConfig, SweepTrials, load_settings

pytestmark = pytest.mark.unit

# The flows as a worker loads them: by file path, from the project root.
ARTIFACT_PREFIX = load_entrypoint("flows/ui.py:ARTIFACT_PREFIX")
run_sweep = load_entrypoint("flows/sweeps.py:run_sweep")

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
GRID = [
    {"model": "ease", "params": {"l2": [10.0, 2000.0]}},
    {"model": "itemknn", "params": {"neighbours": [20]}},
    {"model": "popularity"},
]


def test_trials_are_every_combination_in_order_over_the_model_section() -> None:
    base = ModelConfig(name="ease", ials={"alpha": 3.0})
    grid = [
        SweepTrials(model="ials", params={"factors": [8, 16], "regularization": [1.0, 2.0]}),
        SweepTrials(model="popularity"),
    ]
    found = sweeps.trials(grid, base)
    assert [label for label, _ in found] == [
        "ials factors=8 regularization=1.0",
        "ials factors=8 regularization=2.0",
        "ials factors=16 regularization=1.0",
        "ials factors=16 regularization=2.0",
        "popularity",
    ]
    first = found[0][1]
    assert (first.name, first.ials.factors, first.ials.regularization) == ("ials", 8, 1.0)
    assert first.ials.alpha == 3.0  # what the grid does not set comes from the model section


def test_a_bad_grid_fails_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="has no parameter"):
        sweeps.trials([SweepTrials(model="ease", params={"lambda": [1.0]})], ModelConfig())
    with pytest.raises(ValueError, match="greater than 0"):
        sweeps.trials([SweepTrials(model="bpr", params={"factors": [0]})], ModelConfig())
    with pytest.raises(ValueError):
        SweepTrials(model="svd")


def test_best_takes_the_highest_metric_and_the_first_of_equals() -> None:
    results = [{"metrics": {"ndcg@10": v}} for v in (0.2, 0.4, 0.4, 0.1)]
    assert sweeps.best(results, "ndcg@10") == 1
    with pytest.raises(KeyError, match="recall@5"):
        sweeps.best(results, "recall@5")


def test_an_experiment_file_replaces_the_grid_rather_than_adding_to_it(tmp_path: Path) -> None:
    experiment = tmp_path / "sweep.yaml"
    experiment.write_text(yaml.safe_dump({"sweep": {"grid": [{"model": "bpr", "params": {"factors": [8]}}]}}))
    settings = load_settings([DEFAULT, experiment])
    assert [entry.model for entry in settings.sweep.grid] == ["bpr"]
    assert settings.fingerprint() == load_settings([DEFAULT]).fingerprint()  # a sweep is not the experiment


def test_sweep_cli_rejects_an_unknown_parameter_before_starting(tmp_path: Path) -> None:
    experiment = tmp_path / "bad.yaml"
    experiment.write_text(yaml.safe_dump({"sweep": {"grid": [{"model": "ease", "params": {"lamda": [1]}}]}}))
    record = Path(".prefect") / "server.json"  # the project's server, started by commands that run flows
    before = record.read_bytes() if record.exists() else None
    result = CliRunner().invoke(app, ["sweep", "--config", str(DEFAULT), "--config", str(experiment)])
    assert result.exit_code == 2
    assert "ease has no parameter ['lamda']" in result.output
    assert (record.read_bytes() if record.exists() else None) == before  # no server started for it


@pytest.mark.usefixtures("prefect_server")
def test_sweep_runs_trials_in_parallel_on_dask_and_registers_the_best_as_challenger(tmp_path: Path) -> None:
    settings = load_settings(
        [DEFAULT],
        {
            "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
            "storage": {"uri": str(tmp_path / "artifacts")},
            "sweep": {"grid": GRID, "workers": 2},
        },
    )
    state = run_sweep(settings)
    assert state.is_completed(), state.message
    summary = state.result()

    trials = summary["trials"]
    assert [t["label"] for t in trials] == [
        "ease l2=10.0",
        "ease l2=2000.0",
        "itemknn neighbours=20",
        "popularity",
    ]
    # Every trial ran in a Dask worker process, and the two workers both took trials.
    workers = {t["worker"] for t in trials}
    assert len(workers) == 2
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)
    scores = [t["metrics"]["ndcg@10"] for t in trials]
    assert summary["best"] == scores.index(max(scores))
    assert scores[summary["best"]] > scores[3]  # a real model beats popularity here
    for row, trial in zip(summary["table"], trials, strict=True):
        low, high = trial["intervals"]["ndcg@10"]
        assert low <= trial["metrics"]["ndcg@10"] <= high
        assert row["ndcg@10"].startswith(f"{trial['metrics']['ndcg@10']:.4f} (")

    # The best setting, rebuilt by the pipeline, is the challenger; nothing became champion.
    registry = open_registry(settings.registry, settings.storage)
    challenger = registry.get(CHALLENGER)
    assert challenger.version == summary["challenger"]["version"]
    assert challenger.run_id == summary["challenger"]["run_id"]
    best = trials[summary["best"]]
    assert challenger.model_name == best["config"]["name"]
    assert challenger.metrics["ndcg@10"] == pytest.approx(best["metrics"]["ndcg@10"], abs=1e-4)
    assert registry.alias(CHAMPION) is None

    # The comparison table is a Prefect artifact on the server.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{ARTIFACT_PREFIX}-sweep"])),
            # Prefect 3.8's sync client sends unset arguments as null and its server rejects that: pass all.
            flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
            offset=0,
        )
    assert tables and "ease l2=10.0" in str(tables[0].data)


@pytest.mark.usefixtures("prefect_server")
def test_sweep_runs_on_a_dask_scheduler_given_by_address(tmp_path: Path) -> None:
    """`sweep.dask_address`: the trials go to that cluster's workers (here one started by the test)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        worker_pids = set(client.run(os.getpid).values())
        settings = load_settings(
            [DEFAULT],
            {
                "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
                "storage": {"uri": str(tmp_path / "artifacts")},
                "sweep": {
                    "grid": GRID[1:],
                    "dask_address": cluster.scheduler_address,
                    "register_best": False,
                },
            },
        )
        state = run_sweep(settings)
    assert state.is_completed(), state.message
    summary = state.result()
    ran_on = {int(t["worker"].rsplit(":", 1)[1]) for t in summary["trials"]}
    assert ran_on and ran_on <= worker_pids
    assert "challenger" not in summary
    assert open_registry(settings.registry, settings.storage).versions() == []
