//! Errors: SQLite's extended result code with its message.

use alloc::string::String;
use core::ffi::{c_char, c_int, CStr};
use core::fmt;

use crate::ffi;

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

    /// An error with SQLite's standard text for `code`.
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

/// Copies a C string, tolerating null and invalid UTF-8.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
pub(crate) unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    String::from_utf8_lossy(unsafe { CStr::from_ptr(p) }.to_bytes()).into_owned()
}
