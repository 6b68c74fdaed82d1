//! Fault drills on local clusters of real replica processes (simulation backend, ZeroMQ on
//! loopback), done as an operator would: `kill -9` of the pid in a replica's pid file, and
//! `vpr replica` started again with the same command line.
//!
//! - The primary killed under a write workload: a new primary within the configured bound,
//!   every acknowledged write present exactly once, live replicas equal (authenticated status).
//! - A backup killed and restarted: it catches up (from its sealed state, by snapshot) and
//!   then counts towards commits.
//! - A backup away for more updates than the primary retains: it catches up by snapshot.
//! - `vpr status` after a failover.
//! - `VPR_DRILLS=<count>`: repeated primary kills on one cluster, each killed replica restarted
//!   and caught up before the next primary is killed; prints the failover times.
//!
//! The drills run one at a time (a lock): failover times on a small machine mean little while
//! other clusters compete for it. Replicas log at `info` (`VPR_DRILLS_LOG` sets another filter,
//! e.g. `debug`). A failed drill keeps its cluster folder (logs, status and pid files) and
//! prints where it is; `VPR_DRILLS_KEEP=1` keeps every drill's.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vpr_host::client::Client;
use vpr_host::config::{ClusterConfig, Timeouts};
use vpr_host::launcher::{files, LocalCluster, Options};
use vpr_proto::msg::{StatusReport, Value};

const VPR: &str = env!("CARGO_BIN_EXE_vpr");

/// The primary retains this many updates for backups that have not acknowledged them
/// (`retained_updates` in the cluster configuration, as the launcher writes it); a backup
/// further behind needs a snapshot.
const RETAINED_UPDATES: u64 = 1024;

/// Generous bound on waits for things that take a moment (a group forming, a replica catching
/// up): reaching it fails the drill.
const PATIENCE: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Shorter than the defaults, so that a drill takes seconds: a backup suspects a primary it
/// has not heard from for a second (heartbeats every 100 ms), doubling up to 4 s after view
/// changes that brought no progress; a client tries the primary for 500 ms, then every
/// replica, for 10 s in all.
fn drill_timeouts() -> Timeouts {
    Timeouts {
        request_ms: 500,
        request_attempts: 20,
        retransmit_ms: 100,
        join_ms: 3000,
        heartbeat_ms: 100,
        view_change_ms: 1000,
        view_change_max_ms: 4000,
    }
}

/// A failover must end (a verified reply from the new primary) within the longest suspicion
/// timeout plus two client attempts.
fn failover_bound(t: &Timeouts) -> Duration {
    Duration::from_millis(t.view_change_max_ms + 2 * t.request_ms)
}

/// A local cluster in a folder that is kept (and named on stderr) if the drill fails.
struct Drill {
    dir: Option<tempfile::TempDir>,
    cluster: LocalCluster,
    config: ClusterConfig,
    config_path: PathBuf,
}

impl Drill {
    fn start(n: u16) -> Drill {
        let dir = tempfile::Builder::new().prefix("vpr-drill-").tempdir().expect("temp dir");
        let options = Options {
            timeouts: drill_timeouts(),
            log_filter: Some(std::env::var("VPR_DRILLS_LOG").unwrap_or_else(|_| "info".into())),
            ..Options::default()
        };
        let mut cluster =
            LocalCluster::start_with(dir.path(), n, Path::new(VPR), &options).expect("start");
        let config_path = cluster.wait_ready(PATIENCE).expect("cluster forms");
        let config = ClusterConfig::load(&config_path).expect("client config");
        Drill { dir: Some(dir), cluster, config, config_path }
    }

    fn path(&self) -> &Path {
        self.cluster.dir()
    }

    fn log(&self, id: u16) -> String {
        std::fs::read_to_string(self.path().join(files::log(id))).unwrap_or_default()
    }

    /// `kill -9` of the pid in replica `id`'s pid file; returns once the process is gone.
    fn kill9(&mut self, id: u16) {
        let pid_file = self.path().join(files::pid(id));
        let pid = std::fs::read_to_string(&pid_file).expect("pid file");
        let pid = pid.trim();
        assert_eq!(
            pid.parse::<u32>().ok(),
            self.cluster.pid(id),
            "{} does not name replica {id}'s process",
            pid_file.display()
        );
        let killed = Command::new("kill").args(["-9", pid]).status().expect("kill");
        assert!(killed.success(), "kill -9 {pid}: {killed}");
        let exit = self.cluster.wait_exit(id, Duration::from_secs(10)).expect("replica exits");
        assert_eq!(exit.signal(), Some(9), "replica {id} ended otherwise: {exit}");
    }

    /// Restarts replica `id` (same command line) and checks it restarts from sealed state.
    fn restart(&mut self, id: u16) {
        let before = self.log(id).len();
        self.cluster.restart(id).expect("restart");
        wait_for(PATIENCE, "the restarted replica to say it restarts from sealed state", || {
            self.log(id).get(before..).is_some_and(|l| l.contains("restarts from its sealed state"))
        });
    }

    /// The primary, once the status files of f + 1 running replicas name one that runs and
    /// is not `not`.
    fn wait_primary(&mut self, not: Option<u16>, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.cluster.primary().filter(|p| Some(*p) != not) {
                return p;
            }
            assert!(Instant::now() < deadline, "no primary (other than {not:?}) in {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A client for status queries that gives up on a dead replica after a second.
    fn status_client(&self) -> (Client, ClusterConfig) {
        let mut config = self.config.clone();
        config.timeouts.request_attempts = 2;
        (Client::connect(&config).expect("status client"), config)
    }

    /// Waits until replicas `live` report (authenticated by their Managers) the same view,
    /// primary, committed update and database hash, at least `at_least`; returns the reports.
    fn converged(&self, live: &[u16], at_least: u64) -> Vec<StatusReport> {
        let (client, config) = self.status_client();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let reports: Vec<_> = client
                .status(&config)
                .into_iter()
                .filter(|(id, _)| live.contains(id))
                .map(|(_, r)| r)
                .collect();
            let ok: Vec<&StatusReport> = reports.iter().filter_map(|r| r.as_ref().ok()).collect();
            if ok.len() == live.len()
                && ok[0].committed >= at_least
                && ok.iter().all(|r| {
                    (r.view, r.primary, r.committed, r.digest)
                        == (ok[0].view, ok[0].primary, ok[0].committed, ok[0].digest)
                })
            {
                return ok.into_iter().cloned().collect();
            }
            assert!(
                Instant::now() < deadline,
                "replicas {live:?} did not converge (at least update {at_least}): {reports:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        self.cluster.stop();
        let keep = std::env::var_os("VPR_DRILLS_KEEP").is_some();
        if std::thread::panicking() || keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster folder kept: {}", dir.keep().display());
            }
        }
    }
}

/// Polls `done` every 10 ms until it holds; fails the drill after `within`.
fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A write whose verified reply came back: the value inserted, when the request was first
/// sent, when the reply verified.
#[derive(Clone, Copy, Debug)]
struct Ack {
    value: i64,
    sent: Instant,
    done: Instant,
}

/// Client threads, each inserting unique values into `t(v)` one at a time through its own
/// verified client, until stopped or until a request fails (which fails the drill).
struct Workload {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    count: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Workload {
    fn start(config: &ClusterConfig, threads: i64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (config, stop) = (config.clone(), Arc::clone(&stop));
                let (acks, count) = (Arc::clone(&acks), Arc::clone(&count));
                std::thread::spawn(move || {
                    let mut client = Client::connect(&config).map_err(|e| e.to_string())?;
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let value = t * 1_000_000_000 + i;
                        let sent = Instant::now();
                        let sql = format!("INSERT INTO t(v) VALUES ({value})");
                        match client.execute(&sql, Vec::new()) {
                            Ok(o) if o.error.is_none() => {
                                let done = Instant::now();
                                lock(&acks).push(Ack { value, sent, done });
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(o) => return Err(format!("{sql}: {:?}", o.error)),
                            Err(e) => return Err(format!("{sql}: {e}")),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        Workload { stop, acks, count, threads }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Fails the drill with a client thread's error, if one has ended.
    fn check(&mut self) {
        if let Some(i) = self.threads.iter().position(JoinHandle::is_finished) {
            let result = self.threads.remove(i).join().expect("client thread panicked");
            self.stop.store(true, Ordering::Relaxed);
            panic!("the workload stopped: {result:?}");
        }
    }

    /// Waits until `n` writes are acknowledged in all.
    fn wait_count(&mut self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.count() < n {
            self.check();
            assert!(Instant::now() < deadline, "{} of {n} writes acknowledged", self.count());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// When the first write sent at or after `since` was acknowledged.
    fn first_ack_sent_after(&mut self, since: Instant, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            self.check();
            let first = lock(&self.acks).iter().filter(|a| a.sent >= since).map(|a| a.done).min();
            if let Some(done) = first {
                return done;
            }
            assert!(Instant::now() < deadline, "no write sent after the kill commits");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the clients (each finishes its request in progress) and returns every
    /// acknowledged write.
    fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let result = thread.join().expect("client thread panicked");
            assert_eq!(result, Ok(()), "a client's write failed");
        }
        let acks = lock(&self.acks).clone();
        acks
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn create_table(config: &ClusterConfig) {
    let mut client = Client::connect(config).expect("connect");
    let out = client.execute("CREATE TABLE t(v INTEGER NOT NULL)", Vec::new()).expect("create");
    assert!(out.error.is_none(), "{:?}", out.error);
}

/// Through a verified read: the table holds exactly the acknowledged values, each once.
fn assert_exactly_once(config: &ClusterConfig, acked: impl IntoIterator<Item = i64>) {
    let acked: Vec<i64> = acked.into_iter().collect();
    let mut client = Client::connect(config).expect("connect");
    // In pages of 60 rows: one request's results stay within the service's result budget
    // (vpr_pal::service::DEFAULT_MAX_RESULT_BYTES, 8 KiB).
    let mut rows: Vec<Vec<Value>> = Vec::new();
    loop {
        let after =
            rows.last().and_then(|r| r.first().cloned()).unwrap_or(Value::Integer(i64::MIN));
        let out = client
            .execute(
                "SELECT v, count(*) FROM t WHERE v > ?1 GROUP BY v ORDER BY v LIMIT 60",
                vec![after],
            )
            .expect("verified read");
        assert!(out.error.is_none(), "{:?}", out.error);
        if out.results[0].rows.is_empty() {
            break;
        }
        rows.extend(out.results[0].rows.iter().cloned());
    }
    let present: BTreeMap<i64, i64> = rows
        .iter()
        .map(|row| match row.as_slice() {
            [Value::Integer(v), Value::Integer(n)] => (*v, *n),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    let twice: Vec<_> = present.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "values present more than once: {twice:?}");
    let missing: Vec<&i64> = acked.iter().filter(|v| !present.contains_key(v)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    // Every client's last request was answered, so nothing is in doubt either.
    assert_eq!(present.len(), acked.len(), "values present that were never acknowledged");
}

/// One failover under the workload: kills the primary, waits for the first verified reply to
/// a write sent after it died, and for the status files to name a new primary. Returns the
/// killed replica, the new primary and the failover time (kill to that reply).
fn fail_over(drill: &mut Drill, workload: &mut Workload) -> (u16, u16, Duration) {
    let old = drill.wait_primary(None, PATIENCE);
    let killed_at = Instant::now();
    drill.kill9(old);
    let dead_at = Instant::now();
    let bound = failover_bound(&drill.config.timeouts);
    let first = workload.first_ack_sent_after(dead_at, PATIENCE);
    let failover = first - killed_at;
    let new = drill.wait_primary(Some(old), PATIENCE);
    assert!(
        failover < bound,
        "failover took {failover:?}, more than {bound:?}; replica logs in {}",
        drill.path().display()
    );
    (old, new, failover)
}

#[test]
fn killing_the_primary_elects_a_new_one_and_loses_no_acknowledged_write() {
    primary_kill_drill(3);
}

/// With five replicas, four backups see the clients' retransmissions during the failover.
#[test]
fn killing_the_primary_of_five_changes_the_view_once() {
    primary_kill_drill(5);
}

/// Kills the primary of `n` replicas under a two-client write workload: the clients fail
/// over by themselves, within the bound; one view change makes the next replica primary;
/// every acknowledged write is present exactly once; the live replicas agree (authenticated
/// status, and the status files their hosts write).
fn primary_kill_drill(n: u16) {
    let _serial = serial();
    let started = Instant::now();
    let mut drill = Drill::start(n);
    create_table(&drill.config);
    let mut workload = Workload::start(&drill.config, 2);
    workload.wait_count(40, PATIENCE);
    let (old, new, failover) = fail_over(&mut drill, &mut workload);
    let after = workload.count();
    workload.wait_count(after + 40, PATIENCE);
    let acks = workload.finish();
    println!(
        "failover ({n} replicas): replica {old} killed, replica {new} primary, first verified \
         reply after {} ms ({} writes acknowledged)",
        failover.as_millis(),
        acks.len()
    );
    assert_exactly_once(&drill.config, acks.iter().map(|a| a.value));
    let live: Vec<u16> = (0..n).filter(|id| *id != old).collect();
    // Writes are batched: fewer updates than writes.
    let reports = drill.converged(&live, 1);
    let view = (reports[0].view, reports[0].primary);
    assert_eq!((old, view), (0, (1, 1)), "view 0's primary killed, view 1's takes over");
    assert_eq!(new, 1);
    // The status files their hosts write (at most every 100 ms) come to say the same.
    let expected = (1, new, reports[0].committed, reports[0].digest.to_string());
    wait_for(PATIENCE, "the status files to agree", || {
        live.iter().all(|id| {
            drill
                .cluster
                .status(*id)
                .is_ok_and(|f| (f.view, f.primary, f.committed, f.digest.clone()) == expected)
        })
    });
    println!("drill took {:?}", started.elapsed());
}

#[test]
fn a_killed_backup_restarted_catches_up() {
    let _serial = serial();
    let started = Instant::now();
    let mut drill = Drill::start(3);
    create_table(&drill.config);
    let primary = drill.wait_primary(None, PATIENCE);
    let (backup, other) = match primary {
        0 => (2, 1),
        1 => (2, 0),
        _ => (1, 0),
    };
    let mut client = Client::connect(&drill.config).expect("connect");
    let mut write = |value: i64| {
        let out = client.execute(&format!("INSERT INTO t(v) VALUES ({value})"), Vec::new());
        let out = out.unwrap_or_else(|e| panic!("write {value}: {e}"));
        assert!(out.error.is_none(), "{:?}", out.error);
    };
    for v in 0..10 {
        write(v);
    }
    drill.kill9(backup);
    for v in 10..30 {
        write(v);
    }
    let restarted_at = Instant::now();
    drill.restart(backup);
    let reports = drill.converged(&[0, 1, 2], 31);
    println!("restarted backup {backup} caught up in {:?}", restarted_at.elapsed());
    assert!(reports.iter().all(|r| r.primary == primary), "{reports:?}");
    // It holds the state, not just the counter: with the other backup down, writes commit
    // only with its acknowledgements.
    drill.kill9(other);
    for v in 30..40 {
        write(v);
    }
    let reports = drill.converged(&[primary, backup], 41);
    assert_eq!(reports.len(), 2);
    assert_exactly_once(&drill.config, 0..40);
    println!("drill took {:?}", started.elapsed());
}

#[test]
fn a_backup_away_for_long_catches_up_by_snapshot() {
    let _serial = serial();
    let started = Instant::now();
    let mut drill = Drill::start(3);
    create_table(&drill.config);
    let primary = drill.wait_primary(None, PATIENCE);
    let backup = if primary == 2 { 1 } else { 2 };
    let at_kill = drill.converged(&[0, 1, 2], 1)[0].committed;
    drill.kill9(backup);
    // One client, one write at a time: one update per write.
    let writes = RETAINED_UPDATES + 76;
    let mut client = Client::connect(&drill.config).expect("connect");
    let writing = Instant::now();
    for value in 0..writes {
        let out = client.execute(&format!("INSERT INTO t(v) VALUES ({value})"), Vec::new());
        let out = out.unwrap_or_else(|e| panic!("write {value}: {e}"));
        assert!(out.error.is_none(), "{:?}", out.error);
    }
    let writing = writing.elapsed();
    let live: Vec<u16> = (0..3).filter(|id| *id != backup).collect();
    let target = drill.converged(&live, at_kill + writes)[0].committed;
    assert!(
        target - at_kill > RETAINED_UPDATES,
        "only {} updates committed while the backup was away",
        target - at_kill
    );
    let primary_memory = rss_kib(drill.cluster.pid(primary).expect("primary runs"));
    println!(
        "{writes} sequential writes in {writing:?} ({:.1} ms each); the primary's resident \
         memory then: {primary_memory:?} KiB",
        writing.as_secs_f64() * 1000.0 / f64::from(u32::try_from(writes).expect("writes")),
    );
    let log_before = drill.log(backup).len();
    let restarted_at = Instant::now();
    drill.restart(backup);
    let reports = drill.converged(&[0, 1, 2], target);
    println!(
        "backup {backup} caught up from update {at_kill} to {} in {:?}",
        reports[0].committed,
        restarted_at.elapsed()
    );
    let log = drill.log(backup);
    let adopted = log[log_before..]
        .lines()
        .find(|l| l.contains("adopted a snapshot"))
        .unwrap_or_else(|| panic!("no snapshot adopted; replica {backup}'s log:\n{log}"));
    println!("replica {backup}: {}", plain(adopted));
    assert_exactly_once(&drill.config, 0..i64::try_from(writes).expect("writes"));
    println!("drill took {:?}", started.elapsed());
}

/// A log line without its terminal colour codes.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            out.push(c);
        }
    }
    out
}

/// Resident memory of a process, from /proc (Linux), if readable.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One `vpr status` row: view, primary, state counter, database hash.
type Row = (u64, u16, u64, String);

/// `vpr status`: its exit code and rows by replica (`None` for a replica that did not answer).
fn vpr_status(config: &Path) -> (Option<i32>, BTreeMap<u16, Option<Row>>) {
    let out = Command::new(VPR).arg("status").arg("--config").arg(config).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().map(str::split_whitespace).map(Iterator::collect::<Vec<_>>),
        Some(vec!["replica", "view", "primary", "state", "database", "digest"]),
        "{text}"
    );
    let rows = lines
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = fields[0].parse().unwrap_or_else(|_| panic!("bad row {line:?}"));
            let row = match fields[1..] {
                [view, primary, state, hash] => Some((
                    view.parse().expect("view"),
                    primary.parse().expect("primary"),
                    state.parse().expect("state"),
                    hash.to_owned(),
                )),
                _ => {
                    assert!(fields[1] == "--", "bad row {line:?}");
                    None
                }
            };
            (id, row)
        })
        .collect();
    (out.status.code(), rows)
}

#[test]
fn vpr_status_after_a_failover_shows_the_new_view_primary_and_equal_hashes() {
    let _serial = serial();
    let started = Instant::now();
    let mut drill = Drill::start(3);
    create_table(&drill.config);
    let mut workload = Workload::start(&drill.config, 1);
    workload.wait_count(20, PATIENCE);
    let (old, new, _) = fail_over(&mut drill, &mut workload);
    let acks = workload.finish();
    let live: Vec<u16> = (0..3).filter(|id| *id != old).collect();
    assert!(!acks.is_empty());
    let expected = drill.converged(&live, 1);
    let (view, state, hash) =
        (expected[0].view, expected[0].committed, expected[0].digest.to_string());
    // With the old primary still down (a configuration that gives up on it after a second).
    let mut quick = drill.config.clone();
    quick.timeouts.request_attempts = 2;
    let quick_path = drill.path().join("quick.toml");
    quick.save(&quick_path).expect("save");
    let (code, rows) = vpr_status(&quick_path);
    assert_eq!(code, Some(2), "a replica is down: {rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[&old], None, "the killed replica answered: {rows:?}");
    for id in &live {
        assert_eq!(rows[id], Some((view, new, state, hash.clone())), "replica {id}: {rows:?}");
    }
    // Restarted and caught up, all three agree.
    drill.restart(old);
    let expected = drill.converged(&[0, 1, 2], state);
    let (code, rows) = vpr_status(&drill.config_path);
    assert_eq!(code, Some(0), "{rows:?}");
    let row = Some((expected[0].view, new, expected[0].committed, expected[0].digest.to_string()));
    assert!(view >= 1 && rows.len() == 3 && rows.values().all(|r| *r == row), "{rows:?}");
    println!("drill took {:?}", started.elapsed());
}

/// `VPR_DRILLS=<count>`: `count` primary kills on one cluster under a two-client write
/// workload. After each failover the killed replica is restarted, and the next primary is
/// killed only once the restarted one has caught up (in the new view, and `max_in_flight`
/// updates past the state the primary had when it restarted). Without the variable this does nothing: the single failover of the
/// first drill above is the default measurement.
#[test]
fn repeated_primary_kills_measure_failover_time() {
    let Some(count) = std::env::var("VPR_DRILLS").ok() else {
        eprintln!("VPR_DRILLS not set: no repeated drills");
        return;
    };
    let count: usize = count.parse().expect("VPR_DRILLS: a number of drills");
    let _serial = serial();
    let mut drill = Drill::start(3);
    create_table(&drill.config);
    let mut workload = Workload::start(&drill.config, 2);
    let mut times = Vec::new();
    for i in 0..count {
        let before = workload.count();
        workload.wait_count(before + 40, PATIENCE);
        let (old, new, failover) = fail_over(&mut drill, &mut workload);
        println!("drill {}: replica {old} killed, replica {new} primary after {failover:?}", i + 1);
        times.push(failover);
        let after = workload.count();
        workload.wait_count(after + 20, PATIENCE);
        // A restarted replica counts in view changes only once it committed `max_in_flight`
        // updates past its state counter (it may have acknowledged that many before it lost
        // its memory); the next primary is killed only after that.
        let target = drill.cluster.status(new).expect("status file").committed
            + u64::from(drill.config.max_in_flight);
        drill.restart(old);
        let (client, config) = drill.status_client();
        wait_for(PATIENCE, "the restarted replica to catch up", || {
            workload.check();
            let reports: BTreeMap<u16, StatusReport> = client
                .status(&config)
                .into_iter()
                .filter_map(|(id, r)| Some((id, r.ok()?)))
                .collect();
            matches!((reports.get(&new), reports.get(&old)), (Some(p), Some(r))
                if r.view == p.view && r.primary == new && r.committed >= target)
        });
    }
    let acks = workload.finish();
    assert_exactly_once(&drill.config, acks.iter().map(|a| a.value));
    drill.converged(&[0, 1, 2], 1);
    times.sort();
    let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "failover: {} drills, p50 {} ms, max {} ms ({} writes acknowledged)",
        times.len(),
        p50.as_millis(),
        max.as_millis(),
        acks.len()
    );
}
