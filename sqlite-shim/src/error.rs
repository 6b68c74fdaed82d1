//! Errors: SQLite's extended result code with its message.

use alloc::collections::TryReserveError;
use alloc::string::String;
use core::ffi::{c_char, c_int, CStr};
use core::fmt;

use crate::ffi;

/// Longest error message the shim keeps, in bytes: SQLite's messages (which can quote a
/// client's SQL) are clipped to this at a character boundary. The same limit as an error
/// message on the wire (`vpr_proto::msg::MAX_MESSAGE_BYTES`).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// An error reported by SQLite, or by the shim in SQLite's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The extended result code (`SQLITE_CONSTRAINT_UNIQUE`, ...); the low byte is the primary.
    pub code: i32,
    /// SQLite's message (`sqlite3_errmsg`), or the shim's.
    pub message: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: c_int, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }

    /// An error with SQLite's standard text for `code` (an empty text if even that cannot be
    /// allocated: out of memory is reported, never a crash).
    pub fn from_code(code: c_int) -> Self {
        // SAFETY: sqlite3_errstr returns a static NUL-terminated string for any code.
        let text = unsafe { cstr(ffi::sqlite3_errstr(code)) };
        Error::new(code, text)
    }

    /// The primary result code (`SQLITE_CONSTRAINT`, ...).
    pub fn primary_code(&self) -> i32 {
        self.code & 0xff
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLite code {})", self.message, self.code)
    }
}

impl core::error::Error for Error {}

/// Copies a C string, tolerating null and invalid UTF-8, clipped to [`MAX_MESSAGE_BYTES`]; an
/// empty string if the copy cannot be allocated.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
pub(crate) unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    lossy_string(bytes, MAX_MESSAGE_BYTES).unwrap_or_default()
}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD, clipped to at most `max` bytes at a
/// character boundary. Allocates fallibly: `Err` if the memory cannot be had.
pub(crate) fn lossy_string(bytes: &[u8], max: usize) -> Result<String, TryReserveError> {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        let replacement = if chunk.invalid().is_empty() { "" } else { "\u{FFFD}" };
        for piece in [chunk.valid(), replacement] {
            let room = max - out.len();
            let mut cut = piece.len().min(room);
            while !piece.is_char_boundary(cut) {
                cut -= 1;
            }
            out.try_reserve_exact(cut)?;
            out.push_str(&piece[..cut]);
            if cut < piece.len() {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_strings_are_clipped_at_character_boundaries() {
        assert_eq!(lossy_string(b"hello", 10).as_deref(), Ok("hello"));
        assert_eq!(lossy_string(b"hello", 3).as_deref(), Ok("hel"));
        assert_eq!(lossy_string("h\u{e9}llo".as_bytes(), 2).as_deref(), Ok("h"));
        assert_eq!(lossy_string(b"a\xffb", 10).as_deref(), Ok("a\u{FFFD}b"));
        assert_eq!(lossy_string(b"a\xffb", 3).as_deref(), Ok("a"));
        assert_eq!(lossy_string(b"", 0).as_deref(), Ok(""));
        assert_eq!(lossy_string(&[b'x'; 5000], MAX_MESSAGE_BYTES).map(|s| s.len()), Ok(4096));
    }
}
