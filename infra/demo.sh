#!/usr/bin/env bash
# One command from a fresh machine to classified images: install, start the local stack,
# create the schema, start two Faust workers, upload a folder of images (default
# ../shared/images/dev) — the S3 server's own notifications bring each photo to the workers,
# no producer needed —, wait until every key has a row, run the reconciliation
# (`producer --from-bucket --only-missing`: nothing should be left), print a summary.
# The stack stays up afterwards (stop it with `.venv/bin/python -m infra.stack down`).
# VS_SECURE=1 (on a fresh VS_STACK_DIR): the locked-down stack (`infra.stack up --secure`), the
# workers as the Kafka principal `worker`, the producer as `producer` (docs/deploying/security.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
images="${1:-$repo/../shared/images/dev}"
workers="${WORKERS:-2}"
cd "$repo"
infra/install.sh
py="$repo/.venv/bin/python"
[ -d "$images" ] || { echo "no image folder at $images (pass one: infra/demo.sh DIR)" >&2; exit 1; }

secure="${VS_SECURE:-}"
"$py" -m infra.stack up ${secure:+--secure} > /dev/null
set -a; . "${VS_STACK_DIR:-$repo/.stack}/stack.env"; set +a
# the secure stack's Kafka credentials of a principal, as NAME=VALUE lines (none otherwise)
kafka_user() {
  [ -z "$secure" ] || "$py" -m infra.stack env --as "$1" | sed -n "s/^export \(KAFKA_SASL_[A-Z]*\)='\{0,1\}\([^']*\)'\{0,1\}\$/\1=\2/p"
}
mapfile -t as_worker < <(kafka_user worker)
mapfile -t as_producer < <(kafka_user producer)
"$py" -m db migrate
# psql takes the password from PGPASSWORD, never from its command line (which ps shows anyone)
pg_split='import os, urllib.parse as u
p = u.urlsplit(os.environ["DATABASE_URL"]); who, _, host = p.netloc.rpartition("@"); user, _, pw = who.partition(":")
print(u.urlunsplit(p._replace(netloc=f"{user}@{host}" if user else host))); print(u.unquote(pw))'
{ read -r pg_url; read -r PGPASSWORD; } < <("$py" -c "$pg_split"); export PGPASSWORD
# the viewer's first account: its password is printed here, once
"$py" -m viewer create-user admin --role admin --generate --if-no-accounts
logs="${VS_STACK_DIR:-$repo/.stack}/logs"; mkdir -p "$logs"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
threads=$(( $(nproc) / workers )); [ "$threads" -ge 1 ] || threads=1
for i in $(seq 1 "$workers"); do
  TORCH_THREADS=$threads DECODE_WORKERS=$threads HOSTNAME="$(hostname)-w$i" \
    env "${as_worker[@]}" "$repo/.venv/bin/faust" -A consumer.app worker -l info > "$logs/worker-$i.log" 2>&1 &
  pids+=($!)
  echo "worker $i started (log: $logs/worker-$i.log)"
done

"$py" upload.py "$images"   # live from S3: each PUT's notification goes to the workers
total=$(psql "$pg_url" -tAc "SELECT count(*) FROM image_info WHERE deleted_at IS NULL")
rows() { psql "$pg_url" -tAc "SELECT (SELECT count(*) FROM prediction_results) + (SELECT count(*) FROM prediction_errors)"; }
sleep 20
if [ "$(rows)" -eq 0 ]; then  # a stack created before live ingestion publishes no events
  echo "no notifications arrived: sending the keys with the producer instead"
  env "${as_producer[@]}" "$py" -m producer --only-missing
fi
echo "waiting for $total images to be classified..."
deadline=$(( $(date +%s) + ${DEMO_TIMEOUT_S:-900} ))
while :; do
  done_n=$(rows)
  printf '\r  %s / %s' "$done_n" "$total"
  [ "$done_n" -ge "$total" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo; echo "timed out; see $logs" >&2; exit 1; }
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo; echo "a worker died; see $logs" >&2; exit 1; }; done
  sleep 2
done
echo
echo "reconciliation (what notifications missed, if anything):"
env "${as_producer[@]}" "$py" -m producer --from-bucket --only-missing
psql "$pg_url" -c "SELECT hostname, count(*) AS images, round(avg(confidence)::numeric, 3) AS avg_conf FROM prediction_results GROUP BY 1 ORDER BY 1"
psql "$pg_url" -c "SELECT image_key, category, round(confidence::numeric, 3) AS confidence, hostname, time FROM prediction_results ORDER BY time DESC LIMIT 10"
psql "$pg_url" -c "SELECT error_type, count(*) FROM prediction_errors GROUP BY 1"
# the URL holds a password on the secure stack: name the file, never print it
echo "done. Query more with: set -a; . ${VS_STACK_DIR:-$repo/.stack}/stack.env; set +a; psql \"\$DATABASE_URL\""
echo "or browse them: .venv/bin/python -m viewer, then http://127.0.0.1:8080/ (log in as admin)"
