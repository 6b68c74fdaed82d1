//! Searching the adversary's choices: breadth-first (every state up to a depth, so the first
//! violation found has a shortest trace), random walks (deeper, cheaper), and shrinking a
//! trace to one from which no step can be removed.
//!
//! A world cannot be copied, so a state is rebuilt by replaying its actions from the initial
//! state. An action that leaves the fingerprint unchanged (refused, or a duplicate) changes
//! nothing, so the same world serves the next action without a replay.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::tcc::Rng;
use super::world::{Action, Config, World};

/// Figures of one search.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Distinct states reached (fingerprints).
    pub states: u64,
    /// Actions tried.
    pub actions: u64,
    /// Worlds rebuilt by replay.
    pub replays: u64,
    /// Deepest level completed.
    pub depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// A violation with the actions that lead to it.
#[derive(Clone, Debug)]
pub struct Found {
    /// The promise broken, with its evidence.
    pub violation: String,
    /// The actions from the initial state.
    pub trace: Vec<Action>,
}

/// How a search ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A violation.
    Found(Found),
    /// Every state within the bounds, without a violation.
    Exhausted,
    /// The time or state budget ran out first.
    Budget,
}

fn replay(cfg: &Config, trace: &[Action]) -> World {
    let mut w = World::new(cfg);
    for a in trace {
        w.apply(a);
    }
    w
}

/// Breadth-first search up to `max_depth` actions, within `budget` of time; with an
/// `alphabet`, only those actions are taken (to find the shortest trace made of the steps of
/// a known one).
pub fn bfs(
    cfg: &Config,
    max_depth: usize,
    budget: Duration,
    alphabet: Option<&[Action]>,
) -> (Outcome, Stats) {
    let start = Instant::now();
    let mut stats = Stats::default();
    let root = World::new(cfg);
    let mut visited: HashSet<u64> = HashSet::from([root.fingerprint()]);
    let mut frontier: Vec<Vec<Action>> = vec![Vec::new()];
    stats.states = 1;
    for depth in 0..max_depth {
        let mut next = Vec::new();
        for trace in &frontier {
            let mut world = replay(cfg, trace);
            stats.replays += 1;
            let parent = world.fingerprint();
            let mut actions = world.actions();
            if let Some(allowed) = alphabet {
                actions.retain(|a| allowed.contains(a));
            }
            for action in actions {
                if start.elapsed() > budget {
                    stats.elapsed = start.elapsed();
                    return (Outcome::Budget, stats);
                }
                stats.actions += 1;
                world.apply(&action);
                let fp = world.fingerprint();
                if fp == parent && world.violation.is_none() {
                    continue; // nothing changed: the world is still the parent
                }
                let mut child = trace.clone();
                child.push(action);
                if let Some(violation) = world.violation.take() {
                    stats.elapsed = start.elapsed();
                    stats.depth = depth + 1;
                    return (Outcome::Found(Found { violation, trace: child }), stats);
                }
                if visited.insert(fp) {
                    stats.states += 1;
                    next.push(child);
                }
                world = replay(cfg, trace);
                stats.replays += 1;
            }
        }
        stats.depth = depth + 1;
        if next.is_empty() {
            stats.elapsed = start.elapsed();
            return (Outcome::Exhausted, stats);
        }
        frontier = next;
    }
    stats.elapsed = start.elapsed();
    (Outcome::Exhausted, stats)
}

/// Random walks of up to `length` state-changing actions, until a violation or the budget.
pub fn random(cfg: &Config, length: usize, walks: u64, budget: Duration) -> (Outcome, Stats) {
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut rng = Rng(cfg.seed ^ 0x5EED);
    let mut seen: HashSet<u64> = HashSet::new();
    for _ in 0..walks {
        if start.elapsed() > budget {
            stats.elapsed = start.elapsed();
            return (Outcome::Budget, stats);
        }
        let mut world = World::new(cfg);
        stats.replays += 1;
        let mut trace = Vec::new();
        let mut prints = Vec::new();
        let mut summaries = Vec::new();
        while trace.len() < length {
            let before = world.fingerprint();
            let mut actions = world.actions();
            let mut moved = false;
            while !actions.is_empty() {
                let action = actions.swap_remove(rng.below(actions.len()));
                stats.actions += 1;
                world.apply(&action);
                if world.fingerprint() != before || world.violation.is_some() {
                    trace.push(action);
                    moved = true;
                    break;
                }
            }
            if !moved {
                break;
            }
            prints.push(world.fingerprint());
            summaries.push(world.summary());
            if seen.insert(world.fingerprint()) {
                stats.states += 1;
            }
            stats.depth = stats.depth.max(trace.len());
            if let Some(mut violation) = world.violation.take() {
                stats.elapsed = start.elapsed();
                let mut again = World::new(cfg);
                for (k, (a, fp)) in trace.iter().zip(&prints).enumerate() {
                    again.apply(a);
                    if again.fingerprint() != *fp {
                        violation.push_str(&format!(
                            " [replay diverges at step {}: walk {} / replay {}]",
                            k + 1,
                            summaries[k],
                            again.summary()
                        ));
                        break;
                    }
                }
                return (Outcome::Found(Found { violation, trace }), stats);
            }
        }
    }
    stats.elapsed = start.elapsed();
    (Outcome::Budget, stats)
}

/// The promise a violation names (the words before the first colon).
fn kind(violation: &str) -> &str {
    violation.split(':').next().unwrap_or(violation)
}

/// Removes steps from a trace while it still breaks the same promise, until no single step
/// can go. The result is locally minimal, not necessarily shortest.
pub fn shrink(cfg: &Config, found: Found) -> Found {
    let mut best = found;
    let target = kind(&best.violation).to_owned();
    let mut i = 0;
    while i < best.trace.len() {
        let mut shorter = best.trace.clone();
        shorter.remove(i);
        let mut w = World::new(cfg);
        let mut hit = None;
        for (k, a) in shorter.iter().enumerate() {
            w.apply(a);
            if let Some(v) = w.violation.take() {
                hit = Some((v, k + 1));
                break;
            }
        }
        match hit {
            Some((v, len)) if kind(&v) == target => {
                shorter.truncate(len);
                best = Found { violation: v, trace: shorter };
                i = 0;
            }
            _ => i += 1,
        }
    }
    best
}

/// The trace replayed, one line per step with what happened.
pub fn trace(cfg: &Config, actions: &[Action]) -> String {
    let mut w = World::new(cfg);
    let mut out = String::new();
    for (k, a) in actions.iter().enumerate() {
        let text = w.apply(a);
        out.push_str(&format!("{:>3}. {text}\n", k + 1));
        if let Some(v) = &w.violation {
            out.push_str(&format!("     VIOLATION {v}\n"));
            break;
        }
    }
    out
}
