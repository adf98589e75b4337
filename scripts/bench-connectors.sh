#!/usr/bin/env bash
# Connector benchmarks (issue 5 point 10). Everything on 127.0.0.1; bounded in time; temp
# dirs; stops only the PIDs it started.
#
#   bash scripts/bench-connectors.sh            # both parts, ~4 min on 2 cores
#   BENCH_CONN_PARTS=pg bash scripts/bench-connectors.sh
#   BENCH_CONN_PARTS=down bash scripts/bench-connectors.sh
#
# Part "pg": rows/s into the local PostgreSQL (127.0.0.1:5432, user postgres, database
# test, no password: scripts/services.sh) through the rule
#     SELECT id, clientid, payload.temp AS temp, timestamp FROM "sensors/+/temp"
# with a postgres action
#     INSERT INTO <t>(id, clientid, temp, ts) VALUES (${id}, ${clientid}, ${temp}, ${timestamp})
# into a fresh table <t> (id text primary key, clientid text, temp int, ts timestamptz, plus
# ins timestamptz default clock_timestamp(): the server's time of each row's insert), once
# with batch_size 1 and once with batch_size 500 (batch_time 10ms, inflight_window 4,
# pool_size 4, queue_len 1,000,000). `junction-loadgen fanin` (100 publishers, QoS 0, JSON
# payloads) publishes a fixed number of messages (50,000 at 50,000/s for batch_size 1,
# 750,000 at 250,000/s for 500) faster than the sink takes them; the
# connector's queue absorbs the backlog. Rows/s are measured two ways:
#     server: rows / (max(ins) - min(ins))  (first to last row as PostgreSQL saw them)
#     counter: the action's `success` counter sampled every 0.1 s, from its first to its last
#              change
# and the table's count(*) is checked against the counter (no row missing or twice).
#
# Part "down": the broker's fan-in throughput while a postgres sink is down: the same rule
# with a connector pointing at a closed port (nothing listens there; queue_len 100,000, the
# oldest dropped beyond it and counted), against the same broker with no rules. Both
# brokers run side by side; each rate of the search (`--search RATE`, 4 s, QoS 0, 100
# publishers, JSON payloads of 100 B, as scripts/bench-rules.sh) runs on both back to back.
#
# Knobs: BENCH_CONN_PARTS ("pg down"), BENCH_CONN_PG_PORT (5432), BENCH_CONN_RATES (search
# rates), BENCH_CONN_STEP_S (4), BENCH_CONN_B1_MSGS / _RATE (50,000 at 50,000/s),
# BENCH_CONN_B500_MSGS / _RATE (750,000 at 250,000/s),
# BENCH_CONN_NOBUILD=1, CARGO_TARGET_DIR.
# Raw results: /var/tmp/junction-bench/connectors-<date>.jsonl, summary printed at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/junction-target}"
OUT_DIR=/var/tmp/junction-bench
STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$OUT_DIR/connectors-$STAMP.jsonl"
WORK="$(mktemp -d /var/tmp/junction-bench-conn.XXXXXX)"
PARTS="${BENCH_CONN_PARTS:-pg down}"
PG_PORT="${BENCH_CONN_PG_PORT:-5432}"
RATES="${BENCH_CONN_RATES:-100000,200000,300000,350000,400000,450000,500000,600000,800000}"
STEP_S="${BENCH_CONN_STEP_S:-4}"
B1_MSGS="${BENCH_CONN_B1_MSGS:-50000}"
B1_RATE="${BENCH_CONN_B1_RATE:-50000}"
B500_MSGS="${BENCH_CONN_B500_MSGS:-750000}"
B500_RATE="${BENCH_CONN_B500_RATE:-250000}"
PSQL=(psql -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test)
mkdir -p "$OUT_DIR"
log() { echo "bench-connectors.sh: $*" >&2; }

declare -A PIDS=() MQTT=() HTTP=()
TABLES=()
stop_pid() {
    local p="$1" i
    if kill -0 "$p" 2>/dev/null; then
        kill -TERM "$p" 2>/dev/null || true
        for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
}
stop_broker() {
    [ -n "${PIDS[$1]:-}" ] && stop_pid "${PIDS[$1]}"
    unset "PIDS[$1]"
}
cleanup() {
    local c t
    for c in "${!PIDS[@]}"; do stop_broker "$c"; done
    for t in "${TABLES[@]}"; do "${PSQL[@]}" -c "DROP TABLE IF EXISTS $t" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${BENCH_CONN_NOBUILD:-0}" != 1 ]; then
    log "building junction and junction-loadgen (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --bin junction --bin junction-loadgen) >&2
fi
JUNCTION_BIN="$CARGO_TARGET_DIR/release/junction"
LG="$CARGO_TARGET_DIR/release/junction-loadgen"

# write_files NAME TABLE SERVER CONNECTOR_EXTRA: rules/ and connectors/ under $WORK/NAME
# (TABLE empty: no rules at all).
write_files() {
    local dir="$WORK/$1" t="$2" server="$3" extra="$4"
    rm -rf "$dir"
    mkdir -p "$dir/data" "$dir/functions" "$dir/rules" "$dir/connectors"
    [ -n "$t" ] || return 0
    cat >"$dir/connectors/db.toml" <<EOF
type = "postgres"
server = "$server"
database = "test"
username = "postgres"
connect_timeout = "1s"
health_check_interval = "1s"
retry_backoff = { initial = "50ms", max = "1s" }
$extra
EOF
    cat >"$dir/rules/to_db.toml" <<EOF
[[rules]]
id = "to_db"
sql = '''SELECT id, clientid, payload.temp AS temp, timestamp FROM "sensors/+/temp"'''

[[rules.actions]]
type = "postgres"
connector = "db"
sql = '''INSERT INTO $t(id, clientid, temp, ts) VALUES (\${id}, \${clientid}, \${temp}, \${timestamp})'''
EOF
}

# start_broker NAME: sets PIDS/MQTT/HTTP[NAME].
start_broker() {
    local name="$1" dir="$WORK/$1" i p
    (cd "$dir" && exec env \
        JUNCTION_LISTENERS__TCP__DEFAULT__BIND=127.0.0.1:0 \
        JUNCTION_LISTENERS__WS__DEFAULT__BIND=127.0.0.1:0 \
        JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND=127.0.0.1:0 \
        JUNCTION_NODE__DATA_DIR="$dir/data" \
        JUNCTION_RULE_ENGINE__RULES_DIR="$dir/rules" \
        JUNCTION_RULE_ENGINE__FUNCTIONS_DIR="$dir/functions" \
        JUNCTION_CONNECTORS__DIR="$dir/connectors" \
        JUNCTION_MQTT__MAX_MQUEUE_LEN=1000 \
        JUNCTION_MQTT__MAX_INFLIGHT=32 \
        "$JUNCTION_BIN" >"$dir/log" 2>&1) &
    p=$!
    PIDS[$name]=$p
    for i in $(seq 1 600); do
        grep -q '^READY' "$dir/log" 2>/dev/null && break
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    MQTT[$name]="$(sed -n 's/^LISTENING tcp default \([^ ]*\).*/\1/p' "$dir/log" | head -1)"
    HTTP[$name]="$(sed -n 's/^LISTENING http [^ ]* \([^ ]*\).*/\1/p' "$dir/log" | head -1)"
    if [ -z "${MQTT[$name]}" ] || [ -z "${HTTP[$name]}" ] || ! kill -0 "$p" 2>/dev/null; then
        log "$name: junction did not start; log:"
        tail -20 "$dir/log" >&2 || true
        stop_broker "$name"
        return 1
    fi
    sleep 1
}

# action_metrics NAME: the action's metrics and the connector status as one JSON object
# ({} without connectors).
action_metrics() {
    curl -sf --max-time 5 "http://${HTTP[$1]}/api/v5/connectors" | python3 -c '
import json, sys
l = json.load(sys.stdin)
if not l:
    print("{}"); sys.exit()
c = l[0]; a = c["actions"][0]
m = dict(a["metrics"]); m["status"] = c.get("status"); m["last_error"] = a.get("last_error")
print(json.dumps(m))' 2>/dev/null || echo '{}'
}
# events_dropped NAME: junction_events_dropped_total (events the engine's queue refused).
events_dropped() {
    curl -sf --max-time 5 "http://${HTTP[$1]}/metrics" | awk '/^junction_events_dropped_total/ {s += $2} END {printf "%d\n", s}' || echo 0
}
mget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 0) or 0)' "$1" "$2"; }

T_START=$(date +%s)
{
    echo "{\"scenario\":\"machine\",\"date\":\"$STAMP\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\",\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"junction\":\"$("$JUNCTION_BIN" --version 2>/dev/null | head -1 | sed 's/"//g')\",\"postgres\":\"$("${PSQL[@]}" -c 'show server_version' 2>/dev/null)\"}"
} >>"$RESULTS"

# --- part 1: rows/s into PostgreSQL --------------------------------------------------------

# pg_run BATCH_SIZE MESSAGES
pg_run() {
    local bs="$1" msgs="$2" name="pg$1" t rate dur m0 m ok last_ok last_change t_first t_last now cnt deadline out
    t="bench_conn_$(date +%s)_$$_$bs"
    TABLES+=("$t")
    "${PSQL[@]}" -c "CREATE TABLE $t (id text PRIMARY KEY, clientid text, temp int, ts timestamptz, ins timestamptz DEFAULT clock_timestamp())" >/dev/null
    write_files "$name" "$t" "127.0.0.1:$PG_PORT" "pool_size = 4
batch_size = $bs
batch_time = \"10ms\"
inflight_window = 4
queue_len = 1000000"
    start_broker "$name" || return 0
    for _ in $(seq 1 50); do
        [ "$(mget "$(action_metrics "$name")" status)" = connected ] && break
        sleep 0.2
    done
    # Publish MESSAGES at a rate well above what the sink takes, for a bounded time.
    if [ "$bs" = 1 ]; then rate="$B1_RATE"; else rate="$B500_RATE"; fi
    dur=$(( (msgs + rate - 1) / rate ))
    log "$name: table $t; publishing $((rate * dur)) messages at $rate/s (QoS 0, 100 publishers)"
    out="$WORK/$name.lg"
    # Sample the success counter every 0.1 s while the generator runs and until it stops moving.
    timeout 60 "$LG" fanin --host "${MQTT[$name]}" --broker-pid "${PIDS[$name]}" --label "$name" \
        --publishers 100 --qos 0 --payload 100 --json --topic-format 'sensors/{i}/temp' \
        --sub-filter 'sensors/#' --rate "$rate" --duration "$dur" --drain 2 >"$out" 2>&1 &
    local lgpid=$!
    last_ok=0; t_first=""; t_last=""; last_change=$(date +%s%N)
    deadline=$(( $(date +%s) + 150 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        m="$(action_metrics "$name")"
        ok="$(mget "$m" success)"
        now=$(date +%s%N)
        if [ "$ok" -gt "$last_ok" ]; then
            [ -n "$t_first" ] || t_first=$now
            t_last=$now; last_change=$now; last_ok=$ok
        fi
        # Done: the generator finished and nothing is queued or in flight, or no progress for 5 s.
        if ! kill -0 "$lgpid" 2>/dev/null; then
            if [ "$(mget "$m" queuing)" = 0 ] && [ "$(mget "$m" inflight)" = 0 ] && [ "$ok" -gt 0 ]; then break; fi
            [ $((now - last_change)) -gt 5000000000 ] && break
        fi
        sleep 0.1
    done
    wait "$lgpid" 2>/dev/null || true
    m="$(action_metrics "$name")"
    cnt="$("${PSQL[@]}" -c "SELECT count(*) || ' ' || coalesce(extract(epoch FROM max(ins) - min(ins)), 0) FROM $t")"
    python3 - "$bs" "$rate" "$dur" "$cnt" "${t_first:-0}" "${t_last:-0}" "$m" "$out" "$RESULTS" <<'PY'
import json, sys
bs, rate, dur = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows, span = sys.argv[4].split()
rows, span = int(rows), float(span)
t_first, t_last = int(sys.argv[5]), int(sys.argv[6])
m = json.loads(sys.argv[7])
lg = [json.loads(l) for l in open(sys.argv[8]) if l.startswith("{")]
lg = lg[-1] if lg else {}
ctr_span = (t_last - t_first) / 1e9
r = {"scenario": "pg-rows", "batch_size": bs, "offered_rate": rate, "duration_s": dur,
     "published": lg.get("sent"), "generator_send_rate": lg.get("send_rate"),
     "rows": rows, "server_span_s": span, "rows_per_s_server": rows / span if span else None,
     "counter_span_s": ctr_span, "rows_per_s_counter": m.get("success", 0) / ctr_span if ctr_span else None,
     "broker_cpu_us_per_msg": lg.get("broker_cpu_us_per_msg"), "metrics": m,
     "loadavg": open("/proc/loadavg").read().split()[:3]}
print(json.dumps(r), file=open(sys.argv[9], "a"))
print(f"batch_size {bs}: {rows} rows in {span:.2f} s (server) = {r['rows_per_s_server'] or 0:,.0f} rows/s; "
      f"counter {m.get('success')} in {ctr_span:.2f} s = {r['rows_per_s_counter'] or 0:,.0f}/s; "
      f"published {lg.get('sent')}, matched {m.get('matched')}, failed {m.get('failed')}, dropped {m.get('dropped')}",
      file=sys.stderr)
PY
    stop_broker "$name"
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS $t" >/dev/null || true
}

if [[ " $PARTS " == *" pg "* ]]; then
    pg_run 1 "$B1_MSGS"
    pg_run 500 "$B500_MSGS"
fi

# --- part 2: fan-in while the sink is down -------------------------------------------------

if [[ " $PARTS " == *" down "* ]]; then
    closed="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    write_files norules "" "" ""
    write_files sinkdown "bench_conn_never" "127.0.0.1:$closed" "pool_size = 4
batch_size = 500
batch_time = \"10ms\"
inflight_window = 4
queue_len = 100000"
    start_broker norules
    start_broker sinkdown
    log "sink down: connector at 127.0.0.1:$closed (closed), status $(mget "$(action_metrics sinkdown)" status)"
    active="norules sinkdown"
    for rate in ${RATES//,/ }; do
        [ -n "$active" ] || break
        if [ $(($(date +%s) - T_START)) -ge 480 ]; then log "time budget used: stopping at $rate"; break; fi
        next=""
        for cfg in $active; do
            m0="$(action_metrics "$cfg")"
            e0="$(events_dropped "$cfg")"
            out="$WORK/step.out"
            timeout 90 "$LG" fanin --host "${MQTT[$cfg]}" --broker-pid "${PIDS[$cfg]}" --label "$cfg" \
                --publishers 100 --qos 0 --payload 100 --json \
                --topic-format 'sensors/{i}/temp' --sub-filter 'sensors/#' \
                --duration "$STEP_S" --search "$rate" >"$out" 2>&1 || true
            m1="$(action_metrics "$cfg")"
            e1="$(events_dropped "$cfg")"
            pass="$(python3 - "$cfg" "$rate" "$m0" "$m1" "$out" "$RESULTS" "$((e1 - e0))" <<'PY'
import json, sys
cfg, rate = sys.argv[1], int(sys.argv[2])
m0, m1 = json.loads(sys.argv[3]), json.loads(sys.argv[4])
lines = [json.loads(l) for l in open(sys.argv[5]) if l.startswith("{")]
st = next((l for l in lines if l.get("search_step")), None) or {}
summ = next((l for l in lines if l.get("scenario") == "fanin-search"), None)
ok = bool(summ and summ.get("max_no_loss_rate"))
d = {k: m1.get(k, 0) - m0.get(k, 0) for k in ("matched", "success", "failed", "dropped")}
d["events_dropped"] = int(sys.argv[7])
r = {"scenario": "down-step", "config": cfg, "rate": rate, "broker_ok": ok, "step": st,
     "delta": d, "metrics_after": m1, "loadavg": open("/proc/loadavg").read().split()[:3]}
print(json.dumps(r), file=open(sys.argv[6], "a"))
print(f"{cfg} {rate}/s: {'ok' if ok else 'FAILED'}; sent {st.get('sent')}, loss {st.get('loss_pct')}%, "
      f"broker {st.get('broker_cpu_us_per_msg') or 0:.2f} us/msg; connector matched {d['matched']}, dropped {d['dropped']}, "
      f"queuing {m1.get('queuing')}, status {m1.get('status')}; engine events dropped {d['events_dropped']}", file=sys.stderr)
print(1 if ok else 0)
PY
)"
            [ "$pass" = 1 ] && next="$next $cfg"
            kill -0 "${PIDS[$cfg]}" 2>/dev/null || { log "junction died during $cfg"; next="${next/ $cfg/}"; }
            sleep 1
        done
        active="$next"
    done
    stop_broker norules
    stop_broker sinkdown
fi
echo "{\"scenario\":\"end\",\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"elapsed_s\":$(($(date +%s) - T_START))}" >>"$RESULTS"

log "raw results: $RESULTS"
python3 - "$RESULTS" <<'PY' | tee "${RESULTS%.jsonl}.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
mach = next((r for r in rows if r.get("scenario") == "machine"), {})
end = next((r for r in rows if r.get("scenario") == "end"), {})
f = lambda x: "-" if x is None else f"{x:,.0f}"
print(f"Machine: {mach.get('nproc')} cores, {mach.get('cpu')}; {mach.get('junction')}; PostgreSQL {mach.get('postgres')}")
print(f"Load average at start {mach.get('loadavg_start')}, at end {end.get('loadavg_end')}; {end.get('elapsed_s')} s in all\n")
pg = [r for r in rows if r.get("scenario") == "pg-rows"]
if pg:
    print("| batch_size | published (offered rate) | rows in table | rows/s (server: first to last insert) | rows/s (success counter) | failed / dropped |")
    print("|---|---|---|---|---|---|")
    for r in pg:
        m = r["metrics"]
        print(f"| {r['batch_size']} | {f(r['published'])} ({f(r['offered_rate'])}/s) | {f(r['rows'])} | "
              f"**{f(r['rows_per_s_server'])}** in {r['server_span_s']:.2f} s | {f(r['rows_per_s_counter'])} | "
              f"{m.get('failed')} / {m.get('dropped')} |")
    print()
st = [r for r in rows if r.get("scenario") == "down-step"]
if st:
    best = {}
    for cfg in ("norules", "sinkdown"):
        s = [r for r in st if r["config"] == cfg]
        lossless = None; fail = None
        for r in s:
            if not r["broker_ok"]:
                fail = r; break
            lossless = r
        best[cfg] = (lossless, fail)
    print("| broker | max lossless rate (QoS 0) | vs no rules | broker µs/msg there | connector matched / dropped (queue full) / engine events dropped in that step | next step |")
    print("|---|---|---|---|---|---|")
    base = best["norules"][0]["rate"] if best["norules"][0] else None
    for cfg in ("norules", "sinkdown"):
        l, fl = best[cfg]
        ratio = f"{l['rate'] / base:.2f}" if l and base else "-"
        stp = l["step"] if l else {}
        conn = "-" if cfg == "norules" or not l else f"{f(l['delta']['matched'])} / {f(l['delta']['dropped'])} / {f(l['delta'].get('events_dropped'))}"
        nxt = "(all passed)" if not fl else f"{f(fl['rate'])}: loss {fl['step'].get('loss_pct')}%, drain lag {fl['step'].get('drain_lag_s') or 0:.2f} s, sent/s {f(fl['step'].get('send_rate'))}"
        print(f"| {cfg} | {f(l['rate']) if l else 'none'} | {ratio} | {stp.get('broker_cpu_us_per_msg') or 0:.2f} | {conn} | {nxt} |")
    print()
    print("| rate | no rules: result, broker µs/msg | sink down: result, broker µs/msg, connector matched / dropped / engine events dropped |")
    print("|---|---|---|")
    for rate in sorted({r["rate"] for r in st}):
        by = {r["config"]: r for r in st if r["rate"] == rate}
        def cell(r):
            if not r: return ""
            s = r["step"]
            c = ("ok" if r["broker_ok"] else f"**failed** (loss {s.get('loss_pct')}%, lag {s.get('drain_lag_s') or 0:.2f} s)") + f", {s.get('broker_cpu_us_per_msg') or 0:.2f} µs"
            if r["config"] == "sinkdown":
                c += f", {f(r['delta']['matched'])} / {f(r['delta']['dropped'])} / {f(r['delta'].get('events_dropped'))}"
            return c
        print(f"| {f(rate)} | {cell(by.get('norules'))} | {cell(by.get('sinkdown'))} |")
PY
