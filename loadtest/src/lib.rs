//! The load generator and the verifier (`tailsift-loadgen`, `tailsift-verify`) used by benchmarks
//! and the fault suite.
//!
//! The pieces, usable on their own:
//!
//! - [`generator`]: a deterministic, seeded [`Generator`] of [`GeneratedTrace`]s shaped by a
//!   [`TraceShape`] (services, span counts with a long tail, error and slow fractions,
//!   realistic names, kinds and attributes);
//! - [`batch`]: packing traces into export requests of about a target span count, spreading each
//!   trace's spans over several requests ([`batches`], [`Batcher`]);
//! - [`sender`]: OTLP/gRPC and OTLP/HTTP (protobuf or JSON, optional gzip) with response
//!   classification and retries ([`Sender`]);
//! - [`runner`]: a rate-controlled, concurrent load run returning a [`Summary`] ([`run`]);
//! - [`verify`]: an OTLP backend that records what samplers export and checks it against the
//!   manifest of what was sent (`tailsift-verify`).
//!
//! The `tailsift-loadgen` binary wraps [`run`] in a command line (`--manifest FILE` writes what
//! was sent, for `tailsift-verify`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use tailsift_loadtest::{run, Protocol, RunOptions};
//!
//! let summary = run(RunOptions {
//!     protocol: Protocol::HttpProto,
//!     endpoint: Some("http://127.0.0.1:4318".into()),
//!     rate: 2000.0,
//!     duration: Some(Duration::from_secs(10)),
//!     ..RunOptions::default()
//! })
//! .await?;
//! println!("{summary}");
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod generator;
pub mod runner;
pub mod sender;
pub mod verify;

use std::time::Duration;

pub use batch::{batches, count_spans, Batch, BatchOptions, Batcher};
pub use generator::{
    default_services, now_unix_nanos, DatabaseSpec, GeneratedTrace, Generator, ServiceProtocol, ServiceSpec,
    ShapeError, TraceRecord, TraceShape,
};
pub use runner::{run, RunOptions, Summary};
pub use sender::{AttemptOutcome, Delivery, Protocol, RetryPolicy, SendReport, Sender, SenderConfig};

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h`, `1m30s`, `1.5s` or `90` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs, text);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = rest[unit_len..].trim_start();
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hours" => 3600.0,
            _ => return Err(format!("invalid duration unit {unit:?} in {text:?}")),
        };
        total += secs_to_duration(value * scale, text)?;
    }
    Ok(total)
}

fn secs_to_duration(secs: f64, text: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-3s").is_err());
    }
}
