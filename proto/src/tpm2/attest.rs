//! What a quote attests and how it is signed: the `TPMS_ATTEST` of TPM2_Quote (Part 2
//! §10.12.12) and its ECDSA P-256 `TPMT_SIGNATURE` (Part 2 §11.3.4), read from a TPM's
//! quotes and written for the uTPM's.

use super::{Error, Reader, Writer, MAX_NAME, PCR_SELECT_LEN, TPM_ALG_SHA256};
use super::{TPM_ALG_ECDSA, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
use alloc::vec::Vec;

/// The most a `TPMS_ATTEST` may be that is read here (any quote is far smaller).
pub const MAX_ATTEST: usize = 1024;
/// Bytes of a P-256 coordinate, and of an ECDSA P-256 `r` or `s`.
pub const P256_LEN: usize = 32;

/// What a quote's `TPMS_ATTEST` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `qualifiedSigner`: the signing key's (qualified) name.
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the quote's `qualifyingData` (a verifier's nonce, and for a uTPM quote
    /// the PAL's data).
    pub extra_data: Vec<u8>,
    /// `clockInfo.resetCount` (a TPM's count of TPM2_Startup(CLEAR)s; 0 for a uTPM).
    pub reset_count: u32,
    /// `firmwareVersion`.
    pub firmware_version: u64,
    /// The bitmap of the SHA-256 PCRs quoted.
    pub pcr_select: [u8; PCR_SELECT_LEN],
    /// `pcrDigest`: SHA-256 of the selected PCRs' values concatenated, in PCR order.
    pub pcr_digest: [u8; 32],
}

impl QuoteInfo {
    /// The marshalled `TPMS_ATTEST` of a quote of one SHA-256 PCR selection (Part 2
    /// §10.12.12), with a zero `clockInfo` but for `resetCount` and `safe` = 1.
    #[must_use]
    pub fn to_attest(&self) -> Vec<u8> {
        Writer::new()
            .u32(TPM_GENERATED_VALUE)
            .u16(TPM_ST_ATTEST_QUOTE)
            .sized(&self.qualified_signer)
            .sized(&self.extra_data)
            .u64(0) // clock
            .u32(self.reset_count)
            .u32(0) // restartCount
            .u8(1) // safe
            .u64(self.firmware_version)
            .pcr_selection_sha256(&self.pcr_select)
            .sized(&self.pcr_digest)
            .finish()
    }

    /// Reads the `TPMS_ATTEST` (Part 2 §10.12.12) of a quote of SHA-256 PCRs: `magic`
    /// `TPM_GENERATED_VALUE`, `type` `TPM_ST_ATTEST_QUOTE`, `qualifiedSigner` (a
    /// `TPM2B_NAME`), `extraData` (a `TPM2B_DATA`), `clockInfo` (`clock` u64, `resetCount`
    /// u32, `restartCount` u32, `safe` u8), `firmwareVersion` (u64), then a
    /// `TPMS_QUOTE_INFO` (Part 2 §10.12.1): `pcrSelect`, one SHA-256 selection of 3 bytes,
    /// and `pcrDigest`, a 32-byte `TPM2B_DIGEST`; then nothing.
    ///
    /// Only meaningful once the signature over `attest` has been checked.
    pub fn from_attest(attest: &[u8]) -> Result<QuoteInfo, Error> {
        let mut a = Reader::new(attest);
        if attest.len() > MAX_ATTEST {
            return Err(Error::Invalid("TPMS_ATTEST larger than any quote"));
        }
        if a.u32("TPMS_ATTEST truncated")? != TPM_GENERATED_VALUE {
            return Err(Error::Invalid("TPMS_ATTEST magic is not TPM_GENERATED_VALUE"));
        }
        if a.u16("TPMS_ATTEST truncated")? != TPM_ST_ATTEST_QUOTE {
            return Err(Error::Invalid("TPMS_ATTEST is not a quote's"));
        }
        let qualified_signer = a
            .sized_max(
                MAX_NAME,
                "qualifiedSigner truncated",
                "qualifiedSigner larger than any name",
            )?
            .to_vec();
        let extra_data = a
            .sized_max(MAX_NAME, "extraData truncated", "extraData larger than a TPMT_HA")?
            .to_vec();
        a.take(8, "clockInfo truncated")?;
        let reset_count = a.u32("clockInfo truncated")?;
        a.take(4 + 1, "clockInfo truncated")?;
        let firmware_version = a.u64("firmwareVersion truncated")?;
        if a.u32("pcrSelect truncated")? != 1 {
            return Err(Error::Invalid("pcrSelect is not one selection"));
        }
        if a.u16("pcrSelect truncated")? != TPM_ALG_SHA256 {
            return Err(Error::Invalid("pcrSelect is not of the SHA-256 bank"));
        }
        if usize::from(a.u8("pcrSelect truncated")?) != PCR_SELECT_LEN {
            return Err(Error::Invalid("pcrSelect is not of 3 bytes"));
        }
        let pcr_select = a.array("pcrSelect truncated")?;
        let pcr_digest: [u8; 32] = a
            .sized("pcrDigest truncated")?
            .try_into()
            .map_err(|_| Error::Invalid("pcrDigest is not a SHA-256 digest"))?;
        a.finish("trailing bytes after the TPMS_ATTEST")?;
        Ok(QuoteInfo {
            qualified_signer,
            extra_data,
            reset_count,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }
}

impl Writer {
    /// A `TPMT_SIGNATURE` (Part 2 §11.3.4) of ECDSA P-256 with SHA-256: `sigAlg`
    /// [`TPM_ALG_ECDSA`], then a `TPMS_SIGNATURE_ECDSA` (Part 2 §11.3.2) — `hash`
    /// [`TPM_ALG_SHA256`], `signatureR` and `signatureS` (`TPM2B_ECC_PARAMETER`s of the 32
    /// bytes of r and of s in `signature`, r ‖ s).
    pub fn ecdsa_signature(self, signature: &[u8; 2 * P256_LEN]) -> Self {
        let (r, s) = signature.split_at(P256_LEN);
        self.u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).sized(r).sized(s)
    }
}

impl Reader<'_> {
    /// A `TPMT_SIGNATURE` as [`Writer::ecdsa_signature`] writes it, as r ‖ s. A TPM may
    /// write r or s shorter than 32 bytes (without leading zeros): they are left-padded
    /// here; longer is refused.
    pub fn ecdsa_signature(&mut self) -> Result<[u8; 2 * P256_LEN], Error> {
        if self.u16("signature truncated")? != TPM_ALG_ECDSA {
            return Err(Error::Invalid("signature is not ECDSA"));
        }
        if self.u16("signature truncated")? != TPM_ALG_SHA256 {
            return Err(Error::Invalid("signature hash is not SHA-256"));
        }
        let mut signature = [0; 2 * P256_LEN];
        for half in signature.chunks_exact_mut(P256_LEN) {
            let value = self.sized("signature truncated")?;
            let at = P256_LEN
                .checked_sub(value.len())
                .ok_or(Error::Invalid("signature value longer than 32 bytes"))?;
            half[at..].copy_from_slice(value);
        }
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> QuoteInfo {
        QuoteInfo {
            qualified_signer: [&[0, 0x0B][..], &[3; 32]].concat(),
            extra_data: [[1; 32], [2; 32]].concat(),
            reset_count: 5,
            firmware_version: 0x0102_0304_0506_0708,
            pcr_select: [0b11, 0, 0],
            pcr_digest: [4; 32],
        }
    }

    #[test]
    fn attest_round_trips_and_refuses_truncations_and_trailing_bytes() {
        let attest = info().to_attest();
        assert_eq!(attest.len(), 4 + 2 + 36 + 66 + 17 + 8 + 10 + 34);
        assert_eq!(QuoteInfo::from_attest(&attest), Ok(info()));
        for len in 0..attest.len() {
            assert!(QuoteInfo::from_attest(&attest[..len]).is_err(), "{len} bytes");
        }
        let mut longer = attest.clone();
        longer.push(0);
        assert_eq!(
            QuoteInfo::from_attest(&longer),
            Err(Error::Trailing { what: "trailing bytes after the TPMS_ATTEST", count: 1 })
        );
        assert!(QuoteInfo::from_attest(&[0; MAX_ATTEST + 1]).is_err());
    }

    #[test]
    fn signatures_round_trip_and_short_values_are_left_padded() {
        let mut sig = [0u8; 64];
        sig[1..32].fill(0xAB);
        sig[32..].fill(0xCD);
        let full = Writer::new().ecdsa_signature(&sig).finish();
        assert_eq!(full[..6], [0x00, 0x18, 0x00, 0x0B, 0, 32]);
        assert_eq!(Reader::new(&full).ecdsa_signature(), Ok(sig));
        // A TPM may drop leading zero bytes of r or s.
        let short = Writer::new().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256);
        let short = short.sized(&sig[1..32]).sized(&sig[32..]).finish();
        assert_eq!(Reader::new(&short).ecdsa_signature(), Ok(sig));
        let long = Writer::new().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).sized(&[1; 33]);
        assert_eq!(
            Reader::new(&long.sized(&[2; 32]).finish()).ecdsa_signature(),
            Err(Error::Invalid("signature value longer than 32 bytes"))
        );
    }
}
