//! Durable state (docs/design.md, "Durable state"): local clusters of real replica processes
//! on the simulation backend, every replica killed (SIGKILL) under a write load and the
//! cluster started again from its folder; and a host that presents a tampered, truncated,
//! older or foreign log, refused by the Manager with a message naming the check, after which
//! the replica recovers by state transfer.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpr_host::client::Client;
use vpr_host::config::{ClusterConfig, Timeouts};
use vpr_host::launcher::{files, LocalCluster, Options};
use vpr_host::store::LOG_DIR;
use vpr_proto::msg::Value;

const VPR: &str = env!("CARGO_BIN_EXE_vpr");

/// Quick timeouts: a whole-cluster restart needs a view change (the old primary does not
/// lead again), so the backups suspect it soon.
fn options() -> Options {
    Options {
        timeouts: Timeouts {
            retransmit_ms: 100,
            heartbeat_ms: 100,
            view_change_ms: 600,
            view_change_max_ms: 4_800,
            ..Timeouts::default()
        },
        // A checkpoint every few dozen writes: kills land during checkpoints too.
        checkpoint_bytes: Some(64 << 10),
        ..Options::default()
    }
}

/// A client that gives up soon (the writer runs while replicas are killed).
fn client(config_path: &Path) -> Client {
    let mut config = ClusterConfig::load(config_path).expect("config");
    config.timeouts.request_ms = 400;
    config.timeouts.request_attempts = 3;
    for _ in 0..100 {
        if let Ok(client) = Client::connect(&config) {
            return client;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot connect to the cluster");
}

/// Every value in table `t`, in order, read in pages (one reply stays within the result
/// budget), retrying while a view change is under way.
fn values(client: &mut Client) -> Vec<i64> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = out.last().copied().unwrap_or(-1);
        let page = client.execute(
            "SELECT v FROM t WHERE v > ?1 ORDER BY v LIMIT 500",
            vec![Value::Integer(after)],
        );
        match page {
            Ok(outcome) => {
                assert!(outcome.error.is_none(), "{:?}", outcome.error);
                let rows = &outcome.results[0].rows;
                if rows.is_empty() {
                    return out;
                }
                out.extend(rows.iter().map(|r| match r[0] {
                    Value::Integer(v) => v,
                    ref other => panic!("not an integer: {other:?}"),
                }));
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("read retried: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("reads fail: {e}"),
        }
    }
}

/// Writes rows `from..` until `stop`; the values whose insert was acknowledged.
fn writer(config: PathBuf, from: i64, stop: Arc<AtomicBool>) -> Vec<i64> {
    let mut client = client(&config);
    let mut acknowledged = Vec::new();
    let mut v = from;
    while !stop.load(Ordering::Relaxed) {
        match client.execute("INSERT INTO t(v) VALUES (?1)", vec![Value::Integer(v)]) {
            Ok(outcome) if outcome.error.is_none() => acknowledged.push(v),
            Ok(outcome) => panic!("insert {v}: {:?}", outcome.error),
            Err(_) => {}
        }
        v += 1;
    }
    acknowledged
}

/// Under a write load, every replica is killed at a random moment (seeded) and the cluster is
/// started again from its folder, 20 times: every acknowledged write is there, none twice,
/// and the replicas converge on one database.
#[test]
fn whole_cluster_kills_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = Path::new(VPR);
    let mut cluster = LocalCluster::start_with(dir.path(), 3, exe, &options()).expect("start");
    let config = cluster.wait_ready(Duration::from_secs(30)).expect("forms");
    {
        let mut c = client(&config);
        c.execute("CREATE TABLE t(v INTEGER PRIMARY KEY)", Vec::new()).expect("create");
    }
    // A seeded xorshift: the kill moments are the same on every run.
    let mut seed: u64 = 0x5eed_0d15;
    let mut pause_ms = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        100 + seed % 600
    };
    let mut acknowledged: BTreeSet<i64> = BTreeSet::new();
    let mut next = 0i64;
    for round in 0..20 {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (config, stop) = (config.clone(), stop.clone());
            std::thread::spawn(move || writer(config, next, stop))
        };
        std::thread::sleep(Duration::from_millis(pause_ms()));
        // SIGKILL, one replica after the other, as fast as the launcher can.
        cluster.stop();
        stop.store(true, Ordering::Relaxed);
        let acked = handle.join().expect("writer");
        next = acked.last().map_or(next, |v| v + 1).max(next + 10_000);
        acknowledged.extend(&acked);
        drop(cluster);
        cluster = LocalCluster::reopen(dir.path(), exe, None).expect("restart");
        cluster.wait_ready(Duration::from_secs(30)).expect("forms again");
        let present = values(&mut client(&config));
        let set: BTreeSet<i64> = present.iter().copied().collect();
        assert_eq!(set.len(), present.len(), "round {round}: a row twice");
        let lost: Vec<_> = acknowledged.difference(&set).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged writes lost: {lost:?}");
        eprintln!("round {round}: {} acknowledged, {} rows", acked.len(), present.len());
    }
    assert!(acknowledged.len() > 20, "the load wrote too little: {}", acknowledged.len());
    common::converged(dir.path(), 3);
}

/// One way a host can tamper with a replica's log between a stop and a restart: given its
/// data folder, another replica's, and a copy of its log folder made half-way.
type Tamper = fn(&Path, &Path, &Path);

/// Copies the files of folder `from` into a new folder `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// The log segments of a replica's data folder, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join(LOG_DIR))
        .expect("log folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// Frames of a segment: (offset, length) of each record.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, len));
        at += 4 + len;
    }
    out
}

/// A cluster with a table and some rows, stopped; replica 2's log is tampered with, the
/// cluster started again: replica 2's log is refused with `expected` in the message, it
/// catches up from the others, and every row is there.
fn tampered(tamper: Tamper, expected: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = Path::new(VPR);
    // The default checkpoint size: each replica's log is one segment here.
    let options = Options { checkpoint_bytes: None, ..options() };
    let mut cluster = LocalCluster::start_with(dir.path(), 3, exe, &options).expect("start");
    let config = cluster.wait_ready(Duration::from_secs(30)).expect("forms");
    let mut c = client(&config);
    let data = dir.path().join(files::data(2));
    let saved = dir.path().join("saved-log");
    c.execute("CREATE TABLE t(v INTEGER PRIMARY KEY)", Vec::new()).expect("create");
    for v in 0..20 {
        c.execute("INSERT INTO t(v) VALUES (?1)", vec![Value::Integer(v)]).expect("insert");
        if v == 9 {
            common::converged(dir.path(), 3);
            copy_folder(&data.join(LOG_DIR), &saved);
        }
    }
    common::converged(dir.path(), 3);
    cluster.stop();
    drop(cluster);
    tamper(&data, &dir.path().join(files::data(1)), &saved);
    let before: Vec<Vec<u8>> = segments(&data).iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mut cluster = LocalCluster::reopen(dir.path(), exe, None).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).expect("forms again");
    // Replica 2 says how it restarted (it may still be starting when the others formed).
    let mut log = String::new();
    for _ in 0..200 {
        log = std::fs::read_to_string(dir.path().join(files::log(2))).expect("replica 2's log");
        if log.contains("restarts") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log.contains("its log in") && log.contains(expected),
        "replica 2 was not refused for {expected:?}:\n{log}"
    );
    assert_eq!(values(&mut client(&config)), (0..20).collect::<Vec<_>>());
    c = client(&config);
    c.execute("INSERT INTO t(v) VALUES (20)", Vec::new()).expect("insert after");
    common::converged(dir.path(), 3);
    // The refused log stays on disk as it was, set aside; the replica keeps a new one.
    let refused = data.join(format!("{LOG_DIR}.refused.0"));
    let kept: Vec<Vec<u8>> = std::fs::read_dir(&refused)
        .map(|entries| {
            let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
        })
        .unwrap_or_default();
    assert_eq!(kept, before, "the refused log was not kept as it was");
    assert!(!segments(&data).is_empty(), "no new log");
}

#[test]
fn a_flipped_byte_is_refused() {
    tampered(
        |data, _, _| {
            // A byte inside the oldest record kept (a checkpoint the counter covers: the last
            // record may be one the counter does not, which a restart ignores).
            let segment = segments(data).remove(0);
            let mut bytes = std::fs::read(&segment).unwrap();
            let (_, len) = frames(&bytes)[0];
            bytes[4 + len / 2] ^= 1;
            std::fs::write(&segment, bytes).unwrap();
        },
        "does not open",
    );
}

#[test]
fn a_truncated_log_is_refused() {
    tampered(
        |data, _, _| {
            // The last two records go: the last one the counter covers goes with them (the
            // last record may be one it does not cover, which a restart ignores anyway).
            let segment = segments(data).pop().expect("a segment");
            let bytes = std::fs::read(&segment).unwrap();
            let f = frames(&bytes);
            assert!(f.len() >= 3, "{} records", f.len());
            std::fs::write(&segment, &bytes[..f[f.len() - 2].0]).unwrap();
        },
        "a truncated or older log",
    );
}

#[test]
fn swapped_records_are_refused() {
    tampered(
        |data, _, _| {
            let segment = segments(data).pop().expect("a segment");
            let bytes = std::fs::read(&segment).unwrap();
            let f = frames(&bytes);
            assert!(f.len() >= 4, "{} records", f.len());
            // Records 2 and 3 of the segment change places.
            let (a, b) = (f[1], f[2]);
            let mut out = bytes[..a.0].to_vec();
            out.extend_from_slice(&bytes[b.0..b.0 + 4 + b.1]);
            out.extend_from_slice(&bytes[a.0..a.0 + 4 + a.1]);
            out.extend_from_slice(&bytes[b.0 + 4 + b.1..]);
            std::fs::write(&segment, out).unwrap();
        },
        "follows record",
    );
}

#[test]
fn another_replicas_log_is_refused() {
    tampered(
        |data, other, _| {
            std::fs::remove_dir_all(data.join(LOG_DIR)).unwrap();
            let target = data.join(LOG_DIR);
            std::fs::create_dir_all(&target).unwrap();
            for segment in segments(other) {
                std::fs::copy(&segment, target.join(segment.file_name().unwrap())).unwrap();
            }
        },
        "does not open",
    );
}

#[test]
fn an_older_log_is_refused() {
    tampered(
        |data, _, saved| {
            std::fs::remove_dir_all(data.join(LOG_DIR)).unwrap();
            copy_folder(saved, &data.join(LOG_DIR));
        },
        "a truncated or older log",
    );
}
