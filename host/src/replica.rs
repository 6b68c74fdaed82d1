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
use vpr_proto::msg::{
    AckInit, ClientId, Join, Message, Probe, Reply, Request, StateRequest, ViewChange,
};

use crate::config::ClusterConfig;
use crate::tcc::{Progress, TccBackend};

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
    /// Store this blob, sealed by the TCC, and hand it back when the replica restarts.
    Persist(Vec<u8>),
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
    /// Most updates kept for backups that have not acknowledged them.
    retained_updates: usize,
    /// Why the Manager last refused a call.
    last_refusal: Option<String>,
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
    // Primary change (thesis §5.2.5).
    heartbeat_ms: u64,
    base_timeout_ms: u64,
    max_timeout_ms: u64,
    /// The suspicion timeout now (adaptive).
    timeout_ms: u64,
    /// The view the runtime last saw, and the committed update when it changed.
    seen_view: u64,
    committed_at_change: u64,
    /// When the current primary last proved it is alive (or the view began).
    last_heard: u64,
    last_heartbeat: u64,
    /// This replica's Probe, and when it was last sent.
    my_probe: Option<(Arc<[u8]>, u64)>,
    /// Probes for later views, by view and replica.
    probes: BTreeMap<u64, BTreeMap<u16, Probe>>,
    /// The Probes that moved this replica to its view (relayed to replicas left behind).
    moved_by: Vec<Probe>,
    /// This replica's ViewChange: the primary it goes to, the bytes, when last sent.
    my_view_change: Option<(u16, Arc<[u8]>, u64)>,
    /// New primary: the ViewChanges for its view (or later ones), by replica.
    view_changes: BTreeMap<u16, ViewChange>,
    /// New primary: its NewView, resent to backups not yet heard in the view.
    new_view: Option<Arc<[u8]>>,
    /// Backups whose Ack the Manager accepted in this view.
    confirmed: BTreeSet<u16>,
    /// Backup: requests clients sent here (they retry on every replica), first seen when.
    complaints: HashMap<(ClientId, u64), u64>,
    // State transfer.
    /// Updates up to this are known committed but missing here, since when.
    behind: Option<(u64, u64)>,
    /// When state was last asked for, and the peer to ask next.
    state_asked: (Option<u64>, u16),
    /// A replica to ask first (it reported the state needed).
    state_source: Option<u16>,
    /// The last snapshot made here: its update and bytes.
    snapshot: Option<(u64, Arc<[u8]>)>,
    /// When each replica still acting in an earlier view was last shown our view.
    nudged: HashMap<u16, u64>,
}

impl<B: TccBackend> Replica<B> {
    /// The runtime of replica `id` of `config`, around `backend` (a new Manager, or one
    /// restarted from sealed state).
    pub fn new(backend: B, config: &ClusterConfig, id: u16) -> Self {
        let progress = backend.progress();
        let t = &config.timeouts;
        Replica {
            backend,
            id,
            n: config.n(),
            faults: config.faults(),
            retransmit_ms: config.timeouts.retransmit_ms,
            join_ms: config.timeouts.join_ms,
            max_batch: config.max_batch,
            max_in_flight: config.max_in_flight as usize,
            retained_updates: config.retained_updates,
            last_refusal: None,
            ready: progress.ready,
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
            heartbeat_ms: t.heartbeat_ms,
            base_timeout_ms: t.view_change_ms,
            max_timeout_ms: t.view_change_max_ms.max(t.view_change_ms),
            timeout_ms: t.view_change_ms,
            seen_view: progress.view,
            committed_at_change: progress.committed,
            last_heard: 0,
            last_heartbeat: 0,
            my_probe: None,
            probes: BTreeMap::new(),
            moved_by: Vec::new(),
            my_view_change: None,
            view_changes: BTreeMap::new(),
            new_view: None,
            confirmed: BTreeSet::new(),
            complaints: HashMap::new(),
            behind: None,
            state_asked: (None, id),
            state_source: None,
            snapshot: None,
            nudged: HashMap::new(),
        }
    }

    /// The backend (for status).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Why the Manager stopped for good, if it did (its TCC failed after it changed what it
    /// holds: it refuses every call until the replica restarts from its sealed state).
    pub fn stopped(&self) -> Option<String> {
        self.backend.progress().stopped.then(|| {
            self.last_refusal.clone().unwrap_or_else(|| String::from("this Manager stopped"))
        })
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
                } else if self.ready {
                    self.complain(request.client, request.seq, now, &mut out);
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
                } else if !self.ready {
                    let effects = self.backend.call(Call::Accept(Box::new(accept)));
                    self.apply(effects, now, &mut out);
                }
            }
            (Source::Replica(r), Message::AckInit(ack)) if ack.replica == r => {
                let effects = self.backend.call(Call::AckInit(ack));
                // Only an AckInit the Manager accepted stops the Accept's resends to r.
                if accepted(&effects) {
                    self.ack_inits.insert(r);
                }
                self.apply(effects, now, &mut out);
            }
            (Source::Replica(r), Message::Update(update)) => {
                self.nudge_if_behind(r, update.view, now, &mut out);
                let effects = self.backend.call(Call::Update(update));
                self.heard(r, &effects, now);
                self.apply(effects, now, &mut out);
            }
            (Source::Replica(r), Message::Ack(ack)) if ack.replica == r => {
                let seq = ack.seq;
                let effects = self.backend.call(Call::Ack(ack));
                // Only an Ack the Manager accepted stops retransmission to that backup.
                if accepted(&effects) {
                    self.confirmed.insert(r);
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
            (Source::Replica(r), Message::Commit(commit)) => {
                self.nudge_if_behind(r, commit.view, now, &mut out);
                let effects = self.backend.call(Call::Commit(commit));
                self.heard(r, &effects, now);
                self.apply(effects, now, &mut out);
            }
            (Source::Replica(r), Message::Probe(probe)) => self.on_probe(r, probe, now, &mut out),
            (Source::Replica(r), Message::ViewChange(vc)) if vc.replica == r => {
                let progress = self.backend.progress();
                if vc.view == progress.view && self.is_primary() && progress.started {
                    // It missed our NewView.
                    if let Some(nv) = &self.new_view {
                        out.push(Output::Replica(r, nv.clone()));
                    }
                } else if vc.view >= progress.view {
                    self.view_changes.insert(r, vc);
                    self.try_view_changes(now, &mut out);
                }
            }
            (Source::Replica(r), Message::NewView(nv)) => {
                let effects = self.backend.call(Call::NewView(nv));
                self.apply(effects, now, &mut out);
                self.heard(r, &[], now);
            }
            (Source::Replica(r), Message::StateRequest(request)) if request.replica == r => {
                self.serve_state(r, request.at_least, &mut out);
            }
            (Source::Replica(_), Message::Snapshot(snapshot)) => {
                let effects = self.backend.call(Call::Snapshot(Box::new(snapshot)));
                if accepted(&effects) {
                    tracing::info!(
                        replica = self.id,
                        committed = self.backend.progress().committed,
                        "adopted a snapshot"
                    );
                    self.state_source = None;
                }
                self.apply(effects, now, &mut out);
                self.try_view_changes(now, &mut out);
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
        if !self.ready || !self.is_primary() {
            return out;
        }
        let progress = self.backend.progress();
        if !progress.started || progress.needs_state.is_some() {
            return out;
        }
        while !self.queue.is_empty()
            && self.in_flight.values().filter(|s| !s.committed).count() < self.max_in_flight
        {
            let take = self.queue.len().min(self.max_batch);
            let batch: Vec<Request> = self.queue.drain(..take).collect();
            let effects = self.backend.call(Call::Requests(batch));
            self.apply(effects, now, &mut out);
        }
        out
    }

    /// Time passes: initialization rounds, retransmissions, heartbeats, suspicion and state
    /// transfer.
    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.started_at.is_none() {
            self.started_at = Some(now);
            self.last_heard = now;
        }
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
        self.sync_view(now);
        // Forget routes of requests that were refused or never answered; a client that still
        // waits retransmits and is routed again.
        self.routes.retain(|_, (_, since)| now < *since + ROUTE_TTL_MS);
        let horizon = 4 * self.max_timeout_ms;
        self.complaints.retain(|_, since| now < *since + horizon);
        let progress = self.backend.progress();
        if progress.committed > self.committed_at_change {
            self.timeout_ms = self.base_timeout_ms;
        }
        if self.is_primary() && progress.started {
            self.primary_tick(now, &mut out);
        } else {
            self.suspect_tick(now, progress, &mut out);
        }
        self.state_tick(now, progress, &mut out);
        out
    }

    /// Primary: retransmissions, and heartbeats that keep backups from suspecting it.
    fn primary_tick(&mut self, now: u64, out: &mut Vec<Output>) {
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
        // Resend what backups have not acknowledged, at most a window's worth per backup per
        // round, oldest first: a backup that is down must not make this grow without bound,
        // and one far behind is better served by a snapshot.
        let mut lagging = BTreeSet::new();
        let mut budget: BTreeMap<u16, usize> =
            backups.iter().map(|r| (*r, self.max_in_flight)).collect();
        for sent in self.in_flight.values_mut() {
            if now >= sent.sent_at + self.retransmit_ms {
                sent.sent_at = now;
                for r in backups.iter().filter(|r| !sent.acked.contains(r)) {
                    let Some(left) = budget.get_mut(r).filter(|left| **left > 0) else { continue };
                    *left -= 1;
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
        if now >= self.last_heartbeat + self.heartbeat_ms {
            self.last_heartbeat = now;
            for effect in self.backend.call(Call::Heartbeat) {
                if let Effect::Commit(commit) = effect {
                    let bytes = encode(Message::Commit(commit));
                    for r in &backups {
                        out.push(Output::Replica(*r, bytes.clone()));
                    }
                }
            }
            if let Some(nv) = &self.new_view {
                for r in backups.iter().filter(|r| !self.confirmed.contains(r)) {
                    out.push(Output::Replica(*r, nv.clone()));
                }
            }
        }
    }

    /// Backup (or a new primary whose view has not started): suspect a silent primary, and
    /// keep this replica's Probe and ViewChange going until the view changes and starts.
    fn suspect_tick(&mut self, now: u64, progress: Progress, out: &mut Vec<Output>) {
        if now >= self.last_heard + self.timeout_ms {
            self.last_heard = now;
            tracing::info!(
                replica = self.id,
                view = progress.view,
                timeout_ms = self.timeout_ms,
                "primary suspected"
            );
            let effects = self.backend.call(Call::Suspect);
            self.apply(effects, now, out);
        }
        let others: Vec<u16> = self.backups().collect();
        if let Some((bytes, at)) = &mut self.my_probe {
            if now >= *at + self.retransmit_ms {
                *at = now;
                for r in &others {
                    out.push(Output::Replica(*r, bytes.clone()));
                }
            }
        }
        if let Some((to, bytes, at)) = &mut self.my_view_change {
            if !progress.started && now >= *at + self.retransmit_ms {
                *at = now;
                out.push(Output::Replica(*to, bytes.clone()));
            }
        }
    }

    /// State transfer: ask peers, in turn, for a snapshot while this replica is behind.
    fn state_tick(&mut self, now: u64, progress: Progress, out: &mut Vec<Output>) {
        let wanted = match (progress.needs_state, self.behind) {
            (Some(at), _) => Some(at),
            (None, Some((target, since))) if progress.committed < target => {
                // Retransmission gets the first chance.
                (now >= since + 2 * self.retransmit_ms).then_some(progress.committed + 1)
            }
            _ => {
                self.behind = None;
                None
            }
        };
        let Some(at_least) = wanted else { return };
        let (asked, next) = self.state_asked;
        if asked.is_some_and(|at| now < at + 2 * self.retransmit_ms) {
            return;
        }
        let peer = match self.state_source.take() {
            Some(p) if p != self.id => p,
            _ => {
                let mut p = (next + 1) % self.n;
                if p == self.id {
                    p = (p + 1) % self.n;
                }
                p
            }
        };
        self.state_asked = (Some(now), peer);
        let request = StateRequest { replica: self.id, at_least };
        out.push(Output::Replica(peer, encode(Message::StateRequest(request))));
    }

    /// Another replica asks for state: a snapshot of ours, if it is new enough.
    fn serve_state(&mut self, to: u16, at_least: u64, out: &mut Vec<Output>) {
        let progress = self.backend.progress();
        if !self.ready || progress.committed < at_least || progress.needs_state.is_some() {
            return;
        }
        if let Some((seq, bytes)) = &self.snapshot {
            if *seq == progress.committed {
                out.push(Output::Replica(to, bytes.clone()));
                return;
            }
        }
        for effect in self.backend.call(Call::MakeSnapshot) {
            match effect {
                Effect::Snapshot(snapshot) => {
                    let seq = snapshot.seq;
                    let bytes = encode(Message::Snapshot(*snapshot));
                    self.snapshot = Some((seq, bytes.clone()));
                    out.push(Output::Replica(to, bytes));
                }
                other => tracing::debug!(replica = self.id, ?other, "no snapshot"),
            }
        }
    }

    /// A client's request reached this backup: the client got no answer from the primary it
    /// tried. The same request still unanswered a timeout later makes this backup suspect
    /// the primary.
    fn complain(&mut self, client: ClientId, seq: u64, now: u64, out: &mut Vec<Output>) {
        let since = *self.complaints.entry((client, seq)).or_insert(now);
        if now >= since + self.timeout_ms {
            self.complaints.remove(&(client, seq));
            tracing::info!(replica = self.id, "a client's request went unanswered");
            let effects = self.backend.call(Call::Suspect);
            self.apply(effects, now, out);
        }
    }

    /// A message from replica `r` that the Manager did not refuse: if `r` is the primary, it
    /// is alive.
    fn heard(&mut self, r: u16, effects: &[Effect], now: u64) {
        if r == self.primary() && accepted(effects) {
            self.last_heard = now;
        }
    }

    /// Replica `r`, not our primary, still acts in an earlier view (an old primary cut off
    /// while the others moved on): show it what moved us, at most once a retransmission
    /// period.
    fn nudge_if_behind(&mut self, r: u16, view: u64, now: u64, out: &mut Vec<Output>) {
        if !self.ready || view >= self.backend.progress().view || r == self.primary() {
            return;
        }
        let last = self.nudged.entry(r).or_insert(0);
        if now < *last + self.retransmit_ms && *last != 0 {
            return;
        }
        *last = now;
        self.relay_view(r, out);
    }

    /// Sends replica `r` the Probes that moved us to our view (or, lacking f+1 of them, a
    /// snapshot made in our view, which moves it as well) and our NewView if we lead.
    fn relay_view(&mut self, r: u16, out: &mut Vec<Output>) {
        if self.moved_by.len() <= self.faults {
            self.serve_state(r, 0, out);
        }
        for p in &self.moved_by {
            out.push(Output::Replica(r, encode(Message::Probe(p.clone()))));
        }
        if self.is_primary() && self.backend.progress().started {
            if let Some(nv) = &self.new_view {
                out.push(Output::Replica(r, nv.clone()));
            }
        }
    }

    fn on_probe(&mut self, r: u16, probe: Probe, now: u64, out: &mut Vec<Output>) {
        let progress = self.backend.progress();
        if probe.view > progress.view {
            if probe.view > progress.view + u64::from(self.n) * 64 {
                return; // absurdly far ahead: not worth keeping
            }
            self.probes.entry(probe.view).or_default().insert(probe.replica, probe);
            self.try_probes(now, out);
        } else if probe.replica == r {
            // r is still in an earlier view (its own Probe says so; relayed ones do not count,
            // or relays would echo forever).
            self.relay_view(r, out);
        }
    }

    /// With f+1 Probes for some later view, let the Manager move there. A view whose Probes the
    /// Manager refuses (forged, or altered) is forgotten: the genuine ones are resent.
    fn try_probes(&mut self, now: u64, out: &mut Vec<Output>) {
        let quorum = self.faults + 1;
        let views: Vec<u64> = self
            .probes
            .iter()
            .rev()
            .filter(|(_, by)| by.len() >= quorum)
            .map(|(v, _)| *v)
            .collect();
        for view in views {
            let Some(mut by) = self.probes.remove(&view) else { continue };
            let probes: Vec<Probe> = by.values().cloned().collect();
            // Our own Probe is genuine: keep it for when the others' come again.
            if let Some(own) = by.remove(&self.id) {
                self.probes.entry(view).or_default().insert(self.id, own);
            }
            let before = self.backend.progress().view;
            let effects = self.backend.call(Call::Probes(probes.clone()));
            if self.backend.progress().view > before {
                tracing::info!(replica = self.id, view, "moved to a new view");
                self.apply(effects, now, out);
                self.moved_by = probes;
                return;
            }
            self.apply(effects, now, out);
        }
    }

    /// New primary: with ViewChanges from f other replicas, let the Manager start the view.
    fn try_view_changes(&mut self, now: u64, out: &mut Vec<Output>) {
        let progress = self.backend.progress();
        if !self.is_primary() || progress.started {
            return;
        }
        let vcs: Vec<ViewChange> =
            self.view_changes.values().filter(|vc| vc.view == progress.view).cloned().collect();
        if vcs.len() < self.faults {
            return;
        }
        let effects = self.backend.call(Call::ViewChanges(vcs));
        self.apply(effects, now, out);
        if self.backend.progress().started {
            tracing::info!(replica = self.id, view = progress.view, "new view started as primary");
        }
    }

    /// The Manager's view changed: drop what belonged to the old one.
    fn sync_view(&mut self, now: u64) {
        let progress = self.backend.progress();
        if progress.view == self.seen_view {
            return;
        }
        if progress.committed == self.committed_at_change {
            // No progress since the last change: give the next primary longer.
            self.timeout_ms = (self.timeout_ms * 2).min(self.max_timeout_ms);
        } else {
            self.timeout_ms = self.base_timeout_ms;
        }
        self.committed_at_change = progress.committed;
        self.seen_view = progress.view;
        self.last_heard = now;
        self.my_probe = None;
        self.my_view_change = None;
        self.new_view = None;
        // The Probes we hold for the new view (f+1 of them if Probes moved us; try_probes
        // overrides this with the exact set): what a replica left behind needs.
        self.moved_by = self
            .probes
            .get(&progress.view)
            .map(|by| by.values().cloned().collect())
            .unwrap_or_default();
        self.confirmed.clear();
        // Complaints were about the old primary; the new one gets a full timeout.
        self.complaints.clear();
        self.in_flight.clear();
        self.held.clear();
        self.last_commit = None;
        self.probes.retain(|view, _| *view > progress.view);
        self.view_changes.retain(|_, vc| vc.view >= progress.view);
        if !self.is_primary() {
            self.queue.clear();
        }
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
        // The call may have moved the Manager to another view; its effects belong to that one.
        self.sync_view(now);
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
                    while self.in_flight.len() > self.retained_updates {
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
                Effect::Release { seq, secret } => {
                    for mut reply in self.held.remove(&seq).unwrap_or_default() {
                        let blinder = crypto::reply_blinder(&secret, &reply.client, reply.seq);
                        crypto::xor(&mut reply.tag, &blinder);
                        self.send_reply(reply, out);
                    }
                }
                Effect::Status(_) | Effect::Snapshot(_) => {}
                Effect::Probe(probe) => {
                    let bytes = encode(Message::Probe(probe.clone()));
                    for r in self.backups() {
                        out.push(Output::Replica(r, bytes.clone()));
                    }
                    self.my_probe = Some((bytes, now));
                    self.probes.entry(probe.view).or_default().insert(self.id, probe);
                    self.try_probes(now, out);
                }
                Effect::ViewChange(vc) => {
                    let to = u16::try_from(vc.view % u64::from(self.n)).unwrap_or(0);
                    if to != self.id {
                        let bytes = encode(Message::ViewChange(vc));
                        out.push(Output::Replica(to, bytes.clone()));
                        self.my_view_change = Some((to, bytes, now));
                    } else {
                        self.try_view_changes(now, out);
                    }
                }
                Effect::NewView(nv) => {
                    let bytes = encode(Message::NewView(nv));
                    for r in self.backups() {
                        out.push(Output::Replica(r, bytes.clone()));
                    }
                    self.new_view = Some(bytes);
                    self.last_heartbeat = now;
                }
                Effect::Sealed(blob) => out.push(Output::Persist(blob)),
                Effect::Persist { index, .. } => {
                    // The backend could not write it (`crate::store`): the Manager holds back
                    // everything until it can, and hands the record out again on the next call.
                    tracing::warn!(replica = self.id, index, "log record not on disk yet");
                }
                Effect::Behind { committed } => {
                    let since = self.behind.map_or(now, |(_, since)| since);
                    let target = self.behind.map_or(committed, |(t, _)| t.max(committed));
                    self.behind = Some((target, since));
                }
                Effect::NeedState { replica, committed } => {
                    tracing::info!(replica = self.id, from = replica, committed, "needs state");
                    self.state_source = Some(replica);
                    self.state_asked.0 = None;
                    self.behind = Some((committed, 0));
                    let request = StateRequest {
                        replica: self.id,
                        at_least: committed.max(self.backend.progress().committed),
                    };
                    out.push(Output::Replica(replica, encode(Message::StateRequest(request))));
                    self.state_asked = (Some(now), replica);
                }
                Effect::Refused(why) => {
                    tracing::debug!(replica = self.id, %why, "refused");
                    self.last_refusal = Some(why);
                }
            }
        }
    }

    fn send_reply(&mut self, reply: Reply, out: &mut Vec<Output>) {
        if let Some((route, _)) = self.routes.remove(&(reply.client, reply.seq)) {
            out.push(Output::Client(route, encode(Message::Reply(reply))));
        }
    }
}

/// Whether the Manager took a message (refused nothing).
fn accepted(effects: &[Effect]) -> bool {
    !effects.iter().any(|e| matches!(e, Effect::Refused(_)))
}

fn encode(message: Message) -> Arc<[u8]> {
    message.encode().into()
}
