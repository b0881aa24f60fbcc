#!/usr/bin/env bash
# A long decision window at sustained load: one release `tailsift sampler` per buffer mode
# (`memory.mode`), side by side on the same broker, each with `decision.decision_wait` and
# `decision.send_delay` of WINDOW (every trace stays buffered that long), fed RATE spans/s each
# for DURATION. Samples every sampler's resident memory, traces buffered and bytes held every
# 30 s, and reports how RSS moves after the warm-up (the first WINDOW): flat means the buffer
# stops growing once decisions keep pace with arrivals.
#
# Usage: bash loadtest/bench-window.sh [WINDOW] [DURATION] [RATE] [MODES]
#        (defaults 10m 15m 5000 "memory index")
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW="${1:-10m}"
DURATION="${2:-15m}"
RATE="${3:-5000}"
MODES="${4:-memory index}"
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1==n {print $2}' | head -1; }
wait_ready() { for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1"; exit 1; }
secs() { python3 -c "import re,sys; v=sys.argv[1]; m=re.fullmatch(r'(\d+)(ms|s|m|h)', v); n,u=int(m[1]),m[2]; print({'ms':n/1000,'s':n,'m':n*60,'h':n*3600}[u])" "$1"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
KPORT=$(port); B="127.0.0.1:$KPORT"
(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" \
  --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1) & PIDS+=($!)

declare -A SAMPLER ADMIN
for MODE in $MODES; do
  G=$(port); A=$(port); SA=$(port)
  ./target/release/tailsift ingest --kafka-brokers "$B" --topic "window-$MODE" --grpc-listen "127.0.0.1:$G" \
    --http-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$A" --set zipkin.enabled=false --set jaeger.enabled=false \
    --log-level warn >>"$WORK/ingest.log" 2>&1 & PIDS+=($!)
  wait_ready "$A"
  ./target/release/tailsift sampler --kafka-brokers "$B" --topic "window-$MODE" --group-id "g-window-$MODE" \
    --export-kind kafka --set export.kafka_topic="window-$MODE-sampled" --set kafka.decisions_topic="window-$MODE-decisions" \
    --admin-listen "127.0.0.1:$SA" --set decision.decision_wait="$WINDOW" --set decision.send_delay="$WINDOW" \
    --set kafka.resume_lookback_records=10000 --set memory.mode="$MODE" \
    --set memory.soft_limit_bytes=16000000000 --set memory.hard_limit_bytes=20000000000 \
    --log-level warn >>"$WORK/sampler-$MODE.log" 2>&1 & SAMPLER[$MODE]=$!; PIDS+=($!)
  ADMIN[$MODE]=$SA
  wait_ready "$SA"
  ./target/release/tailsift-loadgen --endpoint "http://127.0.0.1:$G" --rate "$RATE" --duration "$DURATION" \
    --concurrency 4 --seed 11 --quiet >"$WORK/loadgen-$MODE.txt" 2>&1 & PIDS+=($!)
done

TOTAL=$(secs "$DURATION"); WARM=$(secs "$WINDOW")
echo "t_s mode rss_mb traces_buffered held_mb spans_consumed" >"$WORK/samples.txt"
start=$(date +%s)
while :; do
  now=$(( $(date +%s) - start ))
  [[ "$now" -gt "${TOTAL%.*}" ]] && break
  for MODE in $MODES; do
    SA=${ADMIN[$MODE]}
    held=$(metric "$SA" tailsift_sampler_buffered_bytes)
    echo "$now $MODE $(( $(rss_kb "${SAMPLER[$MODE]}") / 1024 )) $(metric "$SA" tailsift_sampler_traces_buffered) \
$(awk -v b="${held:-0}" 'BEGIN {printf "%.1f", b / 1e6}') $(metric "$SA" tailsift_sampler_spans_consumed_total)" >>"$WORK/samples.txt"
  done
  sleep 30
done
python3 - "$WORK/samples.txt" "$WARM" "$RATE" "$WINDOW" <<'PY'
import sys, collections
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
warm, rate, window = float(sys.argv[2]), sys.argv[3], sys.argv[4]
by = collections.defaultdict(list)
for t, mode, rss, traces, held, spans in rows:
    by[mode].append((int(t), float(rss), float(traces or 0), float(held or 0), float(spans or 0)))
print(f"decision window {window}, {rate} spans/s per sampler")
print(f"{'mode':8} {'t (s)':>6} {'RSS MB':>8} {'traces buffered':>16} {'held MB':>8}")
for mode, s in by.items():
    for t, rss, traces, held, spans in s:
        print(f"{mode:8} {t:6d} {rss:8.0f} {traces:16,.0f} {held:8.1f}")
for mode, s in by.items():
    after = [x for x in s if x[0] >= warm + 30]
    if len(after) >= 2:
        lo, hi = min(x[1] for x in after), max(x[1] for x in after)
        buffered_spans = float(rate) * warm
        # Least-squares slope of RSS over the samples after the warm-up: the trend, not the noise.
        n = len(after); mt = sum(x[0] for x in after) / n; mr = sum(x[1] for x in after) / n
        slope = sum((x[0] - mt) * (x[1] - mr) for x in after) / max(1e-9, sum((x[0] - mt) ** 2 for x in after))
        print(f"{mode}: RSS trend after the warm-up {slope * 600:+.1f} MB per 10 min over {after[-1][0] - after[0][0]} s")
        print(f"{mode}: after the warm-up RSS {lo:.0f}-{hi:.0f} MB (spread {100 * (hi - lo) / max(hi, 1):.1f}%), "
              f"~{after[-1][1] * 1e6 / buffered_spans:.0f} B of RSS per buffered span ({buffered_spans:,.0f} spans buffered at {rate}/s x {warm:.0f} s)")
    else:
        print(f"{mode}: run longer than the window to see the steady state")
PY
