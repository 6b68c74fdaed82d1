//! The safety promises of docs/protocol.md and THREAT-MODEL.md, checked in every explored
//! state from what the adversary and the clients observe of real Managers.
//!
//! Each check is a method of [`Observer`] named after the promise it checks; a violation is a
//! sentence saying which promise broke and the evidence.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vpr_proto::digest::Digest;
use vpr_proto::msg::Outcome;

use super::shape::short;

/// Something that must stay fixed at a sequence number: a committed or applied update, or
/// the update an accepted reply depends on.
#[derive(Clone, Debug)]
struct Fixed {
    chain: Digest,
    /// The earliest view in which it was committed (`u64::MAX` if only accepted so far):
    /// every later view carries it.
    view: u64,
    why: String,
}

/// What the adversary and the clients have seen so far, and the checks over it.
#[derive(Clone, Debug)]
pub struct Observer {
    /// f of the group.
    faults: usize,
    /// Every update ever emitted: chain hash -> (seq, prev).
    chains: HashMap<Digest, (u64, Digest)>,
    /// Replicas that hold (proposed, acknowledged or applied) an update: (seq, chain).
    holders: HashMap<(u64, Digest), BTreeSet<u16>>,
    /// Updates some primary of a started view committed.
    primary_committed: BTreeSet<(u64, Digest)>,
    /// What must stay at each sequence number.
    fixed: BTreeMap<u64, Fixed>,
    /// Every NewView: (view, head, head chain).
    new_views: Vec<(u64, u64, Digest)>,
    /// Outcomes honest clients accepted: (client name, seq) -> outcome.
    outcomes: BTreeMap<(String, u64), Outcome>,
    /// The database seen at each committed state, and where.
    databases: HashMap<(u64, Digest), (Digest, String)>,
}

impl Observer {
    /// An observer for a group tolerating `faults` faults, starting from `genesis`.
    pub fn new(faults: usize, genesis: Digest) -> Self {
        let mut fixed = BTreeMap::new();
        fixed.insert(0, Fixed { chain: genesis, view: 0, why: String::from("genesis") });
        Observer {
            faults,
            chains: HashMap::new(),
            holders: HashMap::new(),
            primary_committed: BTreeSet::from([(0, genesis)]),
            fixed,
            new_views: Vec::new(),
            outcomes: BTreeMap::new(),
            databases: HashMap::new(),
        }
    }

    /// An update was emitted by `proposer` (a primary), or carried in a ViewChange (`None`).
    pub fn update(&mut self, seq: u64, prev: Digest, chain: Digest, proposer: Option<u16>) {
        self.chains.insert(chain, (seq, prev));
        if let Some(r) = proposer {
            self.holders.entry((seq, chain)).or_default().insert(r);
        }
    }

    /// `replica` acknowledged update (seq, chain): it held it.
    pub fn ack(&mut self, replica: u16, seq: u64, chain: Digest) {
        self.holders.entry((seq, chain)).or_default().insert(replica);
    }

    /// The chain leading to (seq, chain), newest first, as far as known updates go.
    fn walk(&self, mut seq: u64, mut chain: Digest) -> Vec<(u64, Digest)> {
        let mut out = Vec::new();
        while seq > 0 {
            out.push((seq, chain));
            match self.chains.get(&chain) {
                Some(&(s, prev)) if s == seq => {
                    chain = prev;
                    seq -= 1;
                }
                _ => return out,
            }
        }
        out.push((0, chain));
        out
    }

    /// The chain hash at `seq` on the chain ending at (head, head_chain), if known.
    fn chain_at(&self, head: u64, head_chain: Digest, seq: u64) -> Option<Digest> {
        if seq > head {
            return None;
        }
        self.walk(head, head_chain).into_iter().find(|(s, _)| *s == seq).map(|(_, c)| c)
    }

    /// Fixes (seq, chain) from `view` on, or reports a contradiction.
    fn fix(&mut self, seq: u64, chain: Digest, view: u64, why: String) -> Result<(), String> {
        match self.fixed.get_mut(&seq) {
            Some(f) if f.chain != chain => Err(format!(
                "agreement: two updates at #{seq}: {} ({}) and {} ({why})",
                short(&f.chain),
                f.why,
                short(&chain)
            )),
            Some(f) => {
                f.view = f.view.min(view);
                Ok(())
            }
            None => {
                self.fixed.insert(seq, Fixed { chain, view, why: why.clone() });
                self.later_views_carry(seq)
            }
        }
    }

    /// **Agreement** (no committed update is lost; one update per sequence number): after
    /// every step, the committed (primary) or applied (backup) chain of every Manager is
    /// walked back; every update on it must be the only one ever committed, applied or
    /// accepted at its number across all TCC instances. A backup's applied update must also
    /// have been committed by some primary first (**applied implies committed**).
    pub fn committed(
        &mut self,
        who: &str,
        replica: u16,
        view: u64,
        primary: bool,
        seq: u64,
        chain: Digest,
    ) -> Result<(), String> {
        let walk = self.walk(seq, chain);
        for &(s, c) in &walk {
            self.holders.entry((s, c)).or_default().insert(replica);
            if primary {
                self.primary_committed.insert((s, c));
            }
        }
        for (s, c) in walk {
            if !self.primary_committed.contains(&(s, c)) {
                return Err(format!(
                    "applied implies committed: {who} applied #{s} {} that no primary committed",
                    short(&c)
                ));
            }
            self.fix(s, c, view, format!("committed at {who} in view {view}"))?;
        }
        Ok(())
    }

    /// **Same state, same database**: a Manager whose database holds exactly its committed
    /// state (not the primary of a started view, which also holds its updates in flight; not
    /// one waiting for a snapshot) has the same database file as every other Manager at the
    /// same committed (seq, chain). Agreement on chain hashes is worth nothing if the bytes
    /// differ (a stale page cache after a write was taken back, say).
    pub fn database(
        &mut self,
        who: &str,
        seq: u64,
        chain: Digest,
        digest: Digest,
    ) -> Result<(), String> {
        match self.databases.get(&(seq, chain)) {
            Some((d, first)) if *d != digest => Err(format!(
                "same state, same database: at #{seq} {} {who} holds database {} but {first} \
                 held {}",
                short(&chain),
                short(&digest),
                short(d)
            )),
            Some(_) => Ok(()),
            None => {
                self.databases.insert((seq, chain), (digest, who.to_owned()));
                Ok(())
            }
        }
    }

    /// **Every later view carries it** (Progress Evidence, thesis §5.2.5): a new view starts
    /// from a chain that contains every update committed or accepted in an earlier view.
    pub fn new_view(&mut self, view: u64, head: u64, head_chain: Digest) -> Result<(), String> {
        self.new_views.push((view, head, head_chain));
        for &seq in self.fixed.keys() {
            self.view_carries(seq, (view, head, head_chain))?;
        }
        Ok(())
    }

    /// The same check for an update fixed after some later view already started.
    fn later_views_carry(&self, seq: u64) -> Result<(), String> {
        for &started in &self.new_views {
            self.view_carries(seq, started)?;
        }
        Ok(())
    }

    /// Whether the view started at `(view, head, head_chain)` carries update `seq` if it was
    /// fixed in an earlier view.
    fn view_carries(
        &self,
        seq: u64,
        (view, head, head_chain): (u64, u64, Digest),
    ) -> Result<(), String> {
        let Some(f) = self.fixed.get(&seq) else { return Ok(()) };
        if f.view < view && self.chain_at(head, head_chain, seq) != Some(f.chain) {
            return Err(format!(
                "later views carry it: view {view} starts at #{head} {} without #{seq} {} ({})",
                short(&head_chain),
                short(&f.chain),
                f.why
            ));
        }
        Ok(())
    }

    /// **Blinded until durable** (a client never accepts a reply unless its update is held
    /// by f+1 TCCs) and **never contradicted** (every later view carries it), for a reply an
    /// honest client accepted whose tag was blinded by update (seq, chain) of `view`; and
    /// **exactly once**: never two different accepted outcomes for one (client, seq).
    pub fn accepted(
        &mut self,
        client: &str,
        seq: u64,
        outcome: &Outcome,
        blinding: Option<(u64, Digest, u64)>,
    ) -> Result<(), String> {
        match self.outcomes.get(&(client.to_owned(), seq)) {
            Some(o) if o != outcome => {
                return Err(format!(
                    "exactly once: client {client} accepted two outcomes for seq {seq}: {} and {}",
                    describe(o),
                    describe(outcome)
                ));
            }
            Some(_) => {}
            None => {
                self.outcomes.insert((client.to_owned(), seq), outcome.clone());
            }
        }
        let Some((useq, chain, view)) = blinding else { return Ok(()) };
        let holders = self.holders.get(&(useq, chain)).cloned().unwrap_or_default();
        if holders.len() < self.faults + 1 {
            return Err(format!(
                "blinded until durable: client {client} accepted seq {seq} ({}) while its update \
                 #{useq} {} was held by {:?} only",
                describe(outcome),
                short(&chain),
                holders
            ));
        }
        // An accepted reply's update must never be contradicted. (Which views must carry it
        // follows from its commit: a reply released legitimately is committed, while the
        // view its reply was made in may have been abandoned before a later view re-proposed
        // and committed it.)
        let _ = view;
        self.fix(useq, chain, u64::MAX, format!("reply to {client} seq {seq} accepted"))
    }
}

/// An outcome in a few words.
pub fn describe(o: &Outcome) -> String {
    match &o.error {
        Some(e) => format!("error {:?}", e.message),
        None => format!(
            "ok {:?}",
            o.results.iter().map(|r| (r.rows.len(), r.changes)).collect::<Vec<_>>()
        ),
    }
}
