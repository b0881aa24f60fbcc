//! The OpenTelemetry Collector's probabilistic hash (FNV-1a 64 over salt
//! and trace ID) and threshold, used by `otel_probabilistic` policies at
//! run time. No dependencies on the rest of the crate.

/// The salt the collector uses when `hash_salt` is empty.
pub const DEFAULT_HASH_SALT: &str = "default-hash-seed";

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 hash from `state` over `bytes`
/// (`state = (state ^ byte) * 0x100000001b3` per byte).
pub fn fnv1a64_continue(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_continue(FNV_OFFSET_BASIS, bytes)
}

/// The collector's probabilistic hash: FNV-1a 64 over the salt bytes
/// followed by the 16 trace-ID bytes (empty salt = [`DEFAULT_HASH_SALT`]).
pub fn otel_trace_hash(hash_salt: &str, trace_id: [u8; 16]) -> u64 {
    let salt = if hash_salt.is_empty() {
        DEFAULT_HASH_SALT
    } else {
        hash_salt
    };
    fnv1a64_continue(fnv1a64(salt.as_bytes()), &trace_id)
}

/// The collector's probabilistic threshold for `ratio = percentage / 100`:
/// `(2^64 - 1) * ratio` computed with 64-bit-mantissa round-to-nearest-even
/// (Go `big.Float` with precision 64) and truncated toward zero; ratios
/// `<= 0` give 0 and ratios `>= 1` give `u64::MAX`.
pub fn otel_probabilistic_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio >= 1.0 {
        return u64::MAX;
    }
    // ratio = mant * 2^exp exactly.
    let bits = ratio.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, exp) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    // Exact product (< 2^117), then round to 64 significant bits.
    let product = u128::from(u64::MAX) * u128::from(mant);
    let bit_len = 128 - product.leading_zeros() as i32;
    let (rounded, shift) = if bit_len > 64 {
        let s = (bit_len - 64) as u32;
        let q = product >> s;
        let rem = product & ((1u128 << s) - 1);
        let half = 1u128 << (s - 1);
        let q = if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        };
        (q, s as i32)
    } else {
        (product, 0)
    };
    let total = shift + exp;
    if total >= 0 {
        // Cannot happen for ratio < 1, kept for completeness.
        u64::try_from(rounded << total.min(127)).unwrap_or(u64::MAX)
    } else if -total >= 128 {
        0
    } else {
        u64::try_from(rounded >> (-total)).unwrap_or(u64::MAX)
    }
}

/// The collector's probabilistic decision: `otel_trace_hash(salt, id) <= threshold`.
pub fn otel_probabilistic_keep(hash_salt: &str, trace_id: [u8; 16], sampling_percentage: f64) -> bool {
    otel_trace_hash(hash_salt, trace_id) <= otel_probabilistic_threshold(sampling_percentage / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn go_big_float_threshold() {
        // (2^64-1) * 0.5 = 2^63 - 0.5 -> truncated.
        assert_eq!(otel_probabilistic_threshold(0.5), 0x7fff_ffff_ffff_ffff);
        assert_eq!(otel_probabilistic_threshold(0.25), 0x3fff_ffff_ffff_ffff);
        assert_eq!(otel_probabilistic_threshold(1.0), u64::MAX);
        assert_eq!(otel_probabilistic_threshold(1.5), u64::MAX);
        assert_eq!(otel_probabilistic_threshold(0.0), 0);
        assert_eq!(otel_probabilistic_threshold(-0.5), 0);
        // Values checked against an exact rational computation (round the
        // product to 64 significant bits, nearest even, then truncate).
        assert_eq!(otel_probabilistic_threshold(0.1), 1_844_674_407_370_955_263);
        assert_eq!(otel_probabilistic_threshold(0.33), 6_087_425_544_324_152_319);
        assert_eq!(otel_probabilistic_threshold(0.001), 18_446_744_073_709_551);
        assert_eq!(otel_probabilistic_threshold(0.123456789), 2_277_375_790_844_960_511);
        assert_eq!(otel_probabilistic_threshold(1e-10), 1_844_674_407);
        assert_eq!(otel_probabilistic_threshold(0.9999999), 18_446_742_229_035_145_215);
    }
}
