//! State transfer and restart.
//!
//! - *Snapshots*: a replica whose database holds exactly its committed state (any backup; a
//!   primary with nothing in flight) ships the whole file, authenticated under K with the
//!   chain hash of its last update. A replica that lags beyond what retransmission can give,
//!   an old primary left with uncommitted pages, a new primary that lacks committed updates,
//!   and a restarted replica adopt one. The trusted state counter only moves forward, so no
//!   replica adopts a state older than one it applied.
//! - *Restart*: a replica's TCC memory is lost when its process dies. Once the group is formed
//!   the Manager seals (group configuration, replica id, K) to its own identity; a restarted
//!   Manager unseals it, raises the incarnation counter (any older Manager of this replica
//!   still running, a twin, stops acting), reads its trusted counters, and waits for a
//!   snapshot at least as new as its state counter before it acts. It also may have acknowledged updates it no longer
//!   holds (at most `max_in_flight` past its state counter): its ViewChanges count only once
//!   it committed past them, so a view change can never be decided without an update a
//!   majority acknowledged.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_proto::crypto::{self, Key};
use vpr_proto::msg::{Commit, Snapshot};

use super::primary::commit_tag;
use super::{Effect, GroupConfig, Manager, Phase};
use crate::service::Service;
use crate::tcc::{Counter, Tcc};

/// Version of the sealed group state.
const SEALED_VERSION: u8 = 1;

impl<T: Tcc> Manager<T> {
    /// The group state to seal once this replica is in the group.
    pub(super) fn sealed_state(&mut self) -> Result<Effect, String> {
        let key = *self.group_key()?;
        let data = crypto::concat(&[
            &[SEALED_VERSION],
            self.config.as_bytes(),
            &self.group.me.to_le_bytes(),
            &key,
        ]);
        let blob = self.tcc.seal(&data).map_err(|e| e.0)?;
        Ok(Effect::Sealed(blob))
    }

    /// A Manager restarted from its sealed group state: it holds K again, its view is its
    /// trusted view counter, and it waits for a snapshot of at least its state counter.
    ///
    /// A durable Manager restored this way lost its log (or the host's log was refused): its
    /// new log starts with a record saying so, which waits for the host's confirmation
    /// ([`Manager::recover`] restarts from the log instead).
    pub fn restore(tcc: T, group: GroupConfig, sealed: &[u8]) -> Result<Self, String> {
        let mut manager = Manager::unsealed(tcc, group, sealed)?;
        // Only a blob that restores this replica silences the Manager running as it.
        manager.incarnate()?;
        let view = manager.tcc.counter(Counter::View).map_err(|e| e.0)?;
        let state = manager.tcc.counter(Counter::State).map_err(|e| e.0)?;
        manager.view = view;
        // Whatever this replica did in its view before the restart is lost: it waits for the
        // next view (or a snapshot) before it serves as primary or backup again.
        manager.started = false;
        manager.recover_to = Some(state);
        let in_flight = u64::from(manager.group.max_in_flight);
        manager.counts_from = state.saturating_add(in_flight);
        manager.restart_log()?;
        Ok(manager)
    }

    /// A Manager over a new, empty database that holds the group key again: the sealed group
    /// state opened and checked against `group`.
    pub(super) fn unsealed(mut tcc: T, group: GroupConfig, sealed: &[u8]) -> Result<Self, String> {
        let data = tcc.unseal(sealed).map_err(|e| format!("sealed group state: {}", e.0))?;
        let mut manager = Manager::fresh(tcc, group)?;
        let expected = 1 + 32 + 2 + 32;
        if data.len() != expected || data[0] != SEALED_VERSION {
            return Err(String::from("sealed group state: unknown format"));
        }
        if data[1..33] != *manager.config.as_bytes() {
            return Err(String::from("sealed group state: another configuration"));
        }
        if data[33..35] != manager.group.me.to_le_bytes() {
            return Err(String::from("sealed group state: another replica's"));
        }
        let mut key: Key = [0; 32];
        key.copy_from_slice(&data[35..]);
        manager.key = Some(key);
        manager.phase = Phase::Ready;
        Ok(manager)
    }

    /// A snapshot of the committed state, if the database holds exactly that.
    pub(super) fn make_snapshot(&mut self) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        self.check_state()?;
        // A primary's database also holds its updates in flight: revert them on a copy.
        let state = if self.in_flight.is_empty() {
            self.service.snapshot()
        } else {
            self.service
                .snapshot_before(self.in_flight.iter().rev().map(|u| &u.undo))
                .ok_or_else(|| String::from("snapshot: out of memory"))?
        };
        let mut snapshot = Snapshot {
            replica: self.group.me,
            view: self.view,
            seq: self.committed.0,
            chain: self.committed.1,
            state,
            tag: [0; 32],
        };
        snapshot.tag = crypto::mac(&key, &[&snapshot.signed_bytes()]);
        Ok(vec![Effect::Snapshot(Box::new(snapshot))])
    }

    /// Adopts a newer committed state from another replica.
    pub(super) fn on_snapshot(&mut self, snapshot: &Snapshot) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if snapshot.replica >= self.group.replicas
            || !crypto::mac_ok(&key, &[&snapshot.signed_bytes()], &snapshot.tag)
        {
            return Err(String::from("snapshot: bad authenticator"));
        }
        // Its maker was in its view, so f+1 replicas moved there (Unique Majority): so may
        // we, whether or not its state is news to us.
        if snapshot.view > self.view {
            self.enter_view(snapshot.view)?;
        }
        let must_replace = self.needs_state().is_some();
        let newer =
            snapshot.seq > self.committed.0 || (must_replace && snapshot.seq >= self.committed.0);
        if !newer {
            return Err(format!(
                "snapshot: update {} is not newer than the state here ({})",
                snapshot.seq, self.committed.0
            ));
        }
        if let Some(floor) = self.recover_to {
            if snapshot.seq < floor {
                return Err(format!(
                    "snapshot: update {} is older than this replica's state counter ({floor})",
                    snapshot.seq
                ));
            }
        }
        if self.is_primary() && self.started {
            // Not even a stale one: it would then propose a second update at a sequence
            // number of this view it already proposed (docs/safety.md). A stale primary
            // stops acting; the next view change moves it, and it catches up as a backup.
            return Err(String::from("snapshot: the primary of a started view does not adopt one"));
        }
        let counter = self.tcc.counter(Counter::State).map_err(|e| e.0)?;
        if snapshot.seq < counter {
            return Err(format!(
                "snapshot: update {} is older than the trusted state counter ({counter})",
                snapshot.seq
            ));
        }
        let service = Service::from_snapshot(&self.group.service, &snapshot.state)
            .map_err(|e| format!("snapshot: {e}"))?;
        self.service = service;
        self.undo_on = false;
        self.advance(Counter::State, snapshot.seq)?;
        self.committed = (snapshot.seq, snapshot.chain);
        self.stale = false;
        self.recover_to = None;
        self.log.clear();
        self.in_flight.clear();
        // Held updates beyond the snapshot stay if they continue its chain: they were
        // acknowledged, and a view change may need them. Others cannot have been committed.
        // (They keep the view in which they were accepted.)
        let mut at = self.committed;
        let mut kept = alloc::collections::VecDeque::new();
        for h in self.held.drain(..) {
            if h.update.seq == at.0 + 1 && h.update.prev == at.1 {
                at = (h.update.seq, h.chain);
                kept.push_back(h);
            }
        }
        self.held = kept;
        self.head = at;
        // A backup in the snapshot's view that holds nothing past it may start the view (a
        // restarted replica in a view whose NewView is long gone, view 0 even has none): it
        // then accepts only updates made in this view, which continue its chain. With held
        // updates left, only the view's NewView says which of them the view keeps.
        if snapshot.view == self.view && !self.is_primary() && self.held.is_empty() {
            self.started = true;
        }
        if let Err(e) = self.note_state() {
            // The database changed: without its record a restart would not know.
            return Err(self.stop(format!("snapshot: {e}")));
        }
        Ok(Vec::new())
    }

    /// Primary of a started view: the Commit of what is committed, for backups to hear that
    /// the primary is alive (and to apply what they hold up to it).
    pub(super) fn heartbeat(&mut self) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if !self.is_primary() || !self.started {
            return Err(String::from("heartbeat: not the primary of a started view"));
        }
        self.check_state()?;
        let (seq, chain) = self.committed;
        let tag = commit_tag(&key, self.view, seq, &chain);
        Ok(vec![Effect::Commit(Commit { view: self.view, seq, chain, tag })])
    }
}
