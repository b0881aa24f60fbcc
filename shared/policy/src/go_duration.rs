//! Go's `time.ParseDuration`, shared by everything that reads durations written for Go programs:
//! the OTel collector's options, OTTL's `Duration`, Refinery's intervals. Depends on nothing.

/// Go's `time.ParseDuration`: `[-+]?(\d*(\.\d*)?(ns|us|µs|μs|ms|s|m|h))+` or `0`.
pub(crate) fn parse_go_duration(s: &str) -> Option<i64> {
    if s.len() > 256 {
        return None;
    }
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok().or_else(|| format!("0{num}").parse().ok())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    if total > 9.223_372_036_854_775e18 {
        return None;
    }
    let n = total.round() as i64;
    Some(if neg { -n } else { n })
}
