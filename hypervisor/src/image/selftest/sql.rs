//! The PAL test suite through `execute`: the real PAL image (`pal/image`: the `vpr-pal`
//! service with SQLite, the same code the simulation backend runs), passed by the loader as
//! module 0, registered and driven by an untrusted test guest with the hypercall ABI.
//!
//! The guest runs the `script` program (see `pal.rs`): the test writes commands
//! (`vpr_proto::pal_io`) into the guest's memory, the guest makes the hypercalls, and the
//! test reads the outcomes back out of the guest's memory. Guest-physical layout:
//!
//! | GPA | what |
//! | --- | --- |
//! | `0x5000` | the script (two pages) |
//! | `0x7000` | register results (40 bytes each) |
//! | `0x7800` | output lengths (8 bytes each) |
//! | `0x8000` | inputs, one after another |
//! | `0x10_0000` | outputs, [`OUTPUT_CAP`] bytes each; or the PAL image, when registering |

use super::pal::{read_u64, run_script_in, Args, MAX_CALLS};
use super::TestResult;
use crate::guest::DATA;
use crate::mem;
use crate::pal::Pals;
use crate::svm::Svm;
use crate::tcc::Tcc;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vpr_hypervisor::memory::{align_up, PAGE_SIZE};
use vpr_proto::hypercall::{Call, RegisterOut, Status};
use vpr_proto::msg::{StatementResult, Value};
use vpr_proto::pal_io::{Command, Outcome, MIN_OUTPUT_CAPACITY};
use vpr_proto::update::StateUpdate;
use vpr_proto::Digest;

const RESULT: u64 = 0x7000;
const OUT_LEN: u64 = 0x7800;
const INPUTS: u64 = 0x8000;
const OUTPUTS: u64 = 0x10_0000;
const IMAGE: u64 = 0x10_0000;
/// Output capacity of each execution: enough for every outcome of this suite.
const OUTPUT_CAP: u64 = 64 * 1024;
/// SQLite's primary result codes for a value or result too large, and out of memory.
pub(super) const SQLITE_TOOBIG: i32 = 18;
const SQLITE_NOMEM: i32 = 7;

/// The PAL image the loader passed, or why the suite cannot run.
pub(super) fn image() -> Result<&'static [u8], String> {
    mem::module(0).ok_or_else(|| String::from("no PAL image: boot with the image as module 0"))
}

/// Data pages a guest needs to reach `end` (exclusive).
fn pages_to(end: u64) -> u64 {
    (align_up(end, PAGE_SIZE) - DATA) / PAGE_SIZE
}

/// Registers the PAL image in a fresh guest; its handle and the register call's TSC ticks.
pub(super) fn register(svm: &Svm, pals: &mut Pals<'_>) -> Result<(u64, u64), String> {
    register_image(svm, pals, image()?)
}

/// Registers `image` in a fresh guest; its handle and the register call's TSC ticks.
fn register_image(svm: &Svm, pals: &mut Pals<'_>, image: &[u8]) -> Result<(u64, u64), String> {
    let calls = [[Call::Register as u64, IMAGE, image.len() as u64, RESULT, 0, 0, 0]];
    let pages = pages_to(IMAGE + image.len() as u64);
    let (replies, mut guest) = run_script_in(svm, pals, pages, &[(IMAGE, image)], &calls)?;
    if replies[0].status() != Some(Status::Ok) {
        return Err(format!("register: RAX {:#x}", replies[0].regs[0]));
    }
    let mut out = [0; 40];
    guest.memory().read(RESULT, &mut out);
    let registered = RegisterOut::from_bytes(&out);
    if registered.measurement != Digest::of(image).0 {
        return Err(String::from("the measurement is not the SHA-256 of the image"));
    }
    Ok((registered.handle, replies[0].ticks))
}

/// What one execution gave: the hypercall's status, the PAL's outcome (when the status is
/// `Ok`) and the TSC ticks the hypercall took.
struct Executed {
    status: Option<Status>,
    outcome: Option<Result<Outcome, String>>,
    ticks: u64,
}

/// Runs `inputs` (raw bytes) on PAL `handle` in one guest, each with `cap` bytes of output.
fn execute_raw(
    svm: &Svm,
    pals: &mut Pals<'_>,
    handle: u64,
    inputs: &[Vec<u8>],
    cap: u64,
) -> Result<Vec<Executed>, String> {
    let mut setup: Vec<(u64, &[u8])> = Vec::new();
    let mut calls: Vec<Args> = Vec::new();
    let mut at = INPUTS;
    for (i, input) in inputs.iter().enumerate() {
        let out = OUTPUTS + i as u64 * cap;
        setup.push((at, input));
        calls.push([
            Call::Execute as u64,
            handle,
            at,
            input.len() as u64,
            out,
            cap,
            OUT_LEN + 8 * i as u64,
        ]);
        at = align_up(at + input.len() as u64, 16);
    }
    if at > OUTPUTS {
        return Err(String::from("the inputs do not fit in the guest"));
    }
    let end = OUTPUTS + inputs.len() as u64 * cap;
    let (replies, mut guest) = run_script_in(svm, pals, pages_to(end), &setup, &calls)?;
    let memory = guest.memory();
    let mut results = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        let status = reply.status();
        let outcome = if status == Some(Status::Ok) {
            let len = read_u64(memory, OUT_LEN + 8 * i as u64)?;
            let mut bytes = alloc::vec![0; mem::usize_of(len.min(cap))];
            memory.read(OUTPUTS + i as u64 * cap, &mut bytes);
            Some(Outcome::decode(&bytes).map_err(|e| format!("{e}")))
        } else {
            None
        };
        results.push(Executed { status, outcome, ticks: reply.ticks });
    }
    Ok(results)
}

/// Runs `commands` on PAL `handle` and returns their outcomes; any hypercall failure or
/// undecodable outcome is an error.
pub(super) fn execute(
    svm: &Svm,
    pals: &mut Pals<'_>,
    handle: u64,
    commands: &[Command],
) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for chunk in commands.chunks(MAX_CALLS) {
        let inputs: Vec<Vec<u8>> = chunk.iter().map(Command::encode).collect();
        for (i, done) in
            execute_raw(svm, pals, handle, &inputs, OUTPUT_CAP)?.into_iter().enumerate()
        {
            match (done.status, done.outcome) {
                (Some(Status::Ok), Some(Ok(outcome))) => outcomes.push(outcome),
                (status, outcome) => {
                    return Err(format!("{:?}: status {status:?}, outcome {outcome:?}", chunk[i]));
                }
            }
        }
    }
    Ok(outcomes)
}

fn sql(text: &str) -> Command {
    Command::Execute { sql: String::from(text), params: Vec::new() }
}

fn text(s: &str) -> Value {
    Value::Text(Vec::from(s.as_bytes()))
}

/// The rows of the last statement of an `Executed` outcome, or why there are none.
fn rows(outcome: &Outcome) -> Result<&[Vec<Value>], String> {
    match outcome {
        Outcome::Executed { results, error: None, .. } => results
            .last()
            .map(|r: &StatementResult| r.rows.as_slice())
            .ok_or_else(|| String::from("no statement result")),
        other => Err(format!("not executed cleanly: {other:?}")),
    }
}

/// The update an `Executed` outcome carries.
fn update(outcome: &Outcome) -> Result<Vec<u8>, String> {
    match outcome {
        Outcome::Executed { update, .. } => Ok(update.clone()),
        other => Err(format!("no update in {other:?}")),
    }
}

fn digest(svm: &Svm, pals: &mut Pals<'_>, handle: u64) -> Result<Digest, String> {
    match execute(svm, pals, handle, &[Command::Digest])?.pop() {
        Some(Outcome::Digest { digest, .. }) => Ok(digest),
        other => Err(format!("digest: {other:?}")),
    }
}

/// The image registers, measures as the SHA-256 of the file, says what it is, and its
/// address space is what the plan says: W^X everywhere, nothing mapped beyond its regions.
pub fn sql_pal_registers(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = Pals::new(svm, tcc);
    let (handle, ticks) = register(svm, &mut pals)?;
    let pages = pals.audit(handle)?;
    // From the other side: no page of a guest that drives the PAL reaches the PAL's frames or
    // the hypervisor's image.
    let (first, count) = pals.frames(handle).ok_or("the PAL is not registered")?;
    let pal_frames = first.as_u64()..first.as_u64() + count * PAGE_SIZE;
    let hypervisor = mem::image_range();
    let digest = [Command::Digest.encode()];
    let calls = [[
        Call::Execute as u64,
        handle,
        INPUTS,
        digest[0].len() as u64,
        OUTPUTS,
        OUTPUT_CAP,
        OUT_LEN,
    ]];
    let guest_pages = pages_to(OUTPUTS + OUTPUT_CAP);
    let (_, mut guest) =
        run_script_in(svm, &mut pals, guest_pages, &[(INPUTS, &digest[0])], &calls)?;
    let ram = guest.memory().ram();
    for gpa in (ram.start..ram.end).step_by(mem::usize_of(PAGE_SIZE)) {
        if let Some(t) = guest.translate(gpa) {
            let host = t.address.as_u64();
            if pal_frames.contains(&host) || hypervisor.contains(host) {
                return Err(format!("guest-physical {gpa:#x} maps host {host:#x}"));
            }
        }
    }
    let outcomes = execute(svm, &mut pals, handle, &[Command::Info])?;
    let Some(Outcome::Info { sqlite_version, identity, image }) = outcomes.first() else {
        return Err(format!("info: {outcomes:?}"));
    };
    if *identity != Digest::of(self::image()?) || !sqlite_version.starts_with("3.") {
        return Err(format!("info: {sqlite_version} {identity} {image}"));
    }
    log::info!(
        "hv: PAL {image} (SQLite {sqlite_version}) identity {identity}: register {ticks} TSC \
         ticks, {pages} PAL pages audited, {} guest pages checked",
        ram.len() / PAGE_SIZE
    );
    Ok(())
}

/// SQL through the PAL: typed values in and out bit for bit, joins, aggregates, recursive
/// CTEs, REAL formatting, and errors with SQLite's extended codes that change nothing.
pub fn sql_pal_statements(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = Pals::new(svm, tcc);
    let (handle, _) = register(svm, &mut pals)?;
    let values = [
        Value::Null,
        Value::Integer(i64::MIN),
        Value::Real(-0.0),
        Value::Real(f64::from_bits(0x7FF8_0000_0000_0001)),
        text("héllo"),
        Value::Blob(Vec::from([0, 255, 1])),
    ];
    let insert = Command::Execute {
        sql: String::from("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)"),
        params: values.to_vec(),
    };
    let commands = [
        sql("CREATE TABLE v (a, b, c, d, e, f)"),
        insert,
        sql("SELECT * FROM v"),
        sql("CREATE TABLE t (k INTEGER PRIMARY KEY, g TEXT, x REAL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO t SELECT i, CASE i % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'c' END,
             i / 8.0 FROM n"),
        sql("SELECT g, count(*), sum(k), printf('%.3f', avg(x)) FROM t GROUP BY g ORDER BY g"),
        sql("SELECT count(*) FROM t JOIN t AS u ON u.k = t.k + 1 WHERE t.g = 'a'"),
        sql("INSERT INTO t VALUES (1, 'dup', 0)"),
        sql("SELEC 1"),
        sql("SELECT count(*), total(k) FROM t"),
    ];
    let outcomes = execute(svm, &mut pals, handle, &commands)?;
    // SQLite stores a NaN as NULL; everything else comes back as it went in, reals bit for
    // bit (PartialEq compares their values, so -0.0 is checked by its bits).
    let mut expected = values.to_vec();
    expected[3] = Value::Null;
    let got = rows(&outcomes[2])?;
    let negative_zero = matches!(got.first().map(|r| &r[2]), Some(Value::Real(z)) if z.to_bits() == (-0.0f64).to_bits());
    if got != [expected].as_slice() || !negative_zero {
        return Err(format!("values came back as {got:?}"));
    }
    let groups = rows(&outcomes[4])?;
    let expected = [("a", 33, 1683, "6.375"), ("b", 34, 1717, "6.313"), ("c", 33, 1650, "6.250")];
    let ok = groups.len() == 3
        && groups.iter().zip(expected).all(|(row, (g, n, sum, avg))| {
            row == &[text(g), Value::Integer(n), Value::Integer(sum), text(avg)]
        });
    if !ok {
        return Err(format!("groups: {groups:?}"));
    }
    if rows(&outcomes[5])? != [[Value::Integer(33)]] {
        return Err(format!("join: {:?}", rows(&outcomes[5])?));
    }
    // A constraint error (SQLITE_CONSTRAINT_PRIMARYKEY, 1555) and a syntax error (SQLITE_ERROR).
    for (i, code) in [(6, 1555), (7, 1)] {
        match &outcomes[i] {
            Outcome::Executed { error: Some(e), update, .. } if e.code == code => {
                let empty = StateUpdate::decode(update).map_err(|e| format!("{e}"))?;
                if !empty.pages.is_empty() {
                    return Err(format!("a failed statement wrote {} pages", empty.pages.len()));
                }
            }
            other => return Err(format!("statement {i}: {other:?}")),
        }
    }
    if rows(&outcomes[8])? != [[Value::Integer(100), Value::Real(5050.0)]] {
        return Err(format!("after the errors: {:?}", rows(&outcomes[8])?));
    }
    Ok(())
}

/// A primary PAL's updates, applied by a backup PAL (another registration of the same
/// image, with memory of its own), keep the two database files identical; tampered and
/// malformed updates are refused and change nothing.
pub fn sql_pal_replicates(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = Pals::new(svm, tcc);
    let (primary, _) = register(svm, &mut pals)?;
    let (backup, _) = register(svm, &mut pals)?;
    let writes = [
        sql("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB)"),
        Command::Execute {
            sql: String::from(
                "INSERT INTO kv VALUES ('x', randomblob(3000)), ('y', zeroblob(9000))",
            ),
            params: Vec::new(),
        },
        sql("UPDATE kv SET v = randomblob(100) WHERE k = 'y'"),
        sql("SELECT count(*) FROM kv"),
    ];
    let outcomes = execute(svm, &mut pals, primary, &writes)?;
    let updates: Vec<Vec<u8>> = outcomes.iter().map(update).collect::<Result<_, _>>()?;
    let last = StateUpdate::decode(&updates[3]).map_err(|e| format!("{e}"))?;
    if !last.pages.is_empty() {
        return Err(String::from("a read produced pages"));
    }
    // A tampered update (one byte of a page changed) and garbage come first: refused.
    let mut tampered = updates[1].clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    let before = digest(svm, &mut pals, backup)?;
    let bad =
        [Command::Apply { update: tampered }, Command::Apply { update: Vec::from([1, 2, 3]) }];
    for outcome in execute(svm, &mut pals, backup, &bad)? {
        if !matches!(outcome, Outcome::Refused { .. }) {
            return Err(format!("a bad update was not refused: {outcome:?}"));
        }
    }
    if digest(svm, &mut pals, backup)? != before {
        return Err(String::from("a refused update changed the backup"));
    }
    let applies: Vec<Command> =
        updates.iter().map(|u| Command::Apply { update: u.clone() }).collect();
    let applied = execute(svm, &mut pals, backup, &applies)?;
    let primary_digest = digest(svm, &mut pals, primary)?;
    match applied.last() {
        Some(Outcome::Applied { digest }) if *digest == primary_digest => {}
        other => return Err(format!("backup {other:?}, primary {primary_digest}")),
    }
    if digest(svm, &mut pals, backup)? != primary_digest {
        return Err(String::from("the backup's file differs from the primary's"));
    }
    let sum = execute(svm, &mut pals, backup, &[sql("SELECT k, length(v) FROM kv ORDER BY k")])?;
    let expected = [[text("x"), Value::Integer(3000)], [text("y"), Value::Integer(100)]];
    if rows(&sum[0])? != expected {
        return Err(format!("backup reads {:?}", rows(&sum[0])?));
    }
    Ok(())
}

/// Hostile input to the PAL: garbage, truncated commands and lies about lengths are
/// refused by the PAL, which keeps running; an output buffer below the minimum is
/// `TooLarge`; the PAL's random and counter services answer through it.
pub fn sql_pal_bad_input(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = Pals::new(svm, tcc);
    let (handle, _) = register(svm, &mut pals)?;
    let good = sql("SELECT 1").encode();
    let mut lying = good.clone();
    lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes()); // the SQL's length
    let inputs = [
        Vec::new(),
        Vec::from(*b"not a command at all"),
        good[..good.len() - 1].to_vec(),
        lying,
        [good.as_slice(), &[0]].concat(),
        Command::Random { len: 100_000 }.encode(),
    ];
    for (i, done) in execute_raw(svm, &mut pals, handle, &inputs, OUTPUT_CAP)?.iter().enumerate() {
        if !matches!(done.outcome, Some(Ok(Outcome::Refused { .. }))) {
            return Err(format!("input {i}: status {:?}, outcome {:?}", done.status, done.outcome));
        }
    }
    let small = execute_raw(svm, &mut pals, handle, &[good], MIN_OUTPUT_CAPACITY as u64 - 1)?;
    if small[0].status != Some(Status::TooLarge) {
        return Err(format!("small output buffer: {:?}", small[0].status));
    }
    let commands = [
        Command::Random { len: 32 },
        Command::Random { len: 32 },
        Command::Counter { name: Digest([2; 32]), increment: true },
        Command::Counter { name: Digest([2; 32]), increment: true },
        Command::Counter { name: Digest([2; 32]), increment: false },
        Command::Counter { name: Digest([9; 32]), increment: true },
        sql("SELECT 40 + 2"),
    ];
    let outcomes = execute(svm, &mut pals, handle, &commands)?;
    // Each name its own counter.
    match &outcomes[..] {
        [Outcome::Random { bytes: a }, Outcome::Random { bytes: b }, Outcome::Counter { value: 1 }, Outcome::Counter { value: 2 }, Outcome::Counter { value: 2 }, Outcome::Counter { value: 1 }, last]
            if a.len() == 32 && a != b && rows(last)? == [[Value::Integer(42)]] => {}
        other => return Err(format!("services: {other:?}")),
    }
    Ok(())
}

/// Results a client can make far larger than the PAL's heap (24 MiB for Rust): a megabyte
/// per row over 40 rows, a cross join of 64,000 rows, a concatenation of big blobs, random
/// blobs, a write returning big rows. Each is an SQL error (the result budget, here the
/// output capacity, or SQLite's own heap running out), not a crashed PAL; the write is
/// rolled back; the database is unchanged and the next request is served.
pub fn sql_pal_huge_results(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = Pals::new(svm, tcc);
    let (handle, _) = register(svm, &mut pals)?;
    let setup = [sql("CREATE TABLE big (k INTEGER PRIMARY KEY);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
         INSERT INTO big SELECT i FROM n")];
    execute(svm, &mut pals, handle, &setup)?;
    let before = digest(svm, &mut pals, handle)?;
    let huge = [
        "SELECT zeroblob(1000000) FROM big",
        "SELECT * FROM big AS a, big AS b, big AS c",
        "SELECT group_concat(zeroblob(100000)) FROM big",
        "SELECT randomblob(100000) FROM big",
        "INSERT INTO big SELECT k + 100 FROM big RETURNING zeroblob(100000)",
    ];
    let mut commands = Vec::new();
    for text in huge {
        commands.push(sql(text));
        commands.push(sql("SELECT count(*), sum(k) FROM big"));
    }
    let outcomes = execute(svm, &mut pals, handle, &commands)?;
    for (text, pair) in huge.iter().zip(outcomes.chunks(2)) {
        match &pair[0] {
            Outcome::Executed { error: Some(e), update, .. }
                if e.code & 0xff == SQLITE_TOOBIG || e.code & 0xff == SQLITE_NOMEM =>
            {
                let update = StateUpdate::decode(update).map_err(|e| format!("{e}"))?;
                if !update.pages.is_empty() {
                    return Err(format!("{text}: the failed request wrote pages"));
                }
            }
            other => return Err(format!("{text}: {other:?}")),
        }
        if rows(&pair[1])? != [[Value::Integer(40), Value::Integer(820)]] {
            return Err(format!("after {text}: {:?}", rows(&pair[1])?));
        }
    }
    if digest(svm, &mut pals, handle)? != before {
        return Err(String::from("a failed request changed the database"));
    }
    log::info!(
        "hv: sql pal huge results: {} requests answered with errors, the PAL still serves",
        huge.len()
    );
    Ok(())
}

/// The cost of PAL executions under the hypervisor: an empty input (the world switch, the
/// PAL's entry and its refusal), a point query and a one-row insert, each the mean of many.
pub fn sql_pal_cost(svm: &Svm, tcc: &Tcc) -> TestResult {
    const RUNS: usize = 40;
    let mut pals = Pals::new(svm, tcc);
    let (handle, _) = register(svm, &mut pals)?;
    let setup = [sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO t SELECT i, 'value ' || i FROM n")];
    execute(svm, &mut pals, handle, &setup)?;
    let mean = |inputs: Vec<Vec<u8>>, pals: &mut Pals<'_>| -> Result<u64, String> {
        let done = execute_raw(svm, pals, handle, &inputs, OUTPUT_CAP)?;
        if let Some(bad) = done.iter().find(|d| d.status != Some(Status::Ok)) {
            return Err(format!("status {:?}", bad.status));
        }
        // The first run of each kind warms caches; it is left out.
        Ok(done[1..].iter().map(|d| d.ticks).sum::<u64>() / (done.len() as u64 - 1))
    };
    let empty = mean((0..RUNS).map(|_| Vec::new()).collect(), &mut pals)?;
    let select = Command::Execute {
        sql: String::from("SELECT v FROM t WHERE k = ?"),
        params: Vec::from([Value::Integer(500)]),
    };
    let read = mean((0..RUNS).map(|_| select.encode()).collect(), &mut pals)?;
    let inserts = (0..RUNS)
        .map(|i| {
            Command::Execute {
                sql: String::from("INSERT INTO t (v) VALUES (?)"),
                params: Vec::from([Value::Integer(i as i64)]),
            }
            .encode()
        })
        .collect();
    let write = mean(inserts, &mut pals)?;
    log::info!(
        "hv: sql pal execute, TSC ticks (mean of {}): empty input {empty}, point SELECT {read}, \
         one-row INSERT {write}",
        RUNS - 1
    );
    Ok(())
}

/// The production PAL image (module 1 of the first boot) serves the Manager's commands only:
/// the bare service's are refused, naming the test image, while a Manager command reaches the
/// Manager's code (`Status` before `Start`: no Manager runs). It is another identity than the
/// test image's.
pub fn production_pal_serves_the_manager_only(svm: &Svm, tcc: &Tcc) -> TestResult {
    let production = mem::module(1).ok_or("no production PAL image: boot with it as module 1")?;
    if Digest::of(production) == Digest::of(image()?) {
        return Err(String::from("the production and test PAL images are the same file"));
    }
    let mut pals = Pals::new(svm, tcc);
    let (handle, _) = register_image(svm, &mut pals, production)?;
    let bare =
        [sql("CREATE TABLE t(x)"), Command::Digest, Command::Info, Command::Random { len: 8 }];
    for outcome in execute(svm, &mut pals, handle, &bare)? {
        match &outcome {
            Outcome::Refused { reason }
                if reason.contains("is a command of the test PAL image") => {}
            other => return Err(format!("the production PAL answered a bare command: {other:?}")),
        }
    }
    match execute(svm, &mut pals, handle, &[Command::Status])?.pop() {
        Some(Outcome::Refused { reason }) if reason.starts_with("no Manager runs") => Ok(()),
        other => Err(format!("Status on the production PAL: {other:?}")),
    }
}
