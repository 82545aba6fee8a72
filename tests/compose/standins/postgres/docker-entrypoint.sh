#!/usr/bin/env bash
# The official postgres image's first-start contract (see the Dockerfile): create the cluster, the superuser
# POSTGRES_USER with POSTGRES_PASSWORD and the database POSTGRES_DB once, then run the server as postgres.
set -Eeuo pipefail

if [[ "${1:-}" != postgres ]]; then
  exec "$@"
fi

if [[ "$(id -u)" == 0 ]]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  : "${POSTGRES_PASSWORD:?the database is uninitialized and POSTGRES_PASSWORD is not set}"
  user="${POSTGRES_USER:-postgres}"
  database="${POSTGRES_DB:-$user}"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
  # The initialisation server listens on the socket only, as the official image's does.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  if [[ "$database" != postgres ]]; then
    psql --no-psqlrc --quiet --username="$user" --dbname=postgres --set ON_ERROR_STOP=1 \
      --command="CREATE DATABASE \"$database\""
  fi
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
