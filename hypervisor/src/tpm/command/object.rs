//! Keys and what they attest: TPM2_CreatePrimary of the attestation key (a restricted ECDSA
//! P-256 signing key) and of the endorsement key, TPM2_ActivateCredential, and TPM2_Quote.

use super::TPM_ST_SESSIONS;
use super::{body, parameters, password_session, password_session_response};
use super::{policy_session_response, Authorization, TPM_RH_ENDORSEMENT, TPM_RS_PW};
use crate::tpm::TpmError;
use alloc::vec::Vec;
use vpr_proto::tpm2::{pcr_bitmap, EccPublic, Reader, Writer, MAX_DIGEST, MAX_NAME};
use vpr_proto::tpm2::{ATTESTATION_KEY_ATTRIBUTES, P256_LEN, TPM_ALG_AES, TPM_ALG_CFB};
use vpr_proto::tpm2::{TPMA_OBJECT_ADMINWITHPOLICY, TPMA_OBJECT_DECRYPT, TPMA_OBJECT_FIXEDPARENT};
use vpr_proto::tpm2::{TPMA_OBJECT_FIXEDTPM, TPMA_OBJECT_RESTRICTED};
use vpr_proto::tpm2::{TPMA_OBJECT_SENSITIVEDATAORIGIN, TPM_ECC_NIST_P256};
use vpr_proto::tpm2::{TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_RSA, TPM_ALG_SHA256};

/// What a quote's `TPMS_ATTEST` attests: the format is shared with the uTPM's quotes and
/// `vpr verify` ([`vpr_proto::tpm2::QuoteInfo`]).
pub use vpr_proto::tpm2::QuoteInfo;

/// `TPM_CC_CreatePrimary` (Part 2 §6.5.2).
pub const TPM_CC_CREATE_PRIMARY: u32 = 0x0000_0131;
/// `TPM_CC_Quote` (Part 2 §6.5.2).
pub const TPM_CC_QUOTE: u32 = 0x0000_0158;
/// `TPM_CC_ActivateCredential` (Part 2 §6.5.2).
pub const TPM_CC_ACTIVATE_CREDENTIAL: u32 = 0x0000_0147;
/// The `objectAttributes` of the RSA endorsement key of the TCG EK Credential Profile's
/// template L-1 (§B.3.3): fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy,
/// restricted, decrypt.
pub const EK_ATTRIBUTES: u32 = TPMA_OBJECT_FIXEDTPM
    | TPMA_OBJECT_FIXEDPARENT
    | TPMA_OBJECT_SENSITIVEDATAORIGIN
    | TPMA_OBJECT_ADMINWITHPOLICY
    | TPMA_OBJECT_RESTRICTED
    | TPMA_OBJECT_DECRYPT;
/// The `authPolicy` of the EK templates (TCG EK Credential Profile §B.3.2, "Policy A"):
/// the digest of TPM2_PolicySecret(`TPM_RH_ENDORSEMENT`): using the EK takes the
/// endorsement hierarchy's authorization.
pub const EK_POLICY_A: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
    0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
];
/// Bytes of the modulus of an RSA-2048 key.
pub const RSA2048_LEN: usize = 256;

/// TPM2_CreatePrimary (Part 3 §24.1) in hierarchy `hierarchy` of the object whose
/// `TPMT_PUBLIC` `template` writes, authorized by the hierarchy's empty password: handle
/// `primaryHandle` `hierarchy`, the empty-password authorization area, then the parameters
/// `inSensitive` (a `TPM2B_SENSITIVE_CREATE` of 4 bytes: an empty `userAuth` and empty
/// `data`), `inPublic` (a `TPM2B_PUBLIC` of the template), `outsideInfo` (a `TPM2B_DATA`:
/// empty) and `creationPCR` (a `TPML_PCR_SELECTION`: no selection).
///
/// A primary key is derived from the hierarchy's seed and the template: the same TPM
/// returns the same key every time (until the hierarchy's seed changes).
fn create_primary(hierarchy: u32, template: impl FnOnce(Writer) -> Writer) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_CREATE_PRIMARY).u32(hierarchy);
    let command = command.authorized_by(&[TPM_RS_PW]).sized_with(|w| w.sized(&[]).sized(&[]));
    command.sized_with(template).sized(&[]).u32(0).finish()
}

/// TPM2_CreatePrimary (Part 3 §24.1) of a restricted ECDSA P-256 signing key — an
/// attestation key — in hierarchy `hierarchy` (e.g. [`TPM_RH_ENDORSEMENT`]), authorized by
/// the hierarchy's empty password. Its template is the `TPMT_PUBLIC` of
/// [`Writer::ecc_signing_public`] with [`ATTESTATION_KEY_ATTRIBUTES`] and no point (an
/// empty `x` and `y`).
pub fn create_primary_ecc_signing_key(hierarchy: u32) -> Vec<u8> {
    create_primary(hierarchy, |w| w.ecc_signing_public(ATTESTATION_KEY_ATTRIBUTES, &[], &[]))
}

/// The marshalled `TPMT_PUBLIC` (Part 2 §12.2.4) of the TCG EK Credential Profile's RSA-2048
/// endorsement key template L-1 (§B.3.3): `type` [`TPM_ALG_RSA`], `nameAlg`
/// [`TPM_ALG_SHA256`], `objectAttributes` [`EK_ATTRIBUTES`], `authPolicy` [`EK_POLICY_A`],
/// then a `TPMS_RSA_PARMS` (Part 2 §12.2.3.5): `symmetric` AES-128 in CFB mode, `scheme`
/// [`TPM_ALG_NULL`], `keyBits` 2048, `exponent` 0 (the default, 65537); then `unique`, 256
/// zero bytes. TPM2_CreatePrimary of it in the endorsement hierarchy gives the key the
/// manufacturer certified (the EK certificate holds its modulus).
pub fn endorsement_key_template() -> Vec<u8> {
    let head = Writer::new().u16(TPM_ALG_RSA).u16(TPM_ALG_SHA256).u32(EK_ATTRIBUTES);
    let parameters = head.sized(&EK_POLICY_A).u16(TPM_ALG_AES).u16(128).u16(TPM_ALG_CFB);
    // scheme, keyBits, exponent, unique
    parameters.u16(TPM_ALG_NULL).u16(2048).u32(0).sized(&[0; RSA2048_LEN]).finish()
}

/// TPM2_CreatePrimary (Part 3 §24.1) of the endorsement key
/// ([`endorsement_key_template`]) under [`TPM_RH_ENDORSEMENT`], authorized by its empty
/// password; the other parameters as for [`create_primary_ecc_signing_key`].
pub fn create_primary_endorsement_key() -> Vec<u8> {
    create_primary(TPM_RH_ENDORSEMENT, |w| w.bytes(&endorsement_key_template()))
}

/// The marshalled `TPMT_PUBLIC` of the attestation key whose point is (`x`, `y`): the
/// template of [`create_primary_ecc_signing_key`] with the two 32-byte coordinates in
/// `unique`. The key's TPM name is `TPM_ALG_SHA256` || SHA-256 of these bytes
/// ([`object_name`]).
pub fn attestation_key_public(x: &[u8; 32], y: &[u8; 32]) -> Vec<u8> {
    Writer::new().ecc_signing_public(ATTESTATION_KEY_ATTRIBUTES, x, y).finish()
}

/// The name (Part 1 §16) of an object with the SHA-256 name algorithm and the marshalled
/// `TPMT_PUBLIC` `public`: [`TPM_ALG_SHA256`] || SHA-256(`public`).
pub fn object_name(public: &[u8]) -> [u8; 34] {
    vpr_proto::tpm2::sha256_name(public)
}

/// TPM2_ActivateCredential (Part 3 §12.5): handles `activateHandle` (`object`, the key the
/// credential names, authorized in its admin role by its empty password: it has no
/// `adminWithPolicy`) and `keyHandle` (`key`, the endorsement key, authorized in its user
/// role by the policy session `session`, which must satisfy [`EK_POLICY_A`]); then the
/// authorization area of two `TPMS_AUTH_COMMAND`s — the password session, then `session`
/// with an empty `nonceCaller`, `continueSession` clear (the TPM flushes it after the
/// command) and an empty `hmac` — then the parameters `credentialBlob` (a
/// `TPM2B_ID_OBJECT`) and `secret` (a `TPM2B_ENCRYPTED_SECRET`), given here already
/// marshalled with their size fields, as a verifier's TPM2_MakeCredential returns them.
pub fn activate_credential(
    object: u32,
    key: u32,
    session: u32,
    credential_blob: &[u8],
    secret: &[u8],
) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_ACTIVATE_CREDENTIAL).u32(object);
    let command = command.u32(key).authorized_by(&[TPM_RS_PW, session]);
    command.bytes(credential_blob).bytes(secret).finish()
}

/// TPM2_Quote (Part 3 §18.4) with the signing key `sign_handle`, authorized by its empty
/// password: handle `signHandle`, the empty-password authorization area, then the
/// parameters `qualifyingData` (a `TPM2B_DATA`: `qualifying_data`, which the TPM wants of
/// at most the size of a `TPMT_HA` — `TPM_RC_SIZE` otherwise), `inScheme` (a
/// `TPMT_SIG_SCHEME`: [`TPM_ALG_NULL`], the key's own scheme) and `PCRselect`, a
/// `TPML_PCR_SELECTION` of one SHA-256 selection with the 3-byte bitmap of `pcrs` (PCRs
/// above 23 are left out).
pub fn quote_sha256(sign_handle: u32, qualifying_data: &[u8], pcrs: &[u32]) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_QUOTE).u32(sign_handle);
    let command = command.authorized_by(&[TPM_RS_PW]).sized(qualifying_data).u16(TPM_ALG_NULL);
    command.pcr_selection_sha256(&pcr_bitmap(pcrs)).finish()
}

/// The object handle and public point of a response to [`create_primary_ecc_signing_key`]
/// (Part 3 §24.1): `objectHandle` (u32); `parameterSize` (u32), which must be exactly the
/// size of the parameters — `outPublic` (a `TPM2B_PUBLIC` whose `TPMT_PUBLIC` must be of
/// type [`TPM_ALG_ECC`] with the template's `nameAlg`, `symmetric`, `scheme`, curve
/// [`TPM_ECC_NIST_P256`] and `kdf`, and a `unique` point of two 32-byte coordinates),
/// `creationData` (a `TPM2B_CREATION_DATA`), `creationHash` (a `TPM2B_DIGEST`),
/// `creationTicket` (a `TPMT_TK_CREATION`: `tag`, `hierarchy`, a `TPM2B_DIGEST`) and
/// `name` (a `TPM2B_NAME`), the last four skipped by their sizes — then the authorization
/// area answering the password session.
pub fn parse_create_primary_ecc(bytes: &[u8]) -> Result<(u32, [u8; 32], [u8; 32]), TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let handle = r.u32("objectHandle truncated")?;
    let (x, y) = parameters(&mut r, |p| {
        let point = ecc_signing_public(p.sized("outPublic truncated")?)?;
        creation_results(p)?;
        Ok(point)
    })?;
    password_session_response(r)?;
    Ok((handle, x, y))
}

/// The handle and modulus in a response to [`create_primary_endorsement_key`] (Part 3
/// §24.1), with the same layout as for [`parse_create_primary_ecc`]; `outPublic` must be an
/// RSA-2048 `TPMT_PUBLIC` of the EK template's `type`, `nameAlg`, attributes, policy and
/// parameters ([`endorsement_key_template`]) with a 256-byte modulus in `unique`.
pub fn parse_create_primary_rsa_ek(bytes: &[u8]) -> Result<(u32, Vec<u8>), TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let handle = r.u32("objectHandle truncated")?;
    let modulus = parameters(&mut r, |p| {
        let public = p.sized("outPublic truncated")?;
        let template = endorsement_key_template();
        let fixed = template.len() - RSA2048_LEN - 2;
        if public.len() != template.len() || public[..fixed] != template[..fixed] {
            return Err(TpmError::Malformed("outPublic is not of the EK template"));
        }
        // The modulus's size field.
        if public[fixed..fixed + 2] != template[fixed..fixed + 2] {
            return Err(TpmError::Malformed("outPublic modulus is not of 2048 bits"));
        }
        let modulus = public[fixed + 2..].to_vec();
        creation_results(p)?;
        Ok(modulus)
    })?;
    password_session_response(r)?;
    Ok((handle, modulus))
}

/// Skips what TPM2_CreatePrimary returns after `outPublic` (Part 3 §24.1):
/// `creationData`, `creationHash`, `creationTicket` and `name`, checking their sizes.
fn creation_results(p: &mut Reader<'_>) -> Result<(), TpmError> {
    const TICKET: &str = "creationTicket truncated";
    p.sized("creationData truncated")?;
    p.sized_max(MAX_DIGEST, "creationHash truncated", "creationHash larger than any digest")?;
    p.u16(TICKET)?;
    p.u32(TICKET)?;
    p.sized_max(MAX_DIGEST, TICKET, "creationTicket digest larger than any digest")?;
    p.sized_max(MAX_NAME, "name truncated", "name larger than any name")?;
    Ok(())
}

/// The credential in a response to [`activate_credential`] (Part 3 §12.5):
/// `parameterSize`, then `certInfo` (a `TPM2B_DIGEST`, at most 64 bytes), then the
/// authorization area answering the password session (as for
/// [`super::parse_pcr_extend`]) and then the policy session (a `nonceTPM` of up to 32
/// bytes, any attributes, an empty `hmac`). `TPM_RC_INTEGRITY` means the blob was not made
/// for this key and this object's name (a credential for another TPM or another key);
/// `TPM_RC_POLICY_FAIL` a session that does not satisfy the EK's policy.
pub fn parse_activate_credential(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let credential = parameters(&mut r, |p| Ok(p.sized("certInfo truncated")?))?;
    if credential.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("certInfo larger than any digest"));
    }
    password_session(&mut r)?;
    policy_session_response(r)?;
    Ok(credential.to_vec())
}

/// The point of the `TPMT_PUBLIC` (Part 2 §12.2.4) `public` of a key made from the
/// template of [`create_primary_ecc_signing_key`]: the template's fields up to `unique`,
/// then a `TPMS_ECC_POINT` of two 32-byte coordinates, then nothing. The attributes and
/// `authPolicy` are not checked (the TPM may set others than asked only where the template
/// leaves it free).
fn ecc_signing_public(public: &[u8]) -> Result<([u8; 32], [u8; 32]), TpmError> {
    let mut r = Reader::new(public);
    let key = EccPublic::read(&mut r, "outPublic shorter than an ECC TPMT_PUBLIC")?;
    let checks = [
        (key.object_type == TPM_ALG_ECC, "outPublic is not an ECC key"),
        (key.name_alg == TPM_ALG_SHA256, "outPublic nameAlg is not SHA-256"),
        (key.auth_policy.len() <= MAX_DIGEST, "authPolicy larger than any digest"),
        (key.symmetric == TPM_ALG_NULL, "outPublic has a symmetric algorithm"),
        (key.scheme == TPM_ALG_ECDSA, "outPublic scheme is not ECDSA with SHA-256"),
        (key.scheme_hash == TPM_ALG_SHA256, "outPublic scheme is not ECDSA with SHA-256"),
        (key.curve == TPM_ECC_NIST_P256, "outPublic curve is not NIST P-256"),
        (key.kdf == TPM_ALG_NULL, "outPublic has a KDF"),
    ];
    if let Some(&(_, what)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(TpmError::Malformed(what));
    }
    let x: [u8; P256_LEN] =
        key.x.try_into().map_err(|_| TpmError::Malformed("outPublic x is not 32 bytes"))?;
    let y: [u8; P256_LEN] =
        key.y.try_into().map_err(|_| TpmError::Malformed("outPublic y is not 32 bytes"))?;
    r.finish("outPublic longer than an ECC TPMT_PUBLIC")?;
    Ok((x, y))
}

/// A quote: the `TPMS_ATTEST` the TPM signed, and its ECDSA P-256 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled `TPMS_ATTEST` (Part 2 §10.12.12) exactly as signed: the signature is
    /// over its SHA-256 digest. Parse it with [`parse_tpms_attest_quote`].
    pub attest: Vec<u8>,
    /// The signature's `r`, big-endian, left-padded to 32 bytes.
    pub r: [u8; 32],
    /// The signature's `s`, big-endian, left-padded to 32 bytes.
    pub s: [u8; 32],
}

/// The quote in a response to [`quote_sha256`] (Part 3 §18.4): `parameterSize` (u32),
/// which must be exactly the size of the parameters — `quoted` (a `TPM2B_ATTEST`) and
/// `signature`, the ECDSA/SHA-256 `TPMT_SIGNATURE` of [`Reader::ecdsa_signature`] (`r` and
/// `s` of at most 32 bytes, left-padded with zeros to 32) — then the authorization area
/// answering the password session. The contents of `quoted` are not checked here:
/// [`parse_tpms_attest_quote`].
pub fn parse_quote(bytes: &[u8]) -> Result<Quote, TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let (attest, signature) =
        parameters(&mut r, |p| Ok((p.sized("quoted truncated")?.to_vec(), p.ecdsa_signature()?)))?;
    password_session_response(r)?;
    let mut quote = Quote { attest, r: [0; P256_LEN], s: [0; P256_LEN] };
    quote.r.copy_from_slice(&signature[..P256_LEN]);
    quote.s.copy_from_slice(&signature[P256_LEN..]);
    Ok(quote)
}

/// The contents of a quote's `TPMS_ATTEST` (Part 2 §10.12.12; read by
/// [`QuoteInfo::from_attest`], which refuses anything but a quote of one SHA-256 selection
/// of 3 bytes with a 32-byte `pcrDigest`, and trailing bytes).
///
/// Only meaningful once the signature over `attest` has been checked
/// ([`crate::tpm::quote_verifies`]).
pub fn parse_tpms_attest_quote(attest: &[u8]) -> Result<QuoteInfo, TpmError> {
    Ok(QuoteInfo::from_attest(attest)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;
    use crate::tpm::command::fixtures::*;
    use crate::tpm::command::*;
    use alloc::vec;

    #[test]
    fn attestation_constants() {
        assert_eq!(ATTESTATION_KEY_ATTRIBUTES, 0x0005_0472);
        assert_eq!(
            [TPM_CC_CREATE_PRIMARY, TPM_CC_QUOTE, TPM_RH_ENDORSEMENT],
            [0x131, 0x158, 0x4000_000B]
        );
        assert_eq!(TPM_GENERATED_VALUE.to_be_bytes(), *b"\xffTCG");
    }

    #[test]
    fn create_primary_ecc_layout() {
        let expected = cat(&[
            &[0x80, 0x02],             // TPM_ST_SESSIONS
            &[0, 0, 0, 0x41],          // commandSize 65
            &[0, 0, 0x01, 0x31],       // TPM_CC_CreatePrimary
            &[0x40, 0, 0, 0x0B],       // primaryHandle: TPM_RH_ENDORSEMENT
            &[0, 0, 0, 0x09],          // authorizationSize 9
            &[0x40, 0, 0, 0x09],       // TPM_RS_PW
            &[0, 0],                   // nonceCaller: empty
            &[0x00],                   // sessionAttributes
            &[0, 0],                   // hmac: empty password
            &[0, 4],                   // inSensitive: 4 bytes
            &[0, 0],                   //   userAuth: empty
            &[0, 0],                   //   data: empty
            &[0, 24],                  // inPublic: 24 bytes
            &[0x00, 0x23],             //   type: TPM_ALG_ECC
            &[0x00, 0x0B],             //   nameAlg: SHA-256
            &[0x00, 0x05, 0x04, 0x72], //   sign, restricted, noDA, userWithAuth, sDO, fP, fTPM
            &[0, 0],                   //   authPolicy: empty
            &[0x00, 0x10],             //   symmetric: TPM_ALG_NULL
            &[0x00, 0x18, 0x00, 0x0B], //   scheme: ECDSA, SHA-256
            &[0x00, 0x03],             //   curveID: NIST P-256
            &[0x00, 0x10],             //   kdf: TPM_ALG_NULL
            &[0, 0, 0, 0],             //   unique: empty x, empty y
            &[0, 0],                   // outsideInfo: empty
            &[0, 0, 0, 0],             // creationPCR: count 0
        ]);
        assert_eq!(expected.len(), 65);
        assert_eq!(create_primary_ecc_signing_key(TPM_RH_ENDORSEMENT), expected);
        let owner = create_primary_ecc_signing_key(TPM_RH_OWNER);
        assert_eq!(&owner[10..14], &[0x40, 0, 0, 0x01]);
        assert_eq!(owner[14..], expected[14..]);
    }

    #[test]
    fn quote_layout() {
        let expected = cat(&[
            &[0x80, 0x02],                   // TPM_ST_SESSIONS
            &[0, 0, 0, 0x2D],                // commandSize 45
            &[0, 0, 0x01, 0x58],             // TPM_CC_Quote
            &[0x80, 0x00, 0x00, 0x01],       // signHandle
            &[0, 0, 0, 0x09],                // authorizationSize 9
            &[0x40, 0, 0, 0x09],             // TPM_RS_PW
            &[0, 0],                         // nonceCaller: empty
            &[0x00],                         // sessionAttributes
            &[0, 0],                         // hmac: empty password
            &[0, 4, 0xDE, 0xAD, 0xBE, 0xEF], // qualifyingData: 4 bytes
            &[0x00, 0x10],                   // inScheme: TPM_ALG_NULL
            &[0, 0, 0, 1],                   // PCRselect: one selection
            &[0x00, 0x0B, 0x03],             //   SHA-256, 3 bytes
            &[0x81, 0x00, 0x82],             //   PCRs 0, 7, 17, 23
        ]);
        assert_eq!(expected.len(), 45);
        assert_eq!(quote_sha256(0x8000_0001, &[0xDE, 0xAD, 0xBE, 0xEF], &[17, 0, 23, 7]), expected);
        // No qualifying data, no PCR, PCRs above 23 left out, a repeated PCR.
        let bare = quote_sha256(0x8000_0000, &[], &[24, 99, u32::MAX]);
        assert_eq!(bare.len(), 41);
        assert_eq!(&bare[2..6], &[0, 0, 0, 41]);
        assert_eq!(&bare[27..], &[0, 0, 0x00, 0x10, 0, 0, 0, 1, 0x00, 0x0B, 3, 0, 0, 0]);
        assert_eq!(&quote_sha256(0x8000_0000, &[], &[10, 10])[38..], &[0, 0x04, 0]);
        let nonce = [0x77; 32];
        let long = quote_sha256(0x8000_0000, &nonce, &[16]);
        assert_eq!(long.len(), 73);
        assert_eq!(&long[27..29], &[0, 32]);
        assert_eq!(&long[29..61], &nonce);
        assert_eq!(&long[70..], &[0, 0, 0x01]);
    }

    #[test]
    fn endorsement_key_template_layout() {
        let t = endorsement_key_template();
        // TCG EK Credential Profile, template L-1: 0x0001 0x000B 0x000300B2, 32-byte policy,
        // AES 128 CFB, NULL scheme, 2048 bits, exponent 0, 256 zero bytes.
        assert_eq!(t[..8], [0, 1, 0, 0x0B, 0, 0x03, 0x00, 0xB2]);
        assert_eq!(t[8..10], [0, 32]);
        assert_eq!(t[42..56], [0, 6, 0, 128, 0, 0x43, 0, 0x10, 0x08, 0, 0, 0, 0, 0]);
        assert_eq!(t[56..58], [1, 0]);
        assert_eq!(t.len(), 58 + 256);
        assert!(t[58..].iter().all(|&b| b == 0));
        let command = create_primary_endorsement_key();
        assert_eq!(command[6..14], [0, 0, 0x01, 0x31, 0x40, 0, 0, 0x0B]);
        assert_eq!(
            usize::try_from(u32::from_be_bytes(command[2..6].try_into().unwrap())).unwrap(),
            command.len()
        );
    }

    #[test]
    fn attestation_key_public_and_name() {
        let public = attestation_key_public(&[1; 32], &[2; 32]);
        let template = Writer::new().ecc_signing_public(ATTESTATION_KEY_ATTRIBUTES, &[], &[]);
        assert_eq!(public[..20], template.finish()[..20]);
        assert_eq!(public[20..22], [0, 32]);
        assert_eq!(public[22..54], [1; 32]);
        assert_eq!(public[54..56], [0, 32]);
        assert_eq!(public[56..], [2; 32]);
        let name = object_name(&public);
        assert_eq!(name[..2], [0, 0x0B]);
        assert_eq!(name[2..], vpr_proto::crypto::hash(&[&public]).0);
    }

    #[test]
    fn policy_secret_and_activate_credential_layouts() {
        let c = policy_secret(TPM_RH_ENDORSEMENT, 0x0300_0001);
        assert_eq!(
            c,
            cat(&[
                &[0x80, 0x02, 0, 0, 0, 0x29, 0, 0, 0x01, 0x51],
                &[0x40, 0, 0, 0x0B, 0x03, 0, 0, 0x01],
                &EMPTY_PASSWORD_AUTH,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ])
        );
        let c = activate_credential(
            0x8000_0001,
            0x8000_0002,
            0x0300_0001,
            &[0, 1, 0xAA],
            &[0, 1, 0xBB],
        );
        assert_eq!(
            c,
            cat(&[
                &[0x80, 0x02, 0, 0, 0, 0x2E, 0, 0, 0x01, 0x47],
                &[0x80, 0, 0, 1, 0x80, 0, 0, 2],
                &[0, 0, 0, 18, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, 3, 0, 0, 1, 0, 0, 0, 0, 0],
                &[0, 1, 0xAA, 0, 1, 0xBB],
            ])
        );
    }

    #[test]
    fn activate_credential_responses() {
        let response = |credential: &[u8], policy_nonce: &[u8]| {
            let sized = |b: &[u8]| cat(&[&u16::try_from(b.len()).unwrap().to_be_bytes(), b]);
            let parameters = sized(credential);
            resized(cat(&[
                &[0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
                &u32::try_from(parameters.len()).unwrap().to_be_bytes(),
                &parameters,
                &[0, 0, 0x01, 0, 0], // password session
                &sized(policy_nonce),
                &[0, 0, 0], // attributes, empty hmac
            ]))
        };
        let ok = response(&[7; 32], &[9; 32]);
        assert_eq!(parse_activate_credential(&ok), Ok(vec![7; 32]));
        for len in 0..ok.len() {
            assert!(parse_activate_credential(&resized(ok[..len].to_vec())).is_err(), "{len}");
        }
        assert!(parse_activate_credential(&response(&[7; 65], &[9; 32])).is_err());
        assert!(parse_activate_credential(&response(&[7; 32], &[9; 33])).is_err());
        // TPM_RC_INTEGRITY on parameter 1 (0x9F | 0x100): a credential for another key.
        let refused = [0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x01, 0x9F];
        assert_eq!(parse_activate_credential(&refused), Err(TpmError::Tpm(ResponseCode(0x19F))));
    }

    #[test]
    fn create_primary_ecc_responses() {
        let expected = Ok((0x8000_0000, POINT_X, POINT_Y));
        assert_eq!(parse_create_primary_ecc(&create_primary_ok()), expected);

        let malformed = |bytes: &[u8]| match parse_create_primary_ecc(bytes) {
            Err(TpmError::Malformed(what)) => what,
            other => panic!("{other:?}"),
        };
        let x31 = ecc_public(&POINT_X[..31], &POINT_Y);
        assert_eq!(malformed(&create_primary_with(&x31)), "outPublic x is not 32 bytes");
        let y33 = ecc_public(&POINT_X, &[1; 33]);
        assert_eq!(malformed(&create_primary_with(&y33)), "outPublic y is not 32 bytes");
        let mut longer = ecc_public(&POINT_X, &POINT_Y);
        longer.push(0);
        assert_eq!(
            malformed(&create_primary_with(&longer)),
            "outPublic longer than an ECC TPMT_PUBLIC"
        );
        for (at, value, what) in [
            (1, 0x01, "outPublic is not an ECC key"), // TPM_ALG_RSA
            (3, 0x04, "outPublic nameAlg is not SHA-256"),
            (11, 0x06, "outPublic has a symmetric algorithm"), // AES
            (13, 0x14, "outPublic scheme is not ECDSA with SHA-256"), // RSASSA
            (15, 0x0C, "outPublic scheme is not ECDSA with SHA-256"), // SHA-384
            (17, 0x04, "outPublic curve is not NIST P-256"),   // P-384
            (19, 0x20, "outPublic has a KDF"),                 // KDF1_SP800_56A
        ] {
            let mut public = ecc_public(&POINT_X, &POINT_Y);
            public[at] = value;
            assert_eq!(malformed(&create_primary_with(&public)), what);
        }
        // parameterSize one short, one long.
        for delta in [-1i32, 1] {
            let mut r = create_primary_ok();
            let size = u32::from_be_bytes(r[14..18].try_into().unwrap());
            r[14..18].copy_from_slice(&size.wrapping_add_signed(delta).to_be_bytes());
            assert!(parse_create_primary_ecc(&r).is_err(), "{delta}");
        }
        // An error, and a response without the authorization area.
        let error = vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x09, 0x02];
        assert_eq!(parse_create_primary_ecc(&error), Err(TpmError::Tpm(ResponseCode(0x902))));
        let mut bare = create_primary_ok();
        bare[1] = 0x01;
        assert!(parse_create_primary_ecc(&bare).is_err());
    }

    #[test]
    fn quote_responses() {
        let quote = parse_quote(&quote_ok()).unwrap();
        assert_eq!(quote, Quote { attest: attest_quote(), r: [0xA1; 32], s: [0xB2; 32] });

        // Short r and s are left-padded; an empty one is zero.
        let quote = parse_quote(&quote_with(&attest_quote(), &[0x0F; 31], &[])).unwrap();
        let mut r = [0x0F; 32];
        r[0] = 0;
        assert_eq!((quote.r, quote.s), (r, [0; 32]));
        // Longer than 32 bytes is refused, even with a leading zero.
        for (r, s) in [(&[1u8; 33][..], &[2u8; 32][..]), (&[2; 32], &[0; 33])] {
            assert_eq!(
                parse_quote(&quote_with(&attest_quote(), r, s)),
                Err(TpmError::Malformed("signature value longer than 32 bytes"))
            );
        }
        // Another signature algorithm or hash.
        let mut other = quote_ok();
        let at = 10 + 4 + 2 + attest_quote().len();
        assert_eq!(&other[at..at + 4], &[0x00, 0x18, 0x00, 0x0B]);
        other[at + 1] = 0x14; // RSASSA
        assert_eq!(parse_quote(&other), Err(TpmError::Malformed("signature is not ECDSA")));
        let mut other = quote_ok();
        other[at + 3] = 0x04; // SHA-1
        assert_eq!(parse_quote(&other), Err(TpmError::Malformed("signature hash is not SHA-256")));
        // parameterSize one short, one long; an error; no authorization area.
        for delta in [-1i32, 1] {
            let mut r = quote_ok();
            let size = u32::from_be_bytes(r[10..14].try_into().unwrap());
            r[10..14].copy_from_slice(&size.wrapping_add_signed(delta).to_be_bytes());
            assert!(parse_quote(&r).is_err(), "{delta}");
        }
        let error = vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x01, 0x8B];
        assert_eq!(parse_quote(&error), Err(TpmError::Tpm(ResponseCode(0x18B))));
        let mut bare = quote_ok();
        bare[1] = 0x01;
        assert!(parse_quote(&bare).is_err());
    }

    #[test]
    fn tpms_attest_quote() {
        let info = parse_tpms_attest_quote(&attest_quote()).unwrap();
        assert_eq!(
            info,
            QuoteInfo {
                qualified_signer: info.qualified_signer.clone(),
                extra_data: (1..=16).collect(),
                reset_count: info.reset_count,
                firmware_version: info.firmware_version,
                pcr_select: [0x01, 0x00, 0x02],
                pcr_digest: DIGEST
            }
        );
        let malformed = |bytes: &[u8]| match parse_tpms_attest_quote(bytes) {
            Err(TpmError::Malformed(what)) => what,
            other => panic!("{other:?}"),
        };
        let valid = attest_quote();
        // Offsets: magic 0, type 4, qualifiedSigner 6, extraData 42, clockInfo 60,
        // firmwareVersion 77, pcrSelect 85, pcrDigest 95.
        for (at, value, what) in [
            (0, 0x00, "TPMS_ATTEST magic is not TPM_GENERATED_VALUE"),
            (5, 0x17, "TPMS_ATTEST is not a quote's"), // TPM_ST_ATTEST_CERTIFY
            (88, 0x02, "pcrSelect is not one selection"),
            (90, 0x04, "pcrSelect is not of the SHA-256 bank"),
            (91, 0x04, "pcrSelect is not of 3 bytes"),
            (96, 0x14, "pcrDigest is not a SHA-256 digest"),
        ] {
            let mut attest = valid.clone();
            attest[at] = value;
            assert_eq!(malformed(&attest), what, "byte {at}");
        }
        let mut longer = valid.clone();
        longer.push(0);
        assert_eq!(malformed(&longer), "trailing bytes after the TPMS_ATTEST");
        for len in 0..valid.len() {
            assert!(parse_tpms_attest_quote(&valid[..len]).is_err(), "{len} bytes");
        }
        // A name larger than any, extraData larger than a TPMT_HA.
        let mut attest = valid[..6].to_vec();
        attest.extend_from_slice(&[0, 67]);
        attest.extend_from_slice(&[0; 67]);
        attest.extend_from_slice(&valid[42..]);
        assert_eq!(malformed(&attest), "qualifiedSigner larger than any name");
        let mut attest = valid[..42].to_vec();
        attest.extend_from_slice(&[0, 67]);
        attest.extend_from_slice(&[0; 67]);
        attest.extend_from_slice(&valid[60..]);
        assert_eq!(malformed(&attest), "extraData larger than a TPMT_HA");
        // Changes of the free fields keep it valid; random mutations never panic.
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..5000 {
            let mut attest = valid.clone();
            let at = rng.below(attest.len());
            match rng.below(3) {
                0 => attest[at] ^= 1 << rng.below(8),
                1 => attest.insert(at, rng.next().to_le_bytes()[0]),
                _ => {
                    attest.remove(at);
                }
            }
            if parse_tpms_attest_quote(&attest).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted > 500, "{accepted}");
    }
}
