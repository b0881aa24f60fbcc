// Drives the OpenTelemetry JS Jaeger remote sampler (@opentelemetry/sampler-jaeger-remote) against
// a coordinator's admin port, for tests/tests/coordinator_admin.rs.
//
// usage: node jaeger_remote_sampler.js ENDPOINT SERVICE[,SERVICE...] SPAN[,SPAN...] N
// env:   TAILSIFT_NODE_MODULES = the node_modules directory the packages were installed in
// Prints one JSON object: {service: {"sampler": toString(), "updated": bool, "kept": {span: count}}}
// after asking each service's sampler about N random trace IDs per span name.
'use strict';
const path = require('path');
const crypto = require('crypto');
const mods = process.env.TAILSIFT_NODE_MODULES;
const api = require(path.join(mods, '@opentelemetry/api'));
const { JaegerRemoteSampler } = require(path.join(mods, '@opentelemetry/sampler-jaeger-remote'));
const { AlwaysOffSampler, SamplingDecision } = require(path.join(mods, '@opentelemetry/sdk-trace'));

const [endpoint, services, spans, n] = process.argv.slice(2);

async function one(service) {
  const initial = new AlwaysOffSampler();
  const sampler = new JaegerRemoteSampler({ endpoint, serviceName: service, poolingInterval: 100, initialSampler: initial });
  const deadline = Date.now() + 10000;
  while (sampler._sampler === initial && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const kept = {};
  for (const span of spans.split(',')) {
    kept[span] = 0;
    for (let i = 0; i < Number(n); i++) {
      const traceId = crypto.randomBytes(16).toString('hex');
      const r = sampler.shouldSample(api.ROOT_CONTEXT, traceId, span, api.SpanKind.SERVER, {}, []);
      if (r.decision === SamplingDecision.RECORD_AND_SAMPLED) kept[span]++;
    }
  }
  return { sampler: sampler.toString(), updated: sampler._sampler !== initial, kept };
}

(async () => {
  const out = {};
  for (const s of services.split(',')) out[s] = await one(s);
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
