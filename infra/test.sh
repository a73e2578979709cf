#!/usr/bin/env bash
# The whole test suite: installs what is missing (infra/install.sh), then runs pytest.
# Integration tests start their own Kafka, PostgreSQL and s3proxy on free ports and stop them after.
# Extra arguments go to pytest (e.g. `infra/test.sh -m "not e2e"`).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
VS_WITH_BROWSER=1 "$repo/infra/install.sh"
cd "$repo"
export VS_TEST_ARTIFACTS="${VS_TEST_ARTIFACTS:-$repo/test-artifacts}"
exec "${VS_VENV:-$repo/.venv}/bin/python" -m pytest "$@"
