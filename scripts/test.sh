#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite (offline, CPU).
# PostgreSQL tests run when CORRELNET_TEST_POSTGRES_URL is set and skip otherwise;
# browser tests run when /usr/bin/chromium exists and skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
