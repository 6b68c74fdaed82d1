//! Bad input gets a clear error and loses nothing: malformed SQL, oversized requests,
//! runaway queries, transactions left open, SQL that would escape replication, and corrupted,
//! truncated or inconsistent state updates handed to a backup.

mod common;

use common::Pair;
use sqlite_shim::{codes, Value};
use vpr_pal::{ApplyError, Service, ServiceOptions};
use vpr_proto::update::{PageWrite, StateUpdate};
use vpr_proto::DecodeError;

fn seeded_pair() -> Pair {
    let mut pair = Pair::new(&ServiceOptions::default());
    pair.ok("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    pair.ok("INSERT INTO t(v) VALUES ('a'), ('b'), ('c')");
    pair
}

#[test]
fn malformed_sql_is_an_error_and_changes_nothing() {
    let mut pair = seeded_pair();
    let before = pair.primary.digest();
    for sql in [
        "SELEC 1",
        "INSERT INTO nowhere VALUES (1)",
        "SELECT * FROM t WHERE",
        "\u{0}\u{1}garbage",
        "'",
    ] {
        let (reply, update) = pair.step(sql);
        let e = reply.error.unwrap_or_else(|| panic!("{sql:?} succeeded"));
        assert_eq!(e.primary_code(), codes::SQLITE_ERROR, "{sql:?}: {e}");
        assert!(update.is_empty(), "{sql:?} wrote pages");
    }
    assert_eq!(pair.primary.digest(), before);
}

#[test]
fn constraint_errors_keep_the_state() {
    let mut pair = seeded_pair();
    let before = pair.primary.digest();
    let (reply, update) = pair.step("INSERT INTO t(k, v) VALUES (1, 'dup')");
    let e = reply.error.expect("duplicate key accepted");
    assert_eq!(e.code, 1555, "{e}"); // SQLITE_CONSTRAINT_PRIMARYKEY
    assert!(update.is_empty());
    assert_eq!(pair.primary.digest(), before);
}

#[test]
fn statements_before_an_error_keep_their_effects() {
    let mut pair = seeded_pair();
    let (reply, update) = pair.step("INSERT INTO t(v) VALUES ('d'); INSERT INTO t(v) VALUES (NULL); INSERT INTO t(v) VALUES ('e')");
    assert_eq!(reply.results.len(), 1, "only the first statement completed");
    assert_eq!(reply.error.expect("NOT NULL violated").code, 1299); // SQLITE_CONSTRAINT_NOTNULL
    assert!(!update.is_empty(), "the first insert's pages must replicate");
    let (r, _) = pair.backup.execute("SELECT group_concat(v, '') FROM t", &[]);
    assert_eq!(r.results[0].rows[0][0], Value::from("abcd"));
}

#[test]
fn oversized_requests_are_refused() {
    let opts = ServiceOptions { max_sql_bytes: 4096, ..ServiceOptions::default() };
    let mut s = Service::new(&opts).expect("service");
    let long = format!("SELECT '{}'", "x".repeat(5000));
    let (reply, update) = s.execute(&long, &[]);
    assert_eq!(reply.error.expect("long SQL accepted").primary_code(), codes::SQLITE_TOOBIG);
    assert!(update.is_empty());
    let (reply, _) = s.execute("SELECT zeroblob(1000000000)", &[]);
    assert_eq!(reply.error.expect("1 GB blob accepted").primary_code(), codes::SQLITE_TOOBIG);
}

#[test]
fn runaway_queries_are_interrupted() {
    let opts = ServiceOptions { max_vm_steps: Some(1_000_000), ..ServiceOptions::default() };
    let mut s = Service::new(&opts).expect("service");
    let (reply, _) = s.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
        &[],
    );
    let e = reply.error.expect("infinite query finished");
    assert_eq!(e.primary_code(), codes::SQLITE_INTERRUPT, "{e}");
    assert!(e.message.contains("budget"), "{e}");
    // The budget is per request: the next one runs.
    let (reply, _) = s.execute("SELECT 1", &[]);
    assert!(reply.error.is_none());
}

#[test]
fn wrong_parameter_counts_are_errors() {
    let mut s = Service::new(&ServiceOptions::default()).expect("service");
    let (reply, _) = s.execute("SELECT ?1, ?2", &[Value::Integer(1)]);
    assert_eq!(reply.error.expect("too few").primary_code(), codes::SQLITE_RANGE);
    let (reply, _) = s.execute("SELECT 1", &[Value::Integer(1)]);
    assert_eq!(reply.error.expect("unused").primary_code(), codes::SQLITE_RANGE);
    let (reply, _) = s.execute("SELECT ?1 || ?2", &["a".into(), "b".into()]);
    assert_eq!(reply.results[0].rows[0][0], Value::from("ab"));
}

#[test]
fn a_transaction_left_open_is_rolled_back() {
    let mut pair = seeded_pair();
    let before = pair.primary.digest();
    let (reply, update) = pair.step("BEGIN; DELETE FROM t");
    assert!(reply.error.expect("open transaction accepted").message.contains("rolled back"));
    assert!(update.is_empty());
    assert_eq!(pair.primary.digest(), before);
    let (reply, _) = pair.step("BEGIN; INSERT INTO t(v) VALUES (NULL); COMMIT");
    assert!(reply.error.is_some());
    assert_eq!(pair.primary.digest(), before, "failed transaction must leave nothing");
    pair.ok("INSERT INTO t(v) VALUES ('next request works')");
}

#[test]
fn sql_that_would_escape_replication_is_refused() {
    let mut pair = seeded_pair();
    for sql in [
        "PRAGMA journal_mode = DELETE",
        "PRAGMA locking_mode = EXCLUSIVE",
        "ATTACH 'other.db' AS o",
    ] {
        let (reply, _) = pair.step(sql);
        assert!(reply.error.is_some(), "{sql:?} was allowed");
    }
    // Reading those settings is fine.
    let (reply, _) = pair.ok("PRAGMA journal_mode");
    assert_eq!(reply.results[0].rows[0][0], Value::from("memory"));
}

fn one_row_update() -> (Pair, Vec<u8>) {
    let mut pair = seeded_pair();
    let (_, update) = pair.primary.execute("UPDATE t SET v = 'changed' WHERE k = 2", &[]);
    assert!(!update.is_empty());
    (pair, update.encode())
}

#[test]
fn corrupted_updates_are_refused_and_change_nothing() {
    let (mut pair, bytes) = one_row_update();
    let before = pair.backup.digest();
    // Every bit of the header and digest, and a spread of bits through the pages.
    let bits = (0..56 * 8).chain((56 * 8..bytes.len() * 8).step_by(61));
    for bit in bits {
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(pair.backup.apply_encoded(&bad).is_err(), "flipped bit {bit} accepted");
    }
    assert_eq!(pair.backup.digest(), before);
    pair.backup.apply_encoded(&bytes).expect("the intact update applies");
    pair.assert_identical("the intact update");
}

#[test]
fn truncated_updates_are_refused_and_change_nothing() {
    let (mut pair, bytes) = one_row_update();
    let before = pair.backup.digest();
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let err = pair.backup.apply_encoded(&bytes[..len]).expect_err("truncated update accepted");
        assert!(matches!(err, ApplyError::Malformed(_)), "{err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        pair.backup.apply_encoded(&longer),
        Err(ApplyError::Malformed(DecodeError::TrailingBytes(1)))
    ));
    assert_eq!(pair.backup.digest(), before);
}

#[test]
fn inconsistent_updates_are_refused_and_change_nothing() {
    let (mut pair, _) = one_row_update();
    let before = pair.backup.digest();
    let size = pair.backup.file_size();
    let page = |index, len| PageWrite { index, data: vec![0xAB; len] };
    let bad = [
        StateUpdate { page_size: 1000, file_size: size, pages: vec![] },
        StateUpdate { page_size: 4096, file_size: size, pages: vec![page(1_000_000, 4096)] },
        StateUpdate { page_size: 4096, file_size: size, pages: vec![page(0, 100)] },
        StateUpdate { page_size: 4096, file_size: size, pages: vec![page(1, 4096), page(0, 4096)] },
        StateUpdate { page_size: 4096, file_size: size, pages: vec![page(0, 4096), page(0, 4096)] },
        StateUpdate { page_size: 4096, file_size: u64::MAX, pages: vec![] },
    ];
    for update in &bad {
        assert!(pair.backup.apply(update).is_err(), "accepted {update:?}");
    }
    assert_eq!(pair.backup.digest(), before);
}

/// A service with a 40-row table `big` and an empty table `log`, replicated to a backup.
fn big_pair() -> Pair {
    let mut pair = Pair::new(&ServiceOptions::default());
    pair.ok("CREATE TABLE big(k INTEGER PRIMARY KEY, v TEXT NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
         INSERT INTO big SELECT i, printf('row %d', i) FROM n;
         CREATE TABLE log(x)");
    pair
}

/// `reply` failed with SQLITE_TOOBIG naming the result budget.
fn assert_over_budget(sql: &str, reply: &vpr_pal::Reply) {
    let e = reply.error.as_ref().unwrap_or_else(|| panic!("{sql:?} answered in full"));
    assert_eq!(e.primary_code(), codes::SQLITE_TOOBIG, "{sql:?}: {e}");
    assert!(e.message.contains("max_result_bytes"), "{sql:?}: {e}");
}

/// Results too large for the result budget (a megabyte per row over 40 rows, a cross join
/// of 64,000 rows, a concatenation of big blobs, random blobs) are an SQL error, not an
/// allocation without bound (in the PAL image, an abort); they change nothing, and the next
/// request is served normally.
#[test]
fn huge_results_are_an_error_and_the_next_request_is_served() {
    let mut pair = big_pair();
    let before = pair.primary.digest();
    for sql in [
        "SELECT zeroblob(1000000) FROM big",
        "SELECT * FROM big AS a, big AS b, big AS c",
        "SELECT group_concat(zeroblob(100000)) FROM big",
        "SELECT randomblob(100000) FROM big",
        "SELECT k, randomblob(300) FROM big",
        "SELECT 1; SELECT zeroblob(1000000) FROM big",
    ] {
        let (reply, update) = pair.step(sql);
        assert_over_budget(sql, &reply);
        assert!(update.is_empty(), "{sql:?} wrote pages");
        assert_eq!(pair.primary.digest(), before, "{sql:?} changed the database");
        let (next, _) = pair.ok("SELECT count(*), max(v) FROM big");
        assert_eq!(next.results[0].rows[0], [Value::Integer(40), Value::from("row 9")]);
    }
    // The statement before the one over budget completed and is reported.
    let (reply, _) = pair.step("SELECT 1; SELECT zeroblob(1000000) FROM big");
    assert_eq!(reply.results.len(), 1);
}

/// A write whose returned rows are over budget is rolled back with them (SQLite makes a
/// RETURNING statement's changes at its first step): the request changes nothing, alone or
/// in a transaction. Statements before it keep their effects, as at any error.
#[test]
fn a_write_whose_results_are_too_big_changes_nothing() {
    let mut pair = big_pair();
    let before = pair.primary.digest();
    for sql in [
        "INSERT INTO log SELECT randomblob(1000) FROM big RETURNING *",
        "UPDATE big SET v = v || '!' RETURNING zeroblob(100000)",
        "DELETE FROM big RETURNING zeroblob(100000)",
        "BEGIN; INSERT INTO log VALUES (1); SELECT zeroblob(1000000) FROM big; COMMIT",
        "BEGIN; INSERT INTO log VALUES (1); DELETE FROM big RETURNING randomblob(1000); COMMIT",
    ] {
        let (reply, update) = pair.step(sql);
        assert_over_budget(sql, &reply);
        assert!(update.is_empty(), "{sql:?} wrote pages");
        assert_eq!(pair.primary.digest(), before, "{sql:?} changed the database");
        let (next, _) = pair.ok("SELECT count(*) FROM log; SELECT count(*), max(v) FROM big");
        assert_eq!(next.results[0].rows[0], [Value::Integer(0)], "{sql:?}");
        assert_eq!(next.results[1].rows[0], [Value::Integer(40), Value::from("row 9")]);
    }
    // Within budget, a RETURNING statement commits as usual and leaves no transaction open.
    let (reply, update) = pair.ok("INSERT INTO log VALUES (7), (8) RETURNING x");
    assert_eq!(reply.results[0].rows, [[Value::Integer(7)], [Value::Integer(8)]]);
    assert_eq!(reply.results[0].changes, 2);
    assert!(!update.is_empty());
    // A statement before the one over budget keeps its effect, as at any other error.
    let (reply, update) =
        pair.step("INSERT INTO log VALUES (9); SELECT zeroblob(1000000) FROM big");
    assert_over_budget("insert, then too much", &reply);
    assert!(!update.is_empty());
    let (log, _) = pair.ok("SELECT group_concat(x) FROM log");
    assert_eq!(log.results[0].rows[0], [Value::from("7,8,9")]);
}

/// The budget counts exactly what `sqlite_shim::budget::cost` says: results that cost the
/// budget are answered, one byte less is an error; it can be set per service.
#[test]
fn the_result_budget_is_exact_and_settable() {
    let mut s = Service::new(&ServiceOptions::default()).expect("service");
    assert_eq!(s.max_result_bytes(), Some(vpr_pal::service::DEFAULT_MAX_RESULT_BYTES));
    s.set_max_result_bytes(None);
    let sql =
        "SELECT 'a' AS name, x'0102', 3, 4.5, NULL UNION ALL SELECT 'bcd', zeroblob(9), 0, 0, 0";
    let (reply, _) = s.execute(sql, &[]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    let cost = sqlite_shim::budget::cost(&reply.results);
    s.set_max_result_bytes(Some(cost));
    let (exact, _) = s.execute(sql, &[]);
    assert_eq!(exact, reply);
    s.set_max_result_bytes(Some(cost - 1));
    let (over, _) = s.execute(sql, &[]);
    assert_over_budget(sql, &over);
    // A megabyte per row over 40 rows, with a budget that allows it.
    s.set_max_result_bytes(Some(64 << 20));
    let (reply, _) = s.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
         SELECT zeroblob(1000000) FROM n",
        &[],
    );
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(reply.results[0].rows.len(), 40);
}

/// Through the Manager (thesis Fig 5.4): a request whose results are over budget gets a
/// verified reply carrying the SQL error, the replicas stay identical, and the next request
/// (also in the same batch) is served.
#[test]
fn fig_5_4_a_huge_result_is_an_error_reply_and_the_group_goes_on() {
    use common::cluster::Cluster;
    let mut c = Cluster::form(3);
    let mut client = c.client();
    let setup = client.request(
        String::from(
            "CREATE TABLE big(k INTEGER PRIMARY KEY);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
             INSERT INTO big SELECT i FROM n",
        ),
        vec![],
    );
    c.submit(vec![setup.clone()]);
    let out = client.verify(&setup, c.reply_to(&setup).expect("reply")).expect("verifies");
    assert!(out.error.is_none(), "{:?}", out.error);
    let huge = client.request(String::from("SELECT zeroblob(1000000) FROM big"), vec![]);
    let write = client.request(
        String::from("INSERT INTO big SELECT k + 100 FROM big RETURNING zeroblob(100000)"),
        vec![],
    );
    let next = client.request(String::from("SELECT count(*) FROM big"), vec![]);
    c.submit(vec![huge.clone(), write.clone(), next.clone()]);
    for request in [&huge, &write] {
        let out = client.verify(request, c.reply_to(request).expect("reply")).expect("verifies");
        let e = out.error.as_ref().expect("an error");
        assert_eq!(e.code & 0xff, codes::SQLITE_TOOBIG, "{e:?}");
    }
    let out = client.verify(&next, c.reply_to(&next).expect("reply")).expect("verifies");
    assert_eq!(out.results[0].rows[0], [vpr_proto::msg::Value::Integer(40)]);
    assert!(c.refused.is_empty(), "{:?}", c.refused);
    let d = c.digests();
    assert!(d.iter().all(|x| *x == d[0]), "replicas diverged");
}
