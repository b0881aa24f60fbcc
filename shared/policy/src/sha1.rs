//! SHA-1 (FIPS 180-4), only to reproduce Refinery's `DeterministicSampler`
//! decision bit for bit, plus that decision itself.
//!
//! SHA-1 is not used for anything security related here: Refinery hashes
//! the trace ID string with it to pick traces. No SHA-1 crate is in the
//! workspace's lock file, and the algorithm is short, so it is implemented
//! here and checked against the FIPS test vectors.

/// SHA-1 digest of `msg`.
pub fn sha1(msg: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let bit_len = (msg.len() as u64).wrapping_mul(8);
    // Message, 0x80, zeros, 64-bit big-endian length: a multiple of 64 bytes.
    let mut tail = [0u8; 128];
    let full = msg.len() / 64 * 64;
    let rest = &msg[full..];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_be_bytes());
    for block in msg[..full].chunks_exact(64).chain(tail[..tail_len].chunks_exact(64)) {
        compress(&mut h, block);
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn compress(h: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (i, chunk) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    for i in 16..80 {
        w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    for (i, wi) in w.iter().enumerate() {
        let (f, k) = match i {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let t = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(*wi);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = t;
    }
    for (x, v) in h.iter_mut().zip([a, b, c, d, e]) {
        *x = x.wrapping_add(v);
    }
}

/// Refinery's salt for its deterministic sampler (appended to the trace ID).
pub const REFINERY_DETERMINISTIC_SALT: &str = "5VQ8l2jE5aJLPVqk";

/// The trace ID as Refinery (through Honeycomb's OTLP translation) writes
/// it: lower-case hex, only the last 8 bytes when the first 8 are zero.
pub fn refinery_trace_id_string(trace_id: [u8; 16]) -> String {
    let bytes: &[u8] = if trace_id[..8] == [0u8; 8] {
        &trace_id[8..]
    } else {
        &trace_id
    };
    let mut s = String::with_capacity(32);
    for b in bytes {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    s
}

/// Refinery's `DeterministicSampler` decision: with `v` the first four
/// bytes (big-endian) of `SHA-1(trace ID string ++ salt)`, keep iff
/// `v <= u32::MAX / sample_rate` (integer division); a rate of 0 or 1
/// keeps everything.
pub fn refinery_deterministic_keep(trace_id: [u8; 16], sample_rate: u64) -> bool {
    refinery_deterministic_keep_str(&refinery_trace_id_string(trace_id), sample_rate)
}

/// [`refinery_deterministic_keep`] on a trace ID already written as a
/// string.
pub fn refinery_deterministic_keep_str(trace_id: &str, sample_rate: u64) -> bool {
    if sample_rate <= 1 {
        return true;
    }
    let mut msg = trace_id.as_bytes().to_vec();
    msg.extend_from_slice(REFINERY_DETERMINISTIC_SALT.as_bytes());
    let sum = sha1(&msg);
    let v = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
    let upper = u32::MAX / u32::try_from(sample_rate).unwrap_or(u32::MAX);
    v <= upper
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; 20]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fips_vectors() {
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hex(sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(hex(sha1(&million)), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
        // Lengths around the padding boundary (55, 56, 63, 64 bytes).
        assert_eq!(hex(sha1(&[b'a'; 55])), "c1c8bbdc22796e28c0e15163d20899b65621d65a");
        assert_eq!(hex(sha1(&[b'a'; 56])), "c2db330f6083854c99d4b5bfb6e8f29f201be699");
        assert_eq!(hex(sha1(&[b'a'; 64])), "0098ba824b5c16427bd7a1122a5a442a25ec644d");
    }

    #[test]
    fn trace_id_strings() {
        let mut id = [0u8; 16];
        id[15] = 0xab;
        assert_eq!(refinery_trace_id_string(id), "00000000000000ab");
        id[0] = 1;
        assert_eq!(refinery_trace_id_string(id), "010000000000000000000000000000ab");
    }

    #[test]
    fn refinery_vectors() {
        // sample/deterministic_test.go TestGetSampleRate (rate 10).
        for (id, kept) in [
            ("abc123", false),
            ("def456", true),
            ("ghi789", false),
            ("zyx987", false),
            ("wvu654", false),
            ("tsr321", false),
        ] {
            assert_eq!(refinery_deterministic_keep_str(id, 10), kept, "{id}");
        }
    }

    #[test]
    fn deterministic_rate() {
        assert!(refinery_deterministic_keep([3; 16], 1));
        let kept = (0..20_000u32)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id[8] = 1;
                refinery_deterministic_keep(id, 10)
            })
            .count();
        assert!((1_800..2_200).contains(&kept), "{kept}");
    }
}
