//! Choosing TCP ports on 127.0.0.1 for processes that bind them later (replicas, QEMU's
//! host forwards).
//!
//! A port that is free now can be taken before its user binds it. Asking the kernel for port 0
//! is the worst choice for that: it answers from the *ephemeral* range, the very range every
//! outgoing connection on the machine (a client's, ZeroMQ's, QEMU's) draws its source port
//! from, so the port can be in use as a connection's local end a moment later, and the later
//! `bind` fails ("Could not set up host forwarding rule"). Here ports come from outside the
//! ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), are checked free by binding
//! them, and are never handed out twice by one process.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use rand_core::RngCore as _;

/// Ports this process has handed out (its clusters may run concurrently, as tests do).
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Lowest port considered: above the registered services most machines run.
const LOWEST: u16 = 10_000;

/// Linux's ephemeral range when it cannot be read (its default).
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32_768..=60_999;

/// The ephemeral range as `ip_local_port_range` states it (two numbers), if it makes sense.
fn parse_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let (low, high) = (numbers.next()?.ok()?, numbers.next()?.ok()?);
    (low <= high && numbers.next().is_none()).then_some(low..=high)
}

/// The system's ephemeral port range.
fn ephemeral() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// The ports at or above [`LOWEST`] outside `ephemeral`, as ranges.
fn candidates(ephemeral: &RangeInclusive<u16>) -> Vec<RangeInclusive<u16>> {
    let mut ranges = Vec::new();
    if *ephemeral.start() > LOWEST {
        ranges.push(LOWEST..=ephemeral.start() - 1);
    }
    if *ephemeral.end() < u16::MAX {
        ranges.push(LOWEST.max(ephemeral.end() + 1)..=u16::MAX);
    }
    ranges
}

/// `n` distinct ports on 127.0.0.1, outside the ephemeral range, free when chosen and not
/// handed out before by this process.
///
/// # Errors
/// No room outside the ephemeral range, or too few free ports there.
pub fn unused(n: usize) -> Result<Vec<u16>> {
    let all: Vec<u16> = candidates(&ephemeral()).into_iter().flatten().collect();
    if all.is_empty() {
        bail!("the ephemeral port range covers every port from {LOWEST}: no port to choose");
    }
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Start at a random place so that concurrent processes rarely try the same ports.
    let start = usize::try_from(rand_core::OsRng.next_u32()).unwrap_or(0) % all.len();
    let (before, after) = all.split_at(start);
    // Listeners stay open until all `n` are chosen, so none is chosen twice.
    let mut chosen = Vec::with_capacity(n);
    for &port in after.iter().chain(before) {
        if chosen.len() == n {
            break;
        }
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            chosen.push((port, listener));
        }
    }
    if chosen.len() < n {
        bail!("only {} of {n} ports are free outside the ephemeral range", chosen.len());
    }
    let ports: Vec<u16> = chosen.into_iter().map(|(port, _listener)| port).collect();
    handed_out.extend(&ports);
    Ok(ports)
}

/// One port, as [`unused`] chooses them.
///
/// # Errors
/// As [`unused`].
pub fn one() -> Result<u16> {
    unused(1)?.first().copied().context("no port chosen")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_file_is_two_ordered_numbers() {
        assert_eq!(parse_range("32768\t60999\n"), Some(32_768..=60_999));
        assert_eq!(parse_range("1024 1024"), Some(1024..=1024));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("32768"), None);
        assert_eq!(parse_range("1 2 3"), None);
        assert_eq!(parse_range("a b"), None);
        assert_eq!(parse_range("1 70000"), None);
    }

    #[test]
    fn candidates_avoid_the_ephemeral_range() {
        assert_eq!(candidates(&(32_768..=60_999)), vec![10_000..=32_767, 61_000..=u16::MAX]);
        assert_eq!(candidates(&(1024..=65_535)), Vec::<RangeInclusive<u16>>::new());
        assert_eq!(candidates(&(5_000..=20_000)), vec![20_001..=u16::MAX]);
        assert_eq!(candidates(&(40_000..=u16::MAX)), vec![10_000..=39_999]);
    }

    #[test]
    fn ports_are_distinct_bindable_outside_the_ephemeral_range_and_never_repeated() {
        let ephemeral = ephemeral();
        let first = unused(20).expect("ports");
        let second = unused(20).expect("ports");
        let all: BTreeSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 40, "a port was handed out twice");
        for port in &all {
            assert!(!ephemeral.contains(port) && *port >= LOWEST, "port {port}");
        }
        // Each is free now: bind it.
        let _held: Vec<TcpListener> =
            first.iter().map(|p| TcpListener::bind(("127.0.0.1", *p)).expect("bind")).collect();
    }
}
