//! TEMPORARY (replaced by the compact codec being written on branch trace-summary): a summary
//! that keeps the records, with the final API, so the engine's index mode can be built on it.

use bytes::Bytes;
use tailsift_policy::{Requirements, TraceData};

use crate::extract::{trace_data, Resources};

#[derive(Default)]
pub struct TraceSummary {
    records: Vec<Bytes>,
    req: Requirements,
    spans: usize,
}

pub type SummaryScratch<'a> = Resources<'a>;

impl TraceSummary {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push_record(&mut self, _trace_id: [u8; 16], record: &[u8], req: &Requirements) {
        self.req = req.clone();
        self.spans += crate::extract::scan_record(record).span_ids.len();
        self.records.push(Bytes::copy_from_slice(record));
    }

    pub fn trace_data<'a>(&'a self, trace_id: [u8; 16], scratch: &'a mut SummaryScratch<'a>) -> TraceData<'a> {
        trace_data(trace_id, &self.records, &self.req, scratch)
    }

    pub fn spans(&self) -> usize {
        self.spans
    }

    pub fn heap_bytes(&self) -> usize {
        self.records.iter().map(|r| r.len()).sum::<usize>() + self.records.capacity() * 32
    }

    pub fn shrink(&mut self) {
        self.records.shrink_to_fit();
    }
}
