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

use super::durable::Change;
use super::primary::{ack_tag, commit_tag, update_tag};
use super::{Effect, Held, Manager};
use crate::tcc::Tcc;

impl<T: Tcc> Manager<T> {
    /// Checks an update, holds it and acknowledges it.
    ///
    /// A backup accepts, in a view that started here, an update made in this view (only its
    /// primary makes those), or one of an earlier view that this view's NewView lists at its
    /// sequence number with its chain hash. Everything it holds in a started view is thus on
    /// this view's primary's chain, accepted in this view.
    pub(super) fn on_update(&mut self, update: Update) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if self.is_primary() || update.view > self.view {
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
        if update.view < self.view {
            let listed = self.new_view.as_ref().and_then(|nv| nv.chain_at(update.seq));
            if listed != Some(chain) {
                return Err(format!(
                    "update {}: of view {}, and this view's NewView does not carry it over",
                    update.seq, update.view
                ));
            }
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
            // (Checked against the updates it remembers where it can.)
            let remembered = self.log.iter().find(|(u, _)| u.seq == update.seq);
            let applied = match remembered {
                _ if update.seq == self.committed.0 => chain == self.committed.1,
                Some((_, c)) => *c == chain,
                None => update.seq < self.committed.0,
            };
            return if applied {
                Ok(vec![ack(update.seq)])
            } else {
                Err(format!("update {}: already applied", update.seq))
            };
        }
        if let Some(held) = self.held.iter().find(|h| h.update.seq == update.seq) {
            // Everything held in a started view is on this view's chain: one update per number.
            return if held.chain == chain {
                Ok(vec![ack(update.seq)]) // a retransmission
            } else {
                Err(format!("update {}: conflicts with the one held", update.seq))
            };
        }
        let head = self.held_head();
        if update.seq > head.0 + 1 {
            // Updates were missed: retransmission (or a snapshot) must fill the gap first.
            return Ok(vec![Effect::Behind { committed: update.seq - 1 }]);
        }
        if update.prev != head.1 {
            return Err(format!(
                "update {}: does not follow the last one held ({})",
                update.seq, head.0
            ));
        }
        if self.held.len() >= self.group.max_in_flight as usize {
            return Err(String::from("update: too many held updates"));
        }
        let effect = ack(update.seq);
        if self.durable() {
            self.note(Change::Hold { update: update.clone(), accepted: self.view });
        }
        self.held.push_back(Held { update, chain, accepted: self.view });
        Ok(vec![effect])
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
        // Updates commit in chain order, and everything held in a started view is on this
        // view's primary's chain: a Commit for c covers every held update up to c.
        if let Some(held) = self.held.iter().find(|h| h.update.seq == commit.seq) {
            if held.chain != commit.chain {
                return Err(format!(
                    "commit {}: another chain hash than the held update",
                    commit.seq
                ));
            }
        }
        while self.held.front().is_some_and(|h| h.update.seq <= commit.seq) {
            let Some(Held { update, chain, .. }) = self.held.pop_front() else { break };
            // From here on the update is out of the held queue: a failure stops the Manager.
            if let Err(e) = self.service.apply(&update.state) {
                return Err(self.stop(format!("apply {}: {e}", update.seq)));
            }
            self.count_state(update.seq, "applying")?;
            self.committed = (update.seq, chain);
            self.note(Change::Apply { seq: update.seq });
            self.remember(update, chain);
        }
        if self.committed.0 < commit.seq {
            return Ok(vec![Effect::Behind { committed: commit.seq }]);
        }
        Ok(Vec::new())
    }
}
