//! Reading an HTTP request body under the admission budget (see [`crate::admission`]): the
//! `Content-Length` is checked against `limits.max_request_bytes` (413) and reserved before a byte
//! is read (503 when the budget cannot take it); a body without a length is charged frame by
//! frame; the decompressed bytes of a gzip body are charged as they are produced; the whole body
//! must arrive within `limits.read_timeout` (408, connection closed).

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;

use crate::admission::{Admission, Lease, Refused};

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over `limits.max_request_bytes`; the argument names what (`request body`, ...).
    TooLarge(&'static str),
    /// Budget spent or read timeout: retryable.
    Refused(Refused),
    /// Broken connection or bad gzip.
    Invalid(String),
}

impl From<crate::admission::BudgetSpent> for BodyError {
    fn from(e: crate::admission::BudgetSpent) -> Self {
        BodyError::Refused(e.into())
    }
}

impl From<Refused> for BodyError {
    fn from(r: Refused) -> Self {
        BodyError::Refused(r)
    }
}

/// Reads the body of a request admitted with `lease`, decompressing it when `gzip`.
pub(crate) async fn read(
    adm: &Admission,
    lease: &mut Lease,
    headers: &HeaderMap,
    body: Body,
    gzip: bool,
) -> Result<Bytes, BodyError> {
    let limit = adm.max_request_bytes;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = length {
        if len > limit as u64 {
            drain(adm, body);
            return Err(BodyError::TooLarge("request body"));
        }
        if let Err(e) = lease.charge(len as usize) {
            drain(adm, body);
            return Err(BodyError::Refused(e.into()));
        }
    }
    let deadline = tokio::time::Instant::now() + adm.read_timeout;
    let mut raw: Vec<u8> = Vec::with_capacity(length.unwrap_or(0) as usize);
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::Refused(Refused::ReadTimeout(adm.read_timeout))),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Invalid(format!("reading request body: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        if raw.len() + data.len() > limit {
            return Err(BodyError::TooLarge("request body"));
        }
        if length.is_none() {
            lease.charge(data.len())?;
        }
        raw.extend_from_slice(&data);
    }
    if !gzip {
        return Ok(raw.into());
    }
    let out = gunzip_charged(&raw, limit, lease)?;
    // The compressed bytes are released with the lease; drop them now.
    drop(raw);
    Ok(out.into())
}

/// Decompresses `data` in chunks, charging each to `lease` before it is kept, refusing to
/// produce more than `limit` bytes: a small gzip bomb can neither exhaust memory nor the budget.
pub(crate) fn gunzip_charged(data: &[u8], limit: usize, lease: &mut Lease) -> Result<Vec<u8>, BodyError> {
    let mut dec = flate2::read::MultiGzDecoder::new(data);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = dec
            .read(&mut chunk)
            .map_err(|e| BodyError::Invalid(format!("invalid gzip body: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(BodyError::TooLarge("decompressed request body"));
        }
        lease.charge(n)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Reads and discards the rest of a refused body in the background (never buffered, at most
/// `limits.max_request_bytes` and `limits.read_timeout`), so that an HTTP/1 client still sending
/// reads the answer rather than a connection reset. Bounded by a slot count; without a slot the
/// body is dropped and the connection closed.
fn drain(adm: &Admission, mut body: Body) {
    let Some(slot) = adm.drain_slot() else { return };
    let (limit, timeout) = (adm.max_request_bytes, adm.read_timeout);
    tokio::spawn(async move {
        let _slot = slot;
        let _ = tokio::time::timeout(timeout, async {
            let mut seen = 0usize;
            while let Some(Ok(f)) = body.frame().await {
                if let Some(d) = f.data_ref() {
                    seen += d.len();
                    if seen > limit {
                        break;
                    }
                }
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Budget;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_respects_the_limit_and_charges_the_output() {
        let data = vec![b'a'; 100_000];
        let z = gz(&data);
        let budget = Budget::new(1 << 20);
        let mut lease = budget.lease();
        assert_eq!(gunzip_charged(&z, 100_000, &mut lease).unwrap(), data);
        assert_eq!(lease.held(), 100_000);
        let mut lease = budget.lease();
        assert!(matches!(
            gunzip_charged(&z, 99_999, &mut lease),
            Err(BodyError::TooLarge(_))
        ));
        // The budget, not only the size limit, stops a bomb.
        let small = Budget::new(50_000);
        let mut lease = small.lease();
        let mut other = small.lease();
        other.charge(1).unwrap();
        assert!(matches!(
            gunzip_charged(&z, 1 << 20, &mut lease),
            Err(BodyError::Refused(Refused::Memory(50_000)))
        ));
        assert!(matches!(
            gunzip_charged(b"not gzip", 100, &mut small.lease()),
            Err(BodyError::Invalid(_))
        ));
    }
}
