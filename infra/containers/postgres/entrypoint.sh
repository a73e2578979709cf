#!/bin/bash
# The stand-in's start, after the official image's contract: as root, hand PGDATA to postgres
# and drop to it; on an empty PGDATA, initdb with POSTGRES_PASSWORD (password logins over TCP
# from anywhere, scram-sha-256) and create POSTGRES_DB; then run the command as postgres.
set -euo pipefail
if [ "${1:0:1}" = "-" ]; then  # `command: ["-c", "..."]`: options of postgres
  set -- postgres "$@"
fi
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"${db//\"/\"\"}\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec "$@"
