"""The pre-generation hook refuses names that would give a broken project, and says why."""

from __future__ import annotations

import re

import pytest
from conftest import CHOICES, ROOT, TEMPLATE_DIR


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_name": "123 Bad"}, "project_slug '123-bad' is not a valid project name"),
        ({"project_slug": "My_Project"}, "project_slug 'My_Project' is not a valid project name"),
        ({"package_name": "class"}, "package_name 'class' is a Python keyword"),
        ({"package_name": "my-pkg"}, "package_name 'my-pkg' is not a valid Python identifier"),
        ({"package_name": "json"}, "package_name 'json' would shadow"),
        ({"package_name": "torch"}, "package_name 'torch' would shadow"),
        ({"package_name": "MyPkg"}, "must be lowercase"),
    ],
)
def test_bad_names_are_refused(cookies, capfd, answers: dict[str, str], message: str) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert result.project_path is None or not result.project_path.exists()
    assert message in capfd.readouterr().err


def test_a_good_custom_package_name_is_accepted(cookies) -> None:
    result = cookies.bake(extra_context={"project_name": "Shop Recs", "package_name": "shoprecs"})
    assert result.exit_code == 0, result.exception
    assert (result.project_path / "shoprecs" / "settings" / "__init__.py").is_file()


@pytest.mark.parametrize("name", ["tqdm", "sqlalchemy", "psycopg", "dask", "matplotlib", "psutil", "httpx"])
def test_names_of_locked_dependencies_are_refused(cookies, capfd, name: str) -> None:
    assert name in _locked_import_names()  # so the refusal below comes from the lock's list
    result = cookies.bake(extra_context={"package_name": name})
    assert result.exit_code != 0
    assert f"package_name {name!r} would shadow" in capfd.readouterr().err


def test_taken_names_cover_every_locked_distribution() -> None:
    """hooks/taken_names.txt (scripts/lock.sh) lists every distribution of every lock, the project's and the
    tooling's, so no locked dependency's import name can be chosen as the package's."""
    locks = [
        *(TEMPLATE_DIR / "requirements").glob("py3.*.txt"),
        *(ROOT / "requirements").glob("tooling-py3.*.txt"),
    ]
    assert {lock.name for lock in locks} >= {f"py{v}.txt" for v in CHOICES["python_version"]}
    locked = {
        _canonical(line.split("==")[0])
        for lock in locks
        for line in lock.read_text().splitlines()
        if "==" in line
    }
    listed = {_canonical(line.partition(":")[0]) for line in _taken_lines()}
    assert locked - listed == set(), "run scripts/lock.sh"


def _taken_lines() -> list[str]:
    lines = (ROOT / "hooks" / "taken_names.txt").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def _locked_import_names() -> set[str]:
    return {name for line in _taken_lines() for name in line.partition(":")[2].split()}


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower().strip()
