//! The planning adversary over real Managers (`vpr_tests::explore`).

use std::time::Duration;

use vpr_proto::msg::ReadLevel;
use vpr_tests::explore::{bfs, random, shrink, trace, ClientSpec, Config, Outcome};

const LIN: ReadLevel = ReadLevel::Linearizable;
const PRIMARY: ReadLevel = ReadLevel::Primary;

fn victim(menu: Vec<(&'static str, ReadLevel)>) -> ClientSpec {
    ClientSpec { name: "V", own: false, menu }
}

fn scenario(name: &str) -> Config {
    let base = Config {
        replicas: 3,
        max_in_flight: 4,
        clients: vec![victim(vec![("INSERT INTO t VALUES (2, 'v')", LIN)])],
        max_requests: 1,
        max_batch: 1,
        max_view: 0,
        twins: 0,
        restarts: 0,
        snapshots: false,
        seed: 1,
    };
    match name {
        "blinding" => Config {
            clients: vec![
                victim(vec![("INSERT INTO t VALUES (2, 'v')", LIN)]),
                ClientSpec {
                    name: "A",
                    own: true,
                    menu: vec![("SELECT count(*) FROM t", PRIMARY)],
                },
            ],
            max_requests: 2,
            max_batch: 2,
            ..base
        },
        "exactly-once" => Config {
            clients: vec![
                victim(vec![("INSERT INTO t VALUES (1, 'v')", PRIMARY)]),
                ClientSpec {
                    name: "H",
                    own: false,
                    menu: vec![("DELETE FROM t WHERE k = 1", LIN)],
                },
            ],
            max_requests: 2,
            max_batch: 2,
            ..base
        },
        "forget-held" => Config { max_view: 2, ..base },
        "creation-view" => Config {
            clients: vec![victim(vec![
                ("INSERT INTO t VALUES (2, 'v')", LIN),
                ("INSERT INTO t VALUES (3, 'v')", LIN),
            ])],
            max_requests: 2,
            max_view: 3,
            ..base
        },
        "twin" => Config {
            max_in_flight: 1,
            clients: vec![victim(vec![
                ("INSERT INTO t VALUES (2, 'v')", LIN),
                ("INSERT INTO t VALUES (3, 'v')", LIN),
            ])],
            max_requests: 2,
            max_view: 1,
            twins: 1,
            snapshots: true,
            ..base
        },
        other => panic!("unknown scenario {other}"),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Hunts one scenario (`VPR_EXPLORE_SCENARIO`), breadth-first to `VPR_EXPLORE_DEPTH` or by
/// `VPR_EXPLORE_WALKS` random walks, and prints the (shrunk) counterexample and the figures.
#[test]
#[ignore = "deep exploration: set VPR_EXPLORE_SCENARIO (and VPR_EXPLORE_DEPTH or _WALKS)"]
fn hunt() {
    let name = env("VPR_EXPLORE_SCENARIO").unwrap_or_else(|| String::from("blinding"));
    let cfg = scenario(&name);
    let secs: u64 = env("VPR_EXPLORE_SECONDS").and_then(|s| s.parse().ok()).unwrap_or(600);
    let (outcome, stats) = match env("VPR_EXPLORE_WALKS") {
        Some(w) => {
            let length = env("VPR_EXPLORE_DEPTH").and_then(|s| s.parse().ok()).unwrap_or(30);
            random(&cfg, length, w.parse().expect("walks"), Duration::from_secs(secs))
        }
        None => {
            let depth = env("VPR_EXPLORE_DEPTH").and_then(|s| s.parse().ok()).unwrap_or(6);
            bfs(&cfg, depth, Duration::from_secs(secs))
        }
    };
    println!("scenario {name}: {stats:?}");
    match outcome {
        Outcome::Found(found) => {
            println!("found ({} steps): {}", found.trace.len(), found.violation);
            println!("{}", trace(&cfg, &found.trace));
            let small = shrink(&cfg, found);
            println!("shrunk to {} steps: {}", small.trace.len(), small.violation);
            println!("{}", trace(&cfg, &small.trace));
        }
        other => println!("{other:?}"),
    }
}

#[test]
#[ignore = "timing"]
fn timing() {
    use std::time::Instant;
    let cfg = scenario("forget-held");
    let t = Instant::now();
    for _ in 0..20 {
        let _ = vpr_tests::explore::World::new(&cfg);
    }
    println!("world: {:?}", t.elapsed() / 20);
    let mut w = vpr_tests::explore::World::new(&cfg);
    let t = Instant::now();
    for _ in 0..100 {
        let _ = w.fingerprint();
    }
    println!("fingerprint: {:?}", t.elapsed() / 100);
    let acts = w.actions();
    let t = Instant::now();
    for a in &acts {
        w.apply(a);
    }
    println!("{} actions: {:?}", acts.len(), t.elapsed() / u32::try_from(acts.len()).unwrap());
}
