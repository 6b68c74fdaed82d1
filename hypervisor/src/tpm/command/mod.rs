//! TPM 2.0 commands and responses: the few the hypervisor sends, and parsers for their
//! responses, one module per family of commands —
//!
//! - [`startup`]: TPM2_Startup and TPM2_GetRandom;
//! - [`pcr`]: TPM2_PCR_Extend and TPM2_PCR_Read of the SHA-256 bank;
//! - [`nv`]: TPM2_NV_ReadPublic, TPM2_NV_DefineSpace, TPM2_NV_Write and TPM2_NV_Read,
//!   authorized by the empty password or by a policy session;
//! - [`session`]: the policy sessions with which an NV index is read and written under a PCR
//!   and locality policy, or the endorsement key is used — TPM2_StartAuthSession,
//!   TPM2_PolicyPCR, TPM2_PolicyLocality, TPM2_PolicySecret, TPM2_FlushContext — and the
//!   policy digests they give ([`policy_pcr_digest`], [`policy_locality_digest`],
//!   [`policy_secret_digest`]);
//! - [`object`]: for attestation, TPM2_CreatePrimary of a restricted ECDSA P-256 signing key
//!   ([`create_primary_ecc_signing_key`]) and of the endorsement key, TPM2_Quote of SHA-256
//!   PCRs ([`quote_sha256`], [`parse_quote`], [`parse_tpms_attest_quote`]) and
//!   TPM2_ActivateCredential;
//! - [`rc`]: response codes ([`ResponseCode`]).
//!
//! A command is a 10-byte header — `tag` (`TPMI_ST_COMMAND_TAG`, u16), `commandSize` (u32,
//! the whole command), `commandCode` (`TPM_CC`, u32) — then its handles, its authorization
//! area when `tag` is [`TPM_ST_SESSIONS`], and its parameters. A response has the same
//! header with a response code (`TPM_RC`) in place of the command code (Part 1 §18,
//! "Command/Response Structure"). The bytes are written and read with
//! [`vpr_proto::tpm2`]'s `Writer` and `Reader`, which the uTPM and the verifier share.
//!
//! The parsers take whatever the TPM returned and never panic: every length is checked, and
//! anything but the exact expected layout is [`TpmError::Malformed`]; a non-zero response
//! code is [`TpmError::Tpm`].
//!
//! Constants and structures cite the TPM 2.0 Library specification, Part 2 (Structures),
//! revision 1.59; commands cite Part 3 (Commands).

pub mod nv;
pub mod object;
pub mod pcr;
pub mod rc;
pub mod session;
pub mod startup;

#[cfg(test)]
mod fixtures;

pub use nv::*;
pub use object::*;
pub use pcr::*;
pub use rc::ResponseCode;
pub use session::*;
pub use startup::*;

use super::TpmError;
use vpr_proto::tpm2::{Reader, Writer};

/// The algorithm identifiers, tags, object attributes and sizes shared with the uTPM and
/// the verifier.
pub use vpr_proto::tpm2::{
    ATTESTATION_KEY_ATTRIBUTES, P256_LEN, PCR_COUNT, PCR_SELECT_MIN, SHA256_LEN,
    TPMA_OBJECT_ADMINWITHPOLICY, TPMA_OBJECT_DECRYPT, TPMA_OBJECT_FIXEDPARENT,
    TPMA_OBJECT_FIXEDTPM, TPMA_OBJECT_NODA, TPMA_OBJECT_RESTRICTED,
    TPMA_OBJECT_SENSITIVEDATAORIGIN, TPMA_OBJECT_SIGN, TPMA_OBJECT_USERWITHAUTH, TPM_ALG_AES,
    TPM_ALG_CFB, TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_RSA, TPM_ALG_SHA256,
    TPM_ECC_NIST_P256, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE,
};

/// Size of a command or response header: tag, size, command or response code.
pub const HEADER_LEN: usize = 10;

/// `TPM_ST_RSP_COMMAND` (Part 2 §6.9): the tag of a response to a command whose tag was
/// bad — also what a TPM 1.2 answers a TPM 2.0 command with.
pub const TPM_ST_RSP_COMMAND: u16 = 0x00C4;
/// `TPM_ST_NO_SESSIONS` (Part 2 §6.9): no authorization area.
pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS` (Part 2 §6.9): an authorization area follows the handles.
pub const TPM_ST_SESSIONS: u16 = 0x8002;

/// `TPM_RS_PW` (Part 2 §7.4): the password authorization session.
pub const TPM_RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER` (Part 2 §7.4): the owner (storage) hierarchy, as an authorization handle.
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_NULL` (Part 2 §7.4): no entity — for TPM2_StartAuthSession, no salt key
/// (`tpmKey`) and no bind entity (`bind`).
pub const TPM_RH_NULL: u32 = 0x4000_0007;
/// `TPM_RH_ENDORSEMENT` (Part 2 §7.4): the endorsement hierarchy, as a primary object's
/// parent (TPM2_CreatePrimary) and as an authorization handle.
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;

/// The authorization area of a command (Part 1 §18.7), written after its handles.
trait Authorization {
    /// The authorization area of `sessions` (one or two): its size (u32), then per session
    /// a `TPMS_AUTH_COMMAND` (Part 2 §10.13.2) — `sessionHandle`, an empty `nonceCaller`,
    /// `sessionAttributes` 0 (`TPMA_SESSION`, Part 2 §8.4: `continueSession` clear, so the
    /// TPM flushes a policy session once the command succeeds; it means nothing for the
    /// password session) and an empty `hmac` (for [`TPM_RS_PW`] the empty password; a
    /// policy session without TPM2_PolicyAuthValue or TPM2_PolicyPassword carries none,
    /// Part 1 §19.7.1).
    fn authorized_by(self, sessions: &[u32]) -> Self;
}

impl Authorization for Writer {
    fn authorized_by(self, sessions: &[u32]) -> Self {
        // At most two sessions of 9 bytes.
        let size = u32::try_from(sessions.len() * 9).unwrap_or(0);
        sessions.iter().fold(self.u32(size), |w, &session| w.u32(session).u16(0).u8(0).u16(0))
    }
}

/// A response whose header checked out and whose response code is `TPM_RC_SUCCESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The tag: [`TPM_ST_NO_SESSIONS`] or [`TPM_ST_SESSIONS`] (when the command had an
    /// authorization area).
    pub tag: u16,
    /// What follows the header: handles, parameters, authorization area.
    pub body: &'a [u8],
}

/// Checks a response's header: at least 10 bytes, `responseSize` equal to the length, a
/// response code of `TPM_RC_SUCCESS` ([`TpmError::Tpm`] otherwise) and a tag of
/// [`TPM_ST_NO_SESSIONS`] or [`TPM_ST_SESSIONS`]. An error response may also carry
/// [`TPM_ST_RSP_COMMAND`] (the answer to a bad tag, and a TPM 1.2's answer to anything).
pub fn response(bytes: &[u8]) -> Result<Response<'_>, TpmError> {
    const SHORT: &str = "response shorter than its 10-byte header";
    let mut r = Reader::new(bytes);
    let (tag, size, code) = (r.u16(SHORT)?, r.u32(SHORT)?, r.u32(SHORT)?);
    if usize::try_from(size).ok() != Some(bytes.len()) {
        return Err(TpmError::Malformed("response size field disagrees with its length"));
    }
    let known = tag == TPM_ST_NO_SESSIONS || tag == TPM_ST_SESSIONS;
    if code != 0 && (known || tag == TPM_ST_RSP_COMMAND) {
        return Err(TpmError::Tpm(ResponseCode(code)));
    }
    if !known {
        return Err(TpmError::Malformed(
            "response tag is neither TPM_ST_NO_SESSIONS nor TPM_ST_SESSIONS",
        ));
    }
    Ok(Response { tag, body: r.rest() })
}

/// The body of a successful response with tag `tag`.
fn body(bytes: &[u8], tag: u16) -> Result<Reader<'_>, TpmError> {
    let response = response(bytes)?;
    if response.tag != tag {
        return Err(TpmError::Malformed(if tag == TPM_ST_SESSIONS {
            "response without the authorization area the command had"
        } else {
            "response with an authorization area the command did not have"
        }));
    }
    Ok(Reader::new(response.body))
}

/// Requires that nothing is left of a response.
fn end(r: &Reader<'_>) -> Result<(), TpmError> {
    Ok(r.finish("trailing bytes after the response's last field")?)
}

/// The response parameters after `parameterSize` (a u32: Part 1 §18.9, present in responses
/// with an authorization area): `parse` reads them and must use every byte the size covers.
fn parameters<'a, T>(
    r: &mut Reader<'a>,
    parse: impl FnOnce(&mut Reader<'a>) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    const LARGER: &str = "parameterSize larger than the response";
    let size = usize::try_from(r.u32("parameterSize truncated")?)
        .map_err(|_| TpmError::Malformed(LARGER))?;
    let mut parameters = Reader::new(r.take(size, LARGER)?);
    let value = parse(&mut parameters)?;
    parameters.finish("parameterSize larger than the parameters")?;
    Ok(value)
}

/// Checks the rest of a response, `r`, is the authorization area answering the password
/// session: one `TPMS_AUTH_RESPONSE` (Part 2 §10.13.3) with an empty `nonceTPM`, any
/// `sessionAttributes` and an empty `hmac`, and nothing after it.
fn password_session_response(mut r: Reader<'_>) -> Result<(), TpmError> {
    password_session(&mut r)?;
    end(&r)
}

/// Reads the `TPMS_AUTH_RESPONSE` answering the password session, as
/// [`password_session_response`] describes.
fn password_session(r: &mut Reader<'_>) -> Result<(), TpmError> {
    if !r.sized("nonceTPM truncated")?.is_empty() {
        return Err(TpmError::Malformed("password session answered with a nonce"));
    }
    r.u8("sessionAttributes truncated")?;
    if !r.sized("hmac truncated")?.is_empty() {
        return Err(TpmError::Malformed("password session answered with an HMAC"));
    }
    Ok(())
}

/// Checks the rest of a response, `r`, is the authorization area answering an unsalted,
/// unbound policy session without an authValue: one `TPMS_AUTH_RESPONSE` (Part 2 §10.13.3)
/// with a `nonceTPM` of at most 32 bytes (the TPM's fresh nonce, of the size of the
/// session's SHA-256), any `sessionAttributes` and an empty `hmac` (with an empty session
/// key and an empty command HMAC the TPM computes none), and nothing after it.
fn policy_session_response(mut r: Reader<'_>) -> Result<(), TpmError> {
    r.sized_max(SHA256_LEN, "nonceTPM truncated", "nonceTPM larger than a SHA-256 digest")?;
    r.u8("sessionAttributes truncated")?;
    if !r.sized("hmac truncated")?.is_empty() {
        return Err(TpmError::Malformed("policy session answered with an HMAC"));
    }
    end(&r)
}

/// Checks a response to a command with the password session and neither response handles
/// nor response parameters: `parameterSize` 0 (`with_parameters` otherwise), then the
/// authorization area answering the password session.
fn no_parameters(bytes: &[u8], with_parameters: &'static str) -> Result<(), TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    if r.u32("parameterSize truncated")? != 0 {
        return Err(TpmError::Malformed(with_parameters));
    }
    password_session_response(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;
    use crate::tpm::command::fixtures::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn valid_responses() {
        assert_eq!(parse_startup(&startup_ok()), Ok(()));
        assert_eq!(parse_get_random(&get_random_ok()).unwrap(), (1..=16).collect::<Vec<u8>>());
        assert_eq!(parse_pcr_extend(&pcr_extend_ok()), Ok(()));
        assert_eq!(parse_pcr_read_sha256(&pcr_read_ok([0, 0x04, 0]), 10), Ok(DIGEST));
        assert_eq!(parse_pcr_read_sha256(&pcr_read_ok([0x01, 0, 0]), 0), Ok(DIGEST));
        assert_eq!(parse_pcr_read_sha256(&pcr_read_ok([0, 0, 0x80]), 23), Ok(DIGEST));
        let empty = vec![0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_get_random(&empty).unwrap(), Vec::<u8>::new());
        let public = NvPublic {
            index: 0x01C0_0002,
            name_alg: TPM_ALG_SHA256,
            attributes: EK_CERT_ATTRIBUTES,
            data_size: 1100,
            auth_policy: None,
        };
        assert_eq!(parse_nv_read_public(&nv_read_public_ok()), Ok(public));
        assert_eq!(parse_nv_read(&nv_read_ok()).unwrap(), (1..=16).collect::<Vec<u8>>());
        assert_eq!(parse_nv_define_space(&nv_no_parameters_ok()), Ok(()));
        assert_eq!(parse_nv_write(&nv_no_parameters_ok()), Ok(()));
        assert_eq!(
            parse_start_auth_session(&start_auth_session_ok()),
            Ok((0x0300_0000, nonce_tpm()))
        );
        assert_eq!(parse_policy_pcr(&no_body_ok()), Ok(()));
        assert_eq!(parse_flush_context(&no_body_ok()), Ok(()));
        assert_eq!(parse_nv_read_policy(&nv_read_policy_ok()), Ok((1..=16).collect()));
        let extend = pcr_extend_ok();
        let r = response(&extend).unwrap();
        assert_eq!(r.tag, TPM_ST_SESSIONS);
        assert_eq!(r.body.len(), 9);
    }

    #[test]
    fn header_checks() {
        // Wrong tags.
        for tag in [[0x00, 0xC4], [0x80, 0x03], [0x00, 0x00], [0x01, 0x80]] {
            let mut r = startup_ok();
            r[..2].copy_from_slice(&tag);
            assert!(matches!(response(&r), Err(TpmError::Malformed(_))), "{tag:?}");
        }
        // Size field larger and smaller than the length.
        for size in [0u32, 9, 11, 0xFFFF_FFFF] {
            let mut r = startup_ok();
            r[2..6].copy_from_slice(&size.to_be_bytes());
            assert_eq!(
                response(&r),
                Err(TpmError::Malformed("response size field disagrees with its length"))
            );
        }
        let mut long = startup_ok();
        long.push(0);
        assert!(matches!(response(&long), Err(TpmError::Malformed(_))));
        assert!(matches!(parse_startup(&resized(long)), Err(TpmError::Malformed(_))));
        // Response codes.
        for code in [0x100u32, 0x101, 0x922, 0x1C4, 0x98E, 0xFFF] {
            let mut r = startup_ok();
            r[6..10].copy_from_slice(&code.to_be_bytes());
            assert_eq!(response(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_startup(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_get_random(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_pcr_extend(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_pcr_read_sha256(&r, 0), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_nv_read_public(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_nv_read(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_nv_define_space(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_nv_write(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_start_auth_session(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_policy_pcr(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_flush_context(&r), Err(TpmError::Tpm(ResponseCode(code))));
            assert_eq!(parse_nv_read_policy(&r), Err(TpmError::Tpm(ResponseCode(code))));
        }
        // A bad-tag answer (and a TPM 1.2's): TPM_ST_RSP_COMMAND with TPM_RC_BAD_TAG.
        let bad_tag = [0x00, 0xC4, 0, 0, 0, 0x0A, 0, 0, 0, 0x1E];
        assert_eq!(response(&bad_tag), Err(TpmError::Tpm(ResponseCode::BAD_TAG)));
        // The tag must match the command's.
        let mut r = startup_ok();
        r[1] = 0x02;
        assert!(matches!(parse_startup(&r), Err(TpmError::Malformed(_))));
        let mut r = pcr_extend_ok();
        r[1] = 0x01;
        assert!(matches!(parse_pcr_extend(&r), Err(TpmError::Malformed(_))));
    }

    #[test]
    fn pcr_extend_nv_define_space_and_nv_write_refusals() {
        type Parse = fn(&[u8]) -> Result<(), TpmError>;
        let cases: [(Parse, &str); 3] = [
            (parse_pcr_extend, "PCR_Extend response with parameters"),
            (parse_nv_define_space, "NV_DefineSpace response with parameters"),
            (parse_nv_write, "NV_Write response with parameters"),
        ];
        for (parse, with_parameters) in cases {
            let mutate = |at: usize, value: u8| {
                let mut r = nv_no_parameters_ok();
                r[at] = value;
                parse(&r)
            };
            // parameterSize: any non-zero value, even with the parameters really there.
            assert_eq!(mutate(13, 1), Err(TpmError::Malformed(with_parameters)));
            assert_eq!(mutate(10, 0x80), Err(TpmError::Malformed(with_parameters)));
            let with_parameter =
                cat(&[&nv_no_parameters_ok()[..10], &[0, 0, 0, 2, 0, 0], &[0, 0, 0x01, 0, 0]]);
            assert_eq!(parse(&resized(with_parameter)), Err(TpmError::Malformed(with_parameters)));
            // nonceTPM and hmac sizes claiming bytes that are not there.
            assert!(matches!(mutate(15, 1), Err(TpmError::Malformed(_))));
            assert!(matches!(mutate(18, 1), Err(TpmError::Malformed(_))));
            // sessionAttributes: any.
            assert_eq!(mutate(16, 0), Ok(()));
            assert_eq!(mutate(16, 0xFF), Ok(()));
            // A nonce and an HMAC that are really there.
            let with_nonce = cat(&[&nv_no_parameters_ok()[..14], &[0, 2, 9, 9, 0x01, 0, 0]]);
            assert_eq!(
                parse(&resized(with_nonce)),
                Err(TpmError::Malformed("password session answered with a nonce"))
            );
            let with_hmac = cat(&[&nv_no_parameters_ok()[..17], &[0, 1, 9]]);
            assert_eq!(
                parse(&resized(with_hmac)),
                Err(TpmError::Malformed("password session answered with an HMAC"))
            );
            // No session area at all, or trailing bytes.
            let bare = nv_no_parameters_ok()[..14].to_vec();
            assert!(matches!(parse(&resized(bare)), Err(TpmError::Malformed(_))));
            let mut long = nv_no_parameters_ok();
            long.push(0);
            assert_eq!(
                parse(&resized(long)),
                Err(TpmError::Malformed("trailing bytes after the response's last field"))
            );
            // No authorization area: the tag of a sessionless response.
            assert_eq!(
                mutate(1, 0x01),
                Err(TpmError::Malformed("response without the authorization area the command had"))
            );
            // TPM_RC_NV_DEFINED, TPM_RC_NV_RANGE, TPM_RC_NV_AUTHORIZATION come through.
            for rc in
                [ResponseCode::NV_DEFINED, ResponseCode::NV_RANGE, ResponseCode::NV_AUTHORIZATION]
            {
                let error = cat(&[&[0x80, 0x01, 0, 0, 0, 0x0A], &rc.0.to_be_bytes()]);
                assert_eq!(parse(&error), Err(TpmError::Tpm(rc)));
            }
        }
    }

    /// Whether a parser accepts a response.
    type Accepts = fn(&[u8]) -> bool;

    /// Every parser (with the PCR it needs) and a response it accepts.
    fn parsers() -> [(Vec<u8>, Accepts); 15] {
        [
            (startup_ok(), |b| parse_startup(b).is_ok()),
            (get_random_ok(), |b| parse_get_random(b).is_ok()),
            (pcr_extend_ok(), |b| parse_pcr_extend(b).is_ok()),
            (pcr_read_ok([0, 0x04, 0]), |b| parse_pcr_read_sha256(b, 10).is_ok()),
            (pcr_read_ok([0, 0, 0x80]), |b| parse_pcr_read_sha256(b, 23).is_ok()),
            (nv_read_public_ok(), |b| parse_nv_read_public(b).is_ok()),
            (nv_read_ok(), |b| parse_nv_read(b).is_ok()),
            (nv_no_parameters_ok(), |b| parse_nv_define_space(b).is_ok()),
            (nv_no_parameters_ok(), |b| parse_nv_write(b).is_ok()),
            (start_auth_session_ok(), |b| parse_start_auth_session(b).is_ok()),
            (no_body_ok(), |b| parse_policy_pcr(b).is_ok()),
            (no_body_ok(), |b| parse_flush_context(b).is_ok()),
            (nv_read_policy_ok(), |b| parse_nv_read_policy(b).is_ok()),
            (create_primary_ok(), |b| parse_create_primary_ecc(b).is_ok()),
            (quote_ok(), |b| parse_quote(b).is_ok()),
        ]
    }

    #[test]
    fn every_truncation_is_refused() {
        for (valid, parse) in parsers() {
            assert!(parse(&valid));
            for len in 0..valid.len() {
                let prefix = valid[..len].to_vec();
                assert!(!parse(&prefix), "prefix of {len} bytes of {valid:02x?}");
                assert!(response(&prefix).is_err());
                // With the size field agreeing, the body's own lengths must catch it.
                assert!(!parse(&resized(prefix)), "resized prefix of {len} bytes");
            }
        }
    }

    #[test]
    fn mutated_responses_never_panic() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let interesting: [u8; 6] = [0x00, 0x01, 0x0B, 0x20, 0x80, 0xFF];
        for (valid, parse) in parsers() {
            let (mut accepted, mut refused) = (0u32, 0u32);
            for _ in 0..5000 {
                let mut r = valid.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(r.len());
                    match rng.below(5) {
                        0 => r[at] ^= 1 << rng.below(8),
                        1 => r[at] = interesting[rng.below(interesting.len())],
                        2 => r[at] = rng.next().to_le_bytes()[0],
                        3 => {
                            let byte = rng.next().to_le_bytes()[0];
                            r.insert(at, byte);
                        }
                        _ => {
                            r.remove(at);
                        }
                    }
                    if r.is_empty() {
                        break;
                    }
                }
                // Mostly keep the size field consistent, so the bodies get exercised.
                if rng.below(4) != 0 {
                    r = resized(r);
                }
                let ok = parse(&r);
                let _ = response(&r);
                if ok {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
            assert!(refused > 1000, "{refused} refused");
            // Byte flips in the random bytes, the digest or the attributes keep a response
            // valid; the other layouts have nothing free to mutate.
            if valid.len() > 20 {
                assert!(accepted > 50, "{accepted} accepted of {valid:02x?}");
            }
        }
    }
}
