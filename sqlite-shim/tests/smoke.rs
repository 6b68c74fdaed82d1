//! The engine end to end on a host: SQL, typed values, capture and apply.

use sqlite_shim::{Database, OpenOptions, Value};

#[test]
fn reports_the_pinned_sqlite_release() {
    assert_eq!(sqlite_shim::sqlite_version(), "3.54.1");
}

#[test]
fn executes_sql_and_returns_typed_rows() {
    let mut db = Database::open(&OpenOptions::default()).unwrap();
    db.execute("CREATE TABLE t(a INTEGER, b REAL, c TEXT, d BLOB)", &[]).unwrap();
    let r = db
        .execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            &[Value::Integer(7), Value::Real(0.1), "x".into(), Value::Blob(vec![0, 1])],
        )
        .unwrap();
    assert_eq!(r[0].changes, 1);
    let r = db.execute("SELECT a, b, c, d, NULL, 0.1 + 0.2 FROM t", &[]).unwrap();
    assert_eq!(r[0].columns, ["a", "b", "c", "d", "NULL", "0.1 + 0.2"]);
    assert_eq!(
        r[0].rows,
        [[
            Value::Integer(7),
            Value::Real(0.1),
            Value::Text(b"x".to_vec()),
            Value::Blob(vec![0, 1]),
            Value::Null,
            Value::Real(0.1 + 0.2)
        ]]
    );
}

#[test]
fn syntax_errors_carry_code_and_message() {
    let mut db = Database::open(&OpenOptions::default()).unwrap();
    let e = db.execute("SELEC 1", &[]).unwrap_err();
    assert_eq!(e.code, 1);
    assert!(e.message.contains("syntax error"), "{e}");
}

#[test]
fn backup_applying_changes_is_byte_identical() {
    let mut primary = Database::open(&OpenOptions::default()).unwrap();
    let mut backup = Database::open(&OpenOptions::default()).unwrap();
    for sql in ["CREATE TABLE kv(k PRIMARY KEY, v)", "INSERT INTO kv VALUES (1, 'one'), (2, 'two')"]
    {
        primary.execute(sql, &[]).unwrap();
        let c = primary.take_changes().unwrap();
        assert!(!c.is_empty());
        let pages: Vec<(u32, &[u8])> = c.pages.iter().map(|(i, d)| (*i, d.as_slice())).collect();
        backup.apply(c.file_size, c.page_size, &pages).unwrap();
        assert_eq!(primary.with_file(<[u8]>::to_vec), backup.with_file(<[u8]>::to_vec));
    }
    let r = backup.execute("SELECT v FROM kv ORDER BY k", &[]).unwrap();
    assert_eq!(r[0].rows, [[Value::from("one")], [Value::from("two")]]);
}
