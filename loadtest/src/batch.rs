//! Packing generated traces into OTLP export requests.
//!
//! A [`Batcher`] turns a stream of [`GeneratedTrace`]s into [`Batch`]es of about
//! [`BatchOptions::target_spans`] spans. With [`BatchOptions::spread`] on (the default) the spans
//! of one trace are spread over several requests, interleaved with other traces, the way real
//! SDKs deliver them: each service exports its own part of a trace, in its own batch, at its own
//! time. Concretely each trace is cut into pieces (one per service, and services with many spans
//! into pieces of at most a quarter of the target), and a request takes at most one piece of any
//! trace; the root service's piece comes last, as the root span usually ends last. With spread
//! off, whole traces are packed into requests.
//!
//! Every span of every trace appears in exactly one request.

use std::collections::VecDeque;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use serde::{Deserialize, Serialize};

use crate::generator::{GeneratedTrace, TraceRecord};

/// How traces are packed into requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Spans per request to aim for (requests hold about this many; at least 1).
    pub target_spans: usize,
    /// Spread the spans of each trace over several requests.
    pub spread: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            target_spans: 100,
            spread: true,
        }
    }
}

/// One export request and what it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The request to send.
    pub request: ExportTraceServiceRequest,
    /// Number of spans in `request`.
    pub spans: usize,
    /// Traces whose first spans are in this request (each trace is listed in exactly one
    /// batch).
    pub new_traces: Vec<TraceRecord>,
}

/// Number of spans in an export request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// A trace waiting to be fully sent: its remaining pieces, in sending order.
#[derive(Debug)]
struct Pending {
    pieces: VecDeque<(ResourceSpans, usize)>,
}

impl Pending {
    fn new(trace: GeneratedTrace, max_piece: usize) -> Self {
        let mut pieces = VecDeque::new();
        // Root service last: deeper services finish (and export) first.
        for rs in trace.resource_spans.into_iter().rev() {
            for piece in split_resource_spans(rs, max_piece) {
                let n = piece.scope_spans.iter().map(|ss| ss.spans.len()).sum::<usize>();
                if n > 0 {
                    pieces.push_back((piece, n));
                }
            }
        }
        Pending { pieces }
    }
}

/// Splits one `ResourceSpans` into pieces of at most `max` spans each.
fn split_resource_spans(rs: ResourceSpans, max: usize) -> Vec<ResourceSpans> {
    let total: usize = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
    if total <= max {
        return vec![rs];
    }
    let ResourceSpans {
        resource,
        scope_spans,
        schema_url,
    } = rs;
    let mut out = Vec::with_capacity(total.div_ceil(max));
    for ss in scope_spans {
        let ScopeSpans {
            scope,
            spans,
            schema_url: scope_schema,
        } = ss;
        let mut spans = spans.into_iter().peekable();
        while spans.peek().is_some() {
            let chunk: Vec<_> = spans.by_ref().take(max).collect();
            out.push(ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope.clone(),
                    spans: chunk,
                    schema_url: scope_schema.clone(),
                }],
                schema_url: schema_url.clone(),
            });
        }
    }
    out
}

/// Iterator of [`Batch`]es over a stream of traces; see the [module docs](self).
#[derive(Debug)]
pub struct Batcher<I> {
    source: std::iter::Fuse<I>,
    options: BatchOptions,
    /// Traces with pieces still to send, served front first.
    pool: VecDeque<Pending>,
}

/// Packs `traces` into export requests according to `options`.
pub fn batches<I>(traces: I, options: BatchOptions) -> Batcher<I::IntoIter>
where
    I: IntoIterator<Item = GeneratedTrace>,
{
    Batcher::new(traces.into_iter(), options)
}

impl<I: Iterator<Item = GeneratedTrace>> Batcher<I> {
    /// A batcher reading traces from `source`.
    pub fn new(source: I, options: BatchOptions) -> Self {
        Batcher {
            source: source.fuse(),
            options: BatchOptions {
                target_spans: options.target_spans.max(1),
                ..options
            },
            pool: VecDeque::new(),
        }
    }

    /// Number of traces that have spans still waiting to be batched.
    pub fn pending_traces(&self) -> usize {
        self.pool.len()
    }

    fn max_piece(&self) -> usize {
        (self.options.target_spans / 4).max(1)
    }

    fn next_whole(&mut self) -> Option<Batch> {
        let target = self.options.target_spans;
        let mut resource_spans = Vec::new();
        let mut spans = 0;
        let mut new_traces = Vec::new();
        while spans < target {
            let Some(trace) = self.source.next() else {
                break;
            };
            new_traces.push(trace.record());
            spans += trace.spans;
            resource_spans.extend(trace.resource_spans);
        }
        (!new_traces.is_empty()).then_some(Batch {
            request: ExportTraceServiceRequest { resource_spans },
            spans,
            new_traces,
        })
    }

    fn next_spread(&mut self) -> Option<Batch> {
        let target = self.options.target_spans;
        let max_piece = self.max_piece();
        let mut resource_spans = Vec::new();
        let mut spans = 0;
        let mut new_traces = Vec::new();
        let mut served = Vec::new();
        while spans < target {
            if let Some(mut pending) = self.pool.pop_front() {
                if let Some((piece, n)) = pending.pieces.pop_front() {
                    resource_spans.push(piece);
                    spans += n;
                }
                if !pending.pieces.is_empty() {
                    served.push(pending);
                }
            } else if let Some(trace) = self.source.next() {
                new_traces.push(trace.record());
                // Served right away by the next turn of the loop.
                self.pool.push_front(Pending::new(trace, max_piece));
            } else {
                break;
            }
        }
        // Traces not served this time go first next time.
        self.pool.extend(served);
        (spans > 0 || !new_traces.is_empty()).then_some(Batch {
            request: ExportTraceServiceRequest { resource_spans },
            spans,
            new_traces,
        })
    }
}

impl<I: Iterator<Item = GeneratedTrace>> Iterator for Batcher<I> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.options.spread {
            self.next_spread()
        } else {
            self.next_whole()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, TraceShape};
    use std::collections::{HashMap, HashSet};

    const NOW: u64 = 1_750_000_000_000_000_000;

    fn traces(seed: u64, n: usize) -> Vec<GeneratedTrace> {
        let mut g = Generator::new(TraceShape::default(), seed);
        (0..n).map(|_| g.next_trace_at(NOW)).collect()
    }

    /// (trace ID, span ID) of every span in the batches, with the batch index.
    fn spans_in(batches: &[Batch]) -> Vec<(Vec<u8>, Vec<u8>, usize)> {
        let mut out = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            assert_eq!(count_spans(&b.request), b.spans);
            for rs in &b.request.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((s.trace_id.clone(), s.span_id.clone(), i));
                    }
                }
            }
        }
        out
    }

    fn check_every_span_once(input: &[GeneratedTrace], batches: &[Batch]) {
        let expected: HashSet<(Vec<u8>, Vec<u8>)> = input
            .iter()
            .flat_map(|t| t.iter_spans().map(|s| (s.trace_id.clone(), s.span_id.clone())))
            .collect();
        let got = spans_in(batches);
        let total: usize = input.iter().map(|t| t.spans).sum();
        assert_eq!(got.len(), total, "no span duplicated or lost");
        let got_set: HashSet<_> = got.into_iter().map(|(t, s, _)| (t, s)).collect();
        assert_eq!(got_set, expected);
        let records: Vec<TraceRecord> = batches.iter().flat_map(|b| b.new_traces.clone()).collect();
        let want: Vec<TraceRecord> = input.iter().map(GeneratedTrace::record).collect();
        assert_eq!(records, want, "every trace announced once, in order");
    }

    #[test]
    fn spread_batches_hold_about_the_target_and_spread_traces() {
        let input = traces(21, 1000);
        let out: Vec<Batch> = batches(input.clone(), BatchOptions::default()).collect();
        check_every_span_once(&input, &out);

        // Until the input runs out, batches hold at least the target and at most a piece more.
        let last_new = out
            .iter()
            .rposition(|b| !b.new_traces.is_empty())
            .expect("some batch starts traces");
        let full = &out[..last_new];
        assert!(full.len() > 50);
        for b in full {
            assert!((100..125).contains(&b.spans), "batch of {} spans", b.spans);
        }

        // Multi-service traces land in several requests.
        let mut requests_per_trace: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
        for (t, _, i) in spans_in(&out) {
            requests_per_trace.entry(t).or_default().insert(i);
        }
        for t in &input {
            let n = requests_per_trace[&t.trace_id.to_vec()].len();
            if t.service_count() > 1 {
                assert!(n >= 2, "trace with {} services in {n} request", t.service_count());
            }
        }
        // Requests mix several traces.
        let avg_traces: f64 = full
            .iter()
            .map(|b| {
                b.request
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .map(|s| s.trace_id.clone())
                    .collect::<HashSet<_>>()
                    .len() as f64
            })
            .sum::<f64>()
            / full.len() as f64;
        assert!(avg_traces >= 10.0, "average traces per request {avg_traces}");
    }

    #[test]
    fn whole_batches_keep_traces_together() {
        let input = traces(22, 500);
        let options = BatchOptions {
            target_spans: 50,
            spread: false,
        };
        let out: Vec<Batch> = batches(input.clone(), options).collect();
        check_every_span_once(&input, &out);
        let mut requests_per_trace: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
        for (t, _, i) in spans_in(&out) {
            requests_per_trace.entry(t).or_default().insert(i);
        }
        assert!(requests_per_trace.values().all(|r| r.len() == 1));
        for b in &out[..out.len() - 1] {
            assert!(b.spans >= 50);
        }
    }

    #[test]
    fn small_targets_and_empty_input() {
        assert_eq!(batches(Vec::new(), BatchOptions::default()).count(), 0);
        let input = traces(23, 50);
        let options = BatchOptions {
            target_spans: 1,
            spread: true,
        };
        let out: Vec<Batch> = batches(input.clone(), options).collect();
        check_every_span_once(&input, &out);
        assert!(out.iter().all(|b| b.spans >= 1));
    }
}
