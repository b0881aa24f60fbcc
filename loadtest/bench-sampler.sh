#!/usr/bin/env bash
# Sampler benchmarks, in one run, for each buffer mode (`memory.mode`) side by side:
#  1. throughput: spans per CPU-second of a release `tailsift sampler` doing Kafka -> buffer ->
#     decide -> (read back, in index mode) -> export (to a Kafka "sampled" topic), over a
#     pre-filled spans topic (the same records for every mode);
#  2. memory: resident memory per buffered span against the span's encoded size, with decisions
#     held back (long decision_wait) so every span stays buffered;
#  3. export delay: a policy keeping every trace (so in index mode every trace is read back, the
#     worst case), LAT_RATE spans/s for LAT_DURATION through ingest and sampler to the sink of
#     `tailsift-e2e-latency`: last span sent -> first arrival, p50/p99.
# Usage: bash loadtest/bench-sampler.sh [TOTAL_SPANS] [MODES]   (defaults 1000000, "memory index";
#        LAT_RATE (2000) and LAT_DURATION (30s) in the environment)
#
# Request shapes instead (SHAPES set, e.g. SHAPES="sdk mid tiny": only this phase runs, not 1-3):
# the shapes of loadtest/bench-matrix.sh, for the load generator sending to ingest:
#   sdk  --batch-spans 512 --concurrency 32;  mid  --batch-spans 100 --concurrency 32;
#   tiny --batch-spans 3 --concurrency 32.
# No gzip shapes: ingest decompresses, the sampler reads the same records either way.
# For each shape and each mode in MODES:
#   100%: saturation: a topic per shape pre-filled through ingest with that shape (TOTAL_SPANS
#         spans; tiny: TINY_TOTAL, default TOTAL_SPANS / 5, as ingest takes tiny requests slowly),
#         consumed by a sampler as in phase 1: spans per CPU-second (CPU until every span is
#         decided and the kept ones exported) and the wall rate of consumption (first span
#         consumed -> last). The fill also tells what ingest takes for that shape (spans / wall).
#   SHAPE_LOADS (default "50 25") percent of min(sampler wall rate, ingest fill rate): a live
#         stream (ingest + load generator --rate R) into a fresh topic with the sampler running
#         (same flags as at 100%: default policy, decision_wait 2s, send_delay 200ms); after
#         SHAPE_WARMUP (5s), over SHAPE_DURATION (30s): the sampler's user+system CPU from /proc
#         and the spans it consumed (tailsift_sampler_spans_consumed_total delta): spans per
#         CPU-second, achieved rate, and CPU per span relative to the 100% row.
# Prints a table per shape x mode x load and writes JSON lines to OUT
# (default /tmp/tailsift-sampler-shapes.jsonl).
#
# TAILSIFT_BIN_DIR: take tailsift, tailsift-loadgen and tailsift-e2e-latency from this directory
# and skip the cargo builds (default: ./target/release, built first).
# SAMPLER_EXTRA="--set KEY=VALUE ...": more settings for every sampler the bench starts.
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-1000000}"
MODES="${2:-memory index}"
LAT_RATE="${LAT_RATE:-2000}"
LAT_DURATION="${LAT_DURATION:-30s}"
SHAPES="${SHAPES:-}"
SHAPE_LOADS="${SHAPE_LOADS:-50 25}"
SHAPE_WARMUP="${SHAPE_WARMUP:-5}"
SHAPE_DURATION="${SHAPE_DURATION:-30}"
TINY_TOTAL="${TINY_TOTAL:-$(( TOTAL / 5 ))}"
OUT="${OUT:-/tmp/tailsift-sampler-shapes.jsonl}"
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
if [[ -n ${TAILSIFT_BIN_DIR:-} ]]; then
  BIN="$TAILSIFT_BIN_DIR"
else
  BIN=./target/release
  cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
  # Built separately: one build of both would unify features and rebuild `tailsift`.
  cargo build --release --locked -p tailsift-bench-tools >&2
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1==n {print $2}' | head -1; }
wait_ready() { for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1"; for f in "$WORK"/*.log; do echo "== $f"; tail -n 5 "$f"; done; exit 1; }
KPORT=$(port)
(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
  --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1) & PIDS+=($!)
B="127.0.0.1:$KPORT"

cat >"$WORK/keep-all.yaml" <<'YAML'
policies:
  - name: everything
    always: {}
YAML

start_ingest() { # topic grpc admin
  "$BIN"/tailsift ingest --kafka-brokers "$B" --topic "$1" --grpc-listen "127.0.0.1:$2" \
    --http-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$3" --set zipkin.enabled=false --set jaeger.enabled=false \
    --log-level warn >>"$WORK/ingest.log" 2>&1 & INGEST_PID=$!
  PIDS+=("$INGEST_PID")
  wait_ready "$3"
}
start_sampler() { # topic admin decision_wait send_delay mode
  "$BIN"/tailsift sampler --kafka-brokers "$B" --topic "$1" --group-id "g-$1-$5" --export-kind kafka \
    --set export.kafka_topic="$1-$5-sampled" --set kafka.decisions_topic="$1-$5-decisions" --admin-listen "127.0.0.1:$2" \
    --set decision.decision_wait="$3" --set decision.send_delay="$4" --set kafka.resume_lookback_records=10000 \
    --set memory.mode="$5" ${SAMPLER_EXTRA:-} --log-level warn >>"$WORK/sampler.log" 2>&1 & SAMPLER_PID=$!
  PIDS+=("$SAMPLER_PID")
  wait_ready "$2"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

# Shapes (SHAPES set): saturation and below, per request shape and mode (see the header); only
# this phase runs.
shape_args() { # shape -> load generator flags (bench-matrix.sh's shapes, without gzip)
  case $1 in
    sdk) echo "--batch-spans 512 --concurrency 32" ;;
    mid) echo "--batch-spans 100 --concurrency 32" ;;
    tiny) echo "--batch-spans 3 --concurrency 32" ;;
    *) echo "unknown shape $1 (sdk, mid, tiny)" >&2; exit 2 ;;
  esac
}
now() { date +%s.%N; }
count() { local v; v=$(metric "$1" "$2"); v=${v%.*}; echo "${v:-0}"; }
exported() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^tailsift_sampler_export_spans_total/ {s+=$2} END {print s+0}'; }
summary() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])' "$1" "$2"; }
row() { # key=value ... -> one JSON line appended to $OUT (numbers where they parse)
  python3 - "$@" >>"$OUT" <<'PY'
import json, sys
r = {}
for kv in sys.argv[1:]:
    k, v = kv.split("=", 1)
    try:
        r[k] = int(v)
    except ValueError:
        try:
            r[k] = float(v)
        except ValueError:
            r[k] = v
print(json.dumps(r))
PY
  tail -n 1 "$OUT" >&2
}

# 100%: a sampler over the pre-filled topic. Sets SAT_RATE (spans/s consumed) and SAT_SPC.
saturate() { # shape mode topic spans fill_rate
  local shape=$1 mode=$2 topic=$3 n=$4 fill=$5 SA c t s0 tf="" cf=0 cpu_f=0 cpu_all t_all before start k1 k2 after end records
  SA=$(port)
  start_sampler "$topic" "$SA" 2s 200ms "$mode"
  before=$(cpu_ticks "$SAMPLER_PID"); start=$(now); s0=$SECONDS
  while :; do
    c=$(count "$SA" tailsift_sampler_spans_consumed_total); t=$(now)
    if [[ -z $tf && $c -gt 0 ]]; then tf=$t; cf=$c; cpu_f=$(cpu_ticks "$SAMPLER_PID"); fi
    [[ $c -ge $n ]] && break
    (( SECONDS - s0 < 600 )) || { echo "sampler: $c of $n spans after 600 s" >&2; exit 1; }
    sleep 0.1
  done
  t_all=$t; cpu_all=$(cpu_ticks "$SAMPLER_PID")
  while :; do b=$(metric "$SA" tailsift_sampler_traces_buffered); [[ "${b:-1}" == "0" ]] && break; sleep 0.2; done
  while :; do k1=$(exported "$SA"); sleep 1; k2=$(exported "$SA"); [[ "$k1" == "$k2" ]] && break; done
  after=$(cpu_ticks "$SAMPLER_PID"); end=$(now)
  records=$(count "$SA" tailsift_sampler_records_consumed_total)
  kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true
  read -r SAT_RATE SAT_SPC < <(python3 -c "
tck = $TCK; cpu = ($after - $before) / tck
# From the first poll that saw spans; if that was already the last, from the sampler's start.
rate = ($n - $cf) / ($t_all - $tf) if $cf < 0.9 * $n else $n / ($t_all - $start)
print(round(rate), round($n / cpu) if cpu else 0)")
  row shape="$shape" mode="$mode" load=100 target_rate=0 spans_per_s="$SAT_RATE" spans="$n" records="$records" \
    cpu_s="$(python3 -c "print(($after - $before) / $TCK)")" spans_per_cpu_s="$SAT_SPC" cpu_per_span_vs_100=1 \
    cores="$(python3 -c "print(round(($cpu_all - $cpu_f) / $TCK / ($t_all - $tf), 3) if $t_all > $tf else 0)")" \
    wall_s="$(python3 -c "print(round($end - $start, 2))")" kept_spans="$k2" ingest_fill_spans_per_s="$fill"
}

# Below saturation: a live stream at RATE through ingest with a sampler running.
live() { # shape mode load rate sat_spc
  local shape=$1 mode=$2 load=$3 rate=$4 sat_spc=$5 topic="live-$1-$2-$3" G A SA lg c0 c1 r0 r1 cpu0 cpu1 i0 i1 t0 t1
  (( rate > 0 )) || { echo "$topic: no rate to send at (saturated rate unknown)" >&2; return 0; }
  G=$(port); A=$(port); SA=$(port)
  start_ingest "$topic" "$G" "$A"
  start_sampler "$topic" "$SA" 2s 200ms "$mode"
  # shellcheck disable=SC2046
  "$BIN"/tailsift-loadgen --endpoint "http://127.0.0.1:$G" --rate "$rate" --duration "$((SHAPE_WARMUP + SHAPE_DURATION + 2))s" \
    $(shape_args "$shape") --seed 42 --quiet --json-summary >"$WORK/$topic.summary" & lg=$!
  PIDS+=("$lg")
  sleep "$SHAPE_WARMUP"
  cpu0=$(cpu_ticks "$SAMPLER_PID"); i0=$(cpu_ticks "$INGEST_PID"); t0=$(now)
  c0=$(count "$SA" tailsift_sampler_spans_consumed_total); r0=$(count "$SA" tailsift_sampler_records_consumed_total)
  sleep "$SHAPE_DURATION"
  cpu1=$(cpu_ticks "$SAMPLER_PID"); i1=$(cpu_ticks "$INGEST_PID"); t1=$(now)
  c1=$(count "$SA" tailsift_sampler_spans_consumed_total); r1=$(count "$SA" tailsift_sampler_records_consumed_total)
  wait "$lg" || echo "load generator exited with an error ($topic)" >&2
  kill "$SAMPLER_PID" "$INGEST_PID"; wait "$SAMPLER_PID" "$INGEST_PID" 2>/dev/null || true
  local cpu spc
  cpu=$(python3 -c "print(($cpu1 - $cpu0) / $TCK)")
  spc=$(python3 -c "print(round(($c1 - $c0) / $cpu) if $cpu > 0 else 0)")
  row shape="$shape" mode="$mode" load="$load" target_rate="$rate" \
    spans_per_s="$(python3 -c "print(round(($c1 - $c0) / ($t1 - $t0)))")" spans="$((c1 - c0))" records="$((r1 - r0))" \
    cpu_s="$cpu" spans_per_cpu_s="$spc" cpu_per_span_vs_100="$(python3 -c "print(round($sat_spc / $spc, 3) if $spc else 0)")" \
    cores="$(python3 -c "print(round($cpu / ($t1 - $t0), 3))")" wall_s="$(python3 -c "print(round($t1 - $t0, 2))")" \
    ingest_cpu_s="$(python3 -c "print(($i1 - $i0) / $TCK)")" loadgen_spans_per_s="$(summary "$WORK/$topic.summary" achieved_spans_per_sec)" \
    loadgen_failed="$(summary "$WORK/$topic.summary" spans_failed)"
}

if [[ -n $SHAPES ]]; then
  for shape in $SHAPES; do shape_args "$shape" >/dev/null; done
  : >"$OUT"
  for shape in $SHAPES; do
    n=$TOTAL; [[ $shape == tiny ]] && n=$TINY_TOTAL
    topic="shape-$shape"; G=$(port); A=$(port)
    start_ingest "$topic" "$G" "$A"
    t0=$(now)
    # shellcheck disable=SC2046
    "$BIN"/tailsift-loadgen --endpoint "http://127.0.0.1:$G" --rate 0 --total-spans "$n" $(shape_args "$shape") \
      --seed 7 --quiet --json-summary >"$WORK/$topic.summary"
    t1=$(now)
    kill "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true
    n=$(summary "$WORK/$topic.summary" spans_accepted)
    fill=$(python3 -c "print(round($n / ($t1 - $t0)))")
    echo "$shape: $n spans through ingest at $fill spans/s" >&2
    for MODE in $MODES; do
      saturate "$shape" "$MODE" "$topic" "$n" "$fill"
      for load in $SHAPE_LOADS; do
        live "$shape" "$MODE" "$load" "$(python3 -c "print(round(min($SAT_RATE, $fill) * $load / 100))")" "$SAT_SPC"
      done
    done
  done
  python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| shape | mode | load | target spans/s | spans/s | spans/record | sampler CPU cores | spans/CPU-s | CPU/span vs 100% |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    target = "as fast as it can" if r["load"] == 100 else f"{r['target_rate']:,}"
    spr = r["spans"] / r["records"] if r["records"] else float("nan")
    print(f"| {r['shape']} | {r['mode']} | {r['load']}% | {target} | {r['spans_per_s']:,} | {spr:.1f} | {r['cores']:.2f} "
          f"| {r['spans_per_cpu_s']:,} | {r['cpu_per_span_vs_100']:.2f}x |")
print()
for r in rows:
    if r["load"] == 100:
        print(f"{r['shape']} {r['mode']}: {r['spans']:,} spans pre-filled, ingest took {r['ingest_fill_spans_per_s']:,} spans/s; "
              f"sampler consumed at {r['spans_per_s']:,} spans/s, {r['cpu_s']:.2f} CPU s to decide all and export {r['kept_spans']:,} kept spans")
# CPU cores = fixed + rate / marginal, from the live rows of each shape and mode (two points: rough).
live = {}
for r in rows:
    if r["load"] != 100:
        live.setdefault((r["shape"], r["mode"]), []).append(r)
for (shape, mode), rs in live.items():
    if len(rs) >= 2:
        a, b = sorted(rs, key=lambda r: r["spans_per_s"])[:2]
        if b["spans_per_s"] > a["spans_per_s"]:
            slope = (b["cores"] - a["cores"]) / (b["spans_per_s"] - a["spans_per_s"])
            fixed = a["cores"] - slope * a["spans_per_s"]
            marg = f"{1 / slope:,.0f}" if slope > 0 else "n/a"
            print(f"{shape} {mode}: from the live rows, CPU cores ~ {fixed:.3f} + spans/s / {marg}")
PY
  exit 0
fi

# 1. Throughput over a pre-filled topic (filled once, read by each mode's sampler in turn).
G=$(port); A=$(port)
start_ingest bench-throughput "$G" "$A"
"$BIN"/tailsift-loadgen --endpoint "http://127.0.0.1:$G" --rate 0 --total-spans "$TOTAL" --concurrency 16 --seed 7 --quiet >/dev/null
RESULTS=()
for MODE in $MODES; do
  SA=$(port)
  start_sampler bench-throughput "$SA" 2s 200ms "$MODE"
  before=$(cpu_ticks "$SAMPLER_PID"); start=$(date +%s.%N)
  while :; do
    c=$(metric "$SA" tailsift_sampler_spans_consumed_total); c=${c:-0}
    [[ "${c%.*}" -ge "$TOTAL" ]] && break
    sleep 0.2
  done
  while :; do b=$(metric "$SA" tailsift_sampler_traces_buffered); [[ "${b:-1}" == "0" ]] && break; sleep 0.2; done
  # Index mode: kept traces are exported after their read-back; wait for the exports too.
  # (Stable for 3 s: a read-back pass can pause exports for over a second.)
  exported() { curl -s "http://127.0.0.1:$SA/metrics" | awk '/^tailsift_sampler_export_spans_total/ {s+=$2} END {print s+0}'; }
  while :; do
    k1=$(exported); sleep 1.5; k2=$(exported); sleep 1.5; k3=$(exported)
    [[ "$k1" == "$k2" && "$k2" == "$k3" ]] && break
  done
  kept_traces=$(curl -s "http://127.0.0.1:$SA/metrics" | awk '/^tailsift_sampler_decisions_total/ && /kept/ {s+=$2} END {print s+0}')
  echo "$MODE: read-back records by outcome, late spans:" >&2
  curl -s "http://127.0.0.1:$SA/metrics" | grep -E '^tailsift_sampler_(read_back_records_total|late_spans_total|duplicate_spans_total)' >&2 || true
  after=$(cpu_ticks "$SAMPLER_PID"); end=$(date +%s.%N)
  kept=$k2
  kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true

  # 2. Memory per buffered span: everything stays buffered (decision_wait 10m); a topic per
  # mode, the same spans (seed) sent to each.
  G3=$(port); A3=$(port); SA2=$(port)
  start_ingest "bench-memory-$MODE" "$G3" "$A3"
  start_sampler "bench-memory-$MODE" "$SA2" 10m 10m "$MODE"
  MEM_SPANS=$(( TOTAL / 2 ))
  sleep 2
  rss0=$(rss_kb "$SAMPLER_PID")
  # RSS also half-way, so the report can tell the marginal cost of a span from fixed growth
  # (consumer fetch buffers, allocator arenas touched once traffic starts).
  "$BIN"/tailsift-loadgen --endpoint "http://127.0.0.1:$G3" --rate 0 --total-spans "$MEM_SPANS" --concurrency 16 --seed 8 --quiet >/dev/null &
  LOADGEN_PID=$!
  while :; do c=$(metric "$SA2" tailsift_sampler_spans_consumed_total); [[ "${c%.*}" -ge $(( MEM_SPANS / 2 )) ]] && break; sleep 0.05; done
  rss_half=$(rss_kb "$SAMPLER_PID"); c=$(metric "$SA2" tailsift_sampler_spans_consumed_total); c_half=${c%.*}; c_half=${c_half:-0}
  wait "$LOADGEN_PID"
  while :; do c=$(metric "$SA2" tailsift_sampler_spans_consumed_total); [[ "${c%.*}" -ge "$MEM_SPANS" ]] && break; sleep 0.2; done
  sleep 1
  rss1=$(rss_kb "$SAMPLER_PID")
  held=$(metric "$SA2" tailsift_sampler_buffered_bytes)
  traces=$(metric "$SA2" tailsift_sampler_traces_buffered)
  encoded=$(curl -s "http://127.0.0.1:$A3/metrics" | awk '/^tailsift_ingest_produced_bytes_total/ {s+=$2} END {print s+0}')
  kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true

  # 3. Export delay, every trace kept.
  G4=$(port); A4=$(port); SA4=$(port); SINK=$(port)
  start_ingest "bench-latency-$MODE" "$G4" "$A4"
  "$BIN"/tailsift sampler --kafka-brokers "$B" --topic "bench-latency-$MODE" --group-id "g-latency-$MODE" \
    --export-kind otlp_http --export-endpoint "http://127.0.0.1:$SINK" --admin-listen "127.0.0.1:$SA4" \
    --set policy.file="$WORK/keep-all.yaml" --set kafka.decisions_topic="bench-latency-$MODE-decisions" \
    --set kafka.resume_lookback_records=10000 --set memory.mode="$MODE" \
    --log-level warn >>"$WORK/sampler.log" 2>&1 & SAMPLER_PID=$!; PIDS+=("$SAMPLER_PID")
  wait_ready "$SA4"
  "$BIN"/tailsift-e2e-latency --endpoint "http://127.0.0.1:$G4" --sink-listen "127.0.0.1:$SINK" \
    --rate "$LAT_RATE" --duration "$LAT_DURATION" --warmup 5s --settle 8s >"$WORK/e2e-$MODE.json"
  kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true
  RESULTS+=("$MODE $before $after $start $end $kept $rss0 $rss1 $held $MEM_SPANS $encoded $WORK/e2e-$MODE.json $traces $rss_half $c_half $kept_traces")
done

python3 - "$TOTAL" "$TCK" "${RESULTS[@]}" <<'PY'
import json, sys
total, tck = int(sys.argv[1]), int(sys.argv[2])
rows = []
for r in sys.argv[3:]:
    mode, before, after, start, end, kept, rss0, rss1, held, mem_spans, encoded, e2e, traces, rss_half, c_half, kept_traces = r.split()
    print(f"{mode}: {int(kept_traces):,} traces kept, {float(kept):,.0f} spans exported")
    lat = json.load(open(e2e))["latency"]
    cpu = (int(after) - int(before)) / tck
    wall = float(end) - float(start)
    growth = (int(rss1) - int(rss0)) * 1024
    # Marginal: RSS added by the second half of the spans, per span of it.
    marginal = (int(rss1) - int(rss_half)) * 1024 / max(1, int(mem_spans) - int(c_half))
    rows.append((mode, cpu, wall, float(kept), growth, float(held), int(mem_spans), float(encoded), lat, marginal))
print(f"sampler, {total} spans consumed, decided and kept ones exported; then {rows[0][6]} spans held buffered ({float(traces):,.0f} traces)")
print(f"{'mode':8} {'CPU s':>7} {'spans/CPU-s':>12} {'kept spans':>11} {'RSS growth':>11} {'B/buffered span':>16} {'marginal B/span':>16} {'held B/span':>12} {'export delay p50/p99 ms':>24}")
for mode, cpu, wall, kept, growth, held, mem_spans, encoded, lat, marginal in rows:
    print(f"{mode:8} {cpu:7.2f} {total / cpu:12,.0f} {kept:11,.0f} {growth / 1e6:9.1f}MB {growth / mem_spans:16.0f} {marginal:16.0f} {held / mem_spans:12.0f} {lat['p50_ms']:11.0f} / {lat['p99_ms']:.0f} (n={lat['count']})")
base = rows[0]
for row in rows[1:]:
    print(f"{row[0]} vs {base[0]}: CPU per span {row[1] / base[1]:.2f}x, memory per buffered span {row[4] / base[4]:.3f}x, "
          f"export delay p99 {row[8]['p99_ms'] - base[8]['p99_ms']:+.0f} ms")
if rows[0][7] > 0:
    print(f"encoded bytes per span written by ingest (memory phase): {rows[0][7] / rows[0][6]:.0f}")
PY
