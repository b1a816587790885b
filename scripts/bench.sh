#!/usr/bin/env bash
# The benchmark: a release build of krug measures the speed figures of DESIGN.md against
# real Postgres, Redis and ClickHouse, prints a table and writes bench/results.md.
#   scripts/bench.sh                 # everything
#   scripts/bench.sh --only jobs     # one part: jobs, scan, ingest, rfm, balance, search,
#                                    # dashboard, settlement, cluster
#   scripts/bench.sh --only settlement --settlement-entries 1000000   # a smaller size
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
cargo build --release --locked --quiet
RUST_LOG="${RUST_LOG:-warn}" exec target/release/krug bench "$@"
