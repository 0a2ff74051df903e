#!/usr/bin/env bash
# Regenerate the locks, one per supported Python (3.11, 3.12, 3.13; Linux x86_64), with uv's resolver:
#   bash scripts/lock.sh              keep every locked version the ranges still allow (adds what is new)
#   bash scripts/lock.sh --upgrade    the newest versions the ranges and requirements/project-pins.txt allow
# Needs uv and the package index (PyPI); the first run downloads every locked wheel once (several GB: PyPI's
# torch for Linux is the CUDA build), later runs take them from uv's cache.
#
# It writes
#   {{cookiecutter.project_slug}}/requirements/py3.X.txt   the project's: its pyproject.toml with the dev extra
#   requirements/project-stack.in                            the project's top-level requirements (with dev)
#   requirements/tooling-py3.X.txt                           the template's: requirements/tooling.in plus the
#                                                            project's set at the project lock's versions
#   hooks/taken_names.txt                                    every locked distribution and its top-level import
#                                                            names, which pre_gen_project refuses as package_name
# The locks are pip constraints (`pip install -c LOCK ...`): pip then takes torch's CPU build where one is
# offered (a local wheel, or the PyTorch CPU index) and leaves out the CUDA libraries PyPI's build pins.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
template="$here/{{cookiecutter.project_slug}}"
pythons=(3.11 3.12 3.13)
platform=x86_64-manylinux_2_28
upgrade=()
[[ "${1:-}" == "--upgrade" ]] && upgrade=(--upgrade)
command -v uv >/dev/null || { echo "scripts/lock.sh needs uv (https://docs.astral.sh/uv/)" >&2; exit 1; }
source "$here/scripts/find-python.sh"
interpreters=()
for py in "${pythons[@]}"; do  # for the import names, below
  interpreter=$(find_python "$py") || exit 1
  interpreters+=("$interpreter")
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cookiecutter_pin=$(grep -E '^cookiecutter==' "$here/requirements/tooling.in" | cut -d' ' -f1)
# The project's pyproject.toml is a template: bake it (default answers; the others change no dependency: the
# s3 answer's s3fs is in the dev extra anyway).
uv tool run --quiet --from "$cookiecutter_pin" cookiecutter --no-input -o "$work" "$here" >/dev/null
project=$(find "$work" -mindepth 1 -maxdepth 1 -type d)
# The project's top-level requirements, for the template's environment (the root `make setup`).
{
  echo "# The project's top-level requirements (its pyproject.toml's dependencies and dev extra), which the"
  echo "# template's tests need in the template's environment. Produced by scripts/lock.sh; do not edit."
  python3 -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' "$project/pyproject.toml"
} > "$here/requirements/project-stack.in"

compile() {  # compile OUT HEADER ARGS...: resolve into OUT, keeping its pins as preferences
  local out=$1 header=$2
  shift 2
  uv pip compile --quiet --no-header --python-platform "$platform" "${upgrade[@]}" -o "$out" "$@"
  # Annotations name the bake's path and slug; say what they are instead.
  sed -i -E "s#$(basename "$project") \\(${project}/pyproject.toml\\)#the project (pyproject.toml)#; s#-[rc] ${here}/#-c #; s#${here}/##" "$out"
  { printf '%s\n' "$header"; grep -v '^# ' "$out" | grep -v '^#$'; } > "$out.new"
  mv "$out.new" "$out"
}

mkdir -p "$template/requirements" "$here/requirements"
for py in "${pythons[@]}"; do
  lock="$template/requirements/py$py.txt"
  compile "$lock" "# The project's locked dependency set for Python $py on Linux x86_64 (pyproject.toml with the dev extra).
# Install: pip install -c requirements/py$py.txt -e '.[dev]'   (\`make setup\` does, for its Python's version)
# Produced by scripts/lock.sh in the repro-recsys template (uv pip compile); regenerate it there, not by hand." \
    "$project/pyproject.toml" --extra dev -c "$here/requirements/project-pins.txt" --python-version "$py"
  compile "$here/requirements/tooling-py$py.txt" "# The template's tooling for Python $py on Linux x86_64: requirements/tooling.in and the project's set.
# Install: pip install -c requirements/tooling-py$py.txt -r requirements/tooling.in -r requirements/project-stack.in
# (the root \`make setup\` does); produced by scripts/lock.sh (uv pip compile); regenerate it there." \
    "$here/requirements/tooling.in" "$here/requirements/project-stack.in" -c "$lock" --python-version "$py"
  echo "locked Python $py: $(grep -c '==' "$lock") project pins, $(grep -c '==' "$here/requirements/tooling-py$py.txt") tooling pins"
done

# Every locked distribution's top-level import names, read from the installed distributions (top_level.txt,
# else RECORD), so the hook needs no installed stack. Installed without dependencies, exactly as locked.
names="$work/names"
for i in "${!pythons[@]}"; do
  py=${pythons[$i]}
  uv venv --quiet --python "${interpreters[$i]}" "$work/venv-$py"
  uv pip install --quiet --python "$work/venv-$py/bin/python" --no-deps --python-platform "$platform" \
    -r "$template/requirements/py$py.txt" -r "$here/requirements/tooling-py$py.txt"
  "$work/venv-$py/bin/python" - "$template/requirements/py$py.txt" "$here/requirements/tooling-py$py.txt" \
    >> "$names" <<'PY'
import re
import sys
from importlib import metadata


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


locked = {canonical(line.split("==")[0]) for path in sys.argv[1:] for line in open(path) if "==" in line}
for dist in metadata.distributions():
    name = canonical(dist.metadata["Name"])
    if name not in locked:
        continue
    declared = (dist.read_text("top_level.txt") or "").split()
    inferred = {f.parts[0].split(".")[0] for f in dist.files or [] if f.parts[0] != ".." and len(f.parts) >= 1}
    tops = {n for n in (declared or inferred) if n.isidentifier()} - {"__pycache__"}
    print(name, *sorted(tops))
    locked.discard(name)
if locked:
    sys.exit(f"locked but not installed: {sorted(locked)}")
PY
done
{
  echo "# Every distribution of the project's and the tooling's locks (all Pythons) and its top-level import names."
  echo "# hooks/pre_gen_project.py refuses a package_name among them. Produced by scripts/lock.sh; do not edit."
  sort -u "$names" | awk '{ d = $1; $1 = ""; seen[d] = seen[d] $0 } END { for (d in seen) print d ":" seen[d] }' \
    | while IFS=: read -r dist tops; do echo "$dist:$(tr ' ' '\n' <<<"$tops" | sort -u | tr '\n' ' ' | sed 's/ $//')"; done \
    | LC_ALL=C sort
} > "$here/hooks/taken_names.txt"
echo "wrote $(grep -vc '^#' "$here/hooks/taken_names.txt") distributions' import names to hooks/taken_names.txt"
