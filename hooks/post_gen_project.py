"""Prune the files of options that were not chosen. Nothing else happens here."""

import shutil
from pathlib import Path

LICENSE = "{{ cookiecutter.license }}"
CI = "{{ cookiecutter.ci }}"

if LICENSE == "none":
    Path("LICENSE").unlink()
if CI == "none":
    shutil.rmtree(".github")
