#!/usr/bin/env bash
# Rule engine end-to-end benchmark: Junction's fan-in throughput (100 publishers ->
# 1 subscriber) with 0 rules, 1 rule and 10,000 rules, driven by `junction-loadgen`.
# Everything listens on and talks to 127.0.0.1 only; the whole run is bounded in time.
#
#   bash scripts/bench-rules.sh                 # QoS 0 and QoS 1, ~5 min on 2 cores
#   BENCH_RULES_QOS=0 bash scripts/bench-rules.sh
#   BENCH_RULES_QUICK=1 bash scripts/bench-rules.sh   # 2 s steps, few rates: a smoke test
#
# The three brokers (started fresh for each QoS, side by side, data and rules folders in a
# temp dir, stopped by the PIDs this script started; the steps of one rate run on the three
# back to back):
#   rules0    the rules folder is empty (the broker sends no events to the engine)
#   rules1    one rule, the issue's:
#               SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30
#             with a republish to alerts/${clientid}
#   rules10k  that rule plus 9,999 rules on `devices/<n>/data` (never matched by the
#             traffic), each with a republish action
#
# Traffic: `junction-loadgen fanin --publishers 100 --json --topic-format sensors/{i}/temp
# --sub-filter 'sensors/#'`: every payload is `{"temp":35,"lg":"<hex>","pad":"aa…"}`
# (--payload bytes), so the rule's WHERE holds for every message and each one is
# republished (to alerts/<client id>, which nobody subscribes to).
#
# Search: each rate is one generator run (`--search RATE`: passes when nothing is lost, the
# rate was really offered, no error, last delivery <= 0.25 s after publishing ended).
# Around each run the script reads /metrics and /api/v5/rules/hot/metrics, so every step
# also says how many events the broker could not hand to the engine
# (junction_events_dropped_total), how many messages the rule matched and passed, and how
# many republishes ran or were discarded (action queue full).
# The search stops at the first step the broker fails. Two results per broker:
#   lossless   highest broker-passing step (the generator's criterion, as in BENCHMARKS.md)
#   evaluated  highest step, before the first that fails either way, where additionally
#              no event was dropped, every message was matched by the rule and its republish
#              ran (none discarded by a full action queue, none failed), all within
#              BENCH_RULES_CATCHUP_S after the generator finished
#
# Knobs (environment):
#   BENCH_RULES_QOS        QoS levels to run (default "0 1")
#   BENCH_RULES_CONFIGS    subset of: rules0 rules1 rules10k (default all three)
#   BENCH_RULES_STEP_S     seconds per step (default 4; quick 2)
#   BENCH_RULES_PAYLOAD    payload bytes (default 100; the JSON form needs at least 76)
#   BENCH_RULES_RATES0     QoS 0 rates, comma list
#   BENCH_RULES_RATES1     QoS 1 rates, comma list
#   BENCH_RULES_CATCHUP_S  time the engine gets after a run to finish evaluating (default 1)
#   BENCH_RULES_BUDGET_S   stop stepping after this many seconds in all (default 540)
#   BENCH_RULES_NOBUILD=1  do not run cargo build (use the binaries already built)
#   CARGO_TARGET_DIR       (default /var/tmp/junction-target)
#
# Raw results: /var/tmp/junction-bench/rules-<date>.jsonl (one JSON object per step, the
# generator's step result plus the engine deltas); the markdown table is printed at the
# end and saved next to it as .md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/junction-target}"
OUT_DIR=/var/tmp/junction-bench
STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$OUT_DIR/rules-$STAMP.jsonl"
WORK="$(mktemp -d /var/tmp/junction-bench-rules.XXXXXX)"
QUICK="${BENCH_RULES_QUICK:-0}"
QOS_LIST="${BENCH_RULES_QOS:-0 1}"
CONFIGS="${BENCH_RULES_CONFIGS:-rules0 rules1 rules10k}"
STEP_S="${BENCH_RULES_STEP_S:-$([ "$QUICK" = 1 ] && echo 2 || echo 4)}"
PAYLOAD="${BENCH_RULES_PAYLOAD:-100}"
CATCHUP_S="${BENCH_RULES_CATCHUP_S:-1}"
BUDGET_S="${BENCH_RULES_BUDGET_S:-540}"
if [ "$QUICK" = 1 ]; then
    RATES0="${BENCH_RULES_RATES0:-50000,150000,300000}"
    RATES1="${BENCH_RULES_RATES1:-20000,50000}"
else
    RATES0="${BENCH_RULES_RATES0:-50000,100000,150000,200000,250000,300000,350000,400000,500000,600000,800000,1000000}"
    RATES1="${BENCH_RULES_RATES1:-20000,30000,50000,75000,100000,125000,150000,200000,300000}"
fi
MQUEUE=1000
INFLIGHT=32
NOTHER=9999

mkdir -p "$OUT_DIR"
log() { echo "bench-rules.sh: $*" >&2; }

BPID=""
BADDR=""
HADDR=""
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
    HADDR=""
}
# The three brokers run side by side (idle when not under test), so that the steps of one
# rate run back to back on all three: on a shared machine the load of other processes then
# changes less between the configurations being compared.
declare -A PIDS=() ADDRS=() HTTPS=()
use_broker() {
    BPID="${PIDS[$1]:-}"
    BADDR="${ADDRS[$1]:-}"
    HADDR="${HTTPS[$1]:-}"
}
stop_all() {
    local c
    for c in "${!PIDS[@]}"; do
        use_broker "$c"
        stop_broker
        unset "PIDS[$c]"
    done
}
cleanup() {
    stop_broker
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${BENCH_RULES_NOBUILD:-0}" != 1 ]; then
    log "building junction and junction-loadgen (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --bin junction --bin junction-loadgen) >&2
fi
JUNCTION_BIN="$CARGO_TARGET_DIR/release/junction"
LG="$CARGO_TARGET_DIR/release/junction-loadgen"

# --- rule files -------------------------------------------------------------------

# The issue's rule. The republish payload is the default `${.}` (the rule's output as
# JSON: {"t":35,"clientid":"..."}), QoS 0.
hot_rule() {
    cat <<'EOF'
[[rules]]
id = "hot"
description = "The issue rule: temperatures above 30 are republished to alerts/<client id>"
sql = '''
SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30
'''

[[rules.actions]]
type = "republish"
topic = "alerts/${clientid}"
EOF
}

# write_rules CONFIG DIR
write_rules() {
    local cfg="$1" dir="$2"
    mkdir -p "$dir"
    case "$cfg" in
        rules0) ;;
        rules1) hot_rule >"$dir/hot.toml" ;;
        rules10k)
            hot_rule >"$dir/hot.toml"
            # 9,999 rules on topics the traffic never uses, each with a republish action.
            awk -v n="$NOTHER" 'BEGIN {
                for (i = 1; i <= n; i++) {
                    printf "[[rules]]\nid = \"dev%d\"\nsql = '\''SELECT payload.temp AS t, clientid FROM \"devices/%d/data\" WHERE t > 30'\''\n\n", i, i
                    printf "[[rules.actions]]\ntype = \"republish\"\ntopic = \"alerts/dev%d/${clientid}\"\n\n", i
                }
            }' >"$dir/devices.toml"
            ;;
    esac
}

# --- broker -------------------------------------------------------------------------

# start_broker CONFIG: sets BPID, BADDR (MQTT) and HADDR (HTTP).
start_broker() {
    local cfg="$1" dir="$WORK/$1" i
    rm -rf "$dir"
    mkdir -p "$dir/data" "$dir/functions"
    write_rules "$cfg" "$dir/rules"
    (cd "$dir" && exec env \
        JUNCTION_LISTENERS__TCP__DEFAULT__BIND=127.0.0.1:0 \
        JUNCTION_LISTENERS__WS__DEFAULT__BIND=127.0.0.1:0 \
        JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND=127.0.0.1:0 \
        JUNCTION_NODE__DATA_DIR="$dir/data" \
        JUNCTION_RULE_ENGINE__RULES_DIR="$dir/rules" \
        JUNCTION_RULE_ENGINE__FUNCTIONS_DIR="$dir/functions" \
        JUNCTION_MQTT__MAX_MQUEUE_LEN="$MQUEUE" \
        JUNCTION_MQTT__MAX_INFLIGHT="$INFLIGHT" \
        "$JUNCTION_BIN" >"$dir/log" 2>&1) &
    BPID=$!
    for i in $(seq 1 600); do
        grep -q '^READY' "$dir/log" 2>/dev/null && break
        kill -0 "$BPID" 2>/dev/null || break
        sleep 0.1
    done
    BADDR="$(sed -n 's/^LISTENING tcp default \([^ ]*\).*/\1/p' "$dir/log" | head -1)"
    HADDR="$(sed -n 's/^LISTENING http [^ ]* \([^ ]*\).*/\1/p' "$dir/log" | head -1)"
    if [ -z "$BADDR" ] || [ -z "$HADDR" ] || ! kill -0 "$BPID" 2>/dev/null; then
        log "$cfg: junction did not start; log:"
        tail -20 "$dir/log" >&2 || true
        stop_broker
        return 1
    fi
    sleep 1
}

# metrics OUT_FILE: the engine-wide counters and the sums of the per-rule ones, as JSON.
metrics() {
    curl -sf --max-time 10 "http://$HADDR/metrics" | python3 -c '
import json, re, sys
want = {"junction_events_dropped_total": "events_dropped",
        "junction_rules_events_received_total": "events_received",
        "junction_rules_loaded": "rules_loaded"}
rule = {"matched", "passed", "failed_no_result", "failed_exception", "actions_total",
        "actions_success", "actions_failed", "actions_discarded", "skipped_loop"}
out = {v: 0 for v in want.values()}
for name in rule:
    out["hot_" + name] = 0
    out["others_" + name] = 0
for line in sys.stdin:
    if line.startswith("#"):
        continue
    m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$", line.strip())
    if not m:
        continue
    name, labels, v = m.group(1), m.group(2) or "", float(m.group(3))
    if name in want:
        out[want[name]] = int(v)
    elif name.startswith("junction_rule_") and name.endswith("_total"):
        base = name[len("junction_rule_"):-len("_total")]
        if base in rule:
            who = "hot" if "rule_id=\"hot\"" in labels else "others"
            out[f"{who}_{base}"] += int(v)
print(json.dumps(out))
'
}

# hot_done: `matched` + `actions.success` + `actions.failed` of the issue rule (cheap: one
# rule, not the whole /metrics). Work of the engine is done for a message when it was
# matched and its republish ran (or was discarded or failed: counted separately).
hot_done() {
    curl -sf --max-time 5 "http://$HADDR/api/v5/rules/hot/metrics" |
        python3 -c 'import json,sys; m = json.load(sys.stdin)["metrics"]; print(m["matched"] + m["actions.success"] + m["actions.failed"])' 2>/dev/null || echo -1
}

# --- steps ----------------------------------------------------------------------------

T_START=$(date +%s)
over_budget() { [ $(($(date +%s) - T_START)) -ge "$BUDGET_S" ]; }

# step CONFIG QOS RATE: one generator run at RATE; appends one JSON line; returns 1 when
# the broker failed the step (loss, rate not offered, error or backlog).
step() {
    local cfg="$1" qos="$2" rate="$3" m0 m1 out lag ndone0 ndone sent t0 now pass
    m0="$(metrics)"
    ndone0="$(echo "$m0" | python3 -c 'import json,sys; m = json.load(sys.stdin); print(m["hot_matched"] + m["hot_actions_success"] + m["hot_actions_failed"] + m["hot_actions_discarded"])')"
    out="$WORK/step.out"
    timeout 120 "$LG" fanin --host "$BADDR" --broker-pid "$BPID" --label "$cfg" \
        --publishers 100 --qos "$qos" --payload "$PAYLOAD" --json \
        --topic-format 'sensors/{i}/temp' --sub-filter 'sensors/#' \
        --duration "$STEP_S" --search "$rate" >"$out" 2>&1 || true
    grep -v '^{' "$out" >&2 || true
    sent="$(grep '"search_step":true' "$out" | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["sent"])' 2>/dev/null || echo 0)"
    # Give the engine up to CATCHUP_S to finish evaluating what it received and running
    # the republish actions.
    lag=0
    if [ "$cfg" != rules0 ]; then
        t0=$(date +%s%N)
        while :; do
            ndone="$(hot_done)"
            now=$(date +%s%N)
            if [ "$ndone" -ge $((ndone0 + 2 * sent)) ] || [ $((now - t0)) -ge $((CATCHUP_S * 1000000000)) ]; then
                break
            fi
            sleep 0.05
        done
        lag="$(python3 -c "print(($now - $t0) / 1e9)")"
    fi
    m1="$(metrics)"
    pass="$(python3 - "$cfg" "$qos" "$rate" "$STAMP" "$lag" "$CATCHUP_S" "$m0" "$m1" "$out" "$RESULTS" <<'PY'
import json, sys
cfg, qos, rate, stamp, lag, catchup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
m0, m1 = json.loads(sys.argv[7]), json.loads(sys.argv[8])
lines = [json.loads(l) for l in open(sys.argv[9]) if l.startswith("{")]
stepr = next((l for l in lines if l.get("search_step")), None)
summ = next((l for l in lines if l.get("scenario") == "fanin-search"), None)
broker_ok = bool(summ and summ.get("max_no_loss_rate"))
d = {k: m1[k] - m0[k] for k in m1 if k != "rules_loaded"}
sent = stepr["sent"] if stepr else 0
if cfg == "rules0":
    evaluated = True
else:
    # Every message evaluated and republished: nothing dropped before the engine, nothing
    # discarded in front of the action, no action failed.
    evaluated = (d["events_dropped"] == 0 and sent > 0 and d["hot_matched"] == sent
                 and d["hot_actions_success"] == d["hot_passed"] and d["hot_actions_discarded"] == 0
                 and d["hot_actions_failed"] == 0)
r = {"scenario": "rules-step", "date": stamp, "config": cfg, "qos": qos, "rate": rate,
     "broker_ok": broker_ok, "evaluated": evaluated, "engine_catchup_s": lag,
     "engine_in_time": lag < catchup, "rules_loaded": m1["rules_loaded"],
     "loadavg": open("/proc/loadavg").read().split()[:3], "delta": d, "step": stepr,
     "error": None if stepr else "no generator result"}
print(json.dumps(r), file=open(sys.argv[10], "a"))
print(f"{cfg} qos{qos} {rate}/s: broker {'ok' if broker_ok else 'FAILED'}; sent {sent}, "
      f"matched {d['hot_matched']}, passed {d['hot_passed']}, actions ok {d['hot_actions_success']}, "
      f"discarded {d['hot_actions_discarded']}, events received {d['events_received']}, dropped {d['events_dropped']}, "
      f"engine caught up {lag:.2f}s after the run", file=sys.stderr)
print(1 if broker_ok else 0)
PY
)"
    [ "$pass" = 1 ]
}

{
    echo "{\"scenario\":\"machine\",\"date\":\"$STAMP\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\",\"kernel\":\"$(uname -r)\",\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"junction\":\"$("$JUNCTION_BIN" --version 2>/dev/null | head -1 | sed 's/"//g') (binary built $(date -r "$JUNCTION_BIN" '+%Y-%m-%d %H:%M'))\",\"step_s\":$STEP_S,\"payload\":$PAYLOAD,\"catchup_s\":$CATCHUP_S}"
} >>"$RESULTS"

for qos in $QOS_LIST; do
    rates="$([ "$qos" = 0 ] && echo "$RATES0" || echo "$RATES1")"
    if over_budget; then
        log "time budget ($BUDGET_S s) used up: skipping QoS $qos"
        echo "{\"scenario\":\"rules-skipped\",\"config\":\"all\",\"qos\":$qos}" >>"$RESULTS"
        continue
    fi
    active=""
    for cfg in $CONFIGS; do
        t0=$(date +%s)
        start_broker "$cfg" || continue
        PIDS[$cfg]="$BPID"
        ADDRS[$cfg]="$BADDR"
        HTTPS[$cfg]="$HADDR"
        BPID=""
        active="$active $cfg"
        log "$cfg: started in $(($(date +%s) - t0)) s, RSS $(awk '/^VmRSS:/ {print $2}' "/proc/${PIDS[$cfg]}/status") KiB"
    done
    log "== QoS $qos:$active (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for rate in ${rates//,/ }; do
        [ -n "$active" ] || break
        if over_budget; then
            log "time budget ($BUDGET_S s) used up: stopping the QoS $qos search at $rate ($active)"
            break
        fi
        next=""
        for cfg in $active; do
            use_broker "$cfg"
            if step "$cfg" "$qos" "$rate"; then
                next="$next $cfg"
            fi
            if ! kill -0 "$BPID" 2>/dev/null; then
                log "junction died during $cfg qos$qos"
                echo "{\"scenario\":\"crash\",\"config\":\"$cfg\",\"qos\":$qos}" >>"$RESULTS"
                next="${next/ $cfg/}"
            fi
            BPID=""
            sleep 1
        done
        active="$next"
    done
    stop_all
done
echo "{\"scenario\":\"end\",\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"elapsed_s\":$(($(date +%s) - T_START))}" >>"$RESULTS"

log "raw results: $RESULTS"
python3 - "$RESULTS" <<'PY' | tee "${RESULTS%.jsonl}.md"
# Markdown summary: one row per broker configuration and QoS.
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
machine = next((r for r in rows if r.get("scenario") == "machine"), {})
end = next((r for r in rows if r.get("scenario") == "end"), {})
steps = [r for r in rows if r.get("scenario") == "rules-step"]

def f(x):
    return "-" if x is None else f"{x:,.0f}"

def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"

def why_failed(st, rate):
    """Why the generator failed a step."""
    if not st:
        return "no generator result"
    w = []
    if st.get("lost"):
        w.append(f"{st['loss_pct']:.2f}% lost")
    if st.get("drain_lag_s", 0) > 0.25:
        w.append(f"delivered {f(st.get('delivery_rate'))}/s, backlog drained {st['drain_lag_s']:.2f}s late")
    if st.get("generator_kept_up") is False:
        w.append(f"only {f(st.get('send_rate'))}/s offered" + (" (PUBACK window)" if st.get("qos") == 1 else ""))
    if st.get("errors"):
        w.append(st["errors"][0])
    return ", ".join(w) or "failed"

print(f"Machine: {machine.get('nproc')} cores, {machine.get('cpu')}; {machine.get('junction')}")
print(f"Load average at start {machine.get('loadavg_start')}, at end {end.get('loadavg_end')}; "
      f"{machine.get('step_s')} s per step, payload {machine.get('payload')} B JSON, {end.get('elapsed_s')} s in all")
print()
print("| rules | QoS | max lossless rate | vs 0 rules | max rate, every message evaluated and republished | gen CPU / broker CPU / softirq / other procs there | broker µs/msg there | engine at that step: matched / passed / actions ok / discarded / events dropped | next step |")
print("|---|---|---|---|---|---|---|---|---|")
base = {}
for qos in (0, 1):
    for cfg in ("rules0", "rules1", "rules10k"):
        s = [r for r in steps if r["config"] == cfg and r["qos"] == qos]
        if not s:
            continue
        lossless = None
        evaluated = None
        eval_open = True
        fail = None
        for r in s:
            if not r["broker_ok"]:
                fail = r
                break
            lossless = r
            if eval_open and r["evaluated"] and r["engine_in_time"]:
                evaluated = r
            else:
                eval_open = False
        if cfg == "rules0":
            base[qos] = lossless["rate"] if lossless else None
        ratio = "-"
        if lossless and base.get(qos):
            ratio = f"{lossless['rate'] / base[qos]:.2f}"
        st = lossless["step"] if lossless else {}
        d = lossless["delta"] if lossless else {}
        cpu = (f"{pct(st.get('gen_cpu_share'))} / {pct(st.get('broker_cpu_share'))} / "
               f"{pct(st.get('host_irq_cores'))} / {pct(st.get('other_cpu_cores'))}") if st else "-"
        eng = "-" if cfg == "rules0" or not d else (
            f"{f(d['hot_matched'])} / {f(d['hot_passed'])} / {f(d['hot_actions_success'])} / "
            f"{f(d['hot_actions_discarded'])} / {f(d['events_dropped'])}")
        if cfg != "rules0" and d and d.get("others_matched"):
            eng += f"; other rules matched {f(d['others_matched'])}"
        nxt = "(all steps passed)"
        if fail:
            fs = fail["step"] or {}
            fd = fail["delta"]
            nxt = f"{f(fail['rate'])}: {why_failed(fs, fail['rate'])}"
            if cfg != "rules0":
                nxt += f"; events dropped {f(fd['events_dropped'])}"
        evcell = "-" if cfg == "rules0" else (f(evaluated["rate"]) if evaluated else "none")
        if cfg != "rules0" and lossless and evaluated is not lossless:
            first_bad = next((r for r in s if r["broker_ok"] and not (r["evaluated"] and r["engine_in_time"])), None)
            if first_bad:
                bd = first_bad["delta"]
                sent = (first_bad["step"] or {}).get("sent", 0)
                why = [f"{f(bd['events_dropped'])} events dropped"]
                if bd["hot_matched"] != sent:
                    why.append(f"{f(sent - bd['hot_matched'])} of {f(sent)} messages not evaluated")
                if bd["hot_actions_discarded"]:
                    why.append(f"{f(bd['hot_actions_discarded'])} republishes discarded (action queue full)")
                if bd["hot_actions_failed"]:
                    why.append(f"{f(bd['hot_actions_failed'])} republishes failed")
                if not first_bad["engine_in_time"]:
                    why.append(f"engine not done {first_bad['engine_catchup_s']:.1f}s after the run")
                evcell += f" ({f(first_bad['rate'])}: {', '.join(why)})"
        print(f"| {cfg} | {qos} | {f(lossless['rate']) if lossless else 'none'} | {ratio} | {evcell} | {cpu} | "
              f"{st.get('broker_cpu_us_per_msg', 0):.2f} | {eng} | {nxt} |")
print()

# Every step: broker result, engine result, CPU shares.
def cell(r):
    if r is None:
        return ""
    st = r["step"] or {}
    d = r["delta"]
    out = "ok" if r["broker_ok"] else f"**{why_failed(st, r['rate'])}**"
    if r["config"] != "rules0":
        bad = []
        if d["events_dropped"]:
            bad.append(f"{f(d['events_dropped'])} ev dropped")
        if d["hot_actions_discarded"]:
            bad.append(f"{f(d['hot_actions_discarded'])} repub discarded")
        if not r["engine_in_time"] and not bad:
            bad.append("engine late")
        out += "; " + (", ".join(bad) if bad else "all evaluated")
    out += (f" ({pct(st.get('broker_cpu_share'))} / {pct(st.get('other_cpu_cores'))}, "
            f"{st.get('broker_cpu_us_per_msg', 0):.1f} µs)")
    return out

print("Every step: broker result; engine result (rule configurations); (broker CPU / other processes' CPU, "
      "in % of one core; broker CPU µs per message).\n")
cfgs = [c for c in ("rules0", "rules1", "rules10k") if any(r["config"] == c for r in steps)]
print("| QoS | rate | " + " | ".join(cfgs) + " |")
print("|---|---|" + "---|" * len(cfgs))
for qos in (0, 1):
    rates = sorted({r["rate"] for r in steps if r["qos"] == qos})
    for rate in rates:
        by = {r["config"]: r for r in steps if r["qos"] == qos and r["rate"] == rate}
        print(f"| {qos} | {f(rate)} | " + " | ".join(cell(by.get(c)) for c in cfgs) + " |")
print()
for r in rows:
    if r.get("scenario") == "crash":
        print(f"**junction died during {r['config']} QoS {r['qos']}**")
    if r.get("scenario") == "rules-skipped":
        print(f"(skipped for time: {r['config']} QoS {r['qos']})")
PY
