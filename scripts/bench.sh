#!/usr/bin/env bash
# Side-by-side MQTT benchmark: Junction vs Mosquitto 2.0 vs rumqttd, driven by
# `junction-loadgen` (src/bin/junction-loadgen.rs). Everything listens on and
# talks to 127.0.0.0/8 only; every scenario is bounded in time.
#
#   bash scripts/bench.sh                       # full run, ~15 min on 2 cores
#   BENCH_QUICK=1 bash scripts/bench.sh         # short steps, for a smoke test
#   BENCH_BROKERS="junction mosquitto" bash scripts/bench.sh
#
# Knobs (environment):
#   BENCH_BROKERS    brokers to run, in order (default: junction mosquitto rumqttd)
#   BENCH_SCENARIOS  subset of: idle latency latency1 fanin0 fanin1 fanout0 fanout1 conns10k conns50k overload0 overload1
#   BENCH_STEP_S     seconds per search step (default 5; quick 2)
#   BENCH_PIN=1      pin the broker to CPU 1 and the generator to CPU 0 (default: unpinned)
#   BENCH_MQUEUE     per-session queue length given to every broker (default 1000)
#   BENCH_INFLIGHT   QoS 1 in-flight window towards subscribers, every broker (default 32)
#   CARGO_TARGET_DIR (default /var/tmp/junction-target)
#
# Each broker is started fresh for each scenario (so idle RSS and per-connection
# figures start from a clean process) and stopped by its PID afterwards.
# Raw results: /var/tmp/junction-bench/results-<date>.jsonl (one JSON object per
# line, from the generator, plus `broker`/`scenario_id` fields added here); a
# markdown summary is printed at the end and saved next to it as .md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/junction-target}"
OUT_DIR=/var/tmp/junction-bench
STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$OUT_DIR/results-$STAMP.jsonl"
WORK="$(mktemp -d /var/tmp/junction-bench-run.XXXXXX)"
RUMQTTD_ROOT="${RUMQTTD_ROOT:-/var/tmp/rumqttd}"
BROKERS="${BENCH_BROKERS:-junction mosquitto rumqttd}"
SCENARIOS="${BENCH_SCENARIOS:-idle latency latency1 fanin0 fanin1 fanout0 fanout1 conns10k conns50k overload0 overload1}"
QUICK="${BENCH_QUICK:-0}"
STEP_S="${BENCH_STEP_S:-$([ "$QUICK" = 1 ] && echo 2 || echo 5)}"
LAT_S="$([ "$QUICK" = 1 ] && echo 3 || echo 10)"
OVERLOAD_S="$([ "$QUICK" = 1 ] && echo 5 || echo 20)"
PIN="${BENCH_PIN:-0}"
MQUEUE="${BENCH_MQUEUE:-1000}"
INFLIGHT="${BENCH_INFLIGHT:-32}"
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4

# Rates stepped through by the searches (total publishes/s; fan-out: per publisher).
FANIN0_RATES="${BENCH_FANIN0_RATES:-50000,100000,150000,200000,250000,300000,400000,500000,600000,800000,1000000}"
FANIN1_RATES="${BENCH_FANIN1_RATES:-20000,30000,50000,75000,100000,150000,200000,300000,400000,500000,600000}"
FANOUT0_RATES="${BENCH_FANOUT0_RATES:-1000,2000,3000,4000,5000,7500,10000,15000,20000}"
FANOUT1_RATES="${BENCH_FANOUT1_RATES:-500,1000,2000,3000,4000,5000,7500,10000,15000}"

mkdir -p "$OUT_DIR"
log() { echo "bench.sh: $*" >&2; }

BPID=""
cleanup() {
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- setup ------------------------------------------------------------------

# Idle connections need many descriptors, in the generator and in the brokers
# (which inherit this limit). Root may raise the hard limit.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
log "open files limit: $NOFILE"
# One process cannot hold more connections than its descriptor limit (the
# broker needs one fd per client too). Where the hard limit cannot be raised
# (no CAP_SYS_RESOURCE, e.g. in a sandbox), the 50k scenario runs with as many
# connections as the limit allows, and says so.
CONNS_BIG=50000
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt 51000 ]; then
    CONNS_BIG=$((NOFILE - 1000))
    log "open files limit $NOFILE < 51000: the 50k-connection scenario uses $CONNS_BIG connections"
fi

log "building junction and junction-loadgen (release) in $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --bin junction --bin junction-loadgen) >&2
JUNCTION_BIN="$CARGO_TARGET_DIR/release/junction"
LG="$CARGO_TARGET_DIR/release/junction-loadgen"

need_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 && return 0
    log "installing mosquitto (apt)"
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >&2; }
    fi
    command -v mosquitto >/dev/null 2>&1
}
need_rumqttd() {
    [ -x "$RUMQTTD_ROOT/bin/rumqttd" ] && return 0
    # Not --locked: rumqttd 0.20.0's lock file pins metrics 0.22.1, which no
    # longer compiles with current rustc; the newest compatible versions do.
    log "installing rumqttd into $RUMQTTD_ROOT (takes a few minutes)"
    CARGO_TARGET_DIR=/var/tmp/target-rumqttd cargo install rumqttd --root "$RUMQTTD_ROOT" >&2
}
MOSQUITTO_BIN="$(command -v mosquitto || true)"
for b in $BROKERS; do
    case "$b" in
        mosquitto) need_mosquitto || { log "mosquitto unavailable: skipping it"; BROKERS="${BROKERS/mosquitto/}"; }
                   MOSQUITTO_BIN="$(command -v mosquitto || true)" ;;
        rumqttd) need_rumqttd || { log "rumqttd unavailable: skipping it"; BROKERS="${BROKERS/rumqttd/}"; } ;;
    esac
done

taskset_broker=()
taskset_gen=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then
    taskset_broker=(taskset -c 1)
    taskset_gen=(taskset -c 0)
fi

# --- brokers ------------------------------------------------------------------

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# start_broker NAME: sets BPID and BADDR.
start_broker() {
    local name="$1" dir="$WORK/$1" i
    rm -rf "$dir"
    mkdir -p "$dir"
    case "$name" in
        junction)
            (cd "$dir" && exec env \
                JUNCTION_LISTENERS__TCP__DEFAULT__BIND=127.0.0.1:0 \
                JUNCTION_LISTENERS__WS__DEFAULT__BIND=127.0.0.1:0 \
                JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND=127.0.0.1:0 \
                JUNCTION_NODE__DATA_DIR="$dir/data" \
                JUNCTION_MQTT__MAX_MQUEUE_LEN="$MQUEUE" \
                JUNCTION_MQTT__MAX_INFLIGHT="$INFLIGHT" \
                "${taskset_broker[@]}" "$JUNCTION_BIN" >"$dir/log" 2>&1) &
            BPID=$!
            for i in $(seq 1 300); do
                grep -q '^READY' "$dir/log" 2>/dev/null && break
                kill -0 "$BPID" 2>/dev/null || break
                sleep 0.1
            done
            BADDR="$(sed -n 's/^LISTENING tcp default \([^ ]*\).*/\1/p' "$dir/log" | head -1)"
            ;;
        mosquitto)
            cat >"$dir/mosquitto.conf" <<EOF
listener 21883 127.0.0.1
allow_anonymous true
max_queued_messages $MQUEUE
max_inflight_messages $INFLIGHT
persistence false
log_dest stderr
log_type error
log_type warning
EOF
            "${taskset_broker[@]}" "$MOSQUITTO_BIN" -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
            BPID=$!
            wait_port 21883 && BADDR=127.0.0.1:21883
            ;;
        rumqttd)
            # Format from rumqttd's own rumqttd.toml (crate source); console,
            # prometheus, websocket and v5 listeners left out.
            cat >"$dir/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 60010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:21884"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = $INFLIGHT
    dynamic_filters = true
EOF
            "${taskset_broker[@]}" "$RUMQTTD_ROOT/bin/rumqttd" -q -c "$dir/rumqttd.toml" >"$dir/log" 2>&1 &
            BPID=$!
            wait_port 21884 && BADDR=127.0.0.1:21884
            ;;
    esac
    if [ -z "${BADDR:-}" ] || ! kill -0 "$BPID" 2>/dev/null; then
        log "$name did not start; log:"
        tail -20 "$dir/log" >&2 || true
        stop_broker
        return 1
    fi
    sleep 1 # let it finish starting before idle figures are taken
}

stop_broker() {
    [ -n "$BPID" ] || return 0
    if kill -0 "$BPID" 2>/dev/null; then
        kill -TERM "$BPID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BPID" 2>/dev/null || true
    fi
    wait "$BPID" 2>/dev/null || true
    BPID=""
    BADDR=""
}

# --- scenarios ------------------------------------------------------------------

# lg BROKER SCENARIO_ID ARGS...: run the generator, tag its JSON lines, append them.
lg() {
    local broker="$1" sid="$2"
    shift 2
    local sub="$1"
    shift
    "${taskset_gen[@]}" "$LG" "$sub" --host "$BADDR" --broker-pid "$BPID" --label "$broker" "$@" |
        while IFS= read -r line; do
            case "$line" in
                \{*) echo "$line" | sed "s/^{/{\"broker\":\"$broker\",\"scenario_id\":\"$sid\",\"date\":\"$STAMP\",/" >>"$RESULTS" ;;
                *) echo "$line" >&2 ;;
            esac
        done
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

run_scenario() {
    local broker="$1" sid="$2"
    log "== $broker: $sid"
    start_broker "$broker" || return 0
    case "$sid" in
        idle)
            echo "{\"broker\":\"$broker\",\"scenario_id\":\"idle\",\"date\":\"$STAMP\",\"scenario\":\"idle\",\"broker_rss_kb\":$(rss_kb "$BPID")}" >>"$RESULTS"
            log "$broker idle RSS $(rss_kb "$BPID") KiB"
            ;;
        latency) lg "$broker" "$sid" latency --rate 1000 --duration "$LAT_S" --qos 0 ;;
        latency1) lg "$broker" "$sid" latency --rate 1000 --duration "$LAT_S" --qos 1 ;;
        fanin0) lg "$broker" "$sid" fanin --publishers 100 --qos 0 --duration "$STEP_S" --search "$FANIN0_RATES" ;;
        fanin1) lg "$broker" "$sid" fanin --publishers 100 --qos 1 --duration "$STEP_S" --search "$FANIN1_RATES" ;;
        fanout0) lg "$broker" "$sid" fanout --subscribers 100 --qos 0 --duration "$STEP_S" --search "$FANOUT0_RATES" ;;
        fanout1) lg "$broker" "$sid" fanout --subscribers 100 --qos 1 --duration "$STEP_S" --search "$FANOUT1_RATES" ;;
        conns10k) lg "$broker" "$sid" conns --count 10000 --sources "$SOURCES" --hold 5 ;;
        conns50k) lg "$broker" "$sid" conns --count "$CONNS_BIG" --sources "$SOURCES" --hold 5 ;;
        # Publishers (10 × 10k/s) faster than the subscriber (reads 10k/s):
        # the broker must drop or hold back, with bounded memory.
        overload0) lg "$broker" "$sid" fanin --publishers 10 --qos 0 --rate 100000 --sub-rate 10000 --duration "$OVERLOAD_S" --drain 2 ;;
        overload1) lg "$broker" "$sid" fanin --publishers 10 --qos 1 --rate 100000 --sub-rate 10000 --duration "$OVERLOAD_S" --drain 2 ;;
        *) log "unknown scenario $sid" ;;
    esac
    if ! kill -0 "$BPID" 2>/dev/null; then
        log "$broker died during $sid"
        echo "{\"broker\":\"$broker\",\"scenario_id\":\"$sid\",\"date\":\"$STAMP\",\"scenario\":\"crash\"}" >>"$RESULTS"
    fi
    stop_broker
}

{
    echo "{\"scenario\":\"machine\",\"date\":\"$STAMP\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\",\"mem_kb\":$(awk '/MemTotal/ {print $2}' /proc/meminfo),\"kernel\":\"$(uname -r)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"pin\":$PIN,\"mosquitto\":\"$("${MOSQUITTO_BIN:-true}" -h 2>/dev/null | head -1 | sed 's/"//g')\",\"rumqttd\":\"$("$RUMQTTD_ROOT/bin/rumqttd" -V 2>/dev/null | sed 's/"//g')\",\"junction\":\"$("$JUNCTION_BIN" --version 2>/dev/null | head -1 | sed 's/"//g') (binary built $(date -r "$JUNCTION_BIN" '+%Y-%m-%d %H:%M'))\"}"
} >>"$RESULTS"

for sid in $SCENARIOS; do
    for b in $BROKERS; do
        run_scenario "$b" "$sid"
    done
done

log "raw results: $RESULTS"
python3 - "$RESULTS" <<'PY' | tee "${RESULTS%.jsonl}.md"
# Markdown summary of one results file (one row per broker and scenario).
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
machine = next((r for r in rows if r.get("scenario") == "machine"), {})
brokers = []
for r in rows:
    b = r.get("broker")
    if b and b not in brokers:
        brokers.append(b)

def get(b, sid, scen=None):
    out = [r for r in rows if r.get("broker") == b and r.get("scenario_id") == sid
           and (scen is None or r.get("scenario") == scen)]
    return out[-1] if out else None

def f(x, fmt="{:,.0f}"):
    return "-" if x is None else fmt.format(x)

def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"

def genflag(r):
    # current_thread generator: one core is its ceiling.
    if r is None:
        return ""
    if (r.get("gen_cpu_share") or 0) >= 0.9:
        return " (generator-bound: its one core is full)"
    if r.get("generator_kept_up") is False:
        # Not CPU: QoS 1 publishers wait for PUBACKs (64 in flight each).
        return " (offered rate not reached: PUBACK window)" if r.get("qos") == 1 else " (offered rate not reached)"
    return ""

print(f"Machine: {machine.get('nproc')} cores, {machine.get('cpu')}, load average at start {machine.get('loadavg')}, pinned={machine.get('pin')}")
print(f"Versions: {machine.get('junction')}; {machine.get('mosquitto')}; {machine.get('rumqttd')}")
print()

for sid, title in [("fanin0", "Fan-in QoS 0 (100 publishers -> 1 subscriber on #)"),
                   ("fanin1", "Fan-in QoS 1 (100 publishers -> 1 subscriber on #)"),
                   ("fanout0", "Fan-out QoS 0 (1 publisher -> 100 subscribers)"),
                   ("fanout1", "Fan-out QoS 1 (1 publisher -> 100 subscribers)")]:
    if not any(get(b, sid) for b in brokers):
        continue
    print(f"### {title}\n")
    print("| broker | highest no-loss rate (msg/s) | deliveries/s there | p50 / p99 µs there | gen CPU | broker CPU | softirq / other procs | broker µs/delivery | broker RSS max KiB | next step: offered -> delivered/s, loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in brokers:
        s = get(b, sid, sid[:-1] + "-search")
        if not s:
            continue
        best, fail = s.get("best"), s.get("first_failure")
        cells = [b, f(s.get("max_no_loss_rate")) if s.get("max_no_loss_rate") else "none"]
        if best:
            cells += [f(best["delivery_rate"]), f"{best['lat_us']['p50']} / {best['lat_us']['p99']}",
                      pct(best.get("gen_cpu_share")) + genflag(best), pct(best.get("broker_cpu_share")),
                      pct(best.get("host_irq_cores")) + " / " + pct(best.get("other_cpu_cores")),
                      f(best.get("broker_cpu_us_per_msg"), "{:.2f}"), f(best.get("broker_rss_kb_max"))]
        else:
            cells += ["-"] * 7
        if fail:
            cells.append(f"{f(fail['target_rate'])}: {f(fail['send_rate'])} -> {f(fail['delivery_rate'])}, "
                         f"{fail['loss_pct']:.2f}% lost, lag {fail['drain_lag_s']:.2f}s, p99 {fail['lat_us']['p99']} µs{genflag(fail)}"
                         + (f"; {fail['errors'][0]}" if fail.get("errors") else ""))
        else:
            cells.append("(all steps passed)")
        print("| " + " | ".join(cells) + " |")
    print()

if any(get(b, l) for b in brokers for l in ("latency", "latency1")):
    print("### Latency (1 publisher -> 1 subscriber, 1000 msg/s, one-way publish -> delivery)\n")
    print("| broker | QoS | p50 µs | p99 µs | p999 µs | max µs | delivered | gen CPU | broker CPU | broker µs/msg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in brokers:
        for sid in ("latency", "latency1"):
            r = get(b, sid, "latency")
            if r:
                l = r["lat_us"]
                print(f"| {b} | {r['qos']} | {l['p50']} | {l['p99']} | {l['p999']} | {l['max']} | {r['delivered']}/{r['expected']} | "
                      f"{pct(r.get('gen_cpu_share'))} | {pct(r.get('broker_cpu_share'))} | {f(r.get('broker_cpu_us_per_msg'), '{:.2f}')} |")
    print()

if any(get(b, c) for b in brokers for c in ("conns10k", "conns50k", "idle")):
    print("### Idle connections\n")
    print("| broker | idle RSS KiB | connections | connect rate /s | broker RSS held KiB | bytes per connection | gen CPU | failures |")
    print("|---|---|---|---|---|---|---|---|")
    for b in brokers:
        idle = get(b, "idle")
        for c in ("conns10k", "conns50k"):
            r = get(b, c, "conns")
            if r:
                print(f"| {b} | {f(idle and idle.get('broker_rss_kb'))} | {r['connected']}/{r['requested']} | {f(r['connect_rate'])} | "
                      f"{f(r.get('broker_rss_kb_held'))} | {f(r.get('broker_bytes_per_conn'))} | {pct(r.get('gen_cpu_share'))} | "
                      f"{r['failed']}{' (' + r['first_error'] + ')' if r.get('first_error') else ''} |")
    print()

if any(get(b, c) for b in brokers for c in ("overload0", "overload1")):
    print("### Overload (10 publishers at 100k msg/s total, subscriber reads 10k msg/s)\n")
    print("| broker | QoS | sent | delivered | lost | broker RSS KiB: start / max / end | RSS series (KiB, 1/s) |")
    print("|---|---|---|---|---|---|---|")
    for b in brokers:
        for c in ("overload0", "overload1"):
            r = get(b, c, "fanin")
            if r:
                series = r.get("broker_rss_kb_series") or []
                print(f"| {b} | {r['qos']} | {f(r['sent'])} | {f(r['delivered'])} | {f(r['lost'])} | "
                      f"{f(r.get('broker_rss_kb_start'))} / {f(r.get('broker_rss_kb_max'))} / {f(r.get('broker_rss_kb_end'))} | "
                      f"{' '.join(str(x) for x in series)} |")
    print()

crashes = [r for r in rows if r.get("scenario") == "crash"]
for r in crashes:
    print(f"**{r['broker']} died during {r['scenario_id']}**")
PY
