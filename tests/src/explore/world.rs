//! The explored world: n real Managers over [`SharedTcc`]s, the adversary's network (every
//! message ever emitted, deliverable anywhere any number of times), the clients, and the
//! adversary's actions. Worlds are rebuilt by replaying actions from the initial state
//! (a Manager holds a SQLite connection and cannot be cloned), so everything here is
//! deterministic: the same actions give the same world.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use vpr_pal::{Call, Effect, GroupConfig, Manager, ServiceOptions};
use vpr_proto::client::{Pending, Session, Trust};
use vpr_proto::crypto::{self, Key, KeyPair, Signature, Tag};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{ReadLevel, Reply, Request, Wire};

use super::invariants::Observer;
use super::shape::{group_call, route, Msg, Routed};
use super::tcc::{Rng, SharedTcc};

/// The database every run starts from (committed at every replica before exploring).
const SCHEMA: &str = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x')";

/// A client: honest (its accepted replies are checked) or the adversary's own.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// Its name in traces.
    pub name: &'static str,
    /// The adversary's own client: it knows its key, and nothing is promised to it.
    pub own: bool,
    /// The requests it may send, each any number of times within the request budget.
    pub menu: Vec<(&'static str, ReadLevel)>,
}

/// The bounds of one exploration.
#[derive(Clone, Debug)]
pub struct Config {
    /// n = 2f + 1.
    pub replicas: u16,
    /// Updates a primary keeps in flight.
    pub max_in_flight: u32,
    /// The clients.
    pub clients: Vec<ClientSpec>,
    /// New client requests in a run.
    pub max_requests: usize,
    /// Requests in one batch.
    pub max_batch: usize,
    /// Highest view any replica may move to.
    pub max_view: u64,
    /// Twins the adversary may start (a second instance of a replica, from its sealed blob).
    pub twins: usize,
    /// Crash-restarts from a sealed blob.
    pub restarts: usize,
    /// Whether snapshots may be made and delivered.
    pub snapshots: bool,
    /// Seed of every random number in the run.
    pub seed: u64,
}

/// An instance of a replica: the original (incarnation 0), a twin or a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inst {
    /// The replica.
    pub replica: u16,
    /// Which instance of it.
    pub incarnation: u8,
}

impl fmt::Display for Inst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.replica)?;
        for _ in 0..self.incarnation {
            write!(f, "'")?;
        }
        Ok(())
    }
}

/// One request in a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pick {
    /// The client's next request: item `item` of its menu.
    New {
        /// Index in [`Config::clients`].
        client: usize,
        /// Index in its menu.
        item: usize,
    },
    /// A request sent before, again (by its hash).
    Again(u64),
}

/// What the adversary does in one step. Messages are named by the hash of their encoding,
/// so a trace stays meaningful when steps before it are removed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A batch of requests to a replica (execution 1).
    Submit {
        /// Where.
        to: Inst,
        /// What.
        batch: Vec<Pick>,
    },
    /// A message to a replica.
    Deliver {
        /// The message.
        msg: u64,
        /// The receiver.
        to: Inst,
    },
    /// Every Probe for `view` to a replica.
    Probes {
        /// The view.
        view: u64,
        /// The receiver.
        to: Inst,
    },
    /// ViewChanges (a quorum's worth) to a new primary.
    ViewChanges {
        /// The messages.
        msgs: Vec<u64>,
        /// The receiver.
        to: Inst,
    },
    /// `from` makes a snapshot of its committed state; `to` gets it.
    Snapshot {
        /// The maker.
        from: Inst,
        /// The receiver.
        to: Inst,
    },
    /// A second instance of `replica` from its sealed blob, sharing its TCC.
    Twin {
        /// The replica.
        replica: u16,
    },
    /// An instance crashes and restarts from its sealed blob.
    Restart {
        /// The instance.
        inst: Inst,
    },
}

struct Instance {
    id: Inst,
    manager: Manager<SharedTcc>,
    alive: bool,
    /// The last update this instance proposed at each sequence number.
    proposals: BTreeMap<u64, Digest>,
    /// Messages it took without refusing (commutative hash of the set).
    delivered: HashSet<u64>,
    delivered_sum: u64,
    /// Its committed (seq, chain) when last observed.
    seen: (u64, Digest),
}

struct Client {
    spec: ClientSpec,
    session: Session,
}

struct HeldReply {
    reply: Reply,
    blinded: bool,
    /// (seq, chain, view) of the update that blinded it.
    blinding: Option<(u64, Digest, u64)>,
    accepted: bool,
}

/// A world: Managers, network, clients, and what the invariants observed.
pub struct World {
    cfg: Config,
    manufacturer: KeyPair,
    /// Each replica's TCC key, by id (what the configuration binds ids to).
    members: Vec<crypto::PublicKey>,
    tccs: Vec<SharedTcc>,
    instances: Vec<Instance>,
    sealed: Vec<Vec<Vec<u8>>>,
    pool: Vec<(Msg, u64, Inst)>,
    pool_index: HashMap<u64, usize>,
    pool_sum: u64,
    clients: Vec<Client>,
    /// (hash, client, request) of every request made.
    requests: Vec<(u64, usize, Request)>,
    made: usize,
    replies: Vec<HeldReply>,
    reply_hashes: HashSet<u64>,
    blinders: Vec<Tag>,
    /// Blinding secrets released (each gives every reply of its update its own blinder).
    secrets: Vec<Key>,
    twins: usize,
    restarts: usize,
    setting_up: bool,
    /// The invariants' view of the run.
    pub obs: Observer,
    /// The first promise broken, if any.
    pub violation: Option<String>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("instances", &self.instances.iter().map(|i| i.id).collect::<Vec<_>>())
            .field("pool", &self.pool.len())
            .finish_non_exhaustive()
    }
}

fn hash64(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn group_config(
    cfg: &Config,
    me: u16,
    manufacturer: &KeyPair,
    members: &[crypto::PublicKey],
) -> GroupConfig {
    GroupConfig {
        replicas: cfg.replicas,
        me,
        manufacturer: manufacturer.public(),
        allow_simulated: true,
        cluster: [7; 32],
        max_in_flight: cfg.max_in_flight,
        service: ServiceOptions::default(),
        members: members.to_vec(),
        durable: false,
    }
}

/// What every replay of one configuration shares: keys and client sessions.
struct Prepared {
    manufacturer: KeyPair,
    tcc_keys: Vec<(KeyPair, Signature)>,
    sessions: Vec<Session>,
}

thread_local! {
    static PREPARED: RefCell<Vec<(String, Rc<Prepared>)>> = const { RefCell::new(Vec::new()) };
}

/// The keys and sessions of `cfg`, made on first use.
fn prepared(cfg: &Config) -> Rc<Prepared> {
    let key = format!("{:?}", (cfg.seed, cfg.replicas, cfg.max_in_flight, cfg.clients.len()));
    if let Some(p) =
        PREPARED.with(|c| c.borrow().iter().find(|(k, _)| *k == key).map(|(_, p)| p.clone()))
    {
        return p;
    }
    let mut rng = Rng(cfg.seed);
    let manufacturer = loop {
        if let Some(k) = KeyPair::from_secret(&rng.bytes32()) {
            break k;
        }
    };
    let tcc_keys =
        (0..cfg.replicas).map(|_| SharedTcc::certified_key(&manufacturer, &mut rng)).collect();
    let mut p = Prepared { manufacturer, tcc_keys, sessions: Vec::new() };
    let w = World::formed(cfg, &p, true);
    p.sessions = w.clients.iter().map(|c| c.session.clone()).collect();
    let p = Rc::new(p);
    PREPARED.with(|c| c.borrow_mut().push((key, p.clone())));
    p
}

fn identity() -> Digest {
    crypto::hash(&[b"vpr explore pal"])
}

impl World {
    /// The initial state: the group formed (Fig 5.3), every client welcomed, and the schema
    /// committed at every replica.
    pub fn new(cfg: &Config) -> World {
        let prepared = prepared(cfg);
        let mut w = World::formed(cfg, &prepared, false);
        w.clients = cfg
            .clients
            .iter()
            .zip(&prepared.sessions)
            .map(|(spec, session)| Client { spec: spec.clone(), session: session.clone() })
            .collect();
        // The schema, committed everywhere; then the network forgets it.
        let setup = w.clients[0].session.request(SCHEMA.into(), vec![]);
        let effects = w.instances[0].manager.handle(Call::Requests(vec![setup]));
        w.route(0, effects);
        let mut next = 0;
        while next < w.pool.len() {
            let (msg, _, from) = w.pool[next].clone();
            next += 1;
            for i in 0..w.instances.len() {
                if w.instances[i].id != from {
                    let effects = w.instances[i].manager.handle(msg.call());
                    w.route(i, effects);
                }
            }
        }
        w.observe();
        assert!(w.violation.is_none(), "setup: {:?}", w.violation);
        assert!(w.instances.iter().all(|i| i.manager.committed() == 1), "setup did not commit");
        w.pool.clear();
        w.pool_index.clear();
        w.pool_sum = 0;
        w.replies.clear();
        w.reply_hashes.clear();
        w.blinders.clear();
        w.secrets.clear();
        w.setting_up = false;
        w.closure();
        w
    }

    /// The group formed; with `welcome`, also the clients' sessions through the attested key
    /// exchange (done once per configuration: K, and so every client key, is the same in
    /// every replay, so later worlds reuse the sessions and skip the P-256 work).
    fn formed(cfg: &Config, prepared: &Prepared, welcome: bool) -> World {
        let n = cfg.replicas;
        let members: Vec<crypto::PublicKey> =
            prepared.tcc_keys.iter().map(|(key, _)| key.public()).collect();
        let tccs: Vec<SharedTcc> = prepared
            .tcc_keys
            .iter()
            .zip(0u64..)
            .map(|((key, cert), r)| {
                SharedTcc::new(key.clone(), *cert, identity(), cfg.seed ^ ((r + 1) << 32))
            })
            .collect();
        let instances = (0..n)
            .map(|r| Instance {
                id: Inst { replica: r, incarnation: 0 },
                manager: Manager::new(
                    tccs[usize::from(r)].clone(),
                    group_config(cfg, r, &prepared.manufacturer, &members),
                )
                .expect("manager"),
                alive: true,
                proposals: BTreeMap::new(),
                delivered: HashSet::new(),
                delivered_sum: 0,
                seen: (0, Digest([0; 32])),
            })
            .collect::<Vec<_>>();
        let genesis = instances[0].manager.committed_chain();
        let faults = usize::from((n - 1) / 2);
        let mut w = World {
            cfg: cfg.clone(),
            manufacturer: prepared.manufacturer.clone(),
            members,
            tccs,
            instances,
            sealed: vec![Vec::new(); usize::from(n)],
            pool: Vec::new(),
            pool_index: HashMap::new(),
            pool_sum: 0,
            clients: Vec::new(),
            requests: Vec::new(),
            made: 0,
            replies: Vec::new(),
            reply_hashes: HashSet::new(),
            blinders: Vec::new(),
            secrets: Vec::new(),
            twins: 0,
            restarts: 0,
            setting_up: true,
            obs: Observer::new(faults, genesis),
            violation: None,
        };
        w.form();
        if welcome {
            let trust = Trust {
                config: group_config(cfg, 0, &w.manufacturer, &w.members).digest(&identity()),
                manufacturer: w.manufacturer.public(),
                identity: identity(),
                allow_simulated: true,
            };
            let mut rng = Rng(cfg.seed ^ 0xC11E);
            for spec in &cfg.clients {
                let pending = Pending::new(&mut rng);
                let welcome = w.instances[0]
                    .manager
                    .handle(Call::Hello(Box::new(pending.hello().clone())))
                    .into_iter()
                    .find_map(|e| if let Effect::Welcome(w) = e { Some(w) } else { None })
                    .expect("welcome");
                let session = pending.finish(&welcome, &trust).expect("welcome verifies");
                w.clients.push(Client { spec: spec.clone(), session });
            }
        }
        w
    }

    /// Initialization (Fig 5.3) with every message delivered once.
    fn form(&mut self) {
        let mut joins = Vec::new();
        for i in 1..self.instances.len() {
            for e in self.instances[i].manager.handle(Call::Join) {
                if let Effect::Join(j) = e {
                    joins.push(j);
                }
            }
        }
        let accept = self.instances[0]
            .manager
            .handle(Call::Joins { joins, require_all: true })
            .into_iter()
            .find_map(|e| if let Effect::Accept(a) = e { Some(a) } else { None })
            .expect("accept");
        for i in 1..self.instances.len() {
            for e in self.instances[i].manager.handle(Call::Accept(Box::new(accept.clone()))) {
                match e {
                    Effect::AckInit(ack) => {
                        let effects = self.instances[0].manager.handle(Call::AckInit(ack));
                        self.route(0, effects);
                    }
                    Effect::Sealed(blob) => self.sealed[i].push(blob),
                    _ => {}
                }
            }
        }
        assert!(self.instances.iter().all(|i| i.manager.is_ready()), "group not formed");
    }

    /// Carries out a Manager's effects: messages into the pool, replies to the adversary,
    /// blinders, sealed blobs. Returns whether the Manager refused the call (some effect,
    /// every one a refusal: no effect at all may still have changed its state) and notes.
    fn route(&mut self, i: usize, effects: Vec<Effect>) -> (bool, Vec<String>) {
        let id = self.instances[i].id;
        let mut all_refused = !effects.is_empty();
        let mut notes = Vec::new();
        for effect in effects {
            match route(effect) {
                Routed::Refused(why) => notes.push(format!("refused: {why}")),
                Routed::Msg(msg) => {
                    all_refused = false;
                    for u in msg.updates() {
                        let proposer = matches!(msg, Msg::Update(_)).then_some(id.replica);
                        self.obs.update(u.seq, u.prev, u.chain(), proposer);
                        if proposer.is_some() {
                            self.instances[i].proposals.insert(u.seq, u.chain());
                        }
                    }
                    if let Some((r, seq, chain)) = msg.ack() {
                        self.obs.ack(r, seq, chain);
                    }
                    if let Some((view, head, chain)) = msg.new_view() {
                        let result = self.obs.new_view(view, head, chain);
                        self.fail(result);
                    }
                    let h = hash64(&msg.bytes());
                    if !self.pool_index.contains_key(&h) {
                        notes.push(format!("sends {}", msg.describe()));
                        self.pool_index.insert(h, self.pool.len());
                        self.pool_sum = self.pool_sum.wrapping_add(h.wrapping_mul(0x9E37_79B9));
                        self.pool.push((msg, h, id));
                    }
                }
                Routed::Reply { reply, blinded_until } => {
                    all_refused = false;
                    let h = hash64(&reply.to_bytes());
                    if self.reply_hashes.insert(h) {
                        let view = self.instances[i].manager.view();
                        let blinding = blinded_until.and_then(|j| {
                            self.instances[i].proposals.get(&j).map(|c| (j, *c, view))
                        });
                        notes.push(format!(
                            "reply to seq {}{}",
                            reply.seq,
                            blinded_until.map_or(String::new(), |j| format!(" blinded by #{j}"))
                        ));
                        self.replies.push(HeldReply {
                            reply,
                            blinded: blinded_until.is_some(),
                            blinding,
                            accepted: false,
                        });
                    }
                }
                Routed::Secret(secret) => {
                    all_refused = false;
                    notes.push(String::from("releases a blinding secret"));
                    if !self.secrets.contains(&secret) {
                        self.secrets.push(secret);
                    }
                }
                Routed::Sealed(blob) => {
                    all_refused = false;
                    self.sealed[usize::from(id.replica)].push(blob);
                }
                Routed::Other => all_refused = false,
            }
        }
        (all_refused, notes)
    }

    fn fail(&mut self, result: Result<(), String>) {
        if let Err(e) = result {
            if self.violation.is_none() && !self.setting_up {
                self.violation = Some(e);
            }
        }
    }

    fn index(&self, id: Inst) -> Option<usize> {
        self.instances.iter().position(|i| i.id == id && i.alive)
    }

    fn call(&mut self, i: usize, call: Call) -> (bool, Vec<String>) {
        let effects = self.instances[i].manager.handle(call);
        self.route(i, effects)
    }

    /// Takes one action; returns what happened, for traces.
    pub fn apply(&mut self, action: &Action) -> String {
        let text = self.act(action);
        self.closure();
        text
    }

    fn act(&mut self, action: &Action) -> String {
        match action {
            Action::Submit { to, batch } => {
                let Some(i) = self.index(*to) else { return format!("{to} is gone") };
                let mut requests = Vec::new();
                let mut names = Vec::new();
                for pick in batch {
                    match pick {
                        Pick::New { client, item } => {
                            let (sql, level) = self.cfg.clients[*client].menu[*item];
                            let r =
                                self.clients[*client].session.request_at(level, sql.into(), vec![]);
                            self.made += 1;
                            names.push(format!(
                                "{}#{} {sql:?}",
                                self.cfg.clients[*client].name, r.seq
                            ));
                            self.requests.push((hash64(&r.to_bytes()), *client, r.clone()));
                            requests.push(r);
                        }
                        Pick::Again(h) => {
                            if let Some((_, c, r)) = self.requests.iter().find(|(x, ..)| x == h) {
                                names
                                    .push(format!("{}#{} again", self.cfg.clients[*c].name, r.seq));
                                requests.push(r.clone());
                            }
                        }
                    }
                }
                let (_, notes) = self.call(i, Call::Requests(requests));
                format!("submit [{}] to {to}: {}", names.join(", "), notes.join("; "))
            }
            Action::Deliver { msg, to } => {
                let (Some(&m), Some(i)) = (self.pool_index.get(msg), self.index(*to)) else {
                    return String::from("(nothing to deliver)");
                };
                let (message, h, from) = self.pool[m].clone();
                let (refused, notes) = self.call(i, message.call());
                self.delivered(i, h, refused);
                format!("{from} -> {to}: {}: {}", message.describe(), notes.join("; "))
            }
            Action::Probes { view, to } => {
                let Some(i) = self.index(*to) else { return format!("{to} is gone") };
                let probes: Vec<&Msg> = self
                    .pool
                    .iter()
                    .filter(|(m, ..)| {
                        matches!(m, Msg::Probe(_)) && m.grouped().map(|g| g.0) == Some(*view)
                    })
                    .map(|(m, ..)| m)
                    .collect();
                let from: Vec<u16> =
                    probes.iter().filter_map(|m| m.grouped().map(|g| g.1)).collect();
                let call = group_call(&probes);
                let h = hash64(format!("probes {view}").as_bytes());
                let (refused, notes) = self.call(i, call);
                self.delivered(i, h, refused);
                format!("probes for view {view} from {from:?} -> {to}: {}", notes.join("; "))
            }
            Action::ViewChanges { msgs, to } => {
                let Some(i) = self.index(*to) else { return format!("{to} is gone") };
                let chosen: Vec<Msg> = msgs
                    .iter()
                    .filter_map(|h| self.pool_index.get(h).map(|&m| self.pool[m].0.clone()))
                    .collect();
                let names: Vec<String> = chosen.iter().map(Msg::describe).collect();
                let call = group_call(&chosen.iter().collect::<Vec<_>>());
                let mut h = DefaultHasher::new();
                msgs.hash(&mut h);
                let (refused, notes) = self.call(i, call);
                self.delivered(i, h.finish(), refused);
                format!("[{}] -> {to}: {}", names.join(", "), notes.join("; "))
            }
            Action::Snapshot { from, to } => {
                let (Some(a), Some(b)) = (self.index(*from), self.index(*to)) else {
                    return String::from("(no such instances)");
                };
                let effects = self.instances[a].manager.handle(Call::MakeSnapshot);
                let made = effects.iter().find_map(|e| match e {
                    Effect::Snapshot(s) => Some(Msg::Snapshot(s.clone())),
                    _ => None,
                });
                let (_, notes) = self.route(a, effects);
                let Some(snapshot) = made else {
                    return format!("{from} makes no snapshot: {}", notes.join("; "));
                };
                let h = hash64(&snapshot.bytes());
                let (refused, notes) = self.call(b, snapshot.call());
                self.delivered(b, h, refused);
                format!("{from} makes {} -> {to}: {}", snapshot.describe(), notes.join("; "))
            }
            Action::Twin { replica } => self.restore(*replica, None),
            Action::Restart { inst } => self.restore(inst.replica, Some(*inst)),
        }
    }

    fn delivered(&mut self, i: usize, h: u64, refused: bool) {
        if !refused && self.instances[i].delivered.insert(h) {
            let inst = &mut self.instances[i];
            inst.delivered_sum = inst.delivered_sum.wrapping_add(h.wrapping_mul(0x9E37_79B9));
        }
    }

    /// A new instance of `replica` from its last sealed blob, sharing its TCC; `replacing`
    /// dies (a restart), or none does (a twin).
    fn restore(&mut self, replica: u16, replacing: Option<Inst>) -> String {
        let Some(blob) = self.sealed[usize::from(replica)].last().cloned() else {
            return format!("r{replica} has no sealed blob");
        };
        if let Some(old) = replacing {
            let Some(i) = self.index(old) else { return format!("{old} is gone") };
            self.instances[i].alive = false;
            self.restarts += 1;
        } else {
            self.twins += 1;
        }
        let incarnation =
            u8::try_from(self.instances.iter().filter(|i| i.id.replica == replica).count())
                .unwrap_or(u8::MAX);
        let id = Inst { replica, incarnation };
        let group = group_config(&self.cfg, replica, &self.manufacturer, &self.members);
        match Manager::restore(self.tccs[usize::from(replica)].clone(), group, &blob) {
            Ok(manager) => {
                self.instances.push(Instance {
                    id,
                    manager,
                    alive: true,
                    proposals: BTreeMap::new(),
                    delivered: HashSet::new(),
                    delivered_sum: 0,
                    seen: (0, Digest([0; 32])),
                });
                match replacing {
                    Some(old) => format!("{old} crashes; {id} restarts from its sealed blob"),
                    None => format!("twin {id} starts from r{replica}'s sealed blob"),
                }
            }
            Err(e) => format!("restore of r{replica} refused: {e}"),
        }
    }

    /// What follows every action: replicas suspect (a Probe changes no state, so every
    /// replica's Probe for its next view is made at once, and delivering it is the
    /// adversary's choice), clients check what they can, and the invariants observe.
    fn closure(&mut self) {
        for i in 0..self.instances.len() {
            let m = &self.instances[i].manager;
            if !self.instances[i].alive || !m.is_ready() || m.view() + 1 > self.cfg.max_view {
                continue;
            }
            let (replica, next) = (self.instances[i].id.replica, m.view() + 1);
            let known = self.pool.iter().any(|(msg, ..)| {
                matches!(msg, Msg::Probe(_)) && msg.grouped() == Some((next, replica))
            });
            if !known {
                self.call(i, Call::Suspect);
            }
        }
        self.accept_replies();
        self.observe();
    }

    /// The adversary unblinds what it can (released blinders, and the blinders its own
    /// clients' replies reveal: its own tag XOR the blinded one); honest clients verify
    /// every reply they are handed, and an accepted one is checked.
    fn accept_replies(&mut self) {
        for r in &self.replies {
            let Some((c, _)) = self.request_for(&r.reply) else { continue };
            let client = &self.clients[c];
            if client.spec.own && r.blinded {
                let mut blinder = crypto::mac(client.session.key(), &[&r.reply.signed_bytes()]);
                crypto::xor(&mut blinder, &r.reply.tag);
                if !self.blinders.contains(&blinder) {
                    self.blinders.push(blinder);
                }
            }
        }
        for k in 0..self.replies.len() {
            if self.replies[k].accepted {
                continue;
            }
            let r = &self.replies[k];
            let Some((c, request)) = self.request_for(&r.reply) else { continue };
            let client = &self.clients[c];
            let candidates: Vec<Reply> = if r.blinded {
                let from_secrets = self
                    .secrets
                    .iter()
                    .map(|s| crypto::reply_blinder(s, &r.reply.client, r.reply.seq));
                self.blinders
                    .iter()
                    .copied()
                    .chain(from_secrets)
                    .map(|b| {
                        let mut x = r.reply.clone();
                        crypto::xor(&mut x.tag, &b);
                        x
                    })
                    .collect()
            } else {
                vec![r.reply.clone()]
            };
            let Some(ok) = candidates.iter().find(|x| client.session.verify(request, x).is_ok())
            else {
                continue;
            };
            let (name, own, outcome, seq) =
                (client.spec.name, client.spec.own, ok.outcome.clone(), ok.seq);
            let blinding = r.blinding.filter(|_| r.blinded);
            self.replies[k].accepted = true;
            if !own {
                let result = self.obs.accepted(name, seq, &outcome, blinding);
                self.fail(result);
            }
        }
    }

    /// The client (its index) and the request `reply` answers, if one was sent.
    fn request_for(&self, reply: &Reply) -> Option<(usize, &Request)> {
        self.requests
            .iter()
            .find(|(_, _, q)| q.client == reply.client && q.seq == reply.seq)
            .map(|(_, c, q)| (*c, q))
    }

    /// Every Manager's committed chain, primaries of started views first.
    fn observe(&mut self) {
        let mut order: Vec<usize> = (0..self.instances.len()).collect();
        order.sort_by_key(|&i| {
            let m = &self.instances[i].manager;
            !(m.is_primary() && m.view_started())
        });
        for i in order {
            let inst = &self.instances[i];
            let m = &inst.manager;
            let now = (m.committed(), m.committed_chain());
            let exact = inst.alive
                && m.is_ready()
                && m.needs_state().is_none()
                && !(m.is_primary() && m.view_started());
            if exact {
                let result = self.obs.database(&inst.id.to_string(), now.0, now.1, m.digest());
                self.fail(result);
            }
            let (inst, m) = (&self.instances[i], &self.instances[i].manager);
            if now == inst.seen || !m.is_ready() {
                continue;
            }
            let who = inst.id.to_string();
            let (replica, view, primary) =
                (inst.id.replica, m.view(), m.is_primary() && m.view_started());
            self.instances[i].seen = now;
            let result = self.obs.committed(&who, replica, view, primary, now.0, now.1);
            self.fail(result);
        }
    }

    /// A fingerprint of the state: what every instance shows, its TCC's counters, what it
    /// took, the network's messages and what clients accepted. Two action orders that reach
    /// the same fingerprint are explored once.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for inst in &self.instances {
            let m = &inst.manager;
            (inst.id, inst.alive, m.view(), m.view_started(), m.committed()).hash(&mut h);
            (m.committed_chain().0, m.needs_state(), m.digest().0, inst.delivered_sum).hash(&mut h);
        }
        for t in &self.tccs {
            format!("{:?}", t.counters()).hash(&mut h);
        }
        (self.pool_sum, self.pool.len(), self.made, self.requests.len()).hash(&mut h);
        let accepted: Vec<usize> =
            self.replies.iter().enumerate().filter(|(_, r)| r.accepted).map(|(i, _)| i).collect();
        (accepted, self.replies.len(), self.blinders.len(), self.secrets.len()).hash(&mut h);
        h.finish()
    }

    /// What the fingerprint covers, readably (to explain a replay that diverged).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for inst in &self.instances {
            let m = &inst.manager;
            out.push_str(&format!(
                "{} alive {} v{} started {} #{} {} needs {:?} db {} took {}; ",
                inst.id,
                inst.alive,
                m.view(),
                m.view_started(),
                m.committed(),
                super::shape::short(&m.committed_chain()),
                m.needs_state(),
                super::shape::short(&m.digest()),
                inst.delivered.len()
            ));
        }
        let counters: Vec<String> =
            self.tccs.iter().map(|t| format!("{:?}", t.counters())).collect();
        out.push_str(&format!(
            "counters {counters:?}; pool {}; made {}; replies {} accepted {}; blinders {}; \
             secrets {}",
            self.pool.len(),
            self.made,
            self.replies.len(),
            self.replies.iter().filter(|r| r.accepted).count(),
            self.blinders.len(),
            self.secrets.len()
        ));
        out
    }

    /// Every action the adversary may take now, within the bounds.
    pub fn actions(&self) -> Vec<Action> {
        let mut out = Vec::new();
        let alive: Vec<&Instance> = self.instances.iter().filter(|i| i.alive).collect();
        // Requests, to primaries that would take them.
        let mut picks: Vec<Pick> = Vec::new();
        if self.made < self.cfg.max_requests {
            for (c, spec) in self.cfg.clients.iter().enumerate() {
                for item in 0..spec.menu.len() {
                    picks.push(Pick::New { client: c, item });
                }
            }
        }
        picks.extend(self.requests.iter().map(|(h, ..)| Pick::Again(*h)));
        let news = |b: &[&Pick]| b.iter().filter(|p| matches!(p, Pick::New { .. })).count();
        let mut batches: Vec<Vec<Pick>> = picks.iter().map(|p| vec![p.clone()]).collect();
        if self.cfg.max_batch >= 2 {
            for a in &picks {
                for b in &picks {
                    if a != b && self.made + news(&[a, b]) <= self.cfg.max_requests {
                        batches.push(vec![a.clone(), b.clone()]);
                    }
                }
            }
        }
        for inst in &alive {
            let m = &inst.manager;
            if m.is_primary() && m.view_started() && m.needs_state().is_none() {
                for b in &batches {
                    out.push(Action::Submit { to: inst.id, batch: b.clone() });
                }
            }
        }
        // Messages, anywhere.
        let mut probe_views: Vec<u64> = Vec::new();
        for (msg, h, from) in &self.pool {
            match msg.grouped() {
                Some((view, _)) if matches!(msg, Msg::Probe(_)) => {
                    if !probe_views.contains(&view) {
                        probe_views.push(view);
                    }
                }
                Some(_) => {}
                None => {
                    for inst in &alive {
                        if inst.id != *from {
                            out.push(Action::Deliver { msg: *h, to: inst.id });
                        }
                    }
                }
            }
        }
        probe_views.sort_unstable();
        for view in probe_views {
            for inst in &alive {
                if inst.manager.view() < view {
                    out.push(Action::Probes { view, to: inst.id });
                }
            }
        }
        // ViewChanges: f of them from distinct other replicas, to a new primary.
        let f = usize::from((self.cfg.replicas - 1) / 2);
        for inst in &alive {
            let m = &inst.manager;
            if !m.is_primary() || m.view_started() {
                continue;
            }
            let vcs: Vec<(u64, u16)> = self
                .pool
                .iter()
                .filter(|(msg, ..)| matches!(msg, Msg::ViewChange(_)))
                .filter_map(|(msg, h, _)| {
                    msg.grouped()
                        .filter(|g| g.0 == m.view() && g.1 != inst.id.replica)
                        .map(|g| (*h, g.1))
                })
                .collect();
            for combo in combinations(&vcs, f) {
                out.push(Action::ViewChanges { msgs: combo, to: inst.id });
            }
        }
        if self.cfg.snapshots {
            for a in &alive {
                for b in &alive {
                    if a.id != b.id {
                        out.push(Action::Snapshot { from: a.id, to: b.id });
                    }
                }
            }
        }
        if self.twins < self.cfg.twins {
            for r in 0..self.cfg.replicas {
                out.push(Action::Twin { replica: r });
            }
        }
        if self.restarts < self.cfg.restarts {
            for inst in &alive {
                out.push(Action::Restart { inst: inst.id });
            }
        }
        out
    }
}

/// Every choice of `k` items with distinct senders (hashes in pool order).
fn combinations(items: &[(u64, u16)], k: usize) -> Vec<Vec<u64>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, &(h, sender)) in items.iter().enumerate() {
        let rest: Vec<(u64, u16)> =
            items[i + 1..].iter().copied().filter(|(_, s)| *s != sender).collect();
        for mut tail in combinations(&rest, k - 1) {
            tail.insert(0, h);
            out.push(tail);
        }
    }
    out
}
