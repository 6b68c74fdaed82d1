//! Little-endian byte reading and writing, and the crate-wide [`DecodeError`].
//!
//! [`Reader`] walks a borrowed `&[u8]`; every read is bounds-checked and returns
//! [`DecodeError::Truncated`] instead of panicking. It never allocates. [`Writer`] appends to
//! an owned `Vec<u8>`.

use alloc::vec::Vec;

/// Why a byte string was rejected by a decoder (or a value by a validator).
///
/// Every variant carries the evidence needed to tell what was wrong without re-parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field could be read.
    #[error("truncated input: needed {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the decoder needed from the current position.
        needed: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// The input had this many bytes left after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The message did not start with the expected magic number (the value read is carried).
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    /// The message has a format version this decoder does not understand.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// A field holds a value outside its allowed set.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// Name of the field.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A field (or a size derived from the message) exceeds its limit.
    #[error("{field} too large: {value} > {max}")]
    TooLarge {
        /// Name of the field or derived size.
        field: &'static str,
        /// The offending value.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// Page indices are not strictly increasing (`index <= prev`; equal means a duplicate).
    #[error("page {index} follows page {prev}: indices must be strictly increasing")]
    PageOutOfOrder {
        /// Index of the previous page.
        prev: u32,
        /// Index of the page that is not greater than `prev`.
        index: u32,
    },
    /// A page starts at or beyond the end of the file (`index * page_size >= file_size`).
    #[error("page {index} (page size {page_size}) lies outside a file of {file_size} bytes")]
    PageOutsideFile {
        /// Index of the page.
        index: u32,
        /// Page size of the update.
        page_size: u32,
        /// File size of the update.
        file_size: u64,
    },
    /// A page's data length differs from the one its position in the file implies.
    #[error("page {index} has {actual} bytes of data, expected {expected}")]
    PageLength {
        /// Index of the page.
        index: u32,
        /// `min(page_size, file_size - index * page_size)`.
        expected: usize,
        /// The data length found.
        actual: usize,
    },
    /// The content digest recomputed from the message differs from the one it carries.
    #[error("content digest mismatch")]
    DigestMismatch,
}

/// A bounds-checked little-endian cursor over untrusted bytes.
///
/// No method panics or allocates; reading past the end yields [`DecodeError::Truncated`] and
/// leaves the cursor where it was.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    #[must_use]
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Number of bytes consumed so far.
    #[must_use]
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Number of bytes not yet consumed.
    #[must_use]
    pub const fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The bytes consumed so far.
    #[must_use]
    pub fn consumed(&self) -> &'a [u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    /// Consumes and returns the next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer than `n` bytes remain.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let have = self.remaining();
        let truncated = DecodeError::Truncated { needed: n, have };
        let end = self.pos.checked_add(n).ok_or(truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// Consumes the next `N` bytes as an array.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer than `N` bytes remain.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (head, _) = rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated { needed: N, have: rest.len() })?;
        self.pos = self.pos.saturating_add(N);
        Ok(*head)
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of input.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer than 2 bytes remain.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer than 4 bytes remain.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer than 8 bytes remain.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Ends decoding: succeeds only if every byte was consumed.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`] with the number of unconsumed bytes.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// A little-endian writer appending to an owned `Vec<u8>`, or only counting the bytes (a
/// [`Writer::counter`], which allocates nothing: encoders measure with it before encoding).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    buf: Vec<u8>,
    /// `Some(bytes written)` for a counter, which keeps nothing.
    counted: Option<usize>,
}

impl Writer {
    /// An empty writer.
    #[must_use]
    pub const fn new() -> Self {
        Self { buf: Vec::new(), counted: None }
    }

    /// An empty writer with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity), counted: None }
    }

    /// An empty writer with room for `capacity` bytes, or `None` if that memory cannot be
    /// allocated. Writing at most `capacity` bytes then allocates nothing more.
    #[must_use]
    pub fn try_with_capacity(capacity: usize) -> Option<Self> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(capacity).ok()?;
        Some(Self { buf, counted: None })
    }

    /// A writer that keeps nothing and only counts what is written: its [`len`](Self::len)
    /// is the length an encoding would have, found without allocating it.
    #[must_use]
    pub const fn counter() -> Self {
        Self { buf: Vec::new(), counted: Some(0) }
    }

    /// Number of bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.counted.unwrap_or(self.buf.len())
    }

    /// Whether nothing has been written yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        match &mut self.counted {
            Some(n) => *n = n.saturating_add(v.len()),
            None => self.buf.extend_from_slice(v),
        }
        self
    }

    /// The bytes written so far (none for a counter).
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Returns the written bytes (none for a counter).
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_finishes() {
        let buf = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0302));
        assert_eq!(r.u32(), Ok(0x0706_0504));
        assert_eq!(r.consumed(), &buf[..7]);
        assert_eq!(r.u64(), Ok(0x0f0e_0d0c_0b0a_0908));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.position(), 15);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn truncation_reports_and_does_not_advance() {
        let buf = [1, 2, 3];
        let mut r = Reader::new(&buf);
        assert_eq!(r.u32(), Err(DecodeError::Truncated { needed: 4, have: 3 }));
        assert_eq!(
            r.bytes(usize::MAX),
            Err(DecodeError::Truncated { needed: usize::MAX, have: 3 })
        );
        assert_eq!(r.position(), 0);
        assert_eq!(r.bytes(2), Ok(&buf[..2]));
        assert_eq!(r.u16(), Err(DecodeError::Truncated { needed: 2, have: 1 }));
        assert_eq!(r.clone().finish(), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(r.u8(), Ok(3));
        assert_eq!(r.u8(), Err(DecodeError::Truncated { needed: 1, have: 0 }));
        assert_eq!(r.bytes(0), Ok(&[][..]));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn a_counter_counts_what_a_writer_writes() {
        let mut w = Writer::new();
        let mut c = Writer::counter();
        for target in [&mut w, &mut c] {
            target.u8(1).u16(2).u32(3).u64(4).bytes(&[5; 100]);
        }
        assert_eq!(c.len(), w.len());
        assert_eq!(c.len(), 115);
        assert!(c.as_slice().is_empty() && !c.is_empty());
        assert!(Writer::counter().is_empty());
        let mut exact = Writer::try_with_capacity(115).expect("115 bytes");
        exact.u8(1).u16(2).u32(3).u64(4).bytes(&[5; 100]);
        assert_eq!(exact, w);
        assert!(Writer::try_with_capacity(usize::MAX).is_none());
    }

    #[test]
    fn writer_roundtrips_with_reader() {
        let mut w = Writer::with_capacity(15);
        assert!(w.is_empty());
        w.u8(0xab).u16(0xbeef).u32(0xdead_beef).u64(u64::MAX - 1).bytes(b"");
        assert_eq!(w.len(), 15);
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(0xab));
        assert_eq!(r.u16(), Ok(0xbeef));
        assert_eq!(r.u32(), Ok(0xdead_beef));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.finish(), Ok(()));
    }
}
