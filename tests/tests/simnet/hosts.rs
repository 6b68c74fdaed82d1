//! Byzantine hosts: the untrusted software around a correct TCC. A hostile host can do
//! anything with the messages its replica sends and receives, and with what it stores — but it
//! holds no key. Each behaviour here counts its host's replica as one of the f faulty ones.

use std::sync::Arc;

use vpr_proto::msg::{Ack, Message, Probe, StateRequest, Value};

use crate::world::{Node, Rng};

/// What a hostile host does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byz {
    /// Changes fields of the messages it sends (re-encoded, so they decode).
    Tamper,
    /// Sends old messages again, at random times, to random replicas.
    Replay,
    /// As primary host: sends some backups a different update than others.
    Equivocate,
    /// Changes the outcomes of replies, or sends them to the wrong client.
    ForgeReplies,
    /// Never sends its replica's Acks.
    WithholdAcks,
    /// Acknowledges every update it sees with a forged Ack.
    FakeAcks,
    /// At restart, hands the TCC an altered sealed blob, then another replica's.
    StaleSeal,
    /// Sends garbage and well-formed nonsense to everyone.
    Flood,
}

pub const ALL: [Byz; 8] = [
    Byz::Tamper,
    Byz::Replay,
    Byz::Equivocate,
    Byz::ForgeReplies,
    Byz::WithholdAcks,
    Byz::FakeAcks,
    Byz::StaleSeal,
    Byz::Flood,
];

/// One replica's host.
#[derive(Clone, Debug, Default)]
pub struct Host {
    pub me: u16,
    pub byz: Vec<Byz>,
    /// Messages it sent (for replays), newest last.
    sent: Vec<(Node, Arc<[u8]>)>,
    /// Hostile actions taken.
    pub actions: u64,
}

const REMEMBERED: usize = 256;

impl Host {
    pub fn hostile(me: u16, byz: Vec<Byz>) -> Host {
        Host { me, byz, ..Host::default() }
    }

    fn has(&self, b: Byz) -> bool {
        self.byz.contains(&b)
    }

    /// What the host really sends when its runtime sends `bytes` to `to`.
    pub fn outgoing(
        &mut self,
        rng: &mut Rng,
        to: Node,
        bytes: Arc<[u8]>,
        _n: u16,
        clients: usize,
    ) -> Vec<(Node, Arc<[u8]>)> {
        if self.byz.is_empty() {
            return vec![(to, bytes)];
        }
        if self.has(Byz::Replay) {
            self.sent.push((to.clone(), bytes.clone()));
            if self.sent.len() > REMEMBERED {
                self.sent.remove(0);
            }
        }
        let Ok(message) = Message::decode(&bytes) else { return vec![(to, bytes)] };
        match message {
            Message::Ack(_) if self.has(Byz::WithholdAcks) => {
                self.actions += 1;
                Vec::new()
            }
            Message::Update(mut u) if self.has(Byz::Equivocate) && rng.chance(50) => {
                // Another update under the same header: other pages, other entries.
                self.actions += 1;
                match u.state.pages.first_mut().and_then(|p| p.data.first_mut()) {
                    Some(b) => *b ^= 0x5a,
                    None => u.entries.clear(),
                }
                u.seq = u.seq.wrapping_add(u64::from(rng.chance(30)));
                vec![(to, Message::Update(u).encode().into())]
            }
            Message::Reply(mut r) if self.has(Byz::ForgeReplies) && rng.chance(30) => {
                self.actions += 1;
                if rng.chance(50) && clients > 1 {
                    // Someone else's reply.
                    let other = rng.index(clients);
                    return vec![(Node::Client(other), bytes)];
                }
                match r.outcome.results.first_mut().and_then(|s| s.rows.first_mut()) {
                    Some(row) => row.push(Value::Integer(7)),
                    None => r.state = r.state.wrapping_add(1),
                }
                vec![(to, Message::Reply(r).encode().into())]
            }
            message if self.has(Byz::Tamper) && rng.chance(30) => {
                self.actions += 1;
                vec![(to, tamper(rng, message).encode().into())]
            }
            _ => vec![(to, bytes)],
        }
    }

    /// What the host does on its own when a message arrives for its replica.
    pub fn incoming(&mut self, from: &Node, bytes: &[u8]) -> Vec<(Node, Arc<[u8]>)> {
        if !self.has(Byz::FakeAcks) {
            return Vec::new();
        }
        let (Node::Replica(p), Ok(Message::Update(u))) = (from, Message::decode(bytes)) else {
            return Vec::new();
        };
        self.actions += 1;
        let ack =
            Ack { replica: self.me, view: u.view, seq: u.seq, chain: u.chain(), tag: [0x42; 32] };
        vec![(Node::Replica(*p), Message::Ack(ack).encode().into())]
    }

    /// What the host does on its own schedule, every millisecond.
    pub fn spontaneous(&mut self, rng: &mut Rng, n: u16, clients: usize) -> Vec<(Node, Arc<[u8]>)> {
        let mut out = Vec::new();
        if self.has(Byz::Replay) && !self.sent.is_empty() && rng.chance(5) {
            self.actions += 1;
            let (to, bytes) = self.sent[rng.index(self.sent.len())].clone();
            let to = if rng.chance(50) { Node::Replica(random_peer(rng, n)) } else { to };
            out.push((to, bytes));
        }
        if self.has(Byz::Flood) && rng.chance(10) {
            self.actions += 1;
            let to = if clients > 0 && rng.chance(20) {
                Node::Client(rng.index(clients))
            } else {
                Node::Replica(random_peer(rng, n))
            };
            let bytes: Vec<u8> = match rng.below(4) {
                0 => {
                    (0..rng.below(200)).map(|_| u8::try_from(rng.below(256)).unwrap_or(0)).collect()
                }
                1 => Message::Probe(Probe {
                    replica: random_peer(rng, n),
                    view: rng.below(50),
                    tag: [1; 32],
                })
                .encode(),
                2 => Message::StateRequest(StateRequest { replica: self.me, at_least: 0 }).encode(),
                _ => {
                    let ack = Ack {
                        replica: self.me,
                        view: rng.below(5),
                        seq: rng.below(100),
                        chain: vpr_proto::digest::Digest([3; 32]),
                        tag: [4; 32],
                    };
                    Message::Ack(ack).encode()
                }
            };
            out.push((to, bytes.into()));
        }
        out
    }
}

fn random_peer(rng: &mut Rng, n: u16) -> u16 {
    u16::try_from(rng.below(u64::from(n))).unwrap_or(0)
}

/// Changes one authenticated field of a message.
fn tamper(rng: &mut Rng, message: Message) -> Message {
    let bump = |x: u64| x.wrapping_add(1);
    match message {
        Message::Request(mut m) => {
            m.seq = bump(m.seq);
            Message::Request(m)
        }
        Message::Reply(mut m) => {
            m.view = bump(m.view);
            Message::Reply(m)
        }
        Message::Welcome(mut m) => {
            m.view = bump(m.view);
            Message::Welcome(m)
        }
        Message::Update(mut m) => {
            if rng.chance(50) {
                m.view = bump(m.view);
            } else {
                m.seq = bump(m.seq);
            }
            Message::Update(m)
        }
        Message::Ack(mut m) => {
            m.seq = bump(m.seq);
            Message::Ack(m)
        }
        Message::Commit(mut m) => {
            m.seq = bump(m.seq);
            Message::Commit(m)
        }
        Message::Probe(mut m) => {
            m.view = bump(m.view);
            Message::Probe(m)
        }
        Message::ViewChange(mut m) => {
            m.committed = bump(m.committed);
            Message::ViewChange(m)
        }
        Message::NewView(mut m) => {
            m.first = bump(m.first);
            Message::NewView(m)
        }
        Message::Snapshot(mut m) => {
            match m.state.pages.last_mut().and_then(|p| p.data.last_mut()) {
                Some(b) => *b ^= 1,
                None => m.seq = bump(m.seq),
            }
            Message::Snapshot(m)
        }
        Message::StatusReport(mut m) => {
            m.committed = bump(m.committed);
            Message::StatusReport(m)
        }
        Message::AckInit(mut m) => {
            m.tag[0] ^= 1;
            Message::AckInit(m)
        }
        Message::Join(mut m) => {
            m.public_key[10] ^= 1;
            Message::Join(m)
        }
        Message::Accept(mut m) => {
            m.genesis.0[0] ^= 1;
            Message::Accept(m)
        }
        other => other,
    }
}
