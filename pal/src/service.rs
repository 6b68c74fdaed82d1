//! The replicated SQL service: execute at the primary, apply at the backups.
//!
//! A request is a SQL text of one or more statements. The primary runs it and ships the
//! resulting *state update*, the pages of the database file the request wrote, with the file's
//! new size, instead of the request itself (thesis §5.1: backups never re-execute, so
//! non-determinism such as `random()` or `datetime('now')` needs no special handling). A
//! backup checks the update and writes the pages; its file is then byte-identical to the
//! primary's, which [`Service::digest`] lets anyone compare.
//!
//! Request semantics: statements run in order and stop at the first error (as
//! `sqlite3_exec`); the reply lists what each completed statement produced and the error.
//! A request may use `BEGIN ... COMMIT`, but may not leave a transaction open: one still open
//! at the end is rolled back and reported as an error, so every update is a committed state.
//! A request that wrote nothing (a read, or one whose statements all failed) yields an empty
//! update.
//!
//! Result budget: the results of one request may take at most
//! [`Service::max_result_bytes`] bytes ([`DEFAULT_MAX_RESULT_BYTES`] unless set), counted as
//! `sqlite_shim::budget` says (value bytes plus a fixed overhead per value, row, column and
//! statement; at least their wire encoding). A request whose results would take more stops
//! at that statement with `SQLITE_TOOBIG`, as at any other error: the statements before it
//! keep their effects, the failing one keeps none (a read changes nothing; a statement that
//! writes and returns rows is rolled back). Results are collected with fallible allocations:
//! running out of memory is `SQLITE_NOMEM`, never a crash.

use alloc::vec::Vec;
use core::cell::RefCell;

use sqlite_shim::{codes, Database, Error, OpenOptions, StatementResult, Undo, Value};
use vpr_proto::digest::Digest;

use crate::merkle::Tree;
use vpr_proto::update::{PageWrite, StateUpdate};
use vpr_proto::wire::DecodeError;

/// The result budget of one request unless [`Service::set_max_result_bytes`] says otherwise:
/// 8 KiB, so that the replies to a whole batch fit the PAL's output (`pal_io::MAX_LEN`,
/// 4 MiB) with room left for its state update. A batch of the hosts' default size (256
/// requests) has replies of at most 256 × (8 KiB of results + [`MAX_REPLY_OVERHEAD`] of
/// reply fields and a longest error message) ≈ 3.05 MiB, which leaves about 0.95 MiB for
/// the update and the other effects. (A batch of `vpr_proto::msg::MAX_BATCH` = 1024
/// requests, each with a longest error message, fills the output without any rows: batch
/// size bounds this as much as the budget does.)
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 8 << 10;

/// Most bytes a reply's effect (`vpr_proto::tcc::Effect::Reply`) takes in the PAL's output
/// besides its statement results: client, sequence number, request digest, view, state, tag, the blinding
/// option, the counts, and an error whose message has the longest length allowed
/// (`vpr_proto::msg::MAX_MESSAGE_BYTES`). Checked against the encoding in this module's
/// tests.
pub const MAX_REPLY_OVERHEAD: usize = 4232;

/// Settings of the service's database.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Page size of the new database (SQLite's default, 4096, if `None`).
    pub page_size: Option<u32>,
    /// Longest request text, in bytes.
    pub max_sql_bytes: u32,
    /// Virtual machine instructions one request may run before it is interrupted.
    pub max_vm_steps: Option<u64>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions { page_size: None, max_sql_bytes: 1 << 20, max_vm_steps: Some(1 << 32) }
    }
}

/// The primary's answer to a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// One result per statement that completed, in order.
    pub results: Vec<StatementResult>,
    /// The error that stopped the request, if one did.
    pub error: Option<Error>,
    /// Whether the request completed and every statement in it was read-only: run again
    /// later, it cannot write (the exactly-once table need not remember it).
    pub read_only: bool,
}

/// Why a backup refused a state update. The database is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The bytes are not a well-formed update (truncated, corrupted, out of bounds...).
    #[error("malformed state update: {0}")]
    Malformed(#[from] DecodeError),
    /// The engine refused the pages (or could not allocate room for them).
    #[error("state update refused by the database engine: {0}")]
    Engine(Error),
}

/// One replica's copy of the database and the operations the protocol performs on it.
#[derive(Debug)]
pub struct Service {
    db: Database,
    /// The database digest's tree, brought up to date by [`Service::digest`].
    tree: RefCell<Tree>,
}

impl Service {
    /// Creates a service over a new, empty database.
    pub fn new(options: &ServiceOptions) -> Result<Service, Error> {
        let db = Database::open(&OpenOptions {
            page_size: options.page_size,
            max_sql_bytes: options.max_sql_bytes,
            max_vm_steps: options.max_vm_steps,
            max_result_bytes: Some(DEFAULT_MAX_RESULT_BYTES),
            service_policy: true,
            ..OpenOptions::default()
        })?;
        Ok(Service { db, tree: RefCell::new(Tree::default()) })
    }

    /// The result budget of one request, in bytes (see the module docs); `None` if
    /// unlimited.
    pub fn max_result_bytes(&self) -> Option<u64> {
        self.db.max_result_bytes()
    }

    /// Sets the result budget of later requests (the service's own SQL,
    /// [`Service::run_internal`], has none).
    pub fn set_max_result_bytes(&mut self, max: Option<u64>) {
        self.db.set_max_result_bytes(max);
    }

    /// Executes a request (primary, thesis Fig 5.4 "execution 1") and returns the reply and
    /// the state update that carries its effects to the backups.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> (Reply, StateUpdate) {
        let mut reply = self.run(sql, params);
        match self.capture() {
            Ok(update) => (reply, update),
            Err(e) => {
                // Capture failed (out of memory): the pages stay marked, so the next request's
                // update still carries them; this reply reports the failure.
                reply.error = Some(e);
                (reply, StateUpdate::new(4096, self.db.file_size()))
            }
        }
    }

    /// Runs a request without capturing its pages (several requests can share one update:
    /// see [`Service::capture`]).
    pub fn run(&mut self, sql: &str, params: &[Value]) -> Reply {
        let run = self.db.run(sql, params);
        let mut reply = Reply { results: run.results, error: run.error, read_only: run.read_only };
        if self.db.in_transaction() {
            reply.read_only = false;
            // Roll back whatever the request left open: updates carry committed states only.
            let rollback = self.db.execute("ROLLBACK", &[]);
            if reply.error.is_none() {
                reply.error = Some(Error::new(
                    codes::SQLITE_ERROR,
                    "the request left a transaction open; it was rolled back",
                ));
            }
            if let Err(e) = rollback {
                reply.error = Some(e);
            }
        }
        reply
    }

    /// Runs the service's own SQL, which may use the reserved `vpr_` tables that client SQL
    /// cannot touch (see `sqlite_shim::RESERVED_PREFIX`).
    pub fn run_internal(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<StatementResult>, Error> {
        let run = self.db.run_privileged(sql, params);
        match run.error {
            Some(e) => Err(e),
            None => Ok(run.results),
        }
    }

    /// A mark that changes whenever the database file is written: a request that leaves it
    /// unchanged wrote nothing (a read, decided after the fact).
    pub fn write_mark(&self) -> u64 {
        self.db.write_count()
    }

    /// Whether pages were written since the last capture (a request that wrote nothing is a
    /// read, decided after the fact).
    pub fn wrote(&self) -> bool {
        self.db.has_changes()
    }

    /// The pages written since the last capture, as a state update.
    pub fn capture(&mut self) -> Result<StateUpdate, Error> {
        let changes = self.db.take_changes()?;
        let pages =
            changes.pages.into_iter().map(|(index, data)| PageWrite { index, data }).collect();
        Ok(StateUpdate { page_size: changes.page_size, file_size: changes.file_size, pages })
    }

    /// Checks and applies a state update made by a primary (backup). On error the database
    /// is unchanged.
    pub fn apply(&mut self, update: &StateUpdate) -> Result<(), ApplyError> {
        update.validate()?;
        let pages: Vec<(u32, &[u8])> =
            update.pages.iter().map(|p| (p.index, p.data.as_slice())).collect();
        self.db.apply(update.file_size, update.page_size, &pages).map_err(ApplyError::Engine)
    }

    /// Decodes (checking length, bounds and the content digest) and applies an encoded state
    /// update. On error the database is unchanged.
    pub fn apply_encoded(&mut self, bytes: &[u8]) -> Result<(), ApplyError> {
        let update = StateUpdate::decode(bytes)?;
        self.apply(&update)
    }

    /// The database file's digest (`merkle`: a Merkle root over its 4 KiB pieces, with its
    /// length): equal on replicas that applied the same updates. It rehashes only what changed
    /// since the last digest. Debug builds (the tests) check it against a digest of the whole
    /// file computed from scratch.
    pub fn digest(&self) -> Digest {
        self.db.with_file_and_stale(|bytes, stale| {
            let digest = self.tree.borrow_mut().digest(bytes, stale);
            debug_assert_eq!(digest, crate::merkle::digest_of(bytes), "incremental digest");
            digest
        })
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        self.db.file_size()
    }

    /// A copy of the database file (for tests and state transfer).
    pub fn file_image(&self) -> Vec<u8> {
        self.db.with_file(<[u8]>::to_vec)
    }

    /// The whole database file as one state update (every page): what state transfer ships.
    pub fn snapshot(&self) -> StateUpdate {
        self.db.with_file(whole_file)
    }

    /// The snapshot of the state before the writes `undos` record (newest first), reverted
    /// on a copy; `None` if out of memory.
    pub fn snapshot_before<'a>(
        &self,
        undos: impl IntoIterator<Item = &'a Undo>,
    ) -> Option<StateUpdate> {
        let mut image = self.file_image();
        for undo in undos {
            if !undo.revert(&mut image) {
                return None;
            }
        }
        Some(whole_file(&image))
    }

    /// Starts or stops keeping undo records of what writes overwrite (a primary keeps them
    /// for its updates in flight).
    pub fn keep_undo(&mut self, on: bool) {
        self.db.record_undo(on);
    }

    /// What the writes since the last call overwrote, if undo records are kept.
    pub fn take_undo(&mut self) -> Option<Undo> {
        self.db.take_undo()
    }

    /// Forgets which pages were written since the last capture (after [`Service::revert`]
    /// took them back).
    pub fn discard_changes(&mut self) {
        self.db.discard_changes();
    }

    /// Takes writes back (see [`Service::keep_undo`]).
    pub fn revert(&mut self, undo: &Undo) -> Result<(), Error> {
        self.db.revert(undo)
    }

    /// A new service whose database is exactly `snapshot` (as made by [`Service::snapshot`]),
    /// on a fresh connection, so no page cached from the state it replaces survives.
    pub fn from_snapshot(
        options: &ServiceOptions,
        snapshot: &StateUpdate,
    ) -> Result<Service, ApplyError> {
        snapshot.validate()?;
        let complete = snapshot.pages.len() as u64
            == vpr_proto::update::pages_in_file(snapshot.page_size, snapshot.file_size);
        if !complete {
            return Err(ApplyError::Engine(Error::new(
                codes::SQLITE_CORRUPT,
                "a snapshot must hold every page of the file",
            )));
        }
        let mut service = Service::new(options).map_err(ApplyError::Engine)?;
        service.apply(snapshot)?;
        Ok(service)
    }
}

/// A whole database file as one state update.
fn whole_file(file: &[u8]) -> StateUpdate {
    let page_size = sqlite_shim::header_page_size(file);
    let pages = file
        .chunks(page_size as usize)
        .zip(0u32..)
        .map(|(data, index)| PageWrite { index, data: data.to_vec() })
        .collect();
    StateUpdate { page_size, file_size: file.len() as u64, pages }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use vpr_proto::msg::{self, Wire};
    use vpr_proto::pal_io;
    use vpr_proto::tcc::Effect;

    /// A reply carrying `results` and an error with the longest message.
    fn reply_effect(results: Vec<msg::StatementResult>) -> Effect {
        let error = msg::SqlError {
            code: i32::MAX,
            message: String::from_utf8(vec![b'e'; msg::MAX_MESSAGE_BYTES]).unwrap_or_default(),
        };
        let outcome = msg::Outcome { results, error: Some(error) };
        let reply = msg::Reply {
            client: [1; 16],
            seq: 2,
            request: vpr_proto::digest::Digest([6; 32]),
            view: 3,
            state: 4,
            outcome,
            tag: [5; 32],
        };
        Effect::Reply { reply, blinded_until: Some(u64::MAX) }
    }

    #[test]
    fn a_reply_without_results_takes_at_most_the_reply_overhead() {
        let len = reply_effect(Vec::new()).encoded_len();
        assert!(len <= MAX_REPLY_OVERHEAD, "{len}");
        assert!(MAX_REPLY_OVERHEAD - len < 64, "the bound is loose: {len}");
    }

    #[test]
    fn the_error_messages_limits_agree() {
        assert_eq!(sqlite_shim::MAX_MESSAGE_BYTES, msg::MAX_MESSAGE_BYTES);
    }

    /// The default budget's reason (see [`DEFAULT_MAX_RESULT_BYTES`]): 256 replies whose
    /// results fill the budget, each with a longest error message, fit the output with
    /// 0.9 MiB to spare.
    #[test]
    fn a_default_batch_of_full_replies_fits_the_output() {
        // Results whose wire encoding is as long as the budget allows: one blob, its
        // length chosen so the shim's count is exactly the budget.
        let budget = usize::try_from(DEFAULT_MAX_RESULT_BYTES).expect("8 KiB");
        let blob = DEFAULT_MAX_RESULT_BYTES
            - sqlite_shim::budget::STATEMENT
            - sqlite_shim::budget::COLUMN
            - 1
            - sqlite_shim::budget::ROW
            - sqlite_shim::budget::VALUE;
        let blob = usize::try_from(blob).expect("below 8 KiB");
        let shim = sqlite_shim::StatementResult {
            columns: vec![String::from("b")],
            rows: vec![vec![sqlite_shim::Value::Blob(vec![0; blob])]],
            changes: 0,
        };
        assert_eq!(
            sqlite_shim::budget::cost(core::slice::from_ref(&shim)),
            DEFAULT_MAX_RESULT_BYTES
        );
        let wire = msg::StatementResult {
            columns: shim.columns.clone(),
            rows: vec![vec![msg::Value::Blob(vec![0; blob])]],
            changes: 0,
        };
        assert!(wire.encoded_len() <= budget);
        let effects = vec![reply_effect(vec![wire]); 256];
        let len = pal_io::effects_encoded_len(&effects);
        assert!(len + (900 << 10) <= pal_io::MAX_LEN, "{len}");
        let per_reply = budget + MAX_REPLY_OVERHEAD;
        assert!(len <= pal_io::HEADER_LEN + 4 + 256 * per_reply);
    }
}
