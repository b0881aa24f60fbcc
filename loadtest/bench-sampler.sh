#!/usr/bin/env bash
# Sampler benchmarks, in one run:
#  1. throughput: spans per CPU-second of a release `tailsift sampler` doing Kafka -> buffer ->
#     decide -> export (to a Kafka "sampled" topic), over a pre-filled spans topic;
#  2. memory: resident memory per buffered span against the span's encoded size, with decisions
#     held back (long decision_wait) so every span stays buffered.
# Usage: bash loadtest/bench-sampler.sh [TOTAL_SPANS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-1000000}"
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
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

start_ingest() { # topic grpc admin
  ./target/release/tailsift ingest --kafka-brokers "$B" --topic "$1" --grpc-listen "127.0.0.1:$2" \
    --http-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$3" --set zipkin.enabled=false --set jaeger.enabled=false \
    --log-level warn >>"$WORK/ingest.log" 2>&1 & PIDS+=($!)
  wait_ready "$3"
}
start_sampler() { # topic admin decision_wait send_delay
  ./target/release/tailsift sampler --kafka-brokers "$B" --topic "$1" --group-id "g-$1" --export-kind kafka \
    --set export.kafka_topic="$1-sampled" --set kafka.decisions_topic="$1-decisions" --admin-listen "127.0.0.1:$2" \
    --set decision.decision_wait="$3" --set decision.send_delay="$4" --set kafka.resume_lookback_records=10000 --log-level warn >>"$WORK/sampler.log" 2>&1 & SAMPLER_PID=$!
  PIDS+=($SAMPLER_PID)
  wait_ready "$2"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

# 1. Throughput over a pre-filled topic.
G=$(port); A=$(port)
start_ingest bench-throughput "$G" "$A"
./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$G" --rate 0 --total-spans "$TOTAL" --concurrency 16 --seed 7 --quiet >/dev/null
SA=$(port)
start_sampler bench-throughput "$SA" 2s 200ms
before=$(cpu_ticks "$SAMPLER_PID"); start=$(date +%s.%N)
while :; do
  c=$(metric "$SA" tailsift_sampler_spans_consumed_total); c=${c:-0}
  [[ "${c%.*}" -ge "$TOTAL" ]] && break
  sleep 0.2
done
while :; do b=$(metric "$SA" tailsift_sampler_traces_buffered); [[ "${b:-1}" == "0" ]] && break; sleep 0.2; done
after=$(cpu_ticks "$SAMPLER_PID"); end=$(date +%s.%N)
kept=$(curl -s "http://127.0.0.1:$SA/metrics" | awk '/^tailsift_sampler_export_spans_total/ {s+=$2} END {print s+0}')

# 2. Memory per buffered span: everything stays buffered (decision_wait 10m).
G2=$(port); A2=$(port); SA2=$(port)
start_ingest bench-memory "$G2" "$A2"
start_sampler bench-memory "$SA2" 10m 10m
sleep 2
rss0=$(rss_kb "$SAMPLER_PID")
MEM_SPANS=$(( TOTAL / 2 ))
./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$G2" --rate 0 --total-spans "$MEM_SPANS" --concurrency 16 --seed 8 --quiet >/dev/null
while :; do c=$(metric "$SA2" tailsift_sampler_spans_consumed_total); [[ "${c%.*}" -ge "$MEM_SPANS" ]] && break; sleep 0.2; done
sleep 1
rss1=$(rss_kb "$SAMPLER_PID")
buffered=$(metric "$SA2" tailsift_sampler_buffered_bytes)

python3 - "$TOTAL" "$before" "$after" "$TCK" "$start" "$end" "$kept" "$rss0" "$rss1" "$buffered" "$MEM_SPANS" <<'PY'
import sys
total, before, after, tck = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
wall = float(sys.argv[6]) - float(sys.argv[5])
kept = float(sys.argv[7]); rss0, rss1 = int(sys.argv[8]) * 1024, int(sys.argv[9]) * 1024
buffered, mem_spans = float(sys.argv[10]), int(sys.argv[11])
cpu = (after - before) / tck
print(f"sampler throughput: {total} spans consumed, decided, {kept:.0f} kept spans exported")
print(f"  CPU (user+sys)            {cpu:.2f} s over {wall:.2f} s wall")
print(f"  spans per CPU-second      {total / cpu:,.0f}")
print(f"memory: {mem_spans} spans buffered, {buffered:,.0f} encoded bytes ({buffered / mem_spans:.0f} B/span)")
print(f"  RSS growth                {(rss1 - rss0) / 1e6:.1f} MB ({(rss1 - rss0) / mem_spans:.0f} B/span)")
print(f"  RSS per encoded byte      {(rss1 - rss0) / buffered:.2f}x")
PY
