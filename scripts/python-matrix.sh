#!/usr/bin/env bash
# Every python_version answer, as its users would take it: bake with that answer, then in the project
# `make setup PYTHON=<that Python>` (its lock, requirements/py3.X.txt) and `make test-fast` (the unit tier).
#   bash scripts/python-matrix.sh             3.11, 3.12 and 3.13 (cookiecutter.json's choices)
#   bash scripts/python-matrix.sh 3.12        one of them
# Needs the root .venv's cookiecutter (`make .venv/bin/cookiecutter` or `make setup`) and each Python: found on
# PATH (pythonX.Y), by uv (`uv python find X.Y`) or under pyenv; a missing one fails the run with its name.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
if [[ ${#versions[@]} -eq 0 ]]; then
  mapfile -t versions < <(python3 -c 'import json; print("\n".join(json.load(open("cookiecutter.json"))["python_version"]))')
fi

source scripts/find-python.sh

pythons=()
for version in "${versions[@]}"; do
  python=$(find_python "$version") || { echo "needed for the python_version=$version answer" >&2; exit 1; }
  pythons+=("$python")
done

[[ -x .venv/bin/cookiecutter ]] || make .venv/bin/cookiecutter
for i in "${!versions[@]}"; do
  version=${versions[$i]} python=${pythons[$i]}
  out="build/matrix/py$version"
  rm -rf "$out"
  .venv/bin/cookiecutter --no-input -o "$out" . python_version="$version" >/dev/null
  project=$(find "$out" -mindepth 1 -maxdepth 1 -type d)
  echo "::: python_version=$version with $python ($("$python" --version)) in $project"
  started=$SECONDS
  make -C "$project" setup PYTHON="$python"
  echo "::: python_version=$version: make setup took $((SECONDS - started)) s"
  started=$SECONDS
  make -C "$project" test-fast PYTHON="$python"
  echo "::: python_version=$version: make test-fast took $((SECONDS - started)) s"
done
