"""What the flows show in the Prefect UI: artifact keys, shared by every flow so each key's page holds the
history across runs."""

from __future__ import annotations

from {{ cookiecutter.package_name }}.settings import PACKAGE

# Artifact keys may hold only lowercase letters, digits and dashes.
ARTIFACT_PREFIX = PACKAGE.replace("_", "-")
