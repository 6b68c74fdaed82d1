//! The client's side of the protocol: the attested key exchange, authenticated requests, and
//! verifying every reply before using it (docs/protocol.md, "Client session").

use alloc::string::String;
use alloc::vec::Vec;

use rand_core::{CryptoRng, RngCore};

use crate::attest::AttestError;
use crate::crypto::{self, Key, KeyPair, PublicKey};
use crate::digest::Digest;
use crate::msg::{
    ClientHello, ClientId, Outcome, ReadLevel, Reply, Request, StatusReport, StatusRequest, Value,
    Welcome,
};

/// The configuration digest C of a group (docs/protocol.md, "Parties and keys"): what every
/// Manager of the group binds its messages to, and what a client checks its Welcome against.
/// It covers each replica's TCC key by id (`members`), the thesis' certificate vector: a
/// Manager runs only on the TCC its id names, so one TCC cannot hold two ids of a group and
/// a group of other TCCs has another C.
#[allow(clippy::too_many_arguments)]
pub fn config_digest(
    replicas: u16,
    identity: &Digest,
    manufacturer: &PublicKey,
    allow_simulated: bool,
    cluster: &[u8; 32],
    max_in_flight: u32,
    members: &[PublicKey],
) -> Digest {
    let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
    crypto::hash(&[
        b"vpr config",
        &replicas.to_le_bytes(),
        identity.as_bytes(),
        manufacturer,
        &[u8::from(allow_simulated)],
        cluster,
        &max_in_flight.to_le_bytes(),
        &count.to_le_bytes(),
        &members.concat(),
    ])
}

/// What a Welcome's attestation vouches for.
pub fn welcome_data(hello: &ClientHello, w: &Welcome) -> Digest {
    crypto::hash(&[
        b"vpr welcome",
        &hello.nonce,
        &hello.public_key,
        &w.client,
        w.config.as_bytes(),
        &w.view.to_le_bytes(),
        &w.ephemeral,
        &w.sealed_key,
    ])
}

/// The context Kc is sealed under for `client`.
pub fn welcome_context(client: &ClientId) -> Vec<u8> {
    crypto::concat(&[b"vpr welcome key", client])
}

/// What the client trusts: the manufacturer, the service's PAL identity and the group's
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trust {
    /// The group's configuration digest ([`config_digest`] of the client's configuration): a
    /// Welcome from a Manager of another group (another size, cluster or settings) is refused.
    pub config: Digest,
    /// The manufacturer key that certifies TCCs.
    pub manufacturer: PublicKey,
    /// The PAL measurement of the service.
    pub identity: Digest,
    /// Whether simulated TCCs are accepted (development and tests only).
    pub allow_simulated: bool,
}

/// Why the client refused a Welcome or a Reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The Welcome's attestation is not from the trusted service.
    #[error("welcome: {0}")]
    Attestation(#[from] AttestError),
    /// The sealed client key does not open.
    #[error("welcome: the sealed key does not open")]
    SealedKey,
    /// The Welcome comes from a Manager of another group than the configuration's.
    #[error(
        "welcome: from a group whose configuration digest is {theirs}, not this \
         configuration's {ours} (another cluster, size or settings)"
    )]
    Configuration {
        /// The configuration digest the client computed.
        ours: Digest,
        /// The one the Welcome names.
        theirs: Digest,
    },
    /// A reply for another client or request.
    #[error("reply for another request (client, sequence number or request digest differs)")]
    WrongRequest,
    /// A reply whose tag does not verify: altered, forged, or still blinded.
    #[error("reply authenticator does not verify")]
    BadTag,
}

/// A client that said hello and waits for its Welcome.
#[derive(Debug)]
pub struct Pending {
    keys: KeyPair,
    hello: ClientHello,
}

impl Pending {
    /// Starts the key exchange: the hello to send.
    pub fn new(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let keys = KeyPair::generate(rng);
        let mut nonce = [0; 32];
        rng.fill_bytes(&mut nonce);
        Pending { hello: ClientHello { public_key: keys.public(), nonce }, keys }
    }

    /// The message to send.
    pub fn hello(&self) -> &ClientHello {
        &self.hello
    }

    /// Checks the Welcome against what the client trusts and opens its key.
    pub fn finish(&self, welcome: &Welcome, trust: &Trust) -> Result<Session, ClientError> {
        welcome.attestation.verify(
            &trust.manufacturer,
            &trust.identity,
            &welcome_data(&self.hello, welcome),
            trust.allow_simulated,
        )?;
        if welcome.config != trust.config {
            return Err(ClientError::Configuration { ours: trust.config, theirs: welcome.config });
        }
        let key = self
            .keys
            .open_from(&welcome.ephemeral, &welcome_context(&welcome.client), &welcome.sealed_key)
            .ok_or(ClientError::SealedKey)?;
        Ok(Session { client: welcome.client, key, next_seq: 1 })
    }
}

/// An established client session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The client's identity.
    pub client: ClientId,
    key: Key,
    next_seq: u64,
}

impl Session {
    /// A session from stored parts (a client resuming with its identity and key).
    pub fn resume(client: ClientId, key: Key, next_seq: u64) -> Self {
        Session { client, key, next_seq }
    }

    /// The client key (to store for resuming).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// An authenticated request with the next sequence number.
    pub fn request(&mut self, sql: String, params: Vec<Value>) -> Request {
        self.request_at(ReadLevel::default(), sql, params)
    }

    /// A new authenticated request whose reads are answered at `level`.
    pub fn request_at(&mut self, level: ReadLevel, sql: String, params: Vec<Value>) -> Request {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut request = Request { client: self.client, seq, level, sql, params, tag: [0; 32] };
        request.tag = crypto::mac(&self.key, &[&request.signed_bytes()]);
        request
    }

    /// A status question for one replica, with a fresh nonce.
    pub fn status_request(&self, nonce: [u8; 32]) -> StatusRequest {
        let mut request = StatusRequest { client: self.client, nonce, tag: [0; 32] };
        request.tag = crypto::mac(&self.key, &[&request.signed_bytes()]);
        request
    }

    /// Verifies a replica's status report to `request`.
    pub fn verify_status(
        &self,
        request: &StatusRequest,
        report: &StatusReport,
    ) -> Result<(), ClientError> {
        if report.nonce != request.nonce {
            return Err(ClientError::WrongRequest);
        }
        if !crypto::mac_ok(&self.key, &[&report.signed_bytes()], &report.tag) {
            return Err(ClientError::BadTag);
        }
        Ok(())
    }

    /// Verifies a reply to `request`; only a verified outcome may be used.
    pub fn verify<'r>(
        &self,
        request: &Request,
        reply: &'r Reply,
    ) -> Result<&'r Outcome, ClientError> {
        if reply.client != request.client
            || reply.seq != request.seq
            || reply.request != request.digest()
        {
            return Err(ClientError::WrongRequest);
        }
        if !crypto::mac_ok(&self.key, &[&reply.signed_bytes()], &reply.tag) {
            return Err(ClientError::BadTag);
        }
        Ok(&reply.outcome)
    }
}
