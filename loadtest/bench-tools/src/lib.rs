//! Measuring tools for the benchmark and fault scripts (topic counter, latency, propagation, skewed
//! producer).

use std::time::Duration;

/// The `q`-quantile (0..=1) of `sorted` (ascending), nearest rank; `None` when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Milliseconds with three decimals, for JSON output.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Summary statistics of a set of durations, as a JSON object (milliseconds).
pub fn summary_json(mut values: Vec<Duration>) -> serde_json::Value {
    values.sort();
    let q = |p| quantile(&values, p).map(ms);
    serde_json::json!({
        "count": values.len(),
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "max_ms": values.last().copied().map(ms),
        "min_ms": values.first().copied().map(ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&v, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&v, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
