//! Inputs found by fuzzing (`bash fuzz/run.sh`, target `otlp_split`), kept as regression tests.

use prost::Message;
use tailsift_otlp::{split_by_trace, ExportTraceServiceRequest, SplitOptions};

fn unhex(parts: &[&str]) -> Vec<u8> {
    hex::decode(parts.concat()).expect("hex")
}

/// The split's contract on any input: no panic; and when the input is a valid
/// `ExportTraceServiceRequest`, every record is one too, holding exactly one trace.
fn check(data: &[u8]) {
    let Ok(out) = split_by_trace(data, SplitOptions { max_record_bytes: 2048 }) else {
        return;
    };
    if ExportTraceServiceRequest::decode(data).is_err() {
        return;
    }
    for rec in &out.records {
        let req = ExportTraceServiceRequest::decode(rec.payload.as_slice()).expect("records of a valid request decode");
        for s in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            assert_eq!(s.trace_id.as_slice(), rec.trace_id.as_slice());
        }
    }
}

/// A resource whose attribute key claims more bytes than the resource holds. The split walks only
/// spans and copies resources byte for byte, so the (invalid) resource reaches the record as sent;
/// the fuzz target first asserted that every record decodes, which holds only for valid input.
#[test]
fn malformed_resource_bytes_are_copied_not_parsed() {
    let data = unhex(&[
        "0aeb010a150a130affff6572766963652e6e616d6512030a016112d1010a030a016c12c9010a10000000000000000000",
        "0000000000000712086534681ac817163a220800000000000000012a0367657430023900002a36fe9c97174110272a36",
        "fe9c97174a180a0b6e65742e686f73742e697012090a07312e322e332e344a130a0d6e65742e686f73742e706f727412",
        "0218504a130a0c706565722e7365727669636512030a01624a140a0b6e65742e706565722e697012050a033a3a314a13",
        "0a0d6e65742e706565722e706f7274120218015a1509e8030000000000001201781a070a0161120218017a0218020a55",
        "0a001251124f0a100000000000000000000000000000000712080000000000000002220800000000000000014a270a21",
        "6f74656c2e7a69706b696e2e616273656e744669656c642e737461727454696d6512021001",
    ]);
    assert!(
        ExportTraceServiceRequest::decode(data.as_slice()).is_err(),
        "the input itself is not valid protobuf"
    );
    let out = split_by_trace(&data, SplitOptions { max_record_bytes: 2048 }).expect("its spans are well-formed");
    assert_eq!(out.records.len(), 1);
    check(&data);
}
