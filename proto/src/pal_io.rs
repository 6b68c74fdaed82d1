//! The input and output of the PAL image's `execute`: a [`Command`] in, an [`Outcome`] out.
//!
//! The hypervisor copies a guest's input into the PAL ([`hypercall`] `execute`), the PAL
//! decodes it as a [`Command`], runs it and leaves the encoded [`Outcome`] in its output. The
//! PAL image (`vpr-pal-image`) and whatever drives it (the hypervisor's self-test, the host)
//! share this module; it depends on nothing but the rest of this crate.
//!
//! # Encoding
//!
//! Integers are little-endian. Every message starts with an 8-byte header, as
//! [`Message`](crate::msg::Message) does:
//!
//! | offset | size | field      | value                                                    |
//! |-------:|-----:|------------|----------------------------------------------------------|
//! |      0 |    4 | `magic`    | [`MAGIC`] = `b"VPRP"`                                    |
//! |      4 |    1 | `version`  | [`VERSION`] = 1                                          |
//! |      5 |    1 | `kind`     | see below: commands 1-10, outcomes `0x81`-`0x89`         |
//! |      6 |    2 | `reserved` | `u16`, must be zero                                      |
//! |      8 |      | body       | the fields of the kind, in order; nothing may follow     |
//!
//! Fields are encoded as in [`msg`]: a byte string is a `u32` length and the
//! bytes, a string is a byte string that must be UTF-8, a `bool` is one byte 0 or 1, an
//! `Option` a tag byte 0 or 1 and the item, a [`Digest`] its 32 bytes, and [`Value`],
//! [`StatementResult`] and [`SqlError`] use their [`Wire`] encodings (a real by its bits), as
//! do the Manager's [`tcc::Call`], [`tcc::Effect`], [`tcc::Group`] and [`tcc::Status`] (their
//! tables are in [`tcc`]).
//!
//! | kind | command             | body                                                          |
//! |-----:|---------------------|---------------------------------------------------------------|
//! |    1 | [`Command::Execute`]| `sql`: string; `params`: `u32` count, then each [`Value`]     |
//! |    2 | [`Command::Apply`]  | `update`: byte string (an encoded [`StateUpdate`])            |
//! |    3 | [`Command::Digest`] | none                                                          |
//! |    4 | [`Command::Info`]   | none                                                          |
//! |    5 | [`Command::Random`] | `len`: `u32`                                                  |
//! |    6 | [`Command::Counter`]| `name`: digest; `increment`: `bool`                           |
//! |    7 | [`Command::Start`]  | `group`: [`tcc::Group`]                                       |
//! |    8 | [`Command::Restore`]| `group`: [`tcc::Group`]; `sealed`: byte string; `log`: `Option` of a `u32` count and byte strings |
//! |    9 | [`Command::Call`]   | [`tcc::Call`]                                                 |
//! |   10 | [`Command::Status`] | none                                                          |
//! |   11 | [`Command::Quote`]  | `nonce`: digest; `data`: digest; `selection`: `u8`            |
//!
//! | kind | outcome               | body                                                        |
//! |-----:|-----------------------|-------------------------------------------------------------|
//! | 0x81 | [`Outcome::Executed`] | `results`: `u32` count, then each [`StatementResult`]; `error`: `Option<`[`SqlError`]`>`; `update`: byte string |
//! | 0x82 | [`Outcome::Applied`]  | `digest`                                                    |
//! | 0x83 | [`Outcome::Refused`]  | `reason`: string                                            |
//! | 0x84 | [`Outcome::Digest`]   | `digest`; `file_size`: `u64`                                |
//! | 0x85 | [`Outcome::Info`]     | `sqlite_version`: string; `identity`: digest; `image`: string |
//! | 0x86 | [`Outcome::Random`]   | `bytes`: byte string                                        |
//! | 0x87 | [`Outcome::Counter`]  | `value`: `u64`                                              |
//! | 0x88 | [`Outcome::Effects`]  | `u32` count, then each [`tcc::Effect`]; then the [`tcc::Status`] after the call |
//! | 0x89 | [`Outcome::Status`]   | [`tcc::Status`]                                             |
//! | 0x8A | [`Outcome::Quote`]    | `quote`: byte string (at most [`MAX_QUOTE_BYTES`])          |
//! | 0x8B | [`Outcome::EffectsLost`] | `len`: `u64`; `capacity`: `u64`                          |
//!
//! Commands and outcomes have distinct kinds, so neither decodes as the other. The encoding is
//! canonical: `decode(encode(x)) == x` (reals compared by their bits) and every accepted byte
//! string re-encodes to itself.
//!
//! # Limits
//!
//! Decoders refuse a message longer than [`MAX_LEN`] (the hypervisor's
//! [`MAX_IO_LEN`](hypercall::MAX_IO_LEN)) before reading it, and then: SQL text over
//! [`MAX_SQL_BYTES`], more than [`MAX_PARAMS`] parameters, a random length over
//! [`MAX_RANDOM_BYTES`], a reason over [`MAX_REASON_BYTES`], an error message over
//! [`MAX_MESSAGE_BYTES`](crate::msg::MAX_MESSAGE_BYTES), names over [`MAX_NAME_BYTES`], a
//! sealed blob over [`tcc::MAX_SEALED_BYTES`], and the limits of [`tcc`]. Every
//! length and count is checked against the bytes left before anything is allocated, so what a
//! decoder allocates is proportional to its input. They never panic. Encoders do not check
//! limits: a value beyond them encodes to bytes that decoders refuse ([`Outcome::refused`] and
//! [`clip_utf8`] help a producer stay inside them).
//!
//! # Output capacity
//!
//! The PAL runs a command only when the output capacity is at least [`MIN_OUTPUT_CAPACITY`]:
//! every outcome but [`Outcome::Executed`] and [`Outcome::Effects`] fits in it. When an
//! `Executed` outcome does not fit, the PAL takes the request's writes back and answers
//! [`Outcome::Refused`]: a refused command changed nothing.
//!
//! A [`Command::Call`] cannot be taken back: the Manager has moved on (a counter incremented,
//! an update proposed) by the time its effects are encoded. The host must therefore give every
//! `Call` the full capacity, [`MAX_LEN`]. If the [`Outcome::Effects`] still do not fit (a
//! [`tcc::Effect::Snapshot`] carries the whole database, a batch's replies its rows), the PAL
//! measures them without encoding them ([`Outcome::encoded_len`]) and answers
//! [`Outcome::EffectsLost`] with their length and the capacity: the effects are lost, never
//! silently, and the host must treat them as messages the network lost. (So a database much
//! larger than [`MAX_LEN`] cannot move by snapshot through this interface yet.) A Manager
//! avoids this by checking [`effects_fit`] before a call takes effect.
//!
//! [`StateUpdate`]: crate::update::StateUpdate

use alloc::string::String;
use alloc::vec::Vec;

use crate::digest::Digest;
use crate::hypercall::{self, pal};
use crate::msg::codec::{
    get_bool, get_bytes, get_digest, get_string, get_vec_with, put_bytes, put_len, to_u64,
};
use crate::msg::{self, SqlError, StatementResult, Value, Wire};
use crate::tcc;
use crate::wire::{DecodeError, Reader, Writer};

/// First four bytes of every command and outcome.
pub const MAGIC: [u8; 4] = *b"VPRP";
/// The format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Length of the header: magic, version, kind, reserved.
pub const HEADER_LEN: usize = 8;
/// Longest command or outcome: the hypervisor's input and output limit.
pub const MAX_LEN: usize = 4 << 20;
/// Longest SQL text of an [`Command::Execute`].
pub const MAX_SQL_BYTES: usize = msg::MAX_SQL_BYTES;
/// Most parameters of an [`Command::Execute`].
pub const MAX_PARAMS: usize = msg::MAX_PARAMS;
/// Most bytes of an [`Outcome::Quote`] ([`hypercall::pal::MAX_QUOTE_LEN`]).
pub const MAX_QUOTE_BYTES: usize = 512;
const _: () = assert!(MAX_QUOTE_BYTES as u64 == hypercall::pal::MAX_QUOTE_LEN);

/// Most bytes one [`Command::Random`] asks for.
pub const MAX_RANDOM_BYTES: usize = 4096;
/// Longest reason of an [`Outcome::Refused`].
pub const MAX_REASON_BYTES: usize = msg::MAX_MESSAGE_BYTES;
/// Longest name in an [`Outcome::Info`] (SQLite version, image name).
pub const MAX_NAME_BYTES: usize = 256;
/// The smallest output capacity the PAL runs a command with: room for any outcome but
/// [`Outcome::Executed`] and [`Outcome::Effects`].
pub const MIN_OUTPUT_CAPACITY: usize = 8192;

const _: () = assert!(MAX_LEN as u64 == hypercall::MAX_IO_LEN);
const _: () = assert!(MAX_RANDOM_BYTES as u64 == pal::MAX_RANDOM_LEN);
const _: () = assert!(HEADER_LEN + 4 + MAX_REASON_BYTES <= MIN_OUTPUT_CAPACITY);
const _: () = assert!(HEADER_LEN + 4 + MAX_RANDOM_BYTES <= MIN_OUTPUT_CAPACITY);
const _: () = assert!(HEADER_LEN + 2 * (4 + MAX_NAME_BYTES) + 32 <= MIN_OUTPUT_CAPACITY);
const _: () = assert!(HEADER_LEN + tcc::MAX_STATUS_LEN <= MIN_OUTPUT_CAPACITY);

/// Smallest encoding of a [`Value`] (a tag) and of a [`StatementResult`] (two empty counts
/// and `changes`).
const MIN_VALUE_LEN: usize = 1;
const MIN_RESULT_LEN: usize = 4 + 4 + 8;

/// What the PAL is asked to do in one execution.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Kind 1. Run SQL at the primary: [`Outcome::Executed`].
    Execute {
        /// One or more statements.
        sql: String,
        /// Values for the statements' parameters (`?`, `?NNN`, `:name`...), in order.
        params: Vec<Value>,
    },
    /// Kind 2. Check and apply a state update made by a primary (backup): [`Outcome::Applied`]
    /// or [`Outcome::Refused`].
    Apply {
        /// An encoded [`StateUpdate`](crate::update::StateUpdate).
        update: Vec<u8>,
    },
    /// Kind 3. The database file's digest and size: [`Outcome::Digest`].
    Digest,
    /// Kind 4. What the PAL is: [`Outcome::Info`].
    Info,
    /// Kind 5. Random bytes from the hypervisor's generator: [`Outcome::Random`].
    Random {
        /// How many, at most [`MAX_RANDOM_BYTES`].
        len: u32,
    },
    /// Kind 6. A trusted counter of the PAL's identity: [`Outcome::Counter`]. The PAL image
    /// keeps the untrusted side's counters in a name space apart from its Manager's view and
    /// state counters, which it cannot reach.
    Counter {
        /// The counter's name.
        name: Digest,
        /// Add one first.
        increment: bool,
    },
    /// Kind 7. Start the Manager of a new replica over a fresh database (its trusted counters
    /// must be zero): [`Outcome::Status`], or [`Outcome::Refused`] if a Manager runs already
    /// or the configuration is refused.
    Start {
        /// The group's configuration.
        group: tcc::Group,
    },
    /// Kind 8. Restart the Manager of a replica from the group state it sealed
    /// ([`tcc::Effect::Sealed`]): [`Outcome::Status`], or [`Outcome::Refused`] if a Manager
    /// runs already or the blob is refused.
    Restore {
        /// The group's configuration (as at the start).
        group: tcc::Group,
        /// The sealed blob, at most [`tcc::MAX_SEALED_BYTES`].
        sealed: Vec<u8>,
        /// The replica's log as its disk holds it, from a checkpoint on (each record at most
        /// [`tcc::MAX_RECORD_BYTES`]): the Manager recovers its state from it. `None`: the
        /// state is lost and comes by snapshot from the others.
        log: Option<Vec<Vec<u8>>>,
    },
    /// Kind 9. One call of the Manager: [`Outcome::Effects`], or [`Outcome::Refused`] if no
    /// Manager runs. Needs the full output capacity (see "Output capacity" above).
    Call(tcc::Call),
    /// Kind 10. Where the Manager stands: [`Outcome::Status`], or [`Outcome::Refused`] if no
    /// Manager runs.
    Status,
    /// Kind 11. A uTPM quote (`crate::utpm`) of the PAL's uPCRs `selection` names (uPCR 0
    /// holds its identity) over `nonce` and [`crate::utpm::caller_data`] of `data`:
    /// [`Outcome::Quote`], or [`Outcome::Refused`]. It proves the PAL's identity, its TCC
    /// and the quote's freshness; the data is the caller's, labelled as such.
    Quote {
        /// The verifier's nonce.
        nonce: Digest,
        /// Data the caller chose (the PAL does not vouch for it: it is quoted labelled).
        data: Digest,
        /// Bitmap of uPCRs (bit i: uPCR i).
        selection: u8,
    },
}

/// What the PAL answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Kind `0x81`: what an [`Command::Execute`] did.
    Executed {
        /// One result per statement that completed, in order.
        results: Vec<StatementResult>,
        /// The error that stopped the request, if one did (its message at most
        /// [`MAX_MESSAGE_BYTES`](crate::msg::MAX_MESSAGE_BYTES)).
        error: Option<SqlError>,
        /// The encoded [`StateUpdate`](crate::update::StateUpdate) carrying the request's
        /// writes; an update with no pages when it wrote nothing.
        update: Vec<u8>,
    },
    /// Kind `0x82`: the update was applied; the file's digest now.
    Applied {
        /// The database digest after the update (`vpr_pal::merkle`: a Merkle root over the file).
        digest: Digest,
    },
    /// Kind `0x83`: the command was not run, or was taken back: the state is unchanged (a
    /// malformed command, a refused update, an output too large...).
    Refused {
        /// Why, at most [`MAX_REASON_BYTES`].
        reason: String,
    },
    /// Kind `0x84`: the database file's digest and size.
    Digest {
        /// The database digest (`vpr_pal::merkle`: a Merkle root over the file).
        digest: Digest,
        /// Its size in bytes.
        file_size: u64,
    },
    /// Kind `0x85`: what the PAL is.
    Info {
        /// The SQLite release it runs.
        sqlite_version: String,
        /// Its identity: the SHA-256 of its image, as the hypervisor measured it.
        identity: Digest,
        /// Its name and version, e.g. `vpr-pal 0.1.0`.
        image: String,
    },
    /// Kind `0x86`: random bytes.
    Random {
        /// As many as asked for.
        bytes: Vec<u8>,
    },
    /// Kind `0x87`: a trusted counter's value (after the increment, if one was asked for).
    Counter {
        /// The value.
        value: u64,
    },
    /// Kind `0x88`: what the Manager answered a [`Command::Call`], in order, and where it
    /// stands after the call (so the host needs no second execution to know).
    Effects {
        /// The effects, in order.
        effects: Vec<tcc::Effect>,
        /// The Manager's status after the call.
        status: tcc::Status,
    },
    /// Kind `0x89`: where the Manager stands.
    Status(tcc::Status),
    /// Kind `0x8A`: a uTPM quote, as `crate::utpm::Quote::to_bytes` writes it.
    Quote {
        /// `TPM2B_ATTEST` ‖ `TPMT_SIGNATURE`.
        quote: Vec<u8>,
    },
    /// Kind `0x8B`: a [`Command::Call`] took effect, but its [`Outcome::Effects`] would have
    /// taken `len` bytes, more than the output's `capacity`: they are lost. Not a refusal:
    /// the Manager has moved on (see "Output capacity" above).
    EffectsLost {
        /// The encoded length of the lost `Effects` outcome.
        len: u64,
        /// The output capacity the call was given.
        capacity: u64,
    },
}

impl Command {
    /// The command's name, as in this enum (for messages).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Execute { .. } => "Execute",
            Command::Apply { .. } => "Apply",
            Command::Digest => "Digest",
            Command::Info => "Info",
            Command::Random { .. } => "Random",
            Command::Counter { .. } => "Counter",
            Command::Start { .. } => "Start",
            Command::Restore { .. } => "Restore",
            Command::Call(_) => "Call",
            Command::Status => "Status",
            Command::Quote { .. } => "Quote",
        }
    }

    /// The header's `kind` byte (1 to 10).
    #[must_use]
    pub const fn kind(&self) -> u8 {
        match self {
            Command::Execute { .. } => 1,
            Command::Apply { .. } => 2,
            Command::Digest => 3,
            Command::Info => 4,
            Command::Random { .. } => 5,
            Command::Counter { .. } => 6,
            Command::Start { .. } => 7,
            Command::Restore { .. } => 8,
            Command::Call(_) => 9,
            Command::Status => 10,
            Command::Quote { .. } => 11,
        }
    }

    /// The canonical encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = header(self.kind());
        match self {
            Command::Execute { sql, params } => {
                put_bytes(&mut w, sql.as_bytes());
                put_len(&mut w, params.len());
                for param in params {
                    param.put(&mut w);
                }
            }
            Command::Apply { update } => put_bytes(&mut w, update),
            Command::Digest | Command::Info | Command::Status => {}
            Command::Random { len } => {
                w.u32(*len);
            }
            Command::Counter { name, increment } => {
                w.bytes(name.as_bytes()).u8(u8::from(*increment));
            }
            Command::Start { group } => group.put(&mut w),
            Command::Restore { group, sealed, log } => {
                group.put(&mut w);
                put_bytes(&mut w, sealed);
                w.u8(u8::from(log.is_some()));
                if let Some(log) = log {
                    put_len(&mut w, log.len());
                    log.iter().for_each(|record| put_bytes(&mut w, record));
                }
            }
            Command::Call(call) => call.put(&mut w),
            Command::Quote { nonce, data, selection } => {
                w.bytes(nonce.as_bytes()).bytes(data.as_bytes()).u8(*selection);
            }
        }
        w.into_vec()
    }

    /// Decodes exactly `bytes`. Never panics.
    ///
    /// # Errors
    /// A [`DecodeError`]: the message is too long, truncated, has a bad magic, version,
    /// reserved field or kind (an outcome's kind included), a field beyond its limit, a bad
    /// tag, bool or UTF-8 string, or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (kind, mut r) = open(bytes)?;
        let command = match kind {
            1 => {
                let sql = get_string(&mut r, "sql", MAX_SQL_BYTES)?;
                let params = get_vec_with(&mut r, "params", MAX_PARAMS, MIN_VALUE_LEN, Value::get)?;
                Command::Execute { sql, params }
            }
            2 => Command::Apply { update: get_bytes(&mut r, "update", MAX_LEN)?.to_vec() },
            3 => Command::Digest,
            4 => Command::Info,
            5 => {
                let len = r.u32()?;
                if u64::from(len) > to_u64(MAX_RANDOM_BYTES) {
                    return Err(DecodeError::TooLarge {
                        field: "random len",
                        value: u64::from(len),
                        max: to_u64(MAX_RANDOM_BYTES),
                    });
                }
                Command::Random { len }
            }
            6 => {
                let name = get_digest(&mut r)?;
                let increment = get_bool(&mut r, "increment")?;
                Command::Counter { name, increment }
            }
            7 => Command::Start { group: tcc::Group::get(&mut r)? },
            8 => {
                let group = tcc::Group::get(&mut r)?;
                let sealed = tcc::get_sealed(&mut r)?;
                let log = if get_bool(&mut r, "log")? {
                    Some(get_vec_with(&mut r, "log", MAX_LEN / 4, 4, |r| {
                        get_bytes(r, "record", tcc::MAX_RECORD_BYTES).map(<[u8]>::to_vec)
                    })?)
                } else {
                    None
                };
                Command::Restore { group, sealed, log }
            }
            9 => Command::Call(tcc::Call::get(&mut r)?),
            10 => Command::Status,
            11 => {
                let nonce = get_digest(&mut r)?;
                let data = get_digest(&mut r)?;
                Command::Quote { nonce, data, selection: r.u8()? }
            }
            kind => return Err(DecodeError::Invalid { field: "command kind", value: kind.into() }),
        };
        r.finish()?;
        Ok(command)
    }
}

impl Outcome {
    /// A refusal, its reason clipped to [`MAX_REASON_BYTES`] (at a character boundary).
    #[must_use]
    pub fn refused(reason: &str) -> Self {
        Outcome::Refused { reason: String::from(clip_utf8(reason, MAX_REASON_BYTES)) }
    }

    /// The header's `kind` byte (`0x81` to `0x8B`).
    #[must_use]
    pub const fn kind(&self) -> u8 {
        match self {
            Outcome::Executed { .. } => 0x81,
            Outcome::Applied { .. } => 0x82,
            Outcome::Refused { .. } => 0x83,
            Outcome::Digest { .. } => 0x84,
            Outcome::Info { .. } => 0x85,
            Outcome::Random { .. } => 0x86,
            Outcome::Counter { .. } => 0x87,
            Outcome::Effects { .. } => 0x88,
            Outcome::Status(_) => 0x89,
            Outcome::Quote { .. } => 0x8A,
            Outcome::EffectsLost { .. } => 0x8B,
        }
    }

    /// The canonical encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.put(&mut w);
        w.into_vec()
    }

    /// The length of [`encode`](Self::encode)'s output, found without allocating it.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let mut w = Writer::counter();
        self.put(&mut w);
        w.len()
    }

    /// The canonical encoding in a buffer allocated once, to the exact length, fallibly:
    /// `None` if that memory cannot be had (where running out of memory must not abort).
    #[must_use]
    pub fn try_encode(&self) -> Option<Vec<u8>> {
        let mut w = Writer::try_with_capacity(self.encoded_len())?;
        self.put(&mut w);
        Some(w.into_vec())
    }

    fn put(&self, w: &mut Writer) {
        put_header(w, self.kind());
        match self {
            Outcome::Executed { results, error, update } => {
                put_len(w, results.len());
                for result in results {
                    result.put(w);
                }
                match error {
                    None => {
                        w.u8(0);
                    }
                    Some(e) => {
                        w.u8(1);
                        e.put(w);
                    }
                }
                put_bytes(w, update);
            }
            Outcome::Applied { digest } => {
                w.bytes(digest.as_bytes());
            }
            Outcome::Refused { reason } => put_bytes(w, reason.as_bytes()),
            Outcome::Digest { digest, file_size } => {
                w.bytes(digest.as_bytes()).u64(*file_size);
            }
            Outcome::Info { sqlite_version, identity, image } => {
                put_bytes(w, sqlite_version.as_bytes());
                w.bytes(identity.as_bytes());
                put_bytes(w, image.as_bytes());
            }
            Outcome::Random { bytes } => put_bytes(w, bytes),
            Outcome::Counter { value } => {
                w.u64(*value);
            }
            Outcome::Effects { effects, status } => {
                put_len(w, effects.len());
                for effect in effects {
                    effect.put(w);
                }
                status.put(w);
            }
            Outcome::Status(status) => status.put(w),
            Outcome::Quote { quote } => put_bytes(w, quote),
            Outcome::EffectsLost { len, capacity } => {
                w.u64(*len).u64(*capacity);
            }
        }
    }

    /// Decodes exactly `bytes`. Never panics.
    ///
    /// # Errors
    /// As [`Command::decode`]; also the errors of the [`Wire`] decoders of
    /// [`StatementResult`], [`SqlError`], [`tcc::Effect`] and [`tcc::Status`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (kind, mut r) = open(bytes)?;
        let outcome = match kind {
            0x81 => {
                let results = get_vec_with(
                    &mut r,
                    "results",
                    usize::MAX,
                    MIN_RESULT_LEN,
                    StatementResult::get,
                )?;
                let error = match r.u8()? {
                    0 => None,
                    1 => Some(SqlError::get(&mut r)?),
                    tag => return Err(DecodeError::Invalid { field: "error", value: tag.into() }),
                };
                let update = get_bytes(&mut r, "update", MAX_LEN)?.to_vec();
                Outcome::Executed { results, error, update }
            }
            0x82 => Outcome::Applied { digest: get_digest(&mut r)? },
            0x83 => Outcome::Refused { reason: get_string(&mut r, "reason", MAX_REASON_BYTES)? },
            0x84 => {
                let digest = get_digest(&mut r)?;
                let file_size = r.u64()?;
                Outcome::Digest { digest, file_size }
            }
            0x85 => {
                let sqlite_version = get_string(&mut r, "sqlite_version", MAX_NAME_BYTES)?;
                let identity = get_digest(&mut r)?;
                let image = get_string(&mut r, "image", MAX_NAME_BYTES)?;
                Outcome::Info { sqlite_version, identity, image }
            }
            0x86 => {
                Outcome::Random { bytes: get_bytes(&mut r, "random", MAX_RANDOM_BYTES)?.to_vec() }
            }
            0x87 => Outcome::Counter { value: r.u64()? },
            0x88 => Outcome::Effects {
                effects: get_vec_with(
                    &mut r,
                    "effects",
                    usize::MAX,
                    tcc::MIN_EFFECT_LEN,
                    tcc::Effect::get,
                )?,
                status: tcc::Status::get(&mut r)?,
            },
            0x89 => Outcome::Status(tcc::Status::get(&mut r)?),
            0x8A => Outcome::Quote { quote: get_bytes(&mut r, "quote", MAX_QUOTE_BYTES)?.to_vec() },
            0x8B => Outcome::EffectsLost { len: r.u64()?, capacity: r.u64()? },
            kind => return Err(DecodeError::Invalid { field: "outcome kind", value: kind.into() }),
        };
        r.finish()?;
        Ok(outcome)
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends at a character boundary.
#[must_use]
pub fn clip_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn header(kind: u8) -> Writer {
    let mut w = Writer::new();
    put_header(&mut w, kind);
    w
}

fn put_header(w: &mut Writer, kind: u8) {
    w.bytes(&MAGIC).u8(VERSION).u8(kind).u16(0);
}

/// The encoded length of [`Outcome::Effects`] with `effects` and the longest status, found
/// without encoding: what a Manager call's effects take in the PAL's output at most, which
/// must be at most [`MAX_LEN`] for them to be delivered.
#[must_use]
pub fn effects_encoded_len(effects: &[tcc::Effect]) -> usize {
    effects
        .iter()
        .fold(HEADER_LEN + 4 + tcc::MAX_STATUS_LEN, |n, e| n.saturating_add(e.encoded_len()))
}

/// Whether `effects` fit the PAL's output, [`MAX_LEN`] (see "Output capacity"): a Manager
/// call whose effects do not fit must not take effect.
#[must_use]
pub fn effects_fit(effects: &[tcc::Effect]) -> bool {
    effects_encoded_len(effects) <= MAX_LEN
}

/// Checks the length and header; returns the kind and a reader at the body.
fn open(bytes: &[u8]) -> Result<(u8, Reader<'_>), DecodeError> {
    if bytes.len() > MAX_LEN {
        return Err(DecodeError::TooLarge {
            field: "message",
            value: to_u64(bytes.len()),
            max: to_u64(MAX_LEN),
        });
    }
    let mut r = Reader::new(bytes);
    let magic = r.array::<4>()?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(u32::from_le_bytes(magic)));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = r.u8()?;
    let reserved = r.u16()?;
    if reserved != 0 {
        return Err(DecodeError::Invalid { field: "reserved", value: reserved.into() });
    }
    Ok((kind, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn all_values() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Integer(0),
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(1.5),
            Value::Real(-0.0),
            Value::Real(f64::NAN),
            Value::Real(f64::from_bits(0x7ff8_dead_beef_0001)),
            Value::Real(f64::NEG_INFINITY),
            Value::Text(b"h\xc3\xa9llo".to_vec()),
            Value::Text(vec![0xff, 0x00, 0xfe]),
            Value::Text(Vec::new()),
            Value::Blob(vec![0, 1, 2, 255]),
            Value::Blob(Vec::new()),
        ]
    }

    fn commands() -> Vec<Command> {
        let mut commands = vec![
            Command::Execute {
                sql: String::from("SELECT ?1, ?2; INSERT INTO t VALUES (:x)"),
                params: all_values(),
            },
            Command::Execute { sql: String::new(), params: Vec::new() },
            Command::Apply { update: crate::update::StateUpdate::new(4096, 8192).encode() },
            Command::Apply { update: Vec::new() },
            Command::Digest,
            Command::Info,
            Command::Random { len: 0 },
            Command::Quote { nonce: Digest([1; 32]), data: Digest([2; 32]), selection: 0x81 },
            Command::Random { len: 4096 },
            Command::Counter { name: Digest([3; 32]), increment: true },
            Command::Counter { name: Digest([0xFF; 32]), increment: false },
        ];
        let groups = tcc::tests::groups();
        commands.extend(groups.iter().map(|group| Command::Start { group: group.clone() }));
        commands.push(Command::Restore {
            group: groups[0].clone(),
            sealed: vec![0x5e; 95],
            log: Some(vec![vec![1, 2, 3], Vec::new()]),
        });
        commands.push(Command::Restore { group: groups[1].clone(), sealed: Vec::new(), log: None });
        commands.extend(tcc::tests::calls().into_iter().map(Command::Call));
        commands.push(Command::Status);
        commands
    }

    /// One of the statuses `tcc::tests` encodes.
    fn status(i: usize) -> tcc::Status {
        tcc::tests::statuses().swap_remove(i)
    }

    fn outcomes() -> Vec<Outcome> {
        let mut outcomes = vec![
            Outcome::Executed {
                results: vec![
                    StatementResult {
                        columns: vec![String::from("a"), String::from("b\u{e9}")],
                        rows: vec![all_values()[..2].to_vec(), all_values()[4..6].to_vec()],
                        changes: 0,
                    },
                    StatementResult { columns: Vec::new(), rows: Vec::new(), changes: 7 },
                    StatementResult {
                        columns: vec![String::from("v")],
                        rows: all_values().into_iter().map(|v| vec![v]).collect(),
                        changes: u64::MAX,
                    },
                ],
                error: Some(SqlError { code: 2067, message: String::from("UNIQUE failed") }),
                update: crate::update::StateUpdate::new(4096, 0).encode(),
            },
            Outcome::Executed { results: Vec::new(), error: None, update: Vec::new() },
            Outcome::Applied { digest: Digest([7; 32]) },
            Outcome::Refused { reason: String::from("malformed state update: \u{1f600}") },
            Outcome::Refused { reason: String::new() },
            Outcome::Digest { digest: Digest::of(b"file"), file_size: 1 << 40 },
            Outcome::Info {
                sqlite_version: String::from("3.54.1"),
                identity: Digest([0xab; 32]),
                image: String::from("vpr-pal 0.1.0"),
            },
            Outcome::Random { bytes: (0..=255).collect() },
            Outcome::Random { bytes: Vec::new() },
            Outcome::Quote { quote: vec![7; MAX_QUOTE_BYTES] },
            Outcome::Counter { value: 0 },
            Outcome::Counter { value: u64::MAX },
            Outcome::Effects { effects: tcc::tests::effects(), status: status(0) },
            Outcome::Effects { effects: Vec::new(), status: status(1) },
            Outcome::EffectsLost { len: MAX_LEN as u64 + 1, capacity: MAX_LEN as u64 },
        ];
        outcomes.extend(
            tcc::tests::effects()
                .into_iter()
                .map(|e| Outcome::Effects { effects: vec![e], status: status(0) }),
        );
        outcomes.extend(tcc::tests::statuses().into_iter().map(Outcome::Status));
        outcomes
    }

    fn real_bits(values: &[Value]) -> Vec<Option<u64>> {
        values
            .iter()
            .map(|v| if let Value::Real(x) = v { Some(x.to_bits()) } else { None })
            .collect()
    }

    #[test]
    fn every_command_round_trips_canonically() {
        for command in commands() {
            let bytes = command.encode();
            assert_eq!(&bytes[..4], b"VPRP");
            assert_eq!(bytes[4], VERSION);
            assert_eq!(bytes[5], command.kind());
            let decoded = Command::decode(&bytes).expect("decodes");
            assert_eq!(decoded.encode(), bytes, "canonical: {command:?}");
            if let (Command::Execute { params: a, .. }, Command::Execute { params: b, .. }) =
                (&command, &decoded)
            {
                assert_eq!(real_bits(a), real_bits(b), "reals bit-exact");
            } else {
                assert_eq!(decoded, command);
            }
        }
    }

    #[test]
    fn every_outcome_round_trips_canonically() {
        for outcome in outcomes() {
            let bytes = outcome.encode();
            assert_eq!(bytes[5], outcome.kind());
            let decoded = Outcome::decode(&bytes).expect("decodes");
            assert_eq!(decoded.encode(), bytes, "canonical: {outcome:?}");
            if let Outcome::Executed { results, .. } = &decoded {
                let Outcome::Executed { results: original, .. } = &outcome else { unreachable!() };
                for (a, b) in results.iter().zip(original) {
                    for (ra, rb) in a.rows.iter().zip(&b.rows) {
                        assert_eq!(real_bits(ra), real_bits(rb), "reals bit-exact");
                    }
                }
            } else {
                assert_eq!(decoded, outcome);
            }
        }
    }

    #[test]
    fn encoded_lengths_are_the_encodings_lengths() {
        for outcome in outcomes() {
            let bytes = outcome.encode();
            assert_eq!(outcome.encoded_len(), bytes.len(), "{outcome:?}");
            assert_eq!(outcome.try_encode().as_ref(), Some(&bytes));
            if let Outcome::Effects { effects, status } = &outcome {
                let shorter = if status.needs_state.is_none() { 8 } else { 0 };
                assert_eq!(effects_encoded_len(effects), bytes.len() + shorter);
                assert!(effects_fit(effects));
            }
        }
        for effect in tcc::tests::effects() {
            assert_eq!(effect.encoded_len(), effect.to_bytes().len(), "{effect:?}");
        }
        // A reply's rows alone beyond the output: they do not fit.
        let big = tcc::Effect::Refused(String::from_utf8(vec![b'x'; MAX_LEN]).unwrap());
        assert_eq!(
            effects_encoded_len(core::slice::from_ref(&big)),
            HEADER_LEN + 4 + 1 + 4 + MAX_LEN + tcc::MAX_STATUS_LEN
        );
        assert!(!effects_fit(&[big]));
        assert!(effects_fit(&[]));
        let fits = MAX_LEN - (HEADER_LEN + 4 + 1 + 4 + tcc::MAX_STATUS_LEN);
        assert!(effects_fit(&[tcc::Effect::Refused(String::from_utf8(vec![b'x'; fits]).unwrap())]));
    }

    #[test]
    fn reals_keep_their_bits() {
        let command = Command::Execute {
            sql: String::from("?"),
            params: vec![Value::Real(-0.0), Value::Real(f64::from_bits(0x7ff0_0000_0000_0001))],
        };
        let Command::Execute { params, .. } = Command::decode(&command.encode()).unwrap() else {
            panic!("kind changed");
        };
        assert_eq!(real_bits(&params), [Some(0x8000_0000_0000_0000), Some(0x7ff0_0000_0000_0001)]);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for bytes in commands().iter().map(Command::encode) {
            for end in 0..bytes.len() {
                assert!(Command::decode(&bytes[..end]).is_err(), "prefix {end} of {bytes:?}");
            }
        }
        for bytes in outcomes().iter().map(Outcome::encode) {
            for end in 0..bytes.len() {
                assert!(Outcome::decode(&bytes[..end]).is_err(), "prefix {end} of {bytes:?}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        for mut bytes in commands().iter().map(Command::encode) {
            bytes.push(0);
            assert_eq!(Command::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
        }
        for mut bytes in outcomes().iter().map(Outcome::encode) {
            bytes.push(0);
            assert_eq!(Outcome::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let good = Command::Digest.encode();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Command::decode(&bad), Err(DecodeError::BadMagic(u32::from_le_bytes(*b"XPRP"))));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(Command::decode(&bad), Err(DecodeError::UnsupportedVersion(2)));
        let mut bad = good.clone();
        bad[7] = 1;
        assert_eq!(
            Command::decode(&bad),
            Err(DecodeError::Invalid { field: "reserved", value: 0x100 })
        );
        for kind in [0, 12, 0x80, 0x81, 0x88, 0xff] {
            let mut bad = good.clone();
            bad[5] = kind;
            assert_eq!(
                Command::decode(&bad),
                Err(DecodeError::Invalid { field: "command kind", value: kind.into() })
            );
        }
        for kind in [0, 1, 3, 9, 0x80, 0x8c, 0xff] {
            let mut bad = Outcome::Counter { value: 1 }.encode();
            bad[5] = kind;
            assert_eq!(
                Outcome::decode(&bad),
                Err(DecodeError::Invalid { field: "outcome kind", value: kind.into() })
            );
        }
        // A command is no outcome and the other way round.
        assert!(Outcome::decode(&Command::Info.encode()).is_err());
        assert!(Command::decode(&Outcome::Counter { value: 0 }.encode()).is_err());
        // Bad bool, option tag, UTF-8.
        let mut bad = Command::Counter { name: Digest([0; 32]), increment: true }.encode();
        *bad.last_mut().unwrap() = 2;
        assert_eq!(
            Command::decode(&bad),
            Err(DecodeError::Invalid { field: "increment", value: 2 })
        );
        let mut bad = Outcome::refused("ab").encode();
        *bad.last_mut().unwrap() = 0xff;
        assert_eq!(Outcome::decode(&bad), Err(DecodeError::Invalid { field: "reason", value: 1 }));
        let mut bad =
            Outcome::Executed { results: Vec::new(), error: None, update: Vec::new() }.encode();
        bad[12] = 2;
        assert_eq!(Outcome::decode(&bad), Err(DecodeError::Invalid { field: "error", value: 2 }));
    }

    #[test]
    fn limits_are_enforced() {
        let random = Command::Random { len: 4097 }.encode();
        assert_eq!(
            Command::decode(&random),
            Err(DecodeError::TooLarge { field: "random len", value: 4097, max: 4096 })
        );
        let sql = Command::Execute { sql: "x".repeat(MAX_SQL_BYTES + 1), params: Vec::new() };
        assert!(matches!(
            Command::decode(&sql.encode()),
            Err(DecodeError::TooLarge { field: "sql", .. })
        ));
        let sql = Command::Execute { sql: "x".repeat(MAX_SQL_BYTES), params: Vec::new() };
        assert!(Command::decode(&sql.encode()).is_ok());
        let params = Command::Execute { sql: String::new(), params: vec![Value::Null; 1000] };
        assert!(matches!(
            Command::decode(&params.encode()),
            Err(DecodeError::TooLarge { field: "params", value: 1000, .. })
        ));
        let params = Command::Execute { sql: String::new(), params: vec![Value::Null; 999] };
        assert!(Command::decode(&params.encode()).is_ok());
        let reason = Outcome::Refused { reason: "r".repeat(MAX_REASON_BYTES + 1) };
        assert!(Outcome::decode(&reason.encode()).is_err());
        let name = Outcome::Info {
            sqlite_version: "3".repeat(MAX_NAME_BYTES + 1),
            identity: Digest::default(),
            image: String::new(),
        };
        assert!(Outcome::decode(&name.encode()).is_err());
        let random = Outcome::Random { bytes: vec![0; MAX_RANDOM_BYTES + 1] };
        assert!(Outcome::decode(&random.encode()).is_err());
        // Too long as a whole, whatever it holds.
        let mut long = Command::Apply { update: vec![0; MAX_LEN] }.encode();
        assert!(matches!(
            Command::decode(&long),
            Err(DecodeError::TooLarge { field: "message", .. })
        ));
        long.truncate(MAX_LEN);
        assert!(matches!(Command::decode(&long), Err(DecodeError::Truncated { .. })));
        let fits = Command::Apply { update: vec![0; MAX_LEN - HEADER_LEN - 4] }.encode();
        assert!(Command::decode(&fits).is_ok());
        // Sealed blobs, and the limits of the Manager's calls and effects.
        let group = tcc::tests::groups().swap_remove(0);
        let restore = Command::Restore { group: group.clone(), sealed: vec![1; 4124], log: None };
        assert!(Command::decode(&restore.encode()).is_ok());
        let restore = Command::Restore { group, sealed: vec![1; 4125], log: None };
        assert!(matches!(
            Command::decode(&restore.encode()),
            Err(DecodeError::TooLarge { field: "sealed", value: 4125, max: 4124 })
        ));
        let probes = Command::Call(tcc::Call::Probes(Vec::new())).encode();
        let mut many = probes[..HEADER_LEN + 1].to_vec();
        many.extend_from_slice(&65u32.to_le_bytes());
        assert!(matches!(
            Command::decode(&many),
            Err(DecodeError::TooLarge { field: "probes", value: 65, .. })
        ));
        let reason = tcc::Effect::Refused("r".repeat(tcc::MAX_REASON_BYTES + 1));
        assert!(matches!(
            Outcome::decode(
                &Outcome::Effects { effects: vec![reason], status: status(0) }.encode()
            ),
            Err(DecodeError::TooLarge { field: "reason", .. })
        ));
    }

    #[test]
    fn huge_declared_lengths_are_refused_before_allocating() {
        let mut huge = Vec::new();
        for (kind, body) in [
            (1u8, [0xff, 0xff, 0xff, 0xff].as_slice()), // sql length
            (1, &[0, 0, 0, 0, 0xe7, 0x03, 0, 0]),       // 999 params, no bytes for them
            (2, &[0xff, 0xff, 0xff, 0xff]),             // update length
        ] {
            huge.clear();
            huge.extend_from_slice(&header(kind).into_vec());
            huge.extend_from_slice(body);
            assert!(Command::decode(&huge).is_err(), "kind {kind}");
        }
        for body in [
            [0xff, 0xff, 0xff, 0xff].as_slice(),   // u32::MAX results
            &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f], // one result of 2^31 columns
            &[1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // u32::MAX rows
            &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // error message length
            &[0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // update length
        ] {
            huge.clear();
            huge.extend_from_slice(&header(0x81).into_vec());
            huge.extend_from_slice(body);
            assert!(Outcome::decode(&huge).is_err(), "{body:?}");
        }
        // Effects: u32::MAX of them, or a few with no bytes for them.
        for body in [[0xff, 0xff, 0xff, 0xff], [3, 0, 0, 0]] {
            huge.clear();
            huge.extend_from_slice(&header(0x88).into_vec());
            huge.extend_from_slice(&body);
            assert!(
                matches!(Outcome::decode(&huge), Err(DecodeError::Truncated { have: 0, .. })),
                "{body:?}"
            );
        }
    }

    #[test]
    fn clip_stays_on_char_boundaries() {
        assert_eq!(clip_utf8("héllo", 2), "h");
        assert_eq!(clip_utf8("héllo", 3), "hé");
        assert_eq!(clip_utf8("héllo", 100), "héllo");
        assert_eq!(clip_utf8("\u{1f600}", 3), "");
        let long = "é".repeat(MAX_REASON_BYTES);
        let Outcome::Refused { reason } = Outcome::refused(&long) else { panic!() };
        assert_eq!(reason.len(), MAX_REASON_BYTES);
        assert!(Outcome::decode(&Outcome::refused(&long).encode()).is_ok());
    }

    #[test]
    fn fixed_outcomes_fit_the_minimum_capacity() {
        let largest = [
            Outcome::refused(&"x".repeat(2 * MAX_REASON_BYTES)),
            Outcome::Random { bytes: vec![0; MAX_RANDOM_BYTES] },
            Outcome::Info {
                sqlite_version: "v".repeat(MAX_NAME_BYTES),
                identity: Digest::default(),
                image: "i".repeat(MAX_NAME_BYTES),
            },
            Outcome::Digest { digest: Digest::default(), file_size: u64::MAX },
            Outcome::Applied { digest: Digest::default() },
            Outcome::Counter { value: u64::MAX },
            Outcome::Status(tcc::tests::statuses()[1]),
        ];
        for outcome in largest {
            let bytes = outcome.encode();
            assert!(bytes.len() <= MIN_OUTPUT_CAPACITY);
            assert!(Outcome::decode(&bytes).is_ok());
        }
    }

    /// Deterministic mutations of valid encodings: decoding never panics, and whatever
    /// decodes re-encodes to the same bytes.
    #[test]
    fn mutated_inputs_never_panic() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<Vec<u8>> = commands()
            .iter()
            .map(Command::encode)
            .chain(outcomes().iter().map(Outcome::encode))
            .collect();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..6000 {
            let mut bytes = seeds[i % seeds.len()].clone();
            for _ in 0..=(next() % 4) {
                let at = usize::try_from(next()).unwrap_or(0) % (bytes.len() + 1);
                match next() % 6 {
                    0 | 1 if at < bytes.len() => bytes[at] ^= 1 << (next() % 8),
                    2 if at < bytes.len() => {
                        bytes[at] = [0, 0xff, 0x7f, 0x80][usize::from(next().to_le_bytes()[0] % 4)];
                    }
                    3 => bytes.insert(at, next().to_le_bytes()[0]),
                    4 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            match Command::decode(&bytes) {
                Ok(c) => {
                    assert_eq!(c.encode(), bytes);
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
            match Outcome::decode(&bytes) {
                Ok(o) => {
                    assert_eq!(o.encode(), bytes);
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(accepted > 100 && refused > 100, "{accepted} accepted, {refused} refused");
    }
}
