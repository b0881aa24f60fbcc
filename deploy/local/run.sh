#!/usr/bin/env bash
# Runs the Tailsift pipeline as far as it exists on this machine, with no external services:
# a tansu Kafka-protocol broker (durable sqlite storage), an ingest node on the standard ports
# (OTLP 4317/4318, Zipkin 9411, Jaeger 6831/6832/14268/14250) and a sampler that keeps errors,
# slow traces and 10% of the rest, exporting kept traces to the Kafka topic tailsift-sampled.
# Sends 10 seconds of realistic traces and shows what was kept and why.
#
#   bash deploy/local/run.sh           # keep running afterwards (Ctrl-C stops everything)
#   bash deploy/local/run.sh --once    # stop after the demo load
#
# Data and logs go to .tailsift/local/ in the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
ONCE=0; [[ "${1:-}" == "--once" ]] && ONCE=1
DATA="$PWD/.tailsift/local"; mkdir -p "$DATA"
KAFKA_PORT="${KAFKA_PORT:-9092}"
TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
cargo build --release --locked -p tailsift -p tailsift-loadtest

cleanup() {
  kill "${INGEST_PID:-}" "${SAMPLER_PID:-}" 2>/dev/null || true
  wait "${INGEST_PID:-}" "${SAMPLER_PID:-}" 2>/dev/null || true
  kill "${BROKER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

(cd "$DATA" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine sqlite://tansu.db >"$DATA/broker.log" 2>&1) &
BROKER_PID=$!
./target/release/tailsift ingest --kafka-brokers "127.0.0.1:$KAFKA_PORT" \
  --grpc-listen 127.0.0.1:4317 --http-listen 127.0.0.1:4318 --admin-listen 127.0.0.1:9464 >"$DATA/ingest.log" 2>&1 &
INGEST_PID=$!
echo "waiting for the ingest node (logs: $DATA/ingest.log)..."
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:9464/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:9464/readyz || { echo "ingest did not become ready"; tail -20 "$DATA/ingest.log"; exit 1; }

# tansu skips the rest of a record batch when a fetch starts inside it: see README.
./target/release/tailsift sampler --kafka-brokers "127.0.0.1:$KAFKA_PORT" --export-kind kafka \
  --set kafka.resume_lookback_records=10000 --admin-listen 127.0.0.1:9465 >"$DATA/sampler.log" 2>&1 &
SAMPLER_PID=$!
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:9465/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:9465/readyz || { echo "sampler did not become ready"; tail -20 "$DATA/sampler.log"; exit 1; }

echo "sending 10 s of traces over OTLP/gRPC..."
./target/release/tailsift-loadgen --endpoint http://127.0.0.1:4317 --rate 2000 --duration 10s
echo
echo "what the ingest node reports (http://127.0.0.1:9464/metrics):"
curl -s http://127.0.0.1:9464/metrics | grep -E '^tailsift_ingest_(requests_total|spans_received_total|records_produced_total|produced_bytes_total)'
echo
echo "waiting for the last decisions (send_delay 2 s after each root span)..."
sleep 5
echo "what the sampler decided, by policy and outcome (http://127.0.0.1:9465/metrics):"
curl -s http://127.0.0.1:9465/metrics | grep -E '^tailsift_sampler_(decisions_total|export_spans_total|spans_consumed_total)'
echo
echo "ingest: OTLP/gRPC :4317, OTLP/HTTP :4318, Zipkin :9411, Jaeger UDP :6831/:6832, HTTP :14268, gRPC :14250, metrics :9464"
echo "sampler: metrics :9465; kept traces in Kafka 127.0.0.1:$KAFKA_PORT topic tailsift-sampled; logs in $DATA"
if [[ $ONCE -eq 0 ]]; then
  echo "running; press Ctrl-C to stop"
  wait "$INGEST_PID"
fi
