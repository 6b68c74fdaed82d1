//! Initialization (thesis §5.2.3, Fig 5.3): mutual attestation, the group key K sealed to
//! each backup's attested key, and a majority acknowledging the initial state.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_proto::crypto::{self, KeyPair};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{Accept, AckInit, Attestation, Join, KeyGrant, ReplicaId, Wire};

use super::{Effect, Manager, Phase};
use crate::tcc::{Tcc, TccRng};

/// What a Join's attestation vouches for.
fn join_data(config: &Digest, replica: ReplicaId, public_key: &crypto::PublicKey) -> Digest {
    crypto::hash(&[b"vpr join", config.as_bytes(), &replica.to_le_bytes(), public_key])
}

/// The context K is sealed under for one replica.
fn grant_context(config: &Digest, replica: ReplicaId) -> Vec<u8> {
    crypto::concat(&[b"vpr grant", config.as_bytes(), &replica.to_le_bytes()])
}

fn ack_init_tag(key: &crypto::Key, replica: ReplicaId, accept: &Digest) -> crypto::Tag {
    crypto::mac(key, &[b"vpr ackinit", &replica.to_le_bytes(), accept.as_bytes()])
}

impl<T: Tcc> Manager<T> {
    /// Backup: a fresh key pair, attested with the configuration (Fig 5.3, first Bi → P).
    pub(super) fn join(&mut self) -> Result<Vec<Effect>, String> {
        if !matches!(self.phase, Phase::New) || self.is_primary() {
            return Err(String::from("join: only a new backup joins"));
        }
        let keys = KeyPair::generate(&mut TccRng(&mut self.tcc));
        let public_key = keys.public();
        let attestation = self.tcc.attest(&join_data(&self.config, self.group.me, &public_key));
        self.phase = Phase::Joining(keys);
        Ok(vec![Effect::Join(Join { replica: self.group.me, public_key, attestation })])
    }

    /// Primary: checks the Joins, makes K, seals it to every joined backup (Fig 5.3, P → Bi).
    pub(super) fn accept(
        &mut self,
        joins: &[Join],
        require_all: bool,
    ) -> Result<Vec<Effect>, String> {
        if !matches!(self.phase, Phase::New) || !self.is_primary() {
            return Err(String::from("accept: only a new primary accepts joins"));
        }
        let mut valid: Vec<&Join> = Vec::new();
        let mut invalid: Vec<ReplicaId> = Vec::new();
        for join in joins {
            let data = join_data(&self.config, join.replica, &join.public_key);
            // The Join must come from the TCC the configuration names for its id.
            let ok = join.replica < self.group.replicas
                && join.replica != self.group.me
                && !valid.iter().any(|j| j.replica == join.replica)
                && self.group.members.get(usize::from(join.replica))
                    == Some(&join.attestation.tcc_key)
                && join
                    .attestation
                    .verify(
                        &self.group.manufacturer,
                        &self.identity,
                        &data,
                        self.group.allow_simulated,
                    )
                    .is_ok();
            if ok {
                valid.push(join);
            } else {
                invalid.push(join.replica);
            }
        }
        if require_all && valid.len() + 1 < usize::from(self.group.replicas) {
            return Ok(vec![Effect::InvalidJoins(invalid)]);
        }
        if valid.len() < self.group.faults() {
            return Err(format!(
                "accept: {} valid joins, {} needed",
                valid.len(),
                self.group.faults()
            ));
        }
        let mut key = [0u8; 32];
        self.tcc.random(&mut key);
        let ephemeral = KeyPair::generate(&mut TccRng(&mut self.tcc));
        let mut grants = Vec::with_capacity(valid.len());
        for join in valid {
            let context = grant_context(&self.config, join.replica);
            let sealed_key =
                ephemeral.seal_to(&join.public_key, &context, &key).ok_or_else(|| {
                    format!("accept: replica {}'s key is not a P-256 point", join.replica)
                })?;
            grants.push(KeyGrant { replica: join.replica, sealed_key });
        }
        grants.sort_by_key(|g| g.replica);
        let mut accept = Accept {
            config: self.config,
            genesis: self.committed.1,
            ephemeral: ephemeral.public(),
            grants,
            attestation: Attestation {
                simulated: false,
                identity: Digest([0; 32]),
                data: Digest([0; 32]),
                tcc_key: [0; 65],
                certificate: [0; 64],
                signature: [0; 64],
            },
        };
        accept.attestation = self.tcc.attest(&crypto::hash(&[&accept.signed_bytes()]));
        self.key = Some(key);
        if self.group.faults() == 0 {
            // A single replica needs no acknowledgement.
            self.phase = Phase::Ready;
            self.start_log()?;
            let sealed = self.sealed_state()?;
            return Ok(vec![Effect::Accept(accept), Effect::Ready, sealed]);
        }
        self.phase = Phase::Accepting { accept: Digest::of(&accept.to_bytes()), acked: Vec::new() };
        Ok(vec![Effect::Accept(accept)])
    }

    /// Backup: checks the Accept, takes K, confirms (Fig 5.3, second Bi → P).
    pub(super) fn on_accept(&mut self, accept: &Accept) -> Result<Vec<Effect>, String> {
        let Phase::Joining(keys) = &self.phase else {
            return Err(String::from("accept: not waiting for one"));
        };
        let data = crypto::hash(&[&accept.signed_bytes()]);
        accept
            .attestation
            .verify(&self.group.manufacturer, &self.identity, &data, self.group.allow_simulated)
            .map_err(|e| format!("accept: {e}"))?;
        if accept.config != self.config {
            return Err(String::from("accept: another configuration"));
        }
        if self.group.members.get(usize::from(self.primary())) != Some(&accept.attestation.tcc_key)
        {
            return Err(String::from(
                "accept: not from the TCC the configuration names for the primary",
            ));
        }
        if accept.genesis != self.committed.1 {
            return Err(String::from("accept: another initial state"));
        }
        let me = self.group.me;
        let grant = accept
            .grants
            .iter()
            .find(|g| g.replica == me)
            .ok_or_else(|| String::from("accept: no key for this replica"))?;
        let key = keys
            .open_from(&accept.ephemeral, &grant_context(&self.config, me), &grant.sealed_key)
            .ok_or_else(|| String::from("accept: the sealed key does not open"))?;
        let digest = Digest::of(&accept.to_bytes());
        self.key = Some(key);
        self.phase = Phase::Ready;
        let tag = ack_init_tag(&key, me, &digest);
        self.start_log()?;
        let sealed = self.sealed_state()?;
        Ok(vec![
            Effect::AckInit(AckInit { replica: me, accept: digest, tag }),
            Effect::Ready,
            sealed,
        ])
    }

    /// Primary: counts AckInits; with f of them the group is formed.
    pub(super) fn on_ack_init(&mut self, ack: &AckInit) -> Result<Vec<Effect>, String> {
        let f = self.group.faults();
        if matches!(self.phase, Phase::Ready) && self.is_primary() {
            return Ok(Vec::new()); // a late AckInit: the group is already formed
        }
        let (Phase::Accepting { accept, acked }, Some(key)) = (&mut self.phase, &self.key) else {
            return Err(String::from("ackinit: not waiting for any"));
        };
        if ack.accept != *accept || ack_init_tag(key, ack.replica, &ack.accept) != ack.tag {
            return Err(String::from("ackinit: bad authenticator"));
        }
        if !acked.contains(&ack.replica) {
            acked.push(ack.replica);
        }
        if acked.len() >= f {
            self.phase = Phase::Ready;
            self.start_log()?;
            return Ok(vec![Effect::Ready, self.sealed_state()?]);
        }
        Ok(Vec::new())
    }
}
