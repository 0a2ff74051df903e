"""Bad input ends a command with one `error: ...` line naming what to fix, and exit 2, never a traceback
(`--verbose` adds it). The adversarial corpus: config files, overrides, the environment, the store, the
registry, run ids and paths. Commands run in-process (CliRunner) except where the real process matters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, PACKAGE, load_settings

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
SMALL = {"n_users": 300, "n_items": 200, "n_interactions": 5_000}


@dataclass(frozen=True)
class Case:
    """A command with one bad input, and what its error line must name."""

    args: list[str]
    names: str
    env: dict[str, str] = field(default_factory=dict)
    # Writes the bad input into a scratch folder before the command runs.
    prepare: Callable[[Path], None] = lambda _: None
    # Refused by a check of the command itself, not by an exception: no traceback even with --verbose.
    checked: bool = False


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda scratch: (scratch / name).write_bytes(data)


def _config_file(data: bytes) -> Case:
    return Case(["config", "-c", "{s}/bad.yaml"], "bad.yaml", prepare=_write("bad.yaml", data))


def _random_registry(scratch: Path) -> None:
    (scratch / "store").mkdir()
    (scratch / "store" / "registry.sqlite").write_bytes(os.urandom(4096))


CORPUS = {
    # -- config files ---------------------------------------------------------------------------------------
    "yaml-malformed": _config_file(b"a: [b\n"),
    "yaml-scalar": _config_file(b"42\n"),
    "yaml-list": _config_file(b"- a\n- b\n"),
    "yaml-not-utf8": _config_file(b"seed: \xff\xfe\n"),
    "yaml-missing": Case(["config", "-c", "{s}/nope.yaml"], "nope.yaml"),
    "yaml-unknown-field": Case(
        ["config", "-c", "{s}/bad.yaml"], "bogus", prepare=_write("bad.yaml", b"bogus: 1")
    ),
    # -- overrides and the environment ----------------------------------------------------------------------
    "set-not-yaml": Case(["config", "--set", "x=[y"], "x=[y"),
    "set-no-equals": Case(["config", "--set", "seed"], "seed"),
    "set-out-of-range": Case(["config", "--set", "split.test_fraction=2"], "split.test_fraction"),
    "env-list-not-json": Case(["config"], f"{ENV_PREFIX}EVALUATION__K", {f"{ENV_PREFIX}EVALUATION__K": "ab"}),
    "env-not-an-int": Case(["config"], "seed", env={f"{ENV_PREFIX}SEED": "abc"}),
    # -- store and registry ---------------------------------------------------------------------------------
    "registry-url-not-a-url": Case(["models", "list", "--set", "registry.url=not a url"], "registry.url"),
    "registry-url-unknown-dialect": Case(
        ["models", "list", "--set", "registry.url=nosuch://x/y"], "nosuch://"
    ),
    "registry-random-bytes": Case(
        ["models", "list", "--set", "storage.uri={s}/store"], "registry.sqlite", prepare=_random_registry
    ),
    "storage-uri-a-file": Case(
        ["runs", "--set", "storage.uri={s}/afile"], "afile", prepare=_write("afile", b"")
    ),
    "storage-uri-under-a-file": Case(
        ["models", "list", "--set", "storage.uri={s}/afile/store"], "afile", prepare=_write("afile", b"")
    ),
    # -- run ids and paths ----------------------------------------------------------------------------------
    "run-not-found": Case(["compare", "nope", "latest", "--set", "storage.uri={s}/empty"], "no runs"),
    "reproduce-change-not-yaml": Case(["reproduce", "latest", "--change", "seed=["], "seed=["),
    "lineage-out-missing-folder": Case(
        ["lineage", "latest", "--out", "{s}/missing/graph.mmd"], "missing", checked=True
    ),
    "recommend-user-too-large": Case(
        ["recommend", "--user", "99999999999999999999"], "99999999999999999999", checked=True
    ),
}


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("verbose", [False, True], ids=["plain", "verbose"])
@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_input_is_one_line_and_exit_2(name: str, verbose: bool, tmp_path: Path) -> None:
    case = CORPUS[name]
    case.prepare(tmp_path)
    args = [arg.replace("{s}", str(tmp_path)) for arg in case.args]
    code, out, err = _invoke(["--verbose", *args] if verbose else args, case.env)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and case.names in lines[-1], err
    if verbose and not case.checked:
        assert "Traceback" in err
    else:
        assert len(lines) == 1 and "Traceback" not in out + err, err


@pytest.mark.parametrize("url", ["postgresql://u:s3cret@[::1", "postgresql://u:s3cret@host:port/db"])
def test_the_error_line_holds_no_password(url: str) -> None:
    code, _, err = _invoke(["models", "list", "--set", f"registry.url={url}"])
    assert code == 2 and "s3cret" not in err and "registry.url" in err


@pytest.mark.e2e
def test_a_real_process_prints_one_line_and_the_traceback_only_when_verbose(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [b\n")
    command = [sys.executable, "-m", PACKAGE, "config", "-c", str(tmp_path / "bad.yaml")]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    plain = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=60)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"error: config file {tmp_path / 'bad.yaml'}: not valid YAML: expected ',' or ']', but got "
        "'<stream end>' at line 2, column 1"
    ]
    verbose = subprocess.run(
        command, capture_output=True, text=True, cwd=PROJECT_ROOT, env={**env, f"{ENV_PREFIX}VERBOSE": "1"}
    )
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and "yaml" in verbose.stderr


def test_a_wrong_registry_password_is_one_line(postgres_database: Callable[..., str]) -> None:
    wrong = make_url(postgres_database()).set(password="wrong-password").render_as_string(hide_password=False)
    code, _, err = _invoke(["models", "list", "--set", f"registry.url={wrong}"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "password authentication failed" in err and "wrong-password" not in err


# -- a damaged manifest among good ones ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged_store(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> tuple[Path, str, str]:
    """A store with one real run and one run whose manifest is cut short; returns (store, good, damaged)."""
    store = tmp_path_factory.mktemp("damaged") / "artifacts"
    pipeline = load_entrypoint("flows/pipeline.py:pipeline")
    settings = load_settings(
        [DEFAULT],
        {
            "data": {"synthetic": SMALL},
            "model": {"name": "popularity"},
            "promotion": {"enabled": False},  # the catalog commands read manifests alone
            "storage": {"uri": str(store)},
        },
    )
    good = pipeline(settings.resolved())["run_id"]
    damaged = "0badc0de-0000-4000-8000-000000000000"
    shutil.copytree(store / "runs" / good, store / "runs" / damaged)
    manifest = store / "runs" / damaged / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    return store, good, damaged


@pytest.mark.parametrize(
    "command", [["runs"], ["lineage", "latest"], ["compare", "latest", "{good}"]], ids=lambda c: c[0]
)
def test_a_damaged_manifest_is_skipped_with_one_warning(
    command: list[str], damaged_store: tuple[Path, str, str], tmp_path: Path
) -> None:
    store, good, damaged = damaged_store
    args = [arg.replace("{good}", good[:8]) for arg in command]
    if args[0] == "lineage":
        args += ["--out", str(tmp_path / "graph.mmd")]
    code, out, err = _invoke([*args, "--set", f"storage.uri={store}"])
    assert code == 0, out + err
    assert good[:8] in out and damaged[:8] not in out
    assert err.strip().splitlines() == [
        f"warning: skipped run {damaged}: {(store / 'runs' / damaged / 'manifest.json').as_uri()} does not "
        "parse (JSONDecodeError); `verify` reports it"
    ]


def test_verify_reports_the_damaged_manifest(damaged_store: tuple[Path, str, str]) -> None:
    store, _, damaged = damaged_store
    code, out, err = _invoke(["verify", "--set", f"storage.uri={store}"])
    assert code == 1
    assert f"runs/{damaged}/manifest.json: does not parse" in out
