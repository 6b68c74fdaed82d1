//! Prepared statements: binding parameters and reading rows, always under the engine lock.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_int;
use core::ptr::NonNull;

use crate::error::{cstr, Error};
use crate::ffi;
use crate::value::Value;

/// A prepared statement, finalized on drop (with the engine lock held by its user).
pub(crate) struct Stmt(pub(crate) NonNull<ffi::sqlite3_stmt>);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: statements only live inside `execute`, under the engine lock.
        unsafe { ffi::sqlite3_finalize(self.0.as_ptr()) };
    }
}

impl Stmt {
    pub(crate) fn parameter_count(&self) -> usize {
        // SAFETY: live statement, engine lock held by the caller.
        let n = unsafe { ffi::sqlite3_bind_parameter_count(self.0.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    pub(crate) fn readonly(&self) -> bool {
        // SAFETY: live statement, engine lock held by the caller.
        unsafe { ffi::sqlite3_stmt_readonly(self.0.as_ptr()) != 0 }
    }

    /// Binds `params` to parameters 1..=n; returns SQLite's code on failure.
    pub(crate) fn bind(&self, params: &[Value]) -> Result<(), c_int> {
        let s = self.0.as_ptr();
        for (i, value) in params.iter().enumerate() {
            let idx = c_int::try_from(i + 1).map_err(|_| ffi::SQLITE_RANGE)?;
            // SAFETY: live statement, lock held; TRANSIENT makes SQLite copy text and blobs
            // before returning, so the borrowed buffers need not outlive the call.
            let rc = unsafe {
                match value {
                    Value::Null => ffi::sqlite3_bind_null(s, idx),
                    Value::Integer(v) => ffi::sqlite3_bind_int64(s, idx, *v),
                    Value::Real(v) => ffi::sqlite3_bind_double(s, idx, *v),
                    Value::Text(t) => ffi::sqlite3_bind_text64(
                        s,
                        idx,
                        t.as_ptr().cast(),
                        t.len() as u64,
                        ffi::transient(),
                        ffi::SQLITE_UTF8,
                    ),
                    Value::Blob(b) => ffi::sqlite3_bind_blob64(
                        s,
                        idx,
                        b.as_ptr().cast(),
                        b.len() as u64,
                        ffi::transient(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
        }
        Ok(())
    }

    pub(crate) fn column_names(&self) -> Result<Vec<String>, Error> {
        let s = self.0.as_ptr();
        // SAFETY: live statement, lock held.
        let n = unsafe { ffi::sqlite3_column_count(s) };
        (0..n)
            .map(|i| {
                // SAFETY: `i` is a valid column index; the name stays valid until the next call.
                let p = unsafe { ffi::sqlite3_column_name(s, i) };
                if p.is_null() {
                    return Err(Error::from_code(ffi::SQLITE_NOMEM));
                }
                // SAFETY: non-null, NUL-terminated.
                Ok(unsafe { cstr(p) })
            })
            .collect()
    }

    /// The current row's values.
    pub(crate) fn row(&self, columns: usize) -> Result<Vec<Value>, Error> {
        let s = self.0.as_ptr();
        let mut row = Vec::with_capacity(columns);
        for i in 0..columns {
            let col = c_int::try_from(i).map_err(|_| Error::from_code(ffi::SQLITE_RANGE))?;
            // SAFETY: live statement positioned on a row, valid column, lock held. The text or
            // blob pointer is read before any other call on the column, as SQLite requires, and
            // copied before the next step.
            let value = unsafe {
                match ffi::sqlite3_column_type(s, col) {
                    ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_column_int64(s, col)),
                    ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(s, col)),
                    ffi::SQLITE_TEXT => {
                        let p = ffi::sqlite3_column_text(s, col);
                        Value::Text(copy_bytes(p.cast(), ffi::sqlite3_column_bytes(s, col))?)
                    }
                    ffi::SQLITE_BLOB => {
                        let p = ffi::sqlite3_column_blob(s, col);
                        Value::Blob(copy_bytes(p.cast(), ffi::sqlite3_column_bytes(s, col))?)
                    }
                    _ => Value::Null,
                }
            };
            row.push(value);
        }
        Ok(row)
    }
}

/// Copies `len` bytes from SQLite-owned memory; a null pointer with a non-zero length means
/// SQLite ran out of memory converting the value.
///
/// # Safety
/// `p` is null or points to `len` readable bytes.
unsafe fn copy_bytes(p: *const u8, len: c_int) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(len).unwrap_or(0);
    if len == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Error::from_code(ffi::SQLITE_NOMEM));
    }
    // SAFETY: non-null and `len` readable bytes by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, len) }.to_vec())
}
