#!/usr/bin/env bash
# Runs the server on the embedded defaults (SQLite and media under ./data, HTTP :8080, RTMP :1935),
# after installing what is missing. Extra arguments go to `aether serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run
exec cargo run --release --locked --bin aether -- serve "$@"
