//! The result budget: what one [`Database::run`](crate::Database::run) may collect, counted
//! while rows arrive, so a client's query can never make the shim allocate without bound.
//!
//! Each part of a result costs the bytes it takes in memory, its text or BLOB bytes plus a
//! fixed overhead: [`VALUE`] per value, [`ROW`] per row, [`COLUMN`] per column name and
//! [`STATEMENT`] per statement. Each overhead is the size of the Rust type holding the part,
//! and is at least what the part's wire encoding adds (`vpr_proto::msg`: a value's tag and
//! length or number take at most 9 bytes, a row's count 4, a column name's length 4, a
//! statement's two counts and `changes` 16), so the count bounds both the memory the results
//! hold (allocator overhead aside) and the length of their encoding. [`cost`] gives the count
//! of results already collected.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::size_of;

use crate::error::Error;
use crate::ffi;
use crate::value::{StatementResult, Value};

/// Overhead of one value, besides its text or BLOB bytes.
pub const VALUE: u64 = size_of::<Value>() as u64;
/// Overhead of one row, besides its values.
pub const ROW: u64 = size_of::<Vec<Value>>() as u64;
/// Overhead of one column name, besides its bytes.
pub const COLUMN: u64 = size_of::<String>() as u64;
/// Overhead of one statement's result, besides its columns and rows.
pub const STATEMENT: u64 = size_of::<StatementResult>() as u64;

// The wire encoding's overheads (see the module docs) are covered.
const _: () = assert!(VALUE >= 9 && ROW >= 4 && COLUMN >= 4 && STATEMENT >= 16);

/// What `results` count against a budget.
pub fn cost(results: &[StatementResult]) -> u64 {
    results
        .iter()
        .map(|r| {
            let columns: u64 = r.columns.iter().map(|c| COLUMN + c.len() as u64).sum();
            let rows: u64 =
                r.rows.iter().map(|row| ROW + row.iter().map(value_cost).sum::<u64>()).sum();
            STATEMENT + columns + rows
        })
        .sum()
}

/// What one value counts.
pub fn value_cost(value: &Value) -> u64 {
    match value {
        Value::Text(b) | Value::Blob(b) => VALUE + b.len() as u64,
        _ => VALUE,
    }
}

/// The budget of one run: bytes left, or none if unlimited.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: Option<u64>,
    used: u64,
}

impl Budget {
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Budget { limit, used: 0 }
    }

    /// Counts `bytes`; fails with `SQLITE_TOOBIG` if that goes beyond the limit (the count
    /// is then past it, and every later charge fails too).
    pub(crate) fn charge(&mut self, bytes: u64) -> Result<(), Error> {
        self.used = self.used.saturating_add(bytes);
        match self.limit {
            Some(limit) if self.used > limit => Err(Error::new(
                ffi::SQLITE_TOOBIG,
                format!(
                    "the request's results exceed the result budget (max_result_bytes = \
                     {limit} bytes); nothing of the failing statement was kept"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Appends `item` to `items`, or fails with `SQLITE_NOMEM` if the room cannot be allocated.
pub(crate) fn try_push<T>(items: &mut Vec<T>, item: T) -> Result<(), Error> {
    items.try_reserve(1).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
    items.push(item);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_budget_fails_once_past_its_limit_and_stays_failed() {
        let mut b = Budget::new(Some(100));
        assert!(b.charge(60).is_ok());
        assert!(b.charge(40).is_ok());
        let e = b.charge(1).unwrap_err();
        assert_eq!(e.code, ffi::SQLITE_TOOBIG);
        assert!(e.message.contains("max_result_bytes = 100"), "{e}");
        assert!(b.charge(0).is_err());
        let mut unlimited = Budget::new(None);
        assert!(unlimited.charge(u64::MAX).is_ok() && unlimited.charge(u64::MAX).is_ok());
    }

    #[test]
    fn cost_counts_every_part() {
        let result = StatementResult {
            columns: vec![String::from("ab")],
            rows: vec![vec![Value::Blob(vec![0; 10])], vec![Value::Null]],
            changes: 0,
        };
        let expected = STATEMENT + (COLUMN + 2) + (ROW + VALUE + 10) + (ROW + VALUE);
        assert_eq!(cost(&[result]), expected);
        assert_eq!(cost(&[]), 0);
    }
}
