"""Bake the option matrix and check each project: exact file set, no leftover Jinja, parseable metadata."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from conftest import CONTEXT, answer_id, answer_sets, bake, baked_files, expected_files

JINJA_LEFTOVER = re.compile(r"\{\{|\{%|\{#")
# Templates the Prefect server renders from a triggering event, kept verbatim in deployments/prefect.yaml.
PREFECT_TEMPLATES = re.compile(r"\{\{ event\.payload\.[a-z_]+ \}\}")
ANSWERS = answer_sets()


@pytest.mark.parametrize("answers", ANSWERS, ids=[answer_id(a) for a in ANSWERS])
def test_bake_matrix(cookies, answers: dict[str, str]) -> None:
    project = bake(cookies, **answers)
    replay = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    for key, value in answers.items():
        assert replay[key] == value, key
    package = replay["package_name"]
    assert project.name == replay["project_slug"] == "my-recommender"

    assert baked_files(project) == expected_files(replay)

    for relative in sorted(baked_files(project)):
        path = project / relative
        assert not JINJA_LEFTOVER.search(relative), relative
        if path.is_file():
            text = PREFECT_TEMPLATES.sub("", path.read_text(encoding="utf-8"))
            assert not JINJA_LEFTOVER.search(text), f"{path.relative_to(project)} has unrendered Jinja"
            if path.suffix == ".py":
                compile(text, str(path), "exec")
            elif path.suffix in {".yaml", ".yml"}:
                yaml.safe_load(text)

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == replay["project_slug"]
    assert pyproject["project"]["requires-python"] == f">={answers['python_version']}"
    assert pyproject["project"]["scripts"] == {package: f"{package}.launch:main"}
    s3 = any(dep.startswith("s3fs") for dep in pyproject["project"]["dependencies"])
    assert s3 == (answers["artifact_storage"] == "s3")
    assert ("license" in pyproject["project"]) == (answers["license"] != "none")
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + answers["python_version"].replace(".", "")

    config = yaml.safe_load((project / "configs" / "default.yaml").read_text())
    assert config["model"]["name"] == answers["default_model"]
    assert config["storage"]["uri"].startswith("s3://") == (answers["artifact_storage"] == "s3")
    if answers["license"] != "none":
        assert answers["license"].split("-")[0] in (project / "LICENSE").read_text()
    if answers["ci"] == "github-actions":
        workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
        steps = workflow["jobs"]["test"]["steps"]
        assert {"python-version": answers["python_version"]} in [s.get("with") for s in steps]


def test_names_derive_from_project_name(cookies) -> None:
    project = bake(cookies, project_name="Movie Night Recs")
    replay = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    assert (replay["project_slug"], replay["package_name"]) == ("movie-night-recs", "movie_night_recs")
    assert (project / "movie_night_recs" / "cli" / "app.py").is_file()
    assert "movie_night_recs" in (project / "README.md").read_text()


def test_replay_file_holds_only_answers(cookies) -> None:
    project = bake(cookies)
    replay = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    public = {k for k in CONTEXT if not k.startswith("_")}
    assert public <= set(replay) <= public | {"_template"}


def test_matrix_covers_every_choice() -> None:
    for key, values in {k: v for k, v in CONTEXT.items() if isinstance(v, list)}.items():
        assert {a[key] for a in ANSWERS} == set(values), key


@pytest.mark.parametrize("answers", [ANSWERS[0], ANSWERS[-1]], ids=answer_id)
def test_baked_project_is_lint_clean(cookies, answers: dict[str, str]) -> None:
    """The project's own `make lint` (ruff check + format check, with its pyproject settings) passes."""
    project = bake(cookies, **answers)
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=project, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_baked_gitignore_ignores_no_project_file(cookies) -> None:
    """The project's .gitignore is for outputs (artifacts/, data/, .venv/): it must not hide a source file."""
    project = bake(cookies)
    files = baked_files(project)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    listed = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True)
    assert set(listed.stdout.split()) == files
