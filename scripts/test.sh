#!/usr/bin/env bash
# The whole test suite: starts (installing if needed) PostgreSQL, Redis and ClickHouse,
# then runs every unit and black-box test against them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

# The board test drives Debian's Chromium with playwright-core (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
    echo "[test] installing chromium"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q --no-install-recommends chromium >/tmp/krug-apt.log 2>&1 \
        || { $SUDO apt-get update -q >>/tmp/krug-apt.log 2>&1 \
             && $SUDO apt-get install -y -q --no-install-recommends chromium >>/tmp/krug-apt.log 2>&1; }
fi
# The alerting rules are checked with promtool (Debian's prometheus package; its daemon is
# not started here).
if ! command -v promtool >/dev/null 2>&1; then
    echo "[test] installing prometheus (for promtool)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q --no-install-recommends prometheus >/tmp/krug-apt.log 2>&1 \
        || { $SUDO apt-get update -q >>/tmp/krug-apt.log 2>&1 \
             && $SUDO apt-get install -y -q --no-install-recommends prometheus >>/tmp/krug-apt.log 2>&1; }
fi
[ -d tests/browser/node_modules ] || npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

# The API fuzz test runs schemathesis (PyPI), pinned.
SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "[test] installing schemathesis $SCHEMATHESIS_VERSION"
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Leftovers of interrupted runs: per-test databases and Redis keys (prefix kt-).
clean() {
    psql -h 127.0.0.1 -U postgres -d postgres -Atc \
        "SELECT datname FROM pg_database WHERE datname LIKE 'krug\_test\_%' AND datname NOT LIKE 'krug\_test\_template%'" \
        | while read -r db; do psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done
    redis-cli -h 127.0.0.1 --scan --pattern '*kt-*' | xargs -r -n 500 redis-cli -h 127.0.0.1 DEL >/dev/null
    # (grep finds none on a clean machine: not a failure)
    curl -fsS 'http://127.0.0.1:8123/?query=SHOW%20DATABASES' | { grep '^krug_test_' || true; } \
        | while read -r db; do curl -fsS -d "DROP DATABASE IF EXISTS $db" http://127.0.0.1:8123/ >/dev/null; done
}
clean

# The tests wait on I/O far more than on CPU: more threads than cores keeps the run short.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
cargo test --workspace --locked "$@"

clean
