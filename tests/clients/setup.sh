#!/usr/bin/env bash
# Creates (once) the Python virtualenvs the real-client tests use and prints nothing else but
# progress on stderr. Cached under ${TAILSIFT_VENVS:-~/.cache/tailsift/venvs}; a venv is rebuilt
# only when its pinned requirements change.
#
#   zipkin: the current OpenTelemetry Python SDK with its Zipkin exporters (v2 JSON and v2 proto3).
#   pyzipkin: py_zipkin 0.20, Yelp's Zipkin client, the last release with v1 thrift (all four Zipkin
#           encodings); it needs protobuf 3.20.
#   jaeger: the last SDK release that shipped the Jaeger thrift exporter (agent UDP compact thrift
#           and collector HTTP binary thrift); the exporter was removed after 1.21.
#   kubernetes-validate: validates the rendered Kubernetes manifests against the API schemas it
#           ships (Kubernetes 1.25 to 1.37 in 1.37.0), for tests/tests/deploy.rs.
set -euo pipefail
root="${TAILSIFT_VENVS:-$HOME/.cache/tailsift/venvs}"
mkdir -p "$root"

make_venv() {
    local name="$1"; shift
    local want="$*"
    local dir="$root/$name"
    if [[ -f "$dir/.requirements" && "$(cat "$dir/.requirements")" == "$want" && -x "$dir/bin/python" ]]; then
        return 0
    fi
    echo "creating Python venv $dir ($want)" >&2
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
    echo "$want" > "$dir/.requirements"
}

make_venv zipkin \
    opentelemetry-api==1.38.0 opentelemetry-sdk==1.38.0 \
    opentelemetry-exporter-zipkin-json==1.38.0 opentelemetry-exporter-zipkin-proto-http==1.38.0
make_venv pyzipkin \
    py_zipkin==0.20.2 thriftpy2==0.7.1 protobuf==3.20.3 six==1.17.0
make_venv jaeger \
    opentelemetry-api==1.21.0 opentelemetry-sdk==1.21.0 \
    opentelemetry-exporter-jaeger-thrift==1.21.0 thrift==0.16.0
make_venv kubernetes-validate \
    kubernetes-validate==1.37.0
echo "$root"
