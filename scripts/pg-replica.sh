#!/usr/bin/env bash
# A Postgres primary and its streaming replica on loopback, for the replica test and for
# trying DATABASE_REPLICA_URL by hand: Debian's PostgreSQL binaries, a cluster of their own
# under /tmp (never the system's on 5432, whose pg_hba allows no replication), the primary
# on PORT and the hot standby on PORT+1, both trusting loopback.
#
#   scripts/pg-replica.sh start [--port PORT]   # idempotent; prints both URLs
#   scripts/pg-replica.sh stop  [--port PORT]   # stops both, removes their data
#   scripts/pg-replica.sh stop-replica [--port PORT]   # stops the standby only (an outage;
#                                                      # `start` brings it back)
#
# PORT defaults to 5441. Run as root, the servers run as the `postgres` user.
set -euo pipefail

log() { printf '[pg-replica] %s\n' "$*" >&2; }

action=${1:-start}
shift || true
port=5441
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=$2; shift 2 ;;
        *) log "unknown argument $1"; exit 2 ;;
    esac
done
replica_port=$((port + 1))
dir=/tmp/krug-pg-replica-$port
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { log "no PostgreSQL server binaries under /usr/lib/postgresql (run scripts/services.sh)"; exit 1; }

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$1"; }

wait_for() { # what, seconds, command...
    local what=$1 seconds=$2; shift 2
    for _ in $(seq 1 "$((seconds * 10))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "$what: not within ${seconds}s"; return 1
}

start() {
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/primary/PG_VERSION" ]; then
        log "initdb of the primary in $dir/primary"
        as_postgres "$bin/initdb" -D "$dir/primary" -U postgres -A trust >/dev/null
        cat >>"$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
fsync = off
CONF
        echo "host replication postgres 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
    fi
    if ! ready "$port"; then
        as_postgres "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
    fi
    wait_for "the primary on $port" 30 ready "$port"
    if [ ! -f "$dir/replica/PG_VERSION" ]; then
        log "base backup of the primary into $dir/replica"
        as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres \
            -D "$dir/replica" -R -X stream -c fast
        cat >>"$dir/replica/postgresql.conf" <<CONF
port = $replica_port
hot_standby = on
CONF
    fi
    if ! ready "$replica_port"; then
        as_postgres "$bin/pg_ctl" -D "$dir/replica" -l "$dir/replica.log" -w start >/dev/null
    fi
    wait_for "the replica on $replica_port" 30 ready "$replica_port"
    log "primary postgres://postgres@127.0.0.1:$port, replica postgres://postgres@127.0.0.1:$replica_port"
    echo "postgres://postgres@127.0.0.1:$port"
    echo "postgres://postgres@127.0.0.1:$replica_port"
}

stop() {
    for node in replica primary; do
        if [ -f "$dir/$node/postmaster.pid" ]; then
            as_postgres "$bin/pg_ctl" -D "$dir/$node" -m immediate -w stop >/dev/null || true
        fi
    done
    rm -rf "$dir"
}

stop_replica() {
    if [ -f "$dir/replica/postmaster.pid" ]; then
        as_postgres "$bin/pg_ctl" -D "$dir/replica" -m immediate -w stop >/dev/null
    fi
}

case $action in
    start) start ;;
    stop) stop ;;
    stop-replica) stop_replica ;;
    *) log "usage: $0 start|stop|stop-replica [--port PORT]"; exit 2 ;;
esac
