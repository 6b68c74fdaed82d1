//! Policy sessions: TPM2_StartAuthSession of an unsalted, unbound policy session, the
//! policy commands TPM2_PolicyPCR, TPM2_PolicyLocality and TPM2_PolicySecret with the
//! `policyDigest`s they give, and TPM2_FlushContext.

use super::{body, end, parameters, password_session_response, Authorization};
use super::{TPM_RH_NULL, TPM_RS_PW, TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS};
use crate::tpm::TpmError;
use alloc::vec::Vec;
use vpr_proto::crypto::hash;
use vpr_proto::tpm2::{pcr_bitmap, Writer, MAX_DIGEST, SHA256_LEN, TPM_ALG_NULL, TPM_ALG_SHA256};

/// `TPM_HT_POLICY_SESSION` (Part 2 §7.2): the handle type (most significant byte) of a
/// policy session's handle.
pub const TPM_HT_POLICY_SESSION: u8 = 0x03;
/// `TPM_SE_POLICY` (Part 2 §6.11): a policy session.
pub const TPM_SE_POLICY: u8 = 0x01;
/// `TPM_CC_StartAuthSession` (Part 2 §6.5.2).
pub const TPM_CC_START_AUTH_SESSION: u32 = 0x0000_0176;
/// `TPM_CC_PolicyPCR` (Part 2 §6.5.2).
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;
/// `TPM_CC_FlushContext` (Part 2 §6.5.2).
pub const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
/// `TPM_CC_PolicySecret` (Part 2 §6.5.2).
pub const TPM_CC_POLICY_SECRET: u32 = 0x0000_0151;
/// `TPM_CC_PolicyLocality` (Part 2 §6.5.2).
pub const TPM_CC_POLICY_LOCALITY: u32 = 0x0000_016F;

/// TPM2_StartAuthSession (Part 3 §11.1) of an unsalted, unbound policy session with
/// SHA-256 as its hash and no parameter encryption: no authorization area; handles
/// `tpmKey` [`TPM_RH_NULL`] (no salt) and `bind` [`TPM_RH_NULL`] (unbound); then the
/// parameters `nonceCaller` (a `TPM2B_NONCE`: `nonce_caller`, which the TPM wants of 16
/// bytes to the size of a SHA-256 digest, 32 — `TPM_RC_SIZE` otherwise), `encryptedSalt`
/// (a `TPM2B_ENCRYPTED_SECRET`: empty), `sessionType` (`TPM_SE`, one byte:
/// [`TPM_SE_POLICY`]), `symmetric` (a `TPMT_SYM_DEF`, Part 2 §11.1.6: `algorithm`
/// [`TPM_ALG_NULL`], and then no `keyBits` or `mode`, which are empty for it) and
/// `authHash` ([`TPM_ALG_SHA256`]).
///
/// Without a salt or a bind entity the session key is empty: the session authorizes by
/// its policy alone, and its responses carry no HMAC.
pub fn start_auth_session_policy(nonce_caller: &[u8]) -> Vec<u8> {
    let command = Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_START_AUTH_SESSION);
    let command = command.u32(TPM_RH_NULL).u32(TPM_RH_NULL).sized(nonce_caller).sized(&[]);
    command.u8(TPM_SE_POLICY).u16(TPM_ALG_NULL).u16(TPM_ALG_SHA256).finish()
}

/// TPM2_PolicyPCR (Part 3 §23.7): no authorization area; handle `policySession`
/// (`session`); then the parameters `pcrDigest` (a `TPM2B_DIGEST`: empty, so the TPM
/// digests the PCRs' current values rather than checking them against an expected digest)
/// and `pcrs`, a `TPML_PCR_SELECTION` of PCR `pcr` of the SHA-256 bank (as for
/// [`super::pcr_read_sha256`]; `pcr` must be below [`super::PCR_COUNT`]). The session's
/// `policyDigest` is then extended as [`policy_pcr_digest`] describes.
pub fn policy_pcr_sha256(session: u32, pcr: u32) -> Vec<u8> {
    let command = Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_POLICY_PCR).u32(session);
    command.sized(&[]).pcr_selection_sha256(&pcr_bitmap(&[pcr])).finish()
}

/// The `policyDigest` of a SHA-256 policy session after TPM2_PolicyPCR ([`policy_pcr_sha256`])
/// of PCR `pcr` holding `pcr_value`, started from the all-zero digest of a new session
/// (Part 3 §23.7.1): SHA-256(`policyDigest_old` (32 zero bytes) || `TPM_CC_PolicyPCR`
/// (u32) || `pcrs` (the marshalled `TPML_PCR_SELECTION`: count 1, SHA-256, size 3, the
/// bitmap) || `pcrDigest`), where `pcrDigest` is the SHA-256 of the selected PCRs' values
/// concatenated — of the one value here. This is the `authPolicy` an NV index needs for
/// such a session to read it.
pub fn policy_pcr_digest(pcr_value: &[u8; 32], pcr: u32) -> [u8; 32] {
    let pcrs = Writer::new().pcr_selection_sha256(&pcr_bitmap(&[pcr])).finish();
    let code = TPM_CC_POLICY_PCR.to_be_bytes();
    hash(&[&[0; SHA256_LEN], &code, &pcrs, &hash(&[pcr_value]).0]).0
}

/// The `TPMA_LOCALITY` (Part 2 §8.5) of one of the localities 0 to 4: its bit.
fn locality_bit(locality: u8) -> Result<u8, TpmError> {
    (locality <= 4)
        .then(|| 1 << locality)
        .ok_or(TpmError::Argument("a locality above 4 has no TPMA_LOCALITY bit"))
}

/// TPM2_PolicyLocality (Part 3 §23.4): no authorization area; handle `policySession`
/// (`session`); then the parameter `locality`, a `TPMA_LOCALITY` with the bit of `locality`
/// (0 to 4) set. The session then authorizes only commands sent at that locality. The
/// session's `policyDigest` is extended as [`policy_locality_digest`] describes.
pub fn policy_locality(session: u32, locality: u8) -> Result<Vec<u8>, TpmError> {
    let bit = locality_bit(locality)?;
    Ok(Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_POLICY_LOCALITY).u32(session).u8(bit).finish())
}

/// The `policyDigest` after TPM2_PolicyLocality of `locality` in a session whose digest was
/// `digest` (Part 3 §23.4.1): SHA-256(`digest` || `TPM_CC_PolicyLocality` (u32) ||
/// `locality` (the one-byte `TPMA_LOCALITY`)).
pub fn policy_locality_digest(digest: &[u8; 32], locality: u8) -> Result<[u8; 32], TpmError> {
    let bit = locality_bit(locality)?;
    Ok(hash(&[digest, &TPM_CC_POLICY_LOCALITY.to_be_bytes(), &[bit]]).0)
}

/// TPM2_PolicySecret (Part 3 §23.4) of the policy session `session` with the authorization
/// of `auth` (e.g. [`super::TPM_RH_ENDORSEMENT`]: its empty password): handles `authHandle`
/// `auth` and `policySession` `session`, the empty-password authorization area (for
/// `authHandle`), then the parameters `nonceTPM`, `cpHashA` and `policyRef` (`TPM2B`s, all
/// empty: no freshness, command or reference restriction) and `expiration` (INT32 0:
/// none). The session's `policyDigest` becomes as [`policy_secret_digest`] says.
pub fn policy_secret(auth: u32, session: u32) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_POLICY_SECRET).u32(auth).u32(session);
    command.authorized_by(&[TPM_RS_PW]).sized(&[]).sized(&[]).sized(&[]).u32(0).finish()
}

/// The `policyDigest` of a new SHA-256 policy session after TPM2_PolicySecret of the
/// permanent handle `auth` without a `policyRef` (Part 3 §23.4.1 and §23.2.4,
/// PolicyUpdate): SHA-256(SHA-256(0³² || `TPM_CC_PolicySecret` || name of `auth`) || the
/// empty `policyRef`). A permanent handle's name is the handle itself (Part 1 §16).
pub fn policy_secret_digest(auth: u32) -> [u8; 32] {
    let first = hash(&[&[0; SHA256_LEN], &TPM_CC_POLICY_SECRET.to_be_bytes(), &auth.to_be_bytes()]);
    hash(&[&first.0]).0
}

/// TPM2_FlushContext (Part 3 §28.4): no authorization area and no handles; the handle to
/// flush (`flushHandle`, a transient object or a session) is a parameter.
pub fn flush_context(handle: u32) -> Vec<u8> {
    Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_FLUSH_CONTEXT).u32(handle).finish()
}

/// The session handle and `nonceTPM` of a response to [`start_auth_session_policy`]
/// (Part 3 §11.1): no authorization area; `sessionHandle` (u32), which must be a policy
/// session's (type [`TPM_HT_POLICY_SESSION`], so that nothing but a session is ever
/// flushed with it); `nonceTPM`, a `TPM2B_NONCE` of at most 64 bytes (the size of the
/// session's hash, 32, from a conforming TPM); then nothing.
pub fn parse_start_auth_session(bytes: &[u8]) -> Result<(u32, Vec<u8>), TpmError> {
    let mut r = body(bytes, TPM_ST_NO_SESSIONS)?;
    let handle = r.u32("sessionHandle truncated")?;
    if handle.to_be_bytes()[0] != TPM_HT_POLICY_SESSION {
        return Err(TpmError::Malformed("sessionHandle is not a policy session's"));
    }
    let nonce = r.sized_max(MAX_DIGEST, "nonceTPM truncated", "nonceTPM larger than any digest")?;
    end(&r)?;
    Ok((handle, nonce.to_vec()))
}

/// Checks the response to [`policy_pcr_sha256`] (Part 3 §23.7): no authorization area and
/// no body. `TPM_RC_VALUE` would mean a non-empty `pcrDigest` did not match the PCRs.
pub fn parse_policy_pcr(bytes: &[u8]) -> Result<(), TpmError> {
    end(&body(bytes, TPM_ST_NO_SESSIONS)?)
}

/// Checks the response to [`policy_locality`]: no authorization area and no body.
pub fn parse_policy_locality(bytes: &[u8]) -> Result<(), TpmError> {
    end(&body(bytes, TPM_ST_NO_SESSIONS)?)
}

/// Checks the response to [`policy_secret`] (Part 3 §23.4): `parameterSize`, then
/// `timeout` (a `TPM2B_TIMEOUT`, at most 8 bytes) and `policyTicket` (a `TPMT_TK_AUTH`:
/// `tag` u16, `hierarchy` u32, a `TPM2B_DIGEST`), then the authorization area answering the
/// password session. `TPM_RC_BAD_AUTH` would mean the hierarchy has a password.
pub fn parse_policy_secret(bytes: &[u8]) -> Result<(), TpmError> {
    const TICKET: &str = "policyTicket truncated";
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    parameters(&mut r, |p| {
        p.sized_max(8, "timeout truncated", "timeout larger than 8 bytes")?;
        p.u16(TICKET)?;
        p.u32(TICKET)?;
        p.sized_max(MAX_DIGEST, TICKET, "policyTicket digest larger than any digest")?;
        Ok(())
    })?;
    password_session_response(r)
}

/// Checks the response to [`flush_context`] (Part 3 §28.4): no authorization area and no
/// body. `TPM_RC_HANDLE` means nothing was loaded under the handle.
pub fn parse_flush_context(bytes: &[u8]) -> Result<(), TpmError> {
    end(&body(bytes, TPM_ST_NO_SESSIONS)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::command::fixtures::*;
    use crate::tpm::command::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn start_auth_session_policy_layout() {
        let nonce: Vec<u8> = (0xA0..0xB0).collect();
        let expected = cat(&[
            &[0x80, 0x01],       // TPM_ST_NO_SESSIONS
            &[0, 0, 0, 0x2B],    // commandSize 43
            &[0, 0, 0x01, 0x76], // TPM_CC_StartAuthSession
            &[0x40, 0, 0, 0x07], // tpmKey: TPM_RH_NULL
            &[0x40, 0, 0, 0x07], // bind: TPM_RH_NULL
            &[0, 16],            // nonceCaller: 16 bytes ...
            &nonce,              // ... of nonce
            &[0, 0],             // encryptedSalt: empty
            &[0x01],             // sessionType: TPM_SE_POLICY
            &[0x00, 0x10],       // symmetric.algorithm: TPM_ALG_NULL (no keyBits, mode)
            &[0x00, 0x0B],       // authHash: TPM_ALG_SHA256
        ]);
        assert_eq!(expected.len(), 43);
        assert_eq!(start_auth_session_policy(&nonce), expected);
        // A 32-byte nonce: 16 more bytes, sizes to match.
        let long = start_auth_session_policy(&DIGEST);
        assert_eq!(long.len(), 59);
        assert_eq!(&long[2..6], &[0, 0, 0, 59]);
        assert_eq!(&long[18..20], &[0, 32]);
        assert_eq!(&long[20..52], &DIGEST);
        assert_eq!(&long[52..], &[0, 0, 0x01, 0x00, 0x10, 0x00, 0x0B]);
    }

    #[test]
    fn policy_pcr_layout() {
        let expected = [
            0x80, 0x01, // TPM_ST_NO_SESSIONS
            0, 0, 0, 0x1A, // commandSize 26
            0, 0, 0x01, 0x7F, // TPM_CC_PolicyPCR
            0x03, 0, 0, 0x00, // policySession
            0, 0, // pcrDigest: empty
            0, 0, 0, 0x01, // TPML_PCR_SELECTION.count
            0x00, 0x0B, // hash: SHA-256
            0x03, // sizeofSelect
            0x00, 0x00, 0x02, // PCR 17
        ];
        assert_eq!(policy_pcr_sha256(0x0300_0000, 17), expected);
        let other = policy_pcr_sha256(0x0300_0001, 0);
        assert_eq!(&other[10..14], &[0x03, 0, 0, 0x01]);
        assert_eq!(&other[23..], &[0x01, 0, 0]);
    }

    #[test]
    fn flush_context_layout() {
        // tag NO_SESSIONS, size 14, TPM_CC_FlushContext, flushHandle (a parameter).
        let expected = [0x80, 0x01, 0, 0, 0, 0x0E, 0, 0, 0x01, 0x65, 0x03, 0x00, 0x00, 0x00];
        assert_eq!(flush_context(0x0300_0000), expected);
    }

    #[test]
    fn policy_locality_layout_and_digest() {
        // TPM2_PolicyLocality of locality 2 in session 0x03000000: TPMA_LOCALITY 0x04.
        let expected =
            cat(&[&[0x80, 0x01, 0, 0, 0, 0x0F, 0, 0, 0x01, 0x6F], &[0x03, 0, 0, 0], &[0x04]]);
        assert_eq!(policy_locality(0x0300_0000, 2), Ok(expected));
        assert!(policy_locality(0x0300_0000, 5).is_err());
        // The digest: SHA-256(old || 0000016F || 04), computed here from its definition.
        let old = [0x11; 32];
        let mut input = Vec::from(old);
        input.extend_from_slice(&[0, 0, 0x01, 0x6F, 0x04]);
        assert_eq!(policy_locality_digest(&old, 2), Ok(vpr_proto::Digest::of(&input).0));
        assert_ne!(policy_locality_digest(&old, 2), policy_locality_digest(&old, 0));
        assert!(policy_locality_digest(&old, 7).is_err());
        assert_eq!(parse_policy_locality(&[0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0]), Ok(()));
        assert!(parse_policy_locality(&[0x80, 0x01, 0, 0, 0, 0x0B, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn policy_pcr_digest_known_answers() {
        // The spec's formula spelled out with literal bytes: SHA-256 of 32 zero bytes (the
        // new session's policyDigest), TPM_CC_PolicyPCR, the TPML_PCR_SELECTION of PCR 17
        // in the SHA-256 bank, and SHA-256 of the PCR's value.
        let value = [0xA5; 32];
        let pcr_digest = vpr_proto::Digest::of(&value).0;
        let mut message = vec![0u8; 32];
        message.extend_from_slice(&[0x00, 0x00, 0x01, 0x7F]);
        message.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x0B, 0x03, 0x00, 0x00, 0x02]);
        message.extend_from_slice(&pcr_digest);
        assert_eq!(message.len(), 78);
        assert_eq!(policy_pcr_digest(&value, 17), vpr_proto::Digest::of(&message).0);
        // The same, computed outside this code base (Python's hashlib).
        let known = [
            ([0xA5; 32], 17, "56334bb9dbb7e1241c377764f84a59ada2f6b7d667ee858f644d4086a724ff71"),
            ([0x00; 32], 17, "aefbd9cc0d367ad183f68d4ed6dcaf3a4c373542ed56c74f7ffd459d9f0dfb76"),
            ([0x00; 32], 0, "093ceb41181d47808862d7946268ee6a17a10e3d1b79b32351bc56e4beaceff0"),
        ];
        for (value, pcr, expected) in known {
            let digest = vpr_proto::Digest(policy_pcr_digest(&value, pcr));
            assert_eq!(digest.to_string(), expected, "PCR {pcr}");
        }
        // Another PCR or another value gives another policy.
        assert_ne!(policy_pcr_digest(&[0; 32], 16), policy_pcr_digest(&[0; 32], 17));
        assert_ne!(policy_pcr_digest(&[1; 32], 17), policy_pcr_digest(&[0; 32], 17));
    }

    #[test]
    fn start_auth_session_refusals() {
        let mutate = |at: usize, value: u8| {
            let mut r = start_auth_session_ok();
            r[at] = value;
            parse_start_auth_session(&r)
        };
        // Handles of other types: an HMAC session, a permanent handle, an NV index.
        for kind in [0x02, 0x40, 0x01, 0x80, 0x00] {
            assert_eq!(
                mutate(10, kind),
                Err(TpmError::Malformed("sessionHandle is not a policy session's"))
            );
        }
        // Any policy session handle.
        assert_eq!(mutate(13, 0x7F).map(|(h, _)| h), Ok(0x0300_007F));
        // nonceTPM claiming more or fewer bytes than are there.
        assert_eq!(mutate(15, 33), Err(TpmError::Malformed("nonceTPM truncated")));
        assert_eq!(
            mutate(15, 31),
            Err(TpmError::Malformed("trailing bytes after the response's last field"))
        );
        // Shorter nonces, and an empty one, are the TPM's business; more than a digest is not.
        let short = cat(&[&start_auth_session_ok()[..14], &[0, 16], &[7; 16]]);
        assert_eq!(parse_start_auth_session(&resized(short)), Ok((0x0300_0000, vec![7; 16])));
        let empty = cat(&[&start_auth_session_ok()[..14], &[0, 0]]);
        assert_eq!(parse_start_auth_session(&resized(empty)), Ok((0x0300_0000, Vec::new())));
        let sha512 = cat(&[&start_auth_session_ok()[..14], &[0, 64], &[7; 64]]);
        assert!(parse_start_auth_session(&resized(sha512)).is_ok());
        let huge = cat(&[&start_auth_session_ok()[..14], &[0, 65], &[7; 65]]);
        assert_eq!(
            parse_start_auth_session(&resized(huge)),
            Err(TpmError::Malformed("nonceTPM larger than any digest"))
        );
        // No nonce at all, trailing bytes, an authorization area.
        let bare = start_auth_session_ok()[..14].to_vec();
        assert_eq!(
            parse_start_auth_session(&resized(bare)),
            Err(TpmError::Malformed("nonceTPM truncated"))
        );
        let mut long = start_auth_session_ok();
        long.push(0);
        assert_eq!(
            parse_start_auth_session(&resized(long)),
            Err(TpmError::Malformed("trailing bytes after the response's last field"))
        );
        assert_eq!(
            mutate(1, 0x02),
            Err(TpmError::Malformed(
                "response with an authorization area the command did not have"
            ))
        );
        // TPM_RC_SIZE on parameter 1 (a nonceCaller under 16 bytes) comes through.
        let error = [0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x01, 0xD5];
        assert_eq!(parse_start_auth_session(&error), Err(TpmError::Tpm(ResponseCode(0x1D5))));
    }

    #[test]
    fn policy_pcr_and_flush_context_refusals() {
        type Parse = fn(&[u8]) -> Result<(), TpmError>;
        for parse in [parse_policy_pcr as Parse, parse_flush_context] {
            let mut long = no_body_ok();
            long.extend_from_slice(&[0, 0, 0, 0]);
            assert_eq!(
                parse(&resized(long)),
                Err(TpmError::Malformed("trailing bytes after the response's last field"))
            );
            // An authorization area the command did not have (even an empty one).
            let sessions = cat(&[&[0x80, 0x02, 0, 0, 0, 0x13, 0, 0, 0, 0], &[0; 9]]);
            assert_eq!(
                parse(&sessions),
                Err(TpmError::Malformed(
                    "response with an authorization area the command did not have"
                ))
            );
            // TPM_RC_HANDLE on parameter 1 (nothing to flush) and TPM_RC_VALUE on parameter 1
            // (pcrDigest mismatch) come through.
            for rc in [0x1CB, 0x1C4] {
                let error = cat(&[&[0x80, 0x01, 0, 0, 0, 0x0A], &u32::to_be_bytes(rc)]);
                assert_eq!(parse(&error), Err(TpmError::Tpm(ResponseCode(rc))));
            }
        }
    }

    #[test]
    fn ek_policy_is_policy_secret_of_the_endorsement_hierarchy() {
        assert_eq!(policy_secret_digest(TPM_RH_ENDORSEMENT), EK_POLICY_A);
        assert_ne!(policy_secret_digest(TPM_RH_OWNER), EK_POLICY_A);
    }
}
