# Ephemeral services for the test suite: each runs from a temp dir on a free loopback port and
# is torn down by `stop_services` (the caller traps it on EXIT). Source this file, then call
# start_postgres; it exports AETHER_TEST_POSTGRES_URL.

AETHER_SERVICES_DIR="${AETHER_SERVICES_DIR:-$(mktemp -d /tmp/aether-services.XXXXXX)}"
chmod 755 "$AETHER_SERVICES_DIR"
_aether_stoppers=()

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as an unprivileged user: PostgreSQL refuses to run as root.
as_service_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local bindir
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -x "$bindir/initdb" ] || { echo "PostgreSQL is not installed (scripts/install-deps.sh test)" >&2; return 1; }
  local dir="$AETHER_SERVICES_DIR/postgres" port
  port="$(free_port)"
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_service_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  as_service_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  _aether_stoppers+=("as_service_user $bindir/pg_ctl -D $dir/data -m immediate -w stop")
  export AETHER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL on 127.0.0.1:$port ($dir)"
}

stop_services() {
  local stopper
  for stopper in "${_aether_stoppers[@]}"; do
    eval "$stopper" >/dev/null 2>&1 || true
  done
  _aether_stoppers=()
  rm -rf "$AETHER_SERVICES_DIR"
}
