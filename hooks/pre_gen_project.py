"""Refuse answers that would produce a broken project, before anything is written."""

import keyword
import re
import sys

SLUG = "{{ cookiecutter.project_slug }}"
PACKAGE = "{{ cookiecutter.package_name }}"

# Packages the generated project imports, and its own top-level modules (the stdlib is checked separately):
# a package with one of these names would shadow the real one.
TAKEN = {
    *("torch", "numpy", "polars", "pandas", "pyarrow", "prefect", "pydantic", "pydantic_settings", "yaml"),
    *("great_expectations", "evidently", "fsspec", "s3fs", "safetensors", "typer", "rich", "pytest"),
    *("test", "tests", "flows", "models", "data", "artifacts", "configs", "deployments"),
}


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
    elif PACKAGE in TAKEN or PACKAGE in sys.stdlib_module_names:
        errors.append(f"package_name {PACKAGE!r} would shadow the module of the same name; choose another")
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
