#!/usr/bin/env bash
# End-to-end decision latency: from the moment a trace's last span is sent to the ingest node to
# the moment the sampler exports the trace, through a real broker, in one run.
#
# Starts a tansu broker (memory storage), then for each `decision.send_delay` in SEND_DELAYS: a
# release `tailsift ingest` on a fresh topic and a `tailsift sampler` whose policy keeps every trace
# (so every trace is measured) and which exports over OTLP/HTTP to the sink of
# `tailsift-e2e-latency`. That tool sends RATE spans/s of realistic traces for DURATION (each trace
# spread over several requests, the root service's part last) and pairs each trace's last send
# with its first arrival at the sink. Also prints the sampler's own
# `tailsift_sampler_decision_latency_seconds` (first span buffered -> decision; bucketed).
#
# Usage: bash loadtest/bench-latency.sh [DURATION] [RATES] [SEND_DELAYS] [SAMPLER_CONFIG]
#        (defaults 30s 2000 "2s 500ms" none; RATES: one span rate or several, "1000 10000 40000",
#        each run with every send_delay; 2s is the default send_delay; SAMPLER_CONFIG: a sampler
#        YAML config file for every run, e.g. to shorten export.batch_timeout or set librdkafka
#        kafka.properties, also settable as --set 'kafka.properties[KEY]=VALUE')
# With RESULTS=DIR every run is a row of DIR/decision_latency.csv (rate, latency quantiles, the
# ingest node's and the sampler's CPU per span), and with PLOT=1 docs/scaling/decision_latency.png
# is drawn from it (matplotlib in a cached venv, as loadtest/curves.sh): "decision latency vs
# load" in docs/scaling.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-30s}"
RATES="${2:-2000}"
SEND_DELAYS="${3:-2s 500ms}"
EXTRA=(); [[ -n "${4:-}" ]] && EXTRA=(--config "$(realpath "$4")")
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
# Built separately: one build of both would unify features and rebuild `tailsift`.
nice cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
nice cargo build --release --locked -p tailsift-bench-tools >&2
WORK="$(mktemp -d)"
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CSV=""
if [[ -n "${RESULTS:-}" ]]; then mkdir -p "$RESULTS"; CSV="$RESULTS/decision_latency.csv"; rm -f "$CSV"; fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1"; for f in "$WORK"/*.log; do echo "== $f"; tail -n 5 "$f"; done; exit 1; }
KPORT=$(port); B="127.0.0.1:$KPORT"
(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" \
  --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1) & PIDS+=($!)
cat >"$WORK/keep-all.yaml" <<'YAML'
policies:
  - name: everything
    always: {}
YAML

n=0
for RATE in $RATES; do
for delay in $SEND_DELAYS; do
  n=$((n + 1)); topic="lat-$n"; G=$(port); A=$(port); SA=$(port); SINK=$(port)
  ./target/release/tailsift ingest --kafka-brokers "$B" --topic "$topic" --grpc-listen "127.0.0.1:$G" \
    --http-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$A" --set zipkin.enabled=false --set jaeger.enabled=false \
    --log-level warn >>"$WORK/ingest.log" 2>&1 & INGEST_PID=$!; PIDS+=($INGEST_PID)
  wait_ready "$A"
  ./target/release/tailsift sampler --kafka-brokers "$B" --topic "$topic" --group-id "g-$topic" \
    --export-kind otlp_http --export-endpoint "http://127.0.0.1:$SINK" --admin-listen "127.0.0.1:$SA" \
    --set policy.file="$WORK/keep-all.yaml" --set decision.send_delay="$delay" \
    --set kafka.decisions_topic="$topic-decisions" --set kafka.resume_lookback_records=10000 "${EXTRA[@]}" \
    --log-level warn >>"$WORK/sampler.log" 2>&1 & SAMPLER_PID=$!; PIDS+=($SAMPLER_PID)
  wait_ready "$SA"
  # --warmup: the sampler joins its consumer group while the sink is already listening.
  # CPU of both nodes over the whole run (warm-up and settling included), per span sent.
  I0=$(cpu_ticks "$INGEST_PID"); S0=$(cpu_ticks "$SAMPLER_PID")
  ./target/release/tailsift-e2e-latency --endpoint "http://127.0.0.1:$G" --sink-listen "127.0.0.1:$SINK" \
    --rate "$RATE" --duration "$DURATION" --warmup 5s --settle 8s >"$WORK/e2e-$n.json"
  I1=$(cpu_ticks "$INGEST_PID"); S1=$(cpu_ticks "$SAMPLER_PID")
  curl -s "http://127.0.0.1:$SA/metrics" | grep '^tailsift_sampler_decision_latency_seconds' >"$WORK/hist-$n.txt" || true
  python3 - "$delay" "$WORK/e2e-$n.json" "$WORK/hist-$n.txt" "${4:-}" "$RATE" "$CSV" \
    "$(( I1 - I0 ))" "$(( S1 - S0 ))" "$TCK" <<'PY'
import csv, json, os, sys
delay, e2e, hist = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read().splitlines()
extra = f" (config {sys.argv[4]})" if sys.argv[4] else ""
rate, out = float(sys.argv[5]), sys.argv[6]
ingest_cpu, sampler_cpu = int(sys.argv[7]) / int(sys.argv[9]), int(sys.argv[8]) / int(sys.argv[9])
l = e2e["latency"]
achieved = e2e["spans_sent"] / max(e2e["send_seconds"], 1e-9)
print(f"rate {rate:.0f} spans/s (sent {achieved:.0f}), send_delay {delay}{extra}: {e2e['traces_sent']} traces ({e2e['spans_sent']} spans) sent in {e2e['send_seconds']:.1f} s, "
      f"{e2e['traces_exported']} exported ({e2e['sink_spans']} spans), {e2e['spans_failed_or_rejected']} spans failed")
print(f"  last span sent -> exported:  p50 {l['p50_ms']:.0f} ms  p90 {l['p90_ms']:.0f} ms  p99 {l['p99_ms']:.0f} ms  "
      f"max {l['max_ms']:.0f} ms  (n={l['count']}, {e2e['exported_before_last_span_sent']} exported before their last span was sent)")
# Prometheus histogram -> quantiles (linear inside a bucket, like histogram_quantile).
b = []
for line in hist:
    if line.startswith("tailsift_sampler_decision_latency_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        b.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
b.sort()
def q(p):
    if not b or b[-1][1] == 0: return float("nan")
    rank, prev_le, prev_c = p * b[-1][1], 0.0, 0.0
    for le, c in b:
        if c >= rank:
            if le == float("inf"): return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
if b:
    print(f"  sampler histogram (first span buffered -> decided, bucketed): p50 {q(0.5) * 1000:.0f} ms  p99 {q(0.99) * 1000:.0f} ms  (n={b[-1][1]:.0f})")
spans = max(e2e["spans_sent"], 1)
print(f"  CPU over the run: ingest {ingest_cpu:.2f} s ({ingest_cpu * 1e6 / spans:.1f} µs per span), sampler {sampler_cpu:.2f} s ({sampler_cpu * 1e6 / spans:.1f} µs per span)")
if out:
    row = {"rate": rate, "send_delay": delay, "achieved_spans_per_s": round(achieved), "traces_sent": e2e["traces_sent"],
           "traces_exported": e2e["traces_exported"], "spans_failed": e2e["spans_failed_or_rejected"],
           "p50_ms": round(l["p50_ms"], 1), "p90_ms": round(l["p90_ms"], 1), "p99_ms": round(l["p99_ms"], 1),
           "max_ms": round(l["max_ms"], 1), "ingest_cpu_us_per_span": round(ingest_cpu * 1e6 / spans, 2),
           "sampler_cpu_us_per_span": round(sampler_cpu * 1e6 / spans, 2)}
    new = not os.path.exists(out)
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
PY
  kill "$SAMPLER_PID" "$INGEST_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" "$INGEST_PID" 2>/dev/null || true
done
done
if [[ -n "$CSV" && "${PLOT:-0}" == 1 ]]; then
  mkdir -p docs/scaling
  bash loadtest/plot.sh loadtest/plot_load_curves.py "$RESULTS" docs/scaling
fi
