#![no_main]
//! The OTLP hot path: the wire-level split of an encoded ExportTraceServiceRequest. It must never
//! panic; and for a valid request, every record it produces must decode and hold exactly one trace.
//! (It walks only spans: resource and scope bytes are copied as sent, so an invalid request can
//! give invalid records; see shared/otlp/tests/fuzz_regressions.rs.)
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tailsift_otlp::{split_by_trace, ExportTraceServiceRequest, SplitOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(out) = split_by_trace(data, SplitOptions { max_record_bytes: 2048 }) else { return };
    let Ok(input) = ExportTraceServiceRequest::decode(data) else { return };
    let mut spans = 0;
    for rec in &out.records {
        let req = ExportTraceServiceRequest::decode(rec.payload.as_slice()).expect("records of a valid request decode");
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    spans += 1;
                    assert_eq!(s.trace_id.as_slice(), rec.trace_id.as_slice(), "one trace per record");
                }
            }
        }
    }
    let sent: usize = input.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    assert_eq!(spans + out.rejected_spans(), sent, "every span accounted for");
});
