#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts throwaway services (PostgreSQL; the
# Redis test starts and kills its own redis-server), runs every test of the workspace on SQLite
# and PostgreSQL, and tears the services down however the run ends.
# Then the web UI's browser tests (web/e2e, playwright-core driving Debian's Chromium).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test api`) and skip the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test
# shellcheck source=scripts/services.sh
source scripts/services.sh
trap stop_services EXIT
start_postgres

log="$AETHER_SERVICES_DIR/cargo-test.log"
web_log="$AETHER_SERVICES_DIR/web-test.log"
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# The web UI in headless Chromium, against the binary the cargo run built (skipped when the run
# was narrowed to some tests with extra arguments).
: > "$web_log"
if [ "$#" -eq 0 ]; then
  cargo build --locked --bin aether
  (cd web && npm run --silent check && node --test --test-reporter=spec e2e/) 2>&1 | tee "$web_log" || status=$?
fi
# One closing line over every test binary (cargo prints one per binary, the last often a crate
# with no doc tests) and the browser tests (node prints "ℹ pass N" / "ℹ fail N").
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     /^ℹ pass [0-9]+$/ { p += $3 } /^ℹ fail [0-9]+$/ { f += $3 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log" "$web_log"
exit "$status"
