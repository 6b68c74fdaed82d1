//! `vpr bench`: closed-loop load on a running cluster through verified clients, with latency
//! percentiles from HdrHistograms, and the same SQL against an unreplicated in-process SQLite
//! as the baseline.
//!
//! A run creates a fresh table `bench_kv_<random>(k INTEGER PRIMARY KEY, v TEXT)`, preloads
//! [`BenchOptions::rows`] rows (500 a request, one multi-row `INSERT` each), then starts
//! [`BenchOptions::clients`] threads, each with its own [`Client`] session, that send one
//! request at a time for the warm-up (not recorded) and then the measured duration:
//!
//! | workload | request |
//! | --- | --- |
//! | `write` | `INSERT INTO t(v) VALUES (?1)`, a random 32-character text |
//! | `read` | `SELECT v FROM t WHERE k = ?1`, a random preloaded key |
//! | `mixed` | 90% reads and 10% writes, each recorded in its own histogram |
//!
//! Latencies are recorded in nanoseconds (three significant digits) and reported in
//! microseconds: the baseline's few-microsecond latencies would lose up to half their value
//! to whole-microsecond rounding. A request fails when the client reports an error, the
//! outcome holds an SQL error, or a read of a preloaded key returns no row; a run in which more
//! than 1% of requests fail stops early and returns an error.
//!
//! The **baseline** runs the same statements with the same parameters against
//! `rusqlite::Connection::open_in_memory()` with `PRAGMA journal_mode=MEMORY` in this process,
//! on *one* connection in *one* thread (C clients would only take turns on one connection),
//! preparing every statement afresh as the service does (it has no statement cache), for
//! `min(duration, 3 s)`. The ratios compare the cluster with it. A second baseline does the
//! same on a database file in the folder of the cluster's configuration (for a local cluster,
//! the disk its replicas' logs are on) with `journal_mode=WAL` and `synchronous=FULL`: a
//! single-node SQLite that flushes each commit, as a durable cluster flushes its records.
//!
//! After the run the table is dropped (best effort), so repeated runs on one cluster do not
//! accumulate data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use vpr_proto::msg::{Outcome, Value};

use crate::client::{Client, ClientError, ReadConsistency};
use crate::config::ClusterConfig;

/// Rows a preload request inserts (one parameter each; a request holds at most
/// [`vpr_proto::msg::MAX_PARAMS`]).
pub const PRELOAD_BATCH: usize = 500;
/// Length of the text a write inserts.
pub const VALUE_LEN: usize = 32;
/// Share of writes in the mixed workload, in percent.
pub const MIXED_WRITE_PERCENT: u64 = 10;
/// The longest the baseline runs (after its warm-up).
pub const BASELINE_MAX: Duration = Duration::from_secs(3);
/// The longest the baseline warms up.
pub const BASELINE_WARMUP_MAX: Duration = Duration::from_millis(500);
/// Failures tolerated before the 1% rule can stop a run early (one failed request among the
/// first few must not end it).
const MIN_FAILURES_TO_ABORT: u64 = 10;
/// Largest latency a histogram tells apart (one hour, in ns); longer ones count as this.
const MAX_NS: u64 = 3_600_000_000_000;

/// What the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Single-row inserts.
    Write,
    /// Point reads of preloaded rows.
    Read,
    /// 90% reads, 10% writes.
    Mixed,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::Write => "write",
            Workload::Read => "read",
            Workload::Mixed => "mixed",
        })
    }
}

/// How to run a benchmark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchOptions {
    /// What the clients send.
    pub workload: Workload,
    /// Concurrent clients, each a thread with its own session and one request outstanding.
    pub clients: usize,
    /// How long latencies are recorded.
    pub duration: Duration,
    /// How long clients run before recording starts.
    pub warmup: Duration,
    /// Rows preloaded for reads (keys 1..=rows); reads and mixed need at least one.
    pub rows: usize,
    /// How fresh reads must be.
    pub reads: ReadConsistency,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            workload: Workload::Write,
            clients: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            rows: 10_000,
            reads: ReadConsistency::Linearizable,
        }
    }
}

/// Arguments of `vpr bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The client configuration (cluster.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// What the clients send.
    #[arg(long, value_enum, default_value_t = Workload::Write)]
    pub workload: Workload,
    /// Concurrent clients (threads, one request outstanding each).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Seconds to measure (fractions allowed).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Seconds to run before measuring.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub warmup: Duration,
    /// Rows to preload for reads.
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// How fresh reads must be (see `vpr sql --read-consistency`).
    #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
    pub read_consistency: ReadConsistency,
}

/// Parses a number of seconds such as `10` or `0.5`.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s}: {e}"))
}

/// `vpr bench`: loads the configuration, runs the benchmark, prints the report to standard
/// output and, with `--json`, writes it as JSON.
pub fn command(args: &BenchArgs) -> Result<Report> {
    let config = ClusterConfig::load(&args.config)?;
    let opts = BenchOptions {
        workload: args.workload,
        clients: args.clients,
        duration: args.duration,
        warmup: args.warmup,
        rows: args.rows,
        reads: args.read_consistency,
    };
    let report = run(&config, args.config.parent(), &opts)?;
    let mut out = std::io::stdout().lock();
    report.print(&mut out)?;
    out.flush()?;
    if let Some(path) = &args.json {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut file = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut file, &report)?;
        writeln!(file)?;
        file.flush()?;
    }
    Ok(report)
}

/// Runs a benchmark against the cluster of `config`, then the baselines (the on-disk one in
/// `config_folder`, or the working folder).
pub fn run(
    config: &ClusterConfig,
    config_folder: Option<&Path>,
    opts: &BenchOptions,
) -> Result<Report> {
    check(opts)?;
    let table = Table::fresh();
    let mut setup = Client::connect(config).context("connecting the set-up client")?;
    let created = remote(&mut setup, &table.create());
    let measured = created.and_then(|_| {
        preload(&mut setup, &table, opts.rows)?;
        run_clients(config, &table, opts)
    });
    // Best effort, also after a failure: a failed drop only leaves the table behind.
    let _ = setup.execute(&format!("DROP TABLE IF EXISTS {}", table.name), Vec::new());
    let measured = measured?;

    let baseline = run_baseline(opts)?;
    let folder = config_folder.unwrap_or(Path::new("."));
    let baseline_disk = run_baseline_on_disk(opts, folder)
        .with_context(|| format!("the on-disk baseline in {}", folder.display()))?;
    let duration_s = opts.duration.as_secs_f64();
    let ops = measured.ops();
    let throughput = ops as f64 / duration_s;
    let all = Stats::from_histogram(&measured.all()?);
    Ok(Report {
        workload: opts.workload,
        reads: opts.reads,
        clients: opts.clients,
        replicas: config.replicas.len(),
        rows: opts.rows,
        warmup_s: opts.warmup.as_secs_f64(),
        duration_s,
        ops,
        errors: measured.failures,
        throughput,
        ratio_p50: ratio(all.p50_us, baseline.all.p50_us),
        ratio_throughput: ratio(throughput, baseline.throughput),
        ratio_p50_disk: ratio(all.p50_us, baseline_disk.all.p50_us),
        ratio_throughput_disk: ratio(throughput, baseline_disk.throughput),
        baseline_disk,
        all,
        read: measured.stats(Op::Read, opts.workload),
        write: measured.stats(Op::Write, opts.workload),
        baseline,
    })
}

/// Runs set-up SQL through `client`; an SQL error is an error.
fn remote(client: &mut Client, sql: &str) -> Result<Outcome> {
    remote_with(client, sql, Vec::new())
}

fn remote_with(client: &mut Client, sql: &str, params: Vec<Value>) -> Result<Outcome> {
    let outcome = client.execute(sql, params)?;
    match &outcome.error {
        Some(e) => bail!("set-up SQL failed: {} (code {}): {sql:.80}", e.message, e.code),
        None => Ok(outcome),
    }
}

/// Inserts keys 1..=rows into `table` and checks the count.
fn preload(client: &mut Client, table: &Table, rows: usize) -> Result<()> {
    for (sql, params) in table.preload(rows) {
        remote_with(client, &sql, params)?;
    }
    let count = remote(client, &format!("SELECT count(*) FROM {}", table.name))?;
    let loaded = count.results.first().and_then(|r| r.rows.first()).and_then(|r| r.first());
    if loaded != Some(&Value::Integer(i64::try_from(rows)?)) {
        bail!("preloading {rows} rows left {loaded:?}");
    }
    Ok(())
}

/// Runs the workload against an unreplicated in-memory SQLite in this thread, on one
/// connection, for `min(duration, 3 s)` after `min(warmup, 0.5 s)`.
pub fn run_baseline(opts: &BenchOptions) -> Result<Baseline> {
    check(opts)?;
    let db = rusqlite::Connection::open_in_memory()?;
    let mode: String = db.query_row("PRAGMA journal_mode=MEMORY", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("memory") {
        bail!("journal_mode is {mode}, not memory");
    }
    run_baseline_with(&db, opts)
}

/// [`run_baseline`] on a database file in a new temporary folder inside `folder`, with
/// `journal_mode=WAL` and `synchronous=FULL` (every commit flushed); the folder goes after.
pub fn run_baseline_on_disk(opts: &BenchOptions, folder: &Path) -> Result<Baseline> {
    check(opts)?;
    let tmp = tempfile::Builder::new().prefix("vpr-bench-baseline").tempdir_in(folder)?;
    let db = rusqlite::Connection::open(tmp.path().join("baseline.db"))?;
    let mode: String = db.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("journal_mode is {mode}, not wal");
    }
    db.execute_batch("PRAGMA synchronous=FULL")?;
    let sync: i64 = db.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync != 2 {
        bail!("synchronous is {sync}, not FULL (2)");
    }
    run_baseline_with(&db, opts)
}

/// The baseline's run on `db`.
fn run_baseline_with(db: &rusqlite::Connection, opts: &BenchOptions) -> Result<Baseline> {
    let table = Table::fresh();
    db.execute_batch(&table.create())?;
    for (sql, params) in table.preload(opts.rows) {
        db.prepare(&sql)?.execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))?;
    }
    let duration = opts.duration.min(BASELINE_MAX);
    let clock = Clock::new(Instant::now(), opts.warmup.min(BASELINE_WARMUP_MAX), duration);
    let mut rng = Rng::new(u64::MAX);
    let mut measured = Measured::new();
    loop {
        let started = Instant::now();
        if started >= clock.end {
            break;
        }
        let op = Op::choose(opts.workload, &mut rng);
        let (sql, params) = table.request(op, &mut rng, opts.rows)?;
        execute_local(db, op, sql, &params)
            .with_context(|| format!("baseline {op:?} failed: {sql}"))?;
        if started >= clock.measure_from {
            measured.record(op, started.elapsed());
        }
    }
    let duration_s = duration.as_secs_f64();
    let ops = measured.ops();
    Ok(Baseline {
        connections: 1,
        duration_s,
        ops,
        throughput: ops as f64 / duration_s,
        all: Stats::from_histogram(&measured.all()?),
        read: measured.stats(Op::Read, opts.workload),
        write: measured.stats(Op::Write, opts.workload),
    })
}

fn check(opts: &BenchOptions) -> Result<()> {
    if opts.clients == 0 {
        bail!("need at least one client");
    }
    if opts.duration.is_zero() {
        bail!("the duration must be positive");
    }
    if opts.rows == 0 && opts.workload != Workload::Write {
        bail!("the {} workload reads preloaded rows: need at least one", opts.workload);
    }
    Ok(())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Runs the clients and merges what they measured.
fn run_clients(config: &ClusterConfig, table: &Table, opts: &BenchOptions) -> Result<Measured> {
    let shared = Shared {
        gate: Gate::new(opts.clients),
        start: OnceLock::new(),
        abort: AtomicBool::new(false),
        attempts: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    };
    let results: Vec<Result<Measured>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..opts.clients)
            .map(|index| {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("bench-client-{index}"))
                    .spawn_scoped(scope, move || client_loop(config, table, opts, index, shared))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| match t {
                Ok(handle) => {
                    handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))
                }
                Err(e) => {
                    // The clients that did start must not wait for this one.
                    shared.abort.store(true, Ordering::Relaxed);
                    shared.gate.open();
                    Err(anyhow::Error::new(e).context("spawning a client thread"))
                }
            })
            .collect()
    });
    let mut merged = Measured::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(m) => {
                merged.merge(&m)?;
                if first_error.is_none() {
                    first_error = m.first_error;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let attempts = shared.attempts.load(Ordering::Relaxed);
    let failures = merged.failures;
    if shared.abort.load(Ordering::Relaxed) || failures.saturating_mul(100) > attempts {
        bail!(
            "{failures} of {attempts} requests failed (over 1%); the first: {}",
            first_error.unwrap_or_default()
        );
    }
    if merged.ops() == 0 {
        bail!("no request completed while measuring");
    }
    Ok(merged)
}

/// What the client threads share.
struct Shared {
    /// All clients connected.
    gate: Gate,
    /// When the clients started (the first to pass the gate sets it).
    start: OnceLock<Instant>,
    /// Set to stop every client early.
    abort: AtomicBool,
    /// Requests sent, by all clients.
    attempts: AtomicU64,
    /// Requests that failed, by all clients.
    failures: AtomicU64,
}

impl Shared {
    /// Counts a failure, and stops the run once more than 1% of requests failed.
    fn failed(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let attempts = self.attempts.load(Ordering::Relaxed).max(1);
        if failures >= MIN_FAILURES_TO_ABORT && failures.saturating_mul(100) > attempts {
            self.abort.store(true, Ordering::Relaxed);
        }
    }
}

/// Where client threads wait until all have connected (unlike `std::sync::Barrier`, it can be
/// opened early, when a client thread fails to start).
struct Gate {
    arrived: Mutex<usize>,
    all_here: Condvar,
    expected: usize,
}

impl Gate {
    fn new(expected: usize) -> Gate {
        Gate { arrived: Mutex::new(0), all_here: Condvar::new(), expected }
    }

    /// Waits until `expected` threads arrived, or the gate is opened.
    fn wait(&self) {
        let mut arrived = self.arrived.lock().unwrap_or_else(PoisonError::into_inner);
        *arrived += 1;
        if *arrived >= self.expected {
            self.all_here.notify_all();
        }
        while *arrived < self.expected {
            arrived = self.all_here.wait(arrived).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Lets every waiting thread through.
    fn open(&self) {
        let mut arrived = self.arrived.lock().unwrap_or_else(PoisonError::into_inner);
        *arrived = self.expected;
        self.all_here.notify_all();
    }
}

/// One client thread: connect, wait for all, then a closed loop until the end.
fn client_loop(
    config: &ClusterConfig,
    table: &Table,
    opts: &BenchOptions,
    index: usize,
    shared: &Shared,
) -> Result<Measured> {
    let client = Client::connect(config).with_context(|| format!("connecting client {index}"));
    if client.is_err() {
        shared.abort.store(true, Ordering::Relaxed);
    }
    shared.gate.wait();
    let mut client = client?;
    client.set_read_level(opts.reads.into());
    let clock = Clock::new(*shared.start.get_or_init(Instant::now), opts.warmup, opts.duration);
    let mut rng = Rng::new(u64::try_from(index)?);
    let mut measured = Measured::new();
    while !shared.abort.load(Ordering::Relaxed) {
        let started = Instant::now();
        if started >= clock.end {
            break;
        }
        let op = Op::choose(opts.workload, &mut rng);
        let (sql, params) = table.request(op, &mut rng, opts.rows)?;
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        let result = client.execute(sql, params);
        let elapsed = started.elapsed();
        match verify(op, result) {
            Ok(()) if started >= clock.measure_from => measured.record(op, elapsed),
            Ok(()) => {}
            Err(why) => {
                measured.failures += 1;
                measured.first_error.get_or_insert(why);
                shared.failed();
            }
        }
    }
    Ok(measured)
}

/// Whether a request succeeded: a verified outcome without an SQL error (and a row, for a read
/// of a preloaded key).
fn verify(op: Op, result: Result<Outcome, ClientError>) -> Result<(), String> {
    let outcome = result.map_err(|e| e.to_string())?;
    if let Some(e) = outcome.error {
        return Err(format!("SQL error {}: {}", e.code, e.message));
    }
    if op == Op::Read && outcome.results.first().is_none_or(|r| r.rows.len() != 1) {
        return Err(format!("a read returned {:?}", outcome.results));
    }
    Ok(())
}

/// Executes one request's statement on the baseline connection, preparing it afresh.
fn execute_local(db: &rusqlite::Connection, op: Op, sql: &str, params: &[Value]) -> Result<()> {
    let mut statement = db.prepare(sql)?;
    let params = rusqlite::params_from_iter(params.iter().map(to_sqlite));
    match op {
        Op::Write => {
            statement.execute(params)?;
        }
        Op::Read => {
            let mut rows = statement.query(params)?;
            let row = rows.next()?.context("a read found no row")?;
            let value: rusqlite::types::Value = row.get(0)?;
            std::hint::black_box(value);
        }
    }
    Ok(())
}

fn to_sqlite(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Integer(i) => V::Integer(*i),
        Value::Real(r) => V::Real(*r),
        Value::Text(t) => V::Text(String::from_utf8_lossy(t).into_owned()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

/// The measuring window: warm-up from `start`, then recording until `end`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    measure_from: Instant,
    end: Instant,
}

impl Clock {
    fn new(start: Instant, warmup: Duration, duration: Duration) -> Clock {
        let measure_from = start + warmup;
        Clock { measure_from, end: measure_from + duration }
    }
}

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

impl Op {
    /// The next request of `workload`.
    fn choose(workload: Workload, rng: &mut Rng) -> Op {
        match workload {
            Workload::Write => Op::Write,
            Workload::Read => Op::Read,
            Workload::Mixed if rng.below(100) < MIXED_WRITE_PERCENT => Op::Write,
            Workload::Mixed => Op::Read,
        }
    }
}

/// The benchmark's table and its statements.
#[derive(Debug)]
struct Table {
    name: String,
    insert: String,
    select: String,
}

impl Table {
    /// A table with a name no earlier run used.
    fn fresh() -> Table {
        let mut suffix = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut suffix);
        Table::named(format!("bench_kv_{}", hex::encode(suffix)))
    }

    fn named(name: String) -> Table {
        Table {
            insert: format!("INSERT INTO {name}(v) VALUES (?1)"),
            select: format!("SELECT v FROM {name} WHERE k = ?1"),
            name,
        }
    }

    fn create(&self) -> String {
        format!("CREATE TABLE {}(k INTEGER PRIMARY KEY, v TEXT)", self.name)
    }

    /// Requests that insert keys 1..=rows, [`PRELOAD_BATCH`] rows each.
    fn preload(&self, rows: usize) -> Vec<(String, Vec<Value>)> {
        let mut rng = Rng::new(u64::MAX - 1);
        (1..=rows)
            .step_by(PRELOAD_BATCH)
            .map(|first| {
                let last = rows.min(first + PRELOAD_BATCH - 1);
                let values: Vec<String> =
                    (first..=last).enumerate().map(|(i, k)| format!("({k}, ?{})", i + 1)).collect();
                let sql = format!("INSERT INTO {}(k, v) VALUES {}", self.name, values.join(", "));
                let params = (first..=last).map(|_| Value::Text(rng.text(VALUE_LEN))).collect();
                (sql, params)
            })
            .collect()
    }

    /// One request of kind `op`: its SQL and parameters.
    fn request(&self, op: Op, rng: &mut Rng, rows: usize) -> Result<(&str, Vec<Value>)> {
        Ok(match op {
            Op::Write => (&self.insert, vec![Value::Text(rng.text(VALUE_LEN))]),
            Op::Read => {
                let key = rng.below(u64::try_from(rows)?) + 1;
                (&self.select, vec![Value::Integer(i64::try_from(key)?)])
            }
        })
    }
}

/// Latencies of the requests recorded, by kind, and failures.
#[derive(Debug)]
struct Measured {
    read: Histogram<u64>,
    write: Histogram<u64>,
    failures: u64,
    first_error: Option<String>,
}

impl Measured {
    fn new() -> Measured {
        Measured { read: histogram(), write: histogram(), failures: 0, first_error: None }
    }

    fn record(&mut self, op: Op, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        match op {
            Op::Read => self.read.saturating_record(ns),
            Op::Write => self.write.saturating_record(ns),
        }
    }

    fn merge(&mut self, other: &Measured) -> Result<()> {
        self.read.add(&other.read)?;
        self.write.add(&other.write)?;
        self.failures += other.failures;
        Ok(())
    }

    fn ops(&self) -> u64 {
        self.read.len() + self.write.len()
    }

    fn all(&self) -> Result<Histogram<u64>> {
        let mut all = self.read.clone();
        all.add(&self.write)?;
        Ok(all)
    }

    /// The statistics of `op`, if `workload` sends such requests.
    fn stats(&self, op: Op, workload: Workload) -> Option<Stats> {
        match (op, workload) {
            (Op::Read, Workload::Write) | (Op::Write, Workload::Read) => None,
            (Op::Read, _) => Some(Stats::from_histogram(&self.read)),
            (Op::Write, _) => Some(Stats::from_histogram(&self.write)),
        }
    }
}

/// A histogram of nanoseconds, 1 ns to an hour, three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("constant bounds are valid")
}

/// xorshift64*: small, fast, and reproducible from a seed; not for anything secret.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// A generator from `seed` (scrambled by SplitMix64, so nearby seeds differ at once).
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x9e37_79b9_7f4a_7c15 } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0), by Lemire's multiply-shift (bias below 2^-32 for small n).
    fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// `len` random letters and digits.
    fn text(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8; 62] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len).map(|_| ALPHABET[usize::try_from(self.below(62)).unwrap_or(0)]).collect()
    }
}

mod report;

pub use report::{Baseline, Report, Stats};

#[cfg(test)]
mod tests;
