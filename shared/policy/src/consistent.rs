//! Consistent probability sampling (OpenTelemetry threshold scheme) with
//! seeded randomness.
//!
//! See the crate documentation for the exact definitions; in short:
//!
//! ```text
//! R = SipHash-2-4(key = seed.to_le_bytes() ++ [0u8; 8], msg = trace_id[0..16]) >> 8
//! T = 2^56 - round(p * 2^56)          (round half away from zero)
//! keep  <=>  R >= T
//! ```

/// `2^56`: the size of the randomness / threshold domain.
pub const MAX_THRESHOLD: u64 = 1 << 56;

const MASK_56: u64 = MAX_THRESHOLD - 1;

#[inline(always)]
fn sip_round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
    *v0 = v0.wrapping_add(*v1);
    *v1 = v1.rotate_left(13);
    *v1 ^= *v0;
    *v0 = v0.rotate_left(32);
    *v2 = v2.wrapping_add(*v3);
    *v3 = v3.rotate_left(16);
    *v3 ^= *v2;
    *v0 = v0.wrapping_add(*v3);
    *v3 = v3.rotate_left(21);
    *v3 ^= *v0;
    *v2 = v2.wrapping_add(*v1);
    *v1 = v1.rotate_left(17);
    *v1 ^= *v2;
    *v2 = v2.rotate_left(32);
}

/// SipHash-2-4 (Aumasson & Bernstein) with the 128-bit key `(k0, k1)`, both
/// halves read as little-endian 64-bit words, returning the 64-bit tag.
///
/// This is the reference algorithm (identical to the output of the reference
/// C implementation with key bytes `k0.to_le_bytes() ++ k1.to_le_bytes()`).
pub fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = k1 ^ 0x7465_6462_7974_6573;

    let mut chunks = msg.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v3 ^= m;
        sip_round(&mut v0, &mut v1, &mut v2, &mut v3);
        sip_round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    let mut last = ((msg.len() as u64) & 0xff) << 56;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        last |= u64::from(b) << (8 * i);
    }
    v3 ^= last;
    sip_round(&mut v0, &mut v1, &mut v2, &mut v3);
    sip_round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= last;
    v2 ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

/// The 56-bit sampling randomness `R` of a trace under `seed`:
/// `SipHash-2-4(k0 = seed, k1 = 0, msg = trace_id) >> 8`.
///
/// A pure function: every worker with the same seed computes the same value.
pub fn randomness(trace_id: [u8; 16], seed: u64) -> u64 {
    siphash24(seed, 0, &trace_id) >> 8
}

/// The OpenTelemetry rejection threshold for sampling probability `p`:
/// `T = 2^56 - round(p * 2^56)` (equal to `round((1 - p) * 2^56)` except on
/// exact ties, and exact because `p * 2^56` is an exact float operation).
///
/// `p >= 1` gives 0 (keep everything); `p <= 0` or NaN gives `2^56`
/// (keep nothing: no 56-bit randomness reaches it).
pub fn threshold_for(p: f64) -> u64 {
    if p.is_nan() || p <= 0.0 {
        return MAX_THRESHOLD;
    }
    if p >= 1.0 {
        return 0;
    }
    // p * 2^56 is exact (power-of-two scaling) and < 2^56, so the cast is exact.
    let kept = (p * MAX_THRESHOLD as f64).round() as u64;
    MAX_THRESHOLD - kept.min(MAX_THRESHOLD)
}

/// The sampling probability a threshold stands for: `(2^56 - T) / 2^56`.
pub fn probability_for_threshold(threshold: u64) -> f64 {
    let t = threshold.min(MAX_THRESHOLD);
    (MAX_THRESHOLD - t) as f64 / MAX_THRESHOLD as f64
}

/// The consistent decision: keep iff `randomness(trace_id, seed) >= threshold_for(p)`.
///
/// Monotone in `p`: a trace kept at `p` is kept at every `p' > p`.
pub fn consistent_keep(trace_id: [u8; 16], seed: u64, p: f64) -> bool {
    randomness(trace_id, seed) >= threshold_for(p)
}

/// The adjusted count (representativity) of a trace kept with probability
/// `p`: `1 / p`. Returns 0.0 ("unknown", as in the OpenTelemetry spec) for
/// `p <= 0` or NaN.
pub fn adjusted_count(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        0.0
    } else {
        1.0 / p
    }
}

/// Encodes a threshold as the OpenTelemetry `th` value: 14 lower-case hex
/// digits with trailing zeros removed, `"0"` for the keep-all threshold.
/// Thresholds `>= 2^56` cannot be encoded and are clamped to `2^56 - 1`.
pub fn encode_threshold(threshold: u64) -> String {
    let t = threshold.min(MASK_56);
    if t == 0 {
        return "0".to_string();
    }
    let mut s = format!("{t:014x}");
    while s.ends_with('0') {
        s.pop();
    }
    s
}

/// Decodes an OpenTelemetry `th` value (1 to 14 hex digits, missing trailing
/// digits are zeros). Returns `None` if malformed.
pub fn decode_threshold(th: &str) -> Option<u64> {
    if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(th, 16).ok()?;
    Some(v << (4 * (14 - th.len())))
}

/// The W3C `tracestate` value for the `ot` key recording a consistent
/// sampling decision: `th:<encode_threshold(threshold)>;rv:<14 hex digits>`.
///
/// The explicit randomness `rv` is required because Tailsift's randomness
/// comes from a seeded hash, not from the trace ID's random bits.
/// `randomness` is masked to 56 bits.
pub fn ot_tracestate(threshold: u64, randomness: u64) -> String {
    format!("th:{};rv:{:014x}", encode_threshold(threshold), randomness & MASK_56)
}

/// Parses an `ot` tracestate value, returning `(threshold, randomness)` when
/// present (other sub-keys are ignored). Malformed values yield `None` for
/// that field.
pub fn parse_ot_tracestate(ot: &str) -> (Option<u64>, Option<u64>) {
    let mut th = None;
    let mut rv = None;
    for part in ot.split(';') {
        if let Some(v) = part.strip_prefix("th:") {
            th = decode_threshold(v);
        } else if let Some(v) = part.strip_prefix("rv:") {
            if v.len() == 14 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                rv = u64::from_str_radix(v, 16).ok();
            }
        }
    }
    (th, rv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vectors() {
        // Key 00 01 .. 0f, message 00 01 .. 0e: the example in the SipHash paper.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
        // First entry of the reference vectors.h (empty message).
        assert_eq!(siphash24(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    #[allow(deprecated)]
    fn siphash_matches_std_implementation() {
        use std::hash::Hasher;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..40usize {
            let msg: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let (k0, k1) = (x, x.rotate_left(17) ^ 0x1234);
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write(&msg);
            assert_eq!(siphash24(k0, k1, &msg), h.finish(), "len {len}");
        }
    }

    #[test]
    fn randomness_test_vectors() {
        let id: [u8; 16] = core::array::from_fn(|i| i as u8);
        let r0 = randomness(id, 0);
        let r42 = randomness(id, 42);
        assert!(r0 < MAX_THRESHOLD && r42 < MAX_THRESHOLD);
        assert_eq!(r0, siphash24(0, 0, &id) >> 8);
        assert_eq!(format!("{:014x}", randomness([0; 16], 0)), "32caecc2801729");
        assert_eq!(format!("{:014x}", randomness(id, 0)), "c902632ed88f89");
        assert_eq!(format!("{:014x}", randomness(id, 42)), "79ef95e8824fd0");
        assert_eq!(format!("{:014x}", randomness([0xff; 16], u64::MAX)), "3be95b4a82953c");
        let w3c = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
        ];
        assert_eq!(format!("{:014x}", randomness(w3c, 0)), "ec8d2924f854aa");
        assert_eq!(format!("{:014x}", randomness(w3c, 0x5eed)), "19fbd0e62e4a3c");
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold_for(1.0), 0);
        assert_eq!(threshold_for(0.0), MAX_THRESHOLD);
        assert_eq!(threshold_for(-1.0), MAX_THRESHOLD);
        assert_eq!(threshold_for(f64::NAN), MAX_THRESHOLD);
        assert_eq!(threshold_for(0.5), 1 << 55);
        assert_eq!(encode_threshold(threshold_for(0.5)), "8");
        assert_eq!(encode_threshold(threshold_for(0.25)), "c");
        assert_eq!(encode_threshold(threshold_for(0.1)), "e6666666666666");
        assert_eq!(encode_threshold(threshold_for(0.01)), "fd70a3d70a3d71");
        assert_eq!(encode_threshold(0), "0");
        assert_eq!(decode_threshold("8"), Some(1 << 55));
        assert_eq!(decode_threshold("0"), Some(0));
        assert_eq!(decode_threshold("fd70a3d70a3d71"), Some(threshold_for(0.01)));
        assert_eq!(decode_threshold(""), None);
        assert_eq!(decode_threshold("123456789abcdef"), None);
        assert_eq!(decode_threshold("xyz"), None);
        assert_eq!(probability_for_threshold(1 << 55), 0.5);
    }

    #[test]
    fn tracestate_format() {
        assert_eq!(ot_tracestate(1 << 55, 0x0012_3456_789a_bcde), "th:8;rv:123456789abcde");
        assert_eq!(ot_tracestate(0, 5), "th:0;rv:00000000000005");
        assert_eq!(
            parse_ot_tracestate("th:8;rv:123456789abcde"),
            (Some(1 << 55), Some(0x0012_3456_789a_bcde))
        );
        assert_eq!(adjusted_count(0.25), 4.0);
        assert_eq!(adjusted_count(0.0), 0.0);
    }
}
