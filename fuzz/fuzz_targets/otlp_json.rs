#![no_main]
//! OTLP/JSON decoding, then the split.
use libfuzzer_sys::fuzz_target;
use tailsift_otlp::{split_by_trace, SplitOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(pb) = tailsift_otlp::json::json_to_protobuf(data) {
        split_by_trace(&pb, SplitOptions { max_record_bytes: 4096 }).expect("re-encoded JSON always splits");
    }
});
