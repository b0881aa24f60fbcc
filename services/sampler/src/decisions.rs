//! The decisions topic record format.
//!
//! Key: the trace ID as 32 lowercase hex characters (like the spans topic). Value, little endian:
//! `u8 format (1) | u8 kept | i64 exported_through | u64 policy_version | f64 adjusted_count |
//! u16 len + policy name | u16 len + ot tracestate value`. Written to the same partition number as
//! the trace's spans, so the next owner of a spans partition reads one decisions partition.

use std::sync::Arc;

use crate::annotate::Stamp;
use crate::engine::DecisionRecord;

pub fn encode(rec: &DecisionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(1);
    out.push(rec.kept.is_some() as u8);
    out.extend_from_slice(&rec.exported_through.to_le_bytes());
    match &rec.kept {
        Some(s) => {
            out.extend_from_slice(&s.policy_version.to_le_bytes());
            out.extend_from_slice(&s.adjusted_count.to_le_bytes());
            put_str(&mut out, &s.policy);
            put_str(&mut out, s.ot.as_deref().unwrap_or(""));
        }
        None => {
            out.extend_from_slice(&0u64.to_le_bytes());
            out.extend_from_slice(&0f64.to_le_bytes());
            put_str(&mut out, "");
            put_str(&mut out, "");
        }
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Some(a)
}

fn take_str(buf: &mut &[u8]) -> Option<String> {
    let n = u16::from_le_bytes(take(buf, 2)?.try_into().ok()?) as usize;
    Some(String::from_utf8_lossy(take(buf, n)?).into_owned())
}

/// Decodes a record; `None` for anything malformed (it is skipped).
pub fn decode(partition: i32, key: &[u8], value: &[u8]) -> Option<DecisionRecord> {
    let trace_id = tailsift_otlp::parse_record_key(key)?;
    let mut b = value;
    if take(&mut b, 1)? != [1] {
        return None;
    }
    let kept = take(&mut b, 1)?[0] == 1;
    let exported_through = i64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let policy_version = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let adjusted_count = f64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let policy = take_str(&mut b)?;
    let ot = take_str(&mut b)?;
    Some(DecisionRecord {
        partition,
        trace_id,
        kept: kept.then(|| {
            Arc::new(Stamp {
                policy,
                policy_version,
                adjusted_count,
                ot: (!ot.is_empty()).then_some(ot),
            })
        }),
        exported_through,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let kept = DecisionRecord {
            partition: 3,
            trace_id: [7; 16],
            kept: Some(Arc::new(Stamp {
                policy: "errors".into(),
                policy_version: 4,
                adjusted_count: 2.0,
                ot: Some("th:8;rv:01".into()),
            })),
            exported_through: 1234,
        };
        let key = tailsift_otlp::record_key(&kept.trace_id);
        assert_eq!(decode(3, &key, &encode(&kept)), Some(kept));
        let dropped = DecisionRecord {
            partition: 1,
            trace_id: [9; 16],
            kept: None,
            exported_through: 5,
        };
        assert_eq!(
            decode(1, &tailsift_otlp::record_key(&[9; 16]), &encode(&dropped)),
            Some(dropped)
        );
        assert_eq!(decode(1, b"zz", &[1]), None);
        assert_eq!(decode(1, &key, &[2, 0]), None);
        assert_eq!(decode(1, &key, &[1, 1, 0]), None);
    }
}
