//! Linearizability checking of key-value histories.
//!
//! A history lists the operations clients issued, each with the time it was invoked and the time
//! its answer arrived. [`check`] decides whether some total order of the operations (a
//! linearization) respects real time, so that an operation answered before another was invoked
//! comes first, and explains every read, each key being an independent register that starts
//! absent.
//!
//! Linearizability is compositional over independent objects, so each key is checked on its own.
//! A key gets the search of Wing and Gong as refined by Lowe: invocations and responses sit in one
//! time-ordered doubly linked list; the search linearizes an operation whose invocation precedes
//! the first response left in the list, unlinks both its entries and starts over, and backtracks
//! when it reaches a response whose operation it has not linearized. Each pair of (operations
//! linearized, register value) is explored at most once.
//!
//! Intervals are closed: operations whose intervals merely touch count as concurrent, which suits
//! coarse clocks such as virtual milliseconds.
#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// States [`check`] explores, over all keys, before giving up. The memo table keeps every state
/// of the key being checked, some tens of bytes each.
pub const DEFAULT_MAX_STATES: u64 = 10_000_000;

/// A key-value operation observed by a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Set `key` to `value`.
    Write {
        /// The register written.
        key: u64,
        /// The value stored.
        value: u64,
    },
    /// Read `key`.
    Read {
        /// The register read.
        key: u64,
        /// The value the client was told; `None` if the key was absent.
        seen: Option<u64>,
    },
}

impl Op {
    /// The key the operation acts on.
    pub fn key(&self) -> u64 {
        match *self {
            Op::Write { key, .. } | Op::Read { key, .. } => key,
        }
    }
}

/// One operation with its invocation and response times, on any monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Who issued the operation; used only in reports.
    pub client: usize,
    /// What was done.
    pub op: Op,
    /// When the operation was invoked.
    pub called: u64,
    /// When the client got a verified answer. `None` if it never did: the operation may have taken
    /// effect at any time after `called`, or never. A read with no answer constrains nothing.
    pub returned: Option<u64>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}: ", self.client)?;
        match self.op {
            Op::Write { value, .. } => write!(f, "write {value}")?,
            Op::Read { seen: Some(value), .. } => write!(f, "read -> {value}")?,
            Op::Read { seen: None, .. } => write!(f, "read -> absent")?,
        }
        match self.returned {
            Some(returned) => write!(f, " [{}, {returned}]", self.called),
            None => write!(f, " [{}, no answer]", self.called),
        }
    }
}

/// Names an operation recorded by [`History::invoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId(usize);

/// A history being recorded: operations are added when invoked and completed when answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    events: Vec<Event>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finished (or abandoned) operation.
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Adds an operation invoked at `called` and not answered yet. A read's `seen` is set when it
    /// completes.
    pub fn invoke(&mut self, client: usize, op: Op, called: u64) -> EventId {
        self.events.push(Event { client, op, called, returned: None });
        EventId(self.events.len() - 1)
    }

    /// Records that the answer to operation `id` arrived at `returned`.
    ///
    /// # Panics
    /// If `id` came from another, shorter history.
    pub fn complete(&mut self, id: EventId, returned: u64) {
        self.events[id.0].returned = Some(returned);
    }

    /// Records that read `id` was answered at `returned` with `seen`; on a write, the same as
    /// [`History::complete`].
    ///
    /// # Panics
    /// If `id` came from another, shorter history.
    pub fn complete_read(&mut self, id: EventId, returned: u64, seen: Option<u64>) {
        let event = &mut self.events[id.0];
        event.returned = Some(returned);
        if let Op::Read { key, .. } = event.op {
            event.op = Op::Read { key, seen };
        }
    }

    /// The operations recorded, in the order they were added.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// [`check`] of this history.
    pub fn check(&self) -> Result<Stats, CheckError> {
        check(&self.events)
    }
}

impl From<Vec<Event>> for History {
    fn from(events: Vec<Event>) -> Self {
        Self { events }
    }
}

/// What a successful check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct keys checked.
    pub keys: usize,
    /// Operations checked.
    pub events: usize,
    /// Operations left out because they cannot matter: unanswered reads, and unanswered writes
    /// whose value no read returned.
    pub ignored: usize,
    /// Search states explored over all keys.
    pub states: u64,
}

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// An event was answered before it was invoked.
    InvalidEvent {
        /// Its index in the history.
        index: usize,
        /// The event.
        event: Event,
    },
    /// No linearization exists.
    NotLinearizable(Violation),
    /// The search explored `limit` states without an answer, the last of them on `key`.
    LimitExceeded {
        /// The key being checked.
        key: u64,
        /// The limit given.
        limit: u64,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEvent { index, event } => {
                write!(f, "event #{index} answered before it was invoked: {event}")
            }
            Self::NotLinearizable(violation) => violation.fmt(f),
            Self::LimitExceeded { key, limit } => {
                write!(f, "gave up after exploring {limit} states (on key {key})")
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// A key whose operations have no linearization, with what the search got furthest with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: u64,
    /// How many operations on the key were checked.
    pub operations: usize,
    /// The longest linearization prefix found, in order, as (index in the history, event).
    pub placed: Vec<(usize, Event)>,
    /// The key's value after `placed`.
    pub value: Option<u64>,
    /// The operations that could come next after `placed` in real time (those invoked no later
    /// than the earliest answer among the rest), none of which leads to a linearization.
    pub stuck: Vec<(usize, Event)>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let value = self.value.map_or_else(|| "absent".to_owned(), |v| v.to_string());
        write!(
            f,
            "key {} is not linearizable: {} of {} operations placed, leaving value {value}; \
             none of these fits next:",
            self.key,
            self.placed.len(),
            self.operations,
        )?;
        for (index, event) in &self.stuck {
            write!(f, "\n  #{index} {event}")?;
        }
        let skip = self.placed.len().saturating_sub(SHOWN);
        write!(f, "\nplaced, in order ({skip} earlier not shown):")?;
        for (index, event) in &self.placed[skip..] {
            write!(f, "\n  #{index} {event}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Checks `history` with the default effort bound, [`DEFAULT_MAX_STATES`].
pub fn check(history: &[Event]) -> Result<Stats, CheckError> {
    check_with_limit(history, DEFAULT_MAX_STATES)
}

/// Checks `history`, giving up with [`CheckError::LimitExceeded`] after exploring `max_states`
/// search states over all keys. Keys are checked in ascending order; the first failing one is
/// reported.
pub fn check_with_limit(history: &[Event], max_states: u64) -> Result<Stats, CheckError> {
    let mut read_values = HashSet::new();
    for (index, event) in history.iter().enumerate() {
        match (event.op, event.returned) {
            (_, Some(returned)) if returned < event.called => {
                return Err(CheckError::InvalidEvent { index, event: *event });
            }
            (Op::Read { key, seen: Some(value) }, Some(_)) => {
                read_values.insert((key, value));
            }
            _ => {}
        }
    }
    let mut stats = Stats::default();
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, event) in history.iter().enumerate() {
        // An unanswered write nobody read can always be linearized never: leaving it out of a
        // linearization changes no read, since no read follows it before the next write.
        let matters = match (event.op, event.returned) {
            (_, Some(_)) => true,
            (Op::Read { .. }, None) => false,
            (Op::Write { key, value }, None) => read_values.contains(&(key, value)),
        };
        if matters {
            by_key.entry(event.op.key()).or_default().push(index);
            stats.events += 1;
        } else {
            stats.ignored += 1;
        }
    }
    stats.keys = by_key.len();
    for (key, ops) in by_key {
        check_key(key, history, &ops, &mut stats.states, max_states)?;
    }
    Ok(stats)
}

/// The register model: the value after `op` from `value`, or `None` if `op` cannot happen.
fn step(value: Option<u64>, op: Op) -> Option<Option<u64>> {
    match op {
        Op::Write { value: written, .. } => Some(Some(written)),
        Op::Read { seen, .. } => (seen == value).then_some(value),
    }
}

/// The search on one key, whose operations are `history[ops[i]]`.
fn check_key(
    key: u64,
    history: &[Event],
    ops: &[usize],
    states: &mut u64,
    limit: u64,
) -> Result<(), CheckError> {
    // Entries (time, is response, operation), invocations before responses at equal times.
    let mut entries = Vec::with_capacity(2 * ops.len());
    for (op, &index) in ops.iter().enumerate() {
        entries.push((history[index].called, false, op));
        if let Some(returned) = history[index].returned {
            entries.push((returned, true, op));
        }
    }
    entries.sort_unstable();
    // Node 0 is the head, node i + 1 entry i, the last node the tail.
    const HEAD: usize = 0;
    let tail = entries.len() + 1;
    let mut next: Vec<usize> = (1..=tail + 1).collect();
    let mut prev: Vec<usize> = (0..=tail).map(|node| node.saturating_sub(1)).collect();
    let mut response = vec![None; ops.len()];
    for (i, &(_, is_response, op)) in entries.iter().enumerate() {
        if is_response {
            response[op] = Some(i + 1);
        }
    }
    let node_op = |node: usize| entries[node - 1].2;

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashMap<Option<u64>, HashSet<Vec<u64>>> = HashMap::new();
    let mut value = None;
    // Linearized invocation nodes, each with the value before it.
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let (mut best, mut best_value) = (Vec::new(), None);
    let mut node = next[HEAD];
    while node != tail {
        let op = node_op(node);
        let (word, bit) = (op / 64, 1u64 << (op % 64));
        if entries[node - 1].1 {
            // A response whose operation is not linearized: undo the last choice, try the next.
            let Some((call, before)) = stack.pop() else {
                return Err(violation(key, history, ops, &best, best_value));
            };
            let op = node_op(call);
            linearized[op / 64] &= !(1u64 << (op % 64));
            value = before;
            if let Some(r) = response[op] {
                next[prev[r]] = r;
                prev[next[r]] = r;
            }
            next[prev[call]] = call;
            prev[next[call]] = call;
            node = next[call];
            continue;
        }
        let Some(after) = step(value, history[ops[op]].op) else {
            node = next[node];
            continue;
        };
        linearized[word] |= bit;
        let known = seen.entry(after).or_default();
        if known.contains(&linearized) {
            linearized[word] &= !bit;
            node = next[node];
            continue;
        }
        if *states >= limit {
            return Err(CheckError::LimitExceeded { key, limit });
        }
        *states += 1;
        known.insert(linearized.clone());
        stack.push((node, value));
        value = after;
        for unlinked in std::iter::once(node).chain(response[op]) {
            next[prev[unlinked]] = next[unlinked];
            prev[next[unlinked]] = prev[unlinked];
        }
        if stack.len() > best.len() {
            best.clear();
            best.extend(stack.iter().map(|&(call, _)| node_op(call)));
            best_value = value;
        }
        node = next[HEAD];
    }
    Ok(())
}

/// The report on key `key` given the longest linearization prefix found, `best`.
fn violation(
    key: u64,
    history: &[Event],
    ops: &[usize],
    best: &[usize],
    value: Option<u64>,
) -> CheckError {
    let with_event = |op: usize| (ops[op], history[ops[op]]);
    let mut placed_set = vec![false; ops.len()];
    for &op in best {
        placed_set[op] = true;
    }
    let rest: Vec<usize> = (0..ops.len()).filter(|&op| !placed_set[op]).collect();
    let deadline = rest.iter().filter_map(|&op| history[ops[op]].returned).min();
    let mut stuck: Vec<_> = rest
        .into_iter()
        .filter(|&op| deadline.is_none_or(|deadline| history[ops[op]].called <= deadline))
        .map(with_event)
        .collect();
    stuck.sort_by_key(|&(index, event)| (event.called, index));
    CheckError::NotLinearizable(Violation {
        key,
        operations: ops.len(),
        placed: best.iter().map(|&op| with_event(op)).collect(),
        value,
        stuck,
    })
}

#[cfg(test)]
mod tests;
