//! The interface between an untrusted host (the U-Manager) and the trusted Manager of V-PR:
//! the [`Call`]s the host makes, the [`Effect`]s the Manager answers, the [`Group`]
//! configuration a Manager starts with and the [`Status`] it reports.
//!
//! The simulation backend hands these values to the Manager in-process; a PAL image behind
//! the hypervisor receives them encoded inside [`pal_io`](crate::pal_io) commands and
//! outcomes, whose header carries the format version. The Manager itself (`vpr_pal::Manager`)
//! lives in the PAL crate; this module only says what crosses the boundary, so that a driver
//! can depend on this crate alone.
//!
//! # Encoding
//!
//! Every type here implements [`Wire`]: fields as in [`msg`](crate::msg) (integers
//! little-endian, a `bool` one byte 0 or 1, an `Option` a tag byte 0 or 1 and the item, a byte
//! string or a string a `u32` length and the bytes, a `Vec` a `u32` count and the items), and
//! every protocol message by its own [`Wire`] encoding. There is no header: the encodings are
//! embedded in [`pal_io`](crate::pal_io) messages, which carry one. The encoding is canonical:
//! `decode(encode(x)) == x` (reals compared by their bits) and every accepted byte string
//! re-encodes to itself.
//!
//! A [`Call`] or an [`Effect`] is a tag byte, then the variant's fields in declaration order:
//!
//! | tag | [`Call`]            | fields                                            |
//! |----:|---------------------|---------------------------------------------------|
//! |   1 | `Join`              | none                                              |
//! |   2 | `Joins`             | `joins`: `Vec<`[`Join`]`>`; `require_all`: `bool` |
//! |   3 | `Accept`            | [`Accept`]                                        |
//! |   4 | `AckInit`           | [`AckInit`]                                       |
//! |   5 | `Hello`             | [`ClientHello`]                                   |
//! |   6 | `Requests`          | `Vec<`[`Request`]`>`                              |
//! |   7 | `Update`            | [`Update`]                                        |
//! |   8 | `Ack`               | [`Ack`]                                           |
//! |   9 | `Commit`            | [`Commit`]                                        |
//! |  10 | `Status`            | [`StatusRequest`]                                 |
//! |  11 | `Suspect`           | none                                              |
//! |  12 | `Probes`            | `Vec<`[`Probe`]`>`                                |
//! |  13 | `ViewChanges`       | `Vec<`[`ViewChange`]`>`                           |
//! |  14 | `NewView`           | [`NewView`]                                       |
//! |  15 | `Heartbeat`         | none                                              |
//! |  16 | `MakeSnapshot`      | none                                              |
//! |  17 | `Snapshot`          | [`Snapshot`]                                      |
//! |  18 | `Persisted`         | `index`: `u64`                                    |
//! |  19 | `Checkpoint`        | none                                              |
//!
//! | tag | [`Effect`]     | fields                                                  |
//! |----:|----------------|---------------------------------------------------------|
//! |   1 | `Join`         | [`Join`]                                                |
//! |   2 | `Accept`       | [`Accept`]                                              |
//! |   3 | `InvalidJoins` | `Vec<u16>` (replica ids)                                |
//! |   4 | `AckInit`      | [`AckInit`]                                             |
//! |   5 | `Ready`        | none                                                    |
//! |   6 | `Welcome`      | [`Welcome`]                                             |
//! |   7 | `Update`       | [`Update`]                                              |
//! |   8 | `Ack`          | [`Ack`]                                                 |
//! |   9 | `Commit`       | [`Commit`]                                              |
//! |  10 | `Reply`        | `reply`: [`Reply`]; `blinded_until`: `Option<u64>`      |
//! |  11 | `Release`      | `seq`: `u64`; `secret`: 32 bytes                        |
//! |  12 | `Status`       | [`StatusReport`]                                        |
//! |  13 | `Probe`        | [`Probe`]                                               |
//! |  14 | `ViewChange`   | [`ViewChange`]                                          |
//! |  15 | `NewView`      | [`NewView`]                                             |
//! |  16 | `Snapshot`     | [`Snapshot`]                                            |
//! |  17 | `Sealed`       | byte string                                             |
//! |  18 | `Behind`       | `committed`: `u64`                                      |
//! |  19 | `NeedState`    | `replica`: `u16`; `committed`: `u64`                    |
//! |  20 | `Refused`      | string                                                  |
//! |  21 | `Persist`      | `index`: `u64`; `checkpoint`: `bool`; `record`: byte string |
//!
//! A [`Group`] is `replicas` (`u16`), `me` (`u16`), `manufacturer` (65 bytes),
//! `allow_simulated` (`bool`), `cluster` (32 bytes), `max_in_flight` (`u32`), `page_size`
//! (`Option<u32>`), `max_sql_bytes` (`u32`), `max_vm_steps` (`Option<u64>`), `members`
//! (`Vec` of 65-byte TCC keys, by replica id), `durable` (`bool`): 117 to 129 bytes and 65 a
//! member. A [`Status`] is `ready` (`bool`), `view` (`u64`), `primary` (`u16`), `started`
//! (`bool`), `committed` (`u64`), `needs_state` (`Option<u64>`), `digest` (32 bytes),
//! `stopped` (`bool`).
//!
//! # Limits
//!
//! Decoders refuse more than [`MAX_REPLICAS`] Joins, Probes, ViewChanges or invalid Joins,
//! more than [`MAX_BATCH`] requests, a sealed blob over [`MAX_SEALED_BYTES`], a reason over
//! [`MAX_REASON_BYTES`], and whatever the messages' own decoders refuse. Every count is
//! checked against the bytes left before anything is allocated, and no decoder panics.
//! Encoders check nothing: a producer keeps a refusal's reason within the limit with
//! [`clip_utf8`](crate::pal_io::clip_utf8).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use crate::crypto::{Key, PublicKey};
use crate::digest::Digest;
use crate::hypercall::pal;
use crate::msg::codec::{
    get_bool, get_bytes, get_digest, get_string, get_vec_with, put_bytes, put_len,
};
use crate::msg::{
    Accept, Ack, AckInit, ClientHello, Commit, Join, NewView, Probe, ReplicaId, Reply, Request,
    Snapshot, StatusReport, StatusRequest, Update, ViewChange, Welcome, Wire, MAX_BATCH,
    MAX_MESSAGE_BYTES, MAX_REPLICAS,
};
use crate::wire::{DecodeError, Reader, Writer};

/// Longest sealed blob an [`Effect::Sealed`] (or a restart) carries: the most the
/// hypervisor seals at once and its overhead.
pub const MAX_SEALED_BYTES: usize = 4096 + 28;
/// Longest record an [`Effect::Persist`] (or a restart) carries: a checkpoint holds the whole
/// database as a state update, and its framing.
pub const MAX_RECORD_BYTES: usize = crate::update::MAX_UPDATE_BYTES + (1 << 20);
/// Longest reason of an [`Effect::Refused`].
pub const MAX_REASON_BYTES: usize = MAX_MESSAGE_BYTES;

const _: () = assert!(MAX_SEALED_BYTES as u64 == pal::MAX_SEAL_LEN + pal::SEAL_OVERHEAD);

/// Smallest encodings of the items of a vector, to refuse a count the input cannot hold
/// before allocating (checked against real encodings by the tests).
const MIN_ATTESTATION_LEN: usize = 1 + 32 + 32 + 65 + 64 + 64;
const MIN_JOIN_LEN: usize = 2 + 65 + MIN_ATTESTATION_LEN;
const MIN_REQUEST_LEN: usize = 16 + 8 + 1 + 4 + 4 + 32;
const MIN_PROBE_LEN: usize = 2 + 8 + 32;
const MIN_VIEW_CHANGE_LEN: usize = 2 + 8 + 8 + 32 + 4 + 32;
const REPLICA_ID_LEN: usize = 2;
/// Smallest encoding of an [`Effect`] (its tag alone).
pub(crate) const MIN_EFFECT_LEN: usize = 1;

/// A request from the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// Backup: start initialization (make a Join).
    Join,
    /// Primary: the Joins gathered so far; answer with an Accept. With `require_all`, form
    /// the group only if every backup's Join verifies (else [`Effect::InvalidJoins`]); without,
    /// with at least f valid ones.
    Joins {
        /// The Joins.
        joins: Vec<Join>,
        /// Whether every backup must be in.
        require_all: bool,
    },
    /// Backup: the primary's Accept.
    Accept(Box<Accept>),
    /// Primary: a backup's AckInit.
    AckInit(AckInit),
    /// A client's key exchange.
    Hello(Box<ClientHello>),
    /// Primary: a batch of client requests (execution 1).
    Requests(Vec<Request>),
    /// Backup: an update from the primary.
    Update(Update),
    /// Primary: a backup's acknowledgement (execution 2).
    Ack(Ack),
    /// Backup: the primary's commit notice.
    Commit(Commit),
    /// Any replica: a client asks for this replica's status.
    Status(StatusRequest),
    /// Backup: the primary seems silent (the host's timeout); propose the next view.
    Suspect,
    /// The Probes gathered for the next view (this replica's own included).
    Probes(Vec<Probe>),
    /// New primary: the ViewChanges gathered for its view (its own included).
    ViewChanges(Vec<ViewChange>),
    /// Backup: the new primary's announcement.
    NewView(NewView),
    /// Primary: time passed; say what is committed, so backups know the primary is alive.
    Heartbeat,
    /// Another replica needs state: make a snapshot of the committed state.
    MakeSnapshot,
    /// A snapshot from another replica: adopt it if it is newer than the state here.
    Snapshot(Box<Snapshot>),
    /// The record [`Effect::Persist`] asked for is on this replica's disk (written and
    /// flushed) up to and including `index`: the Manager raises its trusted log counter to it
    /// and hands out the effects it held back.
    Persisted {
        /// The record's number.
        index: u64,
    },
    /// Write a checkpoint: the whole committed state in one record, so that the records
    /// before it are no longer needed for a restart.
    Checkpoint,
}

/// Something the host must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send to one replica.
    Join(Join),
    /// Send to every backup.
    Accept(Accept),
    /// These Joins do not verify (altered, or from another group): drop them and wait for
    /// those replicas to send again.
    InvalidJoins(Vec<ReplicaId>),
    /// Send to the primary.
    AckInit(AckInit),
    /// The group is formed (primary) or this backup joined it.
    Ready,
    /// Send to the client that said hello.
    Welcome(Welcome),
    /// Send to every backup.
    Update(Update),
    /// Send to the primary.
    Ack(Ack),
    /// Send to every backup.
    Commit(Commit),
    /// A reply for a client. If `blinded_until` is set, its tag is blinded: hold it until
    /// the [`Effect::Release`] of that update, XOR the reply's blinder
    /// ([`reply_blinder`](crate::crypto::reply_blinder) of the released secret, the client
    /// and the sequence number) into the tag, then send.
    Reply {
        /// The reply.
        reply: Reply,
        /// The update it waits for.
        blinded_until: Option<u64>,
    },
    /// Update `seq` (and every one before it) is committed; its blinding secret unblinds
    /// the replies held for it, each with a blinder of its own.
    Release {
        /// The update.
        seq: u64,
        /// The update's blinding secret, kept in the TCC until now.
        secret: Key,
    },
    /// Send to the client that asked.
    Status(StatusReport),
    /// Send to every replica.
    Probe(Probe),
    /// Send to the primary of the new view (this replica itself, maybe).
    ViewChange(ViewChange),
    /// Send to every backup.
    NewView(NewView),
    /// Send to the replica that asked for state.
    Snapshot(Box<Snapshot>),
    /// Store this blob (sealed to this PAL) and hand it back at restart.
    Sealed(Vec<u8>),
    /// This replica misses committed updates up to at least `committed`: retransmissions or a
    /// snapshot from another replica must bring it there.
    Behind {
        /// The highest update known to be committed.
        committed: u64,
    },
    /// New primary: the view can start only once this replica has the state `replica`
    /// reported (committed up to `committed`): get a snapshot, then pass the ViewChanges again.
    NeedState {
        /// The replica with the highest committed state.
        replica: ReplicaId,
        /// Its last committed update.
        committed: u64,
    },
    /// Input refused (bad MAC, stale, malformed...); nothing changed.
    Refused(String),
    /// Append `record` to this replica's log on its disk, make it durable (fsync), then call
    /// [`Call::Persisted`] with `index`: until then the Manager refuses every other call and
    /// holds back every effect of the call that made the record. A `checkpoint` record holds
    /// the whole state: a restart needs it and the records after it only.
    Persist {
        /// The record's number (consecutive from 1).
        index: u64,
        /// Whether the record is a checkpoint.
        checkpoint: bool,
        /// The record, encrypted and authenticated by the TCC.
        record: Vec<u8>,
    },
}

/// A group's configuration as it crosses the boundary: every field of the PAL's
/// `GroupConfig` and of its service options (`vpr_pal` converts both ways).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
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
    /// Page size of the new database (SQLite's default if `None`).
    pub page_size: Option<u32>,
    /// Longest request text, in bytes.
    pub max_sql_bytes: u32,
    /// Virtual machine instructions one request may run before it is interrupted.
    pub max_vm_steps: Option<u64>,
    /// Each replica's TCC key, by id: the key a replica's TCC attests with.
    pub members: Vec<PublicKey>,
    /// Whether the Manager keeps its state in a log on the host's disk (write-ahead, each
    /// record confirmed before the effects that depend on it leave).
    pub durable: bool,
}

/// Where a Manager stands, as its host may show it (untrusted once it left the PAL: for
/// display and for deciding what to call next, never as evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether the group is formed here.
    pub ready: bool,
    /// The current view.
    pub view: u64,
    /// The primary of that view.
    pub primary: ReplicaId,
    /// Whether that view started here (its NewView made or accepted).
    pub started: bool,
    /// The last committed (primary) or applied (backup) update.
    pub committed: u64,
    /// The Manager needs a snapshot (restarted, or an old primary) from this update on.
    pub needs_state: Option<u64>,
    /// The database digest (`vpr_pal::merkle`: a Merkle root over the file).
    pub digest: Digest,
    /// The Manager stopped for good (its TCC failed after it changed what it holds): it
    /// refuses every call until the replica restarts from its sealed state.
    pub stopped: bool,
}

/// Writes a `u32` count and each item with `put`.
fn put_each<T>(w: &mut Writer, items: &[T], put: impl Fn(&T, &mut Writer)) {
    put_len(w, items.len());
    items.iter().for_each(|item| put(item, w));
}

/// Writes an `Option`: tag byte 0, or tag byte 1 and the item.
fn put_maybe<T>(w: &mut Writer, item: Option<T>, put: impl FnOnce(&mut Writer, T)) {
    w.u8(u8::from(item.is_some()));
    if let Some(item) = item {
        put(w, item);
    }
}

/// Reads an `Option` (a tag byte 0 or 1, anything else [`DecodeError::Invalid`]).
fn get_maybe<T>(
    r: &mut Reader<'_>,
    field: &'static str,
    get: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if get_bool(r, field)? {
        get(r).map(Some)
    } else {
        Ok(None)
    }
}

fn bad_tag(field: &'static str, tag: u8) -> DecodeError {
    DecodeError::Invalid { field, value: u64::from(tag) }
}

impl Call {
    /// The tag byte of this call's encoding (1 to 19, in declaration order).
    #[must_use]
    pub const fn tag(&self) -> u8 {
        match self {
            Call::Join => 1,
            Call::Joins { .. } => 2,
            Call::Accept(_) => 3,
            Call::AckInit(_) => 4,
            Call::Hello(_) => 5,
            Call::Requests(_) => 6,
            Call::Update(_) => 7,
            Call::Ack(_) => 8,
            Call::Commit(_) => 9,
            Call::Status(_) => 10,
            Call::Suspect => 11,
            Call::Probes(_) => 12,
            Call::ViewChanges(_) => 13,
            Call::NewView(_) => 14,
            Call::Heartbeat => 15,
            Call::MakeSnapshot => 16,
            Call::Snapshot(_) => 17,
            Call::Persisted { .. } => 18,
            Call::Checkpoint => 19,
        }
    }
}

impl Wire for Call {
    fn put(&self, w: &mut Writer) {
        w.u8(self.tag());
        match self {
            Call::Join
            | Call::Suspect
            | Call::Heartbeat
            | Call::MakeSnapshot
            | Call::Checkpoint => {}
            Call::Persisted { index } => {
                w.u64(*index);
            }
            Call::Joins { joins, require_all } => {
                put_each(w, joins, Join::put);
                w.u8(u8::from(*require_all));
            }
            Call::Accept(m) => m.put(w),
            Call::AckInit(m) => m.put(w),
            Call::Hello(m) => m.put(w),
            Call::Requests(requests) => put_each(w, requests, Request::put),
            Call::Update(m) => m.put(w),
            Call::Ack(m) => m.put(w),
            Call::Commit(m) => m.put(w),
            Call::Status(m) => m.put(w),
            Call::Probes(probes) => put_each(w, probes, Probe::put),
            Call::ViewChanges(vcs) => put_each(w, vcs, ViewChange::put),
            Call::NewView(m) => m.put(w),
            Call::Snapshot(m) => m.put(w),
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => Call::Join,
            2 => {
                let joins = get_vec_with(r, "joins", MAX_REPLICAS, MIN_JOIN_LEN, Join::get)?;
                Call::Joins { joins, require_all: get_bool(r, "require_all")? }
            }
            3 => Call::Accept(Box::new(Accept::get(r)?)),
            4 => Call::AckInit(AckInit::get(r)?),
            5 => Call::Hello(Box::new(ClientHello::get(r)?)),
            6 => Call::Requests(get_vec_with(
                r,
                "requests",
                MAX_BATCH,
                MIN_REQUEST_LEN,
                Request::get,
            )?),
            7 => Call::Update(Update::get(r)?),
            8 => Call::Ack(Ack::get(r)?),
            9 => Call::Commit(Commit::get(r)?),
            10 => Call::Status(StatusRequest::get(r)?),
            11 => Call::Suspect,
            12 => Call::Probes(get_vec_with(r, "probes", MAX_REPLICAS, MIN_PROBE_LEN, Probe::get)?),
            13 => Call::ViewChanges(get_vec_with(
                r,
                "view_changes",
                MAX_REPLICAS,
                MIN_VIEW_CHANGE_LEN,
                ViewChange::get,
            )?),
            14 => Call::NewView(NewView::get(r)?),
            15 => Call::Heartbeat,
            16 => Call::MakeSnapshot,
            17 => Call::Snapshot(Box::new(Snapshot::get(r)?)),
            18 => Call::Persisted { index: r.u64()? },
            19 => Call::Checkpoint,
            tag => return Err(bad_tag("call tag", tag)),
        })
    }
}

impl Effect {
    /// The tag byte of this effect's encoding (1 to 21, in declaration order).
    #[must_use]
    pub const fn tag(&self) -> u8 {
        match self {
            Effect::Join(_) => 1,
            Effect::Accept(_) => 2,
            Effect::InvalidJoins(_) => 3,
            Effect::AckInit(_) => 4,
            Effect::Ready => 5,
            Effect::Welcome(_) => 6,
            Effect::Update(_) => 7,
            Effect::Ack(_) => 8,
            Effect::Commit(_) => 9,
            Effect::Reply { .. } => 10,
            Effect::Release { .. } => 11,
            Effect::Status(_) => 12,
            Effect::Probe(_) => 13,
            Effect::ViewChange(_) => 14,
            Effect::NewView(_) => 15,
            Effect::Snapshot(_) => 16,
            Effect::Sealed(_) => 17,
            Effect::Behind { .. } => 18,
            Effect::NeedState { .. } => 19,
            Effect::Refused(_) => 20,
            Effect::Persist { .. } => 21,
        }
    }
}

impl Wire for Effect {
    fn put(&self, w: &mut Writer) {
        w.u8(self.tag());
        match self {
            Effect::Ready => {}
            Effect::Join(m) => m.put(w),
            Effect::Accept(m) => m.put(w),
            Effect::InvalidJoins(ids) => put_each(w, ids, |id, w| {
                w.u16(*id);
            }),
            Effect::AckInit(m) => m.put(w),
            Effect::Welcome(m) => m.put(w),
            Effect::Update(m) => m.put(w),
            Effect::Ack(m) => m.put(w),
            Effect::Commit(m) => m.put(w),
            Effect::Reply { reply, blinded_until } => {
                reply.put(w);
                put_maybe(w, *blinded_until, |w, seq| {
                    w.u64(seq);
                });
            }
            Effect::Release { seq, secret } => {
                w.u64(*seq).bytes(secret);
            }
            Effect::Status(m) => m.put(w),
            Effect::Probe(m) => m.put(w),
            Effect::ViewChange(m) => m.put(w),
            Effect::NewView(m) => m.put(w),
            Effect::Snapshot(m) => m.put(w),
            Effect::Sealed(blob) => put_bytes(w, blob),
            Effect::Behind { committed } => {
                w.u64(*committed);
            }
            Effect::NeedState { replica, committed } => {
                w.u16(*replica).u64(*committed);
            }
            Effect::Refused(reason) => put_bytes(w, reason.as_bytes()),
            Effect::Persist { index, checkpoint, record } => {
                w.u64(*index).u8(u8::from(*checkpoint));
                put_bytes(w, record);
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => Effect::Join(Join::get(r)?),
            2 => Effect::Accept(Accept::get(r)?),
            3 => Effect::InvalidJoins(get_vec_with(
                r,
                "invalid_joins",
                MAX_REPLICAS,
                REPLICA_ID_LEN,
                |r| r.u16(),
            )?),
            4 => Effect::AckInit(AckInit::get(r)?),
            5 => Effect::Ready,
            6 => Effect::Welcome(Welcome::get(r)?),
            7 => Effect::Update(Update::get(r)?),
            8 => Effect::Ack(Ack::get(r)?),
            9 => Effect::Commit(Commit::get(r)?),
            10 => {
                let reply = Reply::get(r)?;
                let blinded_until = get_maybe(r, "blinded_until", |r| r.u64())?;
                Effect::Reply { reply, blinded_until }
            }
            11 => Effect::Release { seq: r.u64()?, secret: r.array()? },
            12 => Effect::Status(StatusReport::get(r)?),
            13 => Effect::Probe(Probe::get(r)?),
            14 => Effect::ViewChange(ViewChange::get(r)?),
            15 => Effect::NewView(NewView::get(r)?),
            16 => Effect::Snapshot(Box::new(Snapshot::get(r)?)),
            17 => Effect::Sealed(get_sealed(r)?),
            18 => Effect::Behind { committed: r.u64()? },
            19 => Effect::NeedState { replica: r.u16()?, committed: r.u64()? },
            20 => Effect::Refused(get_string(r, "reason", MAX_REASON_BYTES)?),
            21 => Effect::Persist {
                index: r.u64()?,
                checkpoint: get_bool(r, "checkpoint")?,
                record: get_bytes(r, "record", MAX_RECORD_BYTES)?.to_vec(),
            },
            tag => return Err(bad_tag("effect tag", tag)),
        })
    }
}

/// Reads a sealed blob: a byte string of at most [`MAX_SEALED_BYTES`].
pub(crate) fn get_sealed(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    get_bytes(r, "sealed", MAX_SEALED_BYTES).map(<[u8]>::to_vec)
}

impl Wire for Group {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replicas).u16(self.me).bytes(&self.manufacturer);
        w.u8(u8::from(self.allow_simulated)).bytes(&self.cluster).u32(self.max_in_flight);
        put_maybe(w, self.page_size, |w, size| {
            w.u32(size);
        });
        w.u32(self.max_sql_bytes);
        put_maybe(w, self.max_vm_steps, |w, steps| {
            w.u64(steps);
        });
        put_each(w, &self.members, |key, w| {
            w.bytes(key);
        });
        w.u8(u8::from(self.durable));
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Group {
            replicas: r.u16()?,
            me: r.u16()?,
            manufacturer: r.array()?,
            allow_simulated: get_bool(r, "allow_simulated")?,
            cluster: r.array()?,
            max_in_flight: r.u32()?,
            page_size: get_maybe(r, "page_size", |r| r.u32())?,
            max_sql_bytes: r.u32()?,
            max_vm_steps: get_maybe(r, "max_vm_steps", |r| r.u64())?,
            members: get_vec_with(
                r,
                "members",
                MAX_REPLICAS,
                core::mem::size_of::<PublicKey>(),
                |r| r.array(),
            )?,
            durable: get_bool(r, "durable")?,
        })
    }
}

impl Wire for Status {
    fn put(&self, w: &mut Writer) {
        w.u8(u8::from(self.ready)).u64(self.view).u16(self.primary);
        w.u8(u8::from(self.started)).u64(self.committed);
        put_maybe(w, self.needs_state, |w, at| {
            w.u64(at);
        });
        w.bytes(self.digest.as_bytes());
        w.u8(u8::from(self.stopped));
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Status {
            ready: get_bool(r, "ready")?,
            view: r.u64()?,
            primary: r.u16()?,
            started: get_bool(r, "started")?,
            committed: r.u64()?,
            needs_state: get_maybe(r, "needs_state", |r| r.u64())?,
            digest: get_digest(r)?,
            stopped: get_bool(r, "stopped")?,
        })
    }
}

/// Longest encoding of a [`Status`] (with `needs_state`).
pub(crate) const MAX_STATUS_LEN: usize = 1 + 8 + 2 + 1 + 8 + 9 + 32 + 1;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::client::Session;
    use crate::crypto::{self, Key, KeyPair};
    use crate::msg::{
        Attestation, Entry, Held, KeyGrant, Outcome, ReadLevel, SqlError, StatementResult, Value,
    };
    use crate::update::{PageWrite, StateUpdate};
    use alloc::vec;

    const K: Key = [0x4b; 32];

    fn keys(n: u8) -> KeyPair {
        KeyPair::from_secret(&[n; 32]).expect("a valid scalar")
    }

    fn attest(data: &[u8]) -> Attestation {
        let manufacturer = keys(1);
        let tcc = keys(2);
        let certificate = manufacturer.sign(&Attestation::certificate_bytes(true, &tcc.public()));
        Attestation::make(&tcc, certificate, true, Digest::of(b"pal image"), Digest::of(data))
    }

    fn join(replica: ReplicaId) -> Join {
        let public_key = keys(10 + u8::try_from(replica).unwrap()).public();
        Join { replica, public_key, attestation: attest(&public_key) }
    }

    fn accept() -> Accept {
        let ephemeral = keys(20);
        let grants = [1, 2]
            .into_iter()
            .map(|replica| KeyGrant {
                replica,
                sealed_key: ephemeral.seal_to(&join(replica).public_key, b"grant", &K).unwrap(),
            })
            .collect();
        let mut accept = Accept {
            config: Digest::of(b"config"),
            genesis: Digest::of(b"genesis"),
            ephemeral: ephemeral.public(),
            grants,
            attestation: attest(b""),
        };
        accept.attestation = attest(&accept.signed_bytes());
        accept
    }

    fn ack_init() -> AckInit {
        let accept = Digest::of(&accept().to_bytes());
        AckInit { replica: 2, accept, tag: crypto::mac(&K, &[b"vpr ackinit", accept.as_bytes()]) }
    }

    fn session() -> Session {
        Session::resume([5; 16], [6; 32], 1)
    }

    fn requests() -> Vec<Request> {
        let mut session = session();
        vec![
            session.request(
                String::from("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)"),
                vec![
                    Value::Null,
                    Value::Integer(-7),
                    Value::Real(-0.0),
                    Value::Text(Vec::from("h\u{e9}".as_bytes())),
                    Value::Blob(vec![0, 0xff]),
                ],
            ),
            session.request_at(ReadLevel::Primary, String::from("SELECT * FROM t"), Vec::new()),
            session.request(String::new(), Vec::new()),
        ]
    }

    /// A valid state update: 512-byte pages of a 1300-byte file, `pages` of its 3.
    fn state(pages: &[u32], fill: u8) -> StateUpdate {
        let pages = pages
            .iter()
            .map(|&index| PageWrite { index, data: vec![fill; if index == 2 { 276 } else { 512 }] })
            .collect();
        StateUpdate { page_size: 512, file_size: 1300, pages }
    }

    fn update(seq: u64) -> Update {
        let request = &requests()[0];
        let entries =
            vec![Entry { client: request.client, seq, request: Digest::of(&request.to_bytes()) }];
        let mut update = Update {
            view: 1,
            seq,
            prev: Digest::of(b"chain"),
            entries,
            state: state(&[0, 2], 0x5a),
            tag: [0; 32],
        };
        update.tag = crypto::mac(&K, &[b"vpr update", update.chain().as_bytes()]);
        update
    }

    fn ack() -> Ack {
        Ack { replica: 1, view: 1, seq: 3, chain: update(3).chain(), tag: [0xac; 32] }
    }

    fn commit() -> Commit {
        Commit { view: 1, seq: 3, chain: update(3).chain(), tag: [0xc0; 32] }
    }

    fn probe(replica: ReplicaId) -> Probe {
        let mut probe = Probe { replica, view: 2, tag: [0; 32] };
        probe.tag = crypto::mac(&K, &[&probe.signed_bytes()]);
        probe
    }

    fn view_change(replica: ReplicaId, held: Vec<Update>) -> ViewChange {
        let committed_chain = update(2).chain();
        let held = held.into_iter().map(|update| Held { accepted: 1, update }).collect();
        let mut vc =
            ViewChange { replica, view: 2, committed: 2, committed_chain, held, tag: [0; 32] };
        vc.tag = crypto::mac(&K, &[&vc.signed_bytes()]);
        vc
    }

    fn new_view() -> NewView {
        let (base_chain, chains) = (update(2).chain(), vec![update(3).chain()]);
        let mut nv = NewView { view: 2, base: 2, base_chain, first: 3, chains, tag: [0; 32] };
        nv.tag = crypto::mac(&K, &[&nv.signed_bytes()]);
        nv
    }

    fn snapshot() -> Snapshot {
        let mut snapshot = Snapshot {
            replica: 2,
            view: 2,
            seq: 3,
            chain: update(3).chain(),
            state: state(&[0, 1, 2], 0x33),
            tag: [0; 32],
        };
        snapshot.tag = crypto::mac(&K, &[&snapshot.signed_bytes()]);
        snapshot
    }

    fn reply() -> Reply {
        let outcome = Outcome {
            results: vec![
                StatementResult {
                    columns: vec![String::from("a"), String::from("b")],
                    rows: vec![
                        vec![Value::Integer(1), Value::Real(1.5)],
                        vec![Value::Text(b"x".to_vec()), Value::Null],
                    ],
                    changes: 0,
                },
                StatementResult { columns: Vec::new(), rows: Vec::new(), changes: 3 },
            ],
            error: Some(SqlError { code: 2067, message: String::from("UNIQUE constraint failed") }),
        };
        let mut reply = Reply {
            client: [5; 16],
            seq: 1,
            request: Digest([0x7e; 32]),
            view: 1,
            state: 3,
            outcome,
            tag: [0; 32],
        };
        reply.tag = crypto::mac(&[6; 32], &[&reply.signed_bytes()]);
        reply
    }

    /// Every call, some twice (empty and full vectors).
    pub(crate) fn calls() -> Vec<Call> {
        vec![
            Call::Join,
            Call::Joins { joins: vec![join(1), join(2)], require_all: true },
            Call::Joins { joins: Vec::new(), require_all: false },
            Call::Accept(Box::new(accept())),
            Call::AckInit(ack_init()),
            Call::Hello(Box::new(ClientHello { public_key: keys(30).public(), nonce: [3; 32] })),
            Call::Requests(requests()),
            Call::Requests(Vec::new()),
            Call::Update(update(3)),
            Call::Ack(ack()),
            Call::Commit(commit()),
            Call::Status(session().status_request([7; 32])),
            Call::Suspect,
            Call::Probes(vec![probe(0), probe(2)]),
            Call::ViewChanges(vec![view_change(1, vec![update(3)]), view_change(2, Vec::new())]),
            Call::NewView(new_view()),
            Call::Heartbeat,
            Call::MakeSnapshot,
            Call::Snapshot(Box::new(snapshot())),
            Call::Persisted { index: u64::MAX },
            Call::Checkpoint,
        ]
    }

    /// Every effect, some twice.
    pub(crate) fn effects() -> Vec<Effect> {
        let welcome = Welcome {
            client: [5; 16],
            config: Digest([0xc0; 32]),
            view: 1,
            ephemeral: keys(40).public(),
            sealed_key: keys(40).seal_to(&keys(30).public(), b"welcome", &[6; 32]).unwrap(),
            attestation: attest(b"welcome"),
        };
        let mut report = StatusReport {
            replica: 1,
            view: 2,
            primary: 2,
            committed: 3,
            digest: Digest::of(b"file"),
            nonce: [7; 32],
            tag: [0; 32],
        };
        report.tag = crypto::mac(&[6; 32], &[&report.signed_bytes()]);
        vec![
            Effect::Join(join(1)),
            Effect::Accept(accept()),
            Effect::InvalidJoins(vec![1, 2]),
            Effect::InvalidJoins(Vec::new()),
            Effect::AckInit(ack_init()),
            Effect::Ready,
            Effect::Welcome(welcome),
            Effect::Update(update(4)),
            Effect::Ack(ack()),
            Effect::Commit(commit()),
            Effect::Reply { reply: reply(), blinded_until: Some(3) },
            Effect::Reply { reply: reply(), blinded_until: None },
            Effect::Release { seq: 3, secret: [0xb1; 32] },
            Effect::Status(report),
            Effect::Probe(probe(1)),
            Effect::ViewChange(view_change(1, vec![update(3), update(4)])),
            Effect::NewView(new_view()),
            Effect::Snapshot(Box::new(snapshot())),
            Effect::Sealed(vec![0xee; 95]),
            Effect::Sealed(Vec::new()),
            Effect::Behind { committed: 9 },
            Effect::NeedState { replica: 2, committed: 9 },
            Effect::Refused(String::from("update: bad authenticator \u{1f600}")),
            Effect::Refused(String::new()),
            Effect::Persist { index: 7, checkpoint: true, record: vec![0xaa; 300] },
            Effect::Persist { index: 1, checkpoint: false, record: Vec::new() },
        ]
    }

    pub(crate) fn groups() -> Vec<Group> {
        vec![
            Group {
                replicas: 3,
                me: 1,
                manufacturer: keys(1).public(),
                allow_simulated: true,
                cluster: [0xc1; 32],
                max_in_flight: 16,
                page_size: Some(4096),
                max_sql_bytes: 1 << 20,
                max_vm_steps: Some(1 << 32),
                members: vec![keys(2).public(), keys(3).public(), keys(4).public()],
                durable: true,
            },
            Group {
                replicas: u16::MAX,
                me: 0,
                manufacturer: [0; 65],
                allow_simulated: false,
                cluster: [0; 32],
                max_in_flight: u32::MAX,
                page_size: None,
                max_sql_bytes: 0,
                max_vm_steps: None,
                members: Vec::new(),
                durable: false,
            },
        ]
    }

    pub(crate) fn statuses() -> Vec<Status> {
        vec![
            Status {
                ready: true,
                view: 2,
                primary: 2,
                started: true,
                committed: 3,
                needs_state: None,
                digest: Digest::of(b"file"),
                stopped: false,
            },
            Status {
                ready: false,
                view: u64::MAX,
                primary: u16::MAX,
                started: false,
                committed: 0,
                needs_state: Some(u64::MAX),
                digest: Digest::default(),
                stopped: true,
            },
        ]
    }

    /// Every encoding the tests start from.
    fn encodings() -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = calls().iter().map(Wire::to_bytes).collect();
        all.extend(effects().iter().map(Wire::to_bytes));
        all.extend(groups().iter().map(Wire::to_bytes));
        all.extend(statuses().iter().map(Wire::to_bytes));
        all
    }

    fn round_trip<T: Wire + PartialEq + core::fmt::Debug>(x: &T) -> Vec<u8> {
        let bytes = x.to_bytes();
        let back = T::from_bytes(&bytes).unwrap_or_else(|e| panic!("{x:?}: {e}"));
        assert_eq!(&back, x);
        assert_eq!(back.to_bytes(), bytes, "canonical: {x:?}");
        bytes
    }

    #[test]
    fn every_call_round_trips_canonically() {
        let mut tags = Vec::new();
        for call in calls() {
            let bytes = round_trip(&call);
            assert_eq!(bytes[0], call.tag());
            tags.push(call.tag());
        }
        tags.dedup();
        assert_eq!(tags, (1..=19).collect::<Vec<u8>>(), "every variant, in tag order");
    }

    #[test]
    fn every_effect_round_trips_canonically() {
        let mut tags = Vec::new();
        for effect in effects() {
            let bytes = round_trip(&effect);
            assert_eq!(bytes[0], effect.tag());
            tags.push(effect.tag());
        }
        tags.dedup();
        assert_eq!(tags, (1..=21).collect::<Vec<u8>>(), "every variant, in tag order");
    }

    #[test]
    fn groups_and_statuses_round_trip() {
        let lens: Vec<usize> = groups().iter().map(|g| round_trip(g).len()).collect();
        assert_eq!(lens, [125 + 4 + 3 * 65, 113 + 4]);
        let lens: Vec<usize> = statuses().iter().map(|s| round_trip(s).len()).collect();
        assert_eq!(lens, [MAX_STATUS_LEN - 8, MAX_STATUS_LEN]);
    }

    #[test]
    fn reals_keep_their_bits() {
        let Call::Requests(requests) =
            Call::from_bytes(&Call::Requests(requests()).to_bytes()).expect("decodes")
        else {
            panic!("tag changed")
        };
        let Value::Real(x) = requests[0].params[2] else { panic!("value changed") };
        assert_eq!(x.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn minimal_items_match_the_allocation_bounds() {
        let request = Request {
            client: [0; 16],
            seq: 0,
            level: ReadLevel::Linearizable,
            sql: String::new(),
            params: Vec::new(),
            tag: [0; 32],
        };
        assert_eq!(request.to_bytes().len(), MIN_REQUEST_LEN);
        assert_eq!(join(1).to_bytes().len(), MIN_JOIN_LEN);
        assert_eq!(attest(b"").to_bytes().len(), MIN_ATTESTATION_LEN);
        assert_eq!(probe(1).to_bytes().len(), MIN_PROBE_LEN);
        assert_eq!(view_change(1, Vec::new()).to_bytes().len(), MIN_VIEW_CHANGE_LEN);
        assert_eq!(Effect::Ready.to_bytes().len(), MIN_EFFECT_LEN);
        assert_eq!(Effect::InvalidJoins(vec![7]).to_bytes().len(), 1 + 4 + REPLICA_ID_LEN);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for call in calls() {
            let bytes = call.to_bytes();
            for end in 0..bytes.len() {
                assert!(Call::from_bytes(&bytes[..end]).is_err(), "{call:?} prefix {end}");
            }
        }
        for effect in effects() {
            let bytes = effect.to_bytes();
            for end in 0..bytes.len() {
                assert!(Effect::from_bytes(&bytes[..end]).is_err(), "{effect:?} prefix {end}");
            }
        }
        for bytes in groups().iter().map(Wire::to_bytes) {
            assert!((0..bytes.len()).all(|end| Group::from_bytes(&bytes[..end]).is_err()));
        }
        for bytes in statuses().iter().map(Wire::to_bytes) {
            assert!((0..bytes.len()).all(|end| Status::from_bytes(&bytes[..end]).is_err()));
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        for mut bytes in calls().iter().map(Wire::to_bytes) {
            bytes.push(0);
            assert_eq!(Call::from_bytes(&bytes), Err(DecodeError::TrailingBytes(1)));
        }
        for mut bytes in effects().iter().map(Wire::to_bytes) {
            bytes.push(0);
            assert_eq!(Effect::from_bytes(&bytes), Err(DecodeError::TrailingBytes(1)));
        }
        for mut bytes in groups().iter().map(Wire::to_bytes) {
            bytes.push(0);
            assert_eq!(Group::from_bytes(&bytes), Err(DecodeError::TrailingBytes(1)));
        }
        for mut bytes in statuses().iter().map(Wire::to_bytes) {
            bytes.push(0);
            assert_eq!(Status::from_bytes(&bytes), Err(DecodeError::TrailingBytes(1)));
        }
    }

    fn invalid(field: &'static str, value: u64) -> Result<(), DecodeError> {
        Err(DecodeError::Invalid { field, value })
    }

    #[test]
    fn bad_tags_bools_and_strings_are_refused() {
        for tag in [0, 20, 0x80, 0xff] {
            assert_eq!(Call::from_bytes(&[tag]).map(drop), invalid("call tag", tag.into()));
        }
        for tag in [0, 22, 0x80, 0xff] {
            assert_eq!(Effect::from_bytes(&[tag]).map(drop), invalid("effect tag", tag.into()));
        }
        let mut bad = Call::Joins { joins: Vec::new(), require_all: true }.to_bytes();
        *bad.last_mut().unwrap() = 2;
        assert_eq!(Call::from_bytes(&bad).map(drop), invalid("require_all", 2));
        let mut bad = Effect::Reply { reply: reply(), blinded_until: None }.to_bytes();
        *bad.last_mut().unwrap() = 2;
        assert_eq!(Effect::from_bytes(&bad).map(drop), invalid("blinded_until", 2));
        let mut bad = Effect::Refused(String::from("ab")).to_bytes();
        *bad.last_mut().unwrap() = 0xff;
        assert_eq!(Effect::from_bytes(&bad).map(drop), invalid("reason", 1));
        let good = groups()[0].to_bytes();
        let mut bad = good.clone();
        bad[69] = 2; // allow_simulated
        assert_eq!(Group::from_bytes(&bad).map(drop), invalid("allow_simulated", 2));
        let mut bad = good.clone();
        bad[106] = 3; // page_size's tag
        assert_eq!(Group::from_bytes(&bad).map(drop), invalid("page_size", 3));
        let mut bad = good;
        bad[115] = 0xff; // max_vm_steps' tag
        assert_eq!(Group::from_bytes(&bad).map(drop), invalid("max_vm_steps", 0xff));
        let good = statuses()[1].to_bytes();
        for (at, field) in [(0, "ready"), (11, "started"), (20, "needs_state"), (61, "stopped")] {
            let mut bad = good.clone();
            bad[at] = 2;
            assert_eq!(Status::from_bytes(&bad).map(drop), invalid(field, 2));
        }
    }

    /// The field a decoder of `T` finds too large in `bytes`.
    fn too_large<T: Wire>(bytes: &[u8]) -> Option<&'static str> {
        match T::from_bytes(bytes) {
            Err(DecodeError::TooLarge { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn limits_are_enforced() {
        let joins = vec![join(1); MAX_REPLICAS + 1];
        let call = Call::Joins { joins: joins[1..].to_vec(), require_all: false };
        assert!(Call::from_bytes(&call.to_bytes()).is_ok());
        let call = Call::Joins { joins, require_all: false };
        assert_eq!(too_large::<Call>(&call.to_bytes()), Some("joins"));
        let request = requests().swap_remove(1);
        let call = Call::Requests(vec![request.clone(); MAX_BATCH]);
        assert!(Call::from_bytes(&call.to_bytes()).is_ok());
        let call = Call::Requests(vec![request; MAX_BATCH + 1]);
        assert_eq!(too_large::<Call>(&call.to_bytes()), Some("requests"));
        let call = Call::Probes(vec![probe(1); MAX_REPLICAS + 1]);
        assert_eq!(too_large::<Call>(&call.to_bytes()), Some("probes"));
        let call = Call::ViewChanges(vec![view_change(1, Vec::new()); MAX_REPLICAS + 1]);
        assert_eq!(too_large::<Call>(&call.to_bytes()), Some("view_changes"));
        let effect = Effect::InvalidJoins(vec![1; MAX_REPLICAS + 1]);
        assert_eq!(too_large::<Effect>(&effect.to_bytes()), Some("invalid_joins"));
        let effect = Effect::Sealed(vec![1; MAX_SEALED_BYTES]);
        assert!(Effect::from_bytes(&effect.to_bytes()).is_ok());
        let effect = Effect::Sealed(vec![1; MAX_SEALED_BYTES + 1]);
        assert_eq!(too_large::<Effect>(&effect.to_bytes()), Some("sealed"));
        let effect = Effect::Refused("r".repeat(MAX_REASON_BYTES));
        assert!(Effect::from_bytes(&effect.to_bytes()).is_ok());
        let effect = Effect::Refused("r".repeat(MAX_REASON_BYTES + 1));
        assert_eq!(too_large::<Effect>(&effect.to_bytes()), Some("reason"));
        // The messages' own limits hold inside calls and effects.
        let mut long = requests().swap_remove(2);
        long.sql = "x".repeat(crate::msg::MAX_SQL_BYTES + 1);
        assert_eq!(too_large::<Call>(&Call::Requests(vec![long]).to_bytes()), Some("sql"));
    }

    #[test]
    fn huge_declared_counts_are_refused_before_allocating() {
        let truncated = |needed| Err(DecodeError::Truncated { needed, have: 0 });
        let big = u32::MAX.to_le_bytes();
        let calls = [
            ([2, 64, 0, 0, 0], truncated(64 * MIN_JOIN_LEN)),
            ([6, 0, 4, 0, 0], truncated(1024 * MIN_REQUEST_LEN)),
            ([12, 64, 0, 0, 0], truncated(64 * MIN_PROBE_LEN)),
            ([13, 64, 0, 0, 0], truncated(64 * MIN_VIEW_CHANGE_LEN)),
        ];
        for (bytes, expected) in calls {
            assert_eq!(Call::from_bytes(&bytes).map(drop), expected, "{bytes:?}");
        }
        let bytes = [&[2], big.as_slice()].concat();
        assert_eq!(too_large::<Call>(&bytes), Some("joins"));
        let bytes = [3, 64, 0, 0, 0];
        assert_eq!(Effect::from_bytes(&bytes).map(drop), truncated(64 * REPLICA_ID_LEN));
        for (tag, field) in [(17, "sealed"), (20, "reason")] {
            assert_eq!(too_large::<Effect>(&[&[tag], big.as_slice()].concat()), Some(field));
        }
    }

    /// Deterministic mutations of valid encodings: decoding never panics, and whatever decodes
    /// re-encodes to the same bytes.
    #[test]
    fn mutated_inputs_never_panic() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = encodings();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..4000 {
            let mut bytes = seeds[i % seeds.len()].clone();
            for _ in 0..=(next() % 4) {
                let at = usize::try_from(next() % 1_000_000).unwrap() % (bytes.len() + 1);
                match next() % 7 {
                    0 | 1 if at < bytes.len() => bytes[at] ^= 1 << (next() % 8),
                    2 if at < bytes.len() => {
                        bytes[at] =
                            [0, 0xff, 0x7f, 0x80, 1, 2][usize::from(next().to_le_bytes()[0] % 6)];
                    }
                    3 if bytes.len() > at + 4 => {
                        // A length or count field may be here: make it huge or small.
                        let v = [u32::MAX, 0x8000_0000, 0, 1, 65]
                            [usize::from(next().to_le_bytes()[0] % 5)];
                        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    4 => bytes.insert(at, next().to_le_bytes()[0]),
                    5 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            let decoded = [
                Call::from_bytes(&bytes).map(|x| x.to_bytes()),
                Effect::from_bytes(&bytes).map(|x| x.to_bytes()),
                Group::from_bytes(&bytes).map(|x| x.to_bytes()),
                Status::from_bytes(&bytes).map(|x| x.to_bytes()),
            ];
            for result in decoded {
                match result {
                    Ok(again) => {
                        assert_eq!(again, bytes);
                        accepted += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(accepted > 100 && refused > 1000, "{accepted} accepted, {refused} refused");
    }
}
