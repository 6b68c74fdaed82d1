//! Clients: the attested key exchange, client keys, and the exactly-once table.
//!
//! Client keys are derived from K (`Kc = HMAC(K, "vpr client key" || client_id)`), so every
//! Manager of the group, including a future primary, can authenticate a client without storing
//! its key. The exactly-once table `vpr_session` (client, last seq, the request's digest, last
//! outcome) lives in the database itself: it is written in the same update as the request's
//! own pages, so it replicates with them and survives a primary change. Client SQL cannot
//! touch it (reserved `vpr_` prefix). Every request that could write is recorded, whether or
//! not it wrote: only a request whose statements are all read-only and which completed can
//! run twice harmlessly.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sqlite_shim::Value as SqlValue;
use vpr_proto::client::{welcome_context, welcome_data};
use vpr_proto::crypto::{self, Key, KeyPair};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{ClientHello, ClientId, Outcome, StatusReport, StatusRequest, Welcome, Wire};

use super::{Effect, Manager};
use crate::service::Service;
use crate::tcc::{Tcc, TccRng};

/// Creates the session table. Every Manager does this on its new database before the
/// genesis digest is taken, so genesis states are identical (the Accept checks it).
pub(super) fn create_table(service: &mut Service) -> Result<(), String> {
    service
        .run_internal(
            "CREATE TABLE vpr_session(client BLOB PRIMARY KEY, seq INTEGER NOT NULL, \
             request BLOB NOT NULL, outcome BLOB NOT NULL) WITHOUT ROWID",
            &[],
        )
        .map_err(|e| format!("session table: {e}"))?;
    service.capture().map(drop).map_err(|e| format!("session table: {e}"))
}

/// Kc for a client.
pub(crate) fn client_key(group_key: &Key, client: &ClientId) -> Key {
    crypto::mac(group_key, &[b"vpr client key", client])
}

/// The client's last recorded request: its sequence number, digest and outcome.
pub(super) struct Last {
    pub(super) seq: u64,
    pub(super) request: Digest,
    pub(super) outcome: Outcome,
}

impl<T: Tcc> Manager<T> {
    /// Attested key exchange: a new client identity and its key, sealed to the client.
    pub(super) fn welcome(&mut self, hello: &ClientHello) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        let mut client: ClientId = [0; 16];
        self.tcc.random(&mut client);
        let kc = client_key(&key, &client);
        let ephemeral = KeyPair::generate(&mut TccRng(&mut self.tcc));
        let sealed_key = ephemeral
            .seal_to(&hello.public_key, &welcome_context(&client), &kc)
            .ok_or_else(|| String::from("hello: the client key is not a P-256 point"))?;
        let mut welcome = Welcome {
            client,
            config: self.config,
            view: self.view,
            ephemeral: ephemeral.public(),
            sealed_key,
            attestation: self.tcc.attest(&Digest([0; 32])),
        };
        welcome.attestation = self.tcc.attest(&welcome_data(hello, &welcome));
        Ok(vec![Effect::Welcome(welcome)])
    }

    /// This replica's status, authenticated for the asking client (any replica answers: every
    /// Manager of the group can derive the client's key).
    pub(super) fn status(&mut self, request: &StatusRequest) -> Result<Vec<Effect>, String> {
        let key = *self.group_key()?;
        let kc = client_key(&key, &request.client);
        if !crypto::mac_ok(&kc, &[&request.signed_bytes()], &request.tag) {
            return Err(String::from("status: bad authenticator"));
        }
        let mut report = StatusReport {
            replica: self.group.me,
            view: self.view,
            primary: self.primary(),
            committed: self.committed.0,
            digest: self.service.digest(),
            nonce: request.nonce,
            tag: [0; 32],
        };
        report.tag = crypto::mac(&kc, &[&report.signed_bytes()]);
        Ok(vec![Effect::Status(report)])
    }

    /// The client's entry in the exactly-once table.
    pub(super) fn last(&mut self, client: &ClientId) -> Result<Option<Last>, String> {
        let rows = self
            .service
            .run_internal(
                "SELECT seq, request, outcome FROM vpr_session WHERE client = ?1",
                &[SqlValue::Blob(client.to_vec())],
            )
            .map_err(|e| format!("session table: {e}"))?;
        let Some(row) = rows.first().and_then(|r| r.rows.first()) else { return Ok(None) };
        match (row.first(), row.get(1), row.get(2)) {
            (
                Some(SqlValue::Integer(seq)),
                Some(SqlValue::Blob(request)),
                Some(SqlValue::Blob(bytes)),
            ) => {
                let request = <[u8; 32]>::try_from(request.as_slice())
                    .map_err(|_| String::from("session table: malformed request digest"))?;
                let outcome =
                    Outcome::from_bytes(bytes).map_err(|e| format!("session table: {e}"))?;
                let seq = u64::try_from(*seq)
                    .map_err(|_| String::from("session table: negative sequence number"))?;
                Ok(Some(Last { seq, request: Digest(request), outcome }))
            }
            _ => Err(String::from("session table: malformed row")),
        }
    }

    /// Records the client's latest request and its outcome (in the same update).
    pub(super) fn record(
        &mut self,
        client: &ClientId,
        seq: u64,
        request: &Digest,
        outcome: &Outcome,
    ) -> Result<(), String> {
        let seq = i64::try_from(seq).map_err(|_| String::from("sequence number too large"))?;
        self.service
            .run_internal(
                "INSERT INTO vpr_session(client, seq, request, outcome) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(client) DO UPDATE SET seq = excluded.seq, \
                 request = excluded.request, outcome = excluded.outcome",
                &[
                    SqlValue::Blob(client.to_vec()),
                    SqlValue::Integer(seq),
                    SqlValue::Blob(request.as_bytes().to_vec()),
                    SqlValue::Blob(outcome.to_bytes()),
                ],
            )
            .map(drop)
            .map_err(|e| format!("session table: {e}"))
    }
}
