#!/usr/bin/env bash
# Installs what a clean machine lacks, idempotently: PostgreSQL and Java (Debian packages),
# the Kafka jars (Maven Central), versitygw (the S3 server, built from the Go module proxy),
# and the Python environment (.venv, PyPI).
# Env: VS_LIBS_DIR (jar directory, default .stack/libs), VS_VENV (default .venv), PYTHON,
# VS_WITH_BROWSER=1 (also Debian's chromium, for the viewer's browser test; infra/test.sh sets it),
# VS_WITH_CONTAINERS=1 (podman, podman-compose, debootstrap and runc, for the container tests),
# VS_WITH_SPARK=1 (PySpark and the jars of Spark's Kafka source, for the Spark peer benchmark's test).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
libs="${VS_LIBS_DIR:-$repo/.stack/libs}"
venv="${VS_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
if [ "${VS_WITH_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
fi
if [ "${VS_WITH_CONTAINERS:-0}" = 1 ]; then  # the Dockerfile and compose file's tests (infra/images.py)
  for tool in podman podman-compose debootstrap runc; do
    command -v "$tool" >/dev/null || need_apt+=("$tool")
  done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[install] apt: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

fetch_jars() {  # name, marker jar glob
  local name="$1" marker="$2"
  if ! ls "$libs/$name"/$marker >/dev/null 2>&1; then
    echo "[install] Maven Central: $name jars -> $libs/$name"
    rm -rf "$libs/$name.tmp"
    mvn -q -B -f "$repo/infra/$name/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs/$name.tmp" -DincludeScope=runtime
    rm -rf "$libs/$name"; mv "$libs/$name.tmp" "$libs/$name"
  fi
}
fetch_jars kafka 'kafka-tools-4.1.1.jar'
extras="test,bench,docs"
if [ "${VS_WITH_SPARK:-0}" = 1 ]; then
  fetch_jars spark 'spark-sql-kafka-0-10_2.13-4.2.0.jar'  # benchmarks/spark_job.py: spark.jars
  extras+=",spark"
fi

# helm, for the chart's offline checks (tests/deploy): built from the Go module proxy once
# (~3 min on 2 cores), kept in .stack/bin. VS_WITH_HELM=1 (infra/test.sh sets it).
helm_bin="$(dirname "$libs")/bin/helm"
if [ "${VS_WITH_HELM:-0}" = 1 ] && [ ! -x "$helm_bin" ]; then
  command -v go >/dev/null || { echo "[install] helm needs Go (apt-get install golang-go)" >&2; exit 1; }
  echo "[install] Go module proxy: helm v3.22.0 -> $helm_bin"
  GOBIN="$(dirname "$helm_bin")" GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@v3.22.0
fi

# Toxiproxy (Shopify's fault-injection TCP proxy), for latency between a worker and S3
# (benchmarks/s3_latency.py and its test): built once (~20 s), kept in .stack/bin.
# VS_WITH_TOXIPROXY=1 (infra/test.sh sets it).
toxiproxy_bin="$(dirname "$libs")/bin/toxiproxy-server"
if [ "${VS_WITH_TOXIPROXY:-0}" = 1 ] && [ ! -x "$toxiproxy_bin" ]; then
  command -v go >/dev/null || { echo "[install] toxiproxy needs Go (apt-get install golang-go)" >&2; exit 1; }
  echo "[install] Go module proxy: toxiproxy v2.5.0 -> $toxiproxy_bin"
  gobin="$(mktemp -d)"
  GOBIN="$gobin" GOFLAGS=-mod=mod go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0
  mkdir -p "$(dirname "$toxiproxy_bin")"
  mv "$gobin/server" "$toxiproxy_bin"; rmdir "$gobin"
fi

# versitygw (Versity's S3 gateway, Apache-2.0): the stack's S3 server, which also publishes
# bucket notifications to Kafka. Built once from the Go module proxy (~1 min), kept in .stack/bin.
versitygw_bin="$(dirname "$libs")/bin/versitygw"
if [ ! -x "$versitygw_bin" ]; then
  command -v go >/dev/null || { echo "[install] versitygw needs Go >= 1.25 (apt-get install golang-go, or /usr/local/go)" >&2; exit 1; }
  echo "[install] Go module proxy: versitygw v1.8.0 -> $versitygw_bin"
  GOBIN="$(dirname "$versitygw_bin")" GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "[install] Python venv -> $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.vs-installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  echo "[install] pip install -e .[$extras] (torch is a large download the first time)"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[$extras]"
  touch "$stamp"
fi
echo "[install] done"
