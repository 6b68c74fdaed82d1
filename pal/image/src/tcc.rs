//! The Manager's trusted computing component under the vpr hypervisor: [`vpr_pal::Tcc`] over
//! the PAL services of [`hv`](crate::hv) (`vpr_proto::hypercall::pal::Service`).
//!
//! | [`Tcc`]                        | service                                            |
//! |--------------------------------|----------------------------------------------------|
//! | `identity`                     | `Identity`, read once when the Manager starts      |
//! | `random`                       | `Random` (RDRAND); none: the PAL stops (`ud2`)     |
//! | `attest`                       | `Attest`; a failure stops the PAL (`ud2`)          |
//! | `counter`, `increment`         | `CounterRead`, `CounterIncrement` of the replica's counters [`manager_counter`] names |
//! | `advance`                      | the trait's default: one increment at a time       |
//! | `seal`, `unseal`               | `Seal`, `Unseal`                                   |
//!
//! `random` and `attest` cannot fail in the trait: a PAL that cannot get random bytes or
//! evidence stops rather than use predictable keys or hand out bogus evidence (the trusted
//! code fails only by stopping).

use alloc::format;
use alloc::vec::Vec;

use vpr_pal::{Counter, Tcc, TccError};
use vpr_proto::digest::Digest;
use vpr_proto::hypercall::Status;
use vpr_proto::msg::Attestation;

use crate::hv;

/// The name of a Manager's trusted counter: SHA-256 of its kind, the group's configuration
/// digest C and the replica's id. A group with another configuration (another cluster, size,
/// or TCC keys), even one that shares the cluster's name, has counters of its own and cannot
/// move this group's; the untrusted side's counters ([`untrusted_counter`]) never meet them.
pub fn manager_counter(counter: Counter, config: &Digest, me: u16) -> [u8; 32] {
    let kind: &[u8] = match counter {
        Counter::View => b"vpr manager view counter",
        Counter::State => b"vpr manager state counter",
        Counter::Incarnation => b"vpr manager incarnation counter",
        Counter::Log => b"vpr manager log counter",
    };
    vpr_proto::crypto::hash(&[kind, config.as_bytes(), &me.to_le_bytes()]).0
}

/// The name under which the PAL keeps the counter the untrusted side calls `name` (the
/// `Counter` command of the test image): in a space of its own, apart from the Manager's.
#[cfg(feature = "bare")]
pub fn untrusted_counter(name: &[u8; 32]) -> [u8; 32] {
    vpr_proto::crypto::hash(&[b"vpr untrusted counter", name]).0
}

/// The hypervisor's services as a [`Tcc`].
#[derive(Debug)]
pub struct HvTcc {
    /// The PAL's identity, read once.
    identity: Digest,
    /// The names of the Manager's view, state, incarnation and log counters.
    view: [u8; 32],
    state: [u8; 32],
    incarnation: [u8; 32],
    log: [u8; 32],
}

impl HvTcc {
    /// Reads the PAL's identity (the hypervisor's measurement of the image), for replica
    /// `group.me` of the group `group` describes.
    ///
    /// # Errors
    /// The hypervisor's status.
    pub fn new(group: &vpr_pal::GroupConfig) -> Result<Self, Status> {
        hv::identity().map(|identity| {
            let identity = Digest(identity);
            let config = group.digest(&identity);
            HvTcc {
                identity,
                view: manager_counter(Counter::View, &config, group.me),
                state: manager_counter(Counter::State, &config, group.me),
                incarnation: manager_counter(Counter::Incarnation, &config, group.me),
                log: manager_counter(Counter::Log, &config, group.me),
            }
        })
    }

    /// The name of `counter`.
    fn name(&self, counter: Counter) -> &[u8; 32] {
        match counter {
            Counter::View => &self.view,
            Counter::State => &self.state,
            Counter::Incarnation => &self.incarnation,
            Counter::Log => &self.log,
        }
    }
}

impl Tcc for HvTcc {
    fn identity(&self) -> Digest {
        self.identity
    }

    fn random(&mut self, buf: &mut [u8]) {
        if hv::random(buf).is_err() {
            hv::abort();
        }
    }

    fn attest(&mut self, data: &Digest) -> Attestation {
        match hv::attest(data.as_bytes())
            .ok()
            .and_then(|b| Attestation::from_service_bytes(self.identity, *data, &b))
        {
            Some(evidence) => evidence,
            None => hv::abort(),
        }
    }

    fn counter(&mut self, counter: Counter) -> Result<u64, TccError> {
        hv::counter_read(self.name(counter))
            .map_err(|status| TccError(format!("reading the {counter:?} counter: {status}")))
    }

    fn increment(&mut self, counter: Counter) -> Result<u64, TccError> {
        hv::counter_increment(self.name(counter))
            .map_err(|status| TccError(format!("incrementing the {counter:?} counter: {status}")))
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, TccError> {
        hv::seal(data).map_err(|status| TccError(format!("seal: {status}")))
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<Vec<u8>, TccError> {
        hv::unseal(blob).map_err(|status| TccError(format!("unseal: {status}")))
    }
}
