#!/usr/bin/env bash
# Installs (once) the pinned puppeteer-core that tests/tests/console.rs drives Chromium with, and
# prints its node_modules directory on stdout (progress on stderr only); tests/run.sh exports it as
# TAILSIFT_PUPPETEER. Only puppeteer-core (no browser download): the browser is Debian's
# `chromium` package, which tests/run.sh installs. puppeteer-core 24.x is the last line that runs
# on Debian's Node 20 (25.x needs Node 22).
#
# Cached in ${TAILSIFT_TOOLS:-~/.cache/tailsift}/puppeteer-core-<version>; installed again only when
# the package is missing or is not the pinned version.
set -euo pipefail

VERSION=24.43.1
ROOT="${TAILSIFT_TOOLS:-$HOME/.cache/tailsift}/puppeteer-core-${VERSION}"
MODULES="$ROOT/node_modules"

is_pinned() {
  [[ -f "$MODULES/puppeteer-core/package.json" ]] &&
    node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' \
      "$MODULES/puppeteer-core/package.json" "$VERSION"
}

if is_pinned; then
  echo "$MODULES"
  exit 0
fi
command -v npm >/dev/null || { echo "puppeteer.sh: npm is needed to install puppeteer-core" >&2; exit 1; }
echo "installing puppeteer-core ${VERSION} into ${ROOT} (first time only)..." >&2
mkdir -p "$ROOT"
(cd "$ROOT" && npm install --loglevel=error --no-audit --no-fund --save-exact --prefix "$ROOT" "puppeteer-core@${VERSION}" >&2)
is_pinned || { echo "puppeteer.sh: $MODULES/puppeteer-core is not version ${VERSION}" >&2; exit 1; }
echo "$MODULES"
