#!/usr/bin/env bash
# The whole test suite: installs what is missing (infra/install.sh), runs ruff (lint and
# format check with pyproject's settings), builds the docs site strictly, then pytest.
# Integration tests start their own Kafka, PostgreSQL and versitygw (S3) on free ports and stop them after.
# Extra arguments go to pytest (e.g. `infra/test.sh -m "not e2e"`).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
VS_WITH_BROWSER=1 VS_WITH_CONTAINERS=1 VS_WITH_HELM=1 VS_WITH_TOXIPROXY=1 VS_WITH_SPARK=1 "$repo/infra/install.sh"
cd "$repo"
venv="${VS_VENV:-$repo/.venv}"
# style and lint first: seconds, and a failure here needs no service to explain it
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
# the docs site: a broken link or anchor, or a page missing from mkdocs.yml's nav, fails here
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --quiet --site-dir "$site"
rm -rf "$site"
export VS_TEST_ARTIFACTS="${VS_TEST_ARTIFACTS:-$repo/test-artifacts}"
exec "$venv/bin/python" -m pytest "$@"
