//! Shared by the fuzz targets: whatever a decoder accepts must also survive the rest of the ingest
//! path (re-encoding and the wire-level split by trace ID).

use prost::Message;
use tailsift_otlp::{split_by_trace, SplitOptions};
use tailsift_translate::{ExportTraceServiceRequest, TranslateError};

pub fn check(decoded: Result<ExportTraceServiceRequest, TranslateError>) {
    match decoded {
        Ok(req) => {
            let bytes = req.encode_to_vec();
            let out = split_by_trace(&bytes, SplitOptions { max_record_bytes: 4096 }).expect("a translated request always splits");
            let spans: usize = out.accepted_spans + out.rejected_spans();
            assert_eq!(spans, tailsift_translate::span_count(&req), "every span accounted for");
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "errors name the problem");
        }
    }
}
