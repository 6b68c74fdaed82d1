//! What the PAL asks of its trusted computing component (thesis Table 2.1): identity,
//! randomness, attestation, sealed storage and trusted counters.
//!
//! The Manager is written against this trait only, so the same code runs on the simulation
//! backend (software, in the host process) and under the hypervisor (hypercalls).

use vpr_proto::digest::Digest;
use vpr_proto::msg::Attestation;

/// A trusted counter the Manager keeps (thesis §5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// The number of primary changes: the primary is `view mod n`.
    View,
    /// The sequence number of the last update this replica committed or applied.
    State,
    /// How many times a Manager of this replica started (registered or restored): only the
    /// newest acts. Not part of the thesis; it makes a twin of a replica unable to act.
    Incarnation,
    /// The number of the last record of a durable replica's log the host confirmed on disk:
    /// a restart needs the log up to it (`durable`). Not part of the thesis.
    Log,
}

/// A TCC service failed (its evidence is in the message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TCC service failed: {0}")]
pub struct TccError(pub alloc::string::String);

/// Services of the TCC, as seen from inside the PAL.
pub trait Tcc {
    /// The measurement of the running PAL (its identity).
    fn identity(&self) -> Digest;
    /// Fills `buf` with random bytes.
    fn random(&mut self, buf: &mut [u8]);
    /// Evidence that this PAL, on a genuine TCC, vouches for `data`.
    fn attest(&mut self, data: &Digest) -> Attestation;
    /// Reads a trusted counter.
    fn counter(&mut self, counter: Counter) -> Result<u64, TccError>;
    /// Increments a trusted counter and returns its new value. Counters never go back.
    fn increment(&mut self, counter: Counter) -> Result<u64, TccError>;
    /// Raises a trusted counter to `value` (state transfer) and returns its new value; a
    /// counter already at or past `value` is left as it is. The default increments one step
    /// at a time, as a TPM NV counter must.
    fn advance(&mut self, counter: Counter, value: u64) -> Result<u64, TccError> {
        let mut now = self.counter(counter)?;
        while now < value {
            now = self.increment(counter)?;
        }
        Ok(now)
    }
    /// Seals `data` to this PAL's identity: only the same PAL on the same TCC can unseal it.
    fn seal(&mut self, data: &[u8]) -> Result<alloc::vec::Vec<u8>, TccError>;
    /// Opens a blob [`Tcc::seal`] made, or refuses it (another PAL, another TCC, altered).
    fn unseal(&mut self, blob: &[u8]) -> Result<alloc::vec::Vec<u8>, TccError>;
}

/// Adapts a [`Tcc`]'s random service to the `rand_core` traits key generation needs.
pub(crate) struct TccRng<'a, T: Tcc + ?Sized>(pub(crate) &'a mut T);

impl<T: Tcc + ?Sized> rand_core::RngCore for TccRng<'_, T> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.0.random(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.0.random(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.random(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.random(dest);
        Ok(())
    }
}

impl<T: Tcc + ?Sized> rand_core::CryptoRng for TccRng<'_, T> {}
