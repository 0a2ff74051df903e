#!/usr/bin/env bash
# Regenerate the pinned dependency set shared by the template's tooling and every baked project:
#   bash scripts/lock.sh            (needs network access to the package index; takes a few minutes)
# Resolves requirements-dev.txt (the top-level list) in a fresh virtualenv and writes its full `pip freeze`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/{{cookiecutter.project_slug}}/constraints.txt"
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$here/requirements-dev.txt"
"$venv/bin/pip" check
{
  echo "# The full pinned dependency set (pip constraints), shared by the template's tooling and this project."
  echo "# Produced by scripts/lock.sh in the repro-recsys template on Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'); regenerate it there."
  echo "# Install with: pip install -c constraints.txt -e '.[dev]'"
  # Drop local version labels (torch 2.13.0+cpu -> 2.13.0): `==2.13.0` still takes the CPU wheel where one is
  # offered (a local wheel, or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) and resolves elsewhere.
  "$venv/bin/pip" freeze --exclude-editable | sed -E 's/^([A-Za-z0-9_.-]+==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
} > "$out"
rm -rf "$(dirname "$venv")"
echo "wrote $out ($(grep -vc '^#' "$out") pins)"
