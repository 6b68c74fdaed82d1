//! Differential tests: the freestanding engine (sqlite-shim) against stock SQLite (rusqlite,
//! bundled, the same 3.54.1 release) on the SQL corpus in `tests/corpus/`.
//!
//! Each corpus file runs on a fresh database in each engine, entry by entry (entries are
//! separated by `----` lines; an entry may hold several statements). For every statement the
//! column names, the values with their storage classes (REALs compared bit for bit) and the
//! change count must match; an error must carry the same extended code and message. Entries
//! marked `-- expect error` must fail, and only those, so a typo cannot pass as a match.

use std::path::PathBuf;

use fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use sqlite_shim::{Database, OpenOptions, StatementResult, Value};

/// One engine's account of an entry: results of completed statements, then the error.
#[derive(Debug, PartialEq)]
struct Outcome {
    results: Vec<Statement>,
    error: Option<(i32, String)>,
}

#[derive(Debug, PartialEq)]
struct Statement {
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
    changes: u64,
}

/// A value with REALs as bits, so equality is exact (and -0.0 differs from 0.0).
#[derive(Debug, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl From<&Value> for Cell {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => Cell::Null,
            Value::Integer(i) => Cell::Integer(*i),
            Value::Real(r) => Cell::Real(r.to_bits()),
            Value::Text(t) => Cell::Text(t.clone()),
            Value::Blob(b) => Cell::Blob(b.clone()),
        }
    }
}

impl From<ValueRef<'_>> for Cell {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(r) => Cell::Real(r.to_bits()),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

fn shim_statement(r: &StatementResult) -> Statement {
    Statement {
        columns: r.columns.clone(),
        rows: r.rows.iter().map(|row| row.iter().map(Cell::from).collect()).collect(),
        changes: r.changes,
    }
}

fn run_shim(db: &mut Database, sql: &str) -> Outcome {
    let run = db.run(sql, &[]);
    Outcome {
        results: run.results.iter().map(shim_statement).collect(),
        error: run.error.map(|e| (e.code, e.message)),
    }
}

fn stock_error(e: rusqlite::Error) -> (i32, String) {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let msg = msg.unwrap_or_else(|| f.to_string());
            (f.extended_code, msg)
        }
        rusqlite::Error::SqlInputError { error, msg, .. } => (error.extended_code, msg),
        other => panic!("rusqlite error without an SQLite code: {other}"),
    }
}

fn run_stock(conn: &rusqlite::Connection, sql: &str) -> Outcome {
    let mut results = Vec::new();
    let mut batch = rusqlite::Batch::new(conn, sql);
    let error = loop {
        let mut stmt = match batch.next() {
            Ok(Some(stmt)) => stmt,
            Ok(None) => break None,
            Err(e) => break Some(stock_error(e)),
        };
        let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let readonly = stmt.readonly();
        let mut rows = Vec::new();
        let mut query = stmt.raw_query();
        let failed = loop {
            match query.next() {
                Ok(Some(row)) => rows.push(
                    (0..columns.len())
                        .map(|i| Cell::from(row.get_ref(i).expect("column")))
                        .collect(),
                ),
                Ok(None) => break None,
                Err(e) => break Some(stock_error(e)),
            }
        };
        drop(query);
        if failed.is_some() {
            break failed;
        }
        let changes = if readonly { 0 } else { conn.changes() };
        results.push(Statement { columns, rows, changes });
    };
    Outcome { results, error }
}

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read corpus file"))
        })
        .collect()
}

/// Splits a corpus file into entries; the first chunk (the file's description) is skipped.
fn entries(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "----" {
            out.push(String::new());
        } else {
            let last = out.last_mut().expect("non-empty");
            last.push_str(line);
            last.push('\n');
        }
    }
    out.into_iter().skip(1).filter(|e| !e.trim().is_empty()).collect()
}

fn stock_connection() -> rusqlite::Connection {
    use rusqlite::config::DbConfig;
    let conn = rusqlite::Connection::open_in_memory().expect("open stock SQLite");
    // Match the shim's compile-time choices: no double-quoted string literals
    // (SQLITE_DQS=0), foreign keys on (both builds default them on).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false).expect("dqs dml");
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false).expect("dqs ddl");
    conn
}

#[test]
fn corpus_matches_stock_sqlite() {
    corpus_matches_stock_sqlite_with(None);
}

/// With a result budget too large to be reached, the shim must still behave as stock SQLite:
/// a statement that writes and returns rows then runs inside the shim's savepoint.
#[test]
fn corpus_matches_stock_sqlite_with_a_result_budget() {
    corpus_matches_stock_sqlite_with(Some(1 << 30));
}

fn corpus_matches_stock_sqlite_with(max_result_bytes: Option<u64>) {
    let mut total = 0;
    let mut errors = 0;
    let mut statements = 0;
    let mut mismatches = Vec::new();
    for (file, text) in corpus() {
        let options = OpenOptions { max_result_bytes, ..OpenOptions::default() };
        let mut shim = Database::open(&options).expect("open shim database");
        let stock = stock_connection();
        for (i, entry) in entries(&text).iter().enumerate() {
            total += 1;
            let ours = run_shim(&mut shim, entry);
            let theirs = run_stock(&stock, entry);
            let expect_error = entry.contains("-- expect error");
            statements += theirs.results.len();
            errors += usize::from(theirs.error.is_some());
            if ours != theirs {
                mismatches.push(format!(
                    "{file} entry {}:\n{entry}\n  shim:  {ours:?}\n  stock: {theirs:?}",
                    i + 1
                ));
            } else if expect_error != theirs.error.is_some() {
                mismatches.push(format!(
                    "{file} entry {}: marked expect-error={expect_error} but got {:?}\n{entry}",
                    i + 1,
                    theirs.error
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n\n"));
    assert!(total >= 300, "the corpus has only {total} entries");
    assert!(errors >= 30, "the corpus exercises only {errors} errors");
    eprintln!(
        "differential: {total} entries, {statements} statements, {errors} errors: all identical"
    );
}

#[test]
fn entries_split_on_separator_lines() {
    let e = entries("-- topic\n----\nSELECT 1;\n----\n\n----\nSELECT 2;\nSELECT 3;\n");
    assert_eq!(e, ["SELECT 1;\n", "SELECT 2;\nSELECT 3;\n"]);
}
