"""Refuse answers that would produce a broken project, before anything is written."""

import keyword
import os
import re
import sys
from pathlib import Path

SLUG = "{{ cookiecutter.project_slug }}"
PACKAGE = "{{ cookiecutter.package_name }}"
REPO_DIR = r"""{{ cookiecutter._repo_dir | default('') }}"""
# The project's own top-level modules and folders on its import path (the stdlib is checked separately, the
# locked dependencies' import names are read from hooks/taken_names.txt): a package with one of these names
# would shadow them, or they it.
OWN = {"test", "tests", "flows", "models", "data", "artifacts", "configs", "deployments", "benchmarks"}


def template_dir() -> Path | None:
    """The template's folder. This hook runs from a temporary copy, in the new project's folder; cookiecutter
    itself runs in the template's folder while hooks run, and was started from the shell's."""
    given = Path(REPO_DIR)
    candidates = [given] if given.is_absolute() else []
    candidates += [Path(f"/proc/{os.getppid()}/cwd").resolve(strict=False)]  # Linux
    if os.environ.get("PWD"):
        candidates.append(Path(os.environ["PWD"]) / given)
    return next((c.resolve() for c in candidates if (c / "cookiecutter.json").is_file()), None)


def locked_import_names() -> set[str] | None:
    """The top-level import names of every distribution the project's and the tooling's locks hold, as
    scripts/lock.sh wrote them (`distribution: name name ...`); None where the file cannot be found."""
    folder = template_dir()
    listing = folder / "hooks" / "taken_names.txt" if folder else None
    if listing is None or not listing.is_file():
        return None
    names: set[str] = set()
    for line in listing.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            names.update(line.partition(":")[2].split())
    return names


def main() -> int:
    errors = []
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", SLUG):
        errors.append(
            f"project_slug {SLUG!r} is not a valid project name: use lowercase letters, digits and single "
            "dashes, starting with a letter (e.g. 'movie-recs')"
        )
    if not PACKAGE.isidentifier() or not PACKAGE.isascii():
        errors.append(f"package_name {PACKAGE!r} is not a valid Python identifier (e.g. 'movie_recs')")
    elif keyword.iskeyword(PACKAGE) or keyword.issoftkeyword(PACKAGE):
        errors.append(f"package_name {PACKAGE!r} is a Python keyword")
    elif not PACKAGE.islower():
        errors.append(f"package_name {PACKAGE!r} must be lowercase (PEP 8)")
    else:
        locked = locked_import_names()
        if locked is None:
            print(
                "WARNING: hooks/taken_names.txt not found beside the template: package_name is checked "
                "against the standard library and the project's own modules only, not its dependencies",
                file=sys.stderr,
            )
        taken = OWN | set(sys.stdlib_module_names) | (locked or set())
        if PACKAGE in taken:
            errors.append(
                f"package_name {PACKAGE!r} would shadow the module of the same name; choose another"
            )
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
