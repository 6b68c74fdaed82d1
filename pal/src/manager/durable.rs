//! Durable state: a write-ahead log on the host's disk, checked by the TCC (docs/design.md,
//! "Durable state").
//!
//! A durable Manager describes every change to what it holds — an update held or proposed,
//! updates applied, a new view's verdict on its held updates, a whole new state — as
//! [`Change`]s. At the end of a call that made changes it seals them into one *record*,
//! numbered from 1, chained to the record before by hash, encrypted and authenticated under a
//! key derived from the group key K for this replica alone, and asks the host to persist it
//! ([`Effect::Persist`]). Until the host says the record is on disk ([`Call::Persisted`]) the
//! Manager refuses every other call and keeps the call's effects to itself. On confirmation
//! it raises its trusted *log counter* to the record's number and only then hands them out.
//! So every Ack, Release, ViewChange or reply that ever left a Manager depends on records up
//! to its log counter, and no further.
//!
//! A restarted Manager ([`Manager::recover`]) takes the log from a checkpoint record on,
//! checks that every record opens under its key, that their numbers follow one another and
//! their hashes chain, and that the log reaches its trusted log counter. It replays them and
//! rejoins the group as the replica it was: its account counts in a view change at once (no
//! discount, unlike a restart without a log). Records past the counter were never confirmed:
//! nothing that left depends on them, and they are ignored.
//!
//! Before it does anything else, a restarted Manager writes a *fence*: a record with nothing
//! but the chain, confirmed like any other. Records an earlier incarnation wrote and never had
//! confirmed carry the numbers right after the counter; the fence takes the first of them, so
//! that the records this incarnation's effects depend on have numbers no other incarnation
//! wrote. (Another incarnation's unconfirmed record at the fence's number may be taken
//! instead of the fence at a later restart: it chains to the same confirmed record, and no
//! effect left on it or on the fence.)

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_proto::crypto::{self, Key};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{get_bytes, get_vec_with, put_bytes, put_len, Update, Wire};
use vpr_proto::tcc::MAX_RECORD_BYTES;
use vpr_proto::update::{StateUpdate, MAX_UPDATE_BYTES};
use vpr_proto::wire::{DecodeError, Reader, Writer};

use super::{Call, Effect, GroupConfig, Held, Manager};
use crate::service::Service;
use crate::tcc::{Counter, Tcc};

/// The first bytes of every record.
const MAGIC: &[u8; 4] = b"vprL";
/// The record format's version.
const VERSION: u8 = 1;
/// A record's clear header: magic, version, kind, index, incarnation, previous record's hash.
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 8 + 32;
/// Record kinds.
const KIND_CHANGES: u8 = 1;
const KIND_CHECKPOINT: u8 = 2;

/// One change to what a Manager holds, as a record carries it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Change {
    /// An update held (backup) or proposed (primary), accepted in view `accepted`.
    Hold { update: Update, accepted: u64 },
    /// The held updates up to `seq` applied, in order.
    Apply { seq: u64 },
    /// A new view's verdict: the first `keep` held updates stay, now accepted in `view`.
    Accepted { view: u64, keep: u64 },
    /// A whole state: a checkpoint, an adopted snapshot, or a restart that lost the database.
    State(Box<Checkpoint>),
}

/// A whole state of a Manager, as a checkpoint record holds it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Checkpoint {
    /// The last update committed or applied, and its chain hash.
    committed: (u64, Digest),
    /// The database at `committed`, or lost: a snapshot of at least this update must bring
    /// it.
    database: Result<StateUpdate, u64>,
    /// The held updates after `committed`, with the view in which each was accepted.
    held: Vec<(Update, u64)>,
    /// The replica's account counts in view changes only once it committed this far.
    counts_from: u64,
    /// The view this replica had started (its NewView made or accepted, or begun by a
    /// snapshot), if its current view had started.
    started: Option<u64>,
}

impl Change {
    fn put(&self, w: &mut Writer) {
        match self {
            Change::Hold { update, accepted } => {
                w.u8(1).u64(*accepted);
                update.put(w);
            }
            Change::Apply { seq } => {
                w.u8(2).u64(*seq);
            }
            Change::Accepted { view, keep } => {
                w.u8(3).u64(*view).u64(*keep);
            }
            Change::State(c) => {
                w.u8(4).u64(c.committed.0).bytes(c.committed.1.as_bytes()).u64(c.counts_from);
                w.u8(u8::from(c.started.is_some())).u64(c.started.unwrap_or(0));
                match &c.database {
                    Ok(database) => {
                        w.u8(1);
                        put_bytes(w, &database.encode());
                    }
                    Err(floor) => {
                        w.u8(0).u64(*floor);
                    }
                }
                put_len(w, c.held.len());
                for (update, accepted) in &c.held {
                    w.u64(*accepted);
                    update.put(w);
                }
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => {
                let accepted = r.u64()?;
                Change::Hold { update: Update::get(r)?, accepted }
            }
            2 => Change::Apply { seq: r.u64()? },
            3 => Change::Accepted { view: r.u64()?, keep: r.u64()? },
            4 => {
                let seq = r.u64()?;
                let chain = Digest(r.array()?);
                let counts_from = r.u64()?;
                let started = match (r.u8()?, r.u64()?) {
                    (0, _) => None,
                    (1, view) => Some(view),
                    (other, _) => {
                        return Err(DecodeError::Invalid { field: "started", value: other.into() })
                    }
                };
                let database = match r.u8()? {
                    0 => Err(r.u64()?),
                    1 => Ok(StateUpdate::decode(get_bytes(r, "database", MAX_UPDATE_BYTES)?)?),
                    other => {
                        return Err(DecodeError::Invalid { field: "database", value: other.into() })
                    }
                };
                let held = get_vec_with(r, "held", usize::MAX, 8, |r| {
                    let accepted = r.u64()?;
                    Ok((Update::get(r)?, accepted))
                })?;
                Change::State(Box::new(Checkpoint {
                    committed: (seq, chain),
                    database,
                    held,
                    counts_from,
                    started,
                }))
            }
            other => return Err(DecodeError::Invalid { field: "change", value: other.into() }),
        })
    }
}

/// A record's clear header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    kind: u8,
    index: u64,
    incarnation: u64,
    prev: Digest,
}

impl Header {
    fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5] = self.kind;
        out[6..14].copy_from_slice(&self.index.to_le_bytes());
        out[14..22].copy_from_slice(&self.incarnation.to_le_bytes());
        out[22..].copy_from_slice(self.prev.as_bytes());
        out
    }

    fn parse(record: &[u8]) -> Option<Header> {
        let header = record.get(..HEADER_LEN)?;
        if &header[..4] != MAGIC || header[4] != VERSION {
            return None;
        }
        let kind = header[5];
        if kind != KIND_CHANGES && kind != KIND_CHECKPOINT {
            return None;
        }
        Some(Header {
            kind,
            index: u64::from_le_bytes(header[6..14].try_into().ok()?),
            incarnation: u64::from_le_bytes(header[14..22].try_into().ok()?),
            prev: Digest(header[22..].try_into().ok()?),
        })
    }
}

/// The key this replica's records are sealed under: K's, for this configuration and id
/// alone (another replica's log, or another group's, does not open).
fn log_key(key: &Key, config: &Digest, me: u16) -> Key {
    crypto::mac(key, &[b"vpr log key", config.as_bytes(), &me.to_le_bytes()])
}

/// The data a record's seal binds besides its header.
fn associated(header: &[u8; HEADER_LEN], config: &Digest, me: u16) -> Vec<u8> {
    crypto::concat(&[header, config.as_bytes(), &me.to_le_bytes()])
}

/// A record waiting for the host's confirmation.
#[derive(Debug)]
struct Outstanding {
    index: u64,
    checkpoint: bool,
    record: Vec<u8>,
    /// The effects of the call that made it, held back until it is confirmed.
    effects: Vec<Effect>,
}

/// A durable Manager's log, as the Manager keeps it.
#[derive(Debug)]
pub(super) struct Log {
    key: Key,
    /// The number of the last record made.
    index: u64,
    /// The hash of the last record made.
    head: Digest,
    /// Changes made in the current call, not yet in a record.
    pending: Vec<Change>,
    /// The record waiting for the host's confirmation.
    outstanding: Option<Outstanding>,
}

impl Log {
    fn new(key: Key, index: u64, head: Digest) -> Self {
        Log { key, index, head, pending: Vec::new(), outstanding: None }
    }
}

impl<T: Tcc> Manager<T> {
    /// Starts the log of a durable Manager that just joined its group: its first record is a
    /// checkpoint of the initial state. A Manager that is not durable keeps no log.
    pub(super) fn start_log(&mut self) -> Result<(), String> {
        if !self.group.durable {
            return Ok(());
        }
        self.log_state = Some(self.new_log(0, Digest([0; 32]))?);
        self.note_state()
    }

    /// An empty log whose last record is number `index`, with hash `head`, sealed under this
    /// replica's log key.
    fn new_log(&self, index: u64, head: Digest) -> Result<Log, String> {
        Ok(Log::new(log_key(self.group_key()?, &self.config, self.group.me), index, head))
    }

    /// Whether this Manager keeps a log (its changes must be noted).
    pub(super) fn durable(&self) -> bool {
        self.log_state.is_some()
    }

    /// Notes a change for the current call's record (durable Managers only).
    pub(super) fn note(&mut self, change: Change) {
        if let Some(log) = &mut self.log_state {
            log.pending.push(change);
        }
    }

    /// The whole state this Manager holds, as a checkpoint.
    fn checkpoint_state(&self) -> Result<Checkpoint, String> {
        let database = if let Some(floor) = self.needs_state() {
            Err(floor)
        } else if self.in_flight.is_empty() {
            Ok(self.service.snapshot())
        } else {
            let undos = self.in_flight.iter().rev().map(|u| &u.undo);
            self.service
                .snapshot_before(undos)
                .map(Ok)
                .ok_or_else(|| String::from("checkpoint: out of memory"))?
        };
        let proposed = self.in_flight.iter().map(|u| (u.update.clone(), self.view));
        let held = self.held.iter().map(|h| (h.update.clone(), h.accepted));
        Ok(Checkpoint {
            committed: self.committed,
            database,
            held: held.chain(proposed).collect(),
            counts_from: self.counts_from,
            // A primary that resigned its view had started it: a later restart resigns again.
            started: (self.started || self.resigned == Some(self.view)).then_some(self.view),
        })
    }

    /// The whole current state, noted for the current call's record (a checkpoint).
    pub(super) fn note_state(&mut self) -> Result<(), String> {
        if self.durable() {
            let state = self.checkpoint_state()?;
            self.note(Change::State(Box::new(state)));
        }
        Ok(())
    }

    /// The host asks for a checkpoint ([`Call::Checkpoint`]).
    pub(super) fn checkpoint(&mut self) -> Result<Vec<Effect>, String> {
        if !self.durable() {
            return Err(String::from("checkpoint: this replica keeps no log (durability off)"));
        }
        self.group_key()?;
        self.note_state()?;
        Ok(Vec::new())
    }

    /// A call while a record waits for its confirmation: the record again (the host may have
    /// lost it), and a refusal of anything but that confirmation.
    pub(super) fn while_waiting(&mut self, call: &Call) -> Option<Vec<Effect>> {
        let waiting = self.log_state.as_ref()?.outstanding.as_ref()?;
        let index = waiting.index;
        if matches!(call, Call::Persisted { index: confirmed } if *confirmed == index) {
            return Some(
                self.persisted(index).unwrap_or_else(|reason| vec![Effect::Refused(reason)]),
            );
        }
        let again = Effect::Persist {
            index,
            checkpoint: waiting.checkpoint,
            record: waiting.record.clone(),
        };
        Some(match call {
            // The host asks which record waits.
            Call::Persisted { .. } => vec![again],
            _ => vec![
                again,
                Effect::Refused(format!("record {index} waits for its confirmation (persist it)")),
            ],
        })
    }

    /// After a call: seals the changes it made into the next record and holds `effects` back
    /// until the host confirms it; without changes, `effects` go out at once.
    pub(super) fn seal_record(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        self.seal(effects, false)
    }

    /// [`Manager::seal_record`]; with `force`, a record even without changes (a fence).
    fn seal(&mut self, effects: Vec<Effect>, force: bool) -> Vec<Effect> {
        if self.stopped.is_some() {
            if let Some(log) = &mut self.log_state {
                log.pending.clear();
            }
            return effects;
        }
        let Some(log) = &mut self.log_state else { return effects };
        // Updates applied (or committed) need no record of their own before anything leaves:
        // a Manager that restarts without them holds those updates instead, which its
        // accounts report as held (each was committed, so no later view holds another at its
        // number), and applies them again without moving the state counter. They go with the
        // next record.
        let lazy = log.pending.iter().all(|c| matches!(c, Change::Apply { .. }));
        if lazy && !force {
            return effects;
        }
        let mut changes = core::mem::take(&mut log.pending);
        // A whole state makes the changes before it in the same record needless.
        if let Some(last) = changes.iter().rposition(|c| matches!(c, Change::State(_))) {
            changes.drain(..last);
        }
        let checkpoint = matches!(changes.first(), Some(Change::State(_)));
        let header = Header {
            kind: if checkpoint { KIND_CHECKPOINT } else { KIND_CHANGES },
            index: log.index + 1,
            incarnation: self.incarnation,
            prev: log.head,
        };
        let mut w = Writer::new();
        put_len(&mut w, changes.len());
        changes.iter().for_each(|c| c.put(&mut w));
        let body = w.into_vec();
        let too_long = body.len() + HEADER_LEN + 28 > MAX_RECORD_BYTES;
        let (Ok(incarnation), false) = (u32::try_from(self.incarnation), too_long) else {
            let why = format!(
                "record {}: {} bytes, incarnation {} (at most {MAX_RECORD_BYTES} bytes, 2^32 \
                 incarnations)",
                header.index,
                body.len(),
                self.incarnation
            );
            return vec![Effect::Refused(self.stop(why))];
        };
        // The nonce is the record's number and this incarnation's: no two records under one
        // key share it (an incarnation writes each number once).
        let mut nonce = [0; 12];
        nonce[..8].copy_from_slice(&header.index.to_le_bytes());
        nonce[8..].copy_from_slice(&incarnation.to_le_bytes());
        let head = header.bytes();
        let aad = associated(&head, &self.config, self.group.me);
        let mut record = head.to_vec();
        record.extend_from_slice(&crypto::aead_seal(&log.key, nonce, &aad, &body));
        log.index = header.index;
        log.head = crypto::hash(&[&record]);
        let effect = Effect::Persist { index: header.index, checkpoint, record: record.clone() };
        log.outstanding = Some(Outstanding { index: header.index, checkpoint, record, effects });
        vec![effect]
    }

    /// The host confirms record `index` is on disk: raise the log counter, release the effects.
    pub(super) fn persisted(&mut self, index: u64) -> Result<Vec<Effect>, String> {
        let waiting = self.log_state.as_ref().and_then(|l| l.outstanding.as_ref());
        if waiting.map(|w| w.index) != Some(index) {
            return Err(format!("persisted: record {index} does not wait for a confirmation"));
        }
        let counter = self.increment(Counter::Log)?;
        if counter != index {
            return Err(self.stop(format!("log counter at {counter}, confirming record {index}")));
        }
        let effects = self
            .log_state
            .as_mut()
            .and_then(|log| log.outstanding.take())
            .map(|o| o.effects)
            .unwrap_or_default();
        Ok(effects)
    }

    /// A durable Manager restarted from its sealed group state and its log on the host's
    /// disk: it holds again what it held when it confirmed its last record, and counts in
    /// view changes at once. Its fence record waits for confirmation: the host asks for it
    /// with a [`Call::Persisted`] of any other number.
    ///
    /// # Errors
    /// The sealed state is refused, or the log is: a record that does not open (flipped
    /// bytes, another replica's or group's), numbers that do not follow one another, a chain
    /// broken (records swapped or from another history), a log that does not start with a
    /// checkpoint or ends before the trusted log counter (truncated, or an older log). The
    /// message names the check. The host may then restart the replica without its log
    /// ([`Manager::restore`]).
    pub fn recover(
        tcc: T,
        group: GroupConfig,
        sealed: &[u8],
        log: &[Vec<u8>],
    ) -> Result<Self, String> {
        if !group.durable {
            return Err(String::from("log: this replica is configured without durable state"));
        }
        let mut manager = Manager::unsealed(tcc, group, sealed)?;
        // From here on the Manager running as this replica (a twin) no longer acts, nor
        // confirms records: the log counter stays where it is read next.
        manager.incarnate()?;
        let confirmed = manager.tcc.counter(Counter::Log).map_err(|e| e.0)?;
        if confirmed == 0 {
            return Err(String::from(
                "log: the trusted log counter is 0, this replica never confirmed a record",
            ));
        }
        let fresh = manager.new_log(confirmed, Digest([0; 32]))?;
        let (head, changes) =
            open_log(&fresh.key, &manager.config, manager.group.me, log, confirmed)?;
        let mut started = None;
        for (index, change) in changes {
            manager
                .replay(change, &mut started)
                .map_err(|e| format!("log: record {index}: {e}"))?;
        }
        manager.view = manager.tcc.counter(Counter::View).map_err(|e| e.0)?;
        let state = manager.tcc.counter(Counter::State).map_err(|e| e.0)?;
        if state < manager.committed.0 {
            return Err(format!(
                "log: it applied update {}, and the trusted state counter is at {state} (the log \
                 is not this replica's history)",
                manager.committed.0
            ));
        }
        manager.state_floor = state;
        // A backup whose view had started holds only updates on that view's chain, and its log
        // says so: it goes on in that view (as after a snapshot, it takes the view's own updates
        // and no earlier view's). A primary does not lead again: what it proposed is now held,
        // as by a backup, and the next view decides it. Any other waits for the next view.
        manager.started = started == Some(manager.view) && !manager.is_primary();
        if started == Some(manager.view) && manager.is_primary() {
            // It led this view and lost what it knew of it (its NewView, the Acks): it does
            // not start the view a second time. The backups' suspicion moves the group on.
            manager.resigned = Some(manager.view);
        }
        manager.head = manager.held_head();
        manager.log_state = Some(Log { head, ..fresh });
        manager.seal(Vec::new(), true);
        Ok(manager)
    }

    /// A durable Manager restarted without its log (lost, or refused): it starts a log whose
    /// first record (a fence, numbered after the trusted log counter) says its database is
    /// lost, and waits for a snapshot as [`Manager::restore`] does.
    ///
    /// A Manager without a log moves the log counter past any log this replica kept before
    /// (if it ever kept one): what it acknowledges now is in no log, so no older log may
    /// restart it later as if it held everything it acknowledged.
    pub(super) fn restart_log(&mut self) -> Result<(), String> {
        if !self.group.durable {
            // Past the counter by two: a record some incarnation made and never had confirmed
            // carries the number right after the counter (a Manager has at most one waiting),
            // and must not come to stand at the counter.
            let confirmed = self.tcc.counter(Counter::Log).map_err(|e| e.0)?;
            if confirmed > 0 {
                self.advance(Counter::Log, confirmed.saturating_add(2))?;
            }
            return Ok(());
        }
        let confirmed = self.tcc.counter(Counter::Log).map_err(|e| e.0)?;
        self.log_state = Some(self.new_log(confirmed, Digest([0; 32]))?);
        self.note_state()?;
        self.seal(Vec::new(), true);
        Ok(())
    }

    /// Applies one change of a record to a restarting Manager; `started` follows the view
    /// that had started when the change was made.
    fn replay(&mut self, change: Change, started: &mut Option<u64>) -> Result<(), String> {
        match change {
            Change::Hold { update, accepted } => {
                let head = self.held_head();
                if update.seq != head.0 + 1 || update.prev != head.1 {
                    return Err(format!("update {} does not follow {}", update.seq, head.0));
                }
                let chain = update.chain();
                // Only a replica in a started view holds or proposes.
                *started = Some(accepted);
                self.held.push_back(Held { update, chain, accepted });
            }
            Change::Apply { seq } => {
                while self.held.front().is_some_and(|h| h.update.seq <= seq) {
                    let Some(Held { update, chain, .. }) = self.held.pop_front() else { break };
                    self.service
                        .apply(&update.state)
                        .map_err(|e| format!("apply {}: {e}", update.seq))?;
                    self.committed = (update.seq, chain);
                    self.remember(update, chain);
                }
                if self.committed.0 < seq {
                    return Err(format!(
                        "apply {seq}: the held updates end at {}",
                        self.committed.0
                    ));
                }
            }
            Change::Accepted { view, keep } => {
                self.held.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
                for h in &mut self.held {
                    h.accepted = view;
                }
                *started = Some(view);
            }
            Change::State(state) => {
                let Checkpoint { committed, database, held, counts_from, started: begun } = *state;
                *started = begun;
                match database {
                    Ok(database) => {
                        self.service = Service::from_snapshot(&self.group.service, &database)
                            .map_err(|e| format!("checkpoint: {e}"))?;
                        self.recover_to = None;
                    }
                    Err(floor) => {
                        self.recover_to = Some(floor);
                    }
                }
                self.committed = committed;
                self.counts_from = counts_from;
                self.log.clear();
                self.held = held
                    .into_iter()
                    .map(|(update, accepted)| {
                        let chain = update.chain();
                        Held { update, chain, accepted }
                    })
                    .collect::<VecDeque<_>>();
            }
        }
        Ok(())
    }
}

/// Opens and checks a log (see [`Manager::recover`]) up to record `confirmed`: the hash of
/// that record and every change, with its record's number.
#[allow(clippy::type_complexity)]
fn open_log(
    key: &Key,
    config: &Digest,
    me: u16,
    log: &[Vec<u8>],
    confirmed: u64,
) -> Result<(Digest, Vec<(u64, Change)>), String> {
    let mut changes = Vec::new();
    let mut last: Option<(u64, Digest)> = None;
    for record in log {
        let header =
            Header::parse(record).ok_or_else(|| String::from("log: a record of unknown format"))?;
        if header.index > confirmed {
            break; // never confirmed: nothing that left depends on it
        }
        match last {
            // A checkpoint holds a whole state: what came before it no longer counts, and the
            // records after it chain to it.
            _ if header.kind == KIND_CHECKPOINT => {}
            None => {
                return Err(format!("log: it starts at record {}, not a checkpoint", header.index));
            }
            Some((index, _)) if header.index != index + 1 => {
                return Err(format!("log: record {} follows record {index}", header.index));
            }
            Some((index, hash)) if header.prev != hash => {
                return Err(format!(
                    "log: record {} does not chain to record {index} (swapped, or of another \
                     history)",
                    header.index
                ));
            }
            _ => {}
        }
        let head = header.bytes();
        let body = crypto::aead_open(key, &associated(&head, config, me), &record[HEADER_LEN..])
            .ok_or_else(|| {
                format!(
                    "log: record {} does not open (altered, or another replica's or group's)",
                    header.index
                )
            })?;
        let mut r = Reader::new(&body);
        let parsed = get_vec_with(&mut r, "changes", usize::MAX, 1, Change::get)
            .and_then(|changes| r.finish().map(|()| changes))
            .map_err(|e| format!("log: record {}: {e}", header.index))?;
        if header.kind == KIND_CHECKPOINT {
            changes.clear();
        }
        changes.extend(parsed.into_iter().map(|c| (header.index, c)));
        last = Some((header.index, crypto::hash(&[record])));
    }
    match last {
        Some((index, head)) if index == confirmed => Ok((head, changes)),
        Some((index, _)) => Err(format!(
            "log: it ends at record {index}, and the trusted log counter is at {confirmed} \
             (a truncated or older log)"
        )),
        None => Err(format!(
            "log: no record at or before the trusted log counter ({confirmed}): an empty or \
             newer-only log"
        )),
    }
}
