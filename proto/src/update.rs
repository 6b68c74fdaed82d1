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
        let mut w = Writer::with_capacity(self.encoded_len());
        self.encode_into(&mut w);
        w.into_vec()
    }

    /// [`encode`](Self::encode), in a buffer allocated fallibly: `None` if the memory cannot
    /// be had (where running out of memory must not abort).
    #[must_use]
    pub fn try_encode(&self) -> Option<Vec<u8>> {
        let mut w = Writer::try_with_capacity(self.encoded_len())?;
        self.encode_into(&mut w);
        Some(w.into_vec())
    }

    /// Writes the encoding to `w`, an empty writer (the digest covers all it holds) with
    /// room for [`encoded_len`](Self::encoded_len) bytes.
    fn encode_into(&self, w: &mut Writer) {
        debug_assert_eq!(self.validate(), Ok(()), "encoding an invalid StateUpdate");
        let len = self.encoded_len();
        self.write_prefix(w);
        let digest = self.digest_after(w.as_slice());
        w.bytes(digest.as_bytes());
        for page in &self.pages {
            w.u32(page.index).bytes(&page.data);
        }
        debug_assert_eq!(w.len(), len);
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
mod tests;
