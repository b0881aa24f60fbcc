# Shared by the ingest comparisons (bench-compare.sh, bench-matrix.sh); sourced, not run.
#
# build_and_install: release builds of tailsift, the load generator and the bench tools; Rotel from
#   PyPI into a cached venv (ROTEL_VERSION, default 0.0.1a15; the `rotel` wheel ships `rotel-agent`).
# start_broker: a tansu broker (memory storage) on a free port; sets B (host:port) and WORK.
# start_collector WHO TOPIC: `tailsift ingest` or Rotel on free ports, OTLP/gRPC in, Kafka TOPIC
#   (12 partitions) out, the same producer settings for both (lz4, acks=all, idempotence,
#   1,000,000-byte batches), each collector's default batching: Tailsift's producer linger
#   (TAILSIFT_LINGER, default 10ms, its default), Rotel's linger 5 ms after its own batcher
#   (ROTEL_BATCH_SPANS spans, default 2048, or 200 ms); sets PID
#   and GRPC; TAILSIFT_BIN runs another `tailsift` binary (e.g. a build of an earlier commit),
#   TAILSIFT_INGEST_ARGS adds flags to `tailsift ingest` (e.g. "--set kafka.linger=20ms").
#   stop_collector stops it. cpu_ticks PID and hwm_kb PID read /proc; TCK is the clock
#   tick rate.
ROTEL_VERSION="${ROTEL_VERSION:-0.0.1a15}"
ROTEL_BATCH_SPANS="${ROTEL_BATCH_SPANS:-2048}"
PIDS=()
WORK="$(mktemp -d)"
TCK=$(getconf CLK_TCK)
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }

build_and_install() {
  TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
  # Built separately: one build of all three would unify features and rebuild `tailsift`.
  nice cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
  nice cargo build --release --locked -p tailsift-bench-tools >&2
  local venv="${TAILSIFT_TOOLS:-$HOME/.cache/tailsift}/venvs/rotel-$ROTEL_VERSION"
  if ! "$venv/bin/python" -c 'import rotel' 2>/dev/null; then
    echo "installing rotel $ROTEL_VERSION from PyPI into $venv..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --pre "rotel==$ROTEL_VERSION" >&2
  fi
  ROTEL="$("$venv/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
  [[ -x "$ROTEL" ]] || { echo "no rotel-agent binary in the rotel wheel at $ROTEL" >&2; exit 1; }
}

start_broker() {
  local kport; kport=$(port); B="127.0.0.1:$kport"
  (cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" \
    --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1) & PIDS+=($!)
  wait_port "$kport" || { echo "broker did not start"; cat "$WORK/broker.log"; exit 1; }
}

start_collector() { # who topic
  local who=$1 topic=$2
  GRPC=$(port)
  if [[ $who == tailsift ]]; then
    local admin; admin=$(port)
    # The producer defaults (lz4, acks=all, idempotence, linger 10ms, 1 MB batches) spelled out
    # so that the comparison is explicit; the topic is created with 12 partitions.
    "${TAILSIFT_BIN:-./target/release/tailsift}" ingest --kafka-brokers "$B" --topic "$topic" --grpc-listen "127.0.0.1:$GRPC" \
      --http-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$admin" --set zipkin.enabled=false --set jaeger.enabled=false \
      --set kafka.compression=lz4 --set kafka.acks=all --set kafka.idempotence=true --set kafka.linger="${TAILSIFT_LINGER:-10ms}" \
      --set kafka.batch_bytes=1000000 --set kafka.topic_spec.partitions=12 ${TAILSIFT_INGEST_ARGS:-} \
      --log-level warn >"$WORK/$topic.log" 2>&1 & PID=$!
    for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.2; done
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "ingest not ready"; cat "$WORK/$topic.log"; exit 1; }
  else
    "$TANSU" topic create --broker "tcp://$B" --partitions 12 "$topic" >/dev/null
    # Rotel has no traces "partition by trace ID" option: a record is one batch with an empty key.
    "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$GRPC" --otlp-http-endpoint "127.0.0.1:$(port)" \
      --otlp-receiver-metrics-disabled --otlp-receiver-logs-disabled \
      --exporter kafka --kafka-exporter-brokers "$B" --kafka-exporter-traces-topic "$topic" \
      --kafka-exporter-format protobuf --kafka-exporter-compression lz4 --kafka-exporter-acks all \
      --kafka-exporter-custom-config enable.idempotence=true --kafka-exporter-linger-ms 5 \
      --kafka-exporter-batch-size 1000000 --traces-batch-max-size "$ROTEL_BATCH_SPANS" --traces-batch-timeout 200ms \
      --pid-file "$WORK/$topic.pid" --log-file "$WORK/$topic.agent.log" >"$WORK/$topic.log" 2>&1 & PID=$!
    wait_port "$GRPC" || { echo "rotel did not start"; cat "$WORK/$topic.log"; exit 1; }
  fi
  PIDS+=("$PID")
}

stop_collector() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}
