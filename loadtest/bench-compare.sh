#!/usr/bin/env bash
# Ingest side by side: Tailsift ingest vs Rotel (a Rust OpenTelemetry collector), both doing
# OTLP/gRPC -> Kafka on the same tansu broker with the same load, in one run.
#
# Installs Rotel from PyPI (the `rotel` wheel ships the `rotel-agent` binary) into a cached venv
# (~/.cache/tailsift/venvs/rotel, pip only), starts one tansu broker (memory storage), then runs
# ROUNDS rounds of: Tailsift ingest, then Rotel, each on a fresh 12-partition topic, each driven by
# `tailsift-loadgen` with the same seed and TOTAL_SPANS spans at saturation (--rate 0). For each run
# it reads the collector's user+system CPU time from /proc/<pid>/stat after a warm-up and again
# once every span is in Kafka, and counts the spans actually in the topic with
# `tailsift-topic-count` (decoding every record), so an acknowledged-but-lost span would show.
# Prints spans per CPU-second of each and the ratio. Settings and why they are fair:
# docs/benchmarks.md.
#
# Usage: bash loadtest/bench-compare.sh [TOTAL_SPANS] [ROUNDS]   (defaults 1000000 2)
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-1000000}"
ROUNDS="${2:-2}"
WARMUP=50000
source loadtest/collectors.sh
build_and_install
start_broker
loadgen() { # endpoint spans seed
  ./target/release/tailsift-loadgen --endpoint "$1" --rate 0 --total-spans "$2" --concurrency 16 --batch-spans 100 \
    --seed "$3" --quiet --json-summary
}

# One measured run: $1 = tailsift|rotel, $2 = round. Appends a JSON line to $WORK/results.
run_one() {
  local who=$1 round=$2 topic="cmp-$1-$2" grpc
  start_collector "$who" "$topic"
  grpc=$GRPC
  loadgen "http://127.0.0.1:$grpc" "$WARMUP" 1 >/dev/null
  ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --expect-spans "$WARMUP" --timeout 120 >/dev/null
  local before after start end
  before=$(cpu_ticks "$PID"); start=$(date +%s.%N)
  loadgen "http://127.0.0.1:$grpc" "$TOTAL" 42 >"$WORK/$topic.summary"
  # Rotel acknowledges before writing to Kafka: wait until every span is in the topic.
  ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --expect-spans $((WARMUP + TOTAL)) \
    --timeout 300 >"$WORK/$topic.count"
  after=$(cpu_ticks "$PID"); end=$(date +%s.%N)
  local hwm; hwm=$(hwm_kb "$PID")
  stop_collector
  python3 - "$who" "$round" "$before" "$after" "$TCK" "$start" "$end" "$hwm" "$WARMUP" \
    "$WORK/$topic.summary" "$WORK/$topic.count" >>"$WORK/results" <<'PY'
import json, sys
who, rnd, before, after, tck, start, end, hwm, warm = sys.argv[1:10]
s = json.loads(open(sys.argv[10]).read().strip().splitlines()[-1])
c = json.loads(open(sys.argv[11]).read().strip().splitlines()[-1])
print(json.dumps({"who": who, "round": int(rnd), "cpu_s": (int(after) - int(before)) / int(tck),
  "wall_s": float(end) - float(start), "accepted": s["spans_accepted"], "failed": s["spans_failed"],
  "in_topic": c["spans"] - int(warm), "records": c["records"], "bytes": c["value_bytes"],
  "keyed_records": c["keyed_records"], "peak_rss_mb": int(hwm) / 1024}))
PY
  tail -n 1 "$WORK/results" >&2
}

for r in $(seq 1 "$ROUNDS"); do
  run_one tailsift "$r"
  run_one rotel "$r"
done

python3 - "$WORK/results" "$TOTAL" "$ROTEL_BATCH_SPANS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
total, rb = int(sys.argv[2]), sys.argv[3]
print(f"ingest OTLP/gRPC -> Kafka (tansu, 12 partitions, lz4, acks=all, idempotent), {total} spans per run at saturation")
print(f"{'run':<14}{'CPU s':>8}{'spans in topic':>16}{'records':>10}{'MB':>8}{'peak RSS MB':>13}{'spans/CPU-s':>14}")
agg = {}
for r in rows:
    rate = r["in_topic"] / r["cpu_s"] if r["cpu_s"] > 0 else float("nan")
    print(f"{r['who'] + ' #' + str(r['round']):<14}{r['cpu_s']:>8.2f}{r['in_topic']:>16}{r['records']:>10}"
          f"{r['bytes'] / 1e6:>8.1f}{r['peak_rss_mb']:>13.0f}{rate:>14,.0f}")
    if r["in_topic"] != total or r["failed"]:
        print(f"  WARNING: {r['who']} #{r['round']}: {r['in_topic']} spans in the topic, {r['failed']} failed, expected {total}")
    a = agg.setdefault(r["who"], [0.0, 0])
    a[0] += r["cpu_s"]; a[1] += r["in_topic"]
ts, ro = agg["tailsift"][1] / agg["tailsift"][0], agg["rotel"][1] / agg["rotel"][0]
print(f"tailsift ingest  {ts:>12,.0f} spans/CPU-s (all rounds)")
print(f"rotel ({rb}-span batches) {ro:>12,.0f} spans/CPU-s (all rounds)")
print(f"ratio tailsift/rotel  {ts / ro:.2f}x")
PY
