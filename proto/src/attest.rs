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

impl Attestation {
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
