//! A test TCC for the explorer: every instance ("registration") of one replica shares its
//! trusted counters, sealing secret and attestation key, as twins on one hypervisor do.

use std::cell::RefCell;
use std::rc::Rc;

use vpr_pal::{Counter, Tcc, TccError};
use vpr_proto::crypto::{self, Key, KeyPair, Signature};
use vpr_proto::digest::Digest;
use vpr_proto::msg::Attestation;

/// A deterministic generator (SplitMix64): the same seed gives the same run.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        b
    }
}

impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        u32::try_from(Rng::next_u64(self) >> 32).unwrap_or(0)
    }
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let word = Rng::next_u64(self).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Rng {}

/// What one replica's TCC keeps, shared by all its instances.
#[derive(Debug)]
struct Shared {
    /// Trusted counters by name, found with `==` so new counters need no change here.
    counters: Vec<(Counter, u64)>,
    sealing: Key,
    rng: Rng,
    key: KeyPair,
    certificate: Signature,
}

/// One instance's handle on its replica's TCC; clones share everything.
#[derive(Clone, Debug)]
pub struct SharedTcc {
    shared: Rc<RefCell<Shared>>,
    identity: Digest,
}

impl SharedTcc {
    /// A new TCC for one replica with attestation key `key` (certified by `certificate`),
    /// seeded with `seed`.
    pub fn new(key: KeyPair, certificate: Signature, identity: Digest, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let sealing = rng.bytes32();
        SharedTcc {
            shared: Rc::new(RefCell::new(Shared {
                counters: Vec::new(),
                sealing,
                rng,
                key,
                certificate,
            })),
            identity,
        }
    }

    /// A certified attestation key for a TCC, made from `rng`.
    pub fn certified_key(manufacturer: &KeyPair, rng: &mut Rng) -> (KeyPair, Signature) {
        let key = KeyPair::generate(rng);
        let certificate = manufacturer.sign(&Attestation::certificate_bytes(true, &key.public()));
        (key, certificate)
    }

    /// Every counter that was ever moved, with its value (for state fingerprints).
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        self.shared.borrow().counters.clone()
    }

    fn seal_context(&self) -> Vec<u8> {
        crypto::concat(&[b"vpr explore seal", self.identity.as_bytes()])
    }
}

impl Tcc for SharedTcc {
    fn identity(&self) -> Digest {
        self.identity
    }

    fn random(&mut self, buf: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut self.shared.borrow_mut().rng, buf);
    }

    fn attest(&mut self, data: &Digest) -> Attestation {
        let s = self.shared.borrow();
        Attestation::make(&s.key, s.certificate, true, self.identity, *data)
    }

    fn counter(&mut self, counter: Counter) -> Result<u64, TccError> {
        let s = self.shared.borrow();
        Ok(s.counters.iter().find(|(c, _)| *c == counter).map_or(0, |(_, v)| *v))
    }

    fn increment(&mut self, counter: Counter) -> Result<u64, TccError> {
        let now = self.counter(counter)?;
        self.advance(counter, now + 1)
    }

    fn advance(&mut self, counter: Counter, value: u64) -> Result<u64, TccError> {
        let mut s = self.shared.borrow_mut();
        match s.counters.iter_mut().find(|(c, _)| *c == counter) {
            Some((_, v)) => {
                *v = (*v).max(value);
                Ok(*v)
            }
            None => {
                s.counters.push((counter, value));
                Ok(value)
            }
        }
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, TccError> {
        let context = self.seal_context();
        let mut s = self.shared.borrow_mut();
        let mut nonce = [0; 12];
        rand_core::RngCore::fill_bytes(&mut s.rng, &mut nonce);
        Ok(crypto::aead_seal(&s.sealing, nonce, &context, data))
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<Vec<u8>, TccError> {
        let context = self.seal_context();
        crypto::aead_open(&self.shared.borrow().sealing, &context, blob)
            .ok_or_else(|| TccError("sealed blob refused".into()))
    }
}
