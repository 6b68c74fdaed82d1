//! Everything the explorer knows about the shapes of calls, effects and messages, in one
//! place: when the protocol's messages gain fields or its effects change, this is the module
//! to adapt. Elsewhere messages are opaque (hashed by their canonical encoding).

use vpr_pal::{Call, Effect};
use vpr_proto::crypto::Key;
use vpr_proto::digest::Digest;
use vpr_proto::msg::{Ack, Commit, NewView, Probe, Reply, Snapshot, Update, ViewChange, Wire};

/// A message between replicas, as the adversary keeps it.
#[derive(Clone, Debug)]
pub enum Msg {
    /// Primary to backups.
    Update(Update),
    /// Backup to primary.
    Ack(Ack),
    /// Primary to backups.
    Commit(Commit),
    /// To every replica.
    Probe(Probe),
    /// To the new primary.
    ViewChange(ViewChange),
    /// New primary to backups.
    NewView(NewView),
    /// State transfer.
    Snapshot(Box<Snapshot>),
}

impl Msg {
    /// The canonical encoding (what identifies a message).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Msg::Update(m) => m.to_bytes(),
            Msg::Ack(m) => m.to_bytes(),
            Msg::Commit(m) => m.to_bytes(),
            Msg::Probe(m) => m.to_bytes(),
            Msg::ViewChange(m) => m.to_bytes(),
            Msg::NewView(m) => m.to_bytes(),
            Msg::Snapshot(m) => m.to_bytes(),
        }
    }

    /// The call that hands this message to a Manager (Probes and ViewChanges go in groups).
    pub fn call(&self) -> Call {
        match self {
            Msg::Update(m) => Call::Update(m.clone()),
            Msg::Ack(m) => Call::Ack(m.clone()),
            Msg::Commit(m) => Call::Commit(m.clone()),
            Msg::Probe(_) | Msg::ViewChange(_) => group_call(&[self]),
            Msg::NewView(m) => Call::NewView(m.clone()),
            Msg::Snapshot(m) => Call::Snapshot(m.clone()),
        }
    }

    /// A short description for traces.
    pub fn describe(&self) -> String {
        match self {
            Msg::Update(u) => format!(
                "Update(v{} #{} {} entries, chain {})",
                u.view,
                u.seq,
                u.entries.len(),
                short(&u.chain())
            ),
            Msg::Ack(a) => {
                format!("Ack(r{} v{} #{} {})", a.replica, a.view, a.seq, short(&a.chain))
            }
            Msg::Commit(c) => format!("Commit(v{} #{} {})", c.view, c.seq, short(&c.chain)),
            Msg::Probe(p) => format!("Probe(r{} v{})", p.replica, p.view),
            Msg::ViewChange(vc) => format!(
                "ViewChange(r{} v{} committed #{} held {:?})",
                vc.replica,
                vc.view,
                vc.committed,
                vc.held
                    .iter()
                    .map(|h| format!(
                        "v{}#{}@{}",
                        h.update.view,
                        h.update.seq,
                        accepted(h.accepted)
                    ))
                    .collect::<Vec<_>>()
            ),
            Msg::NewView(nv) => format!(
                "NewView(v{} base #{} head #{} {})",
                nv.view,
                nv.base,
                nv.head(),
                short(&nv.chain_at(nv.head()).unwrap_or(nv.base_chain))
            ),
            Msg::Snapshot(s) => {
                format!("Snapshot(r{} v{} #{} {})", s.replica, s.view, s.seq, short(&s.chain))
            }
        }
    }

    /// The view of a Probe or ViewChange and its sender (they are delivered in groups).
    pub fn grouped(&self) -> Option<(u64, u16)> {
        match self {
            Msg::Probe(p) => Some((p.view, p.replica)),
            Msg::ViewChange(vc) => Some((vc.view, vc.replica)),
            _ => None,
        }
    }

    /// The updates a message carries (for the map of chain hashes).
    pub fn updates(&self) -> Vec<&Update> {
        match self {
            Msg::Update(u) => vec![u],
            Msg::ViewChange(vc) => vc.held.iter().map(|h| &h.update).collect(),
            _ => Vec::new(),
        }
    }

    /// An Ack: (replica, seq, chain): that replica held the update.
    pub fn ack(&self) -> Option<(u16, u64, Digest)> {
        match self {
            Msg::Ack(a) => Some((a.replica, a.seq, a.chain)),
            _ => None,
        }
    }

    /// A NewView: (view, head, head chain): the chain the new view starts from.
    pub fn new_view(&self) -> Option<(u64, u64, Digest)> {
        match self {
            Msg::NewView(nv) => {
                Some((nv.view, nv.head(), nv.chain_at(nv.head()).unwrap_or(nv.base_chain)))
            }
            _ => None,
        }
    }
}

/// The call that hands a group of Probes or ViewChanges to a Manager at once.
pub fn group_call(msgs: &[&Msg]) -> Call {
    let probes: Vec<Probe> = msgs
        .iter()
        .filter_map(|m| if let Msg::Probe(p) = m { Some(p.clone()) } else { None })
        .collect();
    if !probes.is_empty() {
        return Call::Probes(probes);
    }
    Call::ViewChanges(
        msgs.iter()
            .filter_map(|m| if let Msg::ViewChange(vc) = m { Some(vc.clone()) } else { None })
            .collect(),
    )
}

/// A ViewChange's accepted view, for traces.
fn accepted(view: u64) -> String {
    if view == vpr_proto::msg::Held::APPLIED {
        String::from("applied")
    } else {
        format!("v{view}")
    }
}

/// The first bytes of a digest, for traces.
pub fn short(d: &Digest) -> String {
    d.as_bytes()[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// What one effect means to the adversary.
#[derive(Debug)]
pub enum Routed {
    /// A message into the network.
    Msg(Msg),
    /// A reply for a client, blinded until update `blinded_until` if set.
    Reply {
        /// The reply.
        reply: Reply,
        /// The update it waits for.
        blinded_until: Option<u64>,
    },
    /// An update's blinding secret, released at its commit.
    Secret(Key),
    /// A sealed blob.
    Sealed(Vec<u8>),
    /// A refusal.
    Refused(String),
    /// Nothing the adversary uses (host hints).
    Other,
}

/// The one place that maps a Manager's effects to what the adversary holds.
pub fn route(effect: Effect) -> Routed {
    match effect {
        Effect::Update(m) => Routed::Msg(Msg::Update(m)),
        Effect::Ack(m) => Routed::Msg(Msg::Ack(m)),
        Effect::Commit(m) => Routed::Msg(Msg::Commit(m)),
        Effect::Probe(m) => Routed::Msg(Msg::Probe(m)),
        Effect::ViewChange(m) => Routed::Msg(Msg::ViewChange(m)),
        Effect::NewView(m) => Routed::Msg(Msg::NewView(m)),
        Effect::Snapshot(m) => Routed::Msg(Msg::Snapshot(m)),
        Effect::Reply { reply, blinded_until } => Routed::Reply { reply, blinded_until },
        Effect::Release { secret, .. } => Routed::Secret(secret),
        Effect::Sealed(blob) => Routed::Sealed(blob),
        Effect::Refused(why) => Routed::Refused(why),
        _ => Routed::Other,
    }
}
