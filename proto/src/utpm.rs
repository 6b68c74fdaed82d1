//! The uTPM's attestation format, in TPM 2.0 structures ([`crate::tpm2`]): micro-PCRs
//! (uPCRs) per PAL and signed quotes over them, shared by the hypervisor (which makes uTPM
//! quotes and reads the TPM's), the simulation backend and `vpr verify`.
//!
//! A uTPM quote is what TPM2_Quote would return (TPM 2.0 Part 3 §18.4) had the PAL's uPCRs
//! been a TPM's SHA-256 PCR bank and the TCC key a TPM's ECDSA P-256 signing key: a
//! `TPMS_ATTEST` (Part 2 §10.12.12) of type `TPM_ST_ATTEST_QUOTE` and a `TPMT_SIGNATURE`
//! (Part 2 §11.3.4) over its SHA-256 digest. So stock tools (`tpm2_checkquote`) check it with
//! the TCC key's public key. Its fields:
//!
//! | field | value |
//! | --- | --- |
//! | `magic` | `TPM_GENERATED_VALUE` |
//! | `type` | `TPM_ST_ATTEST_QUOTE` |
//! | `qualifiedSigner` | `TPM_ALG_SHA256` ‖ SHA-256 of the TCC public key (SEC1 uncompressed) |
//! | `extraData` | the verifier's 32-byte nonce ‖ the PAL's 32 bytes of data |
//! | `clockInfo` | zeros, `safe` = 1 (the uTPM keeps no clock) |
//! | `firmwareVersion` | the first 8 bytes of the hypervisor's measurement |
//! | `attested` | a `TPMS_QUOTE_INFO`: the uPCR selection (SHA-256 bank, 3 bytes) and SHA-256 of the selected uPCRs |
//!
//! uPCR 0 holds the PAL's identity from its registration on (SHA-256(0³² ‖ identity)), so a
//! quote that selects it names the PAL; the PAL extends the others as it likes.

use alloc::vec::Vec;

use crate::crypto::{self, PublicKey, Signature};
use crate::tpm2::{self, Reader, Writer, MAX_ATTEST};

/// What a quote's `TPMS_ATTEST` says (its format is TPM 2.0's: [`tpm2::QuoteInfo`]).
pub use crate::tpm2::QuoteInfo;

/// uPCRs per PAL.
pub const UPCRS: usize = 8;
/// The uPCR that holds the PAL's identity.
pub const IDENTITY_UPCR: usize = 0;

/// Why a quote was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The bytes are not the structure they should be.
    #[error("malformed quote: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the key.
    #[error("the quote's signature does not verify")]
    Signature,
    /// The PCR values given do not hash to the quote's `pcrDigest`.
    #[error("the PCR values do not match the quote's pcrDigest")]
    PcrDigest,
}

impl From<tpm2::Error> for QuoteError {
    fn from(e: tpm2::Error) -> Self {
        QuoteError::Malformed(e.what())
    }
}

/// A PAL's uPCRs: SHA-256 registers that only grow by extension and start at zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upcrs {
    values: [[u8; 32]; UPCRS],
}

impl Upcrs {
    /// The uPCRs of a PAL just registered: all zero, then `identity` extended into
    /// [`IDENTITY_UPCR`].
    #[must_use]
    pub fn new(identity: &[u8; 32]) -> Upcrs {
        let mut upcrs = Upcrs { values: [[0; 32]; UPCRS] };
        upcrs.values[IDENTITY_UPCR] = extended(&[0; 32], identity);
        upcrs
    }

    /// uPCR `index`, if there is one.
    #[must_use]
    pub fn read(&self, index: usize) -> Option<[u8; 32]> {
        self.values.get(index).copied()
    }

    /// Extends uPCR `index` with `digest` (TPM 2.0 Part 1, "PCR Extend"); `None` if there is
    /// no such uPCR. uPCR [`IDENTITY_UPCR`] may be extended too: its first value stays in
    /// its history, as in a TPM.
    pub fn extend(&mut self, index: usize, digest: &[u8; 32]) -> Option<[u8; 32]> {
        let value = self.values.get_mut(index)?;
        *value = extended(value, digest);
        Some(*value)
    }

    /// The values of the uPCRs `selection` names, in index order.
    #[must_use]
    pub fn selected(&self, selection: u8) -> Vec<[u8; 32]> {
        (0..UPCRS).filter(|i| selection & (1 << i) != 0).map(|i| self.values[i]).collect()
    }
}

/// The value of a SHA-256 PCR holding `old` after `digest` is extended into it:
/// SHA-256(`old` ‖ `digest`) (Part 1, "PCR Extend").
#[must_use]
pub fn extended(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    crypto::hash(&[old, digest]).0
}

/// `pcrDigest` of a quote (Part 3 §18.4): SHA-256 of the selected PCRs' values concatenated
/// in index order.
#[must_use]
pub fn pcr_digest(values: &[[u8; 32]]) -> [u8; 32] {
    let parts: Vec<&[u8]> = values.iter().map(<[u8; 32]>::as_slice).collect();
    crypto::hash(&parts).0
}

/// What a uTPM quote of the PAL carries after the verifier's nonce when its caller chose
/// `data` ([`crate::pal_io::Command::Quote`]): SHA-256 of a label and the data. The data is the
/// untrusted caller's, so the quote says only "this PAL, on this TCC, was asked to quote this
/// data after this nonce" — never that the PAL computed it; the label keeps it apart from any
/// statement of the PAL's own.
#[must_use]
pub fn caller_data(data: &[u8; 32]) -> [u8; 32] {
    crate::crypto::hash(&[b"vpr caller data", data]).0
}

/// The `qualifiedSigner` of a uTPM quote: `TPM_ALG_SHA256` ‖ SHA-256 of the TCC public key.
#[must_use]
pub fn signer_name(tcc_key: &PublicKey) -> [u8; 34] {
    crate::tpm2::sha256_name(tcc_key)
}

/// A signed quote: the `TPMS_ATTEST` exactly as signed and its ECDSA P-256 / SHA-256
/// signature (r ‖ s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// ECDSA P-256 over SHA-256(`attest`), r ‖ s, each 32 bytes big-endian.
    pub signature: Signature,
}

impl Quote {
    /// Signs `info` with `key` (what the uTPM does).
    #[must_use]
    pub fn sign(key: &crypto::KeyPair, info: &QuoteInfo) -> Quote {
        let attest = info.to_attest();
        let signature = key.sign(&attest);
        Quote { attest, signature }
    }

    /// The signature as a `TPMT_SIGNATURE` ([`Writer::ecdsa_signature`]).
    #[must_use]
    pub fn tpmt_signature(&self) -> Vec<u8> {
        Writer::new().ecdsa_signature(&self.signature).finish()
    }

    /// Reads a `TPMT_SIGNATURE` of ECDSA / SHA-256 ([`Reader::ecdsa_signature`]), as a TPM
    /// or the uTPM writes it; nothing may follow.
    pub fn signature_from_tpmt(bytes: &[u8]) -> Result<Signature, QuoteError> {
        let mut r = Reader::new(bytes);
        let signature = r.ecdsa_signature()?;
        r.finish("trailing bytes after the TPMT_SIGNATURE")?;
        Ok(signature)
    }

    /// The quote as TPM2_Quote's response parameters: `quoted` (a `TPM2B_ATTEST`), then the
    /// `TPMT_SIGNATURE`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        Writer::new().sized(&self.attest).ecdsa_signature(&self.signature).finish()
    }

    /// Reads what [`Quote::to_bytes`] writes; nothing may follow.
    pub fn from_bytes(bytes: &[u8]) -> Result<Quote, QuoteError> {
        let mut r = Reader::new(bytes);
        let attest = r
            .sized_max(MAX_ATTEST, "quoted truncated", "TPMS_ATTEST larger than any quote")?
            .to_vec();
        let signature = r.ecdsa_signature()?;
        r.finish("trailing bytes after the quote")?;
        Ok(Quote { attest, signature })
    }

    /// Checks the signature with `key` (SEC1 uncompressed P-256), then reads the
    /// `TPMS_ATTEST`, and checks that `pcr_values` — the selected PCRs' values in index
    /// order — hash to its `pcrDigest`.
    pub fn verify(
        &self,
        key: &PublicKey,
        pcr_values: &[[u8; 32]],
    ) -> Result<QuoteInfo, QuoteError> {
        if !crypto::verify(key, &self.attest, &self.signature) {
            return Err(QuoteError::Signature);
        }
        let info = QuoteInfo::from_attest(&self.attest)?;
        if pcr_digest(pcr_values) != info.pcr_digest {
            return Err(QuoteError::PcrDigest);
        }
        Ok(info)
    }
}

/// The TPM half of a machine's evidence, as the hypervisor's `evidence` call writes it: each
/// field a u32 (little-endian) length and its bytes, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmEvidenceParts {
    /// The attestation key's `TPMT_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// Its quote of PCRs 17, 18 and 19 over the nonce ([`Quote::to_bytes`]).
    pub quote: Vec<u8>,
    /// The values of PCRs 17, 18 and 19.
    pub pcrs: [[u8; 32]; 3],
    /// The identities extended into PCR 18, in order.
    pub pal_log: Vec<[u8; 32]>,
    /// The TCC key (SEC1 uncompressed).
    pub tcc_key: PublicKey,
    /// The TPM's EK certificate (DER), as read from its NV memory.
    pub ek_certificate: Vec<u8>,
}

impl TpmEvidenceParts {
    /// The encoding (see the type).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let pcrs: Vec<u8> = self.pcrs.concat();
        let log: Vec<u8> = self.pal_log.concat();
        let fields: [&[u8]; 6] =
            [&self.ak_public, &self.quote, &pcrs, &log, &self.tcc_key, &self.ek_certificate];
        let mut out = Vec::new();
        for field in fields {
            out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Reads what [`TpmEvidenceParts::to_bytes`] writes; nothing may follow.
    pub fn from_bytes(bytes: &[u8]) -> Result<TpmEvidenceParts, QuoteError> {
        let mut rest = bytes;
        let mut field = |what: &'static str| -> Result<&[u8], QuoteError> {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or(QuoteError::Malformed(what))?;
            let len = usize::try_from(u32::from_le_bytes(*len))
                .map_err(|_| QuoteError::Malformed(what))?;
            if len > tail.len() {
                return Err(QuoteError::Malformed(what));
            }
            let (value, tail) = tail.split_at(len);
            rest = tail;
            Ok(value)
        };
        let ak_public = field("evidence: attestation key truncated")?.to_vec();
        let quote = field("evidence: quote truncated")?.to_vec();
        let pcrs = field("evidence: PCRs truncated")?;
        let log = field("evidence: PAL log truncated")?;
        let tcc_key = field("evidence: TCC key truncated")?;
        let ek_certificate = field("evidence: EK certificate truncated")?.to_vec();
        if !rest.is_empty() {
            return Err(QuoteError::Malformed("evidence: trailing bytes"));
        }
        let digests = |bytes: &[u8]| -> Option<Vec<[u8; 32]>> {
            bytes
                .len()
                .is_multiple_of(32)
                .then(|| bytes.chunks_exact(32).filter_map(|c| c.try_into().ok()).collect())
        };
        let pcrs: [[u8; 32]; 3] = digests(pcrs)
            .and_then(|v| v.try_into().ok())
            .ok_or(QuoteError::Malformed("evidence: not three PCR values"))?;
        let pal_log = digests(log).ok_or(QuoteError::Malformed("evidence: PAL log not digests"))?;
        let tcc_key = tcc_key
            .try_into()
            .map_err(|_| QuoteError::Malformed("evidence: TCC key not 65 bytes"))?;
        Ok(TpmEvidenceParts { ak_public, quote, pcrs, pal_log, tcc_key, ek_certificate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;

    fn key() -> KeyPair {
        KeyPair::from_secret(&[7; 32]).unwrap()
    }

    fn info(upcrs: &Upcrs, selection: u8) -> QuoteInfo {
        QuoteInfo {
            qualified_signer: signer_name(&key().public()).to_vec(),
            extra_data: [[1; 32], [2; 32]].concat(),
            reset_count: 0,
            firmware_version: 0x0102_0304_0506_0708,
            pcr_select: [selection, 0, 0],
            pcr_digest: pcr_digest(&upcrs.selected(selection)),
        }
    }

    #[test]
    fn upcrs_start_with_the_identity_and_only_grow() {
        let mut u = Upcrs::new(&[9; 32]);
        assert_eq!(u.read(0), Some(crypto::hash(&[&[0; 32], &[9; 32]]).0));
        assert_eq!(u.read(1), Some([0; 32]));
        assert_eq!(u.read(UPCRS), None);
        let after = u.extend(3, &[5; 32]).unwrap();
        assert_eq!(after, extended(&[0; 32], &[5; 32]));
        assert_eq!(u.read(3), Some(after));
        assert_eq!(u.extend(UPCRS, &[5; 32]), None);
        assert_eq!(u.selected(0b1001), vec![u.read(0).unwrap(), after]);
    }

    #[test]
    fn quotes_round_trip_and_verify() {
        let upcrs = Upcrs::new(&[9; 32]);
        let info = info(&upcrs, 0b11);
        let quote = Quote::sign(&key(), &info);
        assert_eq!(QuoteInfo::from_attest(&quote.attest), Ok(info.clone()));
        let again = Quote::from_bytes(&quote.to_bytes()).unwrap();
        assert_eq!(again, quote);
        assert_eq!(Quote::signature_from_tpmt(&quote.tpmt_signature()), Ok(quote.signature));
        assert_eq!(quote.verify(&key().public(), &upcrs.selected(0b11)), Ok(info));
        let other = KeyPair::from_secret(&[8; 32]).unwrap().public();
        assert_eq!(quote.verify(&other, &upcrs.selected(0b11)), Err(QuoteError::Signature));
        assert_eq!(quote.verify(&key().public(), &upcrs.selected(0b1)), Err(QuoteError::PcrDigest));
        let mut tampered = quote.clone();
        tampered.attest[20] ^= 1;
        assert_eq!(tampered.verify(&key().public(), &[]), Err(QuoteError::Signature));
    }

    #[test]
    fn truncations_and_trailing_bytes_are_refused() {
        let quote = Quote::sign(&key(), &info(&Upcrs::new(&[1; 32]), 1));
        let bytes = quote.to_bytes();
        for len in 0..bytes.len() {
            assert!(Quote::from_bytes(&bytes[..len]).is_err(), "{len} bytes");
        }
        for len in 0..quote.attest.len() {
            assert!(QuoteInfo::from_attest(&quote.attest[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Quote::from_bytes(&longer).is_err());
        let mut longer = quote.attest.clone();
        longer.push(0);
        assert!(QuoteInfo::from_attest(&longer).is_err());
    }

    #[test]
    fn short_signature_values_are_left_padded() {
        // A TPM may drop leading zero bytes of r or s.
        let mut sig = [0u8; 64];
        sig[1..32].fill(0xAB);
        sig[32..].fill(0xCD);
        let tpmt = Writer::new().u16(tpm2::TPM_ALG_ECDSA).u16(tpm2::TPM_ALG_SHA256);
        let tpmt = tpmt.sized(&sig[1..32]).sized(&sig[32..]).finish();
        assert_eq!(Quote::signature_from_tpmt(&tpmt), Ok(sig));
    }

    #[test]
    fn tpm_evidence_parts_round_trip_and_refuse_truncations() {
        let parts = TpmEvidenceParts {
            ak_public: vec![1; 88],
            quote: vec![2; 200],
            pcrs: [[3; 32], [4; 32], [5; 32]],
            pal_log: vec![[6; 32], [7; 32]],
            tcc_key: [8; 65],
            ek_certificate: vec![9; 900],
        };
        let bytes = parts.to_bytes();
        assert_eq!(TpmEvidenceParts::from_bytes(&bytes), Ok(parts));
        for len in 0..bytes.len() {
            assert!(TpmEvidenceParts::from_bytes(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(TpmEvidenceParts::from_bytes(&longer).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 200) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 56)).to_le_bytes()[0]).collect();
            let _ = Quote::from_bytes(&bytes);
            let _ = QuoteInfo::from_attest(&bytes);
        }
    }
}
