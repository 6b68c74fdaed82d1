//! The Manager: V-PR's trusted logic (thesis §5.2), the same code on every backend.
//!
//! The untrusted host (the U-Manager) hands it one [`Call`] at a time and carries out the
//! [`Effect`]s it returns: messages to send, replies to hold or release. The Manager never
//! sees a socket or a clock; everything it keeps secret (the group key K, client keys) stays
//! inside it, and everything that leaves is authenticated.
//!
//! - `init`: initialization (Fig 5.3): Join, Accept, AckInit.
//! - `session`: clients: attested key exchange, keys, the exactly-once table.
//! - `primary`: execution 1 (requests into an update and blinded replies) and execution 2
//!   (Acks into commits and released blinders) of Fig 5.4.
//! - `backup`: holding, acknowledging and applying updates (Fig 5.4, backup side).
//! - `view`: primary change (§5.2.5).
//! - `transfer`: state transfer (snapshots) and restart from sealed storage.
//! - `durable`: the write-ahead log on the host's disk, and restart from it.
//! - `wire`: the configuration and status as they cross the PAL's boundary
//!   ([`vpr_proto::tcc`]; [`Call`] and [`Effect`] are defined there too).

mod backup;
mod durable;
mod init;
mod primary;
mod session;
mod transfer;
mod view;
mod wire;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use vpr_proto::crypto::{Key, KeyPair, PublicKey};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{NewView, ReplicaId, Update};

use crate::service::{Service, ServiceOptions};
use crate::tcc::{Counter, Tcc};

// The host's calls and the Manager's effects are wire types: a driver outside the PAL (the
// hypervisor backend's host) builds and reads them with `vpr-proto` alone.
pub use vpr_proto::tcc::{Call, Effect};

/// The group's configuration, as every Manager of the group must see it.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Number of replicas, n = 2f + 1.
    pub replicas: u16,
    /// This replica's id.
    pub me: ReplicaId,
    /// The manufacturer key that certifies genuine TCCs.
    pub manufacturer: PublicKey,
    /// Whether simulated TCCs are accepted in the group.
    pub allow_simulated: bool,
    /// An identifier of this deployment (so two clusters never mix).
    pub cluster: [u8; 32],
    /// Most updates a primary keeps in flight (and a backup holds unapplied).
    pub max_in_flight: u32,
    /// The service's settings.
    pub service: ServiceOptions,
    /// Each replica's TCC key, by id (the thesis' certificate vector): a Manager runs only on
    /// the TCC its id names, and accepts a Join or an Accept only from the TCC of the sender's
    /// id. A key named twice is refused unless the group accepts simulated evidence (the
    /// hypervisor's self-test), so one TCC cannot hold two ids of a genuine group.
    pub members: Vec<PublicKey>,
    /// Whether this replica keeps its state in a log on its host's disk (`durable`), so that
    /// it restarts as the replica it was, even when the whole group stopped.
    pub durable: bool,
}

impl GroupConfig {
    /// f: the number of faulty replicas tolerated.
    pub fn faults(&self) -> usize {
        usize::from(self.replicas.saturating_sub(1) / 2)
    }

    /// The configuration digest C (the thesis' certificate vector).
    pub fn digest(&self, identity: &Digest) -> Digest {
        vpr_proto::client::config_digest(
            self.replicas,
            identity,
            &self.manufacturer,
            self.allow_simulated,
            &self.cluster,
            self.max_in_flight,
            &self.members,
        )
    }
}

/// Where initialization stands.
#[derive(Debug)]
enum Phase {
    /// Not started.
    New,
    /// Backup: Join sent, waiting for Accept.
    Joining(KeyPair),
    /// Primary: Accept sent, counting AckInits.
    Accepting { accept: Digest, acked: Vec<ReplicaId> },
    /// Initialized.
    Ready,
}

/// An update a backup holds and has not applied yet.
#[derive(Clone, Debug)]
struct Held {
    update: Update,
    /// Its chain hash.
    chain: Digest,
    /// The highest view in which this replica accepted it: the view whose primary proposed
    /// it, or whose NewView listed it (reported in ViewChanges: docs/safety.md).
    accepted: u64,
}

/// An update the primary proposed and not yet committed.
#[derive(Debug)]
struct InFlight {
    update: Update,
    chain: Digest,
    acks: Vec<ReplicaId>,
    /// What applying it overwrote in the database, to take it back if the view changes first.
    undo: sqlite_shim::Undo,
}

/// Most recently committed or applied updates a Manager keeps to report in its ViewChanges,
/// so a new primary that lagged can still find them. Older ones need state transfer.
const LOG_LEN: usize = 64;

/// One replica's trusted Manager.
#[derive(Debug)]
pub struct Manager<T: Tcc> {
    tcc: T,
    group: GroupConfig,
    config: Digest,
    identity: Digest,
    service: Service,
    phase: Phase,
    key: Option<Key>,
    view: u64,
    /// Primary: proposed but not committed updates, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Backup: held updates, not yet applied, oldest first. In a started view every one of
    /// them was accepted in that view.
    held: VecDeque<Held>,
    /// Sequence number and chain hash of the last update proposed (primary) or held (backup).
    head: (u64, Digest),
    /// Sequence number and chain hash of the last update committed or applied.
    committed: (u64, Digest),
    /// Backup: the NewView that started the current view here; it lists the earlier views'
    /// updates this view carries over (the only ones of earlier views a backup accepts).
    new_view: Option<NewView>,
    /// The database holds uncommitted pages of a view this replica left and could not take
    /// back (out of memory): it refuses to act until a snapshot replaces it.
    stale: bool,
    /// Whether the database keeps undo records (a primary, for its updates in flight).
    undo_on: bool,
    /// Whether the current view has started here (its NewView made or accepted).
    started: bool,
    /// The last updates committed or applied, oldest first (at most [`LOG_LEN`]).
    log: VecDeque<(Update, Digest)>,
    /// Restarted: the database is lost; a snapshot of at least this update must come first.
    recover_to: Option<u64>,
    /// Restarted: this replica's account counts in a view change only once it committed this
    /// far (everything it could have acknowledged before it lost its memory).
    counts_from: u64,
    /// This Manager's incarnation: the value it raised the TCC's incarnation counter to when
    /// it started. A later registration or restore of the same replica (a restart, or a twin
    /// the host started) raises it again, and from then on this one refuses to act.
    incarnation: u64,
    /// Why this Manager stopped for good, once it did ([`Manager::stop`]).
    stopped: Option<String>,
    /// The write-ahead log of a durable Manager (`durable`).
    log_state: Option<durable::Log>,
    /// Restarted from its log: the trusted state counter then, which may be past what the
    /// log says it applied (updates applied in calls whose record was never confirmed).
    /// Applying those again leaves the counter where it is.
    state_floor: u64,
    /// A primary restarted from its log in the view it had started: it does not start that
    /// view again (it lost its NewView and the Acks of that view).
    resigned: Option<u64>,
}

impl<T: Tcc> Manager<T> {
    /// A Manager over a new, empty database, on a TCC that never served a group.
    pub fn new(mut tcc: T, group: GroupConfig) -> Result<Self, String> {
        let view = tcc.counter(Counter::View).map_err(|e| e.0)?;
        let state = tcc.counter(Counter::State).map_err(|e| e.0)?;
        let log = tcc.counter(Counter::Log).map_err(|e| e.0)?;
        if view != 0 || state != 0 || log != 0 {
            return Err(alloc::format!(
                "trusted counters at view {view}, state {state}, log {log}: this TCC already \
                 served a group; restart it from its sealed state instead"
            ));
        }
        let mut manager = Manager::fresh(tcc, group)?;
        manager.incarnate()?;
        Ok(manager)
    }

    /// Raises the TCC's incarnation counter: from now on every other Manager of this replica
    /// (same counters) refuses to act.
    fn incarnate(&mut self) -> Result<(), String> {
        self.incarnation = self.tcc.increment(Counter::Incarnation).map_err(|e| e.0)?;
        Ok(())
    }

    /// Whether this Manager is still the newest incarnation of its replica. A twin (the same
    /// replica registered again and restored from its sealed state) shares the counters and
    /// the keys: only the newest may act, or two Managers would answer as one replica.
    fn check_incarnation(&mut self) -> Result<(), String> {
        let now = self.tcc.counter(Counter::Incarnation).map_err(|e| e.0)?;
        if now != self.incarnation {
            return Err(alloc::format!(
                "incarnation {} of this replica is superseded by incarnation {now}: it no \
                 longer acts",
                self.incarnation
            ));
        }
        Ok(())
    }

    /// A Manager over a new, empty database.
    fn fresh(mut tcc: T, group: GroupConfig) -> Result<Self, String> {
        let identity = tcc.identity();
        if group.replicas.is_multiple_of(2)
            || usize::from(group.replicas) > vpr_proto::msg::MAX_REPLICAS
        {
            // n = 2f + 1: with an even n, two disjoint halves would each make a quorum.
            return Err(alloc::format!(
                "invalid number of replicas {}: it must be odd, 2f + 1",
                group.replicas
            ));
        }
        if group.me >= group.replicas {
            return Err(alloc::format!("replica id {} outside 0..{}", group.me, group.replicas));
        }
        if group.members.len() != usize::from(group.replicas) {
            return Err(alloc::format!(
                "the configuration names {} TCC keys for {} replicas",
                group.members.len(),
                group.replicas
            ));
        }
        // One TCC key for two ids would let one TCC (one crash) count twice. Only a group
        // that accepts simulated evidence may do it (the hypervisor's self-test runs three
        // ids on its one TCC).
        let twice =
            group.members.iter().enumerate().any(|(i, key)| group.members[..i].contains(key));
        if twice && !group.allow_simulated {
            return Err(String::from(
                "the configuration names one TCC key for two replicas: one TCC cannot hold two ids",
            ));
        }
        // The TCC this Manager runs on must be the one the configuration gives its id: else
        // one TCC could serve as several replicas (attack 5, docs/safety.md).
        let own = tcc.attest(&Digest([0; 32])).tcc_key;
        if group.members.get(usize::from(group.me)) != Some(&own) {
            return Err(alloc::format!(
                "this TCC's key {} is not the key the configuration names for replica {}",
                Digest::of(&own),
                group.me
            ));
        }
        let mut service = Service::new(&group.service).map_err(|e| alloc::format!("{e}"))?;
        session::create_table(&mut service)?;
        let genesis = service.digest();
        let config = group.digest(&identity);
        Ok(Manager {
            tcc,
            group,
            config,
            identity,
            service,
            phase: Phase::New,
            key: None,
            view: 0,
            in_flight: VecDeque::new(),
            held: VecDeque::new(),
            head: (0, genesis),
            committed: (0, genesis),
            new_view: None,
            stale: false,
            undo_on: false,
            started: true,
            log: VecDeque::new(),
            recover_to: None,
            counts_from: 0,
            incarnation: 0,
            stopped: None,
            log_state: None,
            state_floor: 0,
            resigned: None,
        })
    }

    /// Handles one call from the host.
    pub fn handle(&mut self, call: Call) -> Vec<Effect> {
        if let Some(reason) = &self.stopped {
            return alloc::vec![Effect::Refused(reason.clone())];
        }
        if let Err(reason) = self.check_incarnation() {
            return alloc::vec![Effect::Refused(reason)];
        }
        if let Some(effects) = self.while_waiting(&call) {
            return effects;
        }
        let result = match call {
            Call::Join => self.join(),
            Call::Joins { joins, require_all } => self.accept(&joins, require_all),
            Call::Accept(accept) => self.on_accept(&accept),
            Call::AckInit(ack) => self.on_ack_init(&ack),
            Call::Hello(hello) => self.welcome(&hello),
            Call::Requests(requests) => self.execute(requests),
            Call::Update(update) => self.on_update(update),
            Call::Ack(ack) => self.on_ack(&ack),
            Call::Commit(commit) => self.on_commit(&commit),
            Call::Status(request) => self.status(&request),
            Call::Snapshot(snapshot) => self.on_snapshot(&snapshot),
            Call::MakeSnapshot => self.make_snapshot(),
            Call::Suspect => self.suspect(),
            Call::Probes(probes) => self.on_probes(&probes),
            Call::ViewChanges(vcs) => self.on_view_changes(&vcs),
            Call::NewView(nv) => self.on_new_view(&nv),
            Call::Heartbeat => self.heartbeat(),
            Call::Checkpoint => self.checkpoint(),
            Call::Persisted { index } => {
                Err(alloc::format!("persisted: record {index} does not wait for a confirmation"))
            }
        };
        let effects = result.unwrap_or_else(|reason| alloc::vec![Effect::Refused(reason)]);
        self.seal_record(effects)
    }

    /// Stops this Manager for good, for `reason`: from now on it refuses every call, as a
    /// crashed replica answers none. For failures after the Manager changed what it holds — a
    /// held update popped or applied, a counter half advanced — where answering `Refused` and
    /// going on would leave a replica that forgot an update it acknowledged, without the
    /// restart that makes its account count only from what it committed (`counts_from`).
    /// The TCC fails only by crashing; so does the Manager. A restart from the sealed state
    /// repairs it.
    pub(super) fn stop(&mut self, reason: String) -> String {
        let reason = alloc::format!(
            "this Manager stopped ({reason}): restart the replica from its sealed state"
        );
        self.stopped = Some(reason.clone());
        reason
    }

    /// Whether this Manager stopped for good ([`Manager::stop`]).
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Raises a trusted counter by one; its new value. A failure stops the Manager.
    pub(super) fn increment(&mut self, counter: Counter) -> Result<u64, String> {
        match self.tcc.increment(counter) {
            Ok(value) => Ok(value),
            Err(e) => Err(self.stop(alloc::format!("the {counter:?} counter: {}", e.0))),
        }
    }

    /// Raises a trusted counter to `value` ([`Tcc::advance`]); its new value. A failure stops
    /// the Manager (the counter may have moved part of the way).
    pub(super) fn advance(&mut self, counter: Counter, value: u64) -> Result<u64, String> {
        match self.tcc.advance(counter, value) {
            Ok(value) => Ok(value),
            Err(e) => Err(self.stop(alloc::format!("the {counter:?} counter: {}", e.0))),
        }
    }

    /// Counts committed or applied update `seq` on the trusted state counter (`doing` names
    /// the step for the error): one more, which must make it `seq`. A failure, or a counter
    /// elsewhere, stops the Manager.
    pub(super) fn count_state(&mut self, seq: u64, doing: &str) -> Result<(), String> {
        if seq <= self.state_floor {
            return Ok(()); // applied before a restart from the log, and counted then
        }
        let counter = self.increment(Counter::State)?;
        if counter != seq {
            return Err(
                self.stop(alloc::format!("state counter at {counter}, {doing} update {seq}"))
            );
        }
        Ok(())
    }

    /// The current primary's id.
    pub fn primary(&self) -> ReplicaId {
        // `replicas` is non-zero (checked in `new`) and the result is below it.
        u16::try_from(self.view % u64::from(self.group.replicas)).unwrap_or(0)
    }

    /// Whether this replica is the primary of the current view.
    pub fn is_primary(&self) -> bool {
        self.primary() == self.group.me
    }

    /// Whether initialization has finished here.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The current view.
    pub fn view(&self) -> u64 {
        self.view
    }

    /// Sequence number of the last committed (primary) or applied (backup) update.
    pub fn committed(&self) -> u64 {
        self.committed.0
    }

    /// The chain hash of the last committed or applied update: replicas at the same
    /// update must have the same one.
    pub fn committed_chain(&self) -> Digest {
        self.committed.1
    }

    /// Whether the current view has started here (its NewView made or accepted).
    pub fn view_started(&self) -> bool {
        self.started
    }

    /// Whether this replica must get a snapshot before it can act (restarted, or an old
    /// primary whose database holds uncommitted pages), and from which update on.
    pub fn needs_state(&self) -> Option<u64> {
        if self.stale {
            return Some(self.committed.0);
        }
        self.recover_to
    }

    /// The database digest (`vpr_pal::merkle`: a Merkle root over the file).
    pub fn digest(&self) -> Digest {
        self.service.digest()
    }

    /// The PAL identity clients pin.
    pub fn identity(&self) -> Digest {
        self.identity
    }

    /// The last update held, or the last applied if none is held.
    fn held_head(&self) -> (u64, Digest) {
        self.held.back().map_or(self.committed, |h| (h.update.seq, h.chain))
    }

    /// Records an update as committed or applied, for later ViewChanges.
    fn remember(&mut self, update: Update, chain: Digest) {
        self.log.push_back((update, chain));
        while self.log.len() > LOG_LEN {
            self.log.pop_front();
        }
    }

    /// Primary: starts keeping undo records (its database holds only committed state now).
    fn start_undo(&mut self) {
        if !self.undo_on {
            self.service.keep_undo(true);
            self.undo_on = true;
        }
    }

    /// Refuses to act on the database while it is lost or holds uncommitted pages.
    fn check_state(&self) -> Result<(), String> {
        match self.needs_state() {
            Some(at) => Err(alloc::format!("this replica needs state transfer (from update {at})")),
            None => Ok(()),
        }
    }

    fn group_key(&self) -> Result<&Key, String> {
        match (&self.phase, &self.key) {
            (Phase::Ready, Some(k)) => Ok(k),
            _ => Err(String::from("not initialized")),
        }
    }
}
