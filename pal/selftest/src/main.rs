//! The PAL service, built freestanding, testing itself.
//!
//! This binary links the same `vpr-pal` and `sqlite-shim` code the simulation backend runs,
//! with no libc: its only outside interface is the `linux` module (write, exit, getrandom,
//! clock_gettime), so CI can run it as a process and check its symbol table. It runs a primary
//! and a backup service, ships every update through its byte encoding, and checks that the
//! backup's file stays identical, that floating point formats as SQLite should, and that bad
//! input is refused. It prints `pal-selftest: ok (N checks)` and exits 0, or prints the failed
//! check and exits 1.

#![no_std]
#![no_main]

extern crate alloc;

mod linux;

use alloc::format;
use alloc::string::String;

use linked_list_allocator::LockedHeap;
use sqlite_shim::{Config, Platform, Value};
use vpr_pal::{Service, ServiceOptions};
use vpr_proto::update::StateUpdate;

// Keep the C library functions (memcpy...) in the link: nothing in Rust names this crate.
use vpr_crt as _;

/// Rust heap: 96 MiB, of which SQLite's memsys5 pool takes 32 MiB.
const HEAP_BYTES: usize = 96 << 20;
const SQLITE_HEAP_BYTES: usize = 32 << 20;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Backing store of the heap, in `.bss`.
static mut HEAP: [u8; HEAP_BYTES] = [0; HEAP_BYTES];

struct Checks {
    passed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        if !ok {
            fail(what);
        }
        self.passed += 1;
    }

    fn check_text(&mut self, got: &Value, want: &str, what: &str) {
        let got = text(got);
        self.check(got == want, &format!("{what}: got {got:?}, want {want:?}"));
    }
}

fn fail(what: &str) -> ! {
    linux::write_stdout(format!("pal-selftest: FAILED: {what}\n").as_bytes());
    linux::exit(1)
}

/// Called from `_start`.
extern "C" fn entry() -> ! {
    // SAFETY: runs once, first, on the only thread: nothing else refers to HEAP.
    unsafe { ALLOCATOR.lock().init(core::ptr::addr_of_mut!(HEAP).cast(), HEAP_BYTES) };
    let config = Config {
        heap_bytes: SQLITE_HEAP_BYTES,
        platform: Platform { fill_random: linux::fill_random, unix_time_ms: linux::unix_time_ms },
    };
    if let Err(e) = sqlite_shim::initialize(config) {
        fail(&format!("initialize: {e}"));
    }
    let mut checks = Checks { passed: 0 };
    run(&mut checks);
    linux::write_stdout(
        format!(
            "pal-selftest: ok ({} checks, SQLite {})\n",
            checks.passed,
            sqlite_shim::sqlite_version()
        )
        .as_bytes(),
    );
    linux::exit(0)
}

/// Executes `sql` at the primary, ships the encoded update to the backup, checks convergence.
fn step(c: &mut Checks, primary: &mut Service, backup: &mut Service, sql: &str) -> vpr_pal::Reply {
    let (reply, update) = primary.execute(sql, &[]);
    let bytes = update.encode();
    let decoded = StateUpdate::decode(&bytes);
    c.check(decoded.as_ref().is_ok_and(|d| *d == update), "update survives encode/decode");
    if let Err(e) = backup.apply_encoded(&bytes) {
        fail(&format!("apply after {sql:?}: {e}"));
    }
    c.check(primary.digest() == backup.digest(), "backup file identical to primary's");
    reply
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => String::from_utf8_lossy(t).into_owned(),
        other => format!("{other:?}"),
    }
}

fn run(c: &mut Checks) {
    let opts = ServiceOptions::default();
    let (Ok(mut p), Ok(mut b)) = (Service::new(&opts), Service::new(&opts)) else {
        fail("open services");
    };
    let script = [
        "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT, r REAL)",
        "INSERT INTO kv(v, r) VALUES ('one', 1.5), ('two', 0.1), ('three', -2.25e-7)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO kv(v, r) SELECT printf('row-%d', i), i / 7.0 FROM n",
        "UPDATE kv SET r = r * 3 WHERE k % 3 = 0",
        "DELETE FROM kv WHERE k % 5 = 0",
        "CREATE INDEX kv_r ON kv(r)",
        "INSERT INTO kv(v, r) VALUES (hex(randomblob(16)), random() / 3.0), (datetime('now'), 0)",
        "VACUUM",
    ];
    for sql in script {
        let reply = step(c, &mut p, &mut b, sql);
        if let Some(e) = reply.error {
            fail(&format!("{sql:?}: {e}"));
        }
    }
    // Doubles through the C ABI and SQLite's own formatting.
    let (reply, update) = p.execute(
        "SELECT 0.1 + 0.2, CAST(0.1 + 0.2 AS TEXT), printf('%.17g', 1.0 / 3), 1e308 * 10, \
         CAST(-0.0 AS TEXT), count(*) > 1000, printf('%!.17g', 1.0 / 3) FROM kv",
        &[],
    );
    c.check(update.is_empty(), "a read writes no page");
    let row = match reply.results.first().and_then(|r| r.rows.first()) {
        Some(row) if reply.error.is_none() => row.clone(),
        _ => fail(&format!("float query: {:?}", reply.error)),
    };
    c.check(row[0] == Value::Real(0.1 + 0.2), "0.1 + 0.2 arrives as the same double");
    c.check_text(&row[1], "0.30000000000000004", "REAL to TEXT");
    // SQLite rounds %g to 16 significant digits unless the '!' flag allows up to 20, and
    // generates digits its own way (stock SQLite 3.54.1 prints these same strings).
    c.check_text(&row[2], "0.3333333333333333", "printf %.17g");
    c.check_text(&row[6], "0.33333333333333332", "printf %!.17g");
    c.check(row[3] == Value::Real(f64::INFINITY), "overflow to infinity");
    c.check_text(&row[4], "0.0", "negative zero as text");
    c.check(row[5] == Value::Integer(1), "aggregate over the table");
    // The backup answers the same query the same way.
    let (breply, _) = b.execute("SELECT count(*), sum(r), max(v) FROM kv", &[]);
    let (preply, _) = p.execute("SELECT count(*), sum(r), max(v) FROM kv", &[]);
    c.check(breply == preply && breply.error.is_none(), "backup reads what the primary reads");
    // Bad input is refused and loses nothing.
    let before = b.digest();
    let (bad, _) = p.execute("SELEC nonsense", &[]);
    c.check(bad.error.is_some_and(|e| e.code == 1), "syntax error reported with SQLITE_ERROR");
    let (_, update) = p.execute("INSERT INTO kv(v) VALUES ('x')", &[]);
    let mut bytes = update.encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    c.check(b.apply_encoded(&bytes).is_err(), "corrupted update refused");
    c.check(b.apply_encoded(&bytes[..bytes.len() / 2]).is_err(), "truncated update refused");
    c.check(b.digest() == before, "refused updates leave the backup unchanged");
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail(&format!("panic: {info}"))
}
