#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts throwaway services (PostgreSQL now;
# Redis and an S3 server as the features that need them land), runs every test of the workspace
# on SQLite and PostgreSQL, and tears the services down however the run ends.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test api`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test
# shellcheck source=scripts/services.sh
source scripts/services.sh
trap stop_services EXIT
start_postgres

cargo test --workspace --locked "$@"
