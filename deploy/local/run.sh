#!/usr/bin/env bash
# Runs the Tailsift pipeline as far as it exists on this machine, with no external services:
# a tansu Kafka-protocol broker (durable sqlite storage) and an ingest node on the standard OTLP
# ports, then sends 10 seconds of realistic traces and shows what reached Kafka.
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

cleanup() { kill "${INGEST_PID:-}" 2>/dev/null || true; wait "${INGEST_PID:-}" 2>/dev/null || true; kill "${BROKER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
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

echo "sending 10 s of traces over OTLP/gRPC..."
./target/release/tailsift-loadgen --endpoint http://127.0.0.1:4317 --rate 2000 --duration 10s
echo
echo "what the ingest node reports (http://127.0.0.1:9464/metrics):"
curl -s http://127.0.0.1:9464/metrics | grep -E '^tailsift_ingest_(requests_total|spans_received_total|records_produced_total|produced_bytes_total)'
echo
echo "OTLP/gRPC :4317, OTLP/HTTP :4318 (POST /v1/traces), metrics :9464, Kafka 127.0.0.1:$KAFKA_PORT topic tailsift-spans"
if [[ $ONCE -eq 0 ]]; then
  echo "running; press Ctrl-C to stop"
  wait "$INGEST_PID"
fi
