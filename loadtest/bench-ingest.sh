#!/usr/bin/env bash
# Ingest benchmark: OTLP/gRPC -> Kafka, spans per CPU-second of the ingest process.
#
# Starts a tansu broker (memory storage) and a release `tailsift ingest` on free loopback ports,
# drives it with `tailsift-loadgen` (requests of ~100 spans across ~20 traces, unthrottled), and
# reads the ingest process's user+system CPU time from /proc before and after the run.
# Usage: bash loadtest/bench-ingest.sh [TOTAL_SPANS]   (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-2000000}"
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
WORK="$(mktemp -d)"
cleanup() { kill "${INGEST_PID:-}" "${BROKER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KPORT=$(port); GPORT=$(port); HPORT=$(port); APORT=$(port)

(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
  --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1) &
BROKER_PID=$!
./target/release/tailsift ingest --kafka-brokers "127.0.0.1:$KPORT" --topic bench-spans \
  --grpc-listen "127.0.0.1:$GPORT" --http-listen "127.0.0.1:$HPORT" --admin-listen "127.0.0.1:$APORT" \
  --set zipkin.enabled=false --set jaeger.enabled=false \
  --log-level warn >"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$APORT/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$APORT/readyz" >/dev/null || { echo "ingest not ready"; cat "$WORK/ingest.log"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
# Warm up (connections, topic metadata, allocator).
./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$GPORT" --rate 0 --total-spans 50000 --concurrency 8 --quiet >/dev/null
before=$(cpu_ticks "$INGEST_PID"); start=$(date +%s.%N)
./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$GPORT" --rate 0 --total-spans "$TOTAL" \
  --concurrency 16 --batch-spans 100 --seed 42 --quiet --json-summary >"$WORK/summary.json"
after=$(cpu_ticks "$INGEST_PID"); end=$(date +%s.%N)
python3 - "$WORK/summary.json" "$before" "$after" "$TCK" "$start" "$end" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
before, after, tck = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
wall = float(sys.argv[6]) - float(sys.argv[5])
cpu = (after - before) / tck
spans = s["spans_accepted"]
print(f"spans accepted          {spans}")
print(f"requests                {s['requests']} (~{spans / max(s['requests'], 1):.0f} spans each)")
print(f"ingest CPU (user+sys)   {cpu:.2f} s over {wall:.2f} s wall")
print(f"ingest spans/CPU-second {spans / cpu:,.0f}")
print(f"achieved rate           {spans / wall:,.0f} spans/s (bounded by the load generator and broker on this machine)")
PY
