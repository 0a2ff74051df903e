"""Template updates reach a baked project: it carries `.cruft.json`, and `cruft update` merges a later
template change into it while keeping the project's own edits. Real git, real cruft, a copy of this template
as the template's repository; no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, bake

BIN = Path(sys.executable).parent
# Commits in the throwaway repositories need a name; the machine's git config may have none.
GIT_ENV = {
    **os.environ,
    **{
        f"GIT_{who}_{what}": value
        for who in ("AUTHOR", "COMMITTER")
        for what, value in (("NAME", "Template Test"), ("EMAIL", "test@example.invalid"))
    },
}
_NOT_TEMPLATE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"
)


def _run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _commit(repo: Path, message: str) -> str:
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", message, cwd=repo)
    return _run("git", "rev-parse", "HEAD", cwd=repo).strip()


def test_baked_project_links_to_this_template(cookies) -> None:
    """A bake records the template's folder, its commit and every answer, as cruft reads them."""
    project = bake(cookies, project_name="Shop Recs")
    state = json.loads((project / ".cruft.json").read_text())
    replay = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    assert state["template"] == str(ROOT)
    assert state["commit"] == _run("git", "rev-parse", "HEAD", cwd=ROOT).strip()
    assert state["directory"] is None and state["checkout"] is None
    answers = {k: v for k, v in replay.items() if not k.startswith("_")}
    assert state["context"]["cookiecutter"] == {**answers, "_template": str(ROOT), "_commit": state["commit"]}


@pytest.mark.parametrize("baker", ["cookiecutter", "cruft"])
def test_cruft_update_brings_a_template_change_and_keeps_the_projects_edits(
    tmp_path: Path, baker: str
) -> None:
    template = tmp_path / "repro-recsys"
    shutil.copytree(ROOT, template, ignore=_NOT_TEMPLATE)
    _run("git", "init", "-q", "-b", "main", cwd=template)
    first = _commit(template, "template v1")

    # Baked from another folder, by path: what the hook must resolve, and cruft's own way.
    out = tmp_path / "out"
    if baker == "cookiecutter":
        _run(BIN / "cookiecutter", "--no-input", "-o", out, template, cwd=tmp_path)
    else:
        _run(BIN / "cruft", "create", "--no-input", "--output-dir", out, template, cwd=tmp_path)
    project = out / "my-recommender"
    state = json.loads((project / ".cruft.json").read_text())
    assert (state["template"], state["commit"]) == (str(template), first)
    _run("git", "init", "-q", "-b", "main", cwd=project)
    _commit(project, "baked")
    _run(BIN / "cruft", "check", cwd=project)

    # The project's own edit, and a later template change to another part of the same file and a new file.
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\nOur team's notes: retrain on Mondays.\n")
    _commit(project, "our notes")
    template_readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    title, rest = template_readme.read_text().split("\n", 1)
    template_readme.write_text(f"{title}\n\nTemplate news: a line added upstream.\n{rest}")
    added = template / "{{cookiecutter.project_slug}}" / "configs" / "experiments" / "upstream.yaml"
    added.write_text("# {{ cookiecutter.package_name }}: an experiment added to the template later\n")
    second = _commit(template, "template v2")

    _run(BIN / "cruft", "update", "-y", cwd=project)

    text = readme.read_text()
    assert "Template news: a line added upstream." in text
    assert "Our team's notes: retrain on Mondays." in text
    assert not list(project.rglob("*.rej")) and "<<<<<<<" not in text
    assert (project / "configs" / "experiments" / "upstream.yaml").read_text().startswith("# my_recommender:")
    assert json.loads((project / ".cruft.json").read_text())["commit"] == second
    _commit(project, "template update")
    _run(BIN / "cruft", "check", cwd=project)
