//! The [`Wire`] trait and the canonical encoding of every message and its parts (see the
//! [`msg`](super) module docs for the rules).

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    Accept, Ack, AckInit, Attestation, ClientHello, Commit, Entry, Held, Join, KeyGrant, NewView,
    Outcome, Probe, ReadLevel, Reply, Request, Snapshot, SqlError, StateRequest, StatementResult,
    StatusReport, StatusRequest, Update, Value, ViewChange, Welcome, MAX_BATCH, MAX_MESSAGE_BYTES,
    MAX_NEW_VIEW_CHAINS, MAX_PARAMS, MAX_REPLICAS, MAX_REPLY_BYTES, MAX_SQL_BYTES, MAX_VALUE_BYTES,
};
use crate::crypto::PublicKey;
use crate::digest::Digest;
use crate::update::{StateUpdate, MAX_UPDATE_BYTES};
use crate::wire::{DecodeError, Reader, Writer};

/// A type with a canonical byte encoding (see the [`msg`](super) module docs).
pub trait Wire: Sized {
    /// Appends the canonical encoding to `w`.
    fn put(&self, w: &mut Writer);

    /// Reads one value from `r`, leaving `r` after it.
    ///
    /// Never panics, and allocates no more than the input left can justify.
    ///
    /// # Errors
    /// Any [`DecodeError`]: [`Truncated`](DecodeError::Truncated) where the input ends early,
    /// [`Invalid`](DecodeError::Invalid) for a bad tag, bool or UTF-8 string,
    /// [`TooLarge`](DecodeError::TooLarge) for a length or count beyond its limit, and the
    /// errors of [`StateUpdate::decode`] for an embedded state update.
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The canonical encoding as a `Vec`.
    #[must_use]
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.put(&mut w);
        w.into_vec()
    }

    /// The length of the canonical encoding, found without allocating it.
    #[must_use]
    fn encoded_len(&self) -> usize {
        let mut w = Writer::counter();
        self.put(&mut w);
        w.len()
    }

    /// Decodes exactly `bytes`.
    ///
    /// # Errors
    /// The errors of [`get`](Wire::get), and [`DecodeError::TrailingBytes`] if bytes are left
    /// after the value.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::get(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

/// Most vector items allocated before any is decoded; longer vectors grow as items arrive.
const PREALLOC_ITEMS: usize = 4096;

/// Smallest encodings, used to refuse counts the input cannot hold before allocating.
const MIN_VALUE_LEN: usize = 1;
const MIN_STRING_LEN: usize = 4;
const MIN_ROW_LEN: usize = 4;
const MIN_RESULT_LEN: usize = 4 + 4 + 8;
const KEY_GRANT_LEN: usize = 2 + 48;
const ENTRY_LEN: usize = 16 + 8 + 32;

pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Writes a length or count as `u32` (saturating: such a length exceeds every limit).
pub fn put_len(w: &mut Writer, n: usize) {
    w.u32(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Writes a byte string: its `u32` length, then the bytes.
pub fn put_bytes(w: &mut Writer, bytes: &[u8]) {
    put_len(w, bytes.len());
    w.bytes(bytes);
}

fn put_bool(w: &mut Writer, b: bool) {
    w.u8(u8::from(b));
}

fn put_vec<T: Wire>(w: &mut Writer, items: &[T]) {
    put_len(w, items.len());
    for item in items {
        item.put(w);
    }
}

fn put_option<T: Wire>(w: &mut Writer, value: Option<&T>) {
    match value {
        None => {
            w.u8(0);
        }
        Some(v) => {
            w.u8(1);
            v.put(w);
        }
    }
}

/// Reads a `u32` length or count, at most `max`.
pub(crate) fn get_len(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let n = r.u32()?;
    let too_large = DecodeError::TooLarge { field, value: u64::from(n), max: to_u64(max) };
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(too_large),
    }
}

/// Reads a byte string [`put_bytes`] wrote, of at most `max` bytes
/// ([`DecodeError::TooLarge`] names `field` otherwise).
///
/// # Errors
/// The length is over `max`, or the input ends first.
pub fn get_bytes<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
    max: usize,
) -> Result<&'a [u8], DecodeError> {
    let len = get_len(r, field, max)?;
    r.bytes(len)
}

/// Reads a byte string that must be UTF-8 ([`DecodeError::Invalid`] carries the offset of the
/// first bad byte).
pub(crate) fn get_string(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<String, DecodeError> {
    let bytes = get_bytes(r, field, max)?;
    match core::str::from_utf8(bytes) {
        Ok(s) => Ok(String::from(s)),
        Err(e) => Err(DecodeError::Invalid { field, value: to_u64(e.valid_up_to()) }),
    }
}

pub(crate) fn get_bool(r: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(DecodeError::Invalid { field, value: u64::from(b) }),
    }
}

fn get_option<T: Wire>(r: &mut Reader<'_>, field: &'static str) -> Result<Option<T>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => T::get(r).map(Some),
        tag => Err(DecodeError::Invalid { field, value: u64::from(tag) }),
    }
}

/// Reads a vector of at most `max` items, each encoded in at least `min_len` bytes (> 0).
///
/// Refuses a count the input left cannot hold before allocating, and preallocates at most
/// [`PREALLOC_ITEMS`] items.
///
/// # Errors
/// The count is over `max` or the input cannot hold it, or `get` fails on an item.
pub fn get_vec_with<T>(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
    min_len: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let count = get_len(r, field, max)?;
    let needed = count.saturating_mul(min_len);
    let have = r.remaining();
    if needed > have {
        return Err(DecodeError::Truncated { needed, have });
    }
    let mut out = Vec::with_capacity(count.min(PREALLOC_ITEMS));
    for _ in 0..count {
        out.push(item(r)?);
    }
    Ok(out)
}

fn get_vec<T: Wire>(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
    min_len: usize,
) -> Result<Vec<T>, DecodeError> {
    get_vec_with(r, field, max, min_len, T::get)
}

pub(crate) fn get_digest(r: &mut Reader<'_>) -> Result<Digest, DecodeError> {
    r.array().map(Digest)
}

impl Wire for Value {
    fn put(&self, w: &mut Writer) {
        match self {
            Value::Null => {
                w.u8(0);
            }
            Value::Integer(i) => {
                w.u8(1).bytes(&i.to_le_bytes());
            }
            Value::Real(x) => {
                w.u8(2).u64(x.to_bits());
            }
            Value::Text(bytes) => {
                w.u8(3);
                put_bytes(w, bytes);
            }
            Value::Blob(bytes) => {
                w.u8(4);
                put_bytes(w, bytes);
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Value::Null),
            1 => r.array().map(|b| Value::Integer(i64::from_le_bytes(b))),
            2 => r.u64().map(|bits| Value::Real(f64::from_bits(bits))),
            3 => get_bytes(r, "text", MAX_VALUE_BYTES).map(|b| Value::Text(b.to_vec())),
            4 => get_bytes(r, "blob", MAX_VALUE_BYTES).map(|b| Value::Blob(b.to_vec())),
            tag => Err(DecodeError::Invalid { field: "value_tag", value: u64::from(tag) }),
        }
    }
}

impl Wire for StatementResult {
    fn put(&self, w: &mut Writer) {
        put_len(w, self.columns.len());
        for column in &self.columns {
            put_bytes(w, column.as_bytes());
        }
        put_len(w, self.rows.len());
        for row in &self.rows {
            put_vec(w, row);
        }
        w.u64(self.changes);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let columns = get_vec_with(r, "columns", usize::MAX, MIN_STRING_LEN, |r| {
            get_string(r, "column", MAX_REPLY_BYTES)
        })?;
        let rows = get_vec_with(r, "rows", usize::MAX, MIN_ROW_LEN, |r| {
            get_vec(r, "row", usize::MAX, MIN_VALUE_LEN)
        })?;
        let changes = r.u64()?;
        Ok(Self { columns, rows, changes })
    }
}

impl Wire for SqlError {
    fn put(&self, w: &mut Writer) {
        w.bytes(&self.code.to_le_bytes());
        put_bytes(w, self.message.as_bytes());
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.array().map(i32::from_le_bytes)?;
        let message = get_string(r, "message", MAX_MESSAGE_BYTES)?;
        Ok(Self { code, message })
    }
}

impl Outcome {
    fn get_unbounded(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let results = get_vec(r, "results", usize::MAX, MIN_RESULT_LEN)?;
        let error = get_option(r, "error")?;
        Ok(Self { results, error })
    }
}

impl Wire for Outcome {
    fn put(&self, w: &mut Writer) {
        put_vec(w, &self.results);
        put_option(w, self.error.as_ref());
    }

    /// Reads an outcome whose encoding is at most [`MAX_REPLY_BYTES`] long: it is decoded
    /// from a window of that many bytes, so it never allocates for more.
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let rest = r.clone().bytes(r.remaining())?;
        let window = rest.get(..MAX_REPLY_BYTES).unwrap_or(rest);
        let clipped = window.len() < rest.len();
        let mut sub = Reader::new(window);
        let outcome = match Self::get_unbounded(&mut sub) {
            Ok(outcome) => outcome,
            // Running off a clipped window means the outcome is longer than the limit.
            Err(DecodeError::Truncated { needed, .. }) if clipped => {
                return Err(DecodeError::TooLarge {
                    field: "outcome",
                    value: to_u64(sub.position().saturating_add(needed)),
                    max: to_u64(MAX_REPLY_BYTES),
                });
            }
            Err(e) => return Err(e),
        };
        r.bytes(sub.position())?;
        Ok(outcome)
    }
}

impl Request {
    /// SHA-256 of the request's encoding (tag included): what an update's entry, the
    /// exactly-once table and the reply name it by.
    #[must_use]
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    fn put_signed(&self, w: &mut Writer) {
        w.bytes(&self.client).u64(self.seq).u8(self.level.to_u8());
        put_bytes(w, self.sql.as_bytes());
        put_vec(w, &self.params);
    }

    /// The bytes the tag authenticates: `b"vpr request"` followed by the encoding of
    /// `client`, `seq`, `level`, `sql` and `params` (the request's encoding without its tag).
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"vpr request");
        self.put_signed(&mut w);
        w.into_vec()
    }
}

impl Wire for Request {
    fn put(&self, w: &mut Writer) {
        self.put_signed(w);
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let client = r.array()?;
        let seq = r.u64()?;
        let level = r.u8()?;
        let level = ReadLevel::from_u8(level)
            .ok_or(DecodeError::Invalid { field: "level", value: u64::from(level) })?;
        let sql = get_string(r, "sql", MAX_SQL_BYTES)?;
        let params = get_vec(r, "params", MAX_PARAMS, MIN_VALUE_LEN)?;
        let tag = r.array()?;
        Ok(Self { client, seq, level, sql, params, tag })
    }
}

impl Reply {
    fn put_signed(&self, w: &mut Writer) {
        w.bytes(&self.client).u64(self.seq).bytes(self.request.as_bytes());
        w.u64(self.view).u64(self.state);
        self.outcome.put(w);
    }

    /// The bytes the (unblinded) tag authenticates: `b"vpr reply"` followed by the encoding
    /// of `client`, `seq`, `view`, `state` and `outcome` (the reply's encoding without its
    /// tag).
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"vpr reply");
        self.put_signed(&mut w);
        w.into_vec()
    }
}

impl Wire for Reply {
    fn put(&self, w: &mut Writer) {
        self.put_signed(w);
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let client = r.array()?;
        let seq = r.u64()?;
        let request = get_digest(r)?;
        let view = r.u64()?;
        let state = r.u64()?;
        let outcome = Outcome::get(r)?;
        let tag = r.array()?;
        Ok(Self { client, seq, request, view, state, outcome, tag })
    }
}

impl Attestation {
    /// The bytes the manufacturer signs to certify a TCC key: `b"vpr tcc"`, `simulated` as
    /// one byte (0 or 1), then `tcc_key`.
    #[must_use]
    pub fn certificate_bytes(simulated: bool, tcc_key: &PublicKey) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"vpr tcc");
        put_bool(&mut w, simulated);
        w.bytes(tcc_key);
        w.into_vec()
    }

    /// The bytes a TCC key signs in an attestation: `b"vpr attest"`, `simulated` as one byte
    /// (0 or 1), then `identity` and `data`.
    #[must_use]
    pub fn signed_bytes(simulated: bool, identity: &Digest, data: &Digest) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"vpr attest");
        put_bool(&mut w, simulated);
        w.bytes(identity.as_bytes()).bytes(data.as_bytes());
        w.into_vec()
    }
}

impl Wire for Attestation {
    fn put(&self, w: &mut Writer) {
        put_bool(w, self.simulated);
        w.bytes(self.identity.as_bytes())
            .bytes(self.data.as_bytes())
            .bytes(&self.tcc_key)
            .bytes(&self.certificate)
            .bytes(&self.signature);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let simulated = get_bool(r, "simulated")?;
        let identity = get_digest(r)?;
        let data = get_digest(r)?;
        let tcc_key = r.array()?;
        let certificate = r.array()?;
        let signature = r.array()?;
        Ok(Self { simulated, identity, data, tcc_key, certificate, signature })
    }
}

impl Wire for ClientHello {
    fn put(&self, w: &mut Writer) {
        w.bytes(&self.public_key).bytes(&self.nonce);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let public_key = r.array()?;
        let nonce = r.array()?;
        Ok(Self { public_key, nonce })
    }
}

impl Wire for Welcome {
    fn put(&self, w: &mut Writer) {
        w.bytes(&self.client).bytes(self.config.as_bytes()).u64(self.view);
        w.bytes(&self.ephemeral).bytes(&self.sealed_key);
        self.attestation.put(w);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let client = r.array()?;
        let config = get_digest(r)?;
        let view = r.u64()?;
        let ephemeral = r.array()?;
        let sealed_key = r.array()?;
        let attestation = Attestation::get(r)?;
        Ok(Self { client, config, view, ephemeral, sealed_key, attestation })
    }
}

impl Wire for Join {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).bytes(&self.public_key);
        self.attestation.put(w);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let public_key = r.array()?;
        let attestation = Attestation::get(r)?;
        Ok(Self { replica, public_key, attestation })
    }
}

impl Wire for KeyGrant {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).bytes(&self.sealed_key);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let sealed_key = r.array()?;
        Ok(Self { replica, sealed_key })
    }
}

impl Accept {
    fn put_signed(&self, w: &mut Writer) {
        w.bytes(self.config.as_bytes()).bytes(self.genesis.as_bytes()).bytes(&self.ephemeral);
        put_vec(w, &self.grants);
    }

    /// The bytes the attestation's data is the hash of: `b"vpr accept"` followed by the
    /// encoding of `config`, `genesis`, `ephemeral` and `grants` (the accept's encoding
    /// without its attestation).
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(b"vpr accept");
        self.put_signed(&mut w);
        w.into_vec()
    }
}

impl Wire for Accept {
    fn put(&self, w: &mut Writer) {
        self.put_signed(w);
        self.attestation.put(w);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let config = get_digest(r)?;
        let genesis = get_digest(r)?;
        let ephemeral = r.array()?;
        let grants = get_vec(r, "grants", MAX_REPLICAS, KEY_GRANT_LEN)?;
        let attestation = Attestation::get(r)?;
        Ok(Self { config, genesis, ephemeral, grants, attestation })
    }
}

impl Wire for AckInit {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).bytes(self.accept.as_bytes()).bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let accept = get_digest(r)?;
        let tag = r.array()?;
        Ok(Self { replica, accept, tag })
    }
}

impl Wire for Entry {
    fn put(&self, w: &mut Writer) {
        w.bytes(&self.client).u64(self.seq).bytes(self.request.as_bytes());
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let client = r.array()?;
        let seq = r.u64()?;
        let request = get_digest(r)?;
        Ok(Self { client, seq, request })
    }
}

impl Update {
    /// The chain hash of this update, `chain_j` of docs/protocol.md: SHA-256 of
    /// `b"vpr chain"`, `prev`, `view` (`u64`), `seq` (`u64`), `entries` (encoded as a
    /// vector) and the state update's [content digest](StateUpdate::content_digest).
    ///
    /// Hashes every page of the state update.
    #[must_use]
    pub fn chain(&self) -> Digest {
        let mut w = Writer::new();
        w.bytes(b"vpr chain").bytes(self.prev.as_bytes()).u64(self.view).u64(self.seq);
        put_vec(&mut w, &self.entries);
        w.bytes(self.state.content_digest().as_bytes());
        Digest::of(w.as_slice())
    }
}

impl Wire for Update {
    /// Encodes the update; `state` must be [valid](StateUpdate::validate) (debug builds
    /// assert it), or the bytes will not decode.
    fn put(&self, w: &mut Writer) {
        w.u64(self.view).u64(self.seq).bytes(self.prev.as_bytes());
        put_vec(w, &self.entries);
        put_state(w, &self.state);
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let view = r.u64()?;
        let seq = r.u64()?;
        let prev = get_digest(r)?;
        let entries = get_vec(r, "entries", MAX_BATCH, ENTRY_LEN)?;
        let state = get_state(r)?;
        let tag = r.array()?;
        Ok(Self { view, seq, prev, entries, state, tag })
    }
}

impl Wire for Ack {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).u64(self.view).u64(self.seq).bytes(self.chain.as_bytes());
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let view = r.u64()?;
        let seq = r.u64()?;
        let chain = get_digest(r)?;
        let tag = r.array()?;
        Ok(Self { replica, view, seq, chain, tag })
    }
}

impl Wire for Commit {
    fn put(&self, w: &mut Writer) {
        w.u64(self.view).u64(self.seq).bytes(self.chain.as_bytes()).bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let view = r.u64()?;
        let seq = r.u64()?;
        let chain = get_digest(r)?;
        let tag = r.array()?;
        Ok(Self { view, seq, chain, tag })
    }
}

impl Wire for StatusRequest {
    fn put(&self, w: &mut Writer) {
        w.bytes(&self.client).bytes(&self.nonce).bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { client: r.array()?, nonce: r.array()?, tag: r.array()? })
    }
}

impl Wire for StatusReport {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).u64(self.view).u16(self.primary).u64(self.committed);
        w.bytes(self.digest.as_bytes()).bytes(&self.nonce).bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let view = r.u64()?;
        let primary = r.u16()?;
        let committed = r.u64()?;
        let digest = get_digest(r)?;
        Ok(Self { replica, view, primary, committed, digest, nonce: r.array()?, tag: r.array()? })
    }
}

impl Wire for Probe {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).u64(self.view).bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { replica: r.u16()?, view: r.u64()?, tag: r.array()? })
    }
}

impl Wire for ViewChange {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).u64(self.view).u64(self.committed);
        w.bytes(self.committed_chain.as_bytes());
        put_vec(w, &self.held);
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let view = r.u64()?;
        let committed = r.u64()?;
        let committed_chain = get_digest(r)?;
        let held = get_vec(r, "held", MAX_BATCH, 8 + 4)?;
        Ok(Self { replica, view, committed, committed_chain, held, tag: r.array()? })
    }
}

impl Wire for Held {
    fn put(&self, w: &mut Writer) {
        w.u64(self.accepted);
        self.update.put(w);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { accepted: r.u64()?, update: Update::get(r)? })
    }
}

impl Wire for NewView {
    fn put(&self, w: &mut Writer) {
        w.u64(self.view).u64(self.base).bytes(self.base_chain.as_bytes()).u64(self.first);
        put_len(w, self.chains.len());
        for chain in &self.chains {
            w.bytes(chain.as_bytes());
        }
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let view = r.u64()?;
        let base = r.u64()?;
        let base_chain = get_digest(r)?;
        let first = r.u64()?;
        let chains = get_vec_with(r, "chains", MAX_NEW_VIEW_CHAINS, 32, get_digest)?;
        Ok(Self { view, base, base_chain, first, chains, tag: r.array()? })
    }
}

impl Wire for StateRequest {
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).u64(self.at_least);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { replica: r.u16()?, at_least: r.u64()? })
    }
}

impl Wire for Snapshot {
    /// Encodes the snapshot; `state` must be [valid](StateUpdate::validate).
    fn put(&self, w: &mut Writer) {
        w.u16(self.replica).u64(self.view).u64(self.seq).bytes(self.chain.as_bytes());
        put_state(w, &self.state);
        w.bytes(&self.tag);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let replica = r.u16()?;
        let view = r.u64()?;
        let seq = r.u64()?;
        let chain = get_digest(r)?;
        let state = get_state(r)?;
        Ok(Self { replica, view, seq, chain, state, tag: r.array()? })
    }
}

/// An embedded state update: its encoding, length-prefixed.
fn put_state(w: &mut Writer, state: &StateUpdate) {
    put_bytes(w, &state.encode());
}

/// An embedded state update, decoded and checked (see [`StateUpdate::decode`]).
fn get_state(r: &mut Reader<'_>) -> Result<StateUpdate, DecodeError> {
    StateUpdate::decode(get_bytes(r, "state_len", MAX_UPDATE_BYTES)?)
}
