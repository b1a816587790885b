#!/usr/bin/env bash
# A Redis Cluster on loopback for development, the cluster test and the benchmark: three
# masters and three replicas (a killed master's replica takes over), Debian's redis-server on
# ports BASE..BASE+5 (cluster bus on port + 10000), data under /tmp. Never the standard 6379.
#
#   scripts/redis-cluster.sh start [--port BASE]   # idempotent; prints the REDIS_URL to use
#   scripts/redis-cluster.sh stop  [--port BASE]   # stops the six nodes, removes their data
#   scripts/redis-cluster.sh url   [--port BASE]
#
# BASE defaults to 7000. Nodes keep nothing on disk (no RDB, no AOF): like the single Redis
# of scripts/services.sh, Postgres holds the truth and `reconcile` re-enqueues what a lost
# node held.
set -euo pipefail

log() { printf '[redis-cluster] %s\n' "$*" >&2; }

action=${1:-start}
shift || true
base=7000
while [ $# -gt 0 ]; do
    case $1 in
        --port) base=$2; shift 2 ;;
        *) log "unknown argument $1"; exit 2 ;;
    esac
done
ports=$(seq "$base" $((base + 5)))
dir=/tmp/krug-redis-cluster-$base

url() {
    local nodes
    nodes=$(for p in $ports; do printf '127.0.0.1:%s,' "$p"; done)
    printf 'redis+cluster://%s\n' "${nodes%,}"
}

cli() { # port, command...
    local port=$1; shift
    redis-cli -h 127.0.0.1 -p "$port" "$@"
}

wait_for() { # what, seconds, command...
    local what=$1 seconds=$2; shift 2
    for _ in $(seq 1 "$((seconds * 10))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "$what: not within ${seconds}s"; return 1
}

cluster_ok() { cli "$1" cluster info | grep -q '^cluster_state:ok'; }

replicas_in_sync() {
    local p
    for p in $ports; do
        if cli "$p" info replication | grep -q '^role:slave'; then
            cli "$p" info replication | grep -q '^master_link_status:up' || return 1
        fi
    done
}

start() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        log "installing redis-server"
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y -q --no-install-recommends redis-server >/tmp/krug-apt.log 2>&1 \
            || { $sudo apt-get update -q >>/tmp/krug-apt.log 2>&1 \
                 && $sudo apt-get install -y -q --no-install-recommends redis-server >>/tmp/krug-apt.log 2>&1; }
    fi
    local p
    for p in $ports; do
        if cli "$p" ping >/dev/null 2>&1; then continue; fi
        mkdir -p "$dir/$p"
        # node-timeout 2 s: a dead master is noticed and replaced within a few seconds.
        # require-full-coverage no: the other masters keep serving their slots meanwhile.
        redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
            --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" \
            --cluster-node-timeout 2000 --cluster-require-full-coverage no \
            --save "" --appendonly no --dir "$dir/$p" \
            --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log"
    done
    for p in $ports; do wait_for "node $p answers" 10 cli "$p" ping; done
    if ! cluster_ok "$base"; then
        local assigned
        assigned=$(cli "$base" cluster info | sed -n 's/^cluster_slots_assigned:\([0-9]*\).*/\1/p')
        if [ "${assigned:-0}" = 0 ]; then
            log "creating the cluster (3 masters, 3 replicas) on ports $base-$((base + 5))"
            # shellcheck disable=SC2046
            redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
                --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
                || { log "cluster create failed:"; cat "$dir/create.log" >&2; exit 1; }
        fi
    fi
    for p in $ports; do wait_for "cluster state ok on $p" 30 cluster_ok "$p"; done
    wait_for "replicas in sync" 30 replicas_in_sync
    log "up: $(url)"
    url
}

stop() {
    local p
    for p in $ports; do
        cli "$p" shutdown nosave >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    log "stopped"
}

case $action in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) log "usage: $0 start|stop|url [--port BASE]"; exit 2 ;;
esac
