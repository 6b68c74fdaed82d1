//! TPM2_PCR_Extend and TPM2_PCR_Read of the SHA-256 bank.

use super::TPM_ST_SESSIONS;
use super::{body, end, no_parameters, Authorization, TPM_RS_PW, TPM_ST_NO_SESSIONS};
use crate::tpm::TpmError;
use alloc::vec::Vec;
use vpr_proto::tpm2::{pcr_bitmap, Writer, TPM_ALG_SHA256};

/// `TPM_CC_PCR_Read` (Part 2 §6.5.2).
pub const TPM_CC_PCR_READ: u32 = 0x0000_017E;
/// `TPM_CC_PCR_Extend` (Part 2 §6.5.2).
pub const TPM_CC_PCR_EXTEND: u32 = 0x0000_0182;

/// TPM2_PCR_Extend (Part 3 §22.2) of the SHA-256 bank: handle `pcrHandle` (`pcr`, which is
/// its own handle), the empty-password authorization area, then `digests`, a
/// `TPML_DIGEST_VALUES` (Part 2 §10.9.6) of one `TPMT_HA` (Part 2 §10.3.2): `hashAlg`
/// [`TPM_ALG_SHA256`] and the 32 bytes of `digest`.
pub fn pcr_extend_sha256(pcr: u32, digest: &[u8; 32]) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND).u32(pcr);
    command.authorized_by(&[TPM_RS_PW]).u32(1).u16(TPM_ALG_SHA256).bytes(digest).finish()
}

/// TPM2_PCR_Read (Part 3 §22.4) of the SHA-256 bank of PCR `pcr`: `pcrSelectionIn`, a
/// `TPML_PCR_SELECTION` of one `TPMS_PCR_SELECTION`: `hash` [`TPM_ALG_SHA256`],
/// `sizeofSelect` 3, the bitmap with bit `pcr` ([`Writer::pcr_selection_sha256`]). `pcr`
/// must be below [`super::PCR_COUNT`]: a three-byte bitmap cannot select a higher one, and the
/// command then selects no PCR.
pub fn pcr_read_sha256(pcr: u32) -> Vec<u8> {
    let command = Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ);
    command.pcr_selection_sha256(&pcr_bitmap(&[pcr])).finish()
}

/// Checks the response to TPM2_PCR_Extend (Part 3 §22.2): no handles and no parameters, so
/// `parameterSize` 0, then the authorization area answering the password session: one
/// `TPMS_AUTH_RESPONSE` (Part 2 §10.13.3) with an empty `nonceTPM`, any
/// `sessionAttributes` and an empty `hmac`.
pub fn parse_pcr_extend(bytes: &[u8]) -> Result<(), TpmError> {
    no_parameters(bytes, "PCR_Extend response with parameters")
}

/// The value of PCR `pcr` in a response to [`pcr_read_sha256`]`(pcr)` (Part 3 §22.4):
/// `pcrUpdateCounter` (u32, not used); `pcrSelectionOut`, which must select exactly PCR
/// `pcr` of the SHA-256 bank (a TPM without that bank, or without that PCR, deselects it);
/// `pcrValues`, a `TPML_DIGEST` (Part 2 §10.9.5) of exactly one 32-byte `TPM2B_DIGEST`.
pub fn parse_pcr_read_sha256(bytes: &[u8], pcr: u32) -> Result<[u8; 32], TpmError> {
    let mut r = body(bytes, TPM_ST_NO_SESSIONS)?;
    r.u32("pcrUpdateCounter truncated")?;
    if r.u32("pcrSelectionOut truncated")? != 1 {
        return Err(TpmError::Malformed("pcrSelectionOut is not one selection"));
    }
    if r.u16("pcrSelectionOut truncated")? != TPM_ALG_SHA256 {
        return Err(TpmError::Malformed("pcrSelectionOut is not of the SHA-256 bank"));
    }
    let size = r.u8("pcrSelectionOut truncated")?;
    let bitmap = r.take(usize::from(size), "pcrSelectionOut truncated")?;
    let wanted = usize::try_from(pcr / 8).ok();
    let exact = bitmap.iter().enumerate().all(|(i, &byte)| {
        let expected = if Some(i) == wanted { 1 << (pcr % 8) } else { 0 };
        byte == expected
    });
    if !exact || wanted.is_none_or(|i| i >= bitmap.len()) {
        return Err(TpmError::Malformed("pcrSelectionOut does not select exactly the PCR read"));
    }
    if r.u32("pcrValues truncated")? != 1 {
        return Err(TpmError::Malformed("pcrValues is not one digest"));
    }
    let digest = r.sized("pcrValues truncated")?;
    let digest: [u8; 32] =
        digest.try_into().map_err(|_| TpmError::Malformed("PCR value is not a SHA-256 digest"))?;
    end(&r)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::command::fixtures::*;

    #[test]
    fn pcr_extend_layout() {
        let expected = cat(&[
            &[0x80, 0x02],       // TPM_ST_SESSIONS
            &[0, 0, 0, 0x41],    // commandSize 65
            &[0, 0, 0x01, 0x82], // TPM_CC_PCR_Extend
            &[0, 0, 0, 0x11],    // pcrHandle: PCR 17
            &[0, 0, 0, 0x09],    // authorizationSize 9
            &[0x40, 0, 0, 0x09], // TPM_RS_PW
            &[0, 0],             // nonceCaller: empty
            &[0x00],             // sessionAttributes
            &[0, 0],             // hmac: empty password
            &[0, 0, 0, 0x01],    // TPML_DIGEST_VALUES.count
            &[0x00, 0x0B],       // TPM_ALG_SHA256
            &DIGEST,
        ]);
        assert_eq!(expected.len(), 65);
        assert_eq!(pcr_extend_sha256(17, &DIGEST), expected);
    }

    #[test]
    fn pcr_read_layout() {
        let header = [0x80, 0x01, 0, 0, 0, 0x14, 0, 0, 0x01, 0x7E];
        let selection = [0, 0, 0, 0x01, 0x00, 0x0B, 0x03];
        for (pcr, bitmap) in [
            (0, [0x01, 0x00, 0x00]),
            (7, [0x80, 0x00, 0x00]),
            (10, [0x00, 0x04, 0x00]),
            (17, [0x00, 0x00, 0x02]),
            (23, [0x00, 0x00, 0x80]),
            (24, [0x00, 0x00, 0x00]),
            (u32::MAX, [0x00, 0x00, 0x00]),
        ] {
            let expected = cat(&[&header, &selection, &bitmap]);
            assert_eq!(pcr_read_sha256(pcr), expected, "PCR {pcr}");
        }
    }

    #[test]
    fn pcr_read_refusals() {
        let selection = |r: Result<[u8; 32], TpmError>| {
            r == Err(TpmError::Malformed("pcrSelectionOut does not select exactly the PCR read"))
        };
        // The wrong PCR, one more, none (the bank or PCR not there).
        assert!(selection(parse_pcr_read_sha256(&pcr_read_ok([0, 0x04, 0]), 11)));
        assert!(selection(parse_pcr_read_sha256(&pcr_read_ok([0, 0x0C, 0]), 10)));
        assert!(selection(parse_pcr_read_sha256(&pcr_read_ok([0, 0, 0]), 10)));
        assert!(selection(parse_pcr_read_sha256(&pcr_read_ok([0, 0, 0]), 24)));
        // A PCR beyond a shorter bitmap.
        let mut r = pcr_read_ok([0, 0, 0x80]);
        r.remove(23); // drop the last bitmap byte
        r[20] = 2; // sizeofSelect 2
        assert!(selection(parse_pcr_read_sha256(&resized(r), 23)));
        // A longer bitmap that still selects exactly the PCR is fine.
        let mut r = pcr_read_ok([0, 0, 0x80]);
        r.insert(24, 0);
        r[20] = 4;
        assert_eq!(parse_pcr_read_sha256(&resized(r), 23), Ok(DIGEST));
        // Selection count, bank, digest count, digest size.
        let mutate = |at: usize, value: u8| {
            let mut r = pcr_read_ok([0, 0x04, 0]);
            r[at] = value;
            parse_pcr_read_sha256(&r, 10)
        };
        assert_eq!(mutate(17, 2), Err(TpmError::Malformed("pcrSelectionOut is not one selection")));
        assert_eq!(mutate(17, 0), Err(TpmError::Malformed("pcrSelectionOut is not one selection")));
        assert_eq!(
            mutate(19, 0x04),
            Err(TpmError::Malformed("pcrSelectionOut is not of the SHA-256 bank"))
        );
        assert_eq!(mutate(27, 2), Err(TpmError::Malformed("pcrValues is not one digest")));
        assert_eq!(mutate(27, 0), Err(TpmError::Malformed("pcrValues is not one digest")));
        assert!(matches!(mutate(29, 0x21), Err(TpmError::Malformed(_))));
        // A 20-byte (SHA-1) digest.
        let mut r = pcr_read_ok([0, 0x04, 0]);
        r.truncate(30 + 20);
        r[29] = 20;
        assert_eq!(
            parse_pcr_read_sha256(&resized(r), 10),
            Err(TpmError::Malformed("PCR value is not a SHA-256 digest"))
        );
        // Trailing bytes.
        let mut r = pcr_read_ok([0, 0x04, 0]);
        r.push(0);
        assert_eq!(
            parse_pcr_read_sha256(&resized(r), 10),
            Err(TpmError::Malformed("trailing bytes after the response's last field"))
        );
    }
}
