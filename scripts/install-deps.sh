#!/usr/bin/env bash
# Installs the system packages Aether needs on Debian, skipping what is already present.
#   scripts/install-deps.sh run    what `aether serve` needs
#   scripts/install-deps.sh test   that, plus what the test suite starts (PostgreSQL, ffmpeg, ...)
#   scripts/install-deps.sh bench  that, plus the peers benchmarks run beside Aether (nginx-rtmp)
# The Rust toolchain itself (1.95, see rust-toolchain in Cargo.toml) is not installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-run}"

# GStreamer: the libraries the binary links (-dev) and the plugins of the transcoding ladder.
run_packages=(ca-certificates pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav)
# Chromium drives the web UI's browser tests (playwright-core uses this build, never its own) and
# is one WebRTC peer of the tests; aiortc (Python) is the other, independent one.
test_packages=(postgresql ffmpeg redis-server chromium python3-aiosmtpd python3-aiortc)
bench_packages=(nginx libnginx-mod-rtmp)

packages=("${run_packages[@]}")
case "$profile" in
  run) ;;
  test) packages+=("${test_packages[@]}") ;;
  bench) packages+=("${test_packages[@]}" "${bench_packages[@]}") ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: Aether needs Rust 1.95 or newer (https://rustup.rs)." >&2
  exit 1
fi

# Node.js builds the web pages (web/, Vite); the binary embeds them. Debian's own when absent.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The tests' S3-compatible server: s3s-fs, a real S3 implementation over a directory (1.5 min to
# build once; 0.14.1 is the last release that builds with Rust 1.95).
if [ "$profile" != run ] && ! command -v s3s-fs >/dev/null 2>&1; then
  echo "installing: s3s-fs (cargo install)"
  cargo install s3s-fs@0.14.1 --features binary --locked --quiet
fi

# The web UI's packages (Vite, TypeScript, hls.js; playwright-core for the browser tests), as
# package-lock.json pins them, from the npm registry. Re-run when the lock file changes.
# `install --no-save` rather than `ci`: npm 11 leaves other platforms' optional packages (rollup's
# native builds) out of the lock file it writes, and its `ci` then refuses that same file.
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  echo "installing: web/ npm packages"
  (cd web && npm install --no-save --no-audit --no-fund --loglevel=error)
fi
