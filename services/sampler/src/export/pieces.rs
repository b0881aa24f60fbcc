//! Cutting kept traces into pieces that fit one request, and packing pieces into requests.
//!
//! Pure functions (no I/O), unit-tested: every span of a job ends up in exactly one piece or, when
//! it cannot be sent at all (one span over the limit, invalid IDs), in exactly one [`Unsendable`].

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tailsift_otlp::{split_by_trace, ExportTraceServiceRequest, SplitOptions, TraceId};

use super::classify::Refusal;
use crate::engine::ExportJob;

/// Spans of one job (one trace), as an encoded `ExportTraceServiceRequest` no larger than the
/// request limit (unless the limit does not apply to the exporter, see [`split_job`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The [`ExportJob::id`] it belongs to: the job is acknowledged once all its pieces are done.
    pub job: u64,
    pub trace_id: TraceId,
    pub payload: Vec<u8>,
    pub spans: usize,
}

/// Spans of a job that can never be sent: they go straight to the dead-letter path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable {
    pub piece: Piece,
    pub reason: Refusal,
    pub message: String,
}

/// A job cut to size.
#[derive(Debug, Default)]
pub struct SplitJob {
    pub pieces: Vec<Piece>,
    pub unsendable: Vec<Unsendable>,
}

/// Cuts `job` into pieces of at most `max_bytes` encoded bytes with the wire-level splitter
/// (each piece keeps its spans' resource and scope; spans are never copied twice). A job that
/// fits is one piece, moved without copying. A span that alone (with its resource and scope)
/// exceeds `max_bytes`, or whose IDs are invalid, is returned as [`Unsendable`], one per span.
pub fn split_job(job: ExportJob, max_bytes: usize) -> SplitJob {
    let piece = |payload: Vec<u8>, spans: usize| Piece {
        job: job.id,
        trace_id: job.trace_id,
        payload,
        spans,
    };
    if job.payload.len() <= max_bytes {
        return SplitJob {
            pieces: vec![piece(job.payload, job.spans)],
            unsendable: Vec::new(),
        };
    }
    let out = match split_by_trace(
        &job.payload,
        SplitOptions {
            max_record_bytes: max_bytes,
        },
    ) {
        Ok(out) => out,
        Err(e) => {
            // Cannot happen for what the engine assembled from valid records; never sent whole.
            return SplitJob {
                pieces: Vec::new(),
                unsendable: vec![Unsendable {
                    piece: piece(job.payload, job.spans),
                    reason: Refusal::Malformed,
                    message: e.to_string(),
                }],
            };
        }
    };
    let mut split = SplitJob {
        pieces: out
            .records
            .into_iter()
            .map(|r| Piece {
                job: job.id,
                trace_id: r.trace_id,
                payload: r.payload,
                spans: r.spans,
            })
            .collect(),
        unsendable: Vec::new(),
    };
    if out.rejected.is_empty() {
        return split;
    }
    // The splitter left some spans out: find them (rare, so decoding is fine) and hand each on
    // as a request of its own.
    if let Ok(req) = ExportTraceServiceRequest::decode(job.payload.as_slice()) {
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let one = ExportTraceServiceRequest {
                        resource_spans: vec![ResourceSpans {
                            resource: rs.resource.clone(),
                            scope_spans: vec![ScopeSpans {
                                scope: ss.scope.clone(),
                                spans: vec![span.clone()],
                                schema_url: ss.schema_url.clone(),
                            }],
                            schema_url: rs.schema_url.clone(),
                        }],
                    };
                    let (reason, message) = if !valid_ids(span) {
                        (Refusal::Malformed, "span IDs are not valid".to_string())
                    } else if one.encoded_len() > max_bytes {
                        let n = one.encoded_len();
                        (
                            Refusal::TooLarge,
                            format!("one span of {n} bytes exceeds the request limit of {max_bytes} bytes"),
                        )
                    } else {
                        continue;
                    };
                    split.unsendable.push(Unsendable {
                        piece: piece(one.encode_to_vec(), 1),
                        reason,
                        message,
                    });
                }
            }
        }
    }
    split
}

/// The span-ID checks of the wire-level splitter (`tailsift_otlp::split`).
fn valid_ids(s: &Span) -> bool {
    s.trace_id.len() == 16
        && s.trace_id.iter().any(|b| *b != 0)
        && s.span_id.len() == 8
        && s.span_id.iter().any(|b| *b != 0)
        && (s.parent_span_id.is_empty() || s.parent_span_id.len() == 8)
}

/// Packs pieces, in order, into requests: a piece joins the current request while the request
/// stays within `max_bytes` and `max_spans`; otherwise it starts the next one. Every request
/// holds at least one piece, so a piece over a limit travels alone.
pub fn pack(pieces: Vec<Piece>, max_bytes: usize, max_spans: usize) -> Vec<Vec<Piece>> {
    let mut requests: Vec<Vec<Piece>> = Vec::new();
    let (mut bytes, mut spans) = (0usize, 0usize);
    for p in pieces {
        let fits = bytes + p.payload.len() <= max_bytes && spans + p.spans <= max_spans;
        match requests.last_mut() {
            Some(current) if fits => {
                bytes += p.payload.len();
                spans += p.spans;
                current.push(p);
            }
            _ => {
                bytes = p.payload.len();
                spans = p.spans;
                requests.push(vec![p]);
            }
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    const TRACE: TraceId = [7; 16];

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn span(n: u32, filler: usize) -> Span {
        let mut id = [0u8; 8];
        id[..4].copy_from_slice(&(n + 1).to_be_bytes());
        Span {
            trace_id: TRACE.to_vec(),
            span_id: id.to_vec(),
            name: format!("op-{n}"),
            attributes: vec![kv("filler", &"x".repeat(filler))],
            ..Default::default()
        }
    }

    /// A job of `n` spans over two services and two scopes each, as records concatenated.
    fn job(n: u32, filler: usize) -> ExportJob {
        let mut payload = Vec::new();
        for (k, chunk) in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(4) as usize).enumerate() {
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &format!("svc-{}", k % 2))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: format!("scope-{k}"),
                            ..Default::default()
                        }),
                        spans: chunk.iter().map(|i| span(*i, filler)).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            payload.extend(req.encode_to_vec());
        }
        ExportJob {
            id: 42,
            partition: 0,
            trace_id: TRACE,
            payload,
            spans: n as usize,
        }
    }

    /// (span ID, service, scope, name) of every span in an encoded request.
    fn spans_of(payload: &[u8]) -> Vec<(Vec<u8>, String, String, String)> {
        let req = ExportTraceServiceRequest::decode(payload).unwrap();
        let mut out = Vec::new();
        for rs in req.resource_spans {
            let svc = format!("{:?}", rs.resource.unwrap().attributes[0].value);
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                for s in ss.spans {
                    out.push((s.span_id, svc.clone(), scope.clone(), s.name));
                }
            }
        }
        out
    }

    #[test]
    fn a_job_over_the_limit_is_cut_into_pieces_under_it_with_every_span_once() {
        let job = job(2000, 200);
        let original = spans_of(&job.payload);
        let max = 64 * 1024;
        assert!(job.payload.len() > 6 * max, "{} bytes", job.payload.len());
        let split = split_job(job.clone(), max);
        assert!(split.unsendable.is_empty());
        assert!(split.pieces.len() >= 7, "{} pieces", split.pieces.len());
        let mut seen = Vec::new();
        for p in &split.pieces {
            assert!(p.payload.len() <= max, "{} > {max}", p.payload.len());
            assert_eq!((p.job, p.trace_id), (42, TRACE));
            let spans = spans_of(&p.payload);
            assert_eq!(spans.len(), p.spans);
            seen.extend(spans);
        }
        let ids: HashSet<&Vec<u8>> = seen.iter().map(|s| &s.0).collect();
        assert_eq!(ids.len(), seen.len(), "no span twice");
        let (mut a, mut b) = (seen.clone(), original.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "the same spans, each with its own resource and scope");
    }

    #[test]
    fn a_job_that_fits_is_one_piece_moved_unchanged() {
        let job = job(10, 50);
        let split = split_job(job.clone(), job.payload.len());
        assert_eq!(
            split.pieces,
            vec![Piece {
                job: 42,
                trace_id: TRACE,
                payload: job.payload,
                spans: 10,
            }]
        );
        assert!(split.unsendable.is_empty());
    }

    #[test]
    fn a_span_larger_than_the_limit_alone_is_unsendable_too_large_and_the_rest_is_sent() {
        let mut job = job(100, 100);
        let big = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "huge")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1000, 20_000)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        job.payload.extend(big.encode_to_vec());
        job.spans += 1;
        let split = split_job(job, 8 * 1024);
        assert_eq!(split.unsendable.len(), 1);
        let u = &split.unsendable[0];
        assert_eq!((u.reason, u.piece.spans, u.piece.job), (Refusal::TooLarge, 1, 42));
        assert!(u.message.contains("8192"), "{}", u.message);
        assert_eq!(
            ExportTraceServiceRequest::decode(u.piece.payload.as_slice()).unwrap(),
            big
        );
        let sent: usize = split.pieces.iter().map(|p| p.spans).sum();
        assert_eq!(sent, 100);
        assert!(split.pieces.iter().all(|p| p.payload.len() <= 8 * 1024));
        assert!(split
            .pieces
            .iter()
            .flat_map(|p| spans_of(&p.payload))
            .all(|s| s.3 != "op-1000"));
    }

    fn piece(job: u64, bytes: usize, spans: usize) -> Piece {
        Piece {
            job,
            trace_id: [job as u8; 16],
            payload: vec![0; bytes],
            spans,
        }
    }

    fn shape(requests: &[Vec<Piece>]) -> Vec<Vec<u64>> {
        requests.iter().map(|r| r.iter().map(|p| p.job).collect()).collect()
    }

    #[test]
    fn packing_keeps_whole_pieces_in_order_within_bytes_and_spans() {
        let pieces = vec![
            piece(1, 400, 10),
            piece(2, 500, 10),
            piece(3, 200, 10), // 1100 bytes with 1 and 2: next request
            piece(4, 2000, 1), // over the byte limit alone: travels alone
            piece(5, 10, 30),
            piece(6, 10, 15), // 45 spans with 5: over 40
            piece(7, 10, 5),
        ];
        let requests = pack(pieces, 1000, 40);
        assert_eq!(
            shape(&requests),
            vec![vec![1, 2], vec![3], vec![4], vec![5], vec![6, 7]]
        );
        for r in &requests {
            let bytes: usize = r.iter().map(|p| p.payload.len()).sum();
            assert!(bytes <= 1000 || r.len() == 1);
        }
        assert!(pack(Vec::new(), 1000, 40).is_empty());
        // Pieces of one big job fill requests in turn.
        let split = split_job(job(2000, 200), 64 * 1024);
        let n = split.pieces.len();
        let requests = pack(split.pieces, 64 * 1024, usize::MAX);
        assert_eq!(requests.len(), n, "each piece nearly fills a request");
    }
}
