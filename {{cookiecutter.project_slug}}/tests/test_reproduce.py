"""`reproduce` rebuilds a run from its manifest and names the first difference when one appears."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import SyntheticConfig, load_settings

# The flows as a worker loads them: by file path, from the project root.
pipeline = load_entrypoint("flows/pipeline.py:pipeline")

pytestmark = pytest.mark.usefixtures("prefect_server")
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
SMALL = {"n_users": 300, "n_items": 200, "n_interactions": 6_000}


def _reproduce(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["reproduce", *args, "--config", str(DEFAULT), "--set", f"storage.uri={store}"],
        env={"COLUMNS": "200"},
    )
    return result.exit_code, result.output


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    overrides = {"data": {"synthetic": SMALL}, "model": {"name": "ease"}, "storage": {"uri": str(store)}}
    settings = load_settings([DEFAULT], overrides)
    pipeline(settings.resolved())
    return store


def test_reproduce_passes_bit_for_bit(synthetic_run: Path) -> None:
    code, out = _reproduce(synthetic_run, "latest")
    assert code == 0, out
    assert "reproduced: all 11 artifact ids match" in out


def test_reproduce_on_another_thread_count_uses_the_recorded_one(tmp_path: Path) -> None:
    """As on a machine with another number of cores: EASE's bytes depend on torch's thread count, so the
    rebuild runs with the count the model was trained with, whatever this process has."""
    import torch

    from {{ cookiecutter.package_name }}.artifacts.runs import find_run

    overrides = {"data": {"synthetic": SMALL}, "model": {"name": "ease"}}
    here = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        store = tmp_path / "store"
        pipeline(load_settings([DEFAULT], {**overrides, "storage": {"uri": str(store)}}).resolved())
        torch.set_num_threads(1)
        # Without the pin, one thread makes another model from the same data and settings ...
        elsewhere = tmp_path / "elsewhere"
        pipeline(load_settings([DEFAULT], {**overrides, "storage": {"uri": str(elsewhere)}}).resolved())
        run = find_run(ArtifactStore(str(store)), "latest")
        other = find_run(ArtifactStore(str(elsewhere)), "latest")
        assert (run.environment.torch.threads, other.environment.torch.threads) == (2, 1)
        assert run.artifacts["train"].id == other.artifacts["train"].id
        assert run.artifacts["model"].id != other.artifacts["model"].id
        # ... and reproduce, started with one thread, trains with the run's two and matches every byte.
        code, out = _reproduce(store, "latest")
    finally:
        torch.set_num_threads(here)
    assert code == 0, out
    assert "reproduced: all 11 artifact ids match" in out


def test_changed_seed_is_named(synthetic_run: Path) -> None:
    code, out = _reproduce(synthetic_run, "latest", "--change", "seed=7")
    assert code == 1
    assert "config seed: 42 in the run, 7 in the rebuild" in out
    assert "first difference: snapshot (task ingest)" in out  # the seed drives the synthetic data


def test_changed_config_value_is_named(synthetic_run: Path) -> None:
    code, out = _reproduce(synthetic_run, "latest", "--change", "model.ease.l2=10")
    assert code == 1
    assert "config model.ease.l2: 250.0 in the run, 10.0 in the rebuild" in out
    assert "first difference: model (task train)" in out  # data and split are unaffected


def test_changed_input_byte_is_named(tmp_path: Path) -> None:
    events, store = tmp_path / "events.csv", tmp_path / "store"
    generate(SyntheticConfig(**SMALL), seed=3).write_csv(events)
    overrides = {"data": {"source": "file", "path": str(events)}, "storage": {"uri": str(store)}}
    pipeline(load_settings([DEFAULT], overrides).resolved())
    raw = bytearray(events.read_bytes())
    raw[raw.index(b"\n") + 1] = ord("9") if raw[raw.index(b"\n") + 1] != ord("9") else ord("8")
    events.write_bytes(bytes(raw))
    code, out = _reproduce(store, "latest")
    assert code == 1
    assert f"first difference: input {events}: sha256" in out


def test_unknown_run_is_a_clear_error(synthetic_run: Path) -> None:
    code, out = _reproduce(synthetic_run, "nope")
    assert code == 2 and "no run matches 'nope'" in out
