//! An in-process cluster of simulated replicas with a hand-driven network: every message
//! passes through here, so tests can drop, hold, tamper with or replay any of them.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use rand_core::OsRng;
use tempfile::TempDir;
use vpr_host::tcc::simulation::{Manufacturer, Simulation};
use vpr_host::tcc::TccBackend;
use vpr_pal::{Call, Effect, GroupConfig, ServiceOptions};
use vpr_proto::client::{Pending, Session, Trust};
use vpr_proto::crypto;
use vpr_proto::msg::{Ack, Reply, Request, Update, ViewChange};

pub struct Cluster {
    pub replicas: Vec<Simulation>,
    pub manufacturer: Manufacturer,
    _dir: TempDir,
    /// Replies whose tag is blinded, by the update they wait for.
    pub held: BTreeMap<u64, Vec<Reply>>,
    /// Replies ready for clients (unblinded where needed).
    pub delivered: Vec<Reply>,
    /// Updates as the primary sent them (for replay and tampering tests).
    pub updates: Vec<Update>,
    /// Acks are queued here instead of delivered while this is set.
    pub withhold_acks: bool,
    pub withheld: Vec<Ack>,
    /// Everything the Managers refused, with the replica that refused it.
    pub refused: Vec<(u16, String)>,
    /// What each replica's TCC sealed for a restart.
    pub sealed: BTreeMap<u16, Vec<u8>>,
    /// Whether the replicas keep a log (`durable`).
    pub durable: bool,
    /// Each durable replica's log, as its host stored it (every record, in order).
    pub logs: BTreeMap<u16, Vec<Vec<u8>>>,
    /// While this is set, records are stored but not confirmed: (replica, index) queued here.
    pub hold_confirmations: bool,
    pub unconfirmed: Vec<(u16, u64)>,
}

/// The group of `n` replicas whose TCCs' data folders are `dir`/r0, r1, ... (each id bound
/// to the TCC key of its folder), as replica `me` sees it.
pub fn group(n: u16, me: u16, manufacturer: &Manufacturer, dir: &std::path::Path) -> GroupConfig {
    durable_group(n, me, manufacturer, dir, false)
}

/// [`group`], keeping a log on disk if `durable`.
pub fn durable_group(
    n: u16,
    me: u16,
    manufacturer: &Manufacturer,
    dir: &std::path::Path,
    durable: bool,
) -> GroupConfig {
    let members = (0..n)
        .map(|i| vpr_host::tcc::simulation::tcc_key(&dir.join(format!("r{i}"))).expect("TCC key"))
        .collect();
    GroupConfig {
        replicas: n,
        me,
        manufacturer: manufacturer.public(),
        allow_simulated: true,
        cluster: [7; 32],
        max_in_flight: 64,
        service: ServiceOptions::default(),
        members,
        durable,
    }
}

impl Cluster {
    /// n replicas, initialized (Fig 5.3).
    pub fn form(n: u16) -> Cluster {
        Cluster::form_with(n, false)
    }

    /// n replicas that keep a log, initialized (Fig 5.3).
    pub fn form_durable(n: u16) -> Cluster {
        Cluster::form_with(n, true)
    }

    fn form_with(n: u16, durable: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let manufacturer = Manufacturer::generate();
        let replicas = (0..n)
            .map(|i| {
                Simulation::start(
                    &dir.path().join(format!("r{i}")),
                    &manufacturer,
                    durable_group(n, i, &manufacturer, dir.path(), durable),
                )
                .expect("start replica")
            })
            .collect();
        let mut c = Cluster {
            replicas,
            manufacturer,
            _dir: dir,
            held: BTreeMap::new(),
            delivered: Vec::new(),
            updates: Vec::new(),
            withhold_acks: false,
            withheld: Vec::new(),
            refused: Vec::new(),
            sealed: BTreeMap::new(),
            durable,
            logs: BTreeMap::new(),
            hold_confirmations: false,
            unconfirmed: Vec::new(),
        };
        let mut joins = Vec::new();
        for i in 1..n {
            for e in c.call(i, Call::Join) {
                match e {
                    Effect::Join(j) => joins.push(j),
                    other => panic!("join: {other:?}"),
                }
            }
        }
        let accept = match c.call(0, Call::Joins { joins, require_all: true }).pop() {
            Some(Effect::Accept(a)) => a,
            other => panic!("accept: {other:?}"),
        };
        let mut ready = 0;
        for i in 1..n {
            for e in c.call(i, Call::Accept(Box::new(accept.clone()))) {
                match e {
                    Effect::AckInit(ack) => {
                        for e in c.call(0, Call::AckInit(ack)) {
                            match e {
                                Effect::Ready => ready += 1,
                                Effect::Sealed(blob) => {
                                    c.sealed.insert(0, blob);
                                }
                                other => panic!("ackinit: {other:?}"),
                            }
                        }
                    }
                    Effect::Sealed(blob) => {
                        c.sealed.insert(i, blob);
                    }
                    Effect::Ready => {}
                    other => panic!("accept: {other:?}"),
                }
            }
        }
        assert!(n == 1 || ready == 1, "the primary became ready {ready} times");
        c
    }

    /// Replica `i`'s process dies and starts again: its TCC memory is lost, its data folder
    /// (trusted counters, sealing secret) stays, and its host hands back `sealed`.
    pub fn restart(&mut self, i: u16, sealed: &[u8]) -> std::io::Result<()> {
        self.restart_with_log(i, sealed, None)
    }

    /// [`Cluster::restart`], with the host handing back `log` too (a durable replica). The
    /// record the restarted Manager waits with (its fence) is stored and confirmed.
    pub fn restart_with_log(
        &mut self,
        i: u16,
        sealed: &[u8],
        log: Option<&[Vec<u8>]>,
    ) -> std::io::Result<()> {
        let restarted = Simulation::restore(
            &self._dir.path().join(format!("r{i}")),
            &self.manufacturer,
            self.group(i),
            sealed,
            log,
        )?;
        self.replicas[usize::from(i)] = restarted;
        if self.durable {
            let fence = self.replicas[usize::from(i)].call(Call::Persisted { index: 0 });
            let out = self.settle(i, fence);
            assert!(out.is_empty(), "after the fence: {out:?}");
        }
        Ok(())
    }

    /// Runs `call` on replica `i`, storing and confirming its records ([`Cluster::settle`]).
    pub fn call(&mut self, i: u16, call: Call) -> Vec<Effect> {
        let effects = self.replicas[usize::from(i)].call(call);
        self.settle(i, effects)
    }

    /// Stores each record among replica `i`'s effects in its log and confirms it (unless
    /// confirmations are held): the effects the Manager then hands out take its place.
    pub fn settle(&mut self, i: u16, effects: Vec<Effect>) -> Vec<Effect> {
        let mut out = Vec::new();
        for effect in effects {
            match effect {
                Effect::Persist { index, record, .. } => {
                    self.logs.entry(i).or_default().push(record);
                    if self.hold_confirmations {
                        self.unconfirmed.push((i, index));
                    } else {
                        let released =
                            self.replicas[usize::from(i)].call(Call::Persisted { index });
                        out.extend(self.settle(i, released));
                    }
                }
                other => out.push(other),
            }
        }
        out
    }

    /// A twin of replica `i`: the same replica registered again on its machine (same
    /// counters, same sealing secret) and restored from `sealed`, while the original runs on.
    pub fn twin(&self, i: u16, sealed: &[u8]) -> std::io::Result<Simulation> {
        Simulation::restore(
            &self._dir.path().join(format!("r{i}")),
            &self.manufacturer,
            self.group(i),
            sealed,
            None,
        )
    }

    /// The group as replica `me` sees it.
    pub fn group(&self, me: u16) -> GroupConfig {
        durable_group(self.n(), me, &self.manufacturer, self._dir.path(), self.durable)
    }

    /// The folder replica `i`'s TCC keeps its data in.
    pub fn data(&self, i: u16) -> std::path::PathBuf {
        self._dir.path().join(format!("r{i}"))
    }

    pub fn trust(&self) -> Trust {
        let identity = self.replicas[0].identity();
        Trust {
            config: self.group(0).digest(&identity),
            manufacturer: self.manufacturer.public(),
            identity: self.replicas[0].identity(),
            allow_simulated: true,
        }
    }

    /// A client session through the attested key exchange with the primary.
    pub fn client(&mut self) -> Session {
        let pending = Pending::new(&mut OsRng);
        let welcome = match self.call(0, Call::Hello(Box::new(pending.hello().clone()))).pop() {
            Some(Effect::Welcome(w)) => w,
            other => panic!("hello: {other:?}"),
        };
        pending.finish(&welcome, &self.trust()).expect("welcome verifies")
    }

    /// Runs a batch at the primary and carries every resulting message to completion.
    pub fn submit(&mut self, requests: Vec<Request>) {
        let effects = self.call(0, Call::Requests(requests));
        self.process(0, effects);
    }

    /// Delivers withheld Acks.
    pub fn release_acks(&mut self) {
        self.withhold_acks = false;
        let acks: Vec<Ack> = std::mem::take(&mut self.withheld);
        for ack in acks {
            let effects = self.call(0, Call::Ack(ack));
            self.process(0, effects);
        }
    }

    /// Carries out effects, delivering every message they produce, breadth first.
    pub fn process(&mut self, from: u16, effects: Vec<Effect>) {
        let mut queue: VecDeque<(u16, Effect)> = effects.into_iter().map(|e| (from, e)).collect();
        while let Some((from, effect)) = queue.pop_front() {
            match effect {
                Effect::Update(u) => {
                    self.updates.push(u.clone());
                    for b in 1..self.n() {
                        let out = self.call(b, Call::Update(u.clone()));
                        queue.extend(out.into_iter().map(|e| (b, e)));
                    }
                }
                Effect::Ack(a) if self.withhold_acks => self.withheld.push(a),
                Effect::Ack(a) => {
                    let out = self.call(0, Call::Ack(a));
                    queue.extend(out.into_iter().map(|e| (0, e)));
                }
                Effect::Commit(c) => {
                    for b in 1..self.n() {
                        let out = self.call(b, Call::Commit(c.clone()));
                        queue.extend(out.into_iter().map(|e| (b, e)));
                    }
                }
                Effect::Reply { reply, blinded_until: Some(seq) } => {
                    self.held.entry(seq).or_default().push(reply)
                }
                Effect::Reply { reply, blinded_until: None } => self.delivered.push(reply),
                Effect::Release { seq, secret } => {
                    // Every committed update has its own Release, in order.
                    for mut reply in self.held.remove(&seq).unwrap_or_default() {
                        let blinder = crypto::reply_blinder(&secret, &reply.client, reply.seq);
                        crypto::xor(&mut reply.tag, &blinder);
                        self.delivered.push(reply);
                    }
                }
                Effect::Refused(why) => self.refused.push((from, why)),
                other => panic!("unexpected effect {other:?}"),
            }
        }
    }

    /// Confirms the records held back ([`Cluster::hold_confirmations`]) and carries out
    /// what the Managers then hand out.
    pub fn confirm_held(&mut self) {
        self.hold_confirmations = false;
        let mut released = Vec::new();
        for (i, index) in std::mem::take(&mut self.unconfirmed) {
            released.push((i, self.call(i, Call::Persisted { index })));
        }
        for (i, effects) in released {
            self.process(i, effects);
        }
    }

    /// Probes of `probers` (each suspects the primary) delivered to `movers`: the
    /// ViewChanges the movers answer with (records stored and confirmed on the way).
    pub fn change_view(&mut self, probers: &[u16], movers: &[u16]) -> Vec<ViewChange> {
        let probes: Vec<_> = probers
            .iter()
            .flat_map(|r| {
                self.call(*r, Call::Suspect).into_iter().filter_map(|e| match e {
                    Effect::Probe(p) => Some(p),
                    _ => None,
                })
            })
            .collect();
        assert_eq!(probes.len(), probers.len(), "every prober suspects");
        movers
            .iter()
            .flat_map(|r| {
                self.call(*r, Call::Probes(probes.clone())).into_iter().filter_map(|e| match e {
                    Effect::ViewChange(v) => Some(v),
                    _ => None,
                })
            })
            .collect()
    }

    /// The delivered reply to `request`, if any (the last one).
    pub fn reply_to(&self, request: &Request) -> Option<&Reply> {
        self.delivered.iter().rev().find(|r| r.client == request.client && r.seq == request.seq)
    }

    pub fn n(&self) -> u16 {
        u16::try_from(self.replicas.len()).expect("replica count")
    }

    pub fn digests(&self) -> Vec<vpr_proto::digest::Digest> {
        self.replicas.iter().map(|r| r.manager().digest()).collect()
    }
}
