//! Minimal Apache Thrift binary and compact protocol readers (and writers, for tests, fuzz seeds
//! and benchmarks), enough for Jaeger's and Zipkin's IDL.
//!
//! Readers borrow the input and never allocate from a length read off the wire before checking
//! that many bytes are present; nesting depth is bounded by [`MAX_DEPTH`]. Fields of an unexpected
//! type are skipped, as Thrift's generated code does.

use std::fmt;

/// Deepest struct/list/map nesting accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThriftError(pub String);

impl fmt::Display for ThriftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, ThriftError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(ThriftError(msg.into()))
}

/// Thrift value types, independent of the protocol's encoding of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TType {
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    Binary,
    List,
    Set,
    Map,
    Struct,
}

/// Thrift message types.
pub const MSG_CALL: u8 = 1;
pub const MSG_ONEWAY: u8 = 4;

/// A protocol reader.
pub trait Reader<'a> {
    /// The next field's type and id, or `None` at the end of the struct.
    fn field_begin(&mut self) -> Result<Option<(TType, i16)>>;
    fn struct_begin(&mut self) -> Result<()>;
    fn struct_end(&mut self);
    fn bool(&mut self) -> Result<bool>;
    fn byte(&mut self) -> Result<i8>;
    fn i16(&mut self) -> Result<i16>;
    fn i32(&mut self) -> Result<i32>;
    fn i64(&mut self) -> Result<i64>;
    fn double(&mut self) -> Result<f64>;
    fn binary(&mut self) -> Result<&'a [u8]>;
    /// Element type and count of a list or set.
    fn list_begin(&mut self) -> Result<(TType, usize)>;
    /// Key type, value type and count of a map.
    fn map_begin(&mut self) -> Result<(TType, TType, usize)>;
    /// A message header: (name, message type, sequence id).
    fn message_begin(&mut self) -> Result<(&'a [u8], u8, i32)>;
    fn remaining(&self) -> usize;
    fn depth(&mut self) -> &mut usize;

    fn string(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.binary()?).into_owned())
    }

    /// Skips a value of type `t`.
    fn skip(&mut self, t: TType) -> Result<()> {
        match t {
            TType::Bool => self.bool().map(drop),
            TType::Byte => self.byte().map(drop),
            TType::I16 => self.i16().map(drop),
            TType::I32 => self.i32().map(drop),
            TType::I64 => self.i64().map(drop),
            TType::Double => self.double().map(drop),
            TType::Binary => self.binary().map(drop),
            TType::Struct => {
                self.struct_begin()?;
                while let Some((ft, _)) = self.field_begin()? {
                    self.skip(ft)?;
                }
                self.struct_end();
                Ok(())
            }
            TType::List | TType::Set => {
                let (et, n) = self.list_begin()?;
                self.enter()?;
                for _ in 0..n {
                    self.skip(et)?;
                }
                self.leave();
                Ok(())
            }
            TType::Map => {
                let (kt, vt, n) = self.map_begin()?;
                self.enter()?;
                for _ in 0..n {
                    self.skip(kt)?;
                    self.skip(vt)?;
                }
                self.leave();
                Ok(())
            }
        }
    }

    fn enter(&mut self) -> Result<()> {
        let d = self.depth();
        *d += 1;
        if *d > MAX_DEPTH {
            return err(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        let d = self.depth();
        *d = d.saturating_sub(1);
    }

    /// Reads a list of `T`, each element with `read`, skipping the list if its element type is not
    /// `want`.
    fn list_of<T>(&mut self, want: TType, mut read: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>>
    where
        Self: Sized,
    {
        let (et, n) = self.list_begin()?;
        self.enter()?;
        let mut out = Vec::new();
        if et == want {
            out.reserve(n.min(1024));
            for _ in 0..n {
                out.push(read(self)?);
            }
        } else {
            for _ in 0..n {
                self.skip(et)?;
            }
        }
        self.leave();
        Ok(out)
    }
}

fn check_count(n: i64, remaining: usize, what: &str) -> Result<usize> {
    if n < 0 {
        return err(format!("negative {what} size {n}"));
    }
    // Every element takes at least one byte.
    if n as u64 > remaining as u64 {
        return err(format!("{what} of {n} elements but only {remaining} bytes left"));
    }
    Ok(n as usize)
}

/// The binary protocol (big-endian, fixed-width integers).
pub struct BinaryReader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> BinaryReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BinaryReader { buf, pos: 0, depth: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return err(format!(
                "unexpected end of input at byte {} (wanted {n} more bytes)",
                self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn ttype(b: u8) -> Result<TType> {
        Ok(match b {
            2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::Binary,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            _ => return err(format!("unknown binary-protocol type {b}")),
        })
    }

    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Reader<'a> for BinaryReader<'a> {
    fn field_begin(&mut self) -> Result<Option<(TType, i16)>> {
        let t = self.take(1)?[0];
        if t == 0 {
            return Ok(None);
        }
        let t = Self::ttype(t)?;
        let id = self.i16()?;
        Ok(Some((t, id)))
    }
    fn struct_begin(&mut self) -> Result<()> {
        self.enter()
    }
    fn struct_end(&mut self) {
        self.leave()
    }
    fn bool(&mut self) -> Result<bool> {
        Ok(self.take(1)?[0] != 0)
    }
    fn byte(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn double(&mut self) -> Result<f64> {
        Ok(f64::from_bits(u64::from_be_bytes(self.take(8)?.try_into().unwrap())))
    }
    fn binary(&mut self) -> Result<&'a [u8]> {
        let n = self.i32()?;
        let n = check_count(n as i64, self.remaining(), "string")?;
        self.take(n)
    }
    fn list_begin(&mut self) -> Result<(TType, usize)> {
        let t = Self::ttype(self.take(1)?[0])?;
        let n = self.i32()?;
        Ok((t, check_count(n as i64, self.remaining(), "list")?))
    }
    fn map_begin(&mut self) -> Result<(TType, TType, usize)> {
        let k = Self::ttype(self.take(1)?[0])?;
        let v = Self::ttype(self.take(1)?[0])?;
        let n = self.i32()?;
        Ok((k, v, check_count(n as i64, self.remaining(), "map")?))
    }
    fn message_begin(&mut self) -> Result<(&'a [u8], u8, i32)> {
        let first = self.i32()?;
        if first < 0 {
            // Strict: version and type, then name and sequence id.
            if (first as u32) & 0xffff_0000 != 0x8001_0000 {
                return err(format!("bad binary-protocol message version {:#x}", first as u32));
            }
            let mtype = (first & 0xff) as u8;
            let name = self.binary()?;
            let seq = self.i32()?;
            Ok((name, mtype, seq))
        } else {
            // Old, non-strict: name length, name, type, sequence id.
            let n = check_count(first as i64, self.remaining(), "message name")?;
            let name = self.take(n)?;
            let mtype = self.take(1)?[0];
            let seq = self.i32()?;
            Ok((name, mtype, seq))
        }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }
}

/// The compact protocol (zigzag varints, field-id deltas, bools folded into field headers).
pub struct CompactReader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    last_field: Vec<i16>,
    pending_bool: Option<bool>,
}

impl<'a> CompactReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        CompactReader {
            buf,
            pos: 0,
            depth: 0,
            last_field: vec![0],
            pending_bool: None,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return err(format!(
                "unexpected end of input at byte {} (wanted {n} more bytes)",
                self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn ttype(b: u8) -> Result<TType> {
        Ok(match b {
            1 | 2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::Binary,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            _ => return err(format!("unknown compact-protocol type {b}")),
        })
    }
}

impl<'a> Reader<'a> for CompactReader<'a> {
    fn field_begin(&mut self) -> Result<Option<(TType, i16)>> {
        let b = self.take(1)?[0];
        if b == 0 {
            return Ok(None);
        }
        let raw = b & 0x0f;
        let t = Self::ttype(raw)?;
        let delta = (b >> 4) as i16;
        let last = self.last_field.last_mut().expect("field stack never empty");
        let id = if delta == 0 {
            let z = self.zigzag()?;
            i16::try_from(z).map_err(|_| ThriftError(format!("field id {z} out of range")))?
        } else {
            last.wrapping_add(delta)
        };
        *self.last_field.last_mut().expect("field stack never empty") = id;
        if t == TType::Bool {
            self.pending_bool = Some(raw == 1);
        }
        Ok(Some((t, id)))
    }
    fn struct_begin(&mut self) -> Result<()> {
        self.enter()?;
        self.last_field.push(0);
        Ok(())
    }
    fn struct_end(&mut self) {
        self.leave();
        if self.last_field.len() > 1 {
            self.last_field.pop();
        }
    }
    fn bool(&mut self) -> Result<bool> {
        if let Some(b) = self.pending_bool.take() {
            return Ok(b);
        }
        Ok(self.take(1)?[0] == 1)
    }
    fn byte(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16> {
        let z = self.zigzag()?;
        i16::try_from(z).map_err(|_| ThriftError(format!("i16 value {z} out of range")))
    }
    fn i32(&mut self) -> Result<i32> {
        let z = self.zigzag()?;
        i32::try_from(z).map_err(|_| ThriftError(format!("i32 value {z} out of range")))
    }
    fn i64(&mut self) -> Result<i64> {
        self.zigzag()
    }
    fn double(&mut self) -> Result<f64> {
        Ok(f64::from_bits(u64::from_le_bytes(self.take(8)?.try_into().unwrap())))
    }
    fn binary(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        let n = check_count(n.min(i64::MAX as u64) as i64, self.remaining(), "string")?;
        self.take(n)
    }
    fn list_begin(&mut self) -> Result<(TType, usize)> {
        let b = self.take(1)?[0];
        let t = Self::ttype(b & 0x0f)?;
        let n = if b >> 4 == 15 {
            self.varint()?.min(i64::MAX as u64) as i64
        } else {
            (b >> 4) as i64
        };
        Ok((t, check_count(n, self.remaining(), "list")?))
    }
    fn map_begin(&mut self) -> Result<(TType, TType, usize)> {
        let n = self.varint()?.min(i64::MAX as u64) as i64;
        if n == 0 {
            return Ok((TType::Byte, TType::Byte, 0));
        }
        let kv = self.take(1)?[0];
        let n = check_count(n, self.remaining(), "map")?;
        Ok((Self::ttype(kv >> 4)?, Self::ttype(kv & 0x0f)?, n))
    }
    fn message_begin(&mut self) -> Result<(&'a [u8], u8, i32)> {
        let id = self.take(1)?[0];
        if id != 0x82 {
            return err(format!(
                "not a compact-protocol message (first byte {id:#04x}, expected 0x82)"
            ));
        }
        let vt = self.take(1)?[0];
        if vt & 0x1f != 1 {
            return err(format!("unsupported compact-protocol version {}", vt & 0x1f));
        }
        let mtype = (vt >> 5) & 0x07;
        let seq = self.varint()? as u32 as i32;
        let name = self.binary()?;
        Ok((name, mtype, seq))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }
}

/// A protocol writer (for tests, fuzz seeds and tools; the receivers only read).
pub trait Writer {
    fn field(&mut self, t: TType, id: i16);
    fn bool_field(&mut self, id: i16, v: bool);
    fn stop(&mut self);
    fn struct_begin(&mut self);
    fn struct_end(&mut self);
    fn i16(&mut self, v: i16);
    fn i32(&mut self, v: i32);
    fn i64(&mut self, v: i64);
    fn double(&mut self, v: f64);
    fn binary(&mut self, v: &[u8]);
    fn list_begin(&mut self, t: TType, n: usize);
    fn message_begin(&mut self, name: &str, mtype: u8, seq: i32);
    fn into_bytes(self) -> Vec<u8>;

    fn string(&mut self, s: &str) {
        self.binary(s.as_bytes())
    }
}

#[derive(Default)]
pub struct BinaryWriter {
    out: Vec<u8>,
}

impl BinaryWriter {
    fn tbyte(t: TType) -> u8 {
        match t {
            TType::Bool => 2,
            TType::Byte => 3,
            TType::Double => 4,
            TType::I16 => 6,
            TType::I32 => 8,
            TType::I64 => 10,
            TType::Binary => 11,
            TType::Struct => 12,
            TType::Map => 13,
            TType::Set => 14,
            TType::List => 15,
        }
    }
}

impl Writer for BinaryWriter {
    fn field(&mut self, t: TType, id: i16) {
        self.out.push(Self::tbyte(t));
        self.i16(id);
    }
    fn bool_field(&mut self, id: i16, v: bool) {
        self.field(TType::Bool, id);
        self.out.push(v as u8);
    }
    fn stop(&mut self) {
        self.out.push(0);
    }
    fn struct_begin(&mut self) {}
    fn struct_end(&mut self) {}
    fn i16(&mut self, v: i16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn double(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    fn binary(&mut self, v: &[u8]) {
        self.i32(v.len() as i32);
        self.out.extend_from_slice(v);
    }
    fn list_begin(&mut self, t: TType, n: usize) {
        self.out.push(Self::tbyte(t));
        self.i32(n as i32);
    }
    fn message_begin(&mut self, name: &str, mtype: u8, seq: i32) {
        self.i32((0x8001_0000u32 | mtype as u32) as i32);
        self.string(name);
        self.i32(seq);
    }
    fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

pub struct CompactWriter {
    out: Vec<u8>,
    last: Vec<i16>,
}

impl Default for CompactWriter {
    fn default() -> Self {
        CompactWriter {
            out: Vec::new(),
            last: vec![0],
        }
    }
}

impl CompactWriter {
    fn tnib(t: TType) -> u8 {
        match t {
            TType::Bool => 1,
            TType::Byte => 3,
            TType::I16 => 4,
            TType::I32 => 5,
            TType::I64 => 6,
            TType::Double => 7,
            TType::Binary => 8,
            TType::List => 9,
            TType::Set => 10,
            TType::Map => 11,
            TType::Struct => 12,
        }
    }
    fn varint(&mut self, mut v: u64) {
        loop {
            if v < 0x80 {
                self.out.push(v as u8);
                return;
            }
            self.out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }
    fn header(&mut self, nib: u8, id: i16) {
        let last = *self.last.last().unwrap();
        let delta = id.wrapping_sub(last);
        if id > last && delta <= 15 {
            self.out.push(((delta as u8) << 4) | nib);
        } else {
            self.out.push(nib);
            self.zigzag(id as i64);
        }
        *self.last.last_mut().unwrap() = id;
    }
}

impl Writer for CompactWriter {
    fn field(&mut self, t: TType, id: i16) {
        self.header(Self::tnib(t), id);
    }
    fn bool_field(&mut self, id: i16, v: bool) {
        self.header(if v { 1 } else { 2 }, id);
    }
    fn stop(&mut self) {
        self.out.push(0);
    }
    fn struct_begin(&mut self) {
        self.last.push(0);
    }
    fn struct_end(&mut self) {
        self.last.pop();
    }
    fn i16(&mut self, v: i16) {
        self.zigzag(v as i64)
    }
    fn i32(&mut self, v: i32) {
        self.zigzag(v as i64)
    }
    fn i64(&mut self, v: i64) {
        self.zigzag(v)
    }
    fn double(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn binary(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v);
    }
    fn list_begin(&mut self, t: TType, n: usize) {
        if n < 15 {
            self.out.push(((n as u8) << 4) | Self::tnib(t));
        } else {
            self.out.push(0xf0 | Self::tnib(t));
            self.varint(n as u64);
        }
    }
    fn message_begin(&mut self, name: &str, mtype: u8, seq: i32) {
        self.out.push(0x82);
        self.out.push((mtype << 5) | 1);
        self.varint(seq as u32 as u64);
        self.string(name);
    }
    fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<W: Writer + Default>(read: impl Fn(&[u8]) -> Vec<String>) {
        let mut w = W::default();
        w.message_begin("emitBatch", MSG_ONEWAY, 7);
        w.struct_begin();
        w.field(TType::I64, 1);
        w.i64(-5);
        w.bool_field(2, true);
        w.field(TType::Binary, 20);
        w.string("hé");
        w.field(TType::List, 3);
        w.list_begin(TType::I32, 20);
        for i in 0..20 {
            w.i32(i * 1000);
        }
        w.field(TType::Double, 4);
        w.double(1.5);
        w.bool_field(5, false);
        w.stop();
        w.struct_end();
        let got = read(&w.into_bytes());
        assert_eq!(
            got,
            ["emitBatch/4/7", "1:-5", "2:true", "20:hé", "3:20", "4:1.5", "5:false"]
        );
    }

    fn read_all<'a, R: Reader<'a>>(r: &mut R) -> Vec<String> {
        let (name, t, seq) = r.message_begin().unwrap();
        let mut out = vec![format!("{}/{t}/{seq}", String::from_utf8_lossy(name))];
        r.struct_begin().unwrap();
        while let Some((t, id)) = r.field_begin().unwrap() {
            let v = match t {
                TType::I64 => r.i64().unwrap().to_string(),
                TType::Bool => r.bool().unwrap().to_string(),
                TType::Binary => r.string().unwrap(),
                TType::Double => r.double().unwrap().to_string(),
                TType::List => {
                    let (_, n) = r.list_begin().unwrap();
                    for _ in 0..n {
                        r.i32().unwrap();
                    }
                    n.to_string()
                }
                _ => panic!("{t:?}"),
            };
            out.push(format!("{id}:{v}"));
        }
        r.struct_end();
        assert_eq!(r.remaining(), 0);
        out
    }

    #[test]
    fn binary_and_compact_round_trip() {
        roundtrip::<BinaryWriter>(|b| read_all(&mut BinaryReader::new(b)));
        roundtrip::<CompactWriter>(|b| read_all(&mut CompactReader::new(b)));
    }

    #[test]
    fn lengths_beyond_the_input_are_refused_without_allocating() {
        let mut r = BinaryReader::new(&[12, 0x7f, 0xff, 0xff, 0xff]);
        assert!(r.list_begin().unwrap_err().0.contains("only 0 bytes left"));
        let mut r = CompactReader::new(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(r.list_begin().is_err());
        let mut r = BinaryReader::new(&[0, 0, 0, 9, b'a']);
        assert!(r.binary().is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        // A list of lists of lists ... (compact: 0x19 = one element of type list).
        let data = vec![0x19u8; 10_000];
        let mut r = CompactReader::new(&data);
        assert!(r.skip(TType::List).unwrap_err().0.contains("nesting"));
    }
}
