#!/usr/bin/env bash
# A PostgreSQL server on 127.0.0.1 without containers, for the tests and for trying the team set-up locally:
#
#   deployments/postgres-local.sh install              Debian's postgresql package, when initdb is missing
#   deployments/postgres-local.sh start DIR [PORT]     a new cluster in DIR (created), databases prefect and
#                                                      registry; prints the server's base URL
#   deployments/postgres-local.sh stop DIR             stops it (DIR stays; remove it to drop the data)
#
# The role is $PGLOCAL_USER (default recsys) with password $PGLOCAL_PASSWORD (default recsys-dev): a
# development server on loopback, not a production one. Then, for example:
#   PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://recsys:recsys-dev@127.0.0.1:5433/prefect
#   <PACKAGE>_REGISTRY__URL=postgresql+psycopg://recsys:recsys-dev@127.0.0.1:5433/registry
set -euo pipefail

user=${PGLOCAL_USER:-recsys}
password=${PGLOCAL_PASSWORD:-recsys-dev}

bindir() {
  # Debian keeps the server binaries off PATH, one directory per major version: take the newest.
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $found && -x $found/initdb ]]; then
    echo "$found"
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  fi
}

install() {
  [[ -n $(bindir) ]] && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL 13 or newer" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
}

# PostgreSQL refuses to run as root: there, run its programs as the package's `postgres` system user.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local dir=$1 port=${2:-5433} bin
  install
  bin=$(bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    as_owner bash -c 'umask 077 && printf "%s\n" "$1" > "$2/pwfile"' _ "$password" "$dir"
    # Password (scram) over TCP; the Unix socket lives in DIR and only serves the owner (peer/trust there).
    as_owner "$bin/initdb" -D "$dir/data" -U "$user" --pwfile="$dir/pwfile" -E UTF8 --locale=C.UTF-8 \
      --auth-host=scram-sha-256 --auth-local=trust >"$dir/initdb.log"
    rm -f "$dir/pwfile"
  fi
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null
  fi
  for db in prefect registry; do
    if ! as_owner "$bin/psql" -h "$dir" -p "$port" -U "$user" -d postgres -tAc \
      "select 1 from pg_database where datname = '$db'" | grep -q 1; then
      as_owner "$bin/createdb" -h "$dir" -p "$port" -U "$user" "$db"
    fi
  done
  echo "postgresql://$user:$password@127.0.0.1:$port"
}

stop() {
  local dir=$1
  [[ -f $dir/data/postmaster.pid ]] || return 0
  as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

case ${1:-} in
  install) install ;;
  start) start "${2:?usage: $0 start DIR [PORT]}" "${3:-}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
