"""What a command or a flow module imports when it starts: heavy libraries only where they are used.

torch is for training and ranking, Great Expectations for validation, Evidently for drift reports, Prefect
for the flows. Loading a flow file (as a worker or `serve` does) must not import torch, GX or Evidently; the
CLI's own start and the commands that read the store or the registry import none of them, and
`recommend --user` (the registry, the store and the serving refit's top table) needs neither torch nor
Prefect: torch comes only where it loads a model. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "{{ cookiecutter.package_name }}"
HEAVY = ("torch", "prefect", "great_expectations", "evidently", "sqlalchemy")
_PROBE = f"""
import json, sys
def heavy():
    return sorted(set(name.split(".")[0] for name in sys.modules) & set({HEAVY!r}))
seen = dict()
"""


def _probe(code: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run `code` after the probe in a fresh interpreter from the project root; what it noted in `seen`."""
    out = tmp_path / "seen.json"
    script = _PROBE + code + f"\nopen({str(out)!r}, 'w').write(json.dumps(seen))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3_000:]
    return json.loads(out.read_text())


def test_the_cli_starts_and_reads_the_store_without_heavy_libraries(tmp_path: Path) -> None:
    store = f"storage.uri={tmp_path / 'artifacts'}"
    seen = _probe(
        f"""
from {PACKAGE} import cli
seen["import"] = heavy()
for args in (["--help"], ["config"], ["runs", "--set", {store!r}], ["models", "list", "--set", {store!r}]):
    try:
        cli.app(args, prog_name="cli")
    except SystemExit:
        pass
    seen[" ".join(a for a in args if not a.startswith(("-", "storage")))] = heavy()
""",
        tmp_path,
    )
    assert seen == {"import": [], "": [], "config": [], "runs": [], "models list": ["sqlalchemy"]}


def test_loading_a_flow_file_imports_prefect_but_not_torch_gx_or_evidently(tmp_path: Path) -> None:
    # Except flows/warm.py, the fork server's preload under `serve`: importing them once is its purpose.
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "flows").glob("*.py") if p.name != "warm.py")
    seen = _probe(
        f"""
from prefect.utilities.importtools import load_script_as_module
for path in {files!r}:
    load_script_as_module(path)  # as Prefect loads an entrypoint
    seen[path] = heavy()
""",
        tmp_path,
    )
    # One interpreter loads them in turn: a file that imported one of these would show it from there on.
    unwanted = {"torch", "great_expectations", "evidently"}
    assert {path: set(found) & unwanted for path, found in seen.items()} == {path: set() for path in files}
    assert all("prefect" in found for path, found in seen.items() if path != "flows/__init__.py")


def test_seeding_turns_on_deterministic_kernels_without_loading_the_compiler(tmp_path: Path) -> None:
    # torch.use_deterministic_algorithms imports torch._dynamo (1.6 s) for torch.compile's copy of the flag;
    # training sets the kernels' flag alone, and the public one where the compiler is already loaded.
    seen = _probe(
        f"""
import torch
from {PACKAGE}.training import seed_everything
seed_everything(0)
seen["alone"] = [torch.are_deterministic_algorithms_enabled(), "torch._dynamo" in sys.modules]
torch.use_deterministic_algorithms(False)
import torch._inductor.config as compiler
seed_everything(0)
seen["compiler"] = [torch.are_deterministic_algorithms_enabled(), compiler.deterministic]
""",
        tmp_path,
    )
    assert seen == {"alone": [True, False], "compiler": [True, True]}


def test_recommend_imports_neither_torch_nor_prefect(tmp_path: Path) -> None:
    seen = _probe(
        f"""
from {PACKAGE} import catalogue, cli, serving  # what `recommend --user` imports: it reads the top table
seen["recommend"] = heavy()
""",
        tmp_path,
    )
    assert seen == {"recommend": ["sqlalchemy"]}


def test_a_version_that_has_its_serving_refit_is_not_refit_again_nor_imports_torch(tmp_path: Path) -> None:
    # What a cached rerun of the champion's run does at its promotion step: the refit is kept.
    from factories import pipeline_result

    from {{ cookiecutter.package_name }}.artifacts.registry import open_registry
    from {{ cookiecutter.package_name }}.settings import RegistryConfig, StorageConfig

    storage = StorageConfig(uri=str(tmp_path / "artifacts"))
    registry = open_registry(RegistryConfig(), storage)
    version = registry.register(pipeline_result("a"), "run a").version
    entry = {"model": {"id": "refit", "uri": "objects/re/refit.safetensors", "kind": "x", "size": 1}}
    registry.set_serving(version, entry)
    seen = _probe(
        f"""
from {PACKAGE}.artifacts import open_store
from {PACKAGE}.artifacts.registry import open_registry
from {PACKAGE}.serving import refit_for_serving
from {PACKAGE}.settings import RegistryConfig, StorageConfig
storage = StorageConfig(uri={storage.uri!r})
kept = refit_for_serving(open_registry(RegistryConfig(), storage), open_store(storage), {version}, "run b")
seen["kept"] = [kept[0]["model"]["id"], str(kept[1])]
seen["imported"] = heavy()
""",
        tmp_path,
    )
    assert seen == {"kept": ["refit", "False"], "imported": ["sqlalchemy"]}


@pytest.mark.parametrize(
    ("given", "spins"), [(None, "0"), ("ACTIVE", "30000000000")], ids=["unset", "set by the user"]
)
def test_torch_threads_sleep_while_they_wait_in_commands_and_flow_runs(given: str | None, spins: str) -> None:
    # GNU OpenMP reads its settings once, when torch loads it, and shows them with OMP_DISPLAY_ENV=verbose
    # (its spin count: 0 when threads sleep at once, 300000 by default): torch is imported here after a
    # command's entry point, and after a flow file loaded as a worker loads it.
    starts = {
        "command": f"from {PACKAGE}.launch import main\nsys.argv = ['{PACKAGE}', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n",
        "flow run": "from prefect.utilities.importtools import load_script_as_module\n"
        "load_script_as_module('flows/retrain.py')\n",
    }
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # this process set it (conftest)
    env.update({"PYTHONPATH": str(ROOT), "OMP_DISPLAY_ENV": "verbose"})
    if given:
        env["OMP_WAIT_POLICY"] = given
    for name, start in starts.items():
        script = f"import sys\n{start}import torch\ntorch.ones(8).sum()\n"
        command = [sys.executable, "-c", script]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3_000:]
        assert f"GOMP_SPINCOUNT = '{spins}'" in done.stderr, (name, done.stderr[-3_000:])
