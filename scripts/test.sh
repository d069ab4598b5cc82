#!/usr/bin/env bash
# Runs Zync's whole test suite on the embedded SQLite, then the tests that
# use the database (tests/) again on a real PostgreSQL server. On a fresh
# Debian machine it installs PostgreSQL (as root) and starts a throwaway
# cluster on 127.0.0.1 for the second pass.
#
#   scripts/test.sh              # both databases
#   ZYNC_TEST_POSTGRES_URL=postgres://user:pw@127.0.0.1:5432/postgres scripts/test.sh
#                                # use your own PostgreSQL (the role needs CREATEDB)
#   ZYNC_TEST_SKIP_POSTGRES=1 scripts/test.sh   # SQLite only
#   ZYNC_TEST_SKIP_BROWSER=1 scripts/test.sh    # without the Chromium tests
#
# The browser tests (tests/e2e) drive the web client in headless Chromium
# (Debian's package, installed here when missing) with Playwright, inside a
# network namespace that has only loopback; one of them relays through
# Debian's coturn (installed too). The cluster tests start Debian's
# redis-server on loopback (installed when missing).
#
# Extra arguments go to `cargo test` (e.g. a test name filter); without
# them, the vendored crates' own unit tests run too (scripts/vendor-tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

find_pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres_installed() {
  if [ -n "$(find_pg_bin)" ]; then return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL is not installed and cannot be installed here; install it, or set" >&2
    echo "ZYNC_TEST_POSTGRES_URL, or ZYNC_TEST_SKIP_POSTGRES=1 to test SQLite only." >&2
    exit 1
  fi
  log "installing PostgreSQL"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Starts a private cluster in a temporary directory; sets PG_URL and PG_STOP.
start_throwaway_postgres() {
  local bin dir port as
  bin=$(find_pg_bin)
  dir=$(mktemp -d /tmp/zync-pg.XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as=()
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres:postgres "$dir"
    as=(runuser -u postgres --)
  fi
  log "starting PostgreSQL ($bin) on 127.0.0.1:$port"
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U zync --auth=trust -E UTF8 >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null
  PG_URL="postgres://zync@127.0.0.1:$port/postgres"
  PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop)
}

ensure_redis_installed() {
  if command -v redis-server >/dev/null; then return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "The cluster tests need redis-server (Debian: apt-get install redis-server)." >&2
    exit 1
  fi
  log "installing redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

ensure_browser_tools() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v node >/dev/null || missing+=(nodejs npm)
  command -v turnserver >/dev/null || missing+=(coturn)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v nft >/dev/null || missing+=(nftables)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
      echo "The browser tests need: ${missing[*]}. Install them, or set ZYNC_TEST_SKIP_BROWSER=1." >&2
      exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -d tests/e2e/node_modules/playwright-core ]; then
    log "installing the browser test driver (npm ci)"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

run_browser_tests() {
  local target="${CARGO_TARGET_DIR:-$PWD/target}"
  export ZYNC_BIN="$target/debug/zync"
  # Chromium and zync run in a fresh network namespace with only loopback,
  # so no packet can leave this machine (see ../shared/TESTING.md).
  local ns=(unshare -n)
  [ "$(id -u)" -eq 0 ] || ns=(unshare -rn)
  "${ns[@]}" bash -c 'ip link set lo up && cd tests/e2e && node --test --test-concurrency=1 --test-timeout=300000 specs/'
}

ensure_redis_installed

log "building tests"
cargo test --workspace --no-run --quiet
cargo build -p zync --quiet

log "test suite on SQLite"
cargo test --workspace "$@"

if [ $# -eq 0 ]; then
  log "the vendored crates' own unit tests (scripts/vendor-tests.sh)"
  scripts/vendor-tests.sh --quiet
fi

if [ -n "${ZYNC_TEST_SKIP_BROWSER:-}" ]; then
  log "skipping the browser tests (ZYNC_TEST_SKIP_BROWSER is set)"
else
  ensure_browser_tools
  log "browser tests (headless Chromium; screenshots in target/e2e/)"
  run_browser_tests
fi

if [ -n "${ZYNC_TEST_SKIP_POSTGRES:-}" ]; then
  log "skipping PostgreSQL (ZYNC_TEST_SKIP_POSTGRES is set)"
  exit 0
fi

PG_STOP=()
if [ -z "${ZYNC_TEST_POSTGRES_URL:-}" ]; then
  ensure_postgres_installed
  start_throwaway_postgres
  trap '"${PG_STOP[@]}" >/dev/null 2>&1 || true' EXIT
  export ZYNC_TEST_POSTGRES_URL="$PG_URL"
fi

log "test suite on PostgreSQL (the crates whose tests use the database)"
cargo test -p zync-tests "$@"
