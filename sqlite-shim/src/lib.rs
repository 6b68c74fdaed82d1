//! SQLite, compiled freestanding, with an in-memory VFS that records the pages each
//! transaction writes.
//!
//! This is the database engine of the PAL: the real SQLite amalgamation (3.54.1, the release
//! rusqlite bundles) built with no libc and no operating system, its heap a fixed memsys5 pool,
//! its files in memory. The same code runs in a host process (tests, the simulation backend)
//! and inside the bare-metal PAL image. Writes to a database file are tracked so a primary can
//! ship the written pages as a state update and a backup can [`Database::apply`] them, which
//! leaves its file byte-identical to the primary's.
//!
//! All unsafe code is here: `ffi` (declarations), `vfs` (the C callbacks), `db` (the calls),
//! `engine` (set-up and the lock that serialises calls into the single-threaded build).

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod budget;
mod db;
mod dirty;
mod engine;
mod error;
mod ffi;
mod platform;
mod stmt;
mod undo;
mod value;
mod vfs;

pub use db::{
    header_page_size, Changes, Database, OpenOptions, Stale, DIGEST_CHUNK, MAX_PAGE_SIZE,
    MIN_PAGE_SIZE, RESERVED_PREFIX,
};
pub use engine::{initialize, Config, DEFAULT_HEAP_BYTES};
pub use error::{Error, MAX_MESSAGE_BYTES};
pub use platform::Platform;
pub use undo::Undo;
pub use value::{Execution, StatementResult, Value};

/// SQLite's result codes that callers match on.
pub mod codes {
    pub use crate::ffi::{
        SQLITE_CORRUPT, SQLITE_ERROR, SQLITE_INTERRUPT, SQLITE_MISUSE, SQLITE_NOMEM, SQLITE_RANGE,
        SQLITE_TOOBIG,
    };
}

/// The SQLite release compiled in, e.g. `"3.54.1"`.
pub fn sqlite_version() -> &'static str {
    // SAFETY: sqlite3_libversion returns a pointer to a static NUL-terminated ASCII string.
    let v = unsafe { core::ffi::CStr::from_ptr(ffi::sqlite3_libversion()) };
    v.to_str().unwrap_or("unknown")
}
