//! The safe database handle: run SQL, capture the pages a transaction wrote, apply pages.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::budget::{self, try_push, Budget};
use crate::engine::{self, Guard};
use crate::error::{cstr, Error};
use crate::ffi;
use crate::stmt::Stmt;
use crate::undo::Undo;
use crate::value::{Execution, StatementResult, Value};
use crate::vfs::{self, FileData, SharedFile};

/// Smallest and largest page sizes SQLite supports ("Database File Format", §1.3.2).
pub const MIN_PAGE_SIZE: u32 = 512;
/// See [`MIN_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u32 = 65536;

/// How the engine calls the progress handler: every this many virtual machine instructions.
const PROGRESS_PERIOD: c_int = 1000;

/// Settings of a database connection.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Page size for a new database (a power of two, 512 to 65536); SQLite's default (4096)
    /// if `None`. SQL can still change it later with `PRAGMA page_size` and `VACUUM`.
    pub page_size: Option<u32>,
    /// Longest SQL text accepted by [`Database::execute`] (`SQLITE_LIMIT_SQL_LENGTH`).
    pub max_sql_bytes: u32,
    /// Longest string or BLOB (`SQLITE_LIMIT_LENGTH`).
    pub max_value_bytes: u32,
    /// Virtual machine instructions one [`Database::execute`] may run before it is
    /// interrupted (`SQLITE_INTERRUPT`), so no request can hold the engine forever.
    pub max_vm_steps: Option<u64>,
    /// The result budget: bytes the results of one [`Database::run`] may take, counted while
    /// rows are collected as the [`budget`](crate::budget) module says (value bytes plus a
    /// fixed overhead per value, row, column and statement; at least their wire encoding).
    /// A run that needs more stops with `SQLITE_TOOBIG` at the value that crosses the limit;
    /// the failing statement keeps nothing (see [`Database::run`]). `None`: no budget, only
    /// memory (running out is `SQLITE_NOMEM`, never a crash).
    pub max_result_bytes: Option<u64>,
    /// Refuse SQL that would break page-level replication: setting `journal_mode` (a journal
    /// file) or `locking_mode` (an exclusive lock would keep the connection from seeing pages
    /// applied under it). Other files are refused by the VFS whatever this says: only the
    /// database itself and SQLite's anonymous temporary databases can be opened.
    pub service_policy: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            page_size: None,
            max_sql_bytes: 1 << 20,
            max_value_bytes: 64 << 20,
            max_vm_steps: None,
            max_result_bytes: None,
            service_policy: false,
        }
    }
}

/// The unit of [`Stale`]: 4 KiB pieces of the database file (SQLite's default page size),
/// whatever the database's page size.
pub const DIGEST_CHUNK: u64 = 4096;

/// What changed in the database file since [`Database::with_file_and_stale`] last looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Anything may have (the set of changes could not grow).
    All,
    /// At most these [`DIGEST_CHUNK`]-sized pieces, ascending, all within the file (pieces
    /// past its end went away with a cut).
    Chunks(Vec<u32>),
}

/// Pages written to the main database file since the last capture, with their contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The file's size after the writes.
    pub file_size: u64,
    /// The page size the pages are counted in (the database's own, from its header).
    pub page_size: u32,
    /// `(page index from 0, contents)`, ascending; the last page of an odd-sized file may be
    /// shorter than `page_size`.
    pub pages: Vec<(u32, Vec<u8>)>,
}

impl Changes {
    /// Whether no page was written.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// Tables whose names start with this (any case) belong to the service, not to its clients:
/// with [`OpenOptions::service_policy`], client SQL cannot read, write, create, drop or hang
/// triggers on them; only [`Database::run_privileged`] can.
pub const RESERVED_PREFIX: &str = "vpr_";

/// The savepoint that guards a statement which writes and returns rows (see
/// [`Database::run`]); a reserved name, so client SQL cannot use it.
const GUARD_BEGIN: &[u8] = b"SAVEPOINT vpr_results";
const GUARD_RELEASE: &[u8] = b"RELEASE vpr_results";
const GUARD_UNDO: &[u8] = b"ROLLBACK TO vpr_results";
const ROLLBACK: &[u8] = b"ROLLBACK";

/// State the C callbacks read: the progress handler's budget and the authorizer's mode.
#[derive(Debug)]
struct Hooks {
    limit: Option<u64>,
    remaining: Cell<u64>,
    privileged: Cell<bool>,
}

/// A connection to a database held in memory by the shim's VFS.
#[derive(Debug)]
pub struct Database {
    db: NonNull<ffi::sqlite3>,
    file: SharedFile,
    name: String,
    hooks: Box<Hooks>,
    max_sql_bytes: u32,
    max_result_bytes: Option<u64>,
}

// SAFETY: the connection is only used with the engine lock held, which serialises all access
// to SQLite (built single-threaded) across threads; nothing in it is tied to a thread.
unsafe impl Send for Database {}

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

impl Database {
    /// Opens a new, empty database.
    pub fn open(options: &OpenOptions) -> Result<Database, Error> {
        if let Some(ps) = options.page_size {
            if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) || !ps.is_power_of_two() {
                return Err(Error::new(ffi::SQLITE_RANGE, format!("invalid page size {ps}")));
            }
        }
        let guard = engine::lock()?;
        let name = format!("vpr-{}.db", NEXT_FILE.fetch_add(1, Ordering::Relaxed));
        let file = vfs::create_file(&name);
        let cname = alloc::ffi::CString::new(name.as_str())
            .map_err(|_| Error::new(ffi::SQLITE_CANTOPEN, "file name has a NUL byte"))?;
        let mut raw = ptr::null_mut();
        let flags =
            ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_EXRESCODE;
        // SAFETY: engine lock held; both strings are NUL-terminated; `raw` receives the handle.
        let rc = unsafe {
            ffi::sqlite3_open_v2(cname.as_ptr(), &mut raw, flags, vfs::VFS_NAME.as_ptr())
        };
        let Some(db) = NonNull::new(raw) else {
            vfs::remove_file(&name);
            return Err(Error::from_code(rc));
        };
        let hooks = Box::new(Hooks {
            limit: options.max_vm_steps,
            remaining: Cell::new(0),
            privileged: Cell::new(false),
        });
        let mut this = Database {
            db,
            file,
            name,
            hooks,
            max_sql_bytes: options.max_sql_bytes,
            max_result_bytes: None,
        };
        if rc != ffi::SQLITE_OK {
            return Err(this.last_error(&guard));
        }
        this.configure(&guard, options)?;
        drop(guard);
        let mut setup = String::from("PRAGMA journal_mode=MEMORY;");
        if let Some(ps) = options.page_size {
            setup.push_str(&format!("PRAGMA page_size={ps};"));
        }
        this.execute(&setup, &[])?;
        this.file.lock().dirty.clear();
        // Only now: the set-up's PRAGMA returns a row and must not run inside a guard.
        this.max_result_bytes = options.max_result_bytes;
        if options.service_policy {
            let _guard = engine::lock()?;
            let hooks: *const Hooks = &*this.hooks;
            // SAFETY: engine lock held; `hooks` is boxed, so its address is stable for as long
            // as the connection (closed first, in Drop) can call the authorizer.
            unsafe {
                ffi::sqlite3_set_authorizer(this.db.as_ptr(), Some(authorize), hooks as *mut c_void)
            };
        }
        Ok(this)
    }

    /// Limits and the progress handler.
    fn configure(&mut self, _guard: &Guard, options: &OpenOptions) -> Result<(), Error> {
        let sql_len = c_int::try_from(options.max_sql_bytes).unwrap_or(c_int::MAX);
        let value_len = c_int::try_from(options.max_value_bytes).unwrap_or(c_int::MAX);
        let db = self.db.as_ptr();
        let budget: *const Hooks = &*self.hooks;
        // SAFETY: engine lock held (`_guard`); `budget` is boxed, so its address is stable for
        // as long as the connection (dropped first, in Drop) can call the handler.
        unsafe {
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_SQL_LENGTH, sql_len);
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, value_len);
            if options.max_vm_steps.is_some() {
                ffi::sqlite3_progress_handler(
                    db,
                    PROGRESS_PERIOD,
                    Some(progress),
                    budget as *mut c_void,
                );
            }
        }
        Ok(())
    }

    /// The connection's last error.
    fn last_error(&self, _guard: &Guard) -> Error {
        // SAFETY: engine lock held; errmsg returns a string valid until the next call.
        let (code, message) = unsafe {
            let db = self.db.as_ptr();
            (ffi::sqlite3_extended_errcode(db), cstr(ffi::sqlite3_errmsg(db)))
        };
        if code & 0xff == ffi::SQLITE_INTERRUPT
            && self.hooks.limit.is_some()
            && self.hooks.remaining.get() == 0
        {
            return Error::new(code, "statement exceeded its execution budget (interrupted)");
        }
        Error::new(code, message)
    }

    /// Runs every statement in `sql`, in order, and returns what each produced.
    ///
    /// Parameters (`?`, `?NNN`, `:name`) bind by position to `params`; every statement that
    /// has parameters must use exactly `params.len()` of them. Execution stops at the first
    /// error, which is returned; statements before it keep their effects (as with
    /// `sqlite3_exec`), and the failing statement's own are undone. [`Database::run`] also
    /// returns what the statements before the error produced.
    ///
    /// Results are collected with fallible allocations: memory that cannot be had is the
    /// error `SQLITE_NOMEM`, and going beyond [`OpenOptions::max_result_bytes`] the error
    /// `SQLITE_TOOBIG`, either stopping the statement mid-way. A statement that only reads
    /// changed nothing. With a result budget set, a statement that writes and returns rows
    /// (`INSERT ... RETURNING`) runs inside a savepoint, rolled back if its rows cannot all
    /// be collected: SQLite makes such a statement's changes during its first step, and
    /// stopping it early would otherwise keep them.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Vec<StatementResult>, Error> {
        let run = self.run(sql, params);
        match run.error {
            Some(e) => Err(e),
            None => Ok(run.results),
        }
    }

    /// Like [`Database::execute`], but keeps the results of the statements that completed
    /// before an error.
    pub fn run(&mut self, sql: &str, params: &[Value]) -> Execution {
        let mut results = Vec::new();
        let mut read_only = true;
        let error = self.run_into(sql, params, &mut results, &mut read_only).err();
        Execution { results, read_only: read_only && error.is_none(), error }
    }

    /// Like [`Database::run`], but allowed to use the reserved tables ([`RESERVED_PREFIX`])
    /// and without a result budget: for the service's own bookkeeping, never for client SQL.
    pub fn run_privileged(&mut self, sql: &str, params: &[Value]) -> Execution {
        self.hooks.privileged.set(true);
        let run = self.run(sql, params);
        self.hooks.privileged.set(false);
        run
    }

    /// How many writes (and truncations) the database file has had: compare two readings to
    /// tell whether the SQL run between them wrote anything.
    pub fn write_count(&self) -> u64 {
        self.file.lock().writes
    }

    /// Sets the result budget ([`OpenOptions::max_result_bytes`]) for later runs.
    pub fn set_max_result_bytes(&mut self, max: Option<u64>) {
        self.max_result_bytes = max;
    }

    /// The result budget ([`OpenOptions::max_result_bytes`]).
    pub fn max_result_bytes(&self) -> Option<u64> {
        self.max_result_bytes
    }

    /// Whether any page was written since the last capture.
    pub fn has_changes(&self) -> bool {
        !self.file.lock().dirty.is_empty()
    }

    fn run_into(
        &mut self,
        sql: &str,
        params: &[Value],
        results: &mut Vec<StatementResult>,
        read_only: &mut bool,
    ) -> Result<(), Error> {
        if sql.len() > self.max_sql_bytes as usize {
            return Err(Error::new(
                ffi::SQLITE_TOOBIG,
                format!("SQL text is {} bytes; the limit is {}", sql.len(), self.max_sql_bytes),
            ));
        }
        if let Some(at) = sql.bytes().position(|b| b == 0) {
            // SQLite would stop reading at the NUL and silently ignore the rest.
            return Err(Error::new(
                ffi::SQLITE_ERROR,
                format!("SQL text has a NUL byte at offset {at}"),
            ));
        }
        let guard = engine::lock()?;
        self.hooks.remaining.set(self.hooks.limit.unwrap_or(u64::MAX));
        // The service's own SQL reads what it wrote itself: no budget.
        let limit = if self.hooks.privileged.get() { None } else { self.max_result_bytes };
        let mut budget = Budget::new(limit);
        let mut params_used = params.is_empty();
        let mut rest = sql.as_bytes();
        while !rest.is_empty() {
            let Some((stmt, consumed)) = self.prepare(&guard, rest)? else { break };
            rest = &rest[consumed..];
            let Some(stmt) = stmt else { continue };
            *read_only &= stmt.readonly();
            let wanted = stmt.parameter_count();
            if wanted > 0 {
                if wanted != params.len() {
                    return Err(Error::new(
                        ffi::SQLITE_RANGE,
                        format!(
                            "statement has {wanted} parameters but {} were given",
                            params.len()
                        ),
                    ));
                }
                stmt.bind(params).map_err(|rc| self.error_or(&guard, rc))?;
                params_used = true;
            }
            let guarded = limit.is_some() && stmt.column_count() > 0 && !stmt.readonly();
            if !guarded {
                let result = self.step_all(&guard, &stmt, &mut budget)?;
                try_push(results, result)?;
                continue;
            }
            // SAFETY: engine lock held.
            let outermost = unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) } != 0;
            self.run_own(&guard, GUARD_BEGIN)?;
            let result = self.step_all(&guard, &stmt, &mut budget);
            // Finalized before the savepoint ends: a statement stopped mid-way must not be
            // pending when its changes are rolled back.
            drop(stmt);
            let result = result
                .and_then(|r| self.run_own(&guard, GUARD_RELEASE).map(|()| r))
                .inspect_err(|_| self.undo_guard(&guard, outermost))?;
            try_push(results, result)?;
        }
        if !params_used {
            return Err(Error::new(
                ffi::SQLITE_RANGE,
                format!("{} parameters were given but the SQL has none", params.len()),
            ));
        }
        Ok(())
    }

    /// Prepares the first statement of `sql`: `None` when nothing is left, else the
    /// statement (absent for a comment or blank) and the bytes it took.
    fn prepare(&self, guard: &Guard, sql: &[u8]) -> Result<Option<(Option<Stmt>, usize)>, Error> {
        let len = c_int::try_from(sql.len()).map_err(|_| Error::from_code(ffi::SQLITE_TOOBIG))?;
        let mut raw = ptr::null_mut();
        let mut tail: *const c_char = ptr::null();
        // SAFETY: engine lock held; `sql` is `len` readable bytes (no NUL needed with a length);
        // `tail` receives a pointer into `sql`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(self.db.as_ptr(), sql.as_ptr().cast(), len, &mut raw, &mut tail)
        };
        let stmt = NonNull::new(raw).map(Stmt);
        if rc != ffi::SQLITE_OK {
            drop(stmt);
            return Err(self.last_error(guard));
        }
        let consumed = if tail.is_null() {
            sql.len()
        } else {
            (tail as usize).saturating_sub(sql.as_ptr() as usize)
        };
        if consumed == 0 && stmt.is_none() {
            return Ok(None);
        }
        Ok(Some((stmt, consumed.min(sql.len()))))
    }

    /// The connection's error if it has one for `rc`, else SQLite's text for `rc`.
    fn error_or(&self, guard: &Guard, rc: c_int) -> Error {
        let e = self.last_error(guard);
        if e.code == rc {
            e
        } else {
            Error::from_code(rc)
        }
    }

    /// Runs the shim's own SQL (one statement, no rows), allowed the reserved names and
    /// outside the client's execution budget.
    fn run_own(&self, guard: &Guard, sql: &[u8]) -> Result<(), Error> {
        let privileged = self.hooks.privileged.replace(true);
        let left = self.hooks.remaining.replace(u64::MAX);
        let done = match self.prepare(guard, sql) {
            // SAFETY: engine lock held; `stmt` is a live prepared statement.
            Ok(Some((Some(stmt), _))) => match unsafe { ffi::sqlite3_step(stmt.0.as_ptr()) } {
                ffi::SQLITE_DONE => Ok(()),
                _ => Err(self.last_error(guard)),
            },
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        self.hooks.remaining.set(left);
        self.hooks.privileged.set(privileged);
        done
    }

    /// Ends a guard whose statement failed: its changes are rolled back. If the guard began
    /// the transaction (`outermost`), the whole transaction is rolled back, as SQLite does
    /// for a failing statement outside a transaction: nothing is written to the file (ending
    /// it with `RELEASE` would write the restored pages back). SQLite may have rolled back
    /// the whole transaction already (`SQLITE_FULL`, `SQLITE_NOMEM`, `ON CONFLICT
    /// ROLLBACK`...), savepoint included; then there is nothing left to do. If the savepoint
    /// cannot be rolled back, the whole transaction is.
    fn undo_guard(&self, guard: &Guard, outermost: bool) {
        // SAFETY: engine lock held.
        if unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) } != 0 {
            return;
        }
        let undone = !outermost
            && self.run_own(guard, GUARD_UNDO).is_ok()
            && self.run_own(guard, GUARD_RELEASE).is_ok();
        if !undone {
            // Best effort: the request has failed, and a transaction it left open is the
            // caller's to roll back (the service does).
            let _ = self.run_own(guard, ROLLBACK);
        }
    }

    /// Steps a statement to completion, collecting its rows within `budget`.
    fn step_all(
        &self,
        guard: &Guard,
        stmt: &Stmt,
        budget: &mut Budget,
    ) -> Result<StatementResult, Error> {
        budget.charge(budget::STATEMENT)?;
        let mut result =
            StatementResult { columns: stmt.column_names(budget)?, ..StatementResult::default() };
        loop {
            // SAFETY: engine lock held; `stmt` is a live prepared statement.
            match unsafe { ffi::sqlite3_step(stmt.0.as_ptr()) } {
                ffi::SQLITE_ROW => {
                    let row = stmt.row(result.columns.len(), budget)?;
                    try_push(&mut result.rows, row)?;
                }
                ffi::SQLITE_DONE => break,
                _ => return Err(self.last_error(guard)),
            }
        }
        if !stmt.readonly() {
            // SAFETY: engine lock held.
            let changes = unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) };
            result.changes = u64::try_from(changes).unwrap_or(0);
        }
        Ok(result)
    }

    /// Whether a transaction is open (`BEGIN` without `COMMIT`/`ROLLBACK` yet).
    pub fn in_transaction(&self) -> bool {
        let Ok(_guard) = engine::lock() else { return false };
        // SAFETY: engine lock held.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) == 0 }
    }

    /// Rowid of the last successful INSERT (`sqlite3_last_insert_rowid`).
    pub fn last_insert_rowid(&self) -> i64 {
        let Ok(_guard) = engine::lock() else { return 0 };
        // SAFETY: engine lock held.
        unsafe { ffi::sqlite3_last_insert_rowid(self.db.as_ptr()) }
    }

    /// Returns the pages written since the last capture and starts a new capture. If it
    /// fails (`SQLITE_NOMEM`), the marks are kept and the next capture includes them.
    ///
    /// Call between transactions: with a transaction open the file holds uncommitted pages,
    /// and this fails with `SQLITE_MISUSE`.
    pub fn take_changes(&mut self) -> Result<Changes, Error> {
        if self.in_transaction() {
            return Err(Error::new(
                ffi::SQLITE_MISUSE,
                "cannot capture changes inside a transaction",
            ));
        }
        let mut file = self.file.lock();
        let file_size = file.bytes.len() as u64;
        let page_size = header_page_size(&file.bytes);
        let ps = page_size as usize;
        let indices = file
            .dirty
            .pages(u64::from(page_size), file_size.div_ceil(u64::from(page_size)))
            .ok_or_else(|| Error::from_code(ffi::SQLITE_NOMEM))?;
        let mut pages = Vec::new();
        pages.try_reserve_exact(indices.len()).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
        for index in indices {
            let start = index as usize * ps;
            let data = &file.bytes[start..(start + ps).min(file.bytes.len())];
            let mut copy = Vec::new();
            copy.try_reserve_exact(data.len()).map_err(|_| Error::from_code(ffi::SQLITE_NOMEM))?;
            copy.extend_from_slice(data);
            pages.push((index, copy));
        }
        // Cleared only now: if a copy above failed, the marks stay for the next capture.
        file.dirty.clear();
        Ok(Changes { file_size, page_size, pages })
    }

    /// Starts (or stops) recording what writes to the database file overwrite, so they can
    /// be taken back ([`Database::take_undo`], [`Database::revert`]).
    pub fn record_undo(&mut self, on: bool) {
        let mut file = self.file.lock();
        file.undo = on.then(|| Undo::new(file.bytes.len() as u64));
    }

    /// What the writes since recording began (or since the last call) overwrote; recording
    /// goes on from here. `None` if not recording.
    pub fn take_undo(&mut self) -> Option<Undo> {
        let mut file = self.file.lock();
        let size = file.bytes.len() as u64;
        file.undo.as_mut().map(|u| core::mem::replace(u, Undo::new(size)))
    }

    /// Takes writes back: puts back what `undo` saved (the newest stretch first, when several
    /// are reverted). Recording restarts from the reverted contents.
    ///
    /// The connection then reads the file once (a read of the schema table), so it notices
    /// the file change counter went back ("Database File Format", §1.3.8) and drops its page
    /// cache and schema there and then. Without that read, pages applied next (another
    /// branch's update, which brings the counter back to the value the connection cached)
    /// would be shadowed by the cached pages of the writes taken back.
    pub fn revert(&mut self, undo: &Undo) -> Result<(), Error> {
        if self.in_transaction() {
            return Err(Error::new(ffi::SQLITE_MISUSE, "cannot revert inside a transaction"));
        }
        {
            let _guard = engine::lock()?;
            let mut file = self.file.lock();
            let old_len = file.bytes.len();
            if !undo.revert(&mut file.bytes) {
                return Err(Error::from_code(ffi::SQLITE_NOMEM));
            }
            file.mark_resized(old_len);
            for (offset, len) in undo.ranges() {
                file.mark_stale(offset, len);
            }
            let size = file.bytes.len() as u64;
            if let Some(u) = file.undo.as_mut() {
                *u = Undo::new(size);
            }
        }
        match self.run_privileged("SELECT count(*) FROM sqlite_schema", &[]).error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Forgets what was written since the last capture.
    pub fn discard_changes(&mut self) {
        self.file.lock().dirty.clear();
    }

    /// Writes pages captured on another database (a backup applying the primary's update):
    /// sets the file's size to `file_size`, then writes each page.
    ///
    /// Everything is checked first; on error nothing is changed. The connection sees the new
    /// contents at its next statement: SQLite notices the changed file change counter in the
    /// header ("Database File Format", §1.3.8) and drops its cache.
    pub fn apply(
        &mut self,
        file_size: u64,
        page_size: u32,
        pages: &[(u32, &[u8])],
    ) -> Result<(), Error> {
        let invalid = |m: String| Err(Error::new(ffi::SQLITE_CORRUPT, m));
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
            return invalid(format!("invalid page size {page_size}"));
        }
        let Ok(size) = usize::try_from(file_size) else {
            return invalid(format!("file size {file_size}"));
        };
        let ps = u64::from(page_size);
        let mut previous: Option<u32> = None;
        for (index, data) in pages {
            if previous.is_some_and(|p| p >= *index) {
                return invalid(format!("page {index} out of order"));
            }
            previous = Some(*index);
            let start = u64::from(*index) * ps;
            if start >= file_size {
                return invalid(format!("page {index} lies beyond the file size {file_size}"));
            }
            let expected = ps.min(file_size - start);
            if data.len() as u64 != expected {
                return invalid(format!(
                    "page {index} has {} bytes; expected {expected}",
                    data.len()
                ));
            }
        }
        if self.in_transaction() {
            return Err(Error::new(
                ffi::SQLITE_MISUSE,
                "cannot apply changes inside a transaction",
            ));
        }
        let _guard = engine::lock()?;
        let mut file = self.file.lock();
        {
            let FileData { bytes, undo, .. } = &mut *file;
            if let Some(undo) = undo {
                let old = bytes.len() as u64;
                let failed = (size < bytes.len()
                    && !undo.record(bytes, file_size, old - file_size))
                    || pages.iter().any(|(index, data)| {
                        !undo.record(bytes, u64::from(*index) * ps, data.len() as u64)
                    });
                if failed {
                    return Err(Error::from_code(ffi::SQLITE_NOMEM));
                }
            }
        }
        let old_len = file.bytes.len();
        if size > old_len {
            let grow = size - old_len;
            if !vfs::reserve_file(&mut file.bytes, grow) {
                return Err(Error::from_code(ffi::SQLITE_NOMEM));
            }
        }
        file.bytes.resize(size, 0);
        file.mark_resized(old_len);
        for (index, data) in pages {
            let start = *index as usize * page_size as usize;
            file.bytes[start..start + data.len()].copy_from_slice(data);
            file.mark_stale(start as u64, data.len() as u64);
        }
        Ok(())
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file.lock().bytes.len() as u64
    }

    /// Calls `f` with the database file's bytes (to hash it, or compare replicas).
    pub fn with_file<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let _guard = engine::lock();
        f(&self.file.lock().bytes)
    }

    /// Calls `f` with the database file's bytes and what changed in them since the last call
    /// (for a digest kept up to date incrementally), and starts noting changes anew.
    pub fn with_file_and_stale<R>(&self, f: impl FnOnce(&[u8], Stale) -> R) -> R {
        let _guard = engine::lock();
        let mut file = self.file.lock();
        let chunks = (file.bytes.len() as u64).div_ceil(DIGEST_CHUNK);
        // Out of memory listing them: as if everything changed.
        let stale = if file.stale_all {
            Stale::All
        } else {
            file.stale.pages(DIGEST_CHUNK, chunks).map_or(Stale::All, Stale::Chunks)
        };
        file.stale.clear();
        file.stale_all = false;
        f(&file.bytes, stale)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(_guard) = engine::lock() {
            // SAFETY: engine lock held; the handle is not used again.
            unsafe { ffi::sqlite3_close_v2(self.db.as_ptr()) };
        }
        vfs::remove_file(&self.name);
    }
}

/// The page size recorded in a database header (offset 16, big-endian; 1 means 65536), or
/// SQLite's default for a file too short to have a header.
/// The page size a database file's header records ("Database File Format" §1.3.2: the
/// big-endian u16 at offset 16, 1 meaning 65536); 4096 for a file without a valid header.
pub fn header_page_size(file: &[u8]) -> u32 {
    match file.get(16..18) {
        Some(&[hi, lo]) => match u16::from_be_bytes([hi, lo]) {
            1 => 65536,
            n if u32::from(n) >= MIN_PAGE_SIZE && n.is_power_of_two() => u32::from(n),
            _ => 4096,
        },
        _ => 4096,
    }
}

/// Progress handler: counts down the execution budget; a non-zero return interrupts.
unsafe extern "C" fn progress(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the connection's boxed Hooks (see `configure`).
    let budget = unsafe { &*arg.cast::<Hooks>() };
    let left = budget.remaining.get().saturating_sub(PROGRESS_PERIOD as u64);
    budget.remaining.set(left);
    c_int::from(left == 0)
}

/// Authorizer for [`OpenOptions::service_policy`] (see "Authorizer Action Codes" in
/// `sqlite3.h` for what `arg1` and `arg2` name per action).
unsafe extern "C" fn authorize(
    arg: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    _db: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: `arg` is the connection's boxed Hooks (see `open`); SQLite passes NULL or
    // NUL-terminated strings.
    let (hooks, arg1, arg2) = unsafe { (&*arg.cast::<Hooks>(), text(arg1), text(arg2)) };
    if hooks.privileged.get() {
        return 0;
    }
    let reserved = |name: Option<&[u8]>| {
        name.is_some_and(|n| {
            n.len() >= RESERVED_PREFIX.len()
                && n[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
        })
    };
    if action != ffi::SQLITE_FUNCTION && (reserved(arg1) || reserved(arg2)) {
        return ffi::SQLITE_DENY;
    }
    if action == ffi::SQLITE_PRAGMA && arg2.is_some() {
        let fixed: [&[u8]; 2] = [b"journal_mode", b"locking_mode"];
        if arg1.is_some_and(|name| fixed.iter().any(|f| name.eq_ignore_ascii_case(f))) {
            return ffi::SQLITE_DENY;
        }
    }
    0
}

/// The bytes of a C string from SQLite, if any.
///
/// # Safety
/// `p` is null or NUL-terminated and outlives the returned slice.
unsafe fn text<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: by the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}
