#!/usr/bin/env bash
# Ingest cost curves: CPU per span of one release `tailsift ingest` (OTLP/gRPC in, a 12-partition
# topic of one tansu broker out, the default producer settings) against
#   1. spans per request (1 -> 2,000; each trace spread over requests, as SDKs and proxies send),
#      at saturation and at a fixed 20,000 spans/s, 256 requests in flight (so that small requests
#      are not capped by the acknowledgement latency: with acks after Kafka and a 10 ms linger a
#      client with N in flight sends at most ~N / 13 ms requests per second);
#   2. traces per request (100-span requests; median spans per trace 1 -> 100, so ~1 to ~50
#      traces, i.e. records, per request), at 20,000 spans/s, 32 in flight.
# Every point: a fresh ingest node and topic, a warm-up, SECONDS of load, every span counted in the
# topic (`tailsift-topic-count`), the node's user+system CPU from /proc. Writes
# RESULTS_DIR/ingest_request_size.csv and ingest_traces_per_request.csv and the PNGs
# docs/scaling/ingest_request_size.png and ingest_traces_per_request.png (matplotlib in a cached
# venv, as loadtest/curves.sh). docs/scaling.md reports a run.
# Usage: bash loadtest/ingest-curves.sh [SECONDS] [RESULTS_DIR]   (defaults 8, a new temp dir)
# Takes ~8 minutes after the build on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-8}"
RESULTS="${2:-$(mktemp -d)}"
mkdir -p "$RESULTS"
source loadtest/collectors.sh
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
if [[ -z "${TAILSIFT_BIN:-}" ]]; then
  nice cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
  nice cargo build --release --locked -p tailsift-bench-tools >&2
fi
start_broker
echo "host: $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)" | tee "$RESULTS/host.txt"

N=0
# point CSV LABEL RATE LOADGEN-FLAGS...: one measured point, appended to CSV.
point() {
  local csv=$1 label=$2 rate=$3; shift 3
  N=$((N + 1))
  local topic="curve-$N"
  start_collector tailsift "$topic"
  ./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$GRPC" --rate 0 --total-spans 5000 "$@" \
    --seed 1 --quiet --json-summary >/dev/null
  ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --expect-spans 5000 --timeout 60 >/dev/null
  local c0 before after
  c0=$(./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --timeout 10)
  before=$(cpu_ticks "$PID")
  ./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$GRPC" --rate "$rate" --duration "${SECS}s" "$@" \
    --seed 42 --quiet --json-summary >"$WORK/$topic.summary"
  after=$(cpu_ticks "$PID")
  local accepted
  accepted=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["spans_accepted"])' "$WORK/$topic.summary")
  ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --expect-spans $((5000 + accepted)) --timeout 60 \
    >"$WORK/$topic.count" 2>/dev/null ||
    ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --timeout 10 >"$WORK/$topic.count"
  stop_collector
  python3 - "$csv" "$label" "$rate" "$before" "$after" "$TCK" "$WORK/$topic.summary" "$c0" "$WORK/$topic.count" <<'PY'
import csv, json, os, sys
path, label, rate, before, after, tck = sys.argv[1:7]
s = json.loads(open(sys.argv[7]).read().strip().splitlines()[-1])
c0 = json.loads(sys.argv[8].strip().splitlines()[-1])
c1 = json.loads(open(sys.argv[9]).read().strip().splitlines()[-1])
cpu = (int(after) - int(before)) / int(tck)
spans, records = c1["spans"] - c0["spans"], c1["records"] - c0["records"]
row = {"label": label, "rate": float(rate), "achieved_spans_per_s": round(s["achieved_spans_per_sec"]),
       "spans_accepted": s["spans_accepted"], "spans_in_topic": spans, "requests": s["requests"],
       "spans_per_request": round(s["spans_sent"] / max(s["requests"], 1), 2),
       "records_per_request": round(records / max(s["requests"], 1), 2), "cpu_s": cpu,
       "spans_per_cpu_s": round(spans / cpu) if cpu else 0, "cpu_us_per_span": round(cpu * 1e6 / spans, 3) if spans else 0,
       "cpu_us_per_request": round(cpu * 1e6 / max(s["requests"], 1), 1), "ack_p99_ms": s.get("ack_latency_p99_ms", 0)}
new = not os.path.exists(path)
with open(path, "a", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(row))
    if new:
        w.writeheader()
    w.writerow(row)
print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
if spans != s["spans_accepted"]:
    print(f"WARNING: {s['spans_accepted']} spans acknowledged, {spans} in the topic", file=sys.stderr)
PY
}

SIZE="$RESULTS/ingest_request_size.csv"; TPR="$RESULTS/ingest_traces_per_request.csv"
rm -f "$SIZE" "$TPR"
for bs in 1 3 10 30 100 300 1000 2000; do
  point "$SIZE" saturation 0 --batch-spans "$bs" --concurrency 256
  point "$SIZE" 20k 20000 --batch-spans "$bs" --concurrency 256
done
for m in 1 2 4 8 16 32 100; do
  point "$TPR" "median-$m" 20000 --batch-spans 100 --concurrency 32 --median-spans "$m" --min-spans 1 \
    --max-spans $((m * 4 > 300 ? m * 4 : 300)) --large-trace-rate 0
done

mkdir -p docs/scaling
bash loadtest/plot.sh loadtest/plot_load_curves.py "$RESULTS" docs/scaling
echo "CSVs in $RESULTS, plots in docs/scaling/"
