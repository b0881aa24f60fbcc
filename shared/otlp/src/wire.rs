//! A minimal, allocation-free protobuf wire-format reader and writer: just enough to walk OTLP
//! messages field by field and to re-frame byte slices of them.

use thiserror::Error;

/// Why a byte string is not valid protobuf.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated varint at byte {0}")]
    TruncatedVarint(usize),
    #[error("varint longer than 10 bytes at byte {0}")]
    VarintTooLong(usize),
    #[error("field {field} at byte {at} declares {len} bytes but only {left} remain")]
    Truncated {
        field: u32,
        at: usize,
        len: u64,
        left: usize,
    },
    #[error("field number 0 at byte {0}")]
    FieldZero(usize),
    #[error("unsupported wire type {wire_type} for field {field} at byte {at}")]
    WireType { field: u32, wire_type: u8, at: usize },
}

pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub wire_type: u8,
    /// For `LEN` fields, the payload (without tag and length); for the others, the raw value bytes.
    pub payload: &'a [u8],
    /// The whole field as it appears in the message: tag, length prefix and payload.
    pub raw: &'a [u8],
}

/// Iterates over the fields of one message.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` inside the outermost buffer, for error messages.
    base: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0, base: 0 }
    }

    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    /// The absolute offset of the next field.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }
}

#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError::TruncatedVarint(base + *pos));
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::VarintTooLong(base + *pos))
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        Some(self.read_field(start).inspect_err(|_| {
            // Stop iterating after the first error.
            self.pos = self.buf.len();
        }))
    }
}

impl<'a> Fields<'a> {
    fn read_field(&mut self, start: usize) -> Result<Field<'a>, WireError> {
        let tag = read_varint(self.buf, &mut self.pos, self.base)?;
        let number = (tag >> 3) as u32;
        let wire_type = (tag & 7) as u8;
        if number == 0 {
            return Err(WireError::FieldZero(self.base + start));
        }
        let left = self.buf.len() - self.pos;
        let (payload_start, len) = match wire_type {
            VARINT => {
                let s = self.pos;
                read_varint(self.buf, &mut self.pos, self.base)?;
                (s, self.pos - s)
            }
            FIXED64 => (self.pos, 8),
            FIXED32 => (self.pos, 4),
            LEN => {
                let len = read_varint(self.buf, &mut self.pos, self.base)?;
                let left = self.buf.len() - self.pos;
                if len > left as u64 {
                    return Err(WireError::Truncated {
                        field: number,
                        at: self.base + start,
                        len,
                        left,
                    });
                }
                (self.pos, len as usize)
            }
            other => {
                return Err(WireError::WireType {
                    field: number,
                    wire_type: other,
                    at: self.base + start,
                })
            }
        };
        if wire_type != VARINT {
            if len > self.buf.len() - payload_start {
                return Err(WireError::Truncated {
                    field: number,
                    at: self.base + start,
                    len: len as u64,
                    left,
                });
            }
            self.pos = payload_start + len;
        }
        Ok(Field {
            number,
            wire_type,
            payload: &self.buf[payload_start..payload_start + len],
            raw: &self.buf[start..self.pos],
        })
    }
}

/// Bytes needed to encode `v` as a varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes the tag and length prefix of a length-delimited field.
#[inline]
pub fn put_len_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | u64::from(LEN));
    put_varint(out, len as u64);
}

/// Size of a length-delimited field with a payload of `len` bytes.
#[inline]
pub fn len_field_size(field: u32, len: usize) -> usize {
    varint_len((u64::from(field) << 3) | u64::from(LEN)) + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos, 0).unwrap(), v);
        }
    }

    #[test]
    fn truncated_and_bad_inputs_are_errors() {
        assert!(matches!(
            Fields::new(&[0x0a, 0x05, 1]).next(),
            Some(Err(WireError::Truncated { .. }))
        ));
        assert!(matches!(
            Fields::new(&[0x80]).next(),
            Some(Err(WireError::TruncatedVarint(_)))
        ));
        assert!(matches!(
            Fields::new(&[0x00]).next(),
            Some(Err(WireError::FieldZero(_)))
        ));
        assert!(matches!(
            Fields::new(&[0x0b]).next(),
            Some(Err(WireError::WireType { .. }))
        ));
        assert!(matches!(
            Fields::new(&[0x09, 1, 2]).next(),
            Some(Err(WireError::Truncated { .. }))
        ));
        let long = [0xffu8; 11];
        assert!(matches!(
            Fields::new(&long).next(),
            Some(Err(WireError::VarintTooLong(_)))
        ));
    }
}
