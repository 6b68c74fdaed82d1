//! SQL values and statement results.

use alloc::string::String;
use alloc::vec::Vec;

/// One SQLite value, with its storage class (SQLite's "Datatypes", §2).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE 754 double.
    Real(f64),
    /// Text as SQLite stores it: normally UTF-8, but SQL such as `CAST(x'ff' AS TEXT)` can make
    /// any bytes, and they are kept as they are.
    Text(Vec<u8>),
    /// A BLOB.
    Blob(Vec<u8>),
}

impl Value {
    /// The text, if this is `Text` holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(t) => core::str::from_utf8(t).ok(),
            _ => None,
        }
    }

    /// SQLite's name for the storage class, as `typeof()` returns it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v.into_bytes())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// What one statement produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatementResult {
    /// Column names (empty for statements that return no columns).
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows changed by an INSERT, UPDATE or DELETE (`sqlite3_changes64`); 0 otherwise.
    pub changes: u64,
}

/// What a sequence of statements produced: the results of those that completed and, if one
/// failed, its error (execution stops there).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Execution {
    /// One result per completed statement, in order.
    pub results: Vec<StatementResult>,
    /// The error that stopped execution.
    pub error: Option<crate::Error>,
    /// Whether every statement was read-only (`sqlite3_stmt_readonly`) and none failed: the
    /// same SQL run again later cannot write, whatever the database holds then.
    pub read_only: bool,
}
