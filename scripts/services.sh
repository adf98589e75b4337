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

# Setup steps (print to stderr; a `skip` line only on failure), then services.
SETUP=(python_venv)
SERVICES=(mosquitto redis)

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
