//! The uTPM's keys and what the PAL services do with them, as plain logic the host tests
//! reach: the TCC key and the sealing secret derived from the TPM-held master secret (or made
//! for one boot), attestations in the `Attest` service's layout, uTPM quotes (TPM 2.0
//! formats, `vpr_proto::utpm`) and sealed blobs bound to a PAL identity. The image holds one
//! [`TccKeys`] and answers the services with it (`image/pal.rs`).

use alloc::vec::Vec;
use core::fmt;

use vpr_proto::attest::SERVICE_LEN;
use vpr_proto::crypto::{self, Key, KeyPair, PublicKey, Signature};
use vpr_proto::msg::Attestation;
use vpr_proto::utpm::{self, Quote, QuoteInfo, Upcrs};
use vpr_proto::Digest;

/// The TCC's keys: its attestation key (the TCC key), which certifies itself until a
/// verifier's certificate is installed, and the secret blobs are sealed under.
pub struct TccKeys {
    key: KeyPair,
    /// The key's signature over its own certificate bytes (simulated evidence).
    self_certificate: Signature,
    sealing: Key,
    /// Derived from the TPM-held master secret (else made for one boot).
    pub tpm_bound: bool,
}

impl fmt::Debug for TccKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TccKeys")
            .field("public", &Digest::of(&self.key.public()))
            .field("tpm_bound", &self.tpm_bound)
            .finish()
    }
}

impl TccKeys {
    /// The keys of the TCC whose master secret is `master`: the same on every boot of this
    /// hypervisor on this TPM. The TCC key's secret is HMAC-SHA-256(master, "vpr hv
    /// attestation key" ‖ attempt), the first attempt (a little-endian u32 from 0) that is a
    /// valid P-256 scalar; the sealing secret HMAC-SHA-256(master, "vpr hv sealing secret").
    pub fn derive(master: &[u8; 32]) -> TccKeys {
        let mut attempt = 0u32;
        let key = loop {
            let mut secret =
                crypto::mac(master, &[b"vpr hv attestation key", &attempt.to_le_bytes()]);
            let key = KeyPair::from_secret(&secret);
            secret.fill(0);
            if let Some(key) = key {
                break key;
            }
            attempt = attempt.wrapping_add(1);
        };
        let sealing = crypto::mac(master, &[b"vpr hv sealing secret"]);
        TccKeys::new(key, sealing, true)
    }

    /// Keys for one boot only, from `fill` (32 random bytes a call: the key's secret until
    /// one is a valid P-256 scalar, then the sealing secret).
    pub fn random<E>(mut fill: impl FnMut(&mut [u8; 32]) -> Result<(), E>) -> Result<TccKeys, E> {
        let mut secret = [0; 32];
        let key = loop {
            fill(&mut secret)?;
            if let Some(key) = KeyPair::from_secret(&secret) {
                break key;
            }
        };
        secret.fill(0);
        let mut sealing = [0; 32];
        fill(&mut sealing)?;
        Ok(TccKeys::new(key, sealing, false))
    }

    fn new(key: KeyPair, sealing: Key, tpm_bound: bool) -> TccKeys {
        let self_certificate = key.sign(&Attestation::certificate_bytes(true, &key.public()));
        TccKeys { key, self_certificate, sealing, tpm_bound }
    }

    /// The TCC key's public key (SEC1 uncompressed).
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// What the `Attest` service writes for a PAL of `identity` vouching for `data`: with a
    /// verifier's `certificate` of the TCC key, genuine evidence; without one, simulated
    /// evidence the key certifies itself.
    pub fn attest(
        &self,
        certificate: Option<Signature>,
        identity: Digest,
        data: Digest,
    ) -> [u8; SERVICE_LEN] {
        let (certificate, simulated) = match certificate {
            Some(certificate) => (certificate, false),
            None => (self.self_certificate, true),
        };
        Attestation::make(&self.key, certificate, simulated, identity, data).service_bytes()
    }

    /// A uTPM quote (`vpr_proto::utpm`) of the uPCRs `selection` names, with `nonce_data` (a
    /// verifier's nonce, then the PAL's data) as `extraData`, signed by the TCC key; the
    /// first 8 bytes of the `hypervisor`'s measurement are its `firmwareVersion`.
    pub fn quote(
        &self,
        hypervisor: &[u8; 32],
        nonce_data: &[u8; 64],
        selection: u8,
        upcrs: &Upcrs,
    ) -> Quote {
        let mut firmware = [0; 8];
        firmware.copy_from_slice(&hypervisor[..8]);
        let info = QuoteInfo {
            qualified_signer: utpm::signer_name(&self.key.public()).to_vec(),
            extra_data: nonce_data.to_vec(),
            reset_count: 0,
            firmware_version: u64::from_be_bytes(firmware),
            pcr_select: [selection, 0, 0],
            pcr_digest: utpm::pcr_digest(&upcrs.selected(selection)),
        };
        Quote::sign(&self.key, &info)
    }

    /// The key blobs of `identity` are sealed under, and the data they are bound to.
    fn sealing_for(&self, identity: &[u8; 32]) -> (Key, Vec<u8>) {
        let key = crypto::mac(&self.sealing, &[b"vpr hv seal key", identity]);
        (key, crypto::concat(&[b"vpr hv seal", identity]))
    }

    /// `data` sealed for the PAL of `identity` (ChaCha20-Poly1305 with `nonce`, under a key
    /// of that identity's): only the same identity on a TCC of the same keys opens it.
    pub fn seal(&self, identity: &[u8; 32], nonce: [u8; 12], data: &[u8]) -> Vec<u8> {
        let (key, aad) = self.sealing_for(identity);
        crypto::aead_seal(&key, nonce, &aad, data)
    }

    /// What [`TccKeys::seal`] sealed for `identity`; `None` for a blob of another identity or
    /// TCC, or one changed.
    pub fn unseal(&self, identity: &[u8; 32], blob: &[u8]) -> Option<Vec<u8>> {
        let (key, aad) = self.sealing_for(identity);
        crypto::aead_open(&key, &aad, blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_the_master_secrets_and_no_others() {
        let (a, b) = (TccKeys::derive(&[1; 32]), TccKeys::derive(&[1; 32]));
        assert_eq!(a.public(), b.public());
        assert!(a.tpm_bound);
        let other = TccKeys::derive(&[2; 32]);
        assert_ne!(a.public(), other.public());
        // The key is the one the documented derivation gives.
        let secret = crypto::mac(&[1; 32], &[b"vpr hv attestation key", &0u32.to_le_bytes()]);
        assert_eq!(a.public(), KeyPair::from_secret(&secret).unwrap().public());
    }

    #[test]
    fn random_keys_retry_an_invalid_scalar() {
        // All ones is above the P-256 order: the next fill is used.
        let mut fills = [[0xFF; 32], [3; 32], [4; 32]].into_iter();
        let keys = TccKeys::random(|out| {
            *out = fills.next().ok_or(())?;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(keys.public(), KeyPair::from_secret(&[3; 32]).unwrap().public());
        assert!(!keys.tpm_bound);
        assert_eq!(TccKeys::random(|_| Err::<(), _>("no random")).unwrap_err(), "no random");
    }

    #[test]
    fn sealed_blobs_open_for_the_same_identity_and_keys_only() {
        let keys = TccKeys::derive(&[1; 32]);
        let blob = keys.seal(&[5; 32], [9; 12], b"secret");
        assert_eq!(blob.len(), b"secret".len() + 28);
        assert_eq!(keys.unseal(&[5; 32], &blob).as_deref(), Some(&b"secret"[..]));
        assert_eq!(
            TccKeys::derive(&[1; 32]).unseal(&[5; 32], &blob).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(keys.unseal(&[6; 32], &blob), None, "another PAL");
        assert_eq!(TccKeys::derive(&[2; 32]).unseal(&[5; 32], &blob), None, "another TCC");
        let mut changed = blob.clone();
        changed[20] ^= 1;
        assert_eq!(keys.unseal(&[5; 32], &changed), None, "changed");
    }

    #[test]
    fn attestations_are_simulated_until_certified_and_verify() {
        let keys = TccKeys::derive(&[1; 32]);
        let (identity, data) = (Digest([7; 32]), Digest([8; 32]));
        let bytes = keys.attest(None, identity, data);
        let simulated = Attestation::from_service_bytes(identity, data, &bytes).unwrap();
        assert!(simulated.simulated);
        assert_eq!(simulated.tcc_key, keys.public());
        // Self-certified: the TCC key is its own manufacturer.
        assert!(simulated.verify(&keys.public(), &identity, &data, true).is_ok());
        assert!(simulated.verify(&keys.public(), &identity, &data, false).is_err());
        // With a CA's certificate of the key: genuine.
        let ca = KeyPair::from_secret(&[9; 32]).unwrap();
        let certificate = ca.sign(&Attestation::certificate_bytes(false, &keys.public()));
        let bytes = keys.attest(Some(certificate), identity, data);
        let genuine = Attestation::from_service_bytes(identity, data, &bytes).unwrap();
        assert!(!genuine.simulated);
        assert!(genuine.verify(&ca.public(), &identity, &data, false).is_ok());
        assert!(genuine.verify(&ca.public(), &identity, &Digest([0; 32]), false).is_err());
    }

    #[test]
    fn quotes_verify_over_the_selected_upcrs() {
        let keys = TccKeys::derive(&[1; 32]);
        let upcrs = Upcrs::new(&[7; 32]);
        let hypervisor = [0xAB; 32];
        let quote = keys.quote(&hypervisor, &[4; 64], 1, &upcrs);
        let info = quote.verify(&keys.public(), &upcrs.selected(1)).unwrap();
        assert_eq!(info.extra_data, [4; 64].to_vec());
        assert_eq!(info.firmware_version, u64::from_be_bytes([0xAB; 8]));
        assert_eq!(info.pcr_select, [1, 0, 0]);
        assert_eq!(info.qualified_signer, utpm::signer_name(&keys.public()).to_vec());
        let other = TccKeys::derive(&[2; 32]).public();
        assert!(quote.verify(&other, &upcrs.selected(1)).is_err());
        assert!(quote.verify(&keys.public(), &Upcrs::new(&[8; 32]).selected(1)).is_err());
    }
}
