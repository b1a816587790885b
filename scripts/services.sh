#!/usr/bin/env bash
# Installs what is missing and starts PostgreSQL, Redis, ClickHouse, an S3-compatible
# object store and an SMTP sink on loopback, then waits until each answers. Idempotent: services that already
# run are left alone.
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

# --- S3-compatible object store (media) ---------------------------------------------------
# s3s-fs (crates.io) serves the S3 API over a directory: each bucket is a folder. The keys
# are development keys, the same as the defaults of S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY.
S3_PORT="${KRUG_S3_PORT:-9100}"
S3S_VERSION=0.14.1
S3_ROOT=/var/lib/krug-s3
s3s_bin=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
if [ ! -x "$s3s_bin" ]; then
    log "installing s3s-fs $S3S_VERSION from crates.io (a few minutes)"
    cargo install --locked --quiet s3s-fs --version "$S3S_VERSION" --features binary \
        >/tmp/krug-s3s-install.log 2>&1 \
        || { log "could not install s3s-fs (see /tmp/krug-s3s-install.log)"; exit 1; }
    s3s_bin="$HOME/.cargo/bin/s3s-fs"
fi
if ! curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"; then
    log "starting the S3 server (s3s-fs) on 127.0.0.1:$S3_PORT"
    $SUDO mkdir -p "$S3_ROOT/krug" /var/log/krug
    # From `/`: s3s-fs resolves every object's path against its working directory, so a
    # server started from a checkout answers 500 to every upload once that checkout is gone.
    nohup env --chdir=/ "$s3s_bin" --host 127.0.0.1 --port "$S3_PORT" \
        --access-key krug-dev --secret-key krug-dev-secret "$S3_ROOT" \
        >/var/log/krug/s3s-fs.log 2>&1 </dev/null &
fi
wait_for "S3 (s3s-fs)" 30 curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"

# --- SMTP sink (e-mail) ------------------------------------------------------------------
# aiosmtpd (PyPI) accepts every message on 127.0.0.1:1025 and files it in a Maildir, one
# file per message under $KRUG_MAIL_DIR/new: development and tests point SMTP_URL at it
# (smtp://127.0.0.1:1025) and read what was "sent" from there. Nothing is relayed anywhere.
SMTP_PORT="${KRUG_SMTP_PORT:-1025}"
AIOSMTPD_VERSION=1.4.6
MAIL_DIR="${KRUG_MAIL_DIR:-/tmp/krug-mail}"
PYTHON=$(command -v python3 || true)
if [ -z "$PYTHON" ]; then
    log "installing Python 3"; apt_install python3 python3-pip; PYTHON=$(command -v python3)
fi
# A Maildir is its three folders (aiosmtpd creates them only when the directory is new).
mkdir -p "$MAIL_DIR/tmp" "$MAIL_DIR/new" "$MAIL_DIR/cur"
smtp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null; }
if ! smtp_up; then
    if ! "$PYTHON" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
        log "installing aiosmtpd $AIOSMTPD_VERSION from PyPI"
        "$PYTHON" -m pip install --quiet "aiosmtpd==$AIOSMTPD_VERSION" >/tmp/krug-aiosmtpd-install.log 2>&1 \
            || "$PYTHON" -m pip install --quiet --break-system-packages "aiosmtpd==$AIOSMTPD_VERSION" \
                >>/tmp/krug-aiosmtpd-install.log 2>&1 \
            || { log "could not install aiosmtpd (see /tmp/krug-aiosmtpd-install.log)"; exit 1; }
    fi
    log "starting the SMTP sink (aiosmtpd) on 127.0.0.1:$SMTP_PORT, mail in $MAIL_DIR"
    mkdir -p /tmp/krug-logs
    # -n: do not switch to `nobody` (the Maildir stays readable by tests).
    nohup "$PYTHON" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
        -c aiosmtpd.handlers.Mailbox "$MAIL_DIR" \
        >/tmp/krug-logs/aiosmtpd.log 2>&1 </dev/null &
fi
wait_for "SMTP sink (aiosmtpd)" 30 smtp_up
