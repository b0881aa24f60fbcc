#!/usr/bin/env bash
# A real Tailsift cluster on one machine, on loopback:
#
#   broker        tansu Kafka-protocol broker, durable (sqlite)           127.0.0.1:$BASE+92
#   coordinator-1..3  `tailsift coordinator` (Raft, bootstrapped once)    raft $BASE+701..703, admin $BASE+711..713
#   ingest-1..2   `tailsift ingest` (OTLP/gRPC, OTLP/HTTP)                 gRPC $BASE+317/327, HTTP $BASE+318/328, admin $BASE+464/474
#   sampler-1..3  `tailsift sampler`, policies from the coordinators       admin $BASE+465/475/485
#   verifier      `tailsift-verify serve`, the export backend (records)    gRPC $BASE+427, HTTP $BASE+428
#   prometheus    Debian's prometheus, scraping every node                 http://127.0.0.1:$BASE+90
#
# BASE is $TAILSIFT_CLUSTER_PORT_BASE (default 21000), so the cluster does not collide with
# deploy/local/run.sh or the tests. Everything (generated configs, data, logs, pids) lives in
# .tailsift/cluster/ (override with TAILSIFT_CLUSTER_DIR); the broker's and coordinators' data
# survive stop/start, the coordinators bootstrap only on their first start.
#
#   bash deploy/local/cluster.sh start      # build release binaries (once), start what is not running
#   bash deploy/local/cluster.sh status     # every process: pid, ports, up/down (readyz), Raft leader, policy versions
#   bash deploy/local/cluster.sh stop       # SIGTERM everything (SIGKILL after 20 s)
#   bash deploy/local/cluster.sh clean      # stop, then delete .tailsift/cluster
#
# For fault scripts (loadtest/faults.sh):
#   cluster.sh start-proc NAME              # start one process (e.g. sampler-2) if it is not running
#   cluster.sh signal NAME SIG              # send SIG (KILL, TERM, STOP, CONT) to one process
#   cluster.sh pid NAME | port NAME         # its pid / its main port
#   cluster.sh wait-ready NAME [SECONDS]    # wait until its readiness check passes
#   cluster.sh env                          # the addresses as shell variables (eval "$(cluster.sh env)")
#
# Prometheus is Debian's `prometheus` package (installed with apt-get if `prometheus` is missing).
# Samplers export to the verifier; set TAILSIFT_CLUSTER_EXPORT=http://host:4317 to export to a
# real OTLP/gRPC backend instead (the verifier is then not started).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
DIR="${TAILSIFT_CLUSTER_DIR:-$REPO/.tailsift/cluster}"
BASE="${TAILSIFT_CLUSTER_PORT_BASE:-21000}"
BIN="$REPO/target/release"

BROKER_PORT=$((BASE + 92))
PROM_PORT=$((BASE + 90))
VERIFY_GRPC=$((BASE + 427))
VERIFY_HTTP=$((BASE + 428))
EXPORT="${TAILSIFT_CLUSTER_EXPORT:-http://127.0.0.1:$VERIFY_GRPC}"
coord_raft() { echo $((BASE + 700 + $1)); }
coord_admin() { echo $((BASE + 710 + $1)); }
ingest_grpc() { echo $((BASE + 317 + 10 * ($1 - 1))); }
ingest_http() { echo $((BASE + 318 + 10 * ($1 - 1))); }
ingest_admin() { echo $((BASE + 464 + 10 * ($1 - 1))); }
sampler_admin() { echo $((BASE + 465 + 10 * ($1 - 1))); }

PROCS=(broker coordinator-1 coordinator-2 coordinator-3 ingest-1 ingest-2 sampler-1 sampler-2 sampler-3 verifier prometheus)
[[ -n "${TAILSIFT_CLUSTER_EXPORT:-}" ]] && PROCS=("${PROCS[@]/verifier/}")

log() { echo "cluster: $*" >&2; }
pidfile() { echo "$DIR/pids/$1.pid"; }
pid_of() { local f; f="$(pidfile "$1")"; [[ -f "$f" ]] && cat "$f" || true; }
running() { # alive and not a zombie
  local p; p="$(pid_of "$1")"
  [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]]
}
admin_token() { cat "$DIR/config/admin-token"; }

# Main port and readiness URL of a process.
ports() {
  case "$1" in
    broker) echo "kafka $BROKER_PORT" ;;
    coordinator-*) local i=${1#coordinator-}; echo "raft $(coord_raft "$i") admin $(coord_admin "$i")" ;;
    ingest-*) local i=${1#ingest-}; echo "otlp-grpc $(ingest_grpc "$i") otlp-http $(ingest_http "$i") admin $(ingest_admin "$i")" ;;
    sampler-*) echo "admin $(sampler_admin "${1#sampler-}")" ;;
    verifier) echo "otlp-grpc $VERIFY_GRPC http $VERIFY_HTTP" ;;
    prometheus) echo "http $PROM_PORT" ;;
  esac
}
main_port() {
  case "$1" in
    broker) echo "$BROKER_PORT" ;;
    coordinator-*) coord_admin "${1#coordinator-}" ;;
    ingest-*) ingest_grpc "${1#ingest-}" ;;
    sampler-*) sampler_admin "${1#sampler-}" ;;
    verifier) echo "$VERIFY_HTTP" ;;
    prometheus) echo "$PROM_PORT" ;;
  esac
}
ready() {
  case "$1" in
    broker) (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null ;;
    coordinator-*) curl -sf -m 2 "http://127.0.0.1:$(coord_admin "${1#coordinator-}")/readyz" >/dev/null ;;
    ingest-*) curl -sf -m 2 "http://127.0.0.1:$(ingest_admin "${1#ingest-}")/readyz" >/dev/null ;;
    sampler-*) curl -sf -m 2 "http://127.0.0.1:$(sampler_admin "${1#sampler-}")/readyz" >/dev/null ;;
    verifier) curl -sf -m 2 "http://127.0.0.1:$VERIFY_HTTP/control/stats" >/dev/null ;;
    prometheus) curl -sf -m 2 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null ;;
  esac
}
wait_ready() {
  local name=$1 secs=${2:-60} i
  for ((i = 0; i < secs * 5; i++)); do
    ready "$name" && return 0
    running "$name" || { log "$name exited; last log lines:"; tail -15 "$DIR/logs/$name.log" >&2; return 1; }
    sleep 0.2
  done
  log "$name not ready after ${secs}s; last log lines:"; tail -15 "$DIR/logs/$name.log" >&2
  return 1
}

ensure_prometheus() {
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    log "installing Debian's prometheus package (prometheus, promtool)..."
    local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >&2
  fi
}

build() {
  if [[ "${TAILSIFT_CLUSTER_NO_BUILD:-0}" != 1 ]]; then
    log "building release binaries (no-op when up to date)..."
    cargo build --release --locked -p tailsift -p tailsift-loadtest >&2
  fi
  for b in tailsift tailsift-loadgen tailsift-verify; do
    [[ -x "$BIN/$b" ]] || { log "$BIN/$b missing"; exit 1; }
  done
}

write_configs() {
  mkdir -p "$DIR/config" "$DIR/logs" "$DIR/pids" "$DIR/data"
  local c="$DIR/config"
  [[ -s "$c/admin-token" ]] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$c/admin-token"
  [[ -s "$c/read-token" ]] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$c/read-token"
  chmod 600 "$c/admin-token" "$c/read-token"
  cat >"$c/coordinator.yaml" <<EOF
# generated by deploy/local/cluster.sh
# Loopback: faster failure detection than the defaults (250ms, 1s-2s); a new leader within ~2 s.
raft:
  heartbeat_interval: 150ms
  election_timeout_min: 750ms
  election_timeout_max: 1500ms
admin:
  tokens:
    - {name: ops, token: "$(admin_token)", role: admin}
    - {name: viewer, token: "$(cat "$c/read-token")", role: read_only}
EOF
  chmod 600 "$c/coordinator.yaml"
  local endpoints="" i
  for i in 1 2 3; do endpoints+="${endpoints:+, }http://127.0.0.1:$(coord_raft "$i")"; done
  cat >"$c/sampler.yaml" <<EOF
# generated by deploy/local/cluster.sh
kafka:
  brokers: 127.0.0.1:$BROKER_PORT
  group_id: tailsift-samplers
  # tansu 0.6 skips the rest of a record batch when a fetch starts inside it (README).
  resume_lookback_records: 10000
  # a dead worker is noticed within 6 s; a rebalance never waits minutes for a dead member
  properties: {session.timeout.ms: '6000', heartbeat.interval.ms: '500', max.poll.interval.ms: '20000'}
export:
  kind: otlp_grpc
  endpoint: $EXPORT
  max_backoff: 2s
  # small, so that a backend outage shows as paused consumption within seconds (default 10000)
  queue_traces: 100
coordinator:
  endpoints: [$endpoints]
  # the coordinators' Watch stream needs a token; the read-only one is enough
  token: "$(cat "$c/read-token")"
EOF
  chmod 600 "$c/sampler.yaml"
  # The policy published on the first start: errors, slow traces, 10% of the rest.
  [[ -f "$c/policy.yaml" ]] || cat >"$c/policy.yaml" <<EOF
policies:
  - name: errors
    status_code: { codes: [ERROR] }
  - name: slow
    latency: { threshold_ms: 1000 }
  - name: baseline
    probabilistic: { percentage: 10 }
EOF
  local jobs="" name targets
  for name in coordinator ingest sampler; do
    targets=""
    for i in 1 2 3; do
      case $name in
        coordinator) targets+="${targets:+, }'127.0.0.1:$(coord_admin "$i")'" ;;
        ingest) [[ $i -le 2 ]] && targets+="${targets:+, }'127.0.0.1:$(ingest_admin "$i")'" ;;
        sampler) targets+="${targets:+, }'127.0.0.1:$(sampler_admin "$i")'" ;;
      esac
    done
    jobs+="  - job_name: tailsift-$name
    static_configs:
      - targets: [$targets]
"
  done
  cat >"$c/prometheus.yml" <<EOF
# generated by deploy/local/cluster.sh
global:
  scrape_interval: 5s
  scrape_timeout: 4s
  evaluation_interval: 5s
scrape_configs:
$jobs
EOF
}

spawn() { # NAME CMD...: start detached, log and pid in $DIR
  local name=$1; shift
  setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

start_proc() {
  local name=$1 i members=""
  if running "$name"; then return 0; fi
  echo "=== $(date -u +%FT%TZ) start" >>"$DIR/logs/$name.log"
  case "$name" in
    broker)
      mkdir -p "$DIR/data/broker"
      local tansu="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
      spawn broker bash -c "cd '$DIR/data/broker' && exec '$tansu' broker --listener-url tcp://127.0.0.1:$BROKER_PORT \
        --advertised-listener-url tcp://127.0.0.1:$BROKER_PORT --storage-engine sqlite://tansu.db" ;;
    coordinator-*)
      i=${name#coordinator-}
      for m in 1 2 3; do members+=" --member $m=127.0.0.1:$(coord_raft "$m"),127.0.0.1:$(coord_admin "$m")"; done
      # shellcheck disable=SC2086
      spawn "$name" "$BIN/tailsift" coordinator --config "$DIR/config/coordinator.yaml" --node-id "$i" \
        --data-dir "$DIR/data/$name" --raft-listen "127.0.0.1:$(coord_raft "$i")" \
        --admin-listen "127.0.0.1:$(coord_admin "$i")" $members ;;
    ingest-*)
      i=${name#ingest-}
      # Non-idempotent producer: tansu's sqlite engine panics when an idempotent producer
      # reconnects after a broker restart (README, "Known tansu 0.6 limitations").
      spawn "$name" "$BIN/tailsift" ingest --kafka-brokers "127.0.0.1:$BROKER_PORT" \
        --grpc-listen "127.0.0.1:$(ingest_grpc "$i")" --http-listen "127.0.0.1:$(ingest_http "$i")" \
        --admin-listen "127.0.0.1:$(ingest_admin "$i")" --set zipkin.enabled=false --set jaeger.enabled=false \
        --set kafka.idempotence=false --set kafka.probe_interval=1s ;;
    sampler-*)
      i=${name#sampler-}
      spawn "$name" "$BIN/tailsift" sampler --config "$DIR/config/sampler.yaml" \
        --admin-listen "127.0.0.1:$(sampler_admin "$i")" --set "coordinator.worker_id=$name" \
        --set "coordinator.state_file=$DIR/data/$name.policy.json" ;;
    verifier)
      spawn verifier "$BIN/tailsift-verify" serve --grpc-listen "127.0.0.1:$VERIFY_GRPC" \
        --http-listen "127.0.0.1:$VERIFY_HTTP" ;;
    prometheus)
      mkdir -p "$DIR/data/prometheus"
      spawn prometheus prometheus --config.file="$DIR/config/prometheus.yml" \
        --storage.tsdb.path="$DIR/data/prometheus" --storage.tsdb.retention.time=2d \
        --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle ;;
    *) log "unknown process $name"; return 1 ;;
  esac
}

stop_proc() {
  local name=$1 p i
  p="$(pid_of "$name")"
  if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then log "$name did not stop in 20 s: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; fi
  fi
  rm -f "$(pidfile "$name")"
}

admin_get() { # PATH [coordinator index]: GET on a coordinator's admin API
  curl -sf -m 3 -H "Authorization: Bearer $(admin_token)" "http://127.0.0.1:$(coord_admin "${2:-1}")$1"
}

publish_initial_policy() {
  local i v=""
  for ((i = 0; i < 150; i++)); do
    for c in 1 2 3; do
      v="$(admin_get /v1/cluster/status "$c" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s.get("leader") or "")' 2>/dev/null || true)"
      [[ -n "$v" ]] && break 2
    done
    sleep 0.2
  done
  [[ -n "$v" ]] || { log "no Raft leader elected"; return 1; }
  local version
  version="$(admin_get /v1/policy | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
  if [[ "$version" == 0 ]]; then
    log "publishing the initial policy ($DIR/config/policy.yaml)"
    "$BIN/tailsift" policy apply "$DIR/config/policy.yaml" --admin "http://127.0.0.1:$(coord_admin 1)" \
      --token "$(admin_token)" >/dev/null
  fi
}

cmd_start() {
  ensure_prometheus
  build
  write_configs
  local n
  start_proc broker; wait_ready broker 30
  for n in 1 2 3; do start_proc "coordinator-$n"; done
  for n in 1 2 3; do wait_ready "coordinator-$n" 60; done
  publish_initial_policy
  [[ -z "${TAILSIFT_CLUSTER_EXPORT:-}" ]] && { start_proc verifier; wait_ready verifier 30; }
  # The first ingest node creates the spans topic.
  start_proc ingest-1; wait_ready ingest-1 60
  start_proc ingest-2
  for n in 1 2 3; do start_proc "sampler-$n"; done
  wait_ready ingest-2 60
  for n in 1 2 3; do wait_ready "sampler-$n" 90; done
  start_proc prometheus; wait_ready prometheus 60
  cmd_status
}

cmd_stop() {
  local i
  # Load-bearing order: producers and consumers before the broker, Prometheus last.
  for n in ingest-1 ingest-2 sampler-1 sampler-2 sampler-3; do stop_proc "$n" & done; wait
  stop_proc verifier
  for n in coordinator-1 coordinator-2 coordinator-3; do stop_proc "$n" & done; wait
  stop_proc broker
  stop_proc prometheus
  log "stopped (data kept in $DIR)"
}

metric() { # URL NAME: sum of a metric's samples
  curl -sf -m 2 "$1" 2>/dev/null | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 } END { if (f) printf "%g", s; else printf "-" }'
}

cmd_status() {
  local name p state extra st
  printf '%-14s %-8s %-5s %-44s %s\n' PROCESS PID STATE PORTS DETAILS
  for name in "${PROCS[@]}"; do
    [[ -z "$name" ]] && continue
    p="$(pid_of "$name")"
    if running "$name"; then
      if ready "$name"; then state=up; else state=down; fi
    else
      state=down; p="-"
    fi
    extra=""
    if [[ $state == up ]]; then
      case "$name" in
        coordinator-*)
          st="$(admin_get /v1/cluster/status "${name#coordinator-}" || true)"
          extra="$(echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("%s, raft leader %s, term %s, policy v%s" % (s["state"].lower(), s.get("leader"), s.get("term"), s.get("policy_version")))' 2>/dev/null || true)" ;;
        sampler-*)
          local u="http://127.0.0.1:$(sampler_admin "${name#sampler-}")/metrics"
          extra="policy v$(metric "$u" tailsift_sampler_policy_version) partitions $(metric "$u" tailsift_sampler_partitions_owned) coordinator-connected $(metric "$u" tailsift_sampler_coordinator_connected) paused $(metric "$u" tailsift_sampler_consumption_paused)" ;;
        ingest-*)
          extra="kafka-ready $(metric "http://127.0.0.1:$(ingest_admin "${name#ingest-}")/metrics" tailsift_ingest_kafka_ready)" ;;
        verifier)
          extra="$(curl -sf -m 2 "http://127.0.0.1:$VERIFY_HTTP/control/stats" || true)" ;;
        prometheus)
          extra="targets up $(curl -sf -m 2 "http://127.0.0.1:$PROM_PORT/api/v1/targets?state=active" | python3 -c 'import json,sys; t=json.load(sys.stdin)["data"]["activeTargets"]; print("%d/%d" % (sum(x["health"]=="up" for x in t), len(t)))' 2>/dev/null || echo '?')" ;;
      esac
    fi
    printf '%-14s %-8s %-5s %-44s %s\n' "$name" "$p" "$state" "$(ports "$name")" "$extra"
  done
  echo "data, logs, pids: $DIR"
}

cmd_env() {
  cat <<EOF
CLUSTER_DIR=$DIR
BROKERS=127.0.0.1:$BROKER_PORT
INGEST_1=http://127.0.0.1:$(ingest_grpc 1)
INGEST_2=http://127.0.0.1:$(ingest_grpc 2)
INGEST_ADMIN_1=http://127.0.0.1:$(ingest_admin 1)
INGEST_ADMIN_2=http://127.0.0.1:$(ingest_admin 2)
SAMPLER_ADMIN_1=http://127.0.0.1:$(sampler_admin 1)
SAMPLER_ADMIN_2=http://127.0.0.1:$(sampler_admin 2)
SAMPLER_ADMIN_3=http://127.0.0.1:$(sampler_admin 3)
COORD_ADMIN_1=http://127.0.0.1:$(coord_admin 1)
COORD_ADMIN_2=http://127.0.0.1:$(coord_admin 2)
COORD_ADMIN_3=http://127.0.0.1:$(coord_admin 3)
VERIFY_URL=http://127.0.0.1:$VERIFY_HTTP
PROMETHEUS=http://127.0.0.1:$PROM_PORT
ADMIN_TOKEN=$(admin_token 2>/dev/null || true)
BIN=$BIN
EOF
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  clean) cmd_stop; rm -rf "$DIR"; log "removed $DIR" ;;
  start-proc) write_configs; start_proc "$2"; wait_ready "$2" "${3:-90}" ;;
  stop-proc) stop_proc "$2" ;;
  signal) # SIGKILL waits (up to 10 s) until the process is gone
    p="$(pid_of "$2")"; [[ -n "$p" ]] || { log "$2 has no pid"; exit 1; }; kill "-$3" "$p"
    if [[ "$3" == KILL || "$3" == 9 ]]; then for ((i = 0; i < 100; i++)); do running "$2" || break; sleep 0.1; done; fi ;;
  pid) pid_of "$2" ;;
  port) main_port "$2" ;;
  wait-ready) wait_ready "$2" "${3:-60}" ;;
  env) cmd_env ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
