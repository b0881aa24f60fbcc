#!/usr/bin/env bash
# Fault suite: each scenario runs under sustained load from two load generators (one per ingest
# node) against the local cluster of deploy/local/cluster.sh (started if it is not running), then
# checks with tailsift-verify what the samplers exported against the manifests of what was sent,
# and prints its figure ("FIGURE <scenario>: ...", also appended to $OUT/results.txt).
#
#   bash loadtest/faults.sh                       # all scenarios, in order
#   bash loadtest/faults.sh steady prometheus     # some (names or numbers)
#
# Scenarios:
#   1 steady          the properties: error and slow traces kept whole, p within 5 sigma, no split
#   2 sampler-kill    SIGKILL one sampler (restarted 2 s later, as an orchestrator would): 0 kept traces lost or split
#   3 scale           samplers 1 -> 3 -> 1 under load (graceful): split kept traces < 0.01%
#   4 leader-kill     SIGKILL the coordinator leader: new leader within 3 s, policy writes work, samplers never stop
#   5 broker-outage   broker stopped for 30 s: ingest answers retryable errors, 0 acknowledged spans lost, recovery
#   6 backend-outage  the export backend (verifier) down for 30 s: nothing lost, backpressure in the metrics
#   7 policy-change   policy versions published under load: every sampler applies each, p50/p99 propagation
#   8 prometheus      Prometheus scrapes every node (targets API, a query); promtool check metrics on each /metrics
#   9 ingest-flood    64 concurrent 16 MiB OTLP/HTTP requests against ingest-1 for 30 s under normal load:
#                     refusals are 503 with Retry-After, ingest-1's RSS stays within 2 x its budget + 256 MiB,
#                     0 kept traces lost or split
#  10 skewed-producer another producer writes records dated an hour ahead and in the year 2100 to every
#                     partition under load: must-keep traces all kept whole, decisions never stop
#  11 oversized       a 20,000-span (~8 MB) error trace, then 200 error traces, to a backend with a 4 MiB
#                     message limit: every span delivered (the big trace in several requests), none refused
#
# Environment: RATE (spans/s per load generator, default 1000), OUT (results folder, default
# .tailsift/cluster/faults), TAILSIFT_CLUSTER_* as for cluster.sh. Exit status 1 if a scenario failed.
set -uo pipefail
cd "$(dirname "$0")/.."
CLUSTER="bash deploy/local/cluster.sh"
RATE="${RATE:-1000}"

STATUS="$($CLUSTER status 2>/dev/null || true)"
if ! grep -q '^sampler-3 .* up ' <<<"$STATUS"; then
  $CLUSTER start || { echo "faults: the cluster did not start" >&2; exit 1; }
fi
eval "$($CLUSTER env)"
OUT="${OUT:-$CLUSTER_DIR/faults}"
mkdir -p "$OUT"
FAILED=()

say() { echo "[$(date -u +%T)] $*" >&2; }
figure() { # SCENARIO TEXT
  echo "FIGURE $1: $2"
  echo "$(date -u +%FT%TZ) $1: $2" >>"$OUT/results.txt"
}
fail() { say "FAIL $1: $2"; FAILED+=("$1"); }

metric_sum() { # URL NAME [LABEL-SUBSTRING]
  curl -sf -m 3 "$1/metrics" 2>/dev/null | awk -v n="$2" -v l="${3:-}" \
    '$1 !~ /^#/ && ($1 == n || index($1, n "{") == 1) && index($1, l) { s += $NF } END { printf "%g", s + 0 }'
}
samplers_sum() { # NAME [LABEL]: summed over the three samplers
  local t=0 v u
  for u in "$SAMPLER_ADMIN_1" "$SAMPLER_ADMIN_2" "$SAMPLER_ADMIN_3"; do
    v="$(metric_sum "$u" "$1" "${2:-}")"; t=$(python3 -c "print($t + ${v:-0})")
  done
  echo "$t"
}
ingest_sum() {
  local a b
  a="$(metric_sum "$INGEST_ADMIN_1" "$1" "${2:-}")"; b="$(metric_sum "$INGEST_ADMIN_2" "$1" "${2:-}")"
  python3 -c "print(int(${a:-0} + ${b:-0}))"
}

# Starts the two load generators for SECS seconds; manifests and summaries in $OUT/NAME-{1,2}.*
LOAD_PIDS=()
start_load() { # NAME SECS
  local i ep
  LOAD_PIDS=()
  for i in 1 2; do
    ep="INGEST_$i"
    "$BIN/tailsift-loadgen" --endpoint "${!ep}" --rate "$RATE" --duration "${2}s" --quiet --json-summary \
      --max-spans 120 --max-attempts 10000 --retry-max-backoff 2s --timeout 15s \
      --manifest "$OUT/$1-$i.manifest.jsonl" >"$OUT/$1-$i.summary.json" 2>"$OUT/$1-$i.loadgen.log" &
    LOAD_PIDS+=($!)
  done
}
wait_load() { # NAME: waits for the load generators (not in a subshell: they are our children); sets LOAD
  local p rc=0
  for p in "${LOAD_PIDS[@]}"; do wait "$p" || rc=1; done
  LOAD="$(python3 - "$OUT/$1-1.summary.json" "$OUT/$1-2.summary.json" <<'EOF'
import json, sys
s = [json.load(open(p)) for p in sys.argv[1:]]
k = lambda f: sum(x[f] for x in s)
print("load: %d traces, %d spans sent, %d accepted, %d failed, %d requests retried, %.0f spans/s" % (
    k("traces"), k("spans_sent"), k("spans_accepted"), k("spans_failed"), k("requests_retried"),
    k("achieved_spans_per_sec")))
EOF
)"
  return $rc
}
verify() { # NAME [extra check flags]: prints the report line, returns its verdict
  local name=$1; shift
  "$BIN/tailsift-verify" check --url "$VERIFY_URL" --manifest "$OUT/$name-1.manifest.jsonl" \
    --manifest "$OUT/$name-2.manifest.jsonl" --probability 0.1 --sigma 5 --wait 240s --json "$@" \
    >"$OUT/$name.report.json" 2>"$OUT/$name.report.err"
  local rc=$?
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("verify: must-keep %d, complete %d, lost %d, split %d (%.4f%% of %d kept), duplicate spans %d in %d traces, other kept %.4f (p 0.1, z %+.2f), not acked %d, %s" % (r["must_keep"], r["must_keep_complete"], r["lost"], r["split"], 100*r["split_ratio"], r["kept"], r["duplicate_spans"], r["duplicated_traces"], r["other_fraction"], r["z"], r["traces_not_acked"], "PASS" if r["pass"] else "FAIL"))' "$OUT/$name.report.json" 2>/dev/null \
    || cat "$OUT/$name.report.err" >&2
  return $rc
}
report_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$OUT/$1.report.json" "$2"; }
partitions_owned() { samplers_sum tailsift_sampler_partitions_owned | cut -d. -f1; }
wait_partitions() { # SECS: until the samplers own all 12 partitions; prints seconds taken
  local start=$SECONDS
  while (( SECONDS - start < $1 )); do
    [[ "$(partitions_owned)" == 12 ]] && { echo $((SECONDS - start)); return 0; }
    sleep 0.5
  done
  echo "never"; return 1
}
leader() { # prints the leader's coordinator number agreed by the reachable nodes, or nothing
  python3 - "$ADMIN_TOKEN" "$COORD_ADMIN_1" "$COORD_ADMIN_2" "$COORD_ADMIN_3" <<'EOF'
import json, sys, urllib.request
tok, urls = sys.argv[1], sys.argv[2:]
seen = []
for u in urls:
    try:
        r = urllib.request.Request(u + "/v1/cluster/status", headers={"Authorization": "Bearer " + tok})
        s = json.load(urllib.request.urlopen(r, timeout=1))
        seen.append((s.get("leader"), s.get("term")))
    except Exception:
        pass
if seen and seen[0][0] and all(x == seen[0] for x in seen):
    print(seen[0][0])
EOF
}
policy_doc() { # NAME-SUFFIX: the cluster policy (errors, slow, 10%) with a distinct name, same semantics
  cat <<EOF
policies:
  - name: errors
    status_code: { codes: [ERROR] }
  - name: slow
    latency: { threshold_ms: 1000 }
  - name: baseline-$1
    probabilistic: { percentage: 10 }
EOF
}
apply_policy() { # COORD-URL SUFFIX: prints the new version
  local f="$OUT/policy-$2.yaml"
  policy_doc "$2" >"$f"
  "$BIN/tailsift" policy apply "$f" --admin "$1" --token "$ADMIN_TOKEN" --timeout 30s |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'
}
fresh() { # NAME: reset the verifier before a scenario
  say "== scenario $1"
  "$BIN/tailsift-verify" reset --url "$VERIFY_URL" >/dev/null
}

s_steady() {
  fresh steady
  start_load steady "${STEADY_SECS:-60}"
  wait_load steady; local load="$LOAD"
  local v; v="$(verify steady)"; local rc=$?
  figure steady "$load; $v"
  [[ $rc -eq 0 ]] || fail steady "$v"
}

s_sampler_kill() {
  fresh sampler-kill
  start_load sampler-kill 60
  sleep 20
  say "SIGKILL sampler-2"
  $CLUSTER signal sampler-2 KILL
  sleep 2
  $CLUSTER start-proc sampler-2 >/dev/null
  local back; back="$(wait_partitions 120)"
  wait_load sampler-kill; local load="$LOAD"
  local v; v="$(verify sampler-kill)"; local rc=$?
  local lost split; lost="$(report_field sampler-kill lost)"; split="$(report_field sampler-kill split)"
  figure sampler-kill "$load; $v; all 12 partitions owned again ${back}s after the replacement started"
  [[ $rc -eq 0 && "$lost" == 0 && "$split" == 0 ]] || fail sampler-kill "lost $lost split $split"
}

s_scale() {
  fresh scale
  say "scale down to 1 sampler"
  $CLUSTER stop-proc sampler-2; $CLUSTER stop-proc sampler-3
  wait_partitions 120 >/dev/null
  start_load scale 90
  sleep 15
  say "scale up to 3 samplers"
  $CLUSTER start-proc sampler-2 >/dev/null; $CLUSTER start-proc sampler-3 >/dev/null
  sleep 30
  say "scale down to 1 sampler (graceful)"
  $CLUSTER stop-proc sampler-2; $CLUSTER stop-proc sampler-3
  wait_load scale; local load="$LOAD"
  local v; v="$(verify scale)"; local rc=$?
  local ratio; ratio="$(report_field scale split_ratio)"
  figure scale "$load; $v"
  $CLUSTER start-proc sampler-2 >/dev/null; $CLUSTER start-proc sampler-3 >/dev/null
  wait_partitions 120 >/dev/null
  python3 -c "import sys; sys.exit(0 if $ratio < 0.0001 else 1)" || fail scale "split ratio $ratio"
  [[ "$(report_field scale lost)" == 0 ]] || fail scale "kept traces lost"
  [[ $rc -eq 0 ]] || say "note: scale report did not pass as a whole (see $OUT/scale.report.json)"
}

s_leader_kill() {
  fresh leader-kill
  start_load leader-kill 50
  sleep 10
  local l; l="$(leader)"
  [[ -n "$l" ]] || { fail leader-kill "no agreed leader before the kill"; wait_load leader-kill; return; }
  local consumed_before; consumed_before="$(samplers_sum tailsift_sampler_spans_consumed_total)"
  say "SIGKILL coordinator-$l (the leader)"
  local t0; t0="$(date +%s.%N)"
  $CLUSTER signal "coordinator-$l" KILL
  local others=() i
  for i in 1 2 3; do [[ $i != "$l" ]] && others+=("$i"); done
  # One poller: both survivors name the same leader (not the killed one), and it says so itself.
  local new="" elected=""
  read -r new elected < <(python3 - "$t0" "$ADMIN_TOKEN" "$l" "$(eval echo \$COORD_ADMIN_${others[0]})" "$(eval echo \$COORD_ADMIN_${others[1]})" <<'EOF'
import json, sys, time, urllib.request
t0, tok, killed, urls = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def status(u):
    try:
        r = urllib.request.Request(u + "/v1/cluster/status", headers={"Authorization": "Bearer " + tok})
        return json.load(urllib.request.urlopen(r, timeout=0.5))
    except Exception:
        return None
while time.time() - t0 < 30:
    s = [status(u) for u in urls]
    if all(s) and s[0]["leader"] and s[0]["leader"] != killed and (s[0]["leader"], s[0]["term"]) == (s[1]["leader"], s[1]["term"]) \
            and "Leader" in (s[0]["state"], s[1]["state"]):
        print(s[0]["leader"], "%.2f" % (time.time() - t0))
        sys.exit(0)
    time.sleep(0.02)
print("none", "")
EOF
)
  [[ "$new" == none ]] && new=""
  local w0 version wt
  w0="$(date +%s.%N)"
  version="$(apply_policy "$(eval echo \$COORD_ADMIN_${others[0]})" "failover-$(date +%s)")"
  wt="$(python3 -c "print('%.2f' % ($(date +%s.%N) - $w0))")"
  # Every sampler applies the version written after the failover.
  local applied="no" s
  for ((i = 0; i < 300; i++)); do
    local ok=1
    for s in "$SAMPLER_ADMIN_1" "$SAMPLER_ADMIN_2" "$SAMPLER_ADMIN_3"; do
      [[ "$(metric_sum "$s" tailsift_sampler_policy_version)" == "$version" ]] || ok=0
    done
    [[ $ok == 1 ]] && { applied="yes"; break; }
    sleep 0.1
  done
  wait_load leader-kill; local load="$LOAD"
  local consumed_after; consumed_after="$(samplers_sum tailsift_sampler_spans_consumed_total)"
  $CLUSTER start-proc "coordinator-$l" >/dev/null
  local v; v="$(verify leader-kill)"; local rc=$?
  figure leader-kill "new leader coordinator-$new agreed ${elected:-never}s after SIGKILL of coordinator-$l; policy write v$version after failover took ${wt}s; every sampler applied it: $applied; samplers consumed $(python3 -c "print(int($consumed_after - $consumed_before))") spans after the kill; $load; $v"
  [[ -n "$elected" ]] && python3 -c "import sys; sys.exit(0 if $elected <= 3 else 1)" || fail leader-kill "new leader after ${elected:-never}s"
  [[ "$applied" == yes && $rc -eq 0 ]] || fail leader-kill "applied $applied, verify rc $rc"
}

s_broker_outage() {
  fresh broker-outage
  local err0 unav0; err0="$(ingest_sum tailsift_ingest_produce_errors_total)"; unav0="$(ingest_sum tailsift_ingest_requests_total 'outcome="unavailable"')"
  start_load broker-outage 90
  sleep 20
  say "stopping the broker for 30 s"
  $CLUSTER stop-proc broker
  sleep 30
  say "starting the broker again"
  local t0=$SECONDS
  $CLUSTER start-proc broker 30 >/dev/null
  local ready=""
  for ((i = 0; i < 600; i++)); do
    if curl -sf -m 1 "$INGEST_ADMIN_1/readyz" >/dev/null && curl -sf -m 1 "$INGEST_ADMIN_2/readyz" >/dev/null; then ready=$((SECONDS - t0)); break; fi
    sleep 0.2
  done
  # As an orchestrator would (liveness probe on /healthz): replace a sampler that stopped
  # answering after the outage (tansu's group coordinator can leave a member wedged).
  local replaced=0 n fails
  sleep 20  # a wedged member shows after its session timeout
  for n in 1 2 3; do
    fails=0
    for ((i = 0; i < 10; i++)); do
      curl -sf -m 2 "$(eval echo \$SAMPLER_ADMIN_$n)/healthz" >/dev/null && break
      fails=$((fails + 1)); sleep 1
    done
    if [[ $fails -ge 10 ]]; then
      say "sampler-$n fails its liveness probe: replacing it"
      $CLUSTER signal "sampler-$n" KILL; $CLUSTER start-proc "sampler-$n" >/dev/null; replaced=$((replaced + 1))
    fi
  done
  wait_load broker-outage; local load="$LOAD"
  local err1 unav1; err1="$(ingest_sum tailsift_ingest_produce_errors_total)"; unav1="$(ingest_sum tailsift_ingest_requests_total 'outcome="unavailable"')"
  local v; v="$(verify broker-outage)"; local rc=$?
  local recovered=$((SECONDS - t0))
  figure broker-outage "ingest answered $((unav1 - unav0)) requests UNAVAILABLE ($((err1 - err0)) retryable produce errors); ingest ready ${ready:-never}s after the broker came back; $replaced samplers replaced after failing their liveness probe; every acknowledged kept trace verified ${recovered}s after; $load; $v"
  [[ $((unav1 - unav0)) -gt 0 ]] || fail broker-outage "no retryable answers seen"
  [[ $rc -eq 0 ]] || fail broker-outage "$v"
}

s_backend_outage() {
  fresh backend-outage
  start_load backend-outage 75
  sleep 15
  say "verifier (export backend) down for 30 s"
  "$BIN/tailsift-verify" down --url "$VERIFY_URL" >/dev/null
  local t0=$SECONDS peak_queue=0 paused=0 peak_lag=0 q p lag retries0 retries1
  retries0="$(samplers_sum tailsift_sampler_export_requests_total 'outcome="retry"')"
  while (( SECONDS - t0 < 30 )); do
    q="$(samplers_sum tailsift_sampler_export_queue_traces)"; p="$(samplers_sum tailsift_sampler_consumption_paused)"
    lag="$(samplers_sum tailsift_sampler_consumer_lag_records)"
    peak_queue="$(python3 -c "print(int(max($peak_queue, $q)))")"; paused="$(python3 -c "print(int(max($paused, $p)))")"
    peak_lag="$(python3 -c "print(int(max($peak_lag, $lag)))")"
    sleep 1
  done
  retries1="$(samplers_sum tailsift_sampler_export_requests_total 'outcome="retry"')"
  local refused; refused="$(curl -sf "$VERIFY_URL/control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refused_requests"])')"
  "$BIN/tailsift-verify" up --url "$VERIFY_URL" >/dev/null
  wait_load backend-outage; local load="$LOAD"
  local v; v="$(verify backend-outage)"; local rc=$?
  figure backend-outage "during the outage: samplers paused consumption: $paused of 3, peak consumer lag $peak_lag records, $refused export requests refused by the backend, $(python3 -c "print(int($retries1 - $retries0))") export attempts retried; $load; $v"
  [[ "$paused" -gt 0 ]] || fail backend-outage "no sampler paused consumption (backpressure not visible)"
  [[ $rc -eq 0 ]] || fail backend-outage "$v"
}

s_policy_change() {
  fresh policy-change
  start_load policy-change 60
  sleep 8
  local n="${POLICY_CHANGES:-15}"
  python3 - "$n" "$BIN/tailsift" "$ADMIN_TOKEN" "$OUT" "$COORD_ADMIN_1" "$SAMPLER_ADMIN_1" "$SAMPLER_ADMIN_2" "$SAMPLER_ADMIN_3" >"$OUT/policy-change.propagation" <<'EOF'
import json, subprocess, sys, time, urllib.request
n, tailsift, token, out, coord = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
samplers = sys.argv[6:]
def version(u):
    try:
        for line in urllib.request.urlopen(u + "/metrics", timeout=1).read().decode().splitlines():
            if line.startswith("tailsift_sampler_policy_version"):
                return int(float(line.split()[-1]))
    except Exception:
        return None
delays, missing = [], 0
for k in range(n):
    path = "%s/policy-change-%d.yaml" % (out, k)
    open(path, "w").write("policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: slow\n    latency: { threshold_ms: 1000 }\n  - name: baseline-%d\n    probabilistic: { percentage: 10 }\n" % k)
    t0 = time.time()
    r = subprocess.run([tailsift, "policy", "apply", path, "--admin", coord, "--token", token], capture_output=True, text=True)
    if r.returncode != 0:
        print("apply failed: " + r.stderr, file=sys.stderr); missing += len(samplers); continue
    v = json.loads(r.stdout)["version"]
    pending = set(samplers)
    while pending and time.time() - t0 < 30:
        for u in list(pending):
            got = version(u)
            if got is not None and got >= v:
                delays.append(time.time() - t0); pending.discard(u)
        time.sleep(0.01)
    missing += len(pending)
    time.sleep(2)
delays.sort()
q = lambda f: delays[min(len(delays) - 1, int(round(f * (len(delays) - 1))))] * 1000 if delays else float("nan")
print("%d versions x %d samplers: %d applied, %d missing; propagation (PUT sent -> sampler applies, 10 ms polling) p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (n, len(samplers), len(delays), missing, q(0.5), q(0.99), q(1.0)))
sys.exit(1 if missing else 0)
EOF
  local prc=$?
  wait_load policy-change; local load="$LOAD"
  local v; v="$(verify policy-change)"; local rc=$?
  figure policy-change "$(cat "$OUT/policy-change.propagation"); $load; $v"
  [[ $prc -eq 0 ]] || fail policy-change "a sampler did not apply a version"
  [[ $rc -eq 0 ]] || fail policy-change "$v"
}

s_prometheus() {
  say "== scenario prometheus"
  local i up="" targets
  for ((i = 0; i < 60; i++)); do
    targets="$(curl -sf "$PROMETHEUS/api/v1/targets?state=active" | python3 -c 'import json,sys; t=json.load(sys.stdin)["data"]["activeTargets"]; print("%d/%d" % (sum(x["health"]=="up" for x in t), len(t)))')"
    [[ "$targets" == "8/8" ]] && { up=yes; break; }
    sleep 1
  done
  local q; q="$(curl -sf "$PROMETHEUS/api/v1/query" --data-urlencode 'query=count(up == 1) by (job)' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(", ".join("%s %s" % (x["metric"]["job"], x["value"][1]) for x in sorted(r, key=lambda x: x["metric"]["job"])))')"
  local spans; spans="$(curl -sf "$PROMETHEUS/api/v1/query" --data-urlencode 'query=sum(tailsift_ingest_spans_received_total)' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")')"
  local lint_ok=0 lint_total=0 u problems=""
  for u in "$COORD_ADMIN_1" "$COORD_ADMIN_2" "$COORD_ADMIN_3" "$INGEST_ADMIN_1" "$INGEST_ADMIN_2" "$SAMPLER_ADMIN_1" "$SAMPLER_ADMIN_2" "$SAMPLER_ADMIN_3"; do
    lint_total=$((lint_total + 1))
    local msg; msg="$(curl -sf "$u/metrics" | promtool check metrics 2>&1)"
    if [[ $? -eq 0 ]]; then lint_ok=$((lint_ok + 1)); else problems+=" $u: $msg"; fi
  done
  figure prometheus "targets up ${targets:-none} (healthy/active); up by job: $q; sum(tailsift_ingest_spans_received_total) = $spans; promtool check metrics passed on $lint_ok of $lint_total nodes"
  [[ "$up" == yes ]] || fail prometheus "targets $targets"
  [[ $lint_ok -eq $lint_total ]] || fail prometheus "promtool:$problems"
}

s_ingest_flood() {
  fresh ingest-flood
  local pid; pid="$($CLUSTER pid ingest-1)"
  [[ -n "$pid" ]] || { fail ingest-flood "ingest-1 has no pid"; return; }
  # The budget ingest-1 runs with (limits.max_in_flight_bytes; 256 MiB unless configured).
  local budget="${FLOOD_BUDGET_BYTES:-268435456}"
  local http_url="http://127.0.0.1:$(( ${INGEST_1##*:} + 1 ))/v1/traces"  # OTLP/HTTP = gRPC port + 1
  local err0; err0="$(ingest_sum tailsift_ingest_produce_errors_total 'kind="memory_limit"')"
  start_load ingest-flood 60
  sleep 10
  say "flooding ingest-1 with ${FLOOD_CONCURRENCY:-64} concurrent 16 MiB requests for ${FLOOD_SECS:-30} s"
  # Each body is one unknown protobuf field of ~16 MiB: valid OTLP that carries no span, so the
  # flood costs the node its full size in transit without adding traces to the verification.
  python3 - "$http_url" "$pid" "${FLOOD_CONCURRENCY:-64}" "${FLOOD_SECS:-30}" >"$OUT/ingest-flood.flood" <<'EOF2'
import http.client, sys, threading, time, urllib.parse
url, pid, conc, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
u = urllib.parse.urlparse(url)
n = 16 * 1024 * 1024 - 16
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F; v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v: return bytes(out)
body = b"\x7a" + varint(n) + b"\0" * n
def rss():
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"): return int(line.split()[1]) * 1024
    except Exception:
        return 0
counts, lock, stop = {}, threading.Lock(), time.time() + secs
def worker():
    while time.time() < stop:
        k = "error"
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            c.request("POST", u.path, body=body, headers={"Content-Type": "application/x-protobuf"})
            r = c.getresponse(); r.read()
            k = str(r.status) + ("+retry-after" if r.status == 503 and r.getheader("Retry-After") else "")
            c.close()
        except Exception:
            pass
        with lock: counts[k] = counts.get(k, 0) + 1
before, peak = rss(), 0
ts = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
for t in ts: t.start()
while any(t.is_alive() for t in ts):
    peak = max(peak, rss()); time.sleep(0.2)
print("%d flood requests: %s; ingest-1 RSS %d MiB before, peak %d MiB (growth %d MiB)" % (
    sum(counts.values()), ", ".join("%s %d" % kv for kv in sorted(counts.items())),
    before >> 20, peak >> 20, (peak - before) >> 20))
print("GROWTH %d" % (peak - before))
print("REFUSED %d" % counts.get("503+retry-after", 0))
print("BARE503 %d" % counts.get("503", 0))
EOF2
  wait_load ingest-flood; local load="$LOAD"
  local err1; err1="$(ingest_sum tailsift_ingest_produce_errors_total 'kind="memory_limit"')"
  local v; v="$(verify ingest-flood)"; local rc=$?
  local lost split; lost="$(report_field ingest-flood lost)"; split="$(report_field ingest-flood split)"
  local growth refused bare
  growth="$(awk '$1 == "GROWTH" { print $2 }' "$OUT/ingest-flood.flood")"
  refused="$(awk '$1 == "REFUSED" { print $2 }' "$OUT/ingest-flood.flood")"
  bare="$(awk '$1 == "BARE503" { print $2 }' "$OUT/ingest-flood.flood")"
  figure ingest-flood "$(head -1 "$OUT/ingest-flood.flood"); $((err1 - err0)) memory_limit refusals counted; $load; $v"
  [[ "${refused:-0}" -gt 0 ]] || fail ingest-flood "no request refused with 503 and Retry-After"
  [[ "${bare:-0}" == 0 ]] || fail ingest-flood "$bare 503 answers without Retry-After"
  [[ "${growth:-0}" -lt $((2 * budget + 268435456)) ]] || fail ingest-flood "ingest-1 RSS grew ${growth} bytes"
  [[ $rc -eq 0 && "$lost" == 0 && "$split" == 0 ]] || fail ingest-flood "lost $lost split $split, verify rc $rc"
}

s_skewed_producer() {
  [[ "${TAILSIFT_CLUSTER_NO_BUILD:-0}" == 1 ]] || cargo build --release --locked -q -p tailsift-bench-tools >&2
  fresh skewed-producer
  local before; before="$(samplers_sum tailsift_sampler_clock_skewed_records_total)"
  local decided_before; decided_before="$(samplers_sum tailsift_sampler_decisions_total)"
  start_load skewed-producer 60
  sleep 20
  say "a producer whose clock is an hour ahead writes one record to every partition"
  "$BIN/tailsift-skewed-producer" --brokers "$BROKERS" --ahead-secs 3600 >>"$OUT/skewed-producer.out" 2>&1 \
    || fail skewed-producer "tailsift-skewed-producer failed (see $OUT/skewed-producer.out)"
  sleep 10
  say "and one dated in the year 2100"
  "$BIN/tailsift-skewed-producer" --brokers "$BROKERS" --timestamp-ms 4102444800000 >>"$OUT/skewed-producer.out" 2>&1 \
    || fail skewed-producer "tailsift-skewed-producer failed (see $OUT/skewed-producer.out)"
  wait_load skewed-producer; local load="$LOAD"
  local v; v="$(verify skewed-producer)"; local rc=$?
  local after; after="$(samplers_sum tailsift_sampler_clock_skewed_records_total)"
  local decided; decided="$(samplers_sum tailsift_sampler_decisions_total)"
  local lost split; lost="$(report_field skewed-producer lost)"; split="$(report_field skewed-producer split)"
  figure skewed-producer "$load; $v; skewed records clamped by the samplers: $(python3 -c "print(int($after - $before))"); traces decided during the scenario: $(python3 -c "print(int($decided - $decided_before))")"
  [[ $rc -eq 0 && "$lost" == 0 && "$split" == 0 ]] || fail skewed-producer "lost $lost split $split"
}

s_oversized() {
  fresh oversized
  # The verifier plays a backend with the usual 4 MiB gRPC message limit (RESOURCE_EXHAUSTED above).
  curl -sf -X POST "$VERIFY_URL/control/limit?max_message_bytes=4194304" >/dev/null || { fail oversized "verifier has no /control/limit"; return; }
  local split0 dead0; split0="$(samplers_sum tailsift_sampler_export_split_traces_total)"
  dead0="$(samplers_sum tailsift_sampler_export_dead_letter_spans_total)"
  local http="${INGEST_1%:*}:$(( ${INGEST_1##*:} + 1 ))"  # the ingest's OTLP/HTTP port
  local sent
  sent="$(python3 - "$http" "$OUT/oversized-1.manifest.jsonl" <<'EOF'
import json, os, sys, time, urllib.request
url, manifest = sys.argv[1] + "/v1/traces", sys.argv[2]
def post(spans):
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "oversized"}}]},
                                          "scopeSpans": [{"spans": spans}]}]}).encode()
    for attempt in range(50):
        try:
            urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=30).read()
            return len(body)
        except Exception as e:
            time.sleep(0.5)
    raise SystemExit("ingest refused a request 50 times: %s" % e)
def span(tid, i, name, filler):
    now = time.time_ns()
    s = {"traceId": tid, "spanId": "%016x" % (i + 1), "name": name, "kind": 2,
         "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000000),
         "attributes": [{"key": "filler", "value": {"stringValue": "x" * filler}}]}
    if i == 0:
        s["status"] = {"code": 2}
    else:
        s["parentSpanId"] = "%016x" % 1
    return s
entries, total = [], 0
big = os.urandom(16).hex()
for chunk in range(20):
    total += post([span(big, i, "big", 340) for i in range(chunk * 1000, (chunk + 1) * 1000)])
entries.append(big)
for n in range(200):
    tid = os.urandom(16).hex()
    post([span(tid, i, "ordinary", 50) for i in range(3)])
    entries.append(tid)
with open(manifest, "w") as f:
    for k, tid in enumerate(entries):
        f.write(json.dumps({"trace_id": tid, "spans": 20000 if k == 0 else 3, "is_error": True, "is_slow": False,
                            "duration_ns": 1000000, "acked": True}) + "\n")
print("%.1f" % (total / 1e6))
EOF
)" || { fail oversized "sending the traces failed"; return; }
  : >"$OUT/oversized-2.manifest.jsonl"  # verify() reads two manifests; all traffic is in the first
  local v; v="$(verify oversized --no-fraction)"; local rc=$?
  local refused; refused="$(curl -sf "$VERIFY_URL/control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["oversized_requests"])')"
  local split dead; split="$(python3 -c "print(int($(samplers_sum tailsift_sampler_export_split_traces_total) - $split0))")"
  dead="$(python3 -c "print(int($(samplers_sum tailsift_sampler_export_dead_letter_spans_total) - $dead0))")"
  curl -sf -X POST "$VERIFY_URL/control/limit?max_message_bytes=0" >/dev/null
  local lost splitt; lost="$(report_field oversized lost)"; splitt="$(report_field oversized split)"
  figure oversized "one error trace of 20,000 spans (${sent} MB of OTLP/JSON) then 200 error traces, backend limit 4 MiB: delivered $(report_field oversized must_keep_complete) of $(report_field oversized must_keep) traces whole, lost $lost, split $splitt; $refused requests refused as too large; samplers cut $split traces into several requests; $dead spans dead-lettered or dropped; $v"
  [[ $rc -eq 0 && "$lost" == 0 && "$splitt" == 0 ]] || fail oversized "$v"
  [[ "$refused" == 0 && "$dead" == 0 ]] || fail oversized "$refused requests refused, $dead spans dead-lettered or dropped"
}

ALL=(steady sampler-kill scale leader-kill broker-outage backend-outage policy-change prometheus ingest-flood skewed-producer oversized)
[[ $# -eq 0 ]] && set -- "${ALL[@]}"
for s in "$@"; do
  [[ "$s" =~ ^[0-9]+$ ]] && s="${ALL[$((s - 1))]}"
  case "$s" in
    steady) s_steady ;; sampler-kill) s_sampler_kill ;; scale) s_scale ;; leader-kill) s_leader_kill ;;
    broker-outage) s_broker_outage ;; backend-outage) s_backend_outage ;; policy-change) s_policy_change ;;
    prometheus) s_prometheus ;; ingest-flood) s_ingest_flood ;; skewed-producer) s_skewed_producer ;;
    oversized) s_oversized ;;
    *) echo "unknown scenario $s (${ALL[*]})" >&2; exit 2 ;;
  esac
done
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "faults: FAILED: ${FAILED[*]} (details in $OUT)"; exit 1
fi
echo "faults: all passed (figures in $OUT/results.txt)"
