#!/usr/bin/env bash
# From a fresh machine to a day of the loyalty cycle: installs and starts PostgreSQL, Redis
# and ClickHouse if needed, builds krug and runs `krug demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
cargo build --locked --quiet
RUST_LOG="${RUST_LOG:-warn}" exec target/debug/krug demo
