//! Primary change (thesis §5.2.5), gated by the trusted view counter.
//!
//! - *Unique Majority*: a replica moves to view w only with f+1 Probes for w, and raises its
//!   trusted view counter first; Acks carry the view, so once a majority moved, the old
//!   primary can no longer commit anything. A replica that fell behind by several views jumps
//!   straight to w with the Probes that moved the others (relayed by its peers).
//! - *Progress Evidence*: the new primary collects f+1 ViewChanges (its own included). Any
//!   update committed in an earlier view was held by f+1 replicas, so one of them is in this
//!   quorum: walking the updates they hold or recently applied from the highest committed
//!   one, the new primary finds every committed update and the uncommitted ones after it. It
//!   applies them, commits those already committed somewhere, and proposes the others again
//!   *unchanged* (same view, same chain hash), so replicas that already hold or applied them
//!   stay on one chain. When it lacks committed updates that no account still carries, it
//!   asks for a snapshot first ([`Effect::NeedState`]).
//! - A view *starts* at a replica when its NewView is made or accepted there; until then it
//!   takes no requests, updates or commits of that view.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_proto::crypto;
use vpr_proto::digest::Digest;
use vpr_proto::msg::{self, Commit, NewView, Probe, ReplicaId, Update, ViewChange};

use super::durable::Change;
use super::primary::{commit_tag, update_tag};
use super::{Effect, Held, InFlight, Manager};
use crate::tcc::{Counter, Tcc};

impl<T: Tcc> Manager<T> {
    /// The primary seems silent (or this replica's view never started): propose the next view.
    pub(super) fn suspect(&mut self) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if self.is_primary() && self.started {
            return Err(String::from("suspect: this replica is the primary of a started view"));
        }
        let mut probe = Probe { replica: self.group.me, view: self.view + 1, tag: [0; 32] };
        probe.tag = crypto::mac(&key, &[&probe.signed_bytes()]);
        Ok(vec![Effect::Probe(probe)])
    }

    /// f+1 Probes for a later view: move to it and report to its primary.
    pub(super) fn on_probes(&mut self, probes: &[Probe]) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        let mut by_view: BTreeMap<u64, Vec<ReplicaId>> = BTreeMap::new();
        for p in probes {
            let ok = p.view > self.view
                && p.replica < self.group.replicas
                && crypto::mac_ok(&key, &[&p.signed_bytes()], &p.tag);
            if ok {
                let from = by_view.entry(p.view).or_default();
                if !from.contains(&p.replica) {
                    from.push(p.replica);
                }
            }
        }
        let quorum = self.group.faults() + 1;
        let Some(target) =
            by_view.iter().rev().find(|(_, from)| from.len() >= quorum).map(|(view, _)| *view)
        else {
            return Err(format!(
                "probes: fewer than {quorum} valid for any view after {}",
                self.view
            ));
        };
        self.enter_view(target)?;
        if self.recover_to.is_some() || self.committed.0 < self.counts_from {
            // Restarted: its account would not cover what it may have acknowledged.
            return Ok(Vec::new());
        }
        // Committed updates it still remembers, then those it holds with the view in which it
        // accepted each: a lagging new primary can find in them what it missed, and picks by
        // the highest view of acceptance.
        let applied = self
            .log
            .iter()
            .map(|(u, _)| msg::Held { accepted: msg::Held::APPLIED, update: u.clone() });
        let held =
            self.held.iter().map(|h| msg::Held { accepted: h.accepted, update: h.update.clone() });
        let held: Vec<msg::Held> = applied.chain(held).collect();
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
    pub(super) fn enter_view(&mut self, view: u64) -> Result<(), String> {
        if view <= self.view {
            return Ok(());
        }
        let (was_primary, left) = (self.is_primary(), self.view);
        self.view = self.advance(Counter::View, view)?;
        if was_primary {
            // Our database holds the pages of updates that may never commit: take them back
            // (newest first) and hold the updates, as a backup would: this replica accepted
            // them in the view it leads. (Whatever it held before, in a view it never
            // started, stays held: it may have acknowledged those.)
            let mut reverted = true;
            for u in self.in_flight.iter().rev() {
                if reverted && self.service.revert(&u.undo).is_err() {
                    reverted = false;
                }
            }
            if !reverted {
                // Out of memory half-way: only state transfer can bring this replica back.
                self.stale = true;
            }
            let proposed = self.in_flight.drain(..).map(|u| Held {
                update: u.update,
                chain: u.chain,
                accepted: left,
            });
            self.held.extend(proposed);
            self.head = self.held_head();
            self.service.keep_undo(false);
            self.undo_on = false;
        }
        self.in_flight.clear();
        self.started = false;
        self.new_view = None;
        Ok(())
    }

    /// New primary: f+1 ViewChanges for its view; adopt the highest state and announce it.
    pub(super) fn on_view_changes(&mut self, vcs: &[ViewChange]) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if !self.is_primary() || self.started {
            return Err(String::from("view changes: not the primary of a view still to start"));
        }
        if self.recover_to.is_some() || self.committed.0 < self.counts_from {
            return Err(String::from("view changes: restarted, this replica cannot lead yet"));
        }
        if self.resigned == Some(self.view) {
            return Err(String::from(
                "view changes: restarted in the view it had started, this replica leads it no more",
            ));
        }
        let mut from: Vec<ReplicaId> = vec![self.group.me];
        // The highest committed state reported, and by whom.
        let mut committed = (self.committed.0, self.committed.1, self.group.me);
        // Per sequence number: every update reported, its chain hash, and the highest view in
        // which the reporting replica accepted it.
        let mut candidates: BTreeMap<u64, Vec<(Update, Digest, u64)>> = BTreeMap::new();
        for h in &self.held {
            candidates.entry(h.update.seq).or_default().push((
                h.update.clone(),
                h.chain,
                h.accepted,
            ));
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
                committed = (vc.committed, vc.committed_chain, vc.replica);
            }
            for h in &vc.held {
                let u = &h.update;
                if u.seq <= self.committed.0 {
                    continue;
                }
                let chain = u.chain();
                if update_tag(&key, &chain) == u.tag && u.state.validate().is_ok() {
                    candidates.entry(u.seq).or_default().push((u.clone(), chain, h.accepted));
                }
            }
        }
        if from.len() < self.group.faults() + 1 {
            return Err(format!(
                "view changes: {} valid, {} needed",
                from.len(),
                self.group.faults() + 1
            ));
        }
        let need_state = Effect::NeedState { replica: committed.2, committed: committed.0 };
        if self.stale {
            if committed.2 == self.group.me {
                return Err(String::from(
                    "view changes: this old primary needs a snapshot no account can give",
                ));
            }
            return Ok(vec![need_state]);
        }
        // Walk the chain from what we applied, taking at each step the update accepted in the
        // highest view (applied ones first): an update committed in view w was accepted there
        // by f+1 replicas, one of them in this quorum, and every later view proposed it again
        // (Paxos' rule, per sequence number; docs/safety.md).
        let mut adopted: Vec<(Update, Digest)> = Vec::new();
        let mut at = self.committed;
        while let Some(options) = candidates.get(&(at.0 + 1)) {
            let linked = || options.iter().filter(|(u, _, _)| u.prev == at.1);
            let Some(top) = linked().map(|(_, _, accepted)| *accepted).max() else { break };
            let mut best = linked().filter(|(_, _, accepted)| *accepted == top);
            let Some((u, c, _)) = best.next() else { break };
            if top != msg::Held::APPLIED && best.any(|(_, other, _)| other != c) {
                // One view proposes one update per number: two means a broken assumption
                // (a twin primary, say). Deciding for one could lose the other: refuse.
                return Err(format!(
                    "view changes: two updates accepted in view {top} at {}",
                    u.seq
                ));
            }
            at = (u.seq, *c);
            adopted.push((u.clone(), *c));
        }
        let off_chain = adopted
            .iter()
            .find(|(u, _)| u.seq == committed.0)
            .is_some_and(|(_, c)| *c != committed.1);
        if at.0 < committed.0 || off_chain {
            // A committed update is missing here and in every account: fetch the state.
            return Ok(vec![need_state]);
        }
        if adopted.len() > msg::MAX_NEW_VIEW_CHAINS {
            return Err(format!("view changes: {} updates to carry over", adopted.len()));
        }
        self.held.clear();
        self.note(Change::Accepted { view: self.view, keep: 0 });
        let resend = match self.adopt(adopted, committed.0) {
            Ok(resend) => resend,
            Err(reason) => {
                // Half-adopted: the database may hold pages of updates no longer in flight
                // here. Only a snapshot can repair it.
                self.stale = true;
                self.in_flight.clear();
                self.head = self.committed;
                return Err(reason);
            }
        };
        if self.head.0 < self.committed.0 {
            self.head = self.committed;
        }
        self.started = true;
        // The chain this view continues: the last updates applied here (for backups that lag)
        // and those carried over. Backups accept an earlier view's update only if listed.
        let mut listed: VecDeque<(u64, Digest)> = VecDeque::new();
        let applied = self.log.iter().map(|(u, c)| (u.seq, *c));
        for (seq, chain) in applied.chain(self.in_flight.iter().map(|u| (u.update.seq, u.chain))) {
            if listed.back().is_some_and(|(last, _)| *last + 1 != seq) {
                listed.clear(); // only a run of consecutive updates can be listed
            }
            listed.push_back((seq, chain));
            if listed.len() > msg::MAX_NEW_VIEW_CHAINS {
                listed.pop_front();
            }
        }
        let first = listed.front().map_or(self.committed.0 + 1, |(seq, _)| *seq);
        let mut nv = NewView {
            view: self.view,
            base: self.committed.0,
            base_chain: self.committed.1,
            first,
            chains: listed.into_iter().map(|(_, c)| c).collect(),
            tag: [0; 32],
        };
        nv.tag = crypto::mac(&key, &[&nv.signed_bytes()]);
        let mut effects = vec![Effect::NewView(nv)];
        effects.extend(resend.into_iter().map(Effect::Update));
        let (seq, chain) = self.committed;
        let tag = commit_tag(&key, self.view, seq, &chain);
        effects.push(Effect::Commit(Commit { view: self.view, seq, chain, tag }));
        Ok(effects)
    }

    /// New primary: applies the adopted chain; commits the updates up to `committed` (the
    /// highest committed state reported) and keeps the rest in flight, to propose again.
    /// Returns the updates to send. On error the database may hold some of them.
    fn adopt(
        &mut self,
        adopted: Vec<(Update, Digest)>,
        committed: u64,
    ) -> Result<Vec<Update>, String> {
        let mut resend = Vec::with_capacity(adopted.len());
        for (u, c) in adopted {
            if u.seq > committed {
                // From here on the updates are not committed yet: keep what they overwrite.
                self.start_undo();
            }
            if self.durable() {
                self.note(Change::Hold { update: u.clone(), accepted: self.view });
            }
            if let Err(e) = self.service.apply(&u.state) {
                return Err(self.stop(format!("adopt {}: {e}", u.seq)));
            }
            if u.seq <= committed {
                self.count_state(u.seq, "adopting")?;
                self.committed = (u.seq, c);
                self.note(Change::Apply { seq: u.seq });
                self.remember(u.clone(), c);
            } else {
                let undo = self.service.take_undo().unwrap_or_default();
                self.in_flight.push_back(InFlight {
                    update: u.clone(),
                    chain: c,
                    acks: Vec::new(),
                    undo,
                });
            }
            self.head = (u.seq, c);
            resend.push(u);
        }
        Ok(resend)
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
        if nv.view == self.view && self.new_view.is_some() {
            return Ok(Vec::new()); // a resend: this view already started here
        }
        // (A view a snapshot started here still takes its NewView.)
        self.enter_view(nv.view)?;
        // Keep the held updates (consecutive from the last applied) up to the last one the
        // NewView lists with the same chain hash, or made in the new view by its primary
        // (after a snapshot started it here): chain hashes link them, so that one vouches for
        // every one before it, and this replica accepts them in the new view. Anything after
        // it is on a branch the new view abandoned.
        let mut at = self.committed;
        let mut keep = 0;
        for (i, h) in self.held.iter().enumerate() {
            if h.update.seq != at.0 + 1 || h.update.prev != at.1 {
                break;
            }
            at = (h.update.seq, h.chain);
            if nv.chain_at(at.0) == Some(at.1) || h.update.view == nv.view {
                keep = i + 1;
            }
        }
        self.held.truncate(keep);
        for h in &mut self.held {
            h.accepted = nv.view;
        }
        self.note(Change::Accepted { view: nv.view, keep: keep as u64 });
        self.head = self.held_head();
        self.new_view = Some(nv.clone());
        self.started = true;
        self.check_state()?;
        if self.held_head().0 < nv.base {
            return Ok(vec![Effect::Behind { committed: nv.base }]);
        }
        Ok(Vec::new())
    }
}
