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
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-1000000}"
MODES="${2:-memory index}"
LAT_RATE="${LAT_RATE:-2000}"
LAT_DURATION="${LAT_DURATION:-30s}"
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
# Built separately: one build of both would unify features and rebuild `tailsift`.
cargo build --release --locked -p tailsift-bench-tools >&2
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
  ./target/release/tailsift ingest --kafka-brokers "$B" --topic "$1" --grpc-listen "127.0.0.1:$2" \
    --http-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$3" --set zipkin.enabled=false --set jaeger.enabled=false \
    --log-level warn >>"$WORK/ingest.log" 2>&1 & PIDS+=($!)
  wait_ready "$3"
}
start_sampler() { # topic admin decision_wait send_delay mode
  ./target/release/tailsift sampler --kafka-brokers "$B" --topic "$1" --group-id "g-$1-$5" --export-kind kafka \
    --set export.kafka_topic="$1-$5-sampled" --set kafka.decisions_topic="$1-$5-decisions" --admin-listen "127.0.0.1:$2" \
    --set decision.decision_wait="$3" --set decision.send_delay="$4" --set kafka.resume_lookback_records=10000 \
    --set memory.mode="$5" --log-level warn >>"$WORK/sampler.log" 2>&1 & SAMPLER_PID=$!
  PIDS+=($SAMPLER_PID)
  wait_ready "$2"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

# 1. Throughput over a pre-filled topic (filled once, read by each mode's sampler in turn).
G=$(port); A=$(port)
start_ingest bench-throughput "$G" "$A"
./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$G" --rate 0 --total-spans "$TOTAL" --concurrency 16 --seed 7 --quiet >/dev/null
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
  while :; do
    k1=$(curl -s "http://127.0.0.1:$SA/metrics" | awk '/^tailsift_sampler_export_spans_total/ {s+=$2} END {print s+0}')
    sleep 1
    k2=$(curl -s "http://127.0.0.1:$SA/metrics" | awk '/^tailsift_sampler_export_spans_total/ {s+=$2} END {print s+0}')
    [[ "$k1" == "$k2" ]] && break
  done
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
  ./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$G3" --rate 0 --total-spans "$MEM_SPANS" --concurrency 16 --seed 8 --quiet >/dev/null
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
  ./target/release/tailsift sampler --kafka-brokers "$B" --topic "bench-latency-$MODE" --group-id "g-latency-$MODE" \
    --export-kind otlp_http --export-endpoint "http://127.0.0.1:$SINK" --admin-listen "127.0.0.1:$SA4" \
    --set policy.file="$WORK/keep-all.yaml" --set kafka.decisions_topic="bench-latency-$MODE-decisions" \
    --set kafka.resume_lookback_records=10000 --set memory.mode="$MODE" \
    --log-level warn >>"$WORK/sampler.log" 2>&1 & SAMPLER_PID=$!; PIDS+=($SAMPLER_PID)
  wait_ready "$SA4"
  ./target/release/tailsift-e2e-latency --endpoint "http://127.0.0.1:$G4" --sink-listen "127.0.0.1:$SINK" \
    --rate "$LAT_RATE" --duration "$LAT_DURATION" --warmup 5s --settle 8s >"$WORK/e2e-$MODE.json"
  kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true
  RESULTS+=("$MODE $before $after $start $end $kept $rss0 $rss1 $held $MEM_SPANS $encoded $WORK/e2e-$MODE.json $traces")
done

python3 - "$TOTAL" "$TCK" "${RESULTS[@]}" <<'PY'
import json, sys
total, tck = int(sys.argv[1]), int(sys.argv[2])
rows = []
for r in sys.argv[3:]:
    mode, before, after, start, end, kept, rss0, rss1, held, mem_spans, encoded, e2e, traces = r.split()
    lat = json.load(open(e2e))["latency"]
    cpu = (int(after) - int(before)) / tck
    wall = float(end) - float(start)
    growth = (int(rss1) - int(rss0)) * 1024
    rows.append((mode, cpu, wall, float(kept), growth, float(held), int(mem_spans), float(encoded), lat))
print(f"sampler, {total} spans consumed, decided and kept ones exported; then {rows[0][6]} spans held buffered ({float(traces):,.0f} traces)")
print(f"{'mode':8} {'CPU s':>7} {'spans/CPU-s':>12} {'kept spans':>11} {'RSS growth':>11} {'B/buffered span':>16} {'held B/span':>12} {'export delay p50/p99 ms':>24}")
for mode, cpu, wall, kept, growth, held, mem_spans, encoded, lat in rows:
    print(f"{mode:8} {cpu:7.2f} {total / cpu:12,.0f} {kept:11,.0f} {growth / 1e6:9.1f}MB {growth / mem_spans:16.0f} {held / mem_spans:12.0f} {lat['p50_ms']:11.0f} / {lat['p99_ms']:.0f} (n={lat['count']})")
base = rows[0]
for row in rows[1:]:
    print(f"{row[0]} vs {base[0]}: CPU per span {row[1] / base[1]:.2f}x, memory per buffered span {row[4] / base[4]:.3f}x, "
          f"export delay p99 {row[8]['p99_ms'] - base[8]['p99_ms']:+.0f} ms")
if rows[0][7] > 0:
    print(f"encoded bytes per span written by ingest (memory phase): {rows[0][7] / rows[0][6]:.0f}")
PY
