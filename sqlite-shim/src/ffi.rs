//! Raw declarations of the SQLite C API that the shim uses (SQLite 3.54.1, `sqlite3.h`).
//!
//! Every symbol is linked under its `vpr_` name: build.rs renames the compiled engine's
//! symbols so that it can share a process with another SQLite (rusqlite's, in tests).
//! Struct layouts follow `sqlite3.h` exactly (`sqlite3_vfs` version 2, `sqlite3_io_methods`
//! version 1, `sqlite3_file`).

#![allow(non_camel_case_types, missing_docs)]

use core::ffi::{c_char, c_double, c_int, c_uchar, c_void};

/// Opaque connection handle.
#[repr(C)]
pub struct sqlite3 {
    _opaque: [u8; 0],
}

/// Opaque prepared statement.
#[repr(C)]
pub struct sqlite3_stmt {
    _opaque: [u8; 0],
}

/// A method slot this build leaves NULL (shared memory, mmap, extension loading).
pub type UnusedSlot = Option<unsafe extern "C" fn()>;
pub type sqlite3_destructor_type = Option<unsafe extern "C" fn(*mut c_void)>;

pub const SQLITE_OK: c_int = 0;
pub const SQLITE_ERROR: c_int = 1;
pub const SQLITE_NOMEM: c_int = 7;
pub const SQLITE_INTERRUPT: c_int = 9;
pub const SQLITE_IOERR: c_int = 10;
pub const SQLITE_NOTFOUND: c_int = 12;
pub const SQLITE_FULL: c_int = 13;
pub const SQLITE_CANTOPEN: c_int = 14;
pub const SQLITE_TOOBIG: c_int = 18;
pub const SQLITE_MISUSE: c_int = 21;
pub const SQLITE_RANGE: c_int = 25;
pub const SQLITE_ROW: c_int = 100;
pub const SQLITE_DONE: c_int = 101;
pub const SQLITE_IOERR_SHORT_READ: c_int = SQLITE_IOERR | (2 << 8);
pub const SQLITE_IOERR_WRITE: c_int = SQLITE_IOERR | (3 << 8);
pub const SQLITE_IOERR_TRUNCATE: c_int = SQLITE_IOERR | (6 << 8);
pub const SQLITE_IOERR_NOMEM: c_int = SQLITE_IOERR | (12 << 8);

pub const SQLITE_OPEN_READWRITE: c_int = 0x0000_0002;
pub const SQLITE_OPEN_CREATE: c_int = 0x0000_0004;
pub const SQLITE_OPEN_MAIN_DB: c_int = 0x0000_0100;
pub const SQLITE_OPEN_EXRESCODE: c_int = 0x0200_0000;

pub const SQLITE_UTF8: c_uchar = 1;

pub const SQLITE_CORRUPT: c_int = 11;

pub const SQLITE_CONFIG_HEAP: c_int = 8;

pub const SQLITE_INTEGER: c_int = 1;
pub const SQLITE_FLOAT: c_int = 2;
pub const SQLITE_TEXT: c_int = 3;
pub const SQLITE_BLOB: c_int = 4;

pub const SQLITE_LIMIT_LENGTH: c_int = 0;
pub const SQLITE_LIMIT_SQL_LENGTH: c_int = 1;

pub const SQLITE_DENY: c_int = 1;
pub const SQLITE_PRAGMA: c_int = 19;
pub const SQLITE_FUNCTION: c_int = 31;

/// `SQLITE_TRANSIENT`: SQLite copies the bound buffer before `bind` returns.
pub fn transient() -> sqlite3_destructor_type {
    // SAFETY: SQLITE_TRANSIENT is the sentinel pointer value -1, which SQLite compares against
    // and never calls; `Option<fn>` has the layout of a nullable function pointer.
    unsafe { core::mem::transmute::<isize, sqlite3_destructor_type>(-1) }
}

/// `struct sqlite3_file`: the base of every VFS file object.
#[repr(C)]
pub struct sqlite3_file {
    pub methods: *const sqlite3_io_methods,
}

/// `struct sqlite3_io_methods`, version 1 (no shared memory, no mmap).
#[repr(C)]
pub struct sqlite3_io_methods {
    pub version: c_int,
    pub close: unsafe extern "C" fn(*mut sqlite3_file) -> c_int,
    pub read: unsafe extern "C" fn(*mut sqlite3_file, *mut c_void, c_int, i64) -> c_int,
    pub write: unsafe extern "C" fn(*mut sqlite3_file, *const c_void, c_int, i64) -> c_int,
    pub truncate: unsafe extern "C" fn(*mut sqlite3_file, i64) -> c_int,
    pub sync: unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int,
    pub file_size: unsafe extern "C" fn(*mut sqlite3_file, *mut i64) -> c_int,
    pub lock: unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int,
    pub unlock: unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int,
    pub check_reserved_lock: unsafe extern "C" fn(*mut sqlite3_file, *mut c_int) -> c_int,
    pub file_control: unsafe extern "C" fn(*mut sqlite3_file, c_int, *mut c_void) -> c_int,
    pub sector_size: unsafe extern "C" fn(*mut sqlite3_file) -> c_int,
    pub device_characteristics: unsafe extern "C" fn(*mut sqlite3_file) -> c_int,
    pub shm_map: UnusedSlot,
    pub shm_lock: UnusedSlot,
    pub shm_barrier: UnusedSlot,
    pub shm_unmap: UnusedSlot,
    pub fetch: UnusedSlot,
    pub unfetch: UnusedSlot,
}

/// `struct sqlite3_vfs`, version 2.
#[repr(C)]
pub struct sqlite3_vfs {
    pub version: c_int,
    pub os_file_size: c_int,
    pub max_pathname: c_int,
    pub next: *mut sqlite3_vfs,
    pub name: *const c_char,
    pub app_data: *mut c_void,
    pub open: unsafe extern "C" fn(
        *mut sqlite3_vfs,
        *const c_char,
        *mut sqlite3_file,
        c_int,
        *mut c_int,
    ) -> c_int,
    pub delete: unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, c_int) -> c_int,
    pub access: unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, c_int, *mut c_int) -> c_int,
    pub full_pathname:
        unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, c_int, *mut c_char) -> c_int,
    pub dl_open: UnusedSlot,
    pub dl_error: UnusedSlot,
    pub dl_sym: UnusedSlot,
    pub dl_close: UnusedSlot,
    pub randomness: unsafe extern "C" fn(*mut sqlite3_vfs, c_int, *mut c_char) -> c_int,
    pub sleep: unsafe extern "C" fn(*mut sqlite3_vfs, c_int) -> c_int,
    pub current_time: unsafe extern "C" fn(*mut sqlite3_vfs, *mut c_double) -> c_int,
    pub get_last_error: unsafe extern "C" fn(*mut sqlite3_vfs, c_int, *mut c_char) -> c_int,
    pub current_time_int64: unsafe extern "C" fn(*mut sqlite3_vfs, *mut i64) -> c_int,
}

pub type authorizer_fn = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    *const c_char,
    *const c_char,
    *const c_char,
    *const c_char,
) -> c_int;

#[link(name = "vpr_sqlite3", kind = "static")]
unsafe extern "C" {
    #[link_name = "vpr_sqlite3_initialize"]
    pub fn sqlite3_initialize() -> c_int;
    #[link_name = "vpr_sqlite3_config"]
    pub fn sqlite3_config(op: c_int, ...) -> c_int;
    #[link_name = "vpr_sqlite3_vfs_register"]
    pub fn sqlite3_vfs_register(vfs: *mut sqlite3_vfs, make_default: c_int) -> c_int;
    #[link_name = "vpr_sqlite3_open_v2"]
    pub fn sqlite3_open_v2(
        filename: *const c_char,
        db: *mut *mut sqlite3,
        flags: c_int,
        vfs: *const c_char,
    ) -> c_int;
    #[link_name = "vpr_sqlite3_close_v2"]
    pub fn sqlite3_close_v2(db: *mut sqlite3) -> c_int;
    #[link_name = "vpr_sqlite3_extended_errcode"]
    pub fn sqlite3_extended_errcode(db: *mut sqlite3) -> c_int;
    #[link_name = "vpr_sqlite3_errmsg"]
    pub fn sqlite3_errmsg(db: *mut sqlite3) -> *const c_char;
    #[link_name = "vpr_sqlite3_errstr"]
    pub fn sqlite3_errstr(code: c_int) -> *const c_char;
    #[link_name = "vpr_sqlite3_limit"]
    pub fn sqlite3_limit(db: *mut sqlite3, id: c_int, new_val: c_int) -> c_int;
    #[link_name = "vpr_sqlite3_prepare_v2"]
    pub fn sqlite3_prepare_v2(
        db: *mut sqlite3,
        sql: *const c_char,
        n_byte: c_int,
        stmt: *mut *mut sqlite3_stmt,
        tail: *mut *const c_char,
    ) -> c_int;
    #[link_name = "vpr_sqlite3_step"]
    pub fn sqlite3_step(stmt: *mut sqlite3_stmt) -> c_int;
    #[link_name = "vpr_sqlite3_finalize"]
    pub fn sqlite3_finalize(stmt: *mut sqlite3_stmt) -> c_int;
    #[link_name = "vpr_sqlite3_bind_parameter_count"]
    pub fn sqlite3_bind_parameter_count(stmt: *mut sqlite3_stmt) -> c_int;
    #[link_name = "vpr_sqlite3_bind_null"]
    pub fn sqlite3_bind_null(stmt: *mut sqlite3_stmt, idx: c_int) -> c_int;
    #[link_name = "vpr_sqlite3_bind_int64"]
    pub fn sqlite3_bind_int64(stmt: *mut sqlite3_stmt, idx: c_int, v: i64) -> c_int;
    #[link_name = "vpr_sqlite3_bind_double"]
    pub fn sqlite3_bind_double(stmt: *mut sqlite3_stmt, idx: c_int, v: c_double) -> c_int;
    #[link_name = "vpr_sqlite3_bind_text64"]
    pub fn sqlite3_bind_text64(
        stmt: *mut sqlite3_stmt,
        idx: c_int,
        text: *const c_char,
        n: u64,
        destructor: sqlite3_destructor_type,
        encoding: c_uchar,
    ) -> c_int;
    #[link_name = "vpr_sqlite3_bind_blob64"]
    pub fn sqlite3_bind_blob64(
        stmt: *mut sqlite3_stmt,
        idx: c_int,
        blob: *const c_void,
        n: u64,
        destructor: sqlite3_destructor_type,
    ) -> c_int;
    #[link_name = "vpr_sqlite3_column_count"]
    pub fn sqlite3_column_count(stmt: *mut sqlite3_stmt) -> c_int;
    #[link_name = "vpr_sqlite3_column_name"]
    pub fn sqlite3_column_name(stmt: *mut sqlite3_stmt, col: c_int) -> *const c_char;
    #[link_name = "vpr_sqlite3_column_type"]
    pub fn sqlite3_column_type(stmt: *mut sqlite3_stmt, col: c_int) -> c_int;
    #[link_name = "vpr_sqlite3_column_int64"]
    pub fn sqlite3_column_int64(stmt: *mut sqlite3_stmt, col: c_int) -> i64;
    #[link_name = "vpr_sqlite3_column_double"]
    pub fn sqlite3_column_double(stmt: *mut sqlite3_stmt, col: c_int) -> c_double;
    #[link_name = "vpr_sqlite3_column_text"]
    pub fn sqlite3_column_text(stmt: *mut sqlite3_stmt, col: c_int) -> *const c_uchar;
    #[link_name = "vpr_sqlite3_column_blob"]
    pub fn sqlite3_column_blob(stmt: *mut sqlite3_stmt, col: c_int) -> *const c_void;
    #[link_name = "vpr_sqlite3_column_bytes"]
    pub fn sqlite3_column_bytes(stmt: *mut sqlite3_stmt, col: c_int) -> c_int;
    #[link_name = "vpr_sqlite3_changes64"]
    pub fn sqlite3_changes64(db: *mut sqlite3) -> i64;
    #[link_name = "vpr_sqlite3_last_insert_rowid"]
    pub fn sqlite3_last_insert_rowid(db: *mut sqlite3) -> i64;
    #[link_name = "vpr_sqlite3_get_autocommit"]
    pub fn sqlite3_get_autocommit(db: *mut sqlite3) -> c_int;
    #[link_name = "vpr_sqlite3_stmt_readonly"]
    pub fn sqlite3_stmt_readonly(stmt: *mut sqlite3_stmt) -> c_int;
    #[link_name = "vpr_sqlite3_progress_handler"]
    pub fn sqlite3_progress_handler(
        db: *mut sqlite3,
        n_ops: c_int,
        handler: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
        arg: *mut c_void,
    );
    #[link_name = "vpr_sqlite3_set_authorizer"]
    pub fn sqlite3_set_authorizer(
        db: *mut sqlite3,
        auth: Option<authorizer_fn>,
        arg: *mut c_void,
    ) -> c_int;
    #[link_name = "vpr_sqlite3_libversion"]
    pub fn sqlite3_libversion() -> *const c_char;
}
