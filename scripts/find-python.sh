# Sourced by scripts/lock.sh and scripts/python-matrix.sh: find_python X.Y prints the path of a Python X.Y that
# runs, looked for on PATH (pythonX.Y), by uv (`uv python find X.Y`) and under pyenv, or fails.
# (A pyenv shim is on PATH even for a version it does not run, and uv stops at such a shim: each is tried.)

python_runs() {  # python_runs PYTHON X.Y
  "$1" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$2')" 2>/dev/null
}

find_python() {
  local version=$1 candidate
  candidate=$(command -v "python$version" || true)
  if [[ -n "$candidate" ]] && python_runs "$candidate" "$version"; then echo "$candidate"; return; fi
  if command -v uv >/dev/null; then
    candidate=$(uv python find --no-project --system "$version" 2>/dev/null || true)
    if [[ -n "$candidate" ]] && python_runs "$candidate" "$version"; then echo "$candidate"; return; fi
  fi
  if command -v pyenv >/dev/null; then
    for candidate in "$(pyenv root)/versions/$version".*/bin/"python$version"; do
      if python_runs "$candidate" "$version"; then echo "$candidate"; return; fi
    done
  fi
  echo "Python $version not found (not on PATH as python$version, not by 'uv python find $version', not under" \
    "pyenv): install it" >&2
  return 1
}
