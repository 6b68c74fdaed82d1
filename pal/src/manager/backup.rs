//! The backup side of Fig 5.4: verify and hold updates, acknowledge them, and apply them when
//! the primary says they are committed.
//!
//! The thesis applies update j-1 when update j arrives, since without pipelining j is only
//! proposed once j-1 was held by a majority. With several updates in flight that inference no
//! longer holds, so backups apply on the primary's `Commit`, which it sends after every
//! execution 2: nothing waits for a later write.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_proto::msg::{Ack, Commit, Update};

use super::primary::{ack_tag, commit_tag, update_tag};
use super::{Effect, Manager};
use crate::tcc::{Counter, Tcc};

impl<T: Tcc> Manager<T> {
    /// Checks an update, holds it and acknowledges it.
    pub(super) fn on_update(&mut self, update: Update) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        // An update of an earlier view is accepted only as announced by the new primary.
        let carried_over = update.view < self.view && update.seq <= self.adopt_until;
        if self.is_primary() || (update.view != self.view && !carried_over) {
            return Err(String::from("update: not for a backup of this view"));
        }
        if !self.started {
            return Err(String::from("update: this view has not started here (no NewView yet)"));
        }
        self.check_state()?;
        update.state.validate().map_err(|e| format!("update: {e}"))?;
        let chain = update.chain();
        if update_tag(&key, &chain) != update.tag {
            return Err(String::from("update: bad authenticator"));
        }
        let ack = |seq| {
            let tag = ack_tag(&key, self.group.me, self.view, seq, &chain);
            Effect::Ack(Ack { replica: self.group.me, view: self.view, seq, chain, tag })
        };
        if update.seq <= self.committed.0 {
            // Already applied: acknowledge again if it is the one applied.
            // Below the last applied update, the committed chain has one update per number:
            // the primary's (it commits nothing else). An Ack for it changes no decision and
            // stops its retransmission.
            let applied = (update.seq == self.committed.0 && chain == self.committed.1)
                || update.seq < self.committed.0;
            return if applied {
                Ok(vec![ack(update.seq)])
            } else {
                Err(format!("update {}: already applied", update.seq))
            };
        }
        if let Some(i) = self.held.iter().position(|(u, _)| u.seq == update.seq) {
            let (held, held_chain) = &self.held[i];
            if *held_chain == chain {
                return Ok(vec![ack(update.seq)]); // a retransmission
            }
            // Two updates for one sequence number: the one from the later view wins (an
            // earlier view's primary was replaced, and its unconfirmed branch with it).
            if update.view <= held.view || update.prev != self.held_prev(i) {
                return Err(format!("update {}: conflicts with the one held", update.seq));
            }
            self.held.truncate(i);
            self.head = self.held.back().map_or(self.committed, |(u, c)| (u.seq, *c));
        }
        if update.seq > self.head.0 + 1 {
            // Updates were missed: retransmission (or a snapshot) must fill the gap first.
            return Ok(vec![Effect::Behind { committed: update.seq - 1 }]);
        }
        if update.prev != self.head.1 {
            return Err(format!(
                "update {}: does not follow the last one held ({})",
                update.seq, self.head.0
            ));
        }
        if self.held.len() >= self.group.max_in_flight as usize {
            return Err(String::from("update: too many held updates"));
        }
        let effect = ack(update.seq);
        if carried_over && update.seq == self.adopt_until && chain == self.adopt_chain {
            // The chain reached the announced head: the NewView vouches for all of it.
            self.verified = update.seq;
        }
        self.head = (update.seq, chain);
        self.held.push_back((update, chain));
        Ok(vec![effect])
    }

    /// The chain hash the `i`th held update follows.
    fn held_prev(&self, i: usize) -> vpr_proto::digest::Digest {
        match i.checked_sub(1) {
            Some(j) => self.held[j].1,
            None => self.committed.1,
        }
    }

    /// Applies held updates up to the committed one.
    pub(super) fn on_commit(&mut self, commit: &Commit) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if commit.view != self.view
            || commit_tag(&key, commit.view, commit.seq, &commit.chain) != commit.tag
        {
            return Err(String::from("commit: bad authenticator or view"));
        }
        self.check_state()?;
        if !self.started {
            // Held updates may still be on another branch until the NewView sorts them out.
            return Err(String::from("commit: this view has not started here (no NewView yet)"));
        }
        if commit.seq <= self.committed.0 {
            return Ok(Vec::new());
        }
        // Updates commit in chain order, so a Commit for c covers every held update up to c.
        // Held updates are linked by their chain hashes, so one that is vouched for vouches
        // for all before it: the held update c itself (with the Commit's chain hash), or one
        // made in this view (its primary built on its own chain), or one a NewView announced.
        // Updates carried over from an earlier view and not yet vouched for wait.
        let upto = match self.held.iter().find(|(u, _)| u.seq == commit.seq) {
            Some((_, chain)) if *chain == commit.chain => commit.seq,
            Some(_) => {
                return Err(format!(
                    "commit {}: another chain hash than the held update",
                    commit.seq
                ));
            }
            None => self
                .held
                .iter()
                .filter(|(u, _)| {
                    u.seq <= commit.seq && (u.view == self.view || u.seq <= self.verified)
                })
                .map(|(u, _)| u.seq)
                .max()
                .unwrap_or(self.committed.0),
        };
        while self.held.front().is_some_and(|(u, _)| u.seq <= upto) {
            let Some((update, chain)) = self.held.pop_front() else { break };
            self.service.apply(&update.state).map_err(|e| format!("apply {}: {e}", update.seq))?;
            let counter = self.tcc.increment(Counter::State).map_err(|e| e.0)?;
            if counter != update.seq {
                return Err(format!("state counter at {counter}, applying update {}", update.seq));
            }
            self.committed = (update.seq, chain);
            self.remember(update, chain);
        }
        if self.committed.0 < commit.seq {
            return Ok(vec![Effect::Behind { committed: commit.seq }]);
        }
        Ok(Vec::new())
    }
}
