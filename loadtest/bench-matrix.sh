#!/usr/bin/env bash
# Ingest efficiency matrix: Tailsift ingest vs Rotel, side by side on one tansu broker, for every
# request shape x load. One command, one run:
#
#   shapes: sdk   512-span requests (SDK batch processor defaults), each trace's spans spread over
#                 several requests, several services (resources) per request;
#           mid   100-span requests over ~20 traces;
#           tiny  3-span requests (what Envoy and Zipkin clients send, one small flush at a time);
#           fleet 3-span requests with 256 in flight (many proxies sending to one node);
#           each without and with gzip;
#   loads:  100% (as fast as the load generator can, 32 in flight), then 50% and 25% of the rate
#           Tailsift reached at 100% for that shape, for both collectors (same rate).
#
# Each cell runs Tailsift, then Rotel, on a fresh 12-partition topic with the same seed for
# SECONDS seconds (after a warm-up), reads each collector's user+system CPU from /proc before and
# after, and counts the spans that reached the topic with `tailsift-topic-count` (every record
# decoded: an acknowledged-but-lost span would show). Prints, per cell and collector: spans in the
# topic, records, bytes, CPU seconds, spans per CPU-second, p50/p99 acknowledgement latency seen by
# the client; and per cell the ratio, and per shape the CPU per span at 25% over the CPU per span at
# 100%. Writes the raw rows as JSON lines to MATRIX_OUT (default: /tmp/tailsift-matrix.jsonl).
#
# Usage: bash loadtest/bench-matrix.sh [SECONDS] [SHAPES] [LOADS]
#        (defaults 12 "sdk mid tiny fleet sdk-gzip mid-gzip tiny-gzip" "100 50 25")
# Producer and batch settings of both collectors: as in loadtest/bench-compare.sh (docs/benchmarks.md),
# except Rotel's batch for the 3-span shapes: 512 spans instead of 2,048. Each tiny request carries
# its own resource, so 2,048 of its spans encode to ~1.25 MB, over the 1,000,000-byte message limit:
# Rotel then fails every batch ("MessageSizeTooLarge") after acknowledging its spans, and writes
# nothing (ROTEL_TINY_BATCH_SPANS, default 512, ~320 KB).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-12}"
SHAPES="${2:-sdk mid tiny fleet sdk-gzip mid-gzip tiny-gzip}"
LOADS="${3:-100 50 25}"
OUT="${MATRIX_OUT:-/tmp/tailsift-matrix.jsonl}"
source loadtest/collectors.sh
ROTEL_BATCH_DEFAULT="$ROTEL_BATCH_SPANS"
build_and_install
start_broker
: >"$OUT"

shape_args() { # shape -> loadgen flags
  local s=${1%-gzip} g=""
  [[ $1 == *-gzip ]] && g="--gzip"
  case $s in
    sdk) echo "--batch-spans 512 --concurrency 32 $g" ;;
    mid) echo "--batch-spans 100 --concurrency 32 $g" ;;
    tiny) echo "--batch-spans 3 --concurrency 32 $g" ;;
    fleet) echo "--batch-spans 3 --concurrency 256 $g" ;;
    *) echo "unknown shape $1" >&2; exit 2 ;;
  esac
}

# One run: who shape load rate(0 = saturation). Appends a JSON row to $OUT; prints its spans/s.
cell() {
  local who=$1 shape=$2 load=$3 rate=$4 topic="m-$1-$2-$3"
  case ${shape%-gzip} in
    tiny | fleet) ROTEL_BATCH_SPANS="${ROTEL_TINY_BATCH_SPANS:-512}" ;;
    *) ROTEL_BATCH_SPANS="$ROTEL_BATCH_DEFAULT" ;;
  esac
  start_collector "$who" "$topic"
  # Warm-up (connections, topic metadata, allocator), not measured.
  # shellcheck disable=SC2046
  ./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$GRPC" --rate 0 --total-spans 20000 \
    $(shape_args "$shape") --seed 1 --quiet --json-summary >/dev/null
  if ! ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --expect-spans 20000 --timeout 120 \
    >/dev/null 2>"$WORK/$topic.err"; then
    # A collector that acknowledged the warm-up but did not write it: a row saying so, no figures.
    echo "{\"who\": \"$who\", \"shape\": \"$shape\", \"load\": $load, \"rate\": $rate, \"error\": \"the 20000 warm-up spans were not all in the topic after 120 s\"}" >>"$OUT"
    tail -n 1 "$OUT" >&2
    stop_collector
    return 0
  fi
  local before after
  before=$(cpu_ticks "$PID")
  # shellcheck disable=SC2046
  ./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$GRPC" --rate "$rate" --duration "${SECONDS_PER_RUN}s" \
    $(shape_args "$shape") --seed 42 --quiet --json-summary >"$WORK/$topic.summary"
  local accepted; accepted=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["spans_accepted"])' "$WORK/$topic.summary")
  # Rotel acknowledges before writing to Kafka: wait until every accepted span is in the topic.
  # On a timeout the count is what reached the topic (the row then shows spans missing).
  ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --expect-spans $((20000 + accepted)) \
    --timeout 300 >"$WORK/$topic.count" 2>"$WORK/$topic.err" ||
    ./target/release/tailsift-topic-count --brokers "$B" --topic "$topic" --timeout 30 >"$WORK/$topic.count"
  after=$(cpu_ticks "$PID")
  stop_collector
  python3 - "$who" "$shape" "$load" "$rate" "$before" "$after" "$TCK" "$WORK/$topic.summary" "$WORK/$topic.count" >>"$OUT" <<'PY'
import json, sys
who, shape, load, rate, before, after, tck = sys.argv[1:8]
s = json.loads(open(sys.argv[8]).read().strip().splitlines()[-1])
c = json.loads(open(sys.argv[9]).read().strip().splitlines()[-1])
cpu = (int(after) - int(before)) / int(tck)
print(json.dumps({"who": who, "shape": shape, "load": int(load), "rate": float(rate),
  "achieved": s["achieved_spans_per_sec"], "accepted": s["spans_accepted"], "failed": s["spans_failed"],
  "in_topic": c["spans"] - 20000, "records": c["records"], "bytes": c["value_bytes"], "cpu_s": cpu,
  "spans_per_cpu_s": (c["spans"] - 20000) / cpu if cpu > 0 else 0,
  "ack_p50_ms": s.get("ack_latency_p50_ms", 0), "ack_p99_ms": s.get("ack_latency_p99_ms", 0)}))
PY
  tail -n 1 "$OUT" >&2
}

for shape in $SHAPES; do
  sat=""
  for load in $LOADS; do
    if [[ $load == 100 ]]; then
      cell tailsift "$shape" 100 0
      sat=$(tail -n 1 "$OUT" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("achieved", ""))')
      cell rotel "$shape" 100 0
    else
      [[ -n $sat ]] || { echo "the 100% load must come first (it sets the rate)" >&2; exit 2; }
      rate=$(python3 -c "print(round($sat * $load / 100))")
      cell tailsift "$shape" "$load" "$rate"
      cell rotel "$shape" "$load" "$rate"
    fi
  done
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cells = {}
for r in rows:
    cells.setdefault((r["shape"], r["load"]), {})[r["who"]] = r
print("| shape | load | spans/s T / R | Tailsift spans/CPU-s | Rotel spans/CPU-s | ratio | records T / R | MB T / R | p99 ack ms T / R |")
print("|---|---|---|---|---|---|---|---|---|")
for (shape, load), c in cells.items():
    t, r = c.get("tailsift"), c.get("rotel")
    if not t or not r:
        continue
    bad = [w for w in (t, r) if "error" in w]
    if bad:
        print(f"| {shape} | {load}% | | " + " | ".join(f"{w['who']}: {w['error']}" for w in bad) + " | | | | | |")
        continue
    ratio = t["spans_per_cpu_s"] / r["spans_per_cpu_s"] if r["spans_per_cpu_s"] else float("nan")
    lost = [w["who"] for w in (t, r) if w["in_topic"] != w["accepted"] or w["failed"]]
    warn = f" (spans missing: {', '.join(lost)})" if lost else ""
    print(f"| {shape} | {load}% | {t['achieved']:,.0f} / {r['achieved']:,.0f} | {t['spans_per_cpu_s']:,.0f} | {r['spans_per_cpu_s']:,.0f} | **{ratio:.2f}x**{warn} "
          f"| {t['records']:,} / {r['records']:,} | {t['bytes'] / 1e6:.1f} / {r['bytes'] / 1e6:.1f} | {t['ack_p99_ms']:.1f} / {r['ack_p99_ms']:.1f} |")
print()
print("CPU per span at 25% load over CPU per span at 100% (target <= 2):")
for shape in dict.fromkeys(s for s, _ in cells):
    full, low = cells.get((shape, 100), {}), cells.get((shape, 25), {})
    for who in ("tailsift", "rotel"):
        if who in full and who in low and low[who].get("spans_per_cpu_s") and full[who].get("spans_per_cpu_s"):
            print(f"  {shape:<10} {who:<9} {full[who]['spans_per_cpu_s'] / low[who]['spans_per_cpu_s']:.2f}")
PY
