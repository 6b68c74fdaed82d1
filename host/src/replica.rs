//! The U-Manager: the untrusted runtime around one replica's Manager, as a sans-IO state
//! machine (messages and ticks in, messages out), after raft-rs. The ZeroMQ loop in `net`
//! drives it; tests can drive it directly.
//!
//! It carries messages and decides *when* to call the Manager (batching, retransmission,
//! initialization rounds) but never what is true: it holds no key, and every message it
//! forwards is checked by a Manager or a client.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use vpr_pal::{Call, Effect};
use vpr_proto::crypto;
use vpr_proto::msg::{AckInit, ClientId, Join, Message, Reply, Request};

use crate::config::ClusterConfig;
use crate::tcc::TccBackend;

/// How many times the primary resends its latest Commit while no newer one replaces it.
const COMMIT_RESENDS: u32 = 5;

/// How long the primary remembers where to send a reply.
const ROUTE_TTL_MS: u64 = 60_000;

/// A client's ZeroMQ routing identity.
pub type Route = Vec<u8>;

/// Where a message came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Another replica.
    Replica(u16),
    /// A client.
    Client(Route),
}

/// A message to send, already encoded (an update goes to every backup as the same bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// To a replica.
    Replica(u16, Arc<[u8]>),
    /// To a client.
    Client(Route, Arc<[u8]>),
}

/// An update the primary sent, kept until every backup acknowledged it (or the log is full):
/// a backup that missed it, even after it committed, gets it again.
#[derive(Debug)]
struct Sent {
    bytes: Arc<[u8]>,
    acked: BTreeSet<u16>,
    sent_at: u64,
    committed: bool,
}

/// Most updates kept for backups that have not acknowledged them. A backup further behind
/// needs state transfer.
const RETAINED_UPDATES: usize = 1024;

/// The runtime of one replica.
#[derive(Debug)]
pub struct Replica<B: TccBackend> {
    backend: B,
    id: u16,
    n: u16,
    faults: usize,
    retransmit_ms: u64,
    join_ms: u64,
    max_batch: usize,
    max_in_flight: usize,
    ready: bool,
    started_at: Option<u64>,
    // Initialization.
    my_join: Option<(Join, u64)>,
    joins: BTreeMap<u16, Join>,
    accept: Option<(Arc<[u8]>, u64)>,
    ack_inits: BTreeSet<u16>,
    my_ack_init: Option<AckInit>,
    // Normal case.
    queue: Vec<Request>,
    /// Where to send each awaited reply, and since when it is awaited.
    routes: HashMap<(ClientId, u64), (Route, u64)>,
    held: BTreeMap<u64, Vec<Reply>>,
    in_flight: BTreeMap<u64, Sent>,
    /// The latest Commit, when it was last sent, and how often it was resent: a lost Commit
    /// would leave backups holding committed updates unapplied while the service is idle.
    last_commit: Option<(Arc<[u8]>, u64, u32)>,
}

impl<B: TccBackend> Replica<B> {
    /// The runtime of replica `id` of `config`, around `backend`.
    pub fn new(backend: B, config: &ClusterConfig, id: u16) -> Self {
        Replica {
            backend,
            id,
            n: config.n(),
            faults: config.faults(),
            retransmit_ms: config.timeouts.retransmit_ms,
            join_ms: config.timeouts.join_ms,
            max_batch: config.max_batch,
            max_in_flight: config.max_in_flight as usize,
            ready: false,
            started_at: None,
            my_join: None,
            joins: BTreeMap::new(),
            accept: None,
            ack_inits: BTreeSet::new(),
            my_ack_init: None,
            queue: Vec::new(),
            routes: HashMap::new(),
            held: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            last_commit: None,
        }
    }

    /// The backend (for status).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Whether the group is formed here.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn primary(&self) -> u16 {
        self.backend.primary()
    }

    fn is_primary(&self) -> bool {
        self.primary() == self.id
    }

    fn backups(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.n).filter(move |r| *r != self.id)
    }

    /// Handles one message.
    pub fn receive(&mut self, from: Source, message: Message, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        match (from, message) {
            (Source::Client(route), Message::Request(request)) => {
                if self.is_primary() {
                    self.routes.insert((request.client, request.seq), (route, now));
                    self.queue.push(request);
                }
            }
            (Source::Client(route), Message::ClientHello(hello)) => {
                if self.ready {
                    for effect in self.backend.call(Call::Hello(Box::new(hello))) {
                        if let Effect::Welcome(w) = effect {
                            out.push(Output::Client(route.clone(), encode(Message::Welcome(w))));
                        }
                    }
                }
            }
            (Source::Client(route), Message::StatusRequest(request)) => {
                for effect in self.backend.call(Call::Status(request)) {
                    if let Effect::Status(report) = effect {
                        out.push(Output::Client(
                            route.clone(),
                            encode(Message::StatusReport(report)),
                        ));
                    }
                }
            }
            (Source::Replica(r), Message::Join(join)) if join.replica == r && self.is_primary() => {
                // The latest Join wins: one altered in transit must not shadow a good resend.
                self.joins.insert(r, join);
                if let Some((accept, _)) = &self.accept {
                    // A backup that lost our Accept asks again.
                    out.push(Output::Replica(r, accept.clone()));
                }
                self.maybe_accept(now, &mut out);
            }
            (Source::Replica(_), Message::Accept(accept)) => {
                if let Some(ack) = &self.my_ack_init {
                    // We accepted already; our AckInit must have been lost.
                    out.push(Output::Replica(
                        self.primary(),
                        encode(Message::AckInit(ack.clone())),
                    ));
                } else {
                    let effects = self.backend.call(Call::Accept(Box::new(accept)));
                    self.apply(effects, now, &mut out);
                }
            }
            (Source::Replica(r), Message::AckInit(ack)) if ack.replica == r => {
                let effects = self.backend.call(Call::AckInit(ack));
                // Only an AckInit the Manager accepted stops the Accept's resends to r.
                if !effects.iter().any(|e| matches!(e, Effect::Refused(_))) {
                    self.ack_inits.insert(r);
                }
                self.apply(effects, now, &mut out);
            }
            (Source::Replica(_), Message::Update(update)) => {
                let effects = self.backend.call(Call::Update(update));
                self.apply(effects, now, &mut out);
            }
            (Source::Replica(r), Message::Ack(ack)) if ack.replica == r => {
                let seq = ack.seq;
                let effects = self.backend.call(Call::Ack(ack));
                // Only an Ack the Manager accepted stops retransmission to that backup.
                if !effects.iter().any(|e| matches!(e, Effect::Refused(_))) {
                    let everyone = usize::from(self.n) - 1;
                    if let Some(sent) = self.in_flight.get_mut(&seq) {
                        sent.acked.insert(r);
                        if sent.committed && sent.acked.len() >= everyone {
                            self.in_flight.remove(&seq);
                        }
                    }
                }
                self.apply(effects, now, &mut out);
            }
            (Source::Replica(_), Message::Commit(commit)) => {
                let effects = self.backend.call(Call::Commit(commit));
                self.apply(effects, now, &mut out);
            }
            (from, message) => {
                tracing::debug!(?from, kind = message.kind(), "ignored message");
            }
        }
        out
    }

    /// Executes the queued requests as one batch (primary), if the pipeline has room.
    pub fn flush(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while self.ready
            && !self.queue.is_empty()
            && self.in_flight.values().filter(|s| !s.committed).count() < self.max_in_flight
            && self.is_primary()
        {
            let take = self.queue.len().min(self.max_batch);
            let batch: Vec<Request> = self.queue.drain(..take).collect();
            let effects = self.backend.call(Call::Requests(batch));
            self.apply(effects, now, &mut out);
        }
        out
    }

    /// Time passes: initialization rounds and retransmissions.
    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        self.started_at.get_or_insert(now);
        if !self.ready {
            if self.is_primary() {
                self.maybe_accept(now, &mut out);
                let missing: Vec<u16> =
                    self.backups().filter(|r| !self.ack_inits.contains(r)).collect();
                if let Some((accept, at)) = &mut self.accept {
                    if now >= *at + self.retransmit_ms {
                        *at = now;
                        for r in missing {
                            out.push(Output::Replica(r, accept.clone()));
                        }
                    }
                }
            } else if self.my_ack_init.is_none() {
                self.send_join(now, &mut out);
            }
            return out;
        }
        // Forget routes of requests that were refused or never answered; a client that still
        // waits retransmits and is routed again.
        self.routes.retain(|_, (_, since)| now < *since + ROUTE_TTL_MS);
        if self.is_primary() {
            let backups: Vec<u16> = self.backups().collect();
            if let Some((bytes, at, resent)) = &mut self.last_commit {
                if *resent < COMMIT_RESENDS && now >= *at + self.retransmit_ms {
                    *at = now;
                    *resent += 1;
                    for r in &backups {
                        out.push(Output::Replica(*r, bytes.clone()));
                    }
                }
            }
            let mut lagging = BTreeSet::new();
            for sent in self.in_flight.values_mut() {
                if now >= sent.sent_at + self.retransmit_ms {
                    sent.sent_at = now;
                    for r in backups.iter().filter(|r| !sent.acked.contains(r)) {
                        out.push(Output::Replica(*r, sent.bytes.clone()));
                        if sent.committed {
                            lagging.insert(*r);
                        }
                    }
                }
            }
            // A backup catching up on committed updates also needs to hear they committed.
            if let Some((bytes, _, _)) = &self.last_commit {
                for r in lagging {
                    out.push(Output::Replica(r, bytes.clone()));
                }
            }
        }
        out
    }

    fn send_join(&mut self, now: u64, out: &mut Vec<Output>) {
        let primary = self.primary();
        match &mut self.my_join {
            Some((join, at)) => {
                if now >= *at + self.retransmit_ms {
                    *at = now;
                    out.push(Output::Replica(primary, encode(Message::Join(join.clone()))));
                }
            }
            None => {
                for effect in self.backend.call(Call::Join) {
                    match effect {
                        Effect::Join(join) => {
                            out.push(Output::Replica(primary, encode(Message::Join(join.clone()))));
                            self.my_join = Some((join, now));
                        }
                        other => tracing::warn!(?other, "join refused"),
                    }
                }
            }
        }
    }

    /// Primary: forms the group once every backup joined, or f of them and the join time
    /// passed.
    fn maybe_accept(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.accept.is_some() || !self.is_primary() {
            return;
        }
        let started = self.started_at.unwrap_or(now);
        let all = self.joins.len() + 1 >= usize::from(self.n);
        let enough = self.joins.len() >= self.faults && now >= started + self.join_ms;
        if !(all || enough) {
            return;
        }
        let joins: Vec<Join> = self.joins.values().cloned().collect();
        let effects = self.backend.call(Call::Joins { joins, require_all: all && !enough });
        self.apply(effects, now, out);
    }

    /// Carries out the Manager's effects.
    fn apply(&mut self, effects: Vec<Effect>, now: u64, out: &mut Vec<Output>) {
        for effect in effects {
            match effect {
                Effect::Join(join) => {
                    out.push(Output::Replica(self.primary(), encode(Message::Join(join))));
                }
                Effect::Accept(accept) => {
                    let bytes = encode(Message::Accept(accept));
                    for r in self.backups() {
                        out.push(Output::Replica(r, bytes.clone()));
                    }
                    self.accept = Some((bytes, now));
                }
                Effect::AckInit(ack) => {
                    out.push(Output::Replica(
                        self.primary(),
                        encode(Message::AckInit(ack.clone())),
                    ));
                    self.my_ack_init = Some(ack);
                }
                Effect::Ready => {
                    tracing::info!(replica = self.id, primary = self.is_primary(), "group formed");
                    self.ready = true;
                }
                Effect::InvalidJoins(replicas) => {
                    for r in replicas {
                        self.joins.remove(&r);
                    }
                }
                Effect::Welcome(_) => {}
                Effect::Update(update) => {
                    let seq = update.seq;
                    let bytes = encode(Message::Update(update));
                    for r in self.backups() {
                        out.push(Output::Replica(r, bytes.clone()));
                    }
                    self.in_flight.insert(
                        seq,
                        Sent { bytes, acked: BTreeSet::new(), sent_at: now, committed: false },
                    );
                }
                Effect::Ack(ack) => {
                    out.push(Output::Replica(self.primary(), encode(Message::Ack(ack))));
                }
                Effect::Commit(commit) => {
                    let everyone = usize::from(self.n) - 1;
                    for (seq, sent) in self.in_flight.iter_mut() {
                        sent.committed |= *seq <= commit.seq;
                    }
                    self.in_flight.retain(|_, s| !s.committed || s.acked.len() < everyone);
                    while self.in_flight.len() > RETAINED_UPDATES {
                        self.in_flight.pop_first();
                    }
                    let bytes = encode(Message::Commit(commit));
                    for r in self.backups() {
                        out.push(Output::Replica(r, bytes.clone()));
                    }
                    self.last_commit = Some((bytes, now, 0));
                }
                Effect::Reply { reply, blinded_until: Some(seq) } => {
                    self.held.entry(seq).or_default().push(reply);
                }
                Effect::Reply { reply, blinded_until: None } => self.send_reply(reply, out),
                Effect::Release { seq, blinder } => {
                    for mut reply in self.held.remove(&seq).unwrap_or_default() {
                        crypto::xor(&mut reply.tag, &blinder);
                        self.send_reply(reply, out);
                    }
                }
                Effect::Status(_) => {}
                Effect::Probe(_) | Effect::ViewChange(_) | Effect::NewView(_) => {
                    // Primary change is driven by the Manager's tests so far; the runtime's
                    // timeouts and routing for it are not built yet.
                    tracing::debug!(replica = self.id, "primary-change message not routed yet");
                }
                Effect::Refused(why) => tracing::debug!(replica = self.id, %why, "refused"),
            }
        }
    }

    fn send_reply(&mut self, reply: Reply, out: &mut Vec<Output>) {
        if let Some((route, _)) = self.routes.remove(&(reply.client, reply.seq)) {
            out.push(Output::Client(route, encode(Message::Reply(reply))));
        }
    }
}

fn encode(message: Message) -> Arc<[u8]> {
    message.encode().into()
}
