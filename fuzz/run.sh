#!/usr/bin/env bash
# Fuzzes every decoder for SECONDS each (default 60): bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Uses cargo-fuzz (libFuzzer, AddressSanitizer) on the stable toolchain through RUSTC_BOOTSTRAP=1;
# installs cargo-fuzz when missing. Seeds are generated from the translators' own encoders;
# the corpus grows in fuzz/corpus/<target> (not committed). A crash stops the run, leaves its
# input in fuzz/artifacts/<target>/ and exits non-zero: turn it into a regression test in
# shared/translate or shared/otlp.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(zipkin_v2_json zipkin_v2_proto zipkin_v1_json zipkin_v1_thrift jaeger_thrift_binary jaeger_thrift_compact
             jaeger_agent_compact jaeger_agent_binary jaeger_proto otlp_split otlp_json)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
rm -rf seeds
cargo run --quiet --bin seeds -- seeds
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    rm -rf "artifacts/$t"
    echo "== fuzzing $t for ${secs}s"
    cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -max_len=70000 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
        | grep -E "^(==|#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|ERROR|SUMMARY|Test unit written|artifact" || true
    if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/oom-*" >/dev/null || compgen -G "artifacts/$t/timeout-*" >/dev/null; then
        echo "FAILED: $t found a crash, see fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "fuzzing done: ${#targets[@]} targets, ${secs}s each, no crash"
