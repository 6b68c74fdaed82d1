//! Out of memory in SQLite's fixed heap (memsys5) is a clear error, not a crash, and loses
//! nothing. This test binary sets up the engine with a 2 MiB heap before anything else runs,
//! so it holds a single test.

use sqlite_shim::{codes, Config, Platform};
use vpr_pal::{Service, ServiceOptions};

#[test]
fn exhausting_the_sqlite_heap_is_an_error_and_loses_nothing() {
    sqlite_shim::initialize(Config { heap_bytes: 2 << 20, platform: Platform::host() })
        .expect("first initialization");
    assert!(sqlite_shim::initialize(Config::default()).is_err(), "second initialization accepted");

    let mut s = Service::new(&ServiceOptions::default()).expect("service fits in 2 MiB");
    let (reply, _) = s.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)", &[]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    let before = s.digest();

    // A 4 MB string cannot be built in a 2 MiB heap.
    let (reply, update) = s.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) \
         INSERT INTO t SELECT group_concat(printf('%01000d', i), '') FROM n",
        &[],
    );
    let e = reply.error.expect("4 MB value built in a 2 MiB heap");
    assert_eq!(e.primary_code(), codes::SQLITE_NOMEM, "{e}");
    assert!(update.is_empty());
    assert_eq!(s.digest(), before, "the failed statement changed the database");

    // The engine recovers: memory is back and small requests work.
    let (reply, update) = s.execute("INSERT INTO t VALUES (4); SELECT count(*) FROM t", &[]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(!update.is_empty());
    assert_eq!(reply.results[1].rows[0][0], sqlite_shim::Value::Integer(4));
}
