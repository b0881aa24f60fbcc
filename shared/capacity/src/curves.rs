//! The measured cost curves the model scales its per-core figures with (docs/scaling.md).
//!
//! r_i and r_s were each measured at one shape (ingest: 100-span requests; sampler: the load
//! generator's traces, ~17-20 spans each, the 3-rule default policy). A curve gives the CPU per
//! span at other shapes; the model divides r_i or r_s by the ratio of the cost at the planned shape
//! to the cost at the measured one. Points are interpolated linearly in log x and clamped at the
//! ends (no extrapolation past what was measured).

/// A measured cost curve: CPU per span (any unit: only ratios are used) against a shape variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    /// What x is, for the working shown.
    pub x: &'static str,
    /// Where the points come from.
    pub source: &'static str,
    /// (x, cost per span), x ascending and positive.
    pub points: &'static [(f64, f64)],
}

impl Curve {
    /// The cost per span at `x`: linear in log x between the measured points, the end point's
    /// cost outside them.
    pub fn at(&self, x: f64) -> f64 {
        let pts = self.points;
        let (first, last) = (pts[0], pts[pts.len() - 1]);
        if x <= first.0 {
            return first.1;
        }
        if x >= last.0 {
            return last.1;
        }
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if x <= x1 {
                let t = (x.ln() - x0.ln()) / (x1.ln() - x0.ln());
                return y0 + t * (y1 - y0);
            }
        }
        last.1
    }

    /// cost(x) / cost(reference): how much more (> 1) or less CPU a span costs at `x`.
    pub fn factor(&self, x: f64, reference: f64) -> f64 {
        self.at(x) / self.at(reference)
    }
}

/// The shape r_i was measured at: spans per request.
pub const INGEST_REFERENCE_SPANS_PER_REQUEST: f64 = 100.0;
/// The shape r_s was measured at: spans per trace, and rules in the policy.
pub const SAMPLER_REFERENCE_SPANS_PER_TRACE: f64 = 20.0;
pub const SAMPLER_REFERENCE_POLICY_RULES: f64 = 3.0;

/// Ingest CPU per span (µs) against spans per request (the load generator's traces spread over
/// requests), as fast as the node goes with 256 requests in flight (`loadtest/ingest-curves.sh`, docs/scaling.md "Ingest CPU per span vs request size").
pub const INGEST_BY_SPANS_PER_REQUEST: Curve = Curve {
    x: "spans per request",
    source: "loadtest/ingest-curves.sh, 2026-12-01",
    points: &[
        (1.0, 35.3),
        (3.0, 14.4),
        (10.3, 5.04),
        (31.5, 2.90),
        (103.0, 1.69),
        (303.0, 1.63),
        (1000.0, 1.55),
        (1989.0, 1.51),
    ],
};

/// Sampler engine CPU per span (ns) against spans per trace (`loadtest/curves.sh`, docs/scaling.md
/// "CPU per span vs spans per trace"; 100 and more: the run after the fix of the quadratic
/// resource lookup).
pub const SAMPLER_BY_SPANS_PER_TRACE: Curve = Curve {
    x: "spans per trace",
    source: "loadtest/curves.sh, 2026-12-01",
    points: &[
        (1.0, 2523.0),
        (10.0, 1476.0),
        (100.0, 1311.0),
        (1000.0, 1278.0),
        (10000.0, 1332.0),
    ],
};

/// Sampler engine CPU per span (ns) against the number of rules (regex `string_attribute` rules,
/// none matching, then a probabilistic one: every rule evaluated; `loadtest/curves.sh`,
/// docs/scaling.md "CPU per span vs policy size").
pub const SAMPLER_BY_POLICY_RULES: Curve = Curve {
    x: "policy rules",
    source: "loadtest/curves.sh, 2026-12-01",
    points: &[(1.0, 2111.0), (10.0, 2183.0), (50.0, 2576.0), (200.0, 4210.0)],
};

#[cfg(test)]
mod tests {
    use super::*;

    const C: Curve = Curve {
        x: "x",
        source: "test",
        points: &[(1.0, 10.0), (10.0, 20.0), (100.0, 5.0)],
    };

    #[test]
    fn interpolates_in_log_x_and_clamps_at_the_ends() {
        assert_eq!(C.at(1.0), 10.0);
        assert_eq!(C.at(10.0), 20.0);
        assert!((C.at(10f64.sqrt()) - 15.0).abs() < 1e-9);
        assert!((C.at(10f64.powf(1.5)) - 12.5).abs() < 1e-9);
        assert_eq!(C.at(0.5), 10.0, "below the first point: its cost");
        assert_eq!(C.at(1e6), 5.0, "past the last point: its cost, no extrapolation");
        assert_eq!(C.factor(10.0, 1.0), 2.0);
        assert_eq!(C.factor(7.0, 7.0), 1.0);
    }

    #[test]
    fn the_measured_curves_are_well_formed() {
        for c in [
            INGEST_BY_SPANS_PER_REQUEST,
            SAMPLER_BY_SPANS_PER_TRACE,
            SAMPLER_BY_POLICY_RULES,
        ] {
            assert!(c.points.windows(2).all(|w| w[0].0 < w[1].0), "{}: x ascending", c.x);
            assert!(c.points.iter().all(|p| p.0 > 0.0 && p.1 > 0.0), "{}: positive", c.x);
        }
        assert_eq!(
            INGEST_BY_SPANS_PER_REQUEST.factor(INGEST_REFERENCE_SPANS_PER_REQUEST, INGEST_REFERENCE_SPANS_PER_REQUEST),
            1.0
        );
    }
}
