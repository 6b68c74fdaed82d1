//! Local clusters of real replica processes over ZeroMQ on loopback, on the simulation
//! backend: convergence, availability with f replicas down, loss of a majority, exactly-once
//! retransmission, and the `vpr sql` command's contract.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vpr_host::client::{Client, ClientError};
use vpr_host::config::{ClusterConfig, Durability};
use vpr_host::launcher::{files, LocalCluster, Options};
use vpr_proto::msg::{Outcome, Value};

const VPR: &str = env!("CARGO_BIN_EXE_vpr");

fn start(n: u16) -> (tempfile::TempDir, LocalCluster, ClusterConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start(dir.path(), n, None, Path::new(VPR)).expect("start");
    let path = cluster.wait_ready(Duration::from_secs(30)).expect("cluster forms");
    let config = ClusterConfig::load(&path).expect("client config");
    (dir, cluster, config)
}

/// `vpr sql --config <config> <args>`, run to its end.
fn vpr_sql(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(VPR).arg("sql").arg("--config").arg(config).args(args).output().expect("vpr sql")
}

fn ok(outcome: Outcome) -> Outcome {
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    outcome
}

/// Reported statuses once every replica reports the same committed update and digest.
fn converged(cluster: &LocalCluster) -> Vec<vpr_host::status::Reported> {
    common::converged(cluster.dir(), cluster.config().n())
}

/// A workload of 1,000+ statements; then every replica's file hash is equal and the content
/// equals a single-node rusqlite replay of the same statements.
#[test]
fn three_and_five_replicas_converge_and_match_a_single_node_replay() {
    for n in [3, 5] {
        let (_dir, cluster, config) = start(n);
        let mut client = Client::connect(&config).expect("connect");
        let reference = rusqlite::Connection::open_in_memory().expect("rusqlite");
        let mut statements = vec![
            "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT, n REAL)".to_owned(),
            "CREATE INDEX kv_v ON kv(v)".to_owned(),
        ];
        for i in 0..1000 {
            statements.push(match i % 10 {
                0..=6 => format!("INSERT INTO kv(v, n) VALUES ('value {i}', {i} / 7.0)"),
                7 | 8 => format!("UPDATE kv SET n = n * 2, v = v || '!' WHERE k % 13 = {}", i % 13),
                _ => format!("DELETE FROM kv WHERE k = {}", i / 2),
            });
        }
        for s in &statements {
            ok(client.execute(s, Vec::new()).expect("verified reply"));
            reference.execute_batch(s).expect("reference");
        }
        // Read back in pages of 40 rows: one request's results stay within the service's
        // result budget (vpr_pal::service::DEFAULT_MAX_RESULT_BYTES, 8 KiB).
        let mut rows = Vec::new();
        loop {
            let page = "SELECT k, v, n FROM kv WHERE k > ?1 ORDER BY k LIMIT 40";
            let after = rows.last().and_then(|r: &Vec<Value>| r.first().cloned());
            let after = after.unwrap_or(Value::Integer(0));
            let out = ok(client.execute(page, vec![after]).expect("page"));
            let page_rows = out.results[0].rows.clone();
            if page_rows.is_empty() {
                break;
            }
            rows.extend(page_rows);
        }
        let dump = "SELECT k, v, n FROM kv ORDER BY k";
        let mut stmt = reference.prepare(dump).expect("prepare");
        let theirs: Vec<Vec<Value>> = stmt
            .query_map([], |r| {
                Ok(vec![
                    Value::Integer(r.get(0)?),
                    Value::Text(r.get::<_, String>(1)?.into_bytes()),
                    Value::Real(r.get(2)?),
                ])
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(theirs.len() > 300, "the workload left {} rows", theirs.len());
        assert_eq!(rows, theirs, "cluster content differs from the replay ({n})");
        let reports = converged(&cluster);
        assert!(
            reports.iter().all(|r| r.digest == reports[0].digest),
            "digests differ: {reports:?}"
        );
        // Every statement that changed the database made one update (UPDATEs and DELETEs
        // that matched no row write nothing and make none).
        assert!(reports[0].committed >= 700, "only {} updates committed", reports[0].committed);
    }
}

/// With f replicas down from the start the group forms and writes commit; with f + 1 down,
/// writes do not commit and the client gets an error, never an unverified answer.
#[test]
fn f_down_still_commits_and_f_plus_one_down_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start(dir.path(), 3, None, Path::new(VPR)).expect("start");
    cluster.kill(2).expect("kill backup 2");
    let path = cluster.wait_ready(Duration::from_secs(30)).expect("forms with a majority");
    let mut config = ClusterConfig::load(&path).expect("config");
    config.timeouts.request_ms = 500;
    config.timeouts.request_attempts = 2;
    let mut client = Client::connect(&config).expect("connect");
    ok(client.execute("CREATE TABLE t(x)", Vec::new()).expect("commits with f down"));
    ok(client.execute("INSERT INTO t VALUES (1)", Vec::new()).expect("commits with f down"));
    cluster.kill(1).expect("kill backup 1");
    match client.execute("INSERT INTO t VALUES (2)", Vec::new()) {
        Err(ClientError::Unreachable(_)) => {}
        other => panic!("a write committed without a majority: {other:?}"),
    }
}

/// A replica killed from outside (SIGKILL: no clean shut-down) is started again by the
/// launcher, as `vpr cluster` does, from its data folder; it restarts from its sealed state,
/// catches up, and the cluster converges on one database with the writes before and after.
#[test]
fn an_exited_replica_is_started_again_and_catches_up() {
    let (_dir, mut cluster, config) = start(3);
    let mut client = Client::connect(&config).expect("connect");
    ok(client.execute("CREATE TABLE t(x)", Vec::new()).expect("create"));
    let pid = cluster.pid(2).expect("replica 2 runs");
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    ok(client.execute("INSERT INTO t VALUES (1)", Vec::new()).expect("commits with 2 down"));
    let restarted = "replica 2 started again (restart 1)";
    let mut said: Vec<String> = Vec::new();
    for _ in 0..200 {
        said.extend(cluster.restart_exited());
        if said.iter().any(|l| l == restarted) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(said.iter().any(|l| l == restarted), "not started again: {said:?}");
    assert!(said[0].starts_with("replica 2 exited"), "{said:?}");
    assert!(cluster.is_running(2));
    assert_ne!(cluster.pid(2), Some(pid));
    ok(client.execute("INSERT INTO t VALUES (2)", Vec::new()).expect("commits"));
    let reports = converged(&cluster);
    assert!(reports.iter().all(|r| r.committed >= 3), "{reports:?}");
}

/// A retransmitted request is executed once and answered with the same verified outcome; SQL
/// errors come back as verified errors and change nothing.
#[test]
fn retransmissions_execute_once_and_errors_change_nothing() {
    let (_dir, _cluster, config) = start(3);
    let mut client = Client::connect(&config).expect("connect");
    ok(client.execute("CREATE TABLE t(x INTEGER NOT NULL)", Vec::new()).expect("create"));
    let request = client.session_mut().request("INSERT INTO t VALUES (random())".into(), vec![]);
    let first = ok(client.send(&request).expect("first"));
    let again = ok(client.send(&request).expect("retransmission"));
    assert_eq!(first, again);
    let count = ok(client.execute("SELECT count(*) FROM t", Vec::new()).expect("count"));
    assert_eq!(count.results[0].rows, [[Value::Integer(1)]]);
    let bad = client.execute("INSERT INTO t VALUES (NULL)", Vec::new()).expect("verified error");
    assert_eq!(bad.error.expect("NOT NULL violated").code, 1299);
    let big = client.execute(&format!("SELECT '{}'", "x".repeat(2 << 20)), Vec::new());
    assert!(big.is_err() || big.is_ok_and(|o| o.error.is_some()), "oversized request accepted");
    let count = ok(client.execute("SELECT count(*) FROM t", Vec::new()).expect("count"));
    assert_eq!(count.results[0].rows, [[Value::Integer(1)]]);
}

/// `vpr sql`: list-mode rows, exit 0; an SQL error: message on stderr, exit 1; an unreachable
/// service: exit 2.
#[test]
fn vpr_sql_exit_codes_and_output() {
    let (dir, _cluster, _config) = start(3);
    let config = dir.path().join(files::CLUSTER);
    let run = |args: &[&str], config: &Path| vpr_sql(config, args);
    let out = run(
        &[
            "-c",
            "CREATE TABLE t(a, b); INSERT INTO t VALUES (1, 'x'), (2.5, NULL); SELECT * FROM t",
        ],
        &config,
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|x\n2.5|\n");
    let out = run(&["--json", "-c", "SELECT 1, 'a\"b', x'00ff', NULL, 0.5"], &config);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[1,\"a\\\"b\",{\"blob\":\"00ff\"},null,0.5]\n"
    );
    let out = run(&["-c", "SELECT * FROM missing"], &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such table"));
    let mut unreachable = ClusterConfig::load(&config).expect("config");
    unreachable.replicas[0].address = "127.0.0.1:1".into();
    unreachable.timeouts.request_ms = 200;
    unreachable.timeouts.request_attempts = 1;
    let bad = dir.path().join("unreachable.toml");
    unreachable.save(&bad).expect("save");
    let out = run(&["-c", "SELECT 1"], &bad);
    assert_eq!(out.status.code(), Some(2));
}

fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
        && !std::fs::read_to_string(Path::new("/proc").join(pid.trim()).join("stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// `vpr cluster`: writes cluster.toml once ready and a pid file per replica, serves clients,
/// and stops every replica on SIGTERM.
#[test]
fn vpr_cluster_command_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Command::new(VPR)
        .args(["cluster", "--replicas", "3", "--dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vpr cluster");
    let config = dir.path().join(files::CLUSTER);
    for _ in 0..600 {
        if config.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(config.exists(), "cluster.toml never appeared");
    let pids: Vec<String> = (0..3)
        .map(|id| std::fs::read_to_string(dir.path().join(files::pid(id))).expect("pid file"))
        .collect();
    assert!(pids.iter().all(|p| alive(p)), "a replica is not running");
    let out = vpr_sql(
        &config,
        &["-c", "CREATE TABLE t(x); INSERT INTO t VALUES (7); SELECT x * 6 FROM t"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    let term = Command::new("kill").arg("-TERM").arg(cluster.id().to_string()).status();
    assert!(term.expect("kill").success());
    let status = cluster.wait().expect("cluster exits");
    assert!(status.success(), "{status}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(pids.iter().all(|p| !alive(p)), "replicas outlived the cluster");
    // The same command on the same folder restarts that cluster, with its data.
    let again = Command::new(VPR)
        .args(["cluster", "--dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vpr cluster again");
    let mut rows = String::new();
    for _ in 0..100 {
        let out = vpr_sql(&config, &["-c", "SELECT x * 6 FROM t"]);
        rows = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rows, "42\n", "the restarted cluster lost its data");
    let term = Command::new("kill").arg("-TERM").arg(again.id().to_string()).status();
    assert!(term.expect("kill").success());
    let out = again.wait_with_output().expect("cluster exits");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("restarting the cluster in"), "{said}");
}

/// A cluster that kept its state in memory is not restarted from its folder (its data died
/// with its replicas), and no new cluster starts over it: `vpr cluster` says why and changes
/// nothing there.
#[test]
fn vpr_cluster_refuses_to_restart_a_memory_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start_with(
        dir.path(),
        3,
        Path::new(VPR),
        &Options { durability: Durability::Memory, ..Options::default() },
    )
    .expect("start");
    cluster.wait_ready(Duration::from_secs(30)).expect("forms");
    cluster.stop();
    let listing = |dir: &Path| {
        let mut files = walk(dir);
        files.sort();
        files
    };
    let before = listing(dir.path());
    let out =
        Command::new(VPR).args(["cluster", "--dir"]).arg(dir.path()).output().expect("vpr cluster");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("durability = \"memory\"") && said.contains("fresh --dir"), "{said}");
    assert_eq!(listing(dir.path()), before, "the refusal changed the folder");
}

/// Every file under `dir` with its length.
fn walk(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push((path.clone(), std::fs::metadata(&path).expect("metadata").len()));
        }
    }
    out
}

/// `vpr status`: every replica's view, primary, state counter and database hash as its Manager
/// reports them, authenticated for the asking client; a dead replica is reported, exit 2.
#[test]
fn vpr_status_reports_authenticated_state() {
    let (dir, mut cluster, config) = start(3);
    let mut client = Client::connect(&config).expect("connect");
    ok(client.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)", vec![]).expect("write"));
    // Backups apply on Commit: wait until all three report the same state.
    let mut reports = Vec::new();
    for _ in 0..100 {
        reports = client.status(&config).into_iter().map(|(_, r)| r.expect("status")).collect();
        if reports.iter().all(|r| r.committed == reports[0].committed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reports
        .iter()
        .all(|r| r.digest == reports[0].digest && r.committed == 1 && r.primary == 0));
    let status = dir.path().join(files::CLUSTER);
    let out =
        Command::new(VPR).arg("status").arg("--config").arg(&status).output().expect("status");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(&reports[0].digest.to_string()).count(), 3, "{text}");
    cluster.kill(2).expect("kill");
    let out =
        Command::new(VPR).arg("status").arg("--config").arg(&status).output().expect("status");
    assert_eq!(out.status.code(), Some(2));
}

/// A client that pins another service identity, or refuses simulated evidence, or trusts
/// another manufacturer, or whose configuration is another group's, refuses the cluster's
/// Welcome: `vpr sql` exits 2 before sending SQL, naming the mismatch.
#[test]
fn clients_refuse_unexpected_evidence() {
    let (dir, _cluster, config) = start(3);
    let mut other_identity = config.clone();
    other_identity.identity = "00".repeat(32);
    let mut no_simulation = config.clone();
    no_simulation.allow_simulated = false;
    let mut other_manufacturer = config.clone();
    other_manufacturer.manufacturer =
        hex::encode(vpr_host::tcc::simulation::Manufacturer::generate().public());
    // The same replicas, but a configuration of another cluster: another group.
    let mut other_cluster = config.clone();
    other_cluster.name.push_str("-other");
    for (name, bad, why) in [
        ("identity", other_identity, "identity"),
        ("simulation", no_simulation, "simulated"),
        ("manufacturer", other_manufacturer, "manufacturer"),
        ("cluster", other_cluster, "configuration digest"),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        bad.save(&path).expect("save");
        let out = vpr_sql(&path, &["-c", "CREATE TABLE should_not_exist(x)"]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{name}: {err}");
    }
    let mut client = Client::connect(&config).expect("connect");
    let tables = ok(client.execute("SELECT count(*) FROM sqlite_schema", vec![]).expect("query"));
    assert_eq!(tables.results[0].rows, [[Value::Integer(1)]], "only vpr_session exists");
}

/// `vpr sql` reading statements from a pipe: multi-line statements, a trigger body with inner
/// semicolons, dot-commands, and an SQL error that does not stop the rest (exit 1 at the end).
#[test]
fn vpr_sql_reads_a_pipe() {
    use std::io::Write as _;
    let (dir, _cluster, _config) = start(3);
    let mut child = Command::new(VPR)
        .arg("sql")
        .arg("--config")
        .arg(dir.path().join(files::CLUSTER))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vpr sql");
    let script = "CREATE TABLE t(\n  a INTEGER,\n  b TEXT\n);\n\
                  CREATE TABLE audit(n);\n\
                  CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN\n  INSERT INTO audit VALUES (new.a);\nEND;\n\
                  INSERT INTO t VALUES (1, 'one');\n\
                  INSERT INTO nowhere VALUES (1);\n\
                  INSERT INTO t VALUES (2, 'two');\n\
                  .tables\n\
                  SELECT a, b FROM t ORDER BY a;\n\
                  SELECT count(*) FROM audit;\n";
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "an SQL error happened: exit 1");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "audit\nt\n1|one\n2|two\n2\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such table: nowhere"));
}
