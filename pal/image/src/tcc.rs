//! The Manager's trusted computing component under the vpr hypervisor: [`vpr_pal::Tcc`] over
//! the PAL services of [`hv`](crate::hv) (`vpr_proto::hypercall::pal::Service`).
//!
//! | [`Tcc`]                        | service                                            |
//! |--------------------------------|----------------------------------------------------|
//! | `identity`                     | `Identity`, read once when the Manager starts      |
//! | `random`                       | `Random` (RDRAND); none: the PAL stops (`ud2`)     |
//! | `attest`                       | `Attest`; a failure stops the PAL (`ud2`)          |
//! | `counter`, `increment`         | `CounterRead`, `CounterIncrement`: [`Counter::View`] is hypervisor counter [`VIEW_COUNTER`], [`Counter::State`] is [`STATE_COUNTER`] |
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

/// The hypervisor counter that holds the Manager's view.
pub const VIEW_COUNTER: u32 = 0;
/// The hypervisor counter that holds the Manager's state (last committed update).
pub const STATE_COUNTER: u32 = 1;
/// The first counter the Manager does not use: the `Counter` command may reach only these.
pub const FIRST_FREE_COUNTER: u32 = 2;
const _: () = assert!(VIEW_COUNTER < FIRST_FREE_COUNTER && STATE_COUNTER < FIRST_FREE_COUNTER);

/// The hypervisor's services as a [`Tcc`].
#[derive(Debug)]
pub struct HvTcc {
    /// The PAL's identity, read once.
    identity: Digest,
}

impl HvTcc {
    /// Reads the PAL's identity (the hypervisor's measurement of the image).
    ///
    /// # Errors
    /// The hypervisor's status.
    pub fn new() -> Result<Self, Status> {
        hv::identity().map(|identity| HvTcc { identity: Digest(identity) })
    }
}

/// The hypervisor counter that holds `counter`.
const fn index(counter: Counter) -> u32 {
    match counter {
        Counter::View => VIEW_COUNTER,
        Counter::State => STATE_COUNTER,
    }
}

/// Reads the bytes of the `Attest` service as evidence for `data` from the PAL `identity`;
/// `None` if they break the ABI (a `simulated` byte other than 0 or 1).
fn attestation(
    identity: Digest,
    data: Digest,
    bytes: &[u8; hv::ATTESTATION_LEN],
) -> Option<Attestation> {
    let (&simulated, rest) = bytes.split_first()?;
    let simulated = match simulated {
        0 => false,
        1 => true,
        _ => return None,
    };
    let (tcc_key, rest) = rest.split_first_chunk()?;
    let (certificate, rest) = rest.split_first_chunk()?;
    let signature = rest.try_into().ok()?;
    Some(Attestation {
        simulated,
        identity,
        data,
        tcc_key: *tcc_key,
        certificate: *certificate,
        signature,
    })
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
        match hv::attest(data.as_bytes()).ok().and_then(|b| attestation(self.identity, *data, &b)) {
            Some(evidence) => evidence,
            None => hv::abort(),
        }
    }

    fn counter(&mut self, counter: Counter) -> Result<u64, TccError> {
        hv::counter_read(index(counter))
            .map_err(|status| TccError(format!("reading the {counter:?} counter: {status}")))
    }

    fn increment(&mut self, counter: Counter) -> Result<u64, TccError> {
        hv::counter_increment(index(counter))
            .map_err(|status| TccError(format!("incrementing the {counter:?} counter: {status}")))
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, TccError> {
        hv::seal(data).map_err(|status| TccError(format!("seal: {status}")))
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<Vec<u8>, TccError> {
        hv::unseal(blob).map_err(|status| TccError(format!("unseal: {status}")))
    }
}
