#!/usr/bin/env bash
# Installs what is missing and starts PostgreSQL, Redis and ClickHouse on loopback, then waits
# until each answers. Idempotent: services that already run are left alone.
# Written for this project's machines (Debian 12, root, PostgreSQL 15 with trust auth on loopback).
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y -q --no-install-recommends "$@" >/tmp/krug-apt.log 2>&1; then
        log "apt-get install $* failed once; refreshing package lists and trying again"
        $SUDO apt-get update -q >>/tmp/krug-apt.log 2>&1
        $SUDO apt-get install -y -q --no-install-recommends "$@" >>/tmp/krug-apt.log 2>&1 \
            || { log "could not install $* (see /tmp/krug-apt.log)"; exit 1; }
    fi
}

wait_for() { # name, seconds, command...
    local name=$1 seconds=$2; shift 2
    for _ in $(seq 1 "$((seconds * 10))"); do
        if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
        sleep 0.1
    done
    log "$name did not answer within ${seconds}s"; return 1
}

# --- PostgreSQL --------------------------------------------------------------------------
command -v pg_ctlcluster >/dev/null || { log "installing PostgreSQL"; apt_install postgresql postgresql-client; }
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    log "starting PostgreSQL"
    for version in $(ls /etc/postgresql); do
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
fi
wait_for PostgreSQL 30 pg_isready -h 127.0.0.1 -p 5432 -q

# --- Redis -------------------------------------------------------------------------------
command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/krug.log
fi
wait_for Redis 30 redis-cli -h 127.0.0.1 -p 6379 ping

# --- ClickHouse (Debian's clickhouse-server 18.16) ---------------------------------------
command -v curl >/dev/null || apt_install curl
if [ ! -x /usr/sbin/clickhouse-server ] && ! command -v clickhouse-server >/dev/null; then
    log "installing ClickHouse"
    apt_install clickhouse-server clickhouse-client
fi
if ! curl -fsS http://127.0.0.1:8123/ping >/dev/null 2>&1; then
    log "starting ClickHouse"
    $SUDO mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
    $SUDO chown clickhouse:clickhouse /var/lib/clickhouse /var/log/clickhouse-server
    server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
    (cd /var/lib/clickhouse && $SUDO su -s /bin/sh clickhouse -c \
        "$server --config=/etc/clickhouse-server/config.xml --daemon")
fi
wait_for ClickHouse 60 curl -fsS http://127.0.0.1:8123/ping
