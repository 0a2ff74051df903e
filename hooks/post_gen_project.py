"""Prune the files of options that were not chosen, and link the project to its template for `cruft update`.

`.cruft.json` records where the template is, the git commit it was baked from and every answer, so `cruft
update` can bring later template changes into the project. `cruft create` writes its own (cruft puts `_commit`
in the context, and regenerates the template through this hook when it updates): then nothing is written here.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

LICENSE = "{{ cookiecutter.license }}"
CI = "{{ cookiecutter.ci }}"
# As cookiecutter was given them: a path (maybe relative), a git URL or an abbreviation (gh:org/repo).
TEMPLATE = r"""{{ cookiecutter._template | default('') }}"""
REPO_DIR = r"""{{ cookiecutter._repo_dir | default('') }}"""
CHECKOUT = "{{ cookiecutter._checkout | default('') or '' }}"  # empty: the default branch
BY_CRUFT = "{{ 'yes' if cookiecutter._commit is defined else '' }}" == "yes"


def template_dir() -> Path | None:
    """The template's folder on this machine. Cookiecutter runs this hook from inside the project, so a
    relative path is resolved against the folder cookiecutter itself is in (the template's, while hooks run)
    or the shell's. The same lines as pre_gen_project's: cookiecutter runs each hook alone from a temporary
    copy, so neither can import the other (a test bakes through both)."""
    given = Path(REPO_DIR)
    candidates = [given] if given.is_absolute() else []
    candidates += [Path(f"/proc/{os.getppid()}/cwd").resolve(strict=False)]  # Linux
    if os.environ.get("PWD"):
        candidates.append(Path(os.environ["PWD"]) / given)
    return next((c.resolve() for c in candidates if (c / "cookiecutter.json").is_file()), None)


def git(folder: Path, *args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def link_to_template() -> None:
    local = template_dir() if not TEMPLATE.startswith(("gh:", "gl:", "bb:", "git@", "git+", "http")) else None
    # A URL is cloned by cookiecutter into REPO_DIR; cruft clones it again itself (abbreviations expanded).
    folder = local or Path(REPO_DIR)
    top = git(folder, "rev-parse", "--show-toplevel") if folder.is_dir() else None
    directory = None
    if local is None:
        from cookiecutter.config import BUILTIN_ABBREVIATIONS
        from cookiecutter.repository import expand_abbreviations

        template = expand_abbreviations(TEMPLATE, BUILTIN_ABBREVIATIONS)
    elif top is None:  # not in git: `cruft update` needs the template in a git repository
        template = str(local)
    else:
        template = top
        inside = local.relative_to(Path(top).resolve()).as_posix()
        directory = None if inside == "." else inside
    commit = git(folder, "rev-parse", "HEAD") if top else None
    answers = json.loads(Path(".cookiecutter.json").read_text())["cookiecutter"]
    context = {k: v for k, v in answers.items() if not k.startswith("_")}
    context |= {"_template": template, "_commit": commit}
    state = {
        "template": template,
        "commit": commit,
        "checkout": CHECKOUT or None,
        "context": {"cookiecutter": context},
        "directory": directory,
    }
    Path(".cruft.json").write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n")


if LICENSE == "none":
    Path("LICENSE").unlink()
if CI == "none":
    shutil.rmtree(".github")
if not BY_CRUFT:
    link_to_template()
