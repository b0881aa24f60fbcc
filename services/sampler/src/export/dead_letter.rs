//! Where spans go that the backend refuses for good: the dead-letter topic
//! (`export.dead_letter_topic`), or nowhere (dropped). Either way they are counted
//! (`tailsift_sampler_export_dead_letter_spans_total{reason,destination}`) and logged once, at
//! error level, with the trace ID; the export pipeline then moves on.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use tailsift_kafka::served::{DeliveryContext, Record, ServedProducer};
use tailsift_otlp::{split_by_trace, SplitOptions};
use tokio_util::sync::CancellationToken;

use super::classify::Refusal;
use super::pieces::Piece;
use crate::config::{ExportConfig, KafkaConfig};
use crate::metrics as m;

/// Record headers of dead-lettered spans.
pub const REASON_HEADER: &str = "tailsift.dead_letter.reason";
pub const ERROR_HEADER: &str = "tailsift.dead_letter.error";

/// The dead-letter destination.
#[derive(Clone)]
pub struct DeadLetter {
    topic: Option<(ServedProducer<DeliveryContext>, String)>,
    max_record_bytes: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl DeadLetter {
    pub fn new(cfg: &ExportConfig, kafka: &KafkaConfig) -> Result<Self, super::SetupError> {
        let topic = match &cfg.dead_letter_topic {
            None => None,
            Some(topic) => {
                let (producer, _) = ServedProducer::start_delivering(&super::kafka_producer(kafka, cfg))
                    .map_err(|e| super::SetupError::Producer("dead-letter", e))?;
                Some((producer, topic.clone()))
            }
        };
        Ok(DeadLetter {
            topic,
            max_record_bytes: cfg.kafka_max_record_bytes,
            initial_backoff: cfg.initial_backoff,
            max_backoff: cfg.max_backoff,
        })
    }

    /// Dead-letters (or drops) `piece`, refused for `reason` with `error`. Records are keyed by
    /// the hex trace ID and cut under `export.kafka_max_record_bytes` like the spans topic's; a
    /// span too large even for a record is dropped. Writing to the topic is retried until it
    /// succeeds (a Kafka outage pauses the pipeline, as for the spans topic). `None` when
    /// `shutdown` interrupted it.
    pub async fn refuse(
        &self,
        piece: &Piece,
        reason: Refusal,
        error: &str,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        metrics::counter!(m::EXPORT_SPANS, "outcome" => "rejected").increment(piece.spans as u64);
        let trace = hex::encode(piece.trace_id);
        let Some((producer, topic)) = &self.topic else {
            count(reason, "dropped", piece.spans);
            tracing::error!(%trace, spans = piece.spans, reason = reason.as_str(), %error, destination = "dropped",
                "export refused for good; spans dropped (no export.dead_letter_topic)");
            return Some(());
        };
        let (records, unfit) = match split_by_trace(
            &piece.payload,
            SplitOptions {
                max_record_bytes: self.max_record_bytes,
            },
        ) {
            Ok(out) => {
                let written: usize = out.records.iter().map(|r| r.spans).sum();
                (out.records, piece.spans.saturating_sub(written))
            }
            Err(_) => (Vec::new(), piece.spans),
        };
        let key = tailsift_otlp::record_key(&piece.trace_id);
        let mut cut = error.len().min(1024);
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        let error_text = &error[..cut];
        for r in &records {
            let mut backoff = self.initial_backoff;
            loop {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: REASON_HEADER,
                        value: Some(reason.as_str()),
                    })
                    .insert(Header {
                        key: ERROR_HEADER,
                        value: Some(error_text),
                    });
                let rec = Record {
                    topic,
                    partition: None,
                    key: &key[..],
                    payload: &r.payload[..],
                };
                let delivered = match producer.send(rec, Some(headers), true) {
                    Ok(f) => match f.expect("a report was asked for").await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("producer closed".to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                match delivered {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(%trace, %topic, error = %e, retry_in = ?backoff, "writing to the dead-letter topic failed, retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.max_backoff);
                    }
                }
            }
        }
        let written = piece.spans - unfit;
        count(reason, "dead_letter", written);
        count(reason, "dropped", unfit);
        tracing::error!(%trace, spans = piece.spans, dead_lettered = written, dropped = unfit, reason = reason.as_str(),
            %error, %topic, "export refused for good; spans written to the dead-letter topic");
        Some(())
    }
}

fn count(reason: Refusal, destination: &'static str, spans: usize) {
    if spans > 0 {
        metrics::counter!(m::EXPORT_DEAD_LETTER_SPANS, "reason" => reason.as_str(), "destination" => destination)
            .increment(spans as u64);
    }
}
