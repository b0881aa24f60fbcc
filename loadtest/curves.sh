#!/usr/bin/env bash
# Cost curves of the sampler engine (engine-level: no broker, no exporter), release build:
# CPU per span and memory per buffered span against traces in flight, spans per trace,
# partitions owned and policy size, and the engine's share of a handover against partitions
# moved and traces in flight. Writes one CSV per curve to RESULTS_DIR and PNG plots to
# docs/scaling/ (matplotlib in a cached venv). docs/scaling.md reports a run.
# Usage: bash loadtest/curves.sh [RESULTS_DIR] [--quick]   (default RESULTS_DIR: a new temp dir)
# Takes about a minute on a 2-core machine (the 1M-traces point buffers ~2.2 GB of RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=""
QUICK=""
for a in "$@"; do
  case "$a" in
    --quick) QUICK=--quick ;;
    *) OUT="$a" ;;
  esac
done
OUT="${OUT:-$(mktemp -d)}"
export CARGO_INCREMENTAL=0
cargo build --release --locked -p tailsift-bench-tools --bin tailsift-bench-curves >&2
mkdir -p "$OUT"
echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)" | tee "$OUT/host.txt"
./target/release/tailsift-bench-curves all --out "$OUT" $QUICK

mkdir -p docs/scaling
bash loadtest/plot.sh loadtest/plot_curves.py "$OUT" docs/scaling
echo "CSVs in $OUT, plots in docs/scaling/"
