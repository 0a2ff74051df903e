"""Failures after the manifest and a lost registry: a run that fails while judging is marked failed and its
version retired with the reason, a later run judges it; a run SIGKILLed while judging is recognised; an empty
or damaged registry next to registered runs is refused, reported, and rebuilt from the store (SQLite)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, open_store
from {{ cookiecutter.package_name }}.artifacts import runs as runs_catalog
from {{ cookiecutter.package_name }}.artifacts.registry import (
    CHALLENGER,
    CHAMPION,
    REBUILT,
    UNDECIDED,
    RegistryDamaged,
    RegistryError,
    open_registry,
    rebuild_from_store,
    registry_problems,
    registry_url,
)
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.settings import Settings, load_settings

pipeline = load_entrypoint("flows/pipeline.py:pipeline")

pytestmark = pytest.mark.usefixtures("prefect_server")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_users": 300, "n_items": 200, "n_interactions": 6_000}


def _run(settings: Settings, model: str) -> object:
    resolved = settings.resolved()
    resolved["model"] = {**resolved["model"], "name": model}
    return pipeline(resolved, return_state=True)


def test_a_failure_while_judging_marks_the_run_failed_and_retires_its_version_until_a_rerun_judges_it(
    small_settings: Settings,
) -> None:
    first = _run(small_settings, "popularity")
    assert first.is_completed(), first.message
    store, registry = (
        open_store(small_settings.storage),
        open_registry(small_settings.registry, small_settings.storage),
    )
    champion = registry.get(CHAMPION)
    # The champion's model file goes missing: the next run, on another split (so the judge must rank the
    # champion rather than read its stored scores), cannot compare with it.
    model_ref = ArtifactRef(**champion.artifact("model"))
    weights = store.get_bytes(model_ref)
    (model_path,) = (Path(store.root) / "objects" / model_ref.id[:2]).glob(f"{model_ref.id}*")
    model_path.unlink()
    other_split = small_settings.updated({"split": {"test_fraction": 0.3}})

    failed = _run(other_split, "ease")
    assert failed.is_failed()
    (latest,) = [m for m in runs_catalog.list_runs(store) if m.model == "ease"]
    status = runs_catalog.read_status(store, latest.run_id)
    assert status is not None
    assert runs_catalog.run_state(status) == "failed" and status["step"] == "promotion"
    assert "FileNotFoundError" in status["reason"] or "Corrupt" in status["reason"], status["reason"]
    # Its version is registered, not the challenger, with no decision, and the history says why.
    version = status["registry"]["version"]
    assert version == 2 and not registry.decisions(version) and registry.alias(CHALLENGER) is None
    retired = registry.history()[-1]
    assert (retired.action, retired.from_version) == (UNDECIDED, version)
    assert f"run {latest.run_id}: judging failed" in retired.reason
    assert registry_problems(registry.url, store) == []  # a known state, not damage

    # The champion's file is back: the same model on the same data reuses version 2 and judges it now.
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(weights)
    again = _run(other_split, "ease")
    assert again.is_completed(), again.message
    promotion = again.result()["promotion"]
    assert promotion["version"] == version and promotion["reused"] and "decision" in promotion
    assert len(registry.decisions(version)) == 1
    statuses = {runs_catalog.run_state(s) for s in runs_catalog.run_statuses(store).values()}
    assert statuses == {"completed", "failed"}


def test_a_run_killed_while_judging_is_recognised_and_the_next_run_judges_its_version(
    small_settings: Settings, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    store_dir = Path(small_settings.storage.uri)
    args = [
        "run", "--model", "ease", "--set", f"storage.uri={store_dir}",
        "--set", "data.synthetic.n_users=300", "--set", "data.synthetic.n_items=200",
        "--set", "data.synthetic.n_interactions=6000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    process = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    store = open_store(small_settings.storage)
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            noted = [s.get("registry", {}) for s in runs_catalog.run_statuses(store).values()]
            if any("version" in n and "decision" not in n for n in noted):
                break  # registered, not yet judged
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed while judging"

    (killed,) = runs_catalog.list_runs(store)
    status = runs_catalog.read_status(store, killed.run_id)
    assert (
        runs_catalog.run_state(status) == "stopped" and status is not None and status["step"] == "promotion"
    )
    registry = open_registry(small_settings.registry, small_settings.storage)
    (problem,) = registry_problems(registry.url, store)
    assert problem.startswith("version 1: no promotion decision") and killed.run_id in problem

    rerun = _run(small_settings, "ease")
    assert rerun.is_completed(), rerun.message
    promotion = rerun.result()["promotion"]
    assert promotion["version"] == 1 and promotion["reused"] and promotion["promoted"]
    assert registry_problems(registry.url, store) == []


def _damage(path: Path, how: str) -> None:
    if how == "empty file":
        path.write_bytes(b"")
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
        return
    with sqlite3.connect(path) as conn:
        tables = ["model_versions", "aliases", "decisions"] if how == "dropped tables" else ["alias_moves"]
        conn.execute("PRAGMA foreign_keys=OFF")
        for table in tables:
            conn.execute(f"DROP TABLE {table}")


@pytest.fixture(scope="module")
def registered_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store and its SQLite registry after three runs: v1 champion, v2 champion, v1 reused."""
    root = tmp_path_factory.mktemp("registered") / "artifacts"
    settings = load_settings(
        [PROJECT_ROOT / "configs" / "default.yaml"],
        {"data": {"synthetic": SMALL}, "storage": {"uri": str(root)}},
    )
    for model in ("popularity", "ease", "popularity"):
        assert _run(settings, model).is_completed()
    return root


@pytest.mark.parametrize("how", ["empty file", "dropped tables", "dropped history"])
def test_a_lost_registry_is_refused_reported_and_rebuilt_from_the_store(
    registered_store: Path, tmp_path: Path, how: str
) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(registered_store, root)
    settings = load_settings(
        [PROJECT_ROOT / "configs" / "default.yaml"],
        {"data": {"synthetic": SMALL}, "storage": {"uri": str(root)}},
    )
    store = open_store(settings.storage)
    url = registry_url(settings.registry, settings.storage)
    before = open_registry(settings.registry, settings.storage)
    versions = [(v.version, v.model_id, v.aliases) for v in before.versions()]
    serving = [v.serving for v in before.versions()]
    assert all(serving)  # both were champions, so both were refit
    decisions = [(d.version, d.promoted, d.decision_id) for d in before.decisions()]
    before.engine.dispose()
    path = root / "registry.sqlite"

    _damage(path, how)
    with pytest.raises(RegistryDamaged) as refused:
        open_registry(settings.registry, settings.storage)
    message = str(refused.value)
    assert str(path) in message and "models rebuild" in message
    if how == "empty file":  # a new, empty database: the store's count of registering runs is named
        assert "is empty, but the store" in message
        assert "says 3 runs registered models in it (versions 1-2)" in message
    else:  # some tables gone, others still holding rows
        assert "lost its tables" in message
    assert registry_problems(url, store) == [message]

    rebuilt = rebuild_from_store(url, store, actor="test")
    assert (rebuilt.versions, rebuilt.decisions, rebuilt.unrecorded) == (2, 2, [])
    assert rebuilt.champions == {"synthetic": 2} and rebuilt.challengers == {}
    registry = open_registry(settings.registry, settings.storage)
    assert [(v.version, v.model_id, v.aliases) for v in registry.versions()] == versions
    # The serving refits come back too (the runs' statuses noted them).
    assert [v.serving for v in registry.versions()] == serving
    assert [(d.version, d.promoted, d.decision_id) for d in registry.decisions()] == decisions
    history = registry.history()
    assert history[0].action == history[-1].action == REBUILT and "not kept there" in history[-1].reason
    assert registry_problems(url, store) == []
    # Numbering goes on after the rebuilt versions, and a second rebuild refuses to overwrite them.
    assert _run(settings, "itemknn").result()["promotion"]["version"] == 3
    with pytest.raises(RegistryError, match="holds 3 model versions"):
        rebuild_from_store(url, store, actor="test")
