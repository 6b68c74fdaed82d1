//! The protocol's messages (docs/protocol.md): client requests and replies, initialization,
//! the normal case, and the calls between the untrusted host and the trusted Manager.
//!
//! Every message travels as a [`Message`]: a fixed header (magic, version, kind) and the
//! message's canonical encoding. Decoding never panics and checks every limit below before
//! allocating.
//!
//! # Encoding
//!
//! Every type here implements [`Wire`]. The encoding is canonical: `decode(encode(x)) == x`
//! (reals compared by their bits), and every accepted byte string re-encodes to itself,
//! `encode(decode(b)?) == b`, because no field has two spellings.
//!
//! | item                              | encoding                                         |
//! |-----------------------------------|--------------------------------------------------|
//! | `u16`, `u32`, `u64`, `i32`, `i64` | little-endian (two's complement for signed)      |
//! | `bool`                            | one byte, 0 or 1 (anything else is rejected)     |
//! | fixed arrays, [`Digest`]          | the raw bytes, no length (ids, keys, tags, ...)  |
//! | byte string (`Vec<u8>`)           | `u32` length, then the bytes                     |
//! | `String`                          | as a byte string, which must be UTF-8            |
//! | `Vec<T>`                          | `u32` count, then each item                      |
//! | `Option<T>`                       | tag byte 0 (`None`) or 1 (`Some`), then the item |
//! | [`Value`]                         | tag byte, then the payload (below)               |
//! | struct                            | its fields in declaration order                  |
//! | [`Update::state`]                 | `u32` length, then [`StateUpdate::encode`]       |
//!
//! | [`Value`]  | tag | payload                          |
//! |------------|----:|----------------------------------|
//! | `Null`     |   0 | none                             |
//! | `Integer`  |   1 | `i64`                            |
//! | `Real`     |   2 | [`f64::to_bits`] as `u64`        |
//! | `Text`     |   3 | byte string (any bytes)          |
//! | `Blob`     |   4 | byte string                      |
//!
//! Decoders enforce the limits below: [`MAX_SQL_BYTES`] for the SQL text, [`MAX_PARAMS`]
//! parameters, [`MAX_VALUE_BYTES`] for each text or blob, [`MAX_MESSAGE_BYTES`] for an error
//! message, [`MAX_REPLICAS`] key grants, [`MAX_BATCH`] entries, [`MAX_REPLY_BYTES`] for the
//! encoded [`Outcome`] of a reply, [`MAX_UPDATE_BYTES`](crate::update::MAX_UPDATE_BYTES) for an
//! embedded state update and [`MAX_WIRE_BYTES`] for a whole [`Message`]. A count is checked
//! against the input left before anything is allocated. Encoders do not check limits: a value
//! beyond them encodes to bytes that decoders reject.
//!
//! # Message header
//!
//! [`Message::encode`] prefixes the body (the encoding of the message itself) with 8 bytes:
//!
//! | offset | size | field      | value                                                    |
//! |-------:|-----:|------------|----------------------------------------------------------|
//! |      0 |    4 | `magic`    | [`WIRE_MAGIC`] = `b"VPRM"`                               |
//! |      4 |    1 | `version`  | [`WIRE_VERSION`] = 1                                     |
//! |      5 |    1 | `kind`     | see below                                                |
//! |      6 |    2 | `reserved` | `u16`, must be zero                                      |
//! |      8 |      | body       | the message; nothing may follow it                       |
//!
//! | kind | message         | kind | message     |
//! |-----:|-----------------|-----:|-------------|
//! |    1 | [`Request`]     |    6 | [`Accept`]  |
//! |    2 | [`Reply`]       |    7 | [`AckInit`] |
//! |    3 | [`ClientHello`] |    8 | [`Update`]  |
//! |    4 | [`Welcome`]     |    9 | [`Ack`]     |
//! |    5 | [`Join`]        |   10 | [`Commit`]  |
//!
//! and, for status, primary change and state transfer: 11 [`StatusRequest`], 12
//! [`StatusReport`], 13 [`Probe`], 14 [`ViewChange`], 15 [`NewView`], 16 [`StateRequest`],
//! 17 [`Snapshot`].
//!
//! # Authenticated bytes
//!
//! MACs and signatures cover a domain-separation label (raw ASCII, no length) followed by
//! encoded fields: [`Request::signed_bytes`], [`Reply::signed_bytes`],
//! [`Accept::signed_bytes`], [`Attestation::certificate_bytes`],
//! [`Attestation::signed_bytes`], and the chain hash [`Update::chain`].

use alloc::string::String;
use alloc::vec::Vec;

use crate::crypto::{PublicKey, SealedKey, Signature, Tag};
use crate::digest::Digest;
use crate::update::StateUpdate;

pub(crate) mod codec;
mod envelope;
#[cfg(test)]
mod tests;

pub use codec::{get_bytes, get_vec_with, put_bytes, put_len, Wire};
pub use envelope::{Message, MAX_WIRE_BYTES, WIRE_HEADER_LEN, WIRE_MAGIC, WIRE_VERSION};

/// A replica's index in the configuration, `0..n`.
pub type ReplicaId = u16;
/// A client's identity, chosen by the Manager that welcomed it.
pub type ClientId = [u8; 16];

/// Most replicas in a configuration.
pub const MAX_REPLICAS: usize = 64;
/// Longest SQL text in a request.
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// Most parameters in a request.
pub const MAX_PARAMS: usize = 999;
/// Longest text or blob value.
pub const MAX_VALUE_BYTES: usize = 64 << 20;
/// Largest encoded reply (all results).
pub const MAX_REPLY_BYTES: usize = 64 << 20;
/// Most requests in one batch.
pub const MAX_BATCH: usize = 1024;
/// Longest error message.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A SQL value with its storage class.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// 64-bit signed integer.
    Integer(i64),
    /// IEEE 754 double (encoded by its bits).
    Real(f64),
    /// Text, as SQLite stores it (normally UTF-8).
    Text(Vec<u8>),
    /// BLOB.
    Blob(Vec<u8>),
}

/// What one statement produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatementResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of values, one per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows changed by a write statement.
    pub changes: u64,
}

/// An SQL error as the service reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// SQLite's extended result code.
    pub code: i32,
    /// SQLite's message.
    pub message: String,
}

/// The outcome of a request: results of the statements that completed, and the error that
/// stopped it, if one did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// One result per completed statement.
    pub results: Vec<StatementResult>,
    /// The error, if any.
    pub error: Option<SqlError>,
}

/// How fresh a read must be (a request that writes nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadLevel {
    /// The reply waits until f backups confirmed, after the read ran, that its primary still
    /// leads the latest view: no later write can have been committed elsewhere (encoded 0).
    #[default]
    Linearizable,
    /// The primary answers from its committed state at once; after a partition an old
    /// primary may answer from a stale state, as in the thesis (encoded 1).
    Primary,
}

impl ReadLevel {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ReadLevel::Linearizable => 0,
            ReadLevel::Primary => 1,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(ReadLevel::Linearizable),
            1 => Some(ReadLevel::Primary),
            _ => None,
        }
    }
}

/// A client's request to the service: `<client, seq, level, sql, params>_Kc`.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Who sends it.
    pub client: ClientId,
    /// The client's sequence number (strictly increasing per client).
    pub seq: u64,
    /// How fresh the answer must be if the request turns out to be a read.
    pub level: ReadLevel,
    /// SQL text (one or more statements).
    pub sql: String,
    /// Positional parameters.
    pub params: Vec<Value>,
    /// HMAC-SHA256 under Kc over "vpr request" || the encoding of the fields above.
    pub tag: Tag,
}

/// The service's reply: `<client, seq, outcome>_Kc`, the tag possibly blinded.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The client it answers.
    pub client: ClientId,
    /// The request's sequence number.
    pub seq: u64,
    /// The digest of the request it answers ([`Request::digest`]): a reply answers exactly
    /// one request, even if a client used a sequence number twice.
    pub request: Digest,
    /// The view in which it was produced.
    pub view: u64,
    /// The update sequence number that makes it durable (0 if it needed none).
    pub state: u64,
    /// The outcome.
    pub outcome: Outcome,
    /// HMAC-SHA256 under Kc over "vpr reply" || the encoding of the fields above; XORed with
    /// a blinder until the state it depends on is durable.
    pub tag: Tag,
}

/// Evidence from a TCC: its identity (the PAL measurement) and report data, signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// Whether a simulated TCC produced it (verifiers reject it unless told otherwise).
    pub simulated: bool,
    /// Measurement of the PAL that asked for it.
    pub identity: Digest,
    /// What the PAL vouches for.
    pub data: Digest,
    /// The TCC's attestation key.
    pub tcc_key: PublicKey,
    /// The manufacturer's signature over "vpr tcc" || simulated || tcc_key.
    pub certificate: Signature,
    /// The TCC key's signature over "vpr attest" || simulated || identity || data.
    pub signature: Signature,
}

/// First message of a client: its fresh public key and a nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The client's ephemeral P-256 public key.
    pub public_key: PublicKey,
    /// Freshness.
    pub nonce: [u8; 32],
}

/// The Manager's answer to [`ClientHello`]: an identity and Kc, sealed to the client's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The client's new identity.
    pub client: ClientId,
    /// The configuration digest C of the welcoming Manager's group.
    pub config: Digest,
    /// The view of the Manager that answered.
    pub view: u64,
    /// The Manager's ephemeral key for the sealing.
    pub ephemeral: PublicKey,
    /// Kc sealed to the client's key.
    pub sealed_key: SealedKey,
    /// Over H("vpr welcome" || nonce || client key || client || config || view || ephemeral ||
    /// sealed).
    pub attestation: Attestation,
}

/// A backup's request to join the group (Fig 5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The backup.
    pub replica: ReplicaId,
    /// Its Manager's fresh public key.
    pub public_key: PublicKey,
    /// Over H("vpr join" || config digest || replica || public key).
    pub attestation: Attestation,
}

/// K, sealed to one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    /// The replica.
    pub replica: ReplicaId,
    /// K sealed to its Join key.
    pub sealed_key: SealedKey,
}

/// The primary's answer to the Joins (Fig 5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    /// The configuration digest.
    pub config: Digest,
    /// Digest of the initial database.
    pub genesis: Digest,
    /// The primary Manager's ephemeral key for the sealing.
    pub ephemeral: PublicKey,
    /// K for each backup.
    pub grants: Vec<KeyGrant>,
    /// Over H("vpr accept" || the encoding of the fields above).
    pub attestation: Attestation,
}

/// A backup's confirmation that it holds K and the initial state (Fig 5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckInit {
    /// The backup.
    pub replica: ReplicaId,
    /// H(encoded Accept).
    pub accept: Digest,
    /// HMAC under K over "vpr ackinit" || replica || accept.
    pub tag: Tag,
}

/// One request carried by an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The client.
    pub client: ClientId,
    /// Its sequence number.
    pub seq: u64,
    /// H(encoded request).
    pub request: Digest,
}

/// A state update from the primary (Fig 5.4 `State_update_j`).
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The primary's view.
    pub view: u64,
    /// The update's sequence number j.
    pub seq: u64,
    /// chain_{j-1}.
    pub prev: Digest,
    /// The requests whose effects it carries.
    pub entries: Vec<Entry>,
    /// The pages.
    pub state: StateUpdate,
    /// HMAC under K over "vpr update" || chain_j.
    pub tag: Tag,
}

/// A backup's acknowledgement that it holds update j (Fig 5.4 `ACK_i^j`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The backup.
    pub replica: ReplicaId,
    /// The view.
    pub view: u64,
    /// j.
    pub seq: u64,
    /// chain_j.
    pub chain: Digest,
    /// HMAC under K over "vpr ack" || replica || view || seq || chain.
    pub tag: Tag,
}

/// The primary's notice that updates up to `seq` are committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The view.
    pub view: u64,
    /// The last committed update.
    pub seq: u64,
    /// Its chain hash.
    pub chain: Digest,
    /// HMAC under K over "vpr commit" || view || seq || chain.
    pub tag: Tag,
}

/// A client's question to one replica: what is your state? (`vpr status`)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    /// The asking client.
    pub client: ClientId,
    /// Freshness: the report echoes it.
    pub nonce: [u8; 32],
    /// HMAC under Kc over "vpr status request" || client || nonce.
    pub tag: Tag,
}

/// One replica's state as its Manager reports it, authenticated for the asking client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// The replica.
    pub replica: ReplicaId,
    /// Its view counter.
    pub view: u64,
    /// The primary of that view.
    pub primary: ReplicaId,
    /// Its state counter: the last update it committed (primary) or applied (backup).
    pub committed: u64,
    /// Its database digest (`vpr_pal::merkle`).
    pub digest: Digest,
    /// The request's nonce.
    pub nonce: [u8; 32],
    /// HMAC under Kc over [`StatusReport::signed_bytes`].
    pub tag: Tag,
}

impl StatusRequest {
    /// The bytes the tag authenticates.
    pub fn signed_bytes(&self) -> Vec<u8> {
        crate::crypto::concat(&[b"vpr status request", &self.client, &self.nonce])
    }
}

impl StatusReport {
    /// The bytes the tag authenticates.
    pub fn signed_bytes(&self) -> Vec<u8> {
        crate::crypto::concat(&[
            b"vpr status",
            &self.replica.to_le_bytes(),
            &self.view.to_le_bytes(),
            &self.primary.to_le_bytes(),
            &self.committed.to_le_bytes(),
            self.digest.as_bytes(),
            &self.nonce,
        ])
    }
}

/// A backup's suspicion of the primary: it proposes moving to `view` (thesis §5.2.5,
/// Probe_change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The suspecting replica.
    pub replica: ReplicaId,
    /// The proposed view (its current view + 1).
    pub view: u64,
    /// HMAC under K over "vpr probe" || replica || view.
    pub tag: Tag,
}

/// A replica's account, sent to the new primary once it moved to `view`: its committed state
/// and the updates it holds but has not applied (thesis §5.2.5, Probe_reply).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewChange {
    /// The replica.
    pub replica: ReplicaId,
    /// The new view.
    pub view: u64,
    /// Its last committed update.
    pub committed: u64,
    /// That update's chain hash.
    pub committed_chain: Digest,
    /// Updates held but not applied, after the last ones applied (which count as
    /// [`Held::APPLIED`]), each with the view that vouched for it.
    pub held: Vec<Held>,
    /// HMAC under K over [`ViewChange::signed_bytes`].
    pub tag: Tag,
}

/// An update a replica reports in its [`ViewChange`], with the highest view in which it
/// *accepted* it: the view whose primary proposed it, or whose NewView listed it. A new
/// primary picks, at each sequence number, the update accepted in the highest view (the
/// Paxos rule: the view that made an update says nothing about whether a later view kept it).
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// The highest view in which the reporting replica accepted it; [`Held::APPLIED`] for
    /// an update it applied (committed).
    pub accepted: u64,
    /// The update.
    pub update: Update,
}

impl Held {
    /// The `accepted` of an update the replica applied: committed updates come first.
    pub const APPLIED: u64 = u64::MAX;
}

/// Most chain hashes a [`NewView`] lists.
pub const MAX_NEW_VIEW_CHAINS: usize = 2 * MAX_BATCH;

/// The new primary's announcement (thesis §5.2.5, New_primary): updates up to `base` are
/// committed; the updates from `first` on, whose chain hashes `chains` lists, make up the
/// chain the new view continues (those above `base` made in earlier views and proposed again
/// unchanged); the new view's own updates follow. A backup accepts an earlier view's update
/// only if it is listed here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewView {
    /// The new view.
    pub view: u64,
    /// The last committed update.
    pub base: u64,
    /// Its chain hash.
    pub base_chain: Digest,
    /// The sequence number of `chains[0]`.
    pub first: u64,
    /// Chain hashes of updates `first`, `first + 1`, ... up to the head.
    pub chains: Vec<Digest>,
    /// HMAC under K over [`NewView::signed_bytes`].
    pub tag: Tag,
}

impl Probe {
    /// The bytes the tag authenticates.
    pub fn signed_bytes(&self) -> Vec<u8> {
        crate::crypto::concat(&[
            b"vpr probe",
            &self.replica.to_le_bytes(),
            &self.view.to_le_bytes(),
        ])
    }
}

impl ViewChange {
    /// The bytes the tag authenticates: the fields, with each held update by its chain hash
    /// (which commits to all of it).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut parts: Vec<u8> = crate::crypto::concat(&[
            b"vpr view change",
            &self.replica.to_le_bytes(),
            &self.view.to_le_bytes(),
            &self.committed.to_le_bytes(),
            self.committed_chain.as_bytes(),
        ]);
        for h in &self.held {
            parts.extend_from_slice(&h.accepted.to_le_bytes());
            parts.extend_from_slice(h.update.chain().as_bytes());
        }
        parts
    }
}

impl NewView {
    /// The bytes the tag authenticates.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = crate::crypto::concat(&[
            b"vpr new view",
            &self.view.to_le_bytes(),
            &self.base.to_le_bytes(),
            self.base_chain.as_bytes(),
            &self.first.to_le_bytes(),
        ]);
        for chain in &self.chains {
            bytes.extend_from_slice(chain.as_bytes());
        }
        bytes
    }

    /// The sequence number of the last update the chain reaches (`base` if none is listed).
    pub fn head(&self) -> u64 {
        match self.chains.len().checked_sub(1) {
            Some(last) => self.first.saturating_add(last as u64),
            None => self.base,
        }
    }

    /// The chain hash this NewView vouches for at `seq`, if any: `base_chain` at `base`,
    /// the listed hash from `first` on.
    pub fn chain_at(&self, seq: u64) -> Option<Digest> {
        if seq == self.base {
            return Some(self.base_chain);
        }
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.chains.get(i).copied()
    }
}

/// A replica that lags (or restarted) asks a peer for a snapshot of its committed state.
/// Not authenticated: it only asks, and what comes back is checked by the asker's Manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRequest {
    /// The asking replica.
    pub replica: ReplicaId,
    /// The snapshot must include at least this update.
    pub at_least: u64,
}

/// A replica's committed state, whole: every page of the database file after update `seq`
/// (state transfer). Its Manager makes one only when its database holds exactly that state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The replica that made it.
    pub replica: ReplicaId,
    /// Its view then.
    pub view: u64,
    /// The last update the state includes.
    pub seq: u64,
    /// That update's chain hash.
    pub chain: Digest,
    /// Every page of the file.
    pub state: StateUpdate,
    /// HMAC under K over [`Snapshot::signed_bytes`].
    pub tag: Tag,
}

impl Snapshot {
    /// The bytes the tag authenticates: the fields, with the pages by their content digest.
    pub fn signed_bytes(&self) -> Vec<u8> {
        crate::crypto::concat(&[
            b"vpr snapshot",
            &self.replica.to_le_bytes(),
            &self.view.to_le_bytes(),
            &self.seq.to_le_bytes(),
            self.chain.as_bytes(),
            self.state.content_digest().as_bytes(),
        ])
    }
}
