#!/usr/bin/env bash
# Installs the tansu Kafka-protocol broker used by the tests and local runs, once.
#
# tansu is built from crates.io with the storage engines we use (memory:// and sqlite://) and
# cached outside the repository, so a fresh clone reuses it: ~20 minutes the first time on a
# 2-core machine, instant afterwards. Prints the binary's path on stdout.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
ROOT="${TAILSIFT_TOOLS:-$HOME/.cache/tailsift}/tansu-${TANSU_VERSION}"
BIN="$ROOT/bin/tansu"

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

echo "installing tansu ${TANSU_VERSION} into ${ROOT} (first time only, takes a while)..." >&2
mkdir -p "$ROOT"
cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore,libsql \
  --root "$ROOT" --target-dir "${TMPDIR:-/tmp}/tailsift-tansu-build" >&2
rm -rf "${TMPDIR:-/tmp}/tailsift-tansu-build"
"$BIN" --version >&2
echo "$BIN"
