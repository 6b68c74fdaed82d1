//! Deterministic simulation of whole clusters (after raft-rs' harness, extended): the real
//! replica runtimes (sans-IO U-Managers over simulated TCCs) and clients in one process, a
//! seeded scheduler in virtual time, and a network that drops, delays, duplicates, reorders,
//! corrupts and partitions. Replicas crash, restart from their sealed state, or run under a
//! Byzantine host (`hosts`). Clients run a key-value workload over SQL and record a history.
//!
//! Every run is checked for:
//! - **linearizability**: the history of verified replies (writes and linearizable reads) has
//!   a legal sequential order that respects real time (`vpr_tests::linearizability`);
//! - **agreement**: correct TCCs never diverge: the same committed update has the same chain
//!   hash at every replica, throughout the run;
//! - **durability and exactly-once**: every acknowledged write is in the final state, once;
//! - **progress**: with at most f faulty replicas, every client finishes after the network
//!   heals, and all live replicas end with the same state.
//!
//! `VPR_SIM_SEEDS=<count>` sets the seeds per scenario (default 125: 2,000 runs over the 16
//! scenarios); `VPR_SIM_SEED=<seed>` replays one seed of every scenario. A failure names its
//! scenario and seed.

mod hosts;
mod world;

use std::collections::BTreeSet;

use hosts::{Byz, Host};
use vpr_proto::msg::Value;
use world::{Faults, Partition, Rng, Step, World};

/// The kinds of fault a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Drops, duplicates, delays and reordering.
    Lossy,
    /// Bits flipped in transit.
    Corrupt,
    /// Up to f backups crash for good.
    BackupCrash,
    /// The primary crashes (with f = 2, a backup too).
    PrimaryCrash,
    /// Up to f replicas (the primary maybe) crash and restart from sealed state.
    CrashRestart,
    /// A minority (the primary maybe) is cut off, then the network heals.
    Partition,
    /// Up to f replicas run under hostile hosts.
    Byzantine,
    /// A mix of all of the above within the budget of f.
    Mixed,
}

struct Plan {
    faults: Faults,
    crashes: Vec<(u16, u64)>,
    restarts: Vec<(u16, u64)>,
    partitions: Vec<Partition>,
    hosts: Vec<Host>,
}

/// `count` distinct replicas; view 0's primary among them with `primary_percent` chance.
fn pick_distinct(rng: &mut Rng, n: u16, count: usize, primary_percent: u64) -> Vec<u16> {
    let mut chosen: Vec<u16> = Vec::new();
    if rng.chance(primary_percent) && count > 0 {
        chosen.push(0);
    }
    while chosen.len() < count {
        let r = u16::try_from(1 + rng.below(u64::from(n) - 1)).expect("small");
        if !chosen.contains(&r) {
            chosen.push(r);
        }
    }
    chosen
}

fn plan(kind: Kind, n: u16, rng: &mut Rng) -> Plan {
    let f = usize::from((n - 1) / 2);
    let mut p = Plan {
        faults: Faults { drop: 3, duplicate: 3, max_delay_ms: 10, corrupt: 0 },
        crashes: Vec::new(),
        restarts: Vec::new(),
        partitions: Vec::new(),
        hosts: (0..n).map(|me| Host::hostile(me, Vec::new())).collect(),
    };
    let at = |rng: &mut Rng, lo: u64, span: u64| lo + rng.below(span);
    let faulty = 1 + rng.index(f);
    match kind {
        Kind::Lossy => p.faults = Faults { drop: 10, duplicate: 10, max_delay_ms: 25, corrupt: 0 },
        Kind::Corrupt => p.faults = Faults { drop: 3, duplicate: 3, max_delay_ms: 10, corrupt: 6 },
        Kind::BackupCrash => {
            for r in pick_distinct(rng, n, faulty, 0) {
                p.crashes.push((r, at(rng, 50, 4000)));
            }
        }
        Kind::PrimaryCrash => {
            for r in pick_distinct(rng, n, faulty, 100) {
                p.crashes.push((r, at(rng, 300, 4000)));
            }
        }
        Kind::CrashRestart => {
            for r in pick_distinct(rng, n, faulty, 50) {
                let t = at(rng, 200, 3000);
                p.crashes.push((r, t));
                p.restarts.push((r, t + at(rng, 100, 4000)));
            }
        }
        Kind::Partition => {
            let side = pick_distinct(rng, n, faulty, 60);
            let from = at(rng, 300, 3000);
            p.partitions.push(Partition { side, from, to: from + at(rng, 500, 5000) });
        }
        Kind::Byzantine => {
            for r in pick_distinct(rng, n, faulty, 50) {
                p.hosts[usize::from(r)] = Host::hostile(r, behaviours(rng));
                if p.hosts[usize::from(r)].byz.contains(&Byz::StaleSeal) {
                    let t = at(rng, 500, 3000);
                    p.crashes.push((r, t));
                    p.restarts.push((r, t + at(rng, 100, 2000)));
                }
            }
        }
        Kind::Mixed => {
            p.faults = Faults { drop: 5, duplicate: 5, max_delay_ms: 15, corrupt: 2 };
            for r in pick_distinct(rng, n, faulty, 50) {
                let t = at(rng, 200, 4000);
                match rng.below(3) {
                    0 => p.crashes.push((r, t)),
                    1 => {
                        p.crashes.push((r, t));
                        p.restarts.push((r, t + at(rng, 100, 3000)));
                    }
                    _ => p.hosts[usize::from(r)] = Host::hostile(r, behaviours(rng)),
                }
            }
            if rng.chance(50) {
                let size = 1 + rng.index(f);
                let side = pick_distinct(rng, n, size, 50);
                let from = at(rng, 300, 3000);
                p.partitions.push(Partition { side, from, to: from + at(rng, 500, 3000) });
            }
        }
    }
    p
}

fn behaviours(rng: &mut Rng) -> Vec<Byz> {
    let mut b: Vec<Byz> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let x = hosts::ALL[rng.index(hosts::ALL.len())];
        if !b.contains(&x) {
            b.push(x);
        }
    }
    b
}

/// Each client: create the tables, then writes and reads on a few shared keys.
fn scripts(clients: usize, steps: usize, rng: &mut Rng) -> Vec<Vec<Step>> {
    (0..clients)
        .map(|c| {
            let mut s = vec![Step::Sql(
                "CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v INTEGER); \
                 CREATE TABLE IF NOT EXISTS log(v INTEGER)"
                    .into(),
            )];
            for i in 0..steps {
                let key = rng.below(4);
                let value = u64::try_from((c + 1) * 1000 + i).expect("small");
                s.push(if rng.chance(60) {
                    Step::Write { key, value }
                } else {
                    Step::Read { key }
                });
            }
            s
        })
        .collect()
}

/// What one run observed, for the summary.
#[derive(Default)]
struct Tally {
    runs: u64,
    operations: u64,
    view_changes: u64,
    corrupted: u64,
    refused_replies: u64,
    hostile_actions: u64,
}

/// Runs one scenario and checks everything; panics with the scenario and seed on failure.
fn run(kind: Kind, n: u16, seed: u64, tally: &mut Tally) {
    let mut rng =
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(n) ^ (kind as u64) << 56);
    rng.next();
    let plan = plan(kind, n, &mut rng);
    let clients = if n == 3 { 3 } else { 4 };
    let scripts = scripts(clients, 10, &mut rng);
    let mut w = World::new(n, seed, scripts, plan.hosts);
    w.faults = plan.faults;
    w.crashes = plan.crashes.clone();
    w.restarts = plan.restarts.clone();
    w.partitions = plan.partitions.clone();
    let what = format!(
        "{kind:?} n={n} seed={seed} crashes={:?} restarts={:?} partitions={:?} hosts={:?}",
        plan.crashes,
        plan.restarts,
        plan.partitions.iter().map(|p| (&p.side, p.from, p.to)).collect::<Vec<_>>(),
        w.slots
            .iter()
            .filter(|s| !s.host.byz.is_empty())
            .map(|s| (s.host.me, &s.host.byz))
            .collect::<Vec<_>>(),
    );
    let last_fault = plan
        .crashes
        .iter()
        .chain(&plan.restarts)
        .map(|(_, t)| *t)
        .chain(plan.partitions.iter().map(|p| p.to))
        .max()
        .unwrap_or(0);
    let limit = last_fault + 90_000;
    let debug = std::env::var("VPR_SIM_DEBUG").is_ok();
    if debug {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    // Every scheduled fault happens during the run (a restart after the workload ended would
    // otherwise be checked before it could catch up).
    while (!w.done() || w.now <= last_fault) && w.now < limit {
        w.step();
        if debug && w.now.is_multiple_of(250) {
            eprintln!(
                "{} {:?} clients {:?}",
                w.now,
                w.statuses(),
                w.clients.iter().map(|c| c.next).collect::<Vec<_>>()
            );
        }
    }
    assert!(
        w.done(),
        "{what}: clients unfinished at {} ms: replicas {:?}, clients {:?}",
        w.now,
        w.statuses(),
        w.clients.iter().map(|c| c.next).collect::<Vec<_>>()
    );
    // Heal everything, let the replicas settle, then read the log through the protocol.
    w.faults = Faults::default();
    w.partitions.clear();
    for _ in 0..3_000 {
        w.step();
    }
    let log = w.final_read("SELECT v FROM log ORDER BY v");
    for _ in 0..2_000 {
        w.step();
    }
    // Linearizability of the kv history.
    if let Err(e) = w.history.check() {
        panic!("{what}: not linearizable: {e}");
    }
    // Agreement: the same update has the same chain hash everywhere, all run long.
    for a in &w.slots {
        for b in &w.slots {
            for (seq, chain) in &a.chain {
                if let Some(other) = b.chain.get(seq) {
                    assert_eq!(
                        chain, other,
                        "{what}: replicas {} and {} diverged at update {seq}",
                        a.host.me, b.host.me
                    );
                }
            }
        }
    }
    // Durability and exactly-once.
    let values: Vec<u64> = log.results[0]
        .rows
        .iter()
        .map(|r| match r[0] {
            Value::Integer(v) => u64::try_from(v).expect("v"),
            ref other => panic!("{what}: log holds {other:?}"),
        })
        .collect();
    let unique: BTreeSet<u64> = values.iter().copied().collect();
    assert_eq!(unique.len(), values.len(), "{what}: a write took effect twice: {values:?}");
    for c in &w.clients {
        for v in &c.acknowledged {
            assert!(unique.contains(v), "{what}: acknowledged write {v} lost");
        }
    }
    // Convergence of every live replica.
    let statuses = w.statuses();
    let (_, committed, digest, _, _) = statuses[0];
    for s in &statuses {
        assert!(
            s.3.is_none() && s.1 == committed && s.2 == digest,
            "{what}: live replicas differ after healing: {statuses:?}"
        );
    }
    tally.runs += 1;
    tally.operations += u64::try_from(w.history.len()).unwrap_or(0);
    tally.view_changes += statuses.iter().map(|s| s.4).max().unwrap_or(0);
    tally.corrupted += w.corrupted;
    tally.refused_replies += w.refused_replies;
    tally.hostile_actions += w.slots.iter().map(|s| s.host.actions).sum::<u64>();
}

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("VPR_SIM_SEED").ok().and_then(|v| v.parse().ok()) {
        return vec![one];
    }
    let count = std::env::var("VPR_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(125);
    (1..=count).collect()
}

fn scenario(kind: Kind) {
    let mut tally = Tally::default();
    let seeds = seeds();
    for n in [3, 5] {
        for seed in &seeds {
            run(kind, n, *seed, &mut tally);
        }
    }
    eprintln!(
        "simnet {kind:?}: {} runs (f=1 and f=2, {} seeds each), {} operations checked, {} views \
         reached in total, {} messages corrupted, {} replies refused by clients, {} hostile host \
         actions",
        tally.runs,
        seeds.len(),
        tally.operations,
        tally.view_changes,
        tally.corrupted,
        tally.refused_replies,
        tally.hostile_actions
    );
}

#[test]
fn lossy_network() {
    scenario(Kind::Lossy);
}

#[test]
fn corrupting_network() {
    scenario(Kind::Corrupt);
}

#[test]
fn backups_crash() {
    scenario(Kind::BackupCrash);
}

#[test]
fn primary_crashes() {
    scenario(Kind::PrimaryCrash);
}

#[test]
fn replicas_crash_and_restart_from_sealed_state() {
    scenario(Kind::CrashRestart);
}

#[test]
fn partitions_heal() {
    scenario(Kind::Partition);
}

#[test]
fn byzantine_hosts() {
    scenario(Kind::Byzantine);
}

#[test]
fn mixed_faults() {
    scenario(Kind::Mixed);
}
