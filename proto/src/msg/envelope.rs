//! [`Message`]: the network framing of every protocol message (header layout in the
//! [`msg`](super) module docs).

use alloc::vec::Vec;

use super::codec::{to_u64, Wire};
use super::{
    Accept, Ack, AckInit, ClientHello, Commit, Join, NewView, Probe, Reply, Request, Snapshot,
    StateRequest, StatusReport, StatusRequest, Update, ViewChange, Welcome,
};
use crate::wire::{DecodeError, Reader, Writer};

/// First four bytes of an encoded [`Message`].
pub const WIRE_MAGIC: [u8; 4] = *b"VPRM";
/// The [`Message`] format version this crate reads and writes.
pub const WIRE_VERSION: u8 = 1;
/// Length of a [`Message`]'s header: magic, version, kind, reserved.
pub const WIRE_HEADER_LEN: usize = 8;
/// Longest encoded [`Message`] accepted: room for a largest state update and its entries.
pub const MAX_WIRE_BYTES: usize = (1 << 30) + (1 << 20);

/// Any protocol message, as it travels between parties.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Kind 1: a client's request.
    Request(Request),
    /// Kind 2: the service's reply.
    Reply(Reply),
    /// Kind 3: a client's first message.
    ClientHello(ClientHello),
    /// Kind 4: the answer to a [`ClientHello`].
    Welcome(Welcome),
    /// Kind 5: a backup's request to join.
    Join(Join),
    /// Kind 6: the primary's answer to the joins.
    Accept(Accept),
    /// Kind 7: a backup's confirmation of the initialization.
    AckInit(AckInit),
    /// Kind 8: a state update.
    Update(Update),
    /// Kind 9: a backup's acknowledgement of an update.
    Ack(Ack),
    /// Kind 10: the primary's commit notice.
    Commit(Commit),
    /// Kind 11: a client's status question to one replica.
    StatusRequest(StatusRequest),
    /// Kind 12: a replica's authenticated status.
    StatusReport(StatusReport),
    /// Kind 13: a backup's suspicion of the primary.
    Probe(Probe),
    /// Kind 14: a replica's account to the new primary.
    ViewChange(ViewChange),
    /// Kind 15: the new primary's announcement.
    NewView(NewView),
    /// Kind 16: a lagging replica asks for state.
    StateRequest(StateRequest),
    /// Kind 17: a replica's committed state, whole.
    Snapshot(Snapshot),
}

impl Message {
    /// The header's `kind` byte for this message (1 to 15, in declaration order).
    #[must_use]
    pub const fn kind(&self) -> u8 {
        match self {
            Message::Request(_) => 1,
            Message::Reply(_) => 2,
            Message::ClientHello(_) => 3,
            Message::Welcome(_) => 4,
            Message::Join(_) => 5,
            Message::Accept(_) => 6,
            Message::AckInit(_) => 7,
            Message::Update(_) => 8,
            Message::Ack(_) => 9,
            Message::Commit(_) => 10,
            Message::StatusRequest(_) => 11,
            Message::StatusReport(_) => 12,
            Message::Probe(_) => 13,
            Message::ViewChange(_) => 14,
            Message::NewView(_) => 15,
            Message::StateRequest(_) => 16,
            Message::Snapshot(_) => 17,
        }
    }

    /// The header followed by the message's canonical encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.to_bytes()
    }

    /// Decodes one message that spans exactly `bytes`. Never panics.
    ///
    /// # Errors
    /// In the order they are checked:
    /// - [`DecodeError::TooLarge`] `{ field: "message_len" }` if `bytes` is longer than
    ///   [`MAX_WIRE_BYTES`];
    /// - [`DecodeError::Truncated`] if the header is incomplete;
    /// - [`DecodeError::BadMagic`] (the first four bytes as a little-endian `u32`),
    ///   [`DecodeError::UnsupportedVersion`], [`DecodeError::Invalid`] `{ field: "kind" }`
    ///   and `{ field: "reserved" }` for the header;
    /// - the errors of the body's [`Wire::get`];
    /// - [`DecodeError::TrailingBytes`] after the body.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_WIRE_BYTES {
            return Err(DecodeError::TooLarge {
                field: "message_len",
                value: to_u64(bytes.len()),
                max: to_u64(MAX_WIRE_BYTES),
            });
        }
        Self::from_bytes(bytes)
    }
}

impl Wire for Message {
    fn put(&self, w: &mut Writer) {
        w.bytes(&WIRE_MAGIC).u8(WIRE_VERSION).u8(self.kind()).u16(0);
        match self {
            Message::Request(m) => m.put(w),
            Message::Reply(m) => m.put(w),
            Message::ClientHello(m) => m.put(w),
            Message::Welcome(m) => m.put(w),
            Message::Join(m) => m.put(w),
            Message::Accept(m) => m.put(w),
            Message::AckInit(m) => m.put(w),
            Message::Update(m) => m.put(w),
            Message::Ack(m) => m.put(w),
            Message::Commit(m) => m.put(w),
            Message::StatusRequest(m) => m.put(w),
            Message::StatusReport(m) => m.put(w),
            Message::Probe(m) => m.put(w),
            Message::ViewChange(m) => m.put(w),
            Message::NewView(m) => m.put(w),
            Message::StateRequest(m) => m.put(w),
            Message::Snapshot(m) => m.put(w),
        }
    }

    /// Reads the header and the body (without [`Message::decode`]'s length check).
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let magic = r.array::<4>()?;
        if magic != WIRE_MAGIC {
            return Err(DecodeError::BadMagic(u32::from_le_bytes(magic)));
        }
        let version = r.u8()?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        let body: fn(&mut Reader<'_>) -> Result<Message, DecodeError> = match kind {
            1 => |r| Request::get(r).map(Message::Request),
            2 => |r| Reply::get(r).map(Message::Reply),
            3 => |r| ClientHello::get(r).map(Message::ClientHello),
            4 => |r| Welcome::get(r).map(Message::Welcome),
            5 => |r| Join::get(r).map(Message::Join),
            6 => |r| Accept::get(r).map(Message::Accept),
            7 => |r| AckInit::get(r).map(Message::AckInit),
            8 => |r| Update::get(r).map(Message::Update),
            9 => |r| Ack::get(r).map(Message::Ack),
            10 => |r| Commit::get(r).map(Message::Commit),
            11 => |r| StatusRequest::get(r).map(Message::StatusRequest),
            12 => |r| StatusReport::get(r).map(Message::StatusReport),
            13 => |r| Probe::get(r).map(Message::Probe),
            14 => |r| ViewChange::get(r).map(Message::ViewChange),
            15 => |r| NewView::get(r).map(Message::NewView),
            16 => |r| StateRequest::get(r).map(Message::StateRequest),
            17 => |r| Snapshot::get(r).map(Message::Snapshot),
            _ => return Err(DecodeError::Invalid { field: "kind", value: u64::from(kind) }),
        };
        let reserved = r.u16()?;
        if reserved != 0 {
            return Err(DecodeError::Invalid { field: "reserved", value: u64::from(reserved) });
        }
        body(r)
    }
}

macro_rules! from_message {
    ($($kind:ident),* $(,)?) => {
        $(
            impl From<$kind> for Message {
                #[doc = concat!("Wraps a [`", stringify!($kind), "`].")]
                fn from(m: $kind) -> Self {
                    Message::$kind(m)
                }
            }
        )*
    };
}

from_message!(
    Request,
    Reply,
    ClientHello,
    Welcome,
    Join,
    Accept,
    AckInit,
    Update,
    Ack,
    Commit,
    StatusRequest,
    StatusReport,
    Probe,
    ViewChange,
    NewView,
    StateRequest,
    Snapshot
);
