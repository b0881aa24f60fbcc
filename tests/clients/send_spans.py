#!/usr/bin/env python3
"""Sends one small trace to a Tailsift ingest node through a real OpenTelemetry Python exporter,
and prints what it sent as JSON on stdout (trace ID, and per span name: span ID, parent span ID,
kind, attributes), for the end-to-end test to compare with what reached Kafka.

Modes (each needs its virtualenv, created by tests/clients/setup.sh):
  zipkin-v2-json    opentelemetry-exporter-zipkin-json, v2 JSON   -> http://HOST:PORT/api/v2/spans
  zipkin-v1-json    opentelemetry-exporter-zipkin-json, v1 JSON   -> http://HOST:PORT/api/v1/spans
  zipkin-v2-proto   opentelemetry-exporter-zipkin-proto-http       -> http://HOST:PORT/api/v2/spans
  jaeger-agent      opentelemetry-exporter-jaeger-thrift, agent    -> UDP HOST:PORT (compact thrift)
  jaeger-collector  opentelemetry-exporter-jaeger-thrift, collector-> http://HOST:PORT/api/traces

  --id-bits 64 makes the SDK generate 64-bit trace IDs (high half zero), as old Zipkin and
  Jaeger clients do.
"""
import argparse
import json
import random
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode


class Id64(RandomIdGenerator):
    def generate_trace_id(self):
        return random.getrandbits(64) | 1


class Checked(SpanExporter):
    """Delegates to an exporter and remembers failures (SimpleSpanProcessor only logs them)."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = []

    def export(self, spans):
        try:
            r = self.inner.export(spans)
        except Exception as e:  # noqa: BLE001 - reported below
            self.failures.append(repr(e))
            raise
        if r is not None and r != SpanExportResult.SUCCESS:
            self.failures.append(f"export returned {r}")
        return r

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def exporter(mode, endpoint):
    if mode in ("zipkin-v2-json", "zipkin-v1-json"):
        from opentelemetry.exporter.zipkin.json import ZipkinExporter
        from opentelemetry.exporter.zipkin.encoder import Protocol

        version = Protocol.V1 if mode == "zipkin-v1-json" else Protocol.V2
        # The v1 encoder compares max_tag_value_length with 0 and fails on its default (None).
        return ZipkinExporter(version=version, endpoint=endpoint, max_tag_value_length=4096)
    if mode == "zipkin-v2-proto":
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter

        return ZipkinExporter(endpoint=endpoint)
    if mode == "jaeger-agent":
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        host, port = endpoint.rsplit(":", 1)
        return JaegerExporter(agent_host_name=host, agent_port=int(port), udp_split_oversized_batches=True)
    if mode == "jaeger-collector":
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        return JaegerExporter(collector_endpoint=endpoint)
    raise SystemExit(f"unknown mode {mode}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--service", default="py-client")
    p.add_argument("--id-bits", type=int, default=128, choices=(64, 128))
    a = p.parse_args()

    provider = TracerProvider(
        resource=Resource.create({"service.name": a.service, "deployment.environment": "ci"}),
        id_generator=Id64() if a.id_bits == 64 else RandomIdGenerator(),
    )
    ex = Checked(exporter(a.mode, a.endpoint))
    provider.add_span_processor(SimpleSpanProcessor(ex))
    tracer = provider.get_tracer("tailsift.e2e", "1.0.0")

    sent = {}
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/checkout")
        root.set_attribute("cart.items", 3)
        with tracer.start_as_current_span("charge-card", kind=SpanKind.CLIENT) as child:
            child.set_attribute("payment.provider", "acme")
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "card declined"))
            sent["charge-card"] = child
        with tracer.start_as_current_span("render") as internal:
            sent["render"] = internal
        sent["checkout"] = root
    provider.force_flush()
    provider.shutdown()
    if ex.failures:
        raise SystemExit(f"{a.mode}: export failed: {ex.failures}")

    out = {"trace_id": None, "spans": {}}
    for name, s in sent.items():
        ctx = s.get_span_context()
        out["trace_id"] = f"{ctx.trace_id:032x}"
        out["spans"][name] = {
            "span_id": f"{ctx.span_id:016x}",
            "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
        }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
