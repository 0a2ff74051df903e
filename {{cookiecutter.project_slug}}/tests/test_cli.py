"""The command line as a user runs it: a subprocess, exit codes and messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.launch import SWITCH

pytestmark = pytest.mark.e2e

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _cli(
    *args: str, cwd: Path = PROJECT_ROOT, timeout: int = 300, path: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it; `path`: folders put before the project on the import path."""
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(map(str, (*path, PROJECT_ROOT))),
            "COLUMNS": "200",
            SWITCH: "1",  # later commands forked from the project's warm process, as a user's are
        },
    )


def _upgraded(folder: Path, name: str, version: str) -> Path:
    """A folder that, put first on the import path, makes Python see `name` at `version` (its metadata only:
    the code imported is still the installed one), as after an upgrade."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The project's configs and flows copied into tmp_path (the package stays installed where it is): the
    commands run there as in any copy of the project, with their outputs inside tmp_path."""
    for part in ("configs", "flows"):
        shutil.copytree(PROJECT_ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_unknown_option_fails_with_usage_error() -> None:
    result = _cli("run", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_missing_data_path_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("run", "--source", "movielens", "--path", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "data path does not exist" in result.stderr and "nowhere" in result.stderr


def test_invalid_setting_names_the_field() -> None:
    result = _cli("config", "--set", "split.test_fraction=2")
    assert result.returncode == 2
    assert "split.test_fraction" in result.stderr


def test_config_shows_resolved_settings_and_fingerprint() -> None:
    result = _cli("config", "--set", "seed=5", "--set", "model.name=popularity")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["settings"]["seed"] == 5 and shown["settings"]["model"]["name"] == "popularity"
    assert len(shown["fingerprint"]) == 64


def test_outside_the_project_without_config_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "configs/default.yaml" in result.stderr


@pytest.mark.e2e
@pytest.mark.usefixtures("project_copy", "prefect_server")
def test_run_twice_second_run_is_all_cache_hits_then_inspect(tmp_path: Path) -> None:
    """Two processes, same data and config: the second recomputes nothing; then the catalog commands."""
    args = [
        "--config", str(PROJECT_ROOT / "configs" / "default.yaml"),
        "--set", "data.synthetic.n_users=300", "--set", "data.synthetic.n_items=200",
        "--set", "data.synthetic.n_interactions=5000", "--set", f"storage.uri={tmp_path / 'artifacts'}",
    ]  # fmt: skip
    first = _cli("run", *args, "--model", "popularity", "--tag", "purpose=test", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ndcg@10" in first.stdout and "5,000 interactions" in first.stdout and "manifest:" in first.stdout
    assert "tasks: 6 ran, 0 cached" in first.stdout
    second = _cli("run", *args, "--model", "popularity", "--tag", "purpose=test", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "tasks: 1 ran, 5 cached (ingest, validate, split, train, evaluate)" in second.stdout
    assert second.stdout.count("Cached(type=COMPLETED)") + second.stderr.count("Cached(type=COMPLETED)") == 5

    listing = _cli("runs", *args, "--tag", "purpose=test", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    listed = json.loads(listing.stdout)
    assert [r["tags"] for r in listed] == [{"purpose": "test"}] * 2, listing.stdout
    assert [r["cached_tasks"] for r in listed] == [0, 5] and {r["status"] for r in listed} == {"completed"}
    lineage = _cli("lineage", "latest", *args, "--out", str(tmp_path / "g.mmd"), cwd=tmp_path)
    assert lineage.returncode == 0, lineage.stderr
    assert "synthetic, seed 42" in lineage.stdout and "model" in lineage.stdout
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart LR")
    compared = _cli("compare", "latest", "latest", *args, cwd=tmp_path)
    assert compared.returncode == 0 and "(same)" in compared.stdout

    # polars "upgraded": the environment's digest is in every cache key, so nothing cached is reused, and
    # `compare` names the package that changed.
    newer = _upgraded(tmp_path / "upgraded", "polars", "99.0.0")
    upgraded = _cli("run", *args, "--model", "popularity", cwd=tmp_path, path=(newer,))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "tasks: 6 ran, 0 cached" in upgraded.stdout
    ids = [r["run_id"] for r in json.loads(_cli("runs", *args, "--json", cwd=tmp_path).stdout)]
    packages = _cli("compare", ids[1], ids[2], *args, "--json", cwd=tmp_path)
    assert packages.returncode == 0, packages.stderr
    changed = json.loads(packages.stdout)
    assert [c[0] for c in changed["packages"]] == ["polars"], changed["packages"]
    assert changed["packages"][0][2] == "99.0.0"
    assert [c[0] for c in changed["environment"]] == ["digest"], changed["environment"]
    assert [c[0] for c in changed["artifacts"]] == [], changed["artifacts"]  # same bytes, computed again

    # The registry after those two runs: version 1 (popularity) is the first champion; the second run, the
    # same model on the same data, reuses it with its decision. A third run with EASE beats it: version 2.
    assert "model version 1: promoted to champion" in first.stdout
    assert "model version 1 reused (same model and data), decision: promoted against" in second.stdout
    third = _cli("run", *args, "--model", "ease", cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "model version 2: promoted to champion" in third.stdout
    versions = _cli("models", "list", *args, "--json", cwd=tmp_path)
    assert versions.returncode == 0, versions.stderr
    listed = [(v["version"], v["model_name"], v["aliases"]) for v in json.loads(versions.stdout)]
    assert listed == [(1, "popularity", []), (2, "ease", ["champion"])], versions.stdout
    shown = _cli("models", "show", "champion", *args, cwd=tmp_path)
    assert shown.returncode == 0 and "version 2" in shown.stdout and "(champion)" in shown.stdout
    assert "decision" in shown.stdout and "promoted" in shown.stdout
    missing = _cli("models", "show", "99", *args, cwd=tmp_path)
    assert missing.returncode == 2 and "no model version 99" in missing.stderr

    everyone = _cli(
        "recommend", "--all", "-k", "5", "--out", str(tmp_path / "recs.parquet"), *args, cwd=tmp_path
    )
    assert everyone.returncode == 0, everyone.stdout + everyone.stderr
    import polars as pl

    recs = pl.read_parquet(tmp_path / "recs.parquet")
    assert recs.columns == ["user_id", "item_id", "score", "rank"] and recs.get_column("rank").max() == 5
    user = str(recs.get_column("user_id").min())
    one = _cli("recommend", "--user", user, "-k", "5", *args, cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "dataset synthetic: champion v2 (ease, refit on the whole snapshot), top-5" in one.stdout
    served = recs.filter(pl.col("user_id") == int(user)).get_column("item_id").to_list()
    assert all(str(item) in one.stdout for item in served)
    unknown = _cli("recommend", "--user", "987654321", *args, cwd=tmp_path)
    # A user the champion does not know gets the snapshot's most popular items, with a note.
    assert unknown.returncode == 0 and "987654321 unknown to version 2" in unknown.stdout

    back = _cli("models", "rollback", "--reason", "smoke test", *args, cwd=tmp_path)
    assert back.returncode == 0 and "synthetic: champion is version 1 again (was 2)" in back.stdout, (
        back.stdout + back.stderr
    )
    history = _cli("models", "history", *args, "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    moves = json.loads(history.stdout)["moves"]
    champion = [(m["action"], m["to_version"], m["reason"]) for m in moves if m["alias"] == "champion"]
    assert len(champion) == 3 and champion[-1][:2] == ("rollback", 1), champion
    assert champion[-1][2] == "smoke test"
    assert "reuse" in {m["action"] for m in moves}  # the second run asked for version 1 again
    again = _cli("models", "promote", "2", "--reason", "rollback was a drill", *args, cwd=tmp_path)
    assert again.returncode == 0 and "synthetic: champion is version 2 (was 1)" in again.stdout


@pytest.mark.e2e
@pytest.mark.usefixtures("project_copy")
def test_simulate_shows_training_quarantine_and_drift_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole loop through served deployments, as `simulate` prints it, on the project copy's own Prefect
    server: `simulate` starts it as any command does (the test stops it)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # not the session's server: it runs no scheduler
    try:
        result = _cli(
            "simulate", "--batches", "3",
            "--config", str(PROJECT_ROOT / "configs" / "default.yaml"),
            "--set", "model.name=ease", "--set", "data.synthetic.n_users=1000",
            "--set", "data.synthetic.n_items=500", "--set", "data.synthetic.n_interactions=25000",
            "--set", f"storage.uri={tmp_path / 'artifacts'}",
            cwd=tmp_path, timeout=1800,  # a hang guard: 11 flow runs took over 900 s at load 15 on 2 cores
        )  # fmt: skip
    finally:
        _cli("server", "stop", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4_000:] + result.stderr[-4_000:]
    timeline = result.stdout.split("timeline (", 1)[1].splitlines()[1:]
    steps = [line.split(None, 5) for line in timeline if line.strip()]
    by_batch: dict[str, list[list[str]]] = {}
    for _at, batch, what, state, _run, *detail in steps:
        by_batch.setdefault(batch, []).append([what, state, " ".join(detail)])
    names = ["00-initial", "01-normal", "02-corrupt", "03-normal", "04-shifted"]
    assert list(by_batch) == [f"{name}.csv" for name in names]
    # Normal batches: ingest -> validate -> train -> evaluate -> promotion, and a champion comes out of them.
    normal = [step for b in ("00-initial", "01-normal", "03-normal") for step in by_batch[f"{b}.csv"]]
    assert all(state == "Completed" for _, state, _ in normal)
    assert any("promoted to champion" in detail for what, _, detail in normal if what == "ingest+train")
    # The corrupt batch is quarantined, the champion keeps serving, and there is nothing new to monitor.
    ingested, checked = by_batch["02-corrupt.csv"]
    assert ingested[:2] == ["ingest+train", "Failed"] and "quarantined 02-corrupt.csv" in ingested[2]
    assert "champion still v" in ingested[2] and (tmp_path / "quarantine" / "02-corrupt.csv").is_file()
    assert checked == ["monitor", "Skipped", "nothing new landed: the last check stands"]  # no run for it
    # The shifted batch raises drift, and the drift event starts a retrain that completes.
    whats = [(what, state) for what, state, _ in by_batch["04-shifted.csv"]]
    assert whats == [("ingest+train", "Completed"), ("monitor", "Completed"), ("retrain", "Completed")]
    assert (
        "DRIFT:" in by_batch["04-shifted.csv"][1][2]
    )  # (run names hold spaces: the detail starts with some)
    before_shift = [d for b in names[:-1] for w, _, d in by_batch[f"{b}.csv"] if w == "monitor"]
    assert len(before_shift) == 4 and not any("DRIFT:" in d for d in before_shift)


@pytest.mark.e2e
@pytest.mark.usefixtures("project_copy", "prefect_server")
def test_run_killed_during_training_leaves_no_partial_artifact_and_the_next_run_reuses_finished_steps(
    tmp_path: Path,
) -> None:
    """SIGKILL (the run, in a session of its own) once training has saved a checkpoint."""
    import hashlib
    import signal
    import time

    from {{ cookiecutter.package_name }}.models import Recommender

    store, checkpoints = tmp_path / "artifacts", tmp_path / "checkpoints"
    # 25 epochs: the kill comes after the first checkpoint, 24 epochs before the end (the return code says
    # whether it did), and the rerun trains them all.
    args = [
        "run", "--config", str(PROJECT_ROOT / "configs" / "default.yaml"), "--model", "bpr",
        "--set", "data.synthetic.n_interactions=20000", "--set", "model.bpr.epochs=25",
        "--set", "training.checkpoint_every=1", "--set", f"training.checkpoint_dir={checkpoints}",
        "--set", f"storage.uri={store}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(checkpoints.glob("*.safetensors")) and process.poll() is None:
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL  # killed mid-training, not finished

    # Every visible object is whole: its bytes hash to its name. Temporary files are hidden (.tmp-*).
    objects = [p for p in (store / "objects").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert objects, "the steps before training stored nothing"
    for path in objects:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(".")[0], path
    assert not (store / "runs").exists() or not list((store / "runs").rglob("manifest.json"))
    for checkpoint in checkpoints.glob("*.safetensors"):  # whole checkpoints only, each loadable
        assert Recommender.load(checkpoint).name == "bpr"

    rerun = _cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-3_000:] + rerun.stderr[-3_000:]
    assert "tasks: 3 ran, 3 cached (ingest, validate, split)" in rerun.stdout
