//! Prepared statements: binding parameters and reading rows, always under the engine lock.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_int, CStr};
use core::ptr::NonNull;

use crate::budget::{self, Budget};
use crate::error::{lossy_string, Error};
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

    /// Number of result columns (0 for a statement that returns no rows).
    pub(crate) fn column_count(&self) -> usize {
        // SAFETY: live statement, engine lock held by the caller.
        let n = unsafe { ffi::sqlite3_column_count(self.0.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// The result columns' names, charged to `budget` before they are allocated.
    pub(crate) fn column_names(&self, budget: &mut Budget) -> Result<Vec<String>, Error> {
        let s = self.0.as_ptr();
        let n = self.column_count();
        budget.charge(budget::COLUMN * n as u64)?;
        let mut names = Vec::new();
        names.try_reserve_exact(n).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
        for i in 0..n {
            let col = c_int::try_from(i).map_err(|_| Error::from_code(ffi::SQLITE_RANGE))?;
            // SAFETY: `col` is a valid column index; the name stays valid until the next call.
            let p = unsafe { ffi::sqlite3_column_name(s, col) };
            if p.is_null() {
                return Err(Error::from_code(ffi::SQLITE_NOMEM));
            }
            // SAFETY: non-null, NUL-terminated, not freed before this copy.
            let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
            budget.charge(bytes.len() as u64)?;
            let name =
                lossy_string(bytes, usize::MAX).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
            // Replacement characters can make the copy longer than the bytes.
            budget.charge(name.len().saturating_sub(bytes.len()) as u64)?;
            names.push(name);
        }
        Ok(names)
    }

    /// The current row's values, charged to `budget` before they are allocated.
    pub(crate) fn row(&self, columns: usize, budget: &mut Budget) -> Result<Vec<Value>, Error> {
        let s = self.0.as_ptr();
        // The row and its values' overheads, before the row is allocated.
        budget.charge(budget::ROW + budget::VALUE * columns as u64)?;
        let mut row = Vec::new();
        row.try_reserve_exact(columns).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
        for i in 0..columns {
            let col = c_int::try_from(i).map_err(|_| Error::from_code(ffi::SQLITE_RANGE))?;
            // SAFETY: live statement positioned on a row, valid column, lock held. The text or
            // blob pointer is read before its length, as SQLite requires ("Result Values From
            // A Query": call sqlite3_column_text/blob first, then sqlite3_column_bytes), and
            // copied before the next step.
            let value = unsafe {
                match ffi::sqlite3_column_type(s, col) {
                    ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_column_int64(s, col)),
                    ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(s, col)),
                    ffi::SQLITE_TEXT => {
                        let p = ffi::sqlite3_column_text(s, col);
                        let len = ffi::sqlite3_column_bytes(s, col);
                        Value::Text(copy_bytes(p.cast(), len, budget)?)
                    }
                    ffi::SQLITE_BLOB => {
                        let p = ffi::sqlite3_column_blob(s, col);
                        let len = ffi::sqlite3_column_bytes(s, col);
                        Value::Blob(copy_bytes(p.cast(), len, budget)?)
                    }
                    _ => Value::Null,
                }
            };
            row.push(value);
        }
        Ok(row)
    }
}

/// Copies `len` bytes from SQLite-owned memory, first charging them to `budget`; the copy is
/// allocated fallibly (`SQLITE_NOMEM`). A null pointer with a non-zero length means SQLite ran
/// out of memory converting the value.
///
/// # Safety
/// `p` is null or points to `len` readable bytes.
unsafe fn copy_bytes(p: *const u8, len: c_int, budget: &mut Budget) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(len).unwrap_or(0);
    budget.charge(len as u64)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Error::from_code(ffi::SQLITE_NOMEM));
    }
    let mut copy = Vec::new();
    copy.try_reserve_exact(len).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
    // SAFETY: non-null and `len` readable bytes by the caller's contract.
    copy.extend_from_slice(unsafe { core::slice::from_raw_parts(p, len) });
    Ok(copy)
}
