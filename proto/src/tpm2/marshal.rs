//! Big-endian reading and writing of TPM 2.0 structures: integers are big-endian, a
//! `TPM2B_*` is a u16 size followed by that many bytes, a `TPML_*` a u32 count followed by
//! that many elements (Part 1 §18, "Command/Response Structure"; Part 2 §10).
//!
//! The structures shared across the code base add their own methods to [`Reader`] and
//! [`Writer`] beside their definitions (`pcr_selection_sha256`, `ecdsa_signature`,
//! `ecc_signing_public`).

use alloc::vec::Vec;

/// Why bytes were refused as a TPM structure. Each variant carries the caller's message
/// naming the field that was short or wrong ("nonceTPM truncated", "signature is not
/// ECDSA").
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends inside the named field.
    #[error("{0}")]
    Truncated(&'static str),
    /// `count` bytes follow the last field of the structure `what` names.
    #[error("{what} ({count} bytes)")]
    Trailing {
        /// The message naming the structure.
        what: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// The named field holds a value refused here.
    #[error("{0}")]
    Invalid(&'static str),
}

impl Error {
    /// The message naming what was short or wrong.
    #[must_use]
    pub fn what(&self) -> &'static str {
        match *self {
            Error::Truncated(what) | Error::Trailing { what, .. } | Error::Invalid(what) => what,
        }
    }
}

/// A cursor over untrusted big-endian bytes: every read is bounds-checked and fails with
/// the caller's message instead of panicking; nothing allocates.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    #[must_use]
    pub const fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// The next `n` bytes; [`Error::Truncated`]`(what)` if fewer are left.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let (taken, rest) = self.bytes.split_at_checked(n).ok_or(Error::Truncated(what))?;
        self.bytes = rest;
        Ok(taken)
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        self.take(N, what)?.try_into().map_err(|_| Error::Truncated(what))
    }

    /// A byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        self.array(what).map(u8::from_be_bytes)
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// A big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// A `TPM2B_*`: a u16 size, then that many bytes.
    pub fn sized(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// A `TPM2B_*` of at most `max` bytes; a larger one is [`Error::Invalid`]`(too_large)`.
    pub fn sized_max(
        &mut self,
        max: usize,
        what: &'static str,
        too_large: &'static str,
    ) -> Result<&'a [u8], Error> {
        let bytes = self.sized(what)?;
        if bytes.len() > max {
            return Err(Error::Invalid(too_large));
        }
        Ok(bytes)
    }

    /// Everything not read yet, which is then read.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }

    /// Requires that everything was read: [`Error::Trailing`]`(what, ..)` otherwise.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        match self.bytes.len() {
            0 => Ok(()),
            count => Err(Error::Trailing { what, count }),
        }
    }
}

/// Builds big-endian TPM bytes, a field per call. [`Writer::command`] starts a command whose
/// `commandSize` [`Writer::finish`] fills in.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct Writer {
    bytes: Vec<u8>,
    /// Whether the bytes are a command, whose size field `finish` sets.
    command: bool,
}

impl Writer {
    /// Nothing written yet.
    pub fn new() -> Self {
        Writer::default()
    }

    /// A command's 10-byte header (Part 1 §18.2): `tag` (`TPMI_ST_COMMAND_TAG`),
    /// `commandSize` (the whole command: set by [`Writer::finish`]) and `commandCode`
    /// (`TPM_CC`).
    pub fn command(tag: u16, code: u32) -> Self {
        Writer { bytes: Vec::new(), command: true }.u16(tag).u32(0).u32(code)
    }

    /// `bytes` as they are.
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// A byte.
    pub fn u8(self, value: u8) -> Self {
        self.bytes(&[value])
    }

    /// A big-endian u16.
    pub fn u16(self, value: u16) -> Self {
        self.bytes(&value.to_be_bytes())
    }

    /// A big-endian u32.
    pub fn u32(self, value: u32) -> Self {
        self.bytes(&value.to_be_bytes())
    }

    /// A big-endian u64.
    pub fn u64(self, value: u64) -> Self {
        self.bytes(&value.to_be_bytes())
    }

    /// A `TPM2B_*` of `data`: its u16 size, then the bytes — cut to 65535, all a size can
    /// say (longer data is for the TPM to refuse as too large for its buffer).
    pub fn sized(self, data: &[u8]) -> Self {
        let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
        // `data` is at most u16::MAX bytes now.
        self.u16(u16::try_from(data.len()).unwrap_or(u16::MAX)).bytes(data)
    }

    /// A `TPM2B_*` of what `write` writes.
    pub fn sized_with(self, write: impl FnOnce(Writer) -> Writer) -> Self {
        self.sized(&write(Writer::new()).bytes)
    }

    /// The bytes written; for a [`Writer::command`], with `commandSize` set to their length.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        if self.command {
            // Every command built is far below 4 GiB.
            let len = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX).to_be_bytes();
            if let Some(size) = self.bytes.get_mut(2..6) {
                size.copy_from_slice(&len);
            }
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_big_endian_fields_and_sizes() {
        let bytes = Writer::new()
            .u8(1)
            .u16(0x0203)
            .u32(0x0405_0607)
            .u64(0x0809_0A0B_0C0D_0E0F)
            .sized(&[0xAA, 0xBB])
            .sized_with(|w| w.u16(0x1122))
            .finish();
        assert_eq!(
            bytes,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 2, 0xAA, 0xBB, 0, 2, 0x11, 0x22]
        );
        // A TPM2B is cut to what its size can say.
        assert_eq!(Writer::new().sized(&[7; 70_000]).finish().len(), 2 + 65_535);
    }

    #[test]
    fn a_command_gets_its_size() {
        let command = Writer::command(0x8001, 0x0000_0144).u16(0).finish();
        assert_eq!(command, [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0]);
        assert_eq!(Writer::new().u16(0).u32(0).finish(), [0; 6]);
    }

    #[test]
    fn reads_fields_and_refuses_what_is_short_or_left_over() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 2, 0xAA, 0xBB, 9];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(0x0203));
        assert_eq!(r.u32("c"), Ok(0x0405_0607));
        assert_eq!(r.u64("d"), Ok(0x0809_0A0B_0C0D_0E0F));
        assert_eq!(r.clone().sized_max(1, "e", "e too large"), Err(Error::Invalid("e too large")));
        assert_eq!(r.sized("e"), Ok(&[0xAA, 0xBB][..]));
        assert_eq!(r.finish("f"), Err(Error::Trailing { what: "f", count: 1 }));
        assert_eq!(r.clone().take(2, "g"), Err(Error::Truncated("g")));
        assert_eq!(r.clone().u16("h"), Err(Error::Truncated("h")));
        assert_eq!(r.rest(), &[9]);
        assert_eq!(r.finish("f"), Ok(()));
        assert_eq!(Reader::new(&[0, 3, 1, 2]).sized("i"), Err(Error::Truncated("i")));
        assert_eq!(Error::Trailing { what: "j", count: 2 }.what(), "j");
    }
}
