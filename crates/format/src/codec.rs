//! A bounds-checked binary reader and writer: little-endian integers, LEB128 varints and
//! length-prefixed byte strings. Decoding never panics; it names what it was reading.

use crate::{FormatError, Id};

#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// Zig-zag encoded signed varint.
    pub fn varint_signed(&mut self, v: i64) -> &mut Self {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub fn id(&mut self, id: &Id) -> &mut Self {
        self.raw(id.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

pub struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// `what` names the structure being decoded, for error messages.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Reader { what, buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                what: self.what,
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, FormatError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, FormatError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn varint(&mut self) -> Result<u64, FormatError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let part = u64::from(byte & 0x7f);
            if shift == 63 && part > 1 {
                break;
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FormatError::corrupt(
            self.what,
            format!("varint overflows at offset {}", self.pos),
        ))
    }

    pub fn varint_signed(&mut self) -> Result<i64, FormatError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A varint that must fit in `usize` and not exceed what is left, as a count of items of
    /// at least `min_item_size` bytes: guards allocations against absurd lengths.
    pub fn count(&mut self, min_item_size: usize) -> Result<usize, FormatError> {
        let n = self.varint()?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|n| n.saturating_mul(min_item_size.max(1)) <= self.remaining());
        fits.ok_or_else(|| {
            FormatError::corrupt(
                self.what,
                format!("count {n} at offset {} exceeds the data", self.pos),
            )
        })
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub fn id(&mut self) -> Result<Id, FormatError> {
        let b = self.take(32)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(Id::from_bytes(a))
    }

    pub fn expect_end(&self) -> Result<(), FormatError> {
        if self.is_at_end() {
            Ok(())
        } else {
            Err(FormatError::corrupt(
                self.what,
                format!("{} unexpected trailing bytes", self.remaining()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v: u64, s: i64) {
            let mut w = Writer::new();
            w.varint(v).varint_signed(s);
            let bytes = w.into_bytes();
            let mut r = Reader::new("test", &bytes);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert_eq!(r.varint_signed().unwrap(), s);
            prop_assert!(r.is_at_end());
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let mut r = Reader::new("test", &data);
            let _ = r.varint();
            let _ = r.bytes();
            let _ = r.id();
            let _ = r.count(8);
        }
    }

    #[test]
    fn truncation_names_the_structure() {
        let mut r = Reader::new("tree", &[1, 2]);
        let err = r.u32().unwrap_err();
        assert_eq!(
            err,
            FormatError::Truncated {
                what: "tree",
                offset: 0,
                needed: 2
            }
        );
        assert!(err.to_string().contains("tree is truncated"));
    }
}
