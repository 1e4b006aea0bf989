#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts throwaway services (PostgreSQL; the
# Redis test starts and kills its own redis-server), runs every test of the workspace on SQLite
# and PostgreSQL, and tears the services down however the run ends.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test api`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test
# shellcheck source=scripts/services.sh
source scripts/services.sh
trap stop_services EXIT
start_postgres

log="$AETHER_SERVICES_DIR/cargo-test.log"
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per binary, the last often a crate
# with no doc tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
