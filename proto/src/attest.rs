//! Checking attestations: a TCC key certified by the manufacturer, and that key's signature
//! over a PAL identity and report data (docs/protocol.md, "Parties and keys").

use crate::crypto::{self, KeyPair, PublicKey};
use crate::digest::Digest;
use crate::msg::Attestation;

/// Why an attestation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// Simulated evidence where genuine evidence is required.
    #[error("simulated evidence is not accepted")]
    Simulated,
    /// The TCC key is not certified by the trusted manufacturer.
    #[error("the TCC key is not certified by the trusted manufacturer")]
    Certificate,
    /// The signature over identity and data does not verify.
    #[error("the attestation signature does not verify")]
    Signature,
    /// Another PAL produced it.
    #[error("unexpected PAL identity {0}")]
    Identity(Digest),
    /// It vouches for other data.
    #[error("the attestation is over other data")]
    Data,
}

/// Bytes of an attestation as the hypervisor's `Attest` service writes it
/// ([`crate::hypercall::pal::ATTESTATION_LEN`]): whether it is simulated (1 byte, 0 or 1),
/// the TCC key (65, SEC1 uncompressed), its certificate (64) and the signature (64). The
/// identity and data are the caller's (the PAL's own and what it asked to vouch for).
pub const SERVICE_LEN: usize = 1 + 65 + 64 + 64;

const _: () = assert!(SERVICE_LEN as u64 == crate::hypercall::pal::ATTESTATION_LEN);

impl Attestation {
    /// The attestation as the `Attest` service writes it ([`SERVICE_LEN`] bytes).
    pub fn service_bytes(&self) -> [u8; SERVICE_LEN] {
        let mut out = [0; SERVICE_LEN];
        out[0] = u8::from(self.simulated);
        out[1..66].copy_from_slice(&self.tcc_key);
        out[66..130].copy_from_slice(&self.certificate);
        out[130..].copy_from_slice(&self.signature);
        out
    }

    /// The attestation of `identity` over `data` in what the `Attest` service wrote; `None`
    /// if its first byte is neither 0 nor 1. Nothing is verified here ([`Attestation::verify`]).
    pub fn from_service_bytes(
        identity: Digest,
        data: Digest,
        bytes: &[u8; SERVICE_LEN],
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

    /// Makes an attestation (what a TCC does): `tcc` signs `identity` and `data`;
    /// `certificate` is the manufacturer's signature over the TCC key.
    pub fn make(
        tcc: &KeyPair,
        certificate: crypto::Signature,
        simulated: bool,
        identity: Digest,
        data: Digest,
    ) -> Attestation {
        let signature = tcc.sign(&Attestation::signed_bytes(simulated, &identity, &data));
        Attestation { simulated, identity, data, tcc_key: tcc.public(), certificate, signature }
    }

    /// Checks the evidence against the manufacturer's key, the expected PAL identity and the
    /// expected data. Simulated evidence passes only with `allow_simulated`.
    pub fn verify(
        &self,
        manufacturer: &PublicKey,
        identity: &Digest,
        data: &Digest,
        allow_simulated: bool,
    ) -> Result<(), AttestError> {
        if self.simulated && !allow_simulated {
            return Err(AttestError::Simulated);
        }
        let cert = Attestation::certificate_bytes(self.simulated, &self.tcc_key);
        if !crypto::verify(manufacturer, &cert, &self.certificate) {
            return Err(AttestError::Certificate);
        }
        let signed = Attestation::signed_bytes(self.simulated, &self.identity, &self.data);
        if !crypto::verify(&self.tcc_key, &signed, &self.signature) {
            return Err(AttestError::Signature);
        }
        if self.identity != *identity {
            return Err(AttestError::Identity(self.identity));
        }
        if self.data != *data {
            return Err(AttestError::Data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_bytes_round_trip_and_refuse_a_bad_flag() {
        let tcc = KeyPair::from_secret(&[7; 32]).unwrap();
        let (identity, data) = (Digest([1; 32]), Digest([2; 32]));
        for simulated in [false, true] {
            let a = Attestation::make(&tcc, [9; 64], simulated, identity, data);
            let bytes = a.service_bytes();
            assert_eq!(bytes[0], u8::from(simulated));
            assert_eq!(Attestation::from_service_bytes(identity, data, &bytes), Some(a));
        }
        let mut bytes = Attestation::make(&tcc, [9; 64], false, identity, data).service_bytes();
        bytes[0] = 2;
        assert_eq!(Attestation::from_service_bytes(identity, data, &bytes), None);
    }
}
