//! The state update a primary ships to backups: the pages of the SQLite database file written
//! by one request.
//!
//! # Invariants
//!
//! A [`StateUpdate`] is valid ([`StateUpdate::validate`]) when:
//! - `page_size` is a power of two in `512..=65536` ([`MIN_PAGE_SIZE`]..=[`MAX_PAGE_SIZE`]);
//! - `file_size <= MAX_FILE_SIZE`;
//! - `pages.len() <= MAX_PAGES` and `pages.len()` does not exceed the number of pages in the
//!   file, `ceil(file_size / page_size)`;
//! - the encoding is at most [`MAX_UPDATE_BYTES`] long;
//! - pages are sorted by strictly increasing `index` (no duplicates);
//! - every page lies inside the file: `index * page_size < file_size`;
//! - every page's data is exactly `min(page_size, file_size - index * page_size)` bytes (only
//!   the file's last page may be partial). See [`page_len`].
//!
//! # Encoding
//!
//! All integers are little-endian. Offsets are in bytes.
//!
//! | offset | size | field            | value                                                   |
//! |-------:|-----:|------------------|---------------------------------------------------------|
//! |      0 |    4 | `magic`          | [`MAGIC`] = `0x5552_5056`, i.e. the bytes `b"VPRU"`     |
//! |      4 |    1 | `version`        | [`VERSION`] = 1                                         |
//! |      5 |    3 | `reserved`       | must be zero                                            |
//! |      8 |    4 | `page_size`      | `u32`                                                   |
//! |     12 |    8 | `file_size`      | `u64`, size of the database file after the request      |
//! |     20 |    4 | `page_count`     | `u32`, number of page records that follow               |
//! |     24 |   32 | `content_digest` | SHA-256, see below                                      |
//! |     56 |      | page records     | `page_count` × { `index: u32`, `data` }                 |
//!
//! A page record is its 4-byte `index` followed by its `data`, whose length is not stored: it
//! is [`page_len`]`(page_size, file_size, index)`. The encoding ends exactly after the last
//! record; trailing bytes are an error. Because every field is fixed or derived and reserved
//! bytes must be zero, the encoding is canonical: `encode(decode(b)?) == b`.
//!
//! `content_digest` is SHA-256 over the 24 header bytes before it (`magic` through
//! `page_count`) followed by, for each page in order, `index` (u32 LE) `||` `data`. In other
//! words it is the SHA-256 of the whole encoding with bytes `24..56` removed. Covering the
//! header binds `page_size` and `file_size` (which changes the database's length) to the
//! content, so a MAC over the digest authenticates the entire update.
//!
//! # Decoding untrusted bytes
//!
//! [`StateUpdate::decode`] never panics. It checks the input length, magic, version, reserved
//! bytes, page size, file size and page count before allocating anything, and sizes the page
//! vector by what the remaining input can actually hold, so a hostile `page_count` cannot cause
//! a large allocation. It then checks each page's order and bounds, the exact total length and
//! finally the content digest ([`DecodeError::DigestMismatch`]).

use alloc::vec::Vec;
use core::fmt;

use crate::digest::{Digest, Sha256};
use crate::wire::{DecodeError, Reader, Writer};

/// First four bytes of an encoded update: `b"VPRU"`, read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VPRU");
/// The encoding version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Smallest allowed page size (SQLite's minimum).
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest allowed page size (SQLite's maximum).
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Largest allowed database file size (1 TiB).
pub const MAX_FILE_SIZE: u64 = 1 << 40;
/// Largest number of pages in one update.
pub const MAX_PAGES: usize = 1 << 20;
/// Largest encoded update, in bytes (1 GiB).
pub const MAX_UPDATE_BYTES: usize = 1 << 30;
/// Length of the fixed header, in bytes (the page records start here).
pub const HEADER_LEN: usize = 56;
/// Offset of the `content_digest` field; the digest covers the header bytes before it.
pub const DIGEST_OFFSET: usize = 24;
/// Length of a page record's header (its `index`), in bytes.
pub const PAGE_HEADER_LEN: usize = 4;

/// One page of the database file as written by the request.
#[derive(Clone, PartialEq, Eq)]
pub struct PageWrite {
    /// Page number counted from 0: the page starts at byte `index * page_size` of the file.
    pub index: u32,
    /// The page's full contents after the request (partial only for the file's last page).
    pub data: Vec<u8>,
}

impl fmt::Debug for PageWrite {
    /// Prints the index and data length, not the (possibly 64 KiB) data itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageWrite")
            .field("index", &self.index)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// The pages written by one request, plus the resulting file geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    /// The database page size: a power of two in `512..=65536`.
    pub page_size: u32,
    /// The database file's size after the request, in bytes (at most [`MAX_FILE_SIZE`]).
    pub file_size: u64,
    /// The written pages, sorted by strictly increasing index.
    pub pages: Vec<PageWrite>,
}

/// Whether `page_size` is allowed: a power of two in `512..=65536`.
#[must_use]
pub const fn page_size_is_valid(page_size: u32) -> bool {
    page_size.is_power_of_two() && page_size >= MIN_PAGE_SIZE && page_size <= MAX_PAGE_SIZE
}

/// The data length of page `index` in a file of `file_size` bytes with pages of `page_size`
/// bytes: `min(page_size, file_size - index * page_size)`, or `None` if the page starts at or
/// past the end of the file (or `page_size` is 0).
#[must_use]
pub fn page_len(page_size: u32, file_size: u64, index: u32) -> Option<usize> {
    if page_size == 0 {
        return None;
    }
    // u32 * u32 always fits in u64.
    let start = u64::from(index) * u64::from(page_size);
    let left = file_size.checked_sub(start).filter(|&n| n > 0)?;
    usize::try_from(left.min(u64::from(page_size))).ok()
}

/// Number of pages in a file of `file_size` bytes: `ceil(file_size / page_size)` (0 if
/// `page_size` is 0).
#[must_use]
pub const fn pages_in_file(page_size: u32, file_size: u64) -> u64 {
    match page_size {
        0 => 0,
        ps => file_size.div_ceil(ps as u64),
    }
}

fn usize_to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Checks the geometry fields and the page count, in the order `decode` meets them.
fn check_header(page_size: u32, file_size: u64, page_count: usize) -> Result<(), DecodeError> {
    if !page_size_is_valid(page_size) {
        return Err(DecodeError::Invalid { field: "page_size", value: u64::from(page_size) });
    }
    if file_size > MAX_FILE_SIZE {
        return Err(DecodeError::TooLarge {
            field: "file_size",
            value: file_size,
            max: MAX_FILE_SIZE,
        });
    }
    let count = usize_to_u64(page_count);
    if page_count > MAX_PAGES {
        return Err(DecodeError::TooLarge {
            field: "page_count",
            value: count,
            max: usize_to_u64(MAX_PAGES),
        });
    }
    let in_file = pages_in_file(page_size, file_size);
    if count > in_file {
        return Err(DecodeError::TooLarge { field: "page_count", value: count, max: in_file });
    }
    Ok(())
}

/// Checks one page's position: after `prev`, inside the file. Returns its data length.
fn check_page(
    prev: Option<u32>,
    index: u32,
    page_size: u32,
    file_size: u64,
) -> Result<usize, DecodeError> {
    if let Some(prev) = prev.filter(|&prev| index <= prev) {
        return Err(DecodeError::PageOutOfOrder { prev, index });
    }
    page_len(page_size, file_size, index).ok_or(DecodeError::PageOutsideFile {
        index,
        page_size,
        file_size,
    })
}

impl StateUpdate {
    /// An update with no pages for a file of `file_size` bytes.
    #[must_use]
    pub const fn new(page_size: u32, file_size: u64) -> Self {
        Self { page_size, file_size, pages: Vec::new() }
    }

    /// Whether the update writes no pages.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Total bytes of page data carried (the sum of the pages' data lengths).
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.pages.iter().fold(0, |acc, p| acc.saturating_add(p.data.len()))
    }

    /// Length of [`encode`](Self::encode)'s output: header, plus 4 bytes and the data per page.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.pages.iter().fold(HEADER_LEN, |acc, p| {
            acc.saturating_add(PAGE_HEADER_LEN).saturating_add(p.data.len())
        })
    }

    /// The data length page `index` must have in this update's file (see [`page_len`]).
    #[must_use]
    pub fn expected_page_len(&self, index: u32) -> Option<usize> {
        page_len(self.page_size, self.file_size, index)
    }

    /// Checks every invariant listed in the [module docs](self).
    ///
    /// # Errors
    /// - [`DecodeError::Invalid`] `{ field: "page_size" }` for a page size that is not a power
    ///   of two in `512..=65536`;
    /// - [`DecodeError::TooLarge`] for `file_size`, `page_count` (more than [`MAX_PAGES`] or
    ///   more than the file has) or `encoded_len` (more than [`MAX_UPDATE_BYTES`]);
    /// - [`DecodeError::PageOutOfOrder`] for unsorted or duplicate indices;
    /// - [`DecodeError::PageOutsideFile`] for a page at or past the end of the file;
    /// - [`DecodeError::PageLength`] for data of the wrong length.
    pub fn validate(&self) -> Result<(), DecodeError> {
        check_header(self.page_size, self.file_size, self.pages.len())?;
        let len = self.encoded_len();
        if len > MAX_UPDATE_BYTES {
            return Err(DecodeError::TooLarge {
                field: "encoded_len",
                value: usize_to_u64(len),
                max: usize_to_u64(MAX_UPDATE_BYTES),
            });
        }
        let mut prev = None;
        for page in &self.pages {
            let expected = check_page(prev, page.index, self.page_size, self.file_size)?;
            if page.data.len() != expected {
                return Err(DecodeError::PageLength {
                    index: page.index,
                    expected,
                    actual: page.data.len(),
                });
            }
            prev = Some(page.index);
        }
        Ok(())
    }

    /// Writes the header fields the digest covers (bytes `0..24`).
    fn write_prefix(&self, w: &mut Writer) {
        let page_count = u32::try_from(self.pages.len()).unwrap_or(u32::MAX);
        w.u32(MAGIC)
            .u8(VERSION)
            .bytes(&[0; 3])
            .u32(self.page_size)
            .u64(self.file_size)
            .u32(page_count);
    }

    /// Digest of `prefix` (the encoded bytes `0..24`) followed by the page records.
    fn digest_after(&self, prefix: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(prefix);
        for page in &self.pages {
            h.update(&page.index.to_le_bytes()).update(&page.data);
        }
        h.finalize()
    }

    /// The `content_digest` that [`encode`](Self::encode) writes (see the [module
    /// docs](self)); it covers the header fields as well as every page.
    #[must_use]
    pub fn content_digest(&self) -> Digest {
        let mut w = Writer::with_capacity(DIGEST_OFFSET);
        self.write_prefix(&mut w);
        self.digest_after(w.as_slice())
    }

    /// Encodes the update in the format of the [module docs](self), allocating exactly
    /// [`encoded_len`](Self::encoded_len) bytes.
    ///
    /// The update should be [`validate`](Self::validate)d first (debug builds assert it): the
    /// encoding of an invalid update is not guaranteed to decode, or to decode to the same
    /// update.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        debug_assert_eq!(self.validate(), Ok(()), "encoding an invalid StateUpdate");
        let len = self.encoded_len();
        let mut w = Writer::with_capacity(len);
        self.write_prefix(&mut w);
        let digest = self.digest_after(w.as_slice());
        w.bytes(digest.as_bytes());
        for page in &self.pages {
            w.u32(page.index).bytes(&page.data);
        }
        debug_assert_eq!(w.len(), len);
        w.into_vec()
    }

    /// Decodes and fully checks an update from untrusted bytes. Never panics.
    ///
    /// # Errors
    /// Any [`DecodeError`]: see [`decode_with_digest`](Self::decode_with_digest).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with_digest(bytes).map(|(update, _)| update)
    }

    /// Like [`decode`](Self::decode), and also returns the content digest that was checked
    /// (equal to [`content_digest`](Self::content_digest) of the result), e.g. to verify a
    /// MAC over it.
    ///
    /// # Errors
    /// In the order they are checked:
    /// - [`DecodeError::TooLarge`] `{ field: "update_len" }` if `bytes` is longer than
    ///   [`MAX_UPDATE_BYTES`];
    /// - [`DecodeError::Truncated`] wherever the input ends early, including when
    ///   `page_count` pages could not fit in the remaining bytes;
    /// - [`DecodeError::BadMagic`], [`DecodeError::UnsupportedVersion`],
    ///   [`DecodeError::Invalid`] `{ field: "reserved" }` for the fixed header fields;
    /// - the header errors of [`validate`](Self::validate);
    /// - [`DecodeError::PageOutOfOrder`], [`DecodeError::PageOutsideFile`] for each page;
    /// - [`DecodeError::TrailingBytes`] after the last page;
    /// - [`DecodeError::DigestMismatch`] if the carried digest is not the recomputed one.
    pub fn decode_with_digest(bytes: &[u8]) -> Result<(Self, Digest), DecodeError> {
        if bytes.len() > MAX_UPDATE_BYTES {
            return Err(DecodeError::TooLarge {
                field: "update_len",
                value: usize_to_u64(bytes.len()),
                max: usize_to_u64(MAX_UPDATE_BYTES),
            });
        }
        let mut r = Reader::new(bytes);
        let magic = r.u32()?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let [r0, r1, r2] = r.array::<3>()?;
        if [r0, r1, r2] != [0; 3] {
            let value = u64::from(u32::from_le_bytes([r0, r1, r2, 0]));
            return Err(DecodeError::Invalid { field: "reserved", value });
        }
        let page_size = r.u32()?;
        let file_size = r.u64()?;
        let page_count = r.u32()?;
        let count = usize::try_from(page_count).map_err(|_| DecodeError::TooLarge {
            field: "page_count",
            value: u64::from(page_count),
            max: usize_to_u64(MAX_PAGES),
        })?;
        check_header(page_size, file_size, count)?;

        let mut hasher = Sha256::new();
        hasher.update(r.consumed());
        let claimed = Digest(r.array()?);

        // Only the file's last page can be partial, and it sorts last, so all records but the
        // last carry a full page. Refuse early (and so never over-allocate) if they cannot fit.
        if let Some(full) = count.checked_sub(1) {
            // At most 2^20 * (4 + 2^16) + 5: no overflow.
            let needed = usize_to_u64(full) * (4 + u64::from(page_size)) + 5;
            let have = r.remaining();
            if needed > usize_to_u64(have) {
                let needed = usize::try_from(needed).unwrap_or(usize::MAX);
                return Err(DecodeError::Truncated { needed, have });
            }
        }

        let mut pages = Vec::with_capacity(count);
        let mut prev = None;
        for _ in 0..count {
            let index = r.u32()?;
            let len = check_page(prev, index, page_size, file_size)?;
            let data = r.bytes(len)?;
            hasher.update(&index.to_le_bytes()).update(data);
            pages.push(PageWrite { index, data: data.to_vec() });
            prev = Some(index);
        }
        r.finish()?;
        if hasher.finalize() != claimed {
            return Err(DecodeError::DigestMismatch);
        }
        Ok((Self { page_size, file_size, pages }, claimed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(seed: u32, len: usize) -> Vec<u8> {
        // A cheap xorshift stream: distinct per seed, deterministic.
        let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    fn page(ps: u32, fs: u64, index: u32) -> PageWrite {
        let len = page_len(ps, fs, index).expect("page inside file");
        PageWrite { index, data: pattern(index, len) }
    }

    fn update(ps: u32, fs: u64, indices: &[u32]) -> StateUpdate {
        StateUpdate {
            page_size: ps,
            file_size: fs,
            pages: indices.iter().map(|&i| page(ps, fs, i)).collect(),
        }
    }

    /// A header with arbitrary field values (digest zeroed).
    fn header(ps: u32, fs: u64, count: u32) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(MAGIC).u8(VERSION).bytes(&[0; 3]).u32(ps).u64(fs).u32(count).bytes(&[0; 32]);
        w.into_vec()
    }

    fn small() -> StateUpdate {
        update(512, 1000, &[0, 1])
    }

    #[test]
    fn magic_spells_vpru() {
        assert_eq!(MAGIC.to_le_bytes(), *b"VPRU");
        assert_eq!(MAGIC, 0x5552_5056);
    }

    #[test]
    fn known_answer() {
        let p0: Vec<u8> = (0..512u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let p1: Vec<u8> = (0..512u32).map(|i| u8::try_from(255 - i % 256).unwrap()).collect();
        let u = StateUpdate {
            page_size: 512,
            file_size: 1024,
            pages: vec![
                PageWrite { index: 0, data: p0.clone() },
                PageWrite { index: 1, data: p1.clone() },
            ],
        };
        assert_eq!(u.validate(), Ok(()));
        let enc = u.encode();
        assert_eq!(enc.len(), 56 + 2 * (4 + 512));
        assert_eq!(enc.len(), u.encoded_len());
        assert_eq!(enc.capacity(), enc.len());
        assert_eq!(u.payload_len(), 1024);
        assert_eq!(&enc[0..4], b"VPRU");
        assert_eq!(enc[4], 1);
        assert_eq!(&enc[5..8], &[0, 0, 0]);
        assert_eq!(&enc[8..12], &512u32.to_le_bytes());
        assert_eq!(&enc[8..12], &[0x00, 0x02, 0x00, 0x00]);
        assert_eq!(&enc[12..20], &[0x00, 0x04, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&enc[20..24], &[2, 0, 0, 0]);
        assert_eq!(&enc[56..60], &[0, 0, 0, 0]);
        assert_eq!(&enc[60..572], &p0[..]);
        assert_eq!(&enc[572..576], &[1, 0, 0, 0]);
        assert_eq!(&enc[576..1088], &p1[..]);

        let mut input = Vec::new();
        input.extend_from_slice(b"VPRU\x01\x00\x00\x00");
        input.extend_from_slice(&[0x00, 0x02, 0x00, 0x00]);
        input.extend_from_slice(&[0x00, 0x04, 0, 0, 0, 0, 0, 0]);
        input.extend_from_slice(&[2, 0, 0, 0]);
        input.extend_from_slice(&[0, 0, 0, 0]);
        input.extend_from_slice(&p0);
        input.extend_from_slice(&[1, 0, 0, 0]);
        input.extend_from_slice(&p1);
        let expected = Digest::of(&input);
        assert_eq!(&enc[24..56], expected.as_bytes());
        assert_eq!(u.content_digest(), expected);

        let (back, digest) = StateUpdate::decode_with_digest(&enc).unwrap();
        assert_eq!(back, u);
        assert_eq!(digest, expected);
        assert_eq!(back.pages.capacity(), 2);
    }

    #[test]
    fn empty_updates_roundtrip() {
        for u in [StateUpdate::new(4096, 0), StateUpdate::new(65536, MAX_FILE_SIZE)] {
            assert!(u.is_empty());
            assert_eq!(u.payload_len(), 0);
            let enc = u.encode();
            assert_eq!(enc.len(), HEADER_LEN);
            assert_eq!(StateUpdate::decode(&enc), Ok(u));
        }
    }

    #[test]
    fn partial_last_page() {
        let u = update(1024, 3 * 1024 + 7, &[1, 3]);
        assert_eq!(u.pages[1].data.len(), 7);
        assert_eq!(u.expected_page_len(3), Some(7));
        assert_eq!(u.expected_page_len(4), None);
        assert_eq!(StateUpdate::decode(&u.encode()), Ok(u));
    }

    #[test]
    fn every_strict_prefix_fails() {
        let enc = small().encode();
        for n in 0..enc.len() {
            let err = StateUpdate::decode(&enc[..n]).unwrap_err();
            assert!(matches!(err, DecodeError::Truncated { .. }), "prefix {n}: {err:?}");
        }
    }

    #[test]
    fn every_single_bit_flip_fails() {
        let enc = small().encode();
        for bit in 0..enc.len() * 8 {
            let mut bad = enc.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(StateUpdate::decode(&bad).is_err(), "bit {bit} flip accepted");
        }
    }

    #[test]
    fn flips_in_data_and_digest_are_digest_mismatches() {
        let enc = small().encode();
        for byte in (24..56).chain(60..572).chain(576..enc.len()) {
            let mut bad = enc.clone();
            bad[byte] ^= 0x80;
            assert_eq!(StateUpdate::decode(&bad), Err(DecodeError::DigestMismatch), "{byte}");
        }
    }

    #[test]
    fn file_size_is_bound_by_the_digest() {
        // Growing the file keeps every page full-length, so only the digest catches it.
        let enc = update(512, 1024, &[0, 1]).encode();
        let mut bad = enc.clone();
        bad[12..20].copy_from_slice(&4096u64.to_le_bytes());
        assert_eq!(StateUpdate::decode(&bad), Err(DecodeError::DigestMismatch));
    }

    #[test]
    fn rejects_bad_header_fields() {
        let enc = small().encode();
        let with = |at: usize, bytes: &[u8]| {
            let mut b = enc.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            StateUpdate::decode(&b)
        };
        assert_eq!(with(0, b"VPRV"), Err(DecodeError::BadMagic(u32::from_le_bytes(*b"VPRV"))));
        assert_eq!(with(4, &[2]), Err(DecodeError::UnsupportedVersion(2)));
        assert_eq!(with(4, &[0]), Err(DecodeError::UnsupportedVersion(0)));
        assert_eq!(with(5, &[1]), Err(DecodeError::Invalid { field: "reserved", value: 1 }));
        assert_eq!(
            with(7, &[0x80]),
            Err(DecodeError::Invalid { field: "reserved", value: 0x80_0000 })
        );
        for ps in [0u32, 1, 256, 1000, 131_072, u32::MAX] {
            assert_eq!(
                with(8, &ps.to_le_bytes()),
                Err(DecodeError::Invalid { field: "page_size", value: u64::from(ps) }),
                "{ps}"
            );
        }
        assert_eq!(
            with(12, &(MAX_FILE_SIZE + 1).to_le_bytes()),
            Err(DecodeError::TooLarge {
                field: "file_size",
                value: MAX_FILE_SIZE + 1,
                max: MAX_FILE_SIZE
            })
        );
        // The file (1000 bytes, 512-byte pages) only has 2 pages.
        assert_eq!(
            with(20, &3u32.to_le_bytes()),
            Err(DecodeError::TooLarge { field: "page_count", value: 3, max: 2 })
        );
        assert_eq!(with(20, &1u32.to_le_bytes()), Err(DecodeError::TrailingBytes(4 + 488)));
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut enc = small().encode();
        enc.push(0);
        assert_eq!(StateUpdate::decode(&enc), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn hostile_page_count_fails_before_allocating() {
        // Claims 2^20 full 512-byte pages of a 1 TiB file but carries 100 bytes.
        let mut bytes = header(512, MAX_FILE_SIZE, 1 << 20);
        bytes.extend_from_slice(&[0; 100]);
        assert_eq!(
            StateUpdate::decode(&bytes),
            Err(DecodeError::Truncated { needed: ((1 << 20) - 1) * 516 + 5, have: 100 })
        );
        // Over the page cap.
        let bytes = header(512, MAX_FILE_SIZE, (1 << 20) + 1);
        assert_eq!(
            StateUpdate::decode(&bytes),
            Err(DecodeError::TooLarge { field: "page_count", value: (1 << 20) + 1, max: 1 << 20 })
        );
        let bytes = header(512, MAX_FILE_SIZE, u32::MAX);
        assert!(matches!(
            StateUpdate::decode(&bytes),
            Err(DecodeError::TooLarge { field: "page_count", .. })
        ));
        // Two pages need at least 516 + 5 bytes of records.
        let mut bytes = header(512, 2048, 2);
        bytes.extend_from_slice(&[0; 520]);
        assert_eq!(
            StateUpdate::decode(&bytes),
            Err(DecodeError::Truncated { needed: 521, have: 520 })
        );
    }

    #[test]
    fn decode_rejects_page_order_and_bounds() {
        // Records written by hand, with a correct digest, so only the structure is wrong.
        let encode_raw = |ps: u32, fs: u64, recs: &[(u32, usize)]| {
            let count = u32::try_from(recs.len()).unwrap();
            let mut w = Writer::new();
            w.u32(MAGIC).u8(VERSION).bytes(&[0; 3]).u32(ps).u64(fs).u32(count);
            let mut body = Writer::new();
            for &(i, len) in recs {
                body.u32(i).bytes(&pattern(i, len));
            }
            let mut h = Sha256::new();
            h.update(w.as_slice()).update(body.as_slice());
            w.bytes(h.finalize().as_bytes()).bytes(body.as_slice());
            StateUpdate::decode(&w.into_vec())
        };
        assert!(encode_raw(512, 2048, &[(0, 512), (2, 512)]).is_ok());
        assert_eq!(
            encode_raw(512, 2048, &[(2, 512), (0, 512)]),
            Err(DecodeError::PageOutOfOrder { prev: 2, index: 0 })
        );
        assert_eq!(
            encode_raw(512, 2048, &[(1, 512), (1, 512)]),
            Err(DecodeError::PageOutOfOrder { prev: 1, index: 1 })
        );
        assert_eq!(
            encode_raw(512, 2048, &[(0, 512), (4, 512)]),
            Err(DecodeError::PageOutsideFile { index: 4, page_size: 512, file_size: 2048 })
        );
        assert_eq!(
            encode_raw(512, 2048, &[(u32::MAX, 512)]),
            Err(DecodeError::PageOutsideFile { index: u32::MAX, page_size: 512, file_size: 2048 })
        );
        // A short last page where a full one is due: the records run out.
        assert!(matches!(
            encode_raw(512, 2048, &[(2, 512), (3, 500)]),
            Err(DecodeError::Truncated { .. })
        ));
        // A long page: bytes are left over.
        assert_eq!(encode_raw(512, 2000, &[(3, 512)]), Err(DecodeError::TrailingBytes(512 - 464)));
    }

    #[test]
    fn validate_rejects_each_invariant() {
        let ok = update(512, 2000, &[0, 1, 3]);
        assert_eq!(ok.validate(), Ok(()));
        let with = |f: &dyn Fn(&mut StateUpdate)| {
            let mut u = ok.clone();
            f(&mut u);
            u.validate()
        };
        for ps in [0u32, 1, 1000, 131_072] {
            assert_eq!(
                with(&|u| u.page_size = ps),
                Err(DecodeError::Invalid { field: "page_size", value: u64::from(ps) })
            );
        }
        assert_eq!(
            with(&|u| u.file_size = MAX_FILE_SIZE + 1),
            Err(DecodeError::TooLarge {
                field: "file_size",
                value: MAX_FILE_SIZE + 1,
                max: MAX_FILE_SIZE
            })
        );
        assert_eq!(
            with(&|u| u.pages.swap(0, 1)),
            Err(DecodeError::PageOutOfOrder { prev: 1, index: 0 })
        );
        assert_eq!(
            with(&|u| u.pages[1] = u.pages[0].clone()),
            Err(DecodeError::PageOutOfOrder { prev: 0, index: 0 })
        );
        assert_eq!(
            with(&|u| u.pages[2].index = 4),
            Err(DecodeError::PageOutsideFile { index: 4, page_size: 512, file_size: 2000 })
        );
        assert_eq!(
            with(&|u| u.file_size = 1536),
            Err(DecodeError::PageOutsideFile { index: 3, page_size: 512, file_size: 1536 })
        );
        // Page 3 of a 2000-byte file holds 2000 - 1536 = 464 bytes.
        assert_eq!(
            with(&|u| u.pages[2].data.push(0)),
            Err(DecodeError::PageLength { index: 3, expected: 464, actual: 465 })
        );
        assert_eq!(
            with(&|u| {
                u.pages[0].data.pop();
            }),
            Err(DecodeError::PageLength { index: 0, expected: 512, actual: 511 })
        );
        assert_eq!(
            with(&|u| u.pages.push(page(512, 2000, 2))),
            Err(DecodeError::PageOutOfOrder { prev: 3, index: 2 })
        );
        // A 2000-byte file has 4 pages of 512 bytes.
        assert_eq!(
            with(&|u| u.pages.extend([page(512, 2000, 2), page(512, 2000, 2)])),
            Err(DecodeError::TooLarge { field: "page_count", value: 5, max: 4 })
        );
    }

    #[test]
    fn page_len_edges() {
        assert_eq!(page_len(512, 0, 0), None);
        assert_eq!(page_len(512, 1, 0), Some(1));
        assert_eq!(page_len(512, 512, 0), Some(512));
        assert_eq!(page_len(512, 512, 1), None);
        assert_eq!(page_len(0, 512, 0), None);
        assert_eq!(page_len(65536, MAX_FILE_SIZE, u32::MAX), None);
        assert_eq!(page_len(512, MAX_FILE_SIZE, u32::MAX), None);
        assert_eq!(page_len(512, MAX_FILE_SIZE, (1 << 31) - 1), Some(512));
        assert_eq!(page_len(512, MAX_FILE_SIZE, 1 << 31), None);
        assert_eq!(pages_in_file(512, 1000), 2);
        assert_eq!(pages_in_file(512, 0), 0);
        assert_eq!(pages_in_file(0, 10), 0);
        assert!(page_size_is_valid(512) && page_size_is_valid(65536));
        assert!(!page_size_is_valid(256) && !page_size_is_valid(131_072));
    }

    #[test]
    fn debug_does_not_dump_page_data() {
        let s = format!("{:?}", small());
        assert!(s.contains("PageWrite { index: 0, len: 512, .. }"), "{s}");
    }

    /// Arbitrary valid updates, kept small: at most 8 pages and 128 KiB of file.
    fn valid_update() -> impl Strategy<Value = StateUpdate> {
        (9u32..=16, any::<u64>())
            .prop_flat_map(|(shift, r)| {
                let ps = 1u32 << shift;
                let max_file = (8 * u64::from(ps)).min(128 * 1024);
                let fs = r % (max_file + 1);
                let n = usize::try_from(pages_in_file(ps, fs)).unwrap();
                (Just(ps), Just(fs), proptest::collection::vec(any::<bool>(), n))
            })
            .prop_map(|(ps, fs, keep)| {
                let indices: Vec<u32> =
                    (0u32..).zip(keep).filter_map(|(i, k)| k.then_some(i)).collect();
                update(ps, fs, &indices)
            })
    }

    proptest! {
        #[test]
        fn roundtrip(u in valid_update()) {
            prop_assert_eq!(u.validate(), Ok(()));
            let enc = u.encode();
            prop_assert_eq!(enc.len(), u.encoded_len());
            let (back, digest) = StateUpdate::decode_with_digest(&enc).unwrap();
            prop_assert_eq!(digest, u.content_digest());
            prop_assert_eq!(&back, &u);
            prop_assert_eq!(back.encode(), enc);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = StateUpdate::decode(&bytes);
        }

        #[test]
        fn random_body_after_valid_header_never_panics(
            shift in 9u32..=16,
            fs in prop_oneof![0u64..4096, 0..=MAX_FILE_SIZE, Just(MAX_FILE_SIZE)],
            count in prop_oneof![0u32..8, any::<u32>()],
            body in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut bytes = header(1 << shift, fs, count);
            bytes.extend_from_slice(&body);
            if let Ok(u) = StateUpdate::decode(&bytes) {
                prop_assert_eq!(u.encode(), bytes);
            }
        }

        #[test]
        fn mutated_valid_encodings_are_canonical_or_rejected(
            u in valid_update(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut bytes = u.encode();
            for (at, v) in edits {
                let at = at % bytes.len();
                bytes[at] = v;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            if let Ok(back) = StateUpdate::decode(&bytes) {
                prop_assert_eq!(back.encode(), bytes);
            }
        }
    }
}
