//! The primary's two executions of Fig 5.4: requests into one state update with blinded
//! replies (execution 1), and backups' Acks into commits and released blinders (execution 2).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use sqlite_shim::Value as SqlValue;
use vpr_proto::crypto::{self, Key, Tag};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{
    self, Ack, ClientId, Commit, Entry, Outcome, ReadLevel, Reply, Request, Update, Wire,
};
use vpr_proto::pal_io;

use super::durable::Change;
use super::session::client_key;
use super::{Effect, InFlight, Manager};
use crate::service;
use crate::tcc::Tcc;

/// The blinding secret of update `chain`: it stays in the TCC until the update commits, and
/// each reply waiting for the update is blinded with its own
/// [`reply_blinder`](crypto::reply_blinder) of it (docs/safety.md, "Blinding").
pub(crate) fn blinding_secret(key: &Key, chain: &Digest) -> Key {
    crypto::mac(key, &[b"vpr blinding secret", chain.as_bytes()])
}

/// The MAC input of an Ack.
pub(crate) fn ack_tag(key: &Key, replica: u16, view: u64, seq: u64, chain: &Digest) -> Tag {
    crypto::mac(
        key,
        &[
            b"vpr ack",
            &replica.to_le_bytes(),
            &view.to_le_bytes(),
            &seq.to_le_bytes(),
            chain.as_bytes(),
        ],
    )
}

/// The MAC input of a Commit.
pub(crate) fn commit_tag(key: &Key, view: u64, seq: u64, chain: &Digest) -> Tag {
    crypto::mac(key, &[b"vpr commit", &view.to_le_bytes(), &seq.to_le_bytes(), chain.as_bytes()])
}

/// An update's own tag.
pub(crate) fn update_tag(key: &Key, chain: &Digest) -> Tag {
    crypto::mac(key, &[b"vpr update", chain.as_bytes()])
}

fn to_sql(v: msg::Value) -> SqlValue {
    match v {
        msg::Value::Null => SqlValue::Null,
        msg::Value::Integer(i) => SqlValue::Integer(i),
        msg::Value::Real(r) => SqlValue::Real(r),
        msg::Value::Text(t) => SqlValue::Text(t),
        msg::Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn from_sql(v: SqlValue) -> msg::Value {
    match v {
        SqlValue::Null => msg::Value::Null,
        SqlValue::Integer(i) => msg::Value::Integer(i),
        SqlValue::Real(r) => msg::Value::Real(r),
        SqlValue::Text(t) => msg::Value::Text(t),
        SqlValue::Blob(b) => msg::Value::Blob(b),
    }
}

/// The service's reply as the wire's outcome.
pub(crate) fn outcome(reply: service::Reply) -> Outcome {
    Outcome {
        results: reply
            .results
            .into_iter()
            .map(|r| msg::StatementResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(from_sql).collect())
                    .collect(),
                changes: r.changes,
            })
            .collect(),
        error: reply.error.map(|e| msg::SqlError { code: e.code, message: e.message }),
    }
}

/// Most bytes the replies of one batch may take, encoded: three quarters of what the PAL
/// image's output holds ([`pal_io::MAX_LEN`]), the rest left for the update and the effects
/// that follow it. Each request runs with the room the batch has left as its result budget,
/// so a batch's replies fit the output (and the PAL's heap) by construction.
const BATCH_REPLY_BYTES: usize = pal_io::MAX_LEN / 4 * 3;

/// Room kept per reply beyond its results: its fields, its effect's framing and a longest
/// error message.
const REPLY_RESERVE: usize = service::MAX_REPLY_OVERHEAD;

/// What execution 1 made of a batch before it takes effect.
struct Batch {
    effects: Vec<Effect>,
    answers: Vec<(ClientId, u64, Digest, Outcome)>,
    entries: Vec<Entry>,
    /// A linearizable read ran: the batch needs an update (an empty one, maybe) after it.
    barrier: bool,
}

impl<T: Tcc> Manager<T> {
    /// Execution 1: authenticate, deduplicate and run a batch; one update for all its writes;
    /// replies authenticated with each client's key and blinded until they are durable.
    pub(super) fn execute(&mut self, requests: Vec<Request>) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if !self.is_primary() || !self.started {
            return Err(String::from("requests: not the primary of a started view"));
        }
        self.check_state()?;
        if self.in_flight.len() >= self.group.max_in_flight as usize {
            return Err(String::from("requests: too many updates in flight; retry after commits"));
        }
        if self.in_flight.is_empty() {
            self.start_undo();
        }
        // A batch takes effect whole or not at all: if anything fails half-way, the writes
        // of the requests before it are taken back (they are in no update yet).
        let (batch, state) = match self.run_batch(&key, requests) {
            Ok(done) => done,
            Err(reason) => {
                self.abort_batch();
                return Err(reason);
            }
        };
        let Batch { mut effects, answers, entries, .. } = batch;
        // Reads are blinded by the newest update in flight: they may show its effects. A
        // linearizable read also needs proof that this primary still led the latest view
        // *after* it ran: Acks (which carry the view) for an update proposed after it. Without
        // a write in the batch, an empty update gives that proof (one round to the backups,
        // shared by the whole batch).
        let blind = match state {
            None => self.in_flight.back().map(|u| (u.update.seq, u.chain)),
            Some((state, undo)) => {
                let seq = self.head.0 + 1;
                let mut update = Update {
                    view: self.view,
                    seq,
                    prev: self.head.1,
                    entries,
                    state,
                    tag: [0; 32],
                };
                let chain = update.chain();
                update.tag = update_tag(&key, &chain);
                self.head = (seq, chain);
                if self.durable() {
                    self.note(Change::Hold { update: update.clone(), accepted: self.view });
                }
                self.in_flight.push_back(InFlight {
                    update: update.clone(),
                    chain,
                    acks: Vec::new(),
                    undo,
                });
                effects.push(Effect::Update(update));
                Some((seq, chain))
            }
        };
        let secret = blind.map(|(_, chain)| blinding_secret(&key, &chain));
        for (client, seq, request, outcome) in answers {
            let state = blind.map_or(self.committed.0, |b| b.0);
            let mut reply =
                Reply { client, seq, request, view: self.view, state, outcome, tag: [0; 32] };
            reply.tag = crypto::mac(&client_key(&key, &client), &[&reply.signed_bytes()]);
            if let Some(secret) = &secret {
                crypto::xor(&mut reply.tag, &crypto::reply_blinder(secret, &client, seq));
            }
            effects.push(Effect::Reply { reply, blinded_until: blind.map(|b| b.0) });
        }
        // With no backups to wait for (n = 1), the update commits at once.
        effects.extend(self.commit_ready(&key)?);
        Ok(effects)
    }

    /// Runs a batch: the refusals, answers and entries, and the state update with its undo
    /// record if the batch needs one. On error, the database may hold the batch's writes:
    /// the caller takes them back.
    #[allow(clippy::type_complexity)]
    fn run_batch(
        &mut self,
        key: &Key,
        requests: Vec<Request>,
    ) -> Result<(Batch, Option<(vpr_proto::update::StateUpdate, sqlite_shim::Undo)>), String> {
        let mut batch = Batch {
            effects: Vec::new(),
            answers: Vec::with_capacity(requests.len()),
            entries: Vec::new(),
            barrier: false,
        };
        let budget = self.service.max_result_bytes();
        let mut used = 0usize;
        for request in requests {
            let room = BATCH_REPLY_BYTES.saturating_sub(used.saturating_add(REPLY_RESERVE));
            self.service.set_max_result_bytes(Some(room as u64));
            let kc = client_key(key, &request.client);
            if !crypto::mac_ok(&kc, &[&request.signed_bytes()], &request.tag) {
                batch.effects.push(Effect::Refused(String::from("request: bad authenticator")));
                continue;
            }
            if i64::try_from(request.seq).is_err() {
                // The session table keeps SQLite integers: refused here, before it runs, so
                // one client's request cannot fail the batch of everyone else's.
                batch.effects.push(Effect::Refused(format!(
                    "request: sequence number {} is above {}",
                    request.seq,
                    i64::MAX
                )));
                continue;
            }
            let digest = request.digest();
            match self.last(&request.client)? {
                Some(last) if last.seq == request.seq && last.request == digest => {
                    // A retransmission: executed once, answered again with the same outcome.
                    used = used.saturating_add(last.outcome.encoded_len() + REPLY_RESERVE);
                    batch.answers.push((request.client, request.seq, digest, last.outcome));
                    continue;
                }
                Some(last) if last.seq == request.seq => {
                    batch.effects.push(Effect::Refused(format!(
                        "request: sequence number {} was used by another request of this client",
                        request.seq
                    )));
                    continue;
                }
                Some(last) if last.seq > request.seq => {
                    batch.effects.push(Effect::Refused(format!(
                        "request: sequence number {} is older than the client's last, {}",
                        request.seq, last.seq
                    )));
                    continue;
                }
                _ => {}
            }
            let Request { client, seq, level, sql, params, .. } = request;
            let params: Vec<SqlValue> = params.into_iter().map(to_sql).collect();
            let mark = self.service.write_mark();
            let reply = self.service.run(&sql, &params);
            let wrote = self.service.write_mark() != mark;
            // Only a request that completed with read-only statements alone may run again
            // later: anything else is recorded, so a replay can never take effect anew.
            let pure_read = reply.read_only && reply.error.is_none() && !wrote;
            let result = outcome(reply);
            if pure_read {
                batch.barrier |= level == ReadLevel::Linearizable;
            } else {
                self.record(&client, seq, &digest, &result)?;
                batch.entries.push(Entry { client, seq, request: digest });
            }
            used = used.saturating_add(result.encoded_len() + REPLY_RESERVE);
            batch.answers.push((client, seq, digest, result));
        }
        self.service.set_max_result_bytes(budget);
        let state = if batch.entries.is_empty() && !batch.barrier {
            None
        } else {
            let state = self.service.capture().map_err(|e| format!("capture: {e}"))?;
            let undo = self.service.take_undo().unwrap_or_default();
            Some((state, undo))
        };
        Ok((batch, state))
    }

    /// Takes back the writes of a batch that failed half-way. If that fails too (out of
    /// memory), the database holds pages no update carries: only a snapshot can repair it.
    fn abort_batch(&mut self) {
        let reverted = match self.service.take_undo() {
            Some(undo) => self.service.revert(&undo).is_ok(),
            None => !self.service.wrote(),
        };
        self.service.discard_changes();
        if !reverted {
            self.stale = true;
        }
    }

    /// Execution 2: an Ack; with f of them for the oldest update in flight, commit it.
    pub(super) fn on_ack(&mut self, ack: &Ack) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        if !self.is_primary() || ack.view != self.view {
            return Err(String::from("ack: not for this primary's view"));
        }
        if ack.replica == self.group.me || ack.replica >= self.group.replicas {
            return Err(format!("ack: invalid replica {}", ack.replica));
        }
        if ack_tag(&key, ack.replica, ack.view, ack.seq, &ack.chain) != ack.tag {
            return Err(String::from("ack: bad authenticator"));
        }
        let Some(u) = self.in_flight.iter_mut().find(|u| u.update.seq == ack.seq) else {
            return Ok(Vec::new()); // already committed, or never proposed: nothing to do
        };
        if u.chain != ack.chain {
            return Err(format!("ack: update {} has another chain hash", ack.seq));
        }
        if !u.acks.contains(&ack.replica) {
            u.acks.push(ack.replica);
        }
        self.commit_ready(&key)
    }

    /// Commits every update at the front of the queue that has f Acks.
    fn commit_ready(&mut self, key: &Key) -> Result<Vec<Effect>, String> {
        let f = self.group.faults();
        let mut effects = Vec::new();
        while self.in_flight.front().is_some_and(|u| u.acks.len() >= f) {
            let Some(u) = self.in_flight.pop_front() else { break };
            let seq = u.update.seq;
            self.count_state(seq, "committing")?;
            self.committed = (seq, u.chain);
            self.note(Change::Apply { seq });
            effects.push(Effect::Release { seq, secret: blinding_secret(key, &u.chain) });
            self.remember(u.update, u.chain);
        }
        if !effects.is_empty() {
            let (seq, chain) = self.committed;
            let tag = commit_tag(key, self.view, seq, &chain);
            effects.push(Effect::Commit(Commit { view: self.view, seq, chain, tag }));
        }
        Ok(effects)
    }
}
