//! The shim's SQLite against stock SQLite, statement kind by statement kind, and the cost of
//! replicating a transaction.
//!
//! Both engines are the same SQLite release (3.54.1): `sqlite-shim` compiles it freestanding
//! with an in-memory, page-tracking VFS; `rusqlite` (bundled) compiles it as usual and opens
//! `:memory:`. Each group runs the two side by side in one process, so their ratio is
//! meaningful even when absolute times drift between machines or runs. Both sides do the same
//! work per call: prepare without a statement cache (the shim has none, so rusqlite's
//! `Connection::execute`/`query_row` are used, not `prepare_cached`), bind, step, read values
//! into owned Rust values, finalize.
//!
//! Groups:
//! - `insert_autocommit`: one parameterised single-row `INSERT` in autocommit mode (the shim
//!   then forgets its dirty-page marks, so capture is not measured here);
//! - `point_select`: `SELECT v FROM kv WHERE k = ?1` on a 10,000-row table, cycling the key;
//! - `txn_1000_rows`: `BEGIN`, 1000 single-row `INSERT`s, `COMMIT`, as 1002 calls on both
//!   sides, on a fresh database each iteration (set-up not timed);
//! - `update_capture_apply`: replication per transaction: executing through
//!   `vpr_pal::Service` (which captures the written pages) against the bare shim; and, for the
//!   state update of a 1-row insert and of a 1000-row transaction, encoding it, decoding it
//!   and applying it at a backup;
//! - `pal_commands`: the statements the hypervisor's `sql_pal_cost` self-test times inside the
//!   PAL image (a point `SELECT` by key and a one-row `INSERT`, on a 1,000-row table), here
//!   as the simulation backend runs them: the `pal_io` command decoded, `Service::execute`
//!   with capture, the state update encoded; and an empty input refused. The PAL under the
//!   hypervisor does the same work plus the world switch and the outcome's encoding.
//!
//! - `digest_after_write`: a one-row `INSERT` then the database digest, on a database of
//!   about 64 MiB (1,000,000 rows): the incremental Merkle digest `Service::digest` keeps,
//!   against hashing the whole file after the same insert (the Merkle reference
//!   `vpr_pal::merkle::digest_of`, and plain SHA-256 of the file, what the digest was before;
//!   both include a copy of the file, a few ms of their ~100).
//!
//! Target: the shim within 1.3x of rusqlite for each statement kind (the first three groups).
//!
//! Run with `cargo bench -p vpr-tests --bench sqlite` (add `-- <filter>` to pick groups, e.g.
//! `-- point_select`). The whole run takes a minute or two.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rusqlite::Connection;
use sqlite_shim::{Database, OpenOptions, Value};
use vpr_pal::{Service, ServiceOptions};
use vpr_proto::update::StateUpdate;

/// Rows in the tables that reads (and the capture benchmarks) run against.
const ROWS: i64 = 10_000;
/// Rows inserted by the transaction benchmarks.
const TXN_ROWS: usize = 1000;

const CREATE: &str = "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)";
const INSERT: &str = "INSERT INTO kv(v) VALUES (?1)";
const SELECT: &str = "SELECT v FROM kv WHERE k = ?1";
/// Fills `kv` with keys `1..=ROWS` and values `value-<k>`.
const POPULATE: &str = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s \
                        WHERE i < 10000) INSERT INTO kv(k, v) SELECT i, 'value-' || i FROM s";

/// A shim database with the empty `kv` table, its set-up not captured.
fn shim_db() -> Database {
    let mut db = Database::open(&OpenOptions::default()).expect("open shim database");
    db.execute(CREATE, &[]).expect("create table");
    db.discard_changes();
    db
}

/// A shim database with `ROWS` rows in `kv`.
fn shim_db_populated() -> Database {
    let mut db = shim_db();
    db.execute(POPULATE, &[]).expect("populate");
    db.discard_changes();
    db
}

/// A stock SQLite in-memory database with the empty `kv` table, journal in memory like the
/// shim's.
fn rusqlite_db() -> Connection {
    let conn = Connection::open_in_memory().expect("open rusqlite database");
    let mode: String =
        conn.query_row("PRAGMA journal_mode=MEMORY", [], |r| r.get(0)).expect("set journal mode");
    assert_eq!(mode, "memory");
    conn.execute(CREATE, []).expect("create table");
    conn
}

/// A stock SQLite database with `ROWS` rows in `kv`.
fn rusqlite_db_populated() -> Connection {
    let conn = rusqlite_db();
    conn.execute(POPULATE, []).expect("populate");
    conn
}

/// A service with the `kv` table and `ROWS` rows, and the state update that built it.
fn service_populated() -> (Service, StateUpdate) {
    let mut service = Service::new(&ServiceOptions::default()).expect("open service");
    let sql = format!("{CREATE}; {POPULATE}");
    let (reply, update) = service.execute(&sql, &[]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    (service, update)
}

/// The next key of a cycle through `1..=ROWS`.
fn next_key(k: &mut i64) -> i64 {
    *k = *k % ROWS + 1;
    *k
}

fn insert_autocommit(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_autocommit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("shim", |b| {
        let mut db = shim_db();
        let params = [Value::from("value")];
        b.iter(|| {
            let results = db.execute(INSERT, &params).expect("insert");
            db.discard_changes();
            black_box(results)
        });
    });
    group.bench_function("rusqlite", |b| {
        let conn = rusqlite_db();
        b.iter(|| black_box(conn.execute(INSERT, ["value"]).expect("insert")));
    });
    group.finish();
}

fn point_select(c: &mut Criterion) {
    let mut group = c.benchmark_group("point_select");
    group.throughput(Throughput::Elements(1));
    group.bench_function("shim", |b| {
        let mut db = shim_db_populated();
        let mut k = 0;
        b.iter(|| {
            let mut results =
                db.execute(SELECT, &[Value::Integer(next_key(&mut k))]).expect("select");
            let value = results.pop().and_then(|mut r| r.rows.pop()).and_then(|mut row| row.pop());
            black_box(value.expect("a row"))
        });
    });
    group.bench_function("rusqlite", |b| {
        let conn = rusqlite_db_populated();
        let mut k = 0;
        b.iter(|| {
            let v: String =
                conn.query_row(SELECT, [next_key(&mut k)], |r| r.get(0)).expect("select");
            black_box(v)
        });
    });
    group.finish();
}

fn txn_1000_rows(c: &mut Criterion) {
    let mut group = c.benchmark_group("txn_1000_rows");
    group.throughput(Throughput::Elements(TXN_ROWS as u64));
    group.bench_function("shim", |b| {
        let params = [Value::from("value")];
        b.iter_batched(
            shim_db,
            |mut db| {
                db.execute("BEGIN", &[]).expect("begin");
                for _ in 0..TXN_ROWS {
                    black_box(db.execute(INSERT, &params).expect("insert"));
                }
                db.execute("COMMIT", &[]).expect("commit");
                db.discard_changes();
                db
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("rusqlite", |b| {
        b.iter_batched(
            rusqlite_db,
            |conn| {
                conn.execute("BEGIN", []).expect("begin");
                for _ in 0..TXN_ROWS {
                    black_box(conn.execute(INSERT, ["value"]).expect("insert"));
                }
                conn.execute("COMMIT", []).expect("commit");
                conn
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn update_capture_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("update_capture_apply");

    // (a) What capturing the written pages adds to a 1-row insert on a 10,000-row table.
    group.throughput(Throughput::Elements(1));
    group.bench_function("service_execute_with_capture", |b| {
        let (mut service, _) = service_populated();
        let params = [Value::from("value")];
        b.iter(|| {
            let (reply, update) = service.execute(INSERT, &params);
            debug_assert!(reply.error.is_none());
            black_box((reply, update))
        });
    });
    group.bench_function("shim_execute_take_changes", |b| {
        let mut db = shim_db_populated();
        let params = [Value::from("value")];
        b.iter(|| {
            let results = db.execute(INSERT, &params).expect("insert");
            black_box((results, db.take_changes().expect("capture")))
        });
    });
    group.bench_function("shim_execute_only", |b| {
        let mut db = shim_db_populated();
        let params = [Value::from("value")];
        b.iter(|| {
            let results = db.execute(INSERT, &params).expect("insert");
            db.discard_changes();
            black_box(results)
        });
    });

    // (b), (c) Shipping an update: encode at the primary, decode and apply at a backup.
    let (mut primary, initial) = service_populated();
    let mut backup = Service::new(&ServiceOptions::default()).expect("open backup");
    backup.apply(&initial).expect("apply initial state");

    let (reply, one_row) = primary.execute(INSERT, &[Value::from("value")]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    // One statement (a request's results, one per statement, must fit the result budget).
    let txn = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {TXN_ROWS}) \
         INSERT INTO kv(v) SELECT 'value' FROM n"
    );
    let (reply, many_rows) = primary.execute(&txn, &[]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    // Bring the backup up to date first; re-applying an update below changes nothing.
    backup.apply(&one_row).expect("apply 1-row update");
    backup.apply(&many_rows).expect("apply 1000-row update");

    for (name, update) in [("1row", &one_row), ("1000rows", &many_rows)] {
        let encoded_len = update.encode().len();
        eprintln!(
            "update_capture_apply: the {name} update writes {} pages of {} bytes; encoded {} bytes",
            update.pages.len(),
            update.page_size,
            encoded_len
        );
        group.throughput(Throughput::Bytes(encoded_len as u64));
        group.bench_function(format!("encode_decode_apply_{name}"), |b| {
            b.iter(|| {
                let bytes = update.encode();
                let decoded = StateUpdate::decode(&bytes).expect("decode");
                backup.apply(&decoded).expect("apply");
            });
        });
    }
    // The 1000-row update's stages apart.
    let encoded = many_rows.encode();
    group.bench_function("encode_1000rows", |b| b.iter(|| black_box(many_rows.encode())));
    group.bench_function("decode_1000rows", |b| {
        b.iter(|| black_box(StateUpdate::decode(&encoded).expect("decode")));
    });
    group.bench_function("apply_1000rows", |b| {
        b.iter(|| backup.apply(&many_rows).expect("apply"));
    });
    group.finish();
    assert_eq!(backup.digest(), primary.digest(), "the backup diverged from the primary");
}

fn pal_commands(c: &mut Criterion) {
    use vpr_proto::msg::Value as WireValue;
    use vpr_proto::pal_io::{Command, Outcome};

    /// Decodes a command and runs it as the PAL image's `Execute` does (results are not
    /// converted to wire values: a few hundred nanoseconds at most for one row).
    fn run(service: &mut Service, input: &[u8]) -> Vec<u8> {
        match Command::decode(input) {
            Ok(Command::Execute { sql, params }) => {
                let params: Vec<Value> = params
                    .into_iter()
                    .map(|v| match v {
                        WireValue::Integer(i) => Value::Integer(i),
                        WireValue::Text(t) => Value::Text(t),
                        _ => Value::Null,
                    })
                    .collect();
                let (reply, update) = service.execute(&sql, &params);
                black_box(reply);
                update.encode()
            }
            Ok(_) => Vec::new(),
            Err(e) => Outcome::refused(&e.to_string()).encode(),
        }
    }

    let mut group = c.benchmark_group("pal_commands");
    group.throughput(Throughput::Elements(1));
    let mut service = Service::new(&ServiceOptions::default()).expect("service");
    let (reply, _) = service.execute(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
         INSERT INTO t SELECT i, 'value ' || i FROM n",
        &[],
    );
    assert!(reply.error.is_none(), "{:?}", reply.error);
    let select = Command::Execute {
        sql: String::from("SELECT v FROM t WHERE k = ?"),
        params: vec![WireValue::Integer(500)],
    }
    .encode();
    let insert = Command::Execute {
        sql: String::from("INSERT INTO t (v) VALUES (?)"),
        params: vec![WireValue::Integer(1)],
    }
    .encode();
    group.bench_function("empty_input", |b| b.iter(|| black_box(run(&mut service, &[]))));
    group.bench_function("point_select", |b| b.iter(|| black_box(run(&mut service, &select))));
    group.bench_function("insert_one_row", |b| b.iter(|| black_box(run(&mut service, &insert))));
    group.finish();
}

/// A one-row insert and then the database's digest, three ways, on a large database.
fn digest_after_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("digest_after_write");
    let mut service = Service::new(&ServiceOptions::default()).expect("service");
    let (reply, _) = service.execute(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
         INSERT INTO t SELECT i, printf('%040d', i) FROM n",
        &[],
    );
    assert!(reply.error.is_none(), "{:?}", reply.error);
    let mib = service.file_size() >> 20;
    let _ = service.digest(); // the tree, built once
    let params = [Value::from("value")];
    group.bench_function(format!("incremental_{mib}_MiB"), |b| {
        b.iter(|| {
            black_box(service.execute(INSERT_T, &params));
            black_box(service.digest())
        });
    });
    group.bench_function(format!("merkle_from_scratch_{mib}_MiB"), |b| {
        b.iter(|| {
            black_box(service.execute(INSERT_T, &params));
            black_box(vpr_pal::merkle::digest_of(&service.file_image()))
        });
    });
    group.bench_function(format!("sha256_of_the_file_{mib}_MiB"), |b| {
        b.iter(|| {
            black_box(service.execute(INSERT_T, &params));
            black_box(vpr_proto::digest::Digest::of(&service.file_image()))
        });
    });
    group.finish();
}

/// The insert `digest_after_write` repeats.
const INSERT_T: &str = "INSERT INTO t (v) VALUES (?1)";

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = insert_autocommit, point_select, txn_1000_rows, update_capture_apply, pal_commands,
        digest_after_write
}
criterion_main!(benches);
