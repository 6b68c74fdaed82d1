//! The replica runtimes (sans-IO U-Managers over simulated TCCs) on a simulated network with a
//! seeded scheduler, after raft-rs' harness: messages are dropped, duplicated, delayed and
//! reordered, in virtual time. Every message crosses as bytes (the real encoding). Clients
//! retransmit; at the end the network heals and every replica must hold the same database, every
//! client must have accepted a verified reply to each request, and each write must have taken
//! effect exactly once.

use std::sync::Arc;

use rand_core::OsRng;
use tempfile::TempDir;
use vpr_host::config::{ClusterConfig, ReplicaEntry, Timeouts};
use vpr_host::replica::{Output, Replica, Source};
use vpr_host::tcc::simulation::{simulated_identity, Manufacturer, Simulation};
use vpr_host::tcc::TccBackend;
use vpr_pal::{GroupConfig, ServiceOptions};
use vpr_proto::client::{Pending, Session, Trust};
use vpr_proto::msg::{Message, Request, Value};

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, Debug)]
struct Faults {
    drop: u64,
    duplicate: u64,
    max_delay_ms: u64,
    /// Percent of messages with one bit flipped in transit (a Byzantine network or host).
    corrupt: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Replica(u16),
    Client(usize),
}

struct Packet {
    at: u64,
    from: Node,
    to: Node,
    bytes: Arc<[u8]>,
    /// Whether the network altered it.
    corrupted: bool,
}

struct SimClient {
    pending: Option<Pending>,
    session: Option<Session>,
    /// Requests to make, in order; the current one and when it was last sent.
    script: Vec<String>,
    next: usize,
    current: Option<(Request, u64)>,
    accepted: Vec<(String, vpr_proto::msg::Outcome)>,
}

struct World {
    replicas: Vec<Replica<Simulation>>,
    clients: Vec<SimClient>,
    trust: Trust,
    net: Vec<Packet>,
    rng: Rng,
    now: u64,
    faults: Faults,
    /// Replicas that crashed (stopped: they neither receive, send nor tick), and when.
    crash_at: Vec<(u16, u64)>,
    /// Messages corrupted in transit, and replies the clients refused.
    corrupted: u64,
    refused_replies: u64,
    _dir: TempDir,
}

const RETRY_MS: u64 = 300;

impl World {
    fn new(n: u16, seed: u64, faults: Faults, scripts: Vec<Vec<String>>) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let manufacturer = Manufacturer::generate();
        let config = ClusterConfig {
            name: format!("simnet-{seed}"),
            replicas: (0..n).map(|id| ReplicaEntry { id, address: format!("sim:{id}") }).collect(),
            identity: simulated_identity().to_string(),
            manufacturer: hex::encode(manufacturer.public()),
            allow_simulated: true,
            // Formation waits for every Join (no replica is down here): a replica that misses
            // formation can only come back through state transfer, which is not built yet.
            timeouts: Timeouts {
                request_ms: 300,
                request_attempts: 100,
                retransmit_ms: 50,
                join_ms: 60_000,
                heartbeat_ms: 100,
                view_change_ms: 1_000,
                view_change_max_ms: 8_000,
            },
            max_in_flight: 8,
            max_batch: 16,
            simulation_manufacturer_key: None,
        };
        let replicas = (0..n)
            .map(|id| {
                let group = GroupConfig {
                    replicas: n,
                    me: id,
                    manufacturer: manufacturer.public(),
                    allow_simulated: true,
                    cluster: config.cluster_id(),
                    max_in_flight: config.max_in_flight,
                    service: ServiceOptions::default(),
                };
                let backend =
                    Simulation::start(&dir.path().join(format!("r{id}")), &manufacturer, group)
                        .expect("replica");
                Replica::new(backend, &config, id)
            })
            .collect();
        let clients = scripts
            .into_iter()
            .map(|script| SimClient {
                pending: None,
                session: None,
                script,
                next: 0,
                current: None,
                accepted: Vec::new(),
            })
            .collect();
        World {
            replicas,
            clients,
            trust: config.trust().expect("trust"),
            net: Vec::new(),
            rng: Rng(seed.max(1)),
            now: 0,
            faults,
            crash_at: Vec::new(),
            corrupted: 0,
            refused_replies: 0,
            _dir: dir,
        }
    }

    fn crashed(&self, r: u16) -> bool {
        self.crash_at.iter().any(|(c, at)| *c == r && self.now >= *at)
    }

    fn send(&mut self, from: Node, to: Node, bytes: Arc<[u8]>) {
        if self.rng.chance(self.faults.drop) {
            return;
        }
        let corrupted = self.rng.chance(self.faults.corrupt) && !bytes.is_empty();
        let bytes = if corrupted {
            let mut flipped = bytes.to_vec();
            let bit = self.rng.below(u64::try_from(flipped.len() * 8).unwrap_or(1));
            let byte = usize::try_from(bit / 8).unwrap_or(0);
            flipped[byte] ^= 1 << (bit % 8);
            self.corrupted += 1;
            Arc::from(flipped)
        } else {
            bytes
        };
        let copies = if self.rng.chance(self.faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + 1 + self.rng.below(self.faults.max_delay_ms + 1);
            self.net.push(Packet {
                at,
                from: from.clone(),
                to: to.clone(),
                bytes: bytes.clone(),
                corrupted,
            });
        }
    }

    fn route(&mut self, from: u16, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Replica(r, bytes) => {
                    self.send(Node::Replica(from), Node::Replica(r), bytes)
                }
                Output::Client(route, bytes) => {
                    let c = usize::from(route[0]);
                    self.send(Node::Replica(from), Node::Client(c), bytes);
                }
                Output::Persist(_) => {}
            }
        }
    }

    /// Clients: say hello, then send each request of their script until a verified reply.
    fn drive_clients(&mut self) {
        for c in 0..self.clients.len() {
            let client = &mut self.clients[c];
            let mut to_send = None;
            match (&mut client.session, &mut client.current) {
                (None, current) => {
                    if current.as_ref().is_none_or(|(_, at)| self.now >= at + RETRY_MS) {
                        let pending = Pending::new(&mut OsRng);
                        to_send = Some(Message::ClientHello(pending.hello().clone()).encode());
                        client.pending = Some(pending);
                        // `current` times the hello's retries until a session exists.
                        *current = Some((dummy_request(), self.now));
                    }
                }
                (Some(_), Some((request, at))) => {
                    if self.now >= *at + RETRY_MS {
                        *at = self.now;
                        to_send = Some(Message::Request(request.clone()).encode());
                    }
                }
                (Some(session), current) => {
                    if client.next < client.script.len() {
                        let request =
                            session.request(client.script[client.next].clone(), Vec::new());
                        to_send = Some(Message::Request(request.clone()).encode());
                        *current = Some((request, self.now));
                    }
                }
            }
            if let Some(bytes) = to_send {
                self.send(Node::Client(c), Node::Replica(0), bytes.into());
            }
        }
    }

    fn deliver_to_client(&mut self, c: usize, bytes: &[u8], corrupted: bool) {
        let Ok(message) = Message::decode(bytes) else {
            assert!(corrupted, "a replica sent undecodable bytes");
            return;
        };
        let trust = self.trust.clone();
        let refused = &mut self.refused_replies;
        let client = &mut self.clients[c];
        match message {
            Message::Welcome(w) if client.session.is_none() => {
                if let Some(pending) = client.pending.take() {
                    // A Welcome for an older hello fails to open: wait for the next one.
                    if let Ok(session) = pending.finish(&w, &trust) {
                        client.session = Some(session);
                        client.current = None;
                    }
                }
            }
            Message::Reply(reply) => {
                let (Some(session), Some((request, _))) = (&client.session, &client.current) else {
                    return;
                };
                if reply.seq != request.seq {
                    return; // a duplicate of an earlier reply
                }
                let Ok(outcome) = session.verify(request, &reply) else {
                    // Only a network that corrupts may deliver a reply that does not verify.
                    assert!(corrupted, "an unaltered reply failed verification");
                    *refused += 1;
                    return;
                };
                client.accepted.push((request.sql.clone(), outcome.clone()));
                client.current = None;
                client.next += 1;
            }
            _ => {}
        }
    }

    fn step(&mut self) {
        self.now += 1;
        self.drive_clients();
        // Deliver everything due, in a shuffled order (reordering).
        let mut due: Vec<Packet> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= self.now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        for k in (1..due.len()).rev() {
            let j = usize::try_from(self.rng.below(u64::try_from(k).unwrap_or(0) + 1)).unwrap_or(0);
            due.swap(k, j);
        }
        for p in due {
            match p.to {
                Node::Client(c) => self.deliver_to_client(c, &p.bytes, p.corrupted),
                Node::Replica(r) if self.crashed(r) => {}
                Node::Replica(r) => {
                    let Ok(message) = Message::decode(&p.bytes) else {
                        assert!(p.corrupted, "an unaltered message did not decode");
                        continue;
                    };
                    let from = match p.from {
                        Node::Replica(f) => Source::Replica(f),
                        Node::Client(c) => {
                            Source::Client(vec![u8::try_from(c).expect("few clients")])
                        }
                    };
                    let out = self.replicas[usize::from(r)].receive(from, message, self.now);
                    self.route(r, out);
                }
            }
        }
        for r in 0..self.replicas.len() {
            let id = u16::try_from(r).expect("few replicas");
            if self.crashed(id) {
                continue;
            }
            let mut out = self.replicas[r].flush(self.now);
            out.extend(self.replicas[r].tick(self.now));
            self.route(id, out);
        }
    }

    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.next == c.script.len())
    }
}

fn dummy_request() -> Request {
    Request {
        client: [0; 16],
        seq: 0,
        sql: String::new(),
        params: Vec::<Value>::new(),
        tag: [0; 32],
    }
}

fn scripts(clients: usize, writes: usize) -> Vec<Vec<String>> {
    (0..clients)
        .map(|c| {
            let mut s = vec![format!("CREATE TABLE IF NOT EXISTS log(client, i, r)")];
            for i in 0..writes {
                s.push(format!("INSERT INTO log VALUES ({c}, {i}, random())"));
                if i % 3 == 2 {
                    s.push(format!("SELECT count(*) FROM log WHERE client = {c}"));
                }
            }
            s
        })
        .collect()
}

/// Runs one scenario; returns (messages corrupted, replies refused by clients).
fn run(n: u16, seed: u64, faults: Faults) -> (u64, u64) {
    run_with(n, seed, faults, Vec::new())
}

/// Runs one scenario in which the replicas in `crash_at` stop at the given virtual times.
fn run_with(n: u16, seed: u64, faults: Faults, crash_at: Vec<(u16, u64)>) -> (u64, u64) {
    let (clients, writes) = (3, 12);
    let mut w = World::new(n, seed, faults, scripts(clients, writes));
    w.crash_at = crash_at;
    let limit = 60_000;
    while !w.done() && w.now < limit {
        w.step();
    }
    if !w.done() {
        let statuses: Vec<_> = w.replicas.iter().map(|r| r.backend().status()).collect();
        let clients: Vec<_> = w
            .clients
            .iter()
            .map(|c| (c.session.is_some(), c.next, c.current.as_ref().map(|(r, _)| r.seq)))
            .collect();
        panic!(
            "seed {seed}: clients unfinished after {limit} virtual ms: {statuses:?} {clients:?}"
        );
    }
    // Heal, let retransmissions and commits settle.
    w.faults = Faults { drop: 0, duplicate: 0, max_delay_ms: 0, corrupt: 0 };
    for _ in 0..2_000 {
        w.step();
    }
    // Crashed replicas keep the state they had; the live ones must agree.
    let statuses: Vec<_> = (0..n)
        .filter(|r| !w.crashed(*r))
        .map(|r| w.replicas[usize::from(r)].backend().status())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| s.digest == statuses[0].digest && s.committed == statuses[0].committed),
        "seed {seed}: replicas diverged at {} (crashes {:?}): {statuses:?}",
        w.now,
        w.crash_at
    );
    // Each client's reads saw its own writes, and every write took effect exactly once.
    for (c, client) in w.clients.iter().enumerate() {
        let mut writes_seen = 0;
        for (sql, outcome) in &client.accepted {
            assert!(outcome.error.is_none(), "seed {seed}: {sql}: {:?}", outcome.error);
            if sql.starts_with("INSERT") {
                writes_seen += 1;
            } else if sql.starts_with("SELECT") {
                assert_eq!(
                    outcome.results[0].rows[0][0],
                    Value::Integer(writes_seen),
                    "seed {seed} client {c}"
                );
            }
        }
    }
    for client in &w.clients {
        let last = client.accepted.last().expect("replies");
        assert_eq!(
            last.1.results[0].rows[0][0],
            Value::Integer(i64::try_from(writes).expect("small"))
        );
    }
    (w.corrupted, w.refused_replies)
}

/// Seeds per scenario: `VPR_SIM_SEEDS` (for long runs), else a few for every test run.
fn seeds(default: u64) -> u64 {
    std::env::var("VPR_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn converges_under_drops_duplicates_and_reordering() {
    let n = seeds(6);
    for seed in 1..=n {
        run(3, seed, Faults { drop: 10, duplicate: 10, max_delay_ms: 20, corrupt: 0 });
    }
    eprintln!("simnet: {n} seeded runs, 3 replicas, 10% drops, 10% duplicates, 0-20 ms delays");
}

#[test]
fn five_replicas_converge_under_a_lossy_network() {
    let n = seeds(3);
    for seed in 100_000..100_000 + n {
        run(5, seed, Faults { drop: 15, duplicate: 5, max_delay_ms: 30, corrupt: 0 });
    }
    eprintln!("simnet: {n} seeded runs, 5 replicas, 15% drops, 5% duplicates, 0-30 ms delays");
}

#[test]
fn a_perfect_network_needs_no_retransmission_to_converge() {
    run(3, 7, Faults { drop: 0, duplicate: 0, max_delay_ms: 0, corrupt: 0 });
}

/// Bits flipped anywhere in any message (requests, replies, updates, acks, commits, joins,
/// accepts, welcomes): every altered message is refused where it arrives, clients accept only
/// verified replies, and the replicas still converge with each write applied once.
#[test]
fn a_corrupting_network_changes_nothing_but_speed() {
    let n = seeds(4);
    let (mut corrupted, mut refused) = (0, 0);
    for seed in 200_000..200_000 + n {
        let (c, r) = run(3, seed, Faults { drop: 5, duplicate: 5, max_delay_ms: 10, corrupt: 8 });
        corrupted += c;
        refused += r;
    }
    assert!(corrupted > 0, "the network corrupted nothing");
    eprintln!("simnet: {n} seeded runs with {corrupted} corrupted messages; clients refused {refused} replies");
}

/// Up to f backups crash at random moments (during formation or under load): the service
/// keeps committing and every live replica converges.
#[test]
fn f_backups_crashing_mid_run_do_not_stop_the_service() {
    let n = seeds(4);
    for seed in 300_000..300_000 + n {
        let mut rng = Rng(seed);
        let at = |rng: &mut Rng| 50 + rng.below(3_000);
        run_with(
            3,
            seed,
            Faults { drop: 5, duplicate: 5, max_delay_ms: 10, corrupt: 0 },
            vec![(2, at(&mut rng))],
        );
        let crashes = vec![(3, at(&mut rng)), (4, at(&mut rng))];
        run_with(5, seed, Faults { drop: 5, duplicate: 5, max_delay_ms: 10, corrupt: 0 }, crashes);
    }
    eprintln!("simnet: {n} seeded runs each with 1 of 3 and 2 of 5 backups crashing");
}
