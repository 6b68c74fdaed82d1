//! TPM2_Startup and TPM2_GetRandom.

use super::{body, end, TPM_ST_NO_SESSIONS};
use crate::tpm::TpmError;
use alloc::vec::Vec;
use vpr_proto::tpm2::{Writer, MAX_DIGEST};

/// `TPM_SU_CLEAR` (Part 2 §6.10): a TPM Reset or Restart, not a Resume.
pub const TPM_SU_CLEAR: u16 = 0x0000;
/// `TPM_CC_Startup` (Part 2 §6.5.2).
pub const TPM_CC_STARTUP: u32 = 0x0000_0144;
/// `TPM_CC_GetRandom` (Part 2 §6.5.2).
pub const TPM_CC_GET_RANDOM: u32 = 0x0000_017B;

/// TPM2_Startup(TPM_SU_CLEAR) (Part 3 §9.3): `startupType`.
pub fn startup_clear() -> Vec<u8> {
    Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_STARTUP).u16(TPM_SU_CLEAR).finish()
}

/// TPM2_GetRandom (Part 3 §16.1): `bytesRequested`. The TPM returns at most the size of
/// its largest digest, possibly fewer.
pub fn get_random(bytes: u16) -> Vec<u8> {
    Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_GET_RANDOM).u16(bytes).finish()
}

/// Checks the response to TPM2_Startup (Part 3 §9.3): no body.
/// `TPM_RC_INITIALIZE` ([`super::ResponseCode::is_initialize`]) means the TPM was already
/// started.
pub fn parse_startup(bytes: &[u8]) -> Result<(), TpmError> {
    end(&body(bytes, TPM_ST_NO_SESSIONS)?)
}

/// The random bytes of a response to TPM2_GetRandom (Part 3 §16.1): `randomBytes`, a
/// `TPM2B_DIGEST` (at most 64 bytes).
pub fn parse_get_random(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    let mut r = body(bytes, TPM_ST_NO_SESSIONS)?;
    const LARGER: &str = "randomBytes larger than any digest";
    let random = r.sized_max(MAX_DIGEST, "randomBytes truncated", LARGER)?;
    end(&r)?;
    Ok(random.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::command::fixtures::*;
    use alloc::vec;

    #[test]
    fn startup_clear_layout() {
        // tag NO_SESSIONS, size 12, TPM_CC_Startup, TPM_SU_CLEAR.
        let expected = [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0x00, 0x00];
        assert_eq!(startup_clear(), expected);
    }

    #[test]
    fn get_random_layout() {
        let expected = [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x7B, 0x00, 0x20];
        assert_eq!(get_random(32), expected);
        let expected = [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x7B, 0xFF, 0xFE];
        assert_eq!(get_random(0xFFFE), expected);
    }

    #[test]
    fn get_random_refusals() {
        // randomBytes claiming more than is there.
        let mut r = get_random_ok();
        r[11] = 0x11;
        assert!(matches!(parse_get_random(&r), Err(TpmError::Malformed(_))));
        // Trailing bytes.
        let mut r = get_random_ok();
        r.push(0);
        assert!(matches!(parse_get_random(&resized(r)), Err(TpmError::Malformed(_))));
        // More than any digest.
        let mut r = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x41];
        r.resize(12 + 65, 7);
        assert_eq!(
            parse_get_random(&resized(r)),
            Err(TpmError::Malformed("randomBytes larger than any digest"))
        );
    }
}
