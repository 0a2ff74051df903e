"""Store integrity: damaged objects are never used, a cached step repairs them, `verify` names every problem,
and a copied project works on its own store alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore
from {{ cookiecutter.package_name }}.artifacts.registry import open_registry
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.settings import Settings, load_settings

pytestmark = pytest.mark.unit

pipeline = load_entrypoint("flows/pipeline.py:pipeline")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
SMALL = {"n_users": 300, "n_items": 200, "n_interactions": 5_000}


def _settings(store: Path, **overrides: Any) -> Settings:
    base = {"data": {"synthetic": SMALL}, "storage": {"uri": str(store)}}
    return load_settings([DEFAULT], {**base, **overrides})


def _ref(summary: dict[str, Any], name: str) -> ArtifactRef:
    entry = summary["artifacts"][name]
    return ArtifactRef(**{k: entry[k] for k in ("id", "uri", "kind", "size")})


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _verify(store: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["verify", "--config", str(DEFAULT), "--set", f"storage.uri={store}"], env={"COLUMNS": "300"}
    )
    return result.exit_code, result.output


# -- the store ---------------------------------------------------------------------------------------------


def test_references_are_store_relative_and_old_absolute_ones_read_here(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "here"))
    ref = store.put_bytes(b"weights", kind="model", suffix=".safetensors")
    assert ref.uri == f"objects/{ref.id[:2]}/{ref.id}.safetensors"
    # A reference written by an older version, naming the store where it used to be.
    moved = ref.model_copy(
        update={"uri": f"file:///gone/elsewhere/objects/{ref.id[:2]}/{ref.id}.safetensors"}
    )
    assert store.get_bytes(moved) == b"weights" and store.is_whole(moved)
    target = store.fetch_file(moved, tmp_path / "model.safetensors")
    assert target.read_bytes() == b"weights"


def test_a_put_rewrites_an_object_whose_bytes_no_longer_match(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.put_bytes(b"weights", kind="model")
    (tmp_path / ref.uri).write_bytes(b"weighty")
    assert not store.is_whole(ref)
    assert store.put_bytes(b"weights", kind="model") == ref and store.is_whole(ref)
    assert not [p for p in tmp_path.rglob(".tmp-*")]


# -- repair of cached steps ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_a_flipped_byte_in_the_model_is_recomputed_not_passed_on(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    first = pipeline(_settings(store_dir).resolved())
    model = _ref(first, "model")
    _flip_byte(store_dir / model.uri)

    second = pipeline(_settings(store_dir).resolved())
    tasks = second["tasks"]
    assert tasks["train"]["state"] != "Cached" and tasks["train"]["repaired"] == [model.id]
    assert all(tasks[name]["state"] == "Cached" for name in ("ingest", "validate", "split", "evaluate"))
    store = ArtifactStore(str(store_dir))
    assert _ref(second, "model") == model and store.is_whole(model)  # rewritten in place, same id
    settings = _settings(store_dir)
    for version in open_registry(settings.registry, settings.storage).versions():
        assert store.is_whole(ArtifactRef(**version.artifact("model")))
    assert _verify(store_dir)[0] == 0


# -- verify --------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_verify_names_each_problem_by_id_and_path(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    one = pipeline(_settings(store_dir).resolved())
    two = pipeline(_settings(store_dir, seed=7).resolved())
    code, out = _verify(store_dir)
    assert code == 0 and "all whole" in out and out.count("\n") == 1, out

    unread = _ref(one, "metrics_per_user")  # no later step reads it: only verify can notice
    _flip_byte(store_dir / unread.uri)
    intervals = _ref(one, "metric_intervals")
    (store_dir / intervals.uri).unlink()
    model = _ref(one, "model")  # registered as version 1
    (store_dir / model.uri).unlink()
    broken = f"runs/{two['run_id']}/manifest.json"
    (store_dir / broken).write_text('{"run_id": "cut short')

    code, out = _verify(store_dir)
    assert code == 1, out
    lines = out.splitlines()

    def named(*parts: str) -> bool:
        return any(all(p in line for p in parts) for line in lines)

    assert named("object", unread.id[:12], unread.uri, "corrupt")
    assert named("object", intervals.id[:12], intervals.uri, "missing")
    assert named("registry", model.id[:12], "registry version 1", model.uri, "missing")
    assert named("manifest", two["run_id"][:12], broken, "does not parse")
    assert "problem(s)" in out


def test_verify_on_an_empty_store_is_clean_and_creates_nothing(tmp_path: Path) -> None:
    code, out = _verify(tmp_path / "store")
    assert code == 0 and "all whole" in out, out
    assert not (tmp_path / "store" / "registry.sqlite").exists()


# -- a portable project --------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"},
    )


@pytest.mark.e2e
@pytest.mark.usefixtures("prefect_server")
def test_a_copied_project_runs_on_its_own_store_after_the_original_is_gone(tmp_path: Path) -> None:
    original, copy = tmp_path / "original", tmp_path / "copy"
    for part in ("configs", "flows"):
        shutil.copytree(PROJECT_ROOT / part, original / part, ignore=shutil.ignore_patterns("__pycache__"))
    small = [f"--set=data.synthetic.{key}={value}" for key, value in SMALL.items()]
    small.append(
        "--set=storage.uri=artifacts"
    )  # a local store inside the project, whatever the bake's default
    first = _cli("run", "--model", "popularity", *small, cwd=original)  # the store: ./artifacts
    assert first.returncode == 0, first.stdout + first.stderr

    shutil.copytree(original, copy)
    shutil.rmtree(original)
    again = _cli("run", "--model", "popularity", *small, cwd=copy)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "5 cached (ingest, validate, split, train, evaluate)" in again.stdout
    stored = [p for p in (copy / "artifacts").rglob("*") if p.is_file() and p.suffix in (".json", ".md")]
    leaks = [p for p in stored if str(original) in p.read_text(errors="replace")]
    assert not leaks, leaks

    lineage = _cli("lineage", "latest", *small, "--out", "g.mmd", cwd=copy)
    assert lineage.returncode == 0 and "model" in lineage.stdout, lineage.stdout + lineage.stderr
    reproduced = _cli("reproduce", "latest", *small, cwd=copy)
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert "reproduced" in reproduced.stdout and "stored objects hash to them" in reproduced.stdout
    verified = _cli("verify", *small, cwd=copy)
    assert verified.returncode == 0 and "all whole" in verified.stdout, verified.stdout + verified.stderr
    assert not original.exists()
