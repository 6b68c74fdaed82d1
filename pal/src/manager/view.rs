//! Primary change (thesis §5.2.5), gated by the trusted view counter.
//!
//! - *Unique Majority*: a replica moves to view v+1 only with f+1 Probes for it, and increments
//!   its trusted view counter first; Acks carry the view, so once a majority moved, the old
//!   primary can no longer commit anything.
//! - *Progress Evidence*: the new primary collects f+1 ViewChanges (its own included). Any
//!   update committed in an earlier view was held by f+1 replicas, so one of them is in this
//!   quorum: walking the held updates from the highest committed one, the new primary finds
//!   every committed update and the uncommitted ones after it. It applies them, commits those
//!   already committed somewhere, and proposes the others again *unchanged* (same view, same
//!   chain hash), so replicas that already hold or applied them stay on one chain.
//!
//! Not handled yet (state transfer): a replica that lacks a committed update no one in the
//! quorum still holds, and an old primary whose database holds uncommitted pages (it stops).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_proto::crypto;
use vpr_proto::digest::Digest;
use vpr_proto::msg::{NewView, Probe, ReplicaId, Update, ViewChange};

use super::primary::{commit_tag, update_tag};
use super::{Effect, InFlight, Manager};
use crate::tcc::{Counter, Tcc};

impl<T: Tcc> Manager<T> {
    /// Backup: the primary seems silent; propose the next view.
    pub(super) fn suspect(&mut self) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        let mut probe = Probe { replica: self.group.me, view: self.view + 1, tag: [0; 32] };
        probe.tag = crypto::mac(&key, &[&probe.signed_bytes()]);
        Ok(vec![Effect::Probe(probe)])
    }

    /// f+1 Probes for the next view: move to it and report to its primary.
    pub(super) fn on_probes(&mut self, probes: &[Probe]) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        let target = self.view + 1;
        let mut from: Vec<ReplicaId> = Vec::new();
        for p in probes {
            let ok = p.view == target
                && p.replica < self.group.replicas
                && !from.contains(&p.replica)
                && crypto::mac_ok(&key, &[&p.signed_bytes()], &p.tag);
            if ok {
                from.push(p.replica);
            }
        }
        if from.len() < self.group.faults() + 1 {
            return Err(format!(
                "probes: {} valid for view {target}, {} needed",
                from.len(),
                self.group.faults() + 1
            ));
        }
        self.enter_view(target)?;
        let held: Vec<Update> = self.held.iter().map(|(u, _)| u.clone()).collect();
        let mut vc = ViewChange {
            replica: self.group.me,
            view: target,
            committed: self.committed.0,
            committed_chain: self.committed.1,
            held,
            tag: [0; 32],
        };
        vc.tag = crypto::mac(&key, &[&vc.signed_bytes()]);
        Ok(vec![Effect::ViewChange(vc)])
    }

    /// Moves to `view`: the trusted counter first, then the Manager's own state.
    fn enter_view(&mut self, view: u64) -> Result<(), String> {
        let was_primary = self.is_primary();
        while self.view < view {
            self.view = self.tcc.increment(Counter::View).map_err(|e| e.0)?;
        }
        if was_primary && self.head.0 > self.committed.0 {
            // Our database holds pages of updates that may never commit: only state transfer
            // can bring this replica back.
            self.stale = true;
        }
        self.in_flight.clear();
        Ok(())
    }

    /// New primary: f+1 ViewChanges for its view; adopt the highest state and announce it.
    pub(super) fn on_view_changes(&mut self, vcs: &[ViewChange]) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if !self.is_primary() || self.stale {
            return Err(String::from("view changes: not the primary of this view"));
        }
        if self.head.0 > self.committed.0 && !self.in_flight.is_empty() {
            return Err(String::from("view changes: this view already started"));
        }
        let mut from: Vec<ReplicaId> = Vec::new();
        let mut committed = self.committed;
        let mut candidates: BTreeMap<u64, Vec<(Update, Digest)>> = BTreeMap::new();
        for (u, c) in &self.held {
            candidates.entry(u.seq).or_default().push((u.clone(), *c));
        }
        for vc in vcs {
            let ok = vc.view == self.view
                && vc.replica < self.group.replicas
                && !from.contains(&vc.replica)
                && crypto::mac_ok(&key, &[&vc.signed_bytes()], &vc.tag);
            if !ok {
                continue;
            }
            from.push(vc.replica);
            if vc.committed > committed.0 {
                committed = (vc.committed, vc.committed_chain);
            }
            for u in &vc.held {
                let chain = u.chain();
                if update_tag(&key, &chain) == u.tag && u.state.validate().is_ok() {
                    candidates.entry(u.seq).or_default().push((u.clone(), chain));
                }
            }
        }
        if !from.contains(&self.group.me) {
            // Our own account is part of the quorum: we must not skip what we hold.
            from.push(self.group.me);
        }
        if from.len() < self.group.faults() + 1 {
            return Err(format!(
                "view changes: {} valid, {} needed",
                from.len(),
                self.group.faults() + 1
            ));
        }
        // Walk the chain from what we applied, preferring the newest view at each step.
        let mut adopted: Vec<(Update, Digest)> = Vec::new();
        let mut at = self.committed;
        while let Some(options) = candidates.get(&(at.0 + 1)) {
            let best = options.iter().filter(|(u, _)| u.prev == at.1).max_by_key(|(u, _)| u.view);
            let Some((u, c)) = best else { break };
            at = (u.seq, *c);
            adopted.push((u.clone(), *c));
        }
        if at.0 < committed.0
            || adopted
                .iter()
                .find(|(u, _)| u.seq == committed.0)
                .is_some_and(|(_, c)| *c != committed.1)
        {
            return Err(format!(
                "view changes: update {} is committed but not on the chain held here; state transfer is needed",
                committed.0
            ));
        }
        self.held.clear();
        let mut resend = Vec::new();
        for (u, c) in adopted {
            self.service.apply(&u.state).map_err(|e| format!("adopt {}: {e}", u.seq))?;
            if u.seq <= committed.0 {
                let counter = self.tcc.increment(Counter::State).map_err(|e| e.0)?;
                if counter != u.seq {
                    return Err(format!("state counter at {counter}, adopting update {}", u.seq));
                }
                self.committed = (u.seq, c);
            } else {
                self.in_flight.push_back(InFlight { seq: u.seq, chain: c, acks: Vec::new() });
            }
            self.head = (u.seq, c);
            resend.push(u);
        }
        if self.head.0 < self.committed.0 {
            self.head = self.committed;
        }
        let mut nv = NewView {
            view: self.view,
            base: self.committed.0,
            base_chain: self.committed.1,
            head: self.head.0,
            head_chain: self.head.1,
            tag: [0; 32],
        };
        nv.tag = crypto::mac(&key, &[&nv.signed_bytes()]);
        let mut effects = vec![Effect::NewView(nv)];
        effects.extend(resend.into_iter().map(Effect::Update));
        let (seq, chain) = self.committed;
        let tag = commit_tag(&key, self.view, seq, &chain);
        effects.push(Effect::Commit(vpr_proto::msg::Commit { view: self.view, seq, chain, tag }));
        Ok(effects)
    }

    /// Backup: the new primary's announcement.
    pub(super) fn on_new_view(&mut self, nv: &NewView) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if !crypto::mac_ok(&key, &[&nv.signed_bytes()], &nv.tag) {
            return Err(String::from("new view: bad authenticator"));
        }
        if nv.view < self.view
            || u64::from(self.group.me) == nv.view % u64::from(self.group.replicas)
        {
            return Err(String::from("new view: old, or ours"));
        }
        self.enter_view(nv.view)?;
        if self.stale {
            return Err(String::from("new view: this replica needs state transfer"));
        }
        // Keep the held updates that lie on the announced chain; drop any other branch.
        let mut kept = alloc::collections::VecDeque::new();
        let mut at = self.committed;
        for (u, c) in self.held.drain(..) {
            if u.seq == at.0 + 1 && u.prev == at.1 && u.seq <= nv.head {
                at = (u.seq, c);
                kept.push_back((u, c));
            }
        }
        if at.0 >= nv.head && kept.iter().any(|(u, c)| u.seq == nv.head && *c != nv.head_chain) {
            kept.clear();
            at = self.committed;
        }
        self.held = kept;
        self.head = at;
        self.adopt_until = nv.head;
        Ok(Vec::new())
    }
}
