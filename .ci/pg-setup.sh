#!/usr/bin/env bash
# Start the local PostgreSQL cluster and create the test role and database.
#
# Idempotent: safe to run again on a machine where it already ran. Installs
# nothing (.ci/run installs the Debian package). Everything goes to stderr
# except the last line, the export the caller evaluates:
#
#   eval "$(bash .ci/pg-setup.sh)"
set -euo pipefail

VERSION="${CCM_PG_VERSION:-15}"
CLUSTER="${CCM_PG_CLUSTER:-main}"
PORT="${CCM_PG_PORT:-5432}"
ROLE=ccm
PASSWORD=ccm
DB=ccm_test

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi
}

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c' | grep -q online; then
  pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

# Wait until the server answers (a fresh start takes a moment).
for _ in $(seq 1 50); do
  if as_postgres pg_isready -q -p "$PORT"; then break; fi
  sleep 0.2
done
as_postgres pg_isready -q -p "$PORT" || { echo "pg-setup: PostgreSQL did not start" >&2; exit 1; }

if [ "$(as_postgres psql -p "$PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  as_postgres psql -p "$PORT" -q -c "CREATE ROLE $ROLE LOGIN SUPERUSER PASSWORD '$PASSWORD'" >&2
fi
if [ "$(as_postgres psql -p "$PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  as_postgres createdb -p "$PORT" -O "$ROLE" "$DB" >&2
fi

echo "export CCM_TEST_PG_URL=postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
