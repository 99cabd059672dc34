//! A tiny CBOR (RFC 8949) encoder and decoder: what the dohost ABI uses and nothing more.
//!
//! Unsigned and negative integers, byte and text strings, arrays, maps, booleans, null and
//! floats (SQL values: the encoder writes doubles, the decoder reads half, single and
//! double precision), all with definite lengths. The decoder also skips tags (so unknown
//! map values can be ignored) but never returns them; indefinite lengths are rejected. Every
//! read is checked against the end of the input, and array/map counts against the bytes
//! left, so hostile input can neither read out of bounds nor make us allocate much.

const UINT: u8 = 0;
const NINT: u8 = 1;
const BSTR: u8 = 2;
const TSTR: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const SIMPLE: u8 = 7;
const FALSE: u64 = 20;
const TRUE: u64 = 21;
const NULL: u64 = 22;

/// Writes CBOR items into a growable buffer. Methods chain:
/// `Encoder::new().map(1).text("a").uint(1).finish()`.
#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder { buf: Vec::new() }
    }

    /// Reserves `n` bytes up front (the SDK sizes responses this way, so a large body is
    /// copied once).
    pub fn with_capacity(n: usize) -> Self {
        Encoder { buf: Vec::with_capacity(n) }
    }

    /// The initial byte plus the big-endian argument in the shortest form (RFC 8949 §3).
    #[inline(never)]
    fn head(&mut self, major: u8, arg: u64) -> &mut Self {
        let m = major << 5;
        if arg < 24 {
            self.buf.push(m | arg as u8);
        } else if arg <= 0xff {
            self.buf.extend_from_slice(&[m | 24, arg as u8]);
        } else if arg <= 0xffff {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&(arg as u16).to_be_bytes());
        } else if arg <= 0xffff_ffff {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&(arg as u32).to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        }
        self
    }

    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.head(UINT, v)
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            self.head(UINT, v as u64)
        } else {
            self.head(NINT, !(v as u64)) // -1 - v, without overflow for i64::MIN
        }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(BSTR, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(TSTR, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// Starts an array of `count` items (write them next).
    pub fn array(&mut self, count: usize) -> &mut Self {
        self.head(ARRAY, count as u64)
    }

    /// Starts a map of `count` key/value pairs (write them next).
    pub fn map(&mut self, count: usize) -> &mut Self {
        self.head(MAP, count as u64)
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.head(SIMPLE, if v { TRUE } else { FALSE })
    }

    pub fn null(&mut self) -> &mut Self {
        self.head(SIMPLE, NULL)
    }

    /// Always 8 bytes (a double): the host reads every precision, and SQLite stores doubles.
    pub fn float(&mut self, v: f64) -> &mut Self {
        self.buf.push(SIMPLE << 5 | 27);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The input was not the CBOR we expected (malformed, truncated, or another type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

/// What the next item is, without consuming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    End,
    UInt,
    NInt,
    Bytes,
    Text,
    Array,
    Map,
    Tag,
    Bool,
    Null,
    Float,
    Other,
}

/// Reads CBOR items from a slice. Strings are returned as slices of the input.
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, DecodeError>;

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data, pos: 0 }
    }

    /// True when every byte was consumed.
    pub fn done(&self) -> bool {
        self.pos == self.data.len()
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn peek(&self) -> Type {
        let b = match self.data.get(self.pos) {
            Some(b) => *b,
            None => return Type::End,
        };
        match b >> 5 {
            UINT => Type::UInt,
            NINT => Type::NInt,
            BSTR => Type::Bytes,
            TSTR => Type::Text,
            ARRAY => Type::Array,
            MAP => Type::Map,
            TAG => Type::Tag,
            _ => match (b & 31) as u64 {
                FALSE | TRUE => Type::Bool,
                NULL => Type::Null,
                25 | 26 | 27 => Type::Float,
                _ => Type::Other,
            },
        }
    }

    /// An initial byte and its argument; indefinite lengths and reserved forms fail.
    #[inline(never)]
    fn head(&mut self) -> R<(u8, u64)> {
        let b = *self.data.get(self.pos).ok_or(DecodeError)?;
        self.pos += 1;
        let ai = b & 31;
        if ai < 24 {
            return Ok((b >> 5, ai as u64));
        }
        if ai > 27 {
            return Err(DecodeError);
        }
        let n = 1usize << (ai - 24);
        if self.remaining() < n {
            return Err(DecodeError);
        }
        let mut v = 0u64;
        for &byte in &self.data[self.pos..self.pos + n] {
            v = v << 8 | byte as u64;
        }
        self.pos += n;
        Ok((b >> 5, v))
    }

    fn expect(&mut self, major: u8) -> R<u64> {
        match self.head()? {
            (m, arg) if m == major => Ok(arg),
            _ => Err(DecodeError),
        }
    }

    pub fn uint(&mut self) -> R<u64> {
        self.expect(UINT)
    }

    /// An unsigned or negative integer that fits in an i64.
    pub fn int(&mut self) -> R<i64> {
        let (major, arg) = self.head()?;
        if arg > i64::MAX as u64 {
            return Err(DecodeError);
        }
        match major {
            UINT => Ok(arg as i64),
            NINT => Ok(-1 - arg as i64),
            _ => Err(DecodeError),
        }
    }

    fn string(&mut self, major: u8) -> R<&'a [u8]> {
        let len = self.expect(major)?;
        if len > self.remaining() as u64 {
            return Err(DecodeError);
        }
        let s = &self.data[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    pub fn bytes(&mut self) -> R<&'a [u8]> {
        self.string(BSTR)
    }

    pub fn text(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.string(TSTR)?).map_err(|_| DecodeError)
    }

    fn count(&mut self, major: u8, min_bytes: u64) -> R<usize> {
        let n = self.expect(major)?;
        if n > self.remaining() as u64 / min_bytes {
            return Err(DecodeError); // each item takes at least one byte
        }
        Ok(n as usize)
    }

    /// The number of items of an array (read them next).
    pub fn array(&mut self) -> R<usize> {
        self.count(ARRAY, 1)
    }

    /// The number of key/value pairs of a map (read them next).
    pub fn map(&mut self) -> R<usize> {
        self.count(MAP, 2)
    }

    pub fn bool(&mut self) -> R<bool> {
        match self.expect(SIMPLE)? {
            FALSE => Ok(false),
            TRUE => Ok(true),
            _ => Err(DecodeError),
        }
    }

    pub fn null(&mut self) -> R<()> {
        match self.expect(SIMPLE)? {
            NULL => Ok(()),
            _ => Err(DecodeError),
        }
    }

    /// A half, single or double precision float, as an f64.
    pub fn float(&mut self) -> R<f64> {
        if self.peek() != Type::Float {
            return Err(DecodeError);
        }
        let ai = self.data[self.pos] & 31;
        let bits = self.expect(SIMPLE)?;
        Ok(match ai {
            25 => half_to_f64(bits as u16),
            26 => f32::from_bits(bits as u32) as f64,
            _ => f64::from_bits(bits),
        })
    }

    /// Skips one complete item, nested ones included, without recursion.
    pub fn skip(&mut self) -> R<()> {
        let mut pending: u64 = 1;
        while pending > 0 {
            let (major, arg) = self.head()?;
            pending -= 1;
            match major {
                BSTR | TSTR => {
                    if arg > self.remaining() as u64 {
                        return Err(DecodeError);
                    }
                    self.pos += arg as usize;
                }
                ARRAY | MAP => {
                    if arg > self.remaining() as u64 {
                        return Err(DecodeError);
                    }
                    pending += if major == MAP { 2 * arg } else { arg };
                }
                TAG => pending += 1,
                _ => {}
            }
        }
        Ok(())
    }
}

/// IEEE-754 half precision to f64 (Rust 1.63 has no f16).
fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}
