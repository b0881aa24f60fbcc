#!/usr/bin/env python3
"""Sends one small trace through py_zipkin (Yelp's Zipkin client library) in one of its four
encodings, and prints what it sent as JSON (trace ID, and per span name: span ID, parent span ID).

  --encoding V1_THRIFT  -> POST /api/v1/spans, application/x-thrift (what old Zipkin clients send)
  --encoding V1_JSON    -> POST /api/v1/spans, application/json
  --encoding V2_JSON    -> POST /api/v2/spans, application/json
  --encoding V2_PROTO3  -> POST /api/v2/spans, application/x-protobuf

py_zipkin makes 64-bit trace IDs, as most Zipkin clients do. 0.20 is the last release with thrift
(it needs protobuf 3.20), hence its own virtualenv.
"""
import argparse
import json
import urllib.request

from py_zipkin import Kind
from py_zipkin.encoding import Encoding
from py_zipkin.transport import BaseTransportHandler
from py_zipkin.zipkin import zipkin_span

ROUTES = {
    "V1_THRIFT": ("/api/v1/spans", "application/x-thrift"),
    "V1_JSON": ("/api/v1/spans", "application/json"),
    "V2_JSON": ("/api/v2/spans", "application/json"),
    "V2_PROTO3": ("/api/v2/spans", "application/x-protobuf"),
}


class Http(BaseTransportHandler):
    def __init__(self, base, encoding):
        path, self.content_type = ROUTES[encoding]
        self.url = base.rstrip("/") + path
        self.sent = 0

    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        if isinstance(payload, str):
            payload = payload.encode()
        req = urllib.request.Request(self.url, data=payload, headers={"Content-Type": self.content_type}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 202:
                raise SystemExit(f"{self.url}: HTTP {r.status}")
        self.sent += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--encoding", required=True, choices=sorted(ROUTES))
    p.add_argument("--base", required=True, help="http://HOST:PORT of the Zipkin receiver")
    p.add_argument("--service", default="py-zipkin")
    a = p.parse_args()

    transport = Http(a.base, a.encoding)
    enc = getattr(Encoding, a.encoding)
    out = {"trace_id": None, "spans": {}}
    with zipkin_span(
        service_name=a.service,
        span_name="checkout",
        transport_handler=transport,
        sample_rate=100.0,
        encoding=enc,
        kind=Kind.SERVER,
        binary_annotations={"http.route": "/checkout"},
    ) as root:
        with zipkin_span(
            service_name=a.service,
            span_name="charge-card",
            kind=Kind.CLIENT,
            binary_annotations={"payment.provider": "acme", "error": "card declined"},
        ) as child:
            child.add_sa_binary_annotation(port=443, service_name="payments", host="10.1.2.3")
            out["spans"]["charge-card"] = {
                "span_id": child.zipkin_attrs.span_id,
                "parent_id": child.zipkin_attrs.parent_span_id,
            }
        out["spans"]["checkout"] = {"span_id": root.zipkin_attrs.span_id, "parent_id": root.zipkin_attrs.parent_span_id}
        out["trace_id"] = root.zipkin_attrs.trace_id.rjust(32, "0")
    if transport.sent == 0:
        raise SystemExit("py_zipkin sent nothing")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
