//! TPM 2.0 commands and responses: the few the hypervisor sends, marshalled by hand, and
//! parsers for their responses — TPM2_Startup, TPM2_GetRandom, TPM2_PCR_Extend,
//! TPM2_PCR_Read, TPM2_NV_ReadPublic, TPM2_NV_Read, TPM2_NV_DefineSpace and TPM2_NV_Write,
//! and the policy-session commands TPM2_StartAuthSession, TPM2_PolicyPCR and
//! TPM2_FlushContext with which an NV index is read under a PCR policy
//! ([`nv_read_with_session`], [`policy_pcr_digest`]).
//! For attestation: TPM2_CreatePrimary of a restricted ECDSA P-256 signing key
//! ([`create_primary_ecc_signing_key`]) and TPM2_Quote of SHA-256 PCRs with it
//! ([`quote_sha256`], [`parse_quote`], [`parse_tpms_attest_quote`]).
//!
//! A command is a 10-byte header — `tag` (`TPMI_ST_COMMAND_TAG`, u16), `commandSize` (u32,
//! the whole command), `commandCode` (`TPM_CC`, u32) — then its handles, its authorization
//! area when `tag` is [`TPM_ST_SESSIONS`], and its parameters. A response has the same
//! header with a response code (`TPM_RC`) in place of the command code (Part 1 §18,
//! "Command/Response Structure"). All integers are big-endian; a `TPM2B_*` is a u16 size
//! followed by that many bytes; a `TPML_*` is a u32 count followed by that many elements.
//!
//! The parsers take whatever the TPM returned and never panic: every length is checked, and
//! anything but the exact expected layout is [`TpmError::Malformed`]; a non-zero response
//! code is [`TpmError::Tpm`].
//!
//! Constants and structures cite the TPM 2.0 Library specification, Part 2 (Structures),
//! revision 1.59; commands cite Part 3 (Commands).

use super::TpmError;
use alloc::vec::Vec;
use core::fmt;

/// The algorithm identifiers, tags and object attributes shared with the uTPM and the
/// verifier.
pub use vpr_proto::tpm2::{
    ATTESTATION_KEY_ATTRIBUTES, TPMA_OBJECT_ADMINWITHPOLICY, TPMA_OBJECT_DECRYPT,
    TPMA_OBJECT_FIXEDPARENT, TPMA_OBJECT_FIXEDTPM, TPMA_OBJECT_NODA, TPMA_OBJECT_RESTRICTED,
    TPMA_OBJECT_SENSITIVEDATAORIGIN, TPMA_OBJECT_SIGN, TPMA_OBJECT_USERWITHAUTH, TPM_ALG_AES,
    TPM_ALG_CFB, TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_RSA, TPM_ALG_SHA256,
    TPM_ECC_NIST_P256, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE,
};

/// Size of a command or response header: tag, size, command or response code.
pub const HEADER_LEN: usize = 10;
/// Size of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;
/// PCRs of a PC Client TPM: 0 to 23 (PTP: 24 PCRs per bank).
pub const PCR_COUNT: u32 = 24;
/// Bytes of a PCR selection bitmap covering [`PCR_COUNT`] PCRs (Part 2 §10.6.1:
/// `PCR_SELECT_MIN`).
pub const PCR_SELECT_MIN: u8 = 3;

/// `TPM_ST_RSP_COMMAND` (Part 2 §6.9): the tag of a response to a command whose tag was
/// bad — also what a TPM 1.2 answers a TPM 2.0 command with.
pub const TPM_ST_RSP_COMMAND: u16 = 0x00C4;
/// `TPM_ST_NO_SESSIONS` (Part 2 §6.9): no authorization area.
pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS` (Part 2 §6.9): an authorization area follows the handles.
pub const TPM_ST_SESSIONS: u16 = 0x8002;

/// `TPM_SU_CLEAR` (Part 2 §6.10): a TPM Reset or Restart, not a Resume.
pub const TPM_SU_CLEAR: u16 = 0x0000;
/// `TPM_RS_PW` (Part 2 §7.4): the password authorization session.
pub const TPM_RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER` (Part 2 §7.4): the owner (storage) hierarchy, as an authorization handle.
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_NULL` (Part 2 §7.4): no entity — for TPM2_StartAuthSession, no salt key
/// (`tpmKey`) and no bind entity (`bind`).
pub const TPM_RH_NULL: u32 = 0x4000_0007;
/// `TPM_HT_POLICY_SESSION` (Part 2 §7.2): the handle type (most significant byte) of a
/// policy session's handle.
pub const TPM_HT_POLICY_SESSION: u8 = 0x03;
/// `TPM_SE_POLICY` (Part 2 §6.11): a policy session.
pub const TPM_SE_POLICY: u8 = 0x01;

/// `TPM_CC_Startup` (Part 2 §6.5.2).
pub const TPM_CC_STARTUP: u32 = 0x0000_0144;
/// `TPM_CC_GetRandom` (Part 2 §6.5.2).
pub const TPM_CC_GET_RANDOM: u32 = 0x0000_017B;
/// `TPM_CC_PCR_Read` (Part 2 §6.5.2).
pub const TPM_CC_PCR_READ: u32 = 0x0000_017E;
/// `TPM_CC_PCR_Extend` (Part 2 §6.5.2).
pub const TPM_CC_PCR_EXTEND: u32 = 0x0000_0182;
/// `TPM_CC_NV_Read` (Part 2 §6.5.2).
pub const TPM_CC_NV_READ: u32 = 0x0000_014E;
/// `TPM_CC_NV_ReadPublic` (Part 2 §6.5.2).
pub const TPM_CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
/// `TPM_CC_NV_DefineSpace` (Part 2 §6.5.2).
pub const TPM_CC_NV_DEFINE_SPACE: u32 = 0x0000_012A;
/// `TPM_CC_NV_Write` (Part 2 §6.5.2).
pub const TPM_CC_NV_WRITE: u32 = 0x0000_0137;
/// `TPM_CC_StartAuthSession` (Part 2 §6.5.2).
pub const TPM_CC_START_AUTH_SESSION: u32 = 0x0000_0176;
/// `TPM_CC_PolicyPCR` (Part 2 §6.5.2).
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;
/// `TPM_CC_FlushContext` (Part 2 §6.5.2).
pub const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;

/// `TPM_CC_CreatePrimary` (Part 2 §6.5.2).
pub const TPM_CC_CREATE_PRIMARY: u32 = 0x0000_0131;
/// `TPM_CC_Quote` (Part 2 §6.5.2).
pub const TPM_CC_QUOTE: u32 = 0x0000_0158;

/// `TPM_RH_ENDORSEMENT` (Part 2 §7.4): the endorsement hierarchy, as a primary object's
/// parent (TPM2_CreatePrimary) and as an authorization handle.
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;
/// `TPM_CC_PolicySecret` (Part 2 §6.5.2).
pub const TPM_CC_POLICY_SECRET: u32 = 0x0000_0151;
/// `TPM_CC_ActivateCredential` (Part 2 §6.5.2).
pub const TPM_CC_ACTIVATE_CREDENTIAL: u32 = 0x0000_0147;
/// `TPM_CC_PolicyLocality` (Part 2 §6.5.2).
pub const TPM_CC_POLICY_LOCALITY: u32 = 0x0000_016F;
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
/// [`RSA2048_LEN`] as the size field of a `TPM2B_PUBLIC_KEY_RSA`.
const RSA2048_SIZE: [u8; 2] = [1, 0];
const _: () = assert!(u16::from_be_bytes(RSA2048_SIZE) as usize == RSA2048_LEN);
/// [`P256_LEN`] as the size field of a `TPM2B_ECC_PARAMETER`.
const P256_SIZE: [u8; 2] = [0, 32];

/// Size of a P-256 coordinate, and of an ECDSA P-256 `r` or `s`.
pub const P256_LEN: usize = 32;

// NV index attributes, `TPMA_NV` (Part 2 §13.4): a u32 of bits, with the index's type,
// `TPM_NT`, in bits 4 to 7.

/// `TPMA_NV_OWNERWRITE` (bit 1): the owner hierarchy's authorization may write the index.
pub const TPMA_NV_OWNERWRITE: u32 = 1 << 1;
/// `TPMA_NV_AUTHWRITE` (bit 2): the index's own authValue may write it.
pub const TPMA_NV_AUTHWRITE: u32 = 1 << 2;
/// `TPMA_NV_POLICYWRITE` (bit 3): a policy session satisfying the index's `authPolicy` may
/// write the index.
pub const TPMA_NV_POLICYWRITE: u32 = 1 << 3;
/// `TPMA_NV_WRITEALL` (bit 12): a write must cover the whole index.
pub const TPMA_NV_WRITEALL: u32 = 1 << 12;
/// `TPMA_NV_WRITEDEFINE` (bit 13): TPM2_NV_WriteLock may lock the index against writes
/// until it is deleted.
pub const TPMA_NV_WRITEDEFINE: u32 = 1 << 13;
/// `TPMA_NV_OWNERREAD` (bit 17): the owner hierarchy's authorization may read the index.
pub const TPMA_NV_OWNERREAD: u32 = 1 << 17;
/// `TPMA_NV_AUTHREAD` (bit 18): the index's own authValue may read it.
pub const TPMA_NV_AUTHREAD: u32 = 1 << 18;
/// `TPMA_NV_POLICYREAD` (bit 19): a policy session satisfying the index's `authPolicy`
/// may read it.
pub const TPMA_NV_POLICYREAD: u32 = 1 << 19;
/// `TPMA_NV_NO_DA` (bit 25): failed authorizations of the index do not count towards
/// dictionary-attack lockout.
pub const TPMA_NV_NO_DA: u32 = 1 << 25;
/// `TPMA_NV_WRITTEN` (bit 29): the index has been written. Set by the TPM only: a
/// TPM2_NV_DefineSpace with it set is refused (`TPM_RC_ATTRIBUTES`).
pub const TPMA_NV_WRITTEN: u32 = 1 << 29;
/// `TPMA_NV_TPM_NT` (bits 4 to 7): the index's type, a `TPM_NT` shifted by
/// [`TPMA_NV_TPM_NT_SHIFT`].
pub const TPMA_NV_TPM_NT_MASK: u32 = 0xF << TPMA_NV_TPM_NT_SHIFT;
/// Where `TPM_NT` sits in `TPMA_NV`.
pub const TPMA_NV_TPM_NT_SHIFT: u32 = 4;
/// `TPM_NT_ORDINARY` (Part 2 §13.4), already in place in bits 4 to 7: an
/// ordinary index, data written and read as bytes.
pub const TPM_NT_ORDINARY: u32 = 0;

/// The largest `TPM2B_DIGEST` (Part 2 §10.4.2: the size of `TPMU_HA`, a SHA-512 digest).
const MAX_DIGEST: usize = 64;
/// The largest `TPM2B_NAME` (Part 2 §10.5.3: the size of `TPMU_NAME`, a `TPMT_HA` — an
/// algorithm identifier and the largest digest).
const MAX_NAME: usize = 2 + MAX_DIGEST;

/// A command: the header for `tag` and `code`, then `parts` in order.
fn command(tag: u16, code: u32, parts: &[&[u8]]) -> Vec<u8> {
    let len = HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&tag.to_be_bytes());
    // Every command built here is a few dozen bytes.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// TPM2_Startup(TPM_SU_CLEAR) (Part 3 §9.3): `startupType`.
pub fn startup_clear() -> Vec<u8> {
    command(TPM_ST_NO_SESSIONS, TPM_CC_STARTUP, &[&TPM_SU_CLEAR.to_be_bytes()])
}

/// TPM2_GetRandom (Part 3 §16.1): `bytesRequested`. The TPM returns at most the size of
/// its largest digest, possibly fewer.
pub fn get_random(bytes: u16) -> Vec<u8> {
    command(TPM_ST_NO_SESSIONS, TPM_CC_GET_RANDOM, &[&bytes.to_be_bytes()])
}

/// The authorization area of a command authorized by the empty password: its size (u32),
/// then one `TPMS_AUTH_COMMAND` (Part 2 §10.13.2) — `sessionHandle` [`TPM_RS_PW`], an empty
/// `nonceCaller`, `sessionAttributes` 0 (`TPMA_SESSION`, Part 2 §8.4; `continueSession`
/// means nothing for the password session), an empty `hmac` (the password).
const EMPTY_PASSWORD_AUTH: [u8; 13] = {
    let handle = TPM_RS_PW.to_be_bytes();
    [0, 0, 0, 9, handle[0], handle[1], handle[2], handle[3], 0, 0, 0, 0, 0]
};

/// TPM2_PCR_Extend (Part 3 §22.2) of the SHA-256 bank: handle `pcrHandle` (`pcr`, which is
/// its own handle), the empty-password authorization area, then `digests`, a
/// `TPML_DIGEST_VALUES` (Part 2 §10.9.6) of one `TPMT_HA` (Part 2 §10.3.2): `hashAlg`
/// [`TPM_ALG_SHA256`] and the 32 bytes of `digest`.
pub fn pcr_extend_sha256(pcr: u32, digest: &[u8; 32]) -> Vec<u8> {
    command(
        TPM_ST_SESSIONS,
        TPM_CC_PCR_EXTEND,
        &[
            &pcr.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &1u32.to_be_bytes(),
            &TPM_ALG_SHA256.to_be_bytes(),
            digest,
        ],
    )
}

/// The selection bitmap ([`PCR_SELECT_MIN`] bytes) of PCR `pcr`: bit `pcr % 8` of byte
/// `pcr / 8` (Part 2 §10.6.1). Empty for a PCR above 23.
fn pcr_bitmap(pcr: u32) -> [u8; PCR_SELECT_MIN as usize] {
    let mut bitmap = [0; PCR_SELECT_MIN as usize];
    if let Some(byte) = usize::try_from(pcr / 8).ok().and_then(|i| bitmap.get_mut(i)) {
        *byte = 1 << (pcr % 8);
    }
    bitmap
}

/// TPM2_PCR_Read (Part 3 §22.4) of the SHA-256 bank of PCR `pcr`: `pcrSelectionIn`, a
/// `TPML_PCR_SELECTION` (Part 2 §10.9.7) of one `TPMS_PCR_SELECTION` (Part 2 §10.6.2):
/// `hash` [`TPM_ALG_SHA256`], `sizeofSelect` 3, the bitmap with bit `pcr`. `pcr` must be
/// below [`PCR_COUNT`]: a three-byte bitmap cannot select a higher one, and the command
/// then selects no PCR.
pub fn pcr_read_sha256(pcr: u32) -> Vec<u8> {
    command(
        TPM_ST_NO_SESSIONS,
        TPM_CC_PCR_READ,
        &[&1u32.to_be_bytes(), &TPM_ALG_SHA256.to_be_bytes(), &[PCR_SELECT_MIN], &pcr_bitmap(pcr)],
    )
}

/// TPM2_NV_ReadPublic (Part 3 §31.6): handle `nvIndex`, no authorization.
pub fn nv_read_public(index: u32) -> Vec<u8> {
    command(TPM_ST_NO_SESSIONS, TPM_CC_NV_READ_PUBLIC, &[&index.to_be_bytes()])
}

/// TPM2_NV_Read (Part 3 §31.13): handles `authHandle` (`auth`: [`TPM_RH_OWNER`], the
/// platform hierarchy, or `index` itself, as the index's attributes allow) and `nvIndex`,
/// the empty-password authorization area (for `authHandle`), then the parameters `size`
/// (bytes to read) and `offset` (where in the index's data). The TPM refuses `size` above
/// its `TPM2B_MAX_NV_BUFFER` (at least 512 bytes) and a range beyond the index's data
/// (`TPM_RC_NV_RANGE`).
pub fn nv_read(auth: u32, index: u32, size: u16, offset: u16) -> Vec<u8> {
    command(
        TPM_ST_SESSIONS,
        TPM_CC_NV_READ,
        &[
            &auth.to_be_bytes(),
            &index.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &size.to_be_bytes(),
            &offset.to_be_bytes(),
        ],
    )
}

/// TPM2_NV_DefineSpace (Part 3 §31.3) of an NV index, authorized by the
/// owner hierarchy's empty password: handle `authHandle` [`TPM_RH_OWNER`], the
/// empty-password authorization area, then the parameters `auth` (a `TPM2B_AUTH`, the
/// index's own authValue: empty) and `publicInfo`, a `TPM2B_NV_PUBLIC` (Part 2 §13.6) of a
/// `TPMS_NV_PUBLIC` (Part 2 §13.5) — `nvIndex` `index`, `nameAlg` [`TPM_ALG_SHA256`],
/// `attributes` (`TPMA_NV`: the `TPMA_NV_*` constants and the type, e.g.
/// [`TPM_NT_ORDINARY`]), an empty `authPolicy` and `dataSize` `data_size`.
pub fn nv_define_space(index: u32, attributes: u32, data_size: u16) -> Vec<u8> {
    define_space(index, attributes, data_size, &[])
}

/// TPM2_NV_DefineSpace (Part 3 §31.3) as [`nv_define_space`], but with `authPolicy`
/// `auth_policy`: a SHA-256 policy digest (the `nameAlg`'s size, as the TPM requires), such
/// as [`policy_pcr_digest`]'s. With [`TPMA_NV_POLICYREAD`] in `attributes`, a policy session
/// whose `policyDigest` equals it may read the index ([`nv_read_with_session`]).
pub fn nv_define_space_with_policy(
    index: u32,
    attributes: u32,
    data_size: u16,
    auth_policy: &[u8; 32],
) -> Vec<u8> {
    define_space(index, attributes, data_size, auth_policy)
}

/// TPM2_NV_DefineSpace with `authPolicy` `auth_policy` (empty or a 32-byte digest).
fn define_space(index: u32, attributes: u32, data_size: u16, auth_policy: &[u8]) -> Vec<u8> {
    // `auth_policy` is at most a digest.
    let policy_len = u16::try_from(auth_policy.len()).unwrap_or(0);
    // TPMS_NV_PUBLIC: 4 + 2 + 4 + (2 + the policy) + 2 bytes.
    let public_len = 14 + policy_len;
    command(
        TPM_ST_SESSIONS,
        TPM_CC_NV_DEFINE_SPACE,
        &[
            &TPM_RH_OWNER.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &0u16.to_be_bytes(), // auth: empty
            &public_len.to_be_bytes(),
            &index.to_be_bytes(),
            &TPM_ALG_SHA256.to_be_bytes(),
            &attributes.to_be_bytes(),
            &policy_len.to_be_bytes(),
            auth_policy,
            &data_size.to_be_bytes(),
        ],
    )
}

/// TPM2_NV_Write (Part 3 §31.8): handles `authHandle` (`auth`: [`TPM_RH_OWNER`], the
/// platform hierarchy, or `index` itself, as the index's attributes allow) and `nvIndex`,
/// the empty-password authorization area (for `authHandle`), then the parameters `data`
/// (a `TPM2B_MAX_NV_BUFFER`) and `offset` (where in the index's data). The TPM refuses
/// `data` above its `MAX_NV_BUFFER_SIZE` (at least 512 bytes) and a range beyond the
/// index's data (`TPM_RC_NV_RANGE`). `data` must fit in a `TPM2B` (at most 65535 bytes;
/// longer is cut to that, which the TPM then refuses as too large for its buffer).
pub fn nv_write(auth: u32, index: u32, data: &[u8], offset: u16) -> Vec<u8> {
    let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
    // `data` is at most u16::MAX bytes now.
    let size = u16::try_from(data.len()).unwrap_or(u16::MAX);
    command(
        TPM_ST_SESSIONS,
        TPM_CC_NV_WRITE,
        &[
            &auth.to_be_bytes(),
            &index.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &size.to_be_bytes(),
            data,
            &offset.to_be_bytes(),
        ],
    )
}

/// `data` cut to what a `TPM2B` holds (65535 bytes), and its size field.
fn tpm2b(data: &[u8]) -> ([u8; 2], &[u8]) {
    let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
    // `data` is at most u16::MAX bytes now.
    (u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes(), data)
}

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
    let (size, nonce) = tpm2b(nonce_caller);
    command(
        TPM_ST_NO_SESSIONS,
        TPM_CC_START_AUTH_SESSION,
        &[
            &TPM_RH_NULL.to_be_bytes(), // tpmKey
            &TPM_RH_NULL.to_be_bytes(), // bind
            &size,
            nonce,
            &0u16.to_be_bytes(), // encryptedSalt: empty
            &[TPM_SE_POLICY],
            &TPM_ALG_NULL.to_be_bytes(),   // symmetric.algorithm
            &TPM_ALG_SHA256.to_be_bytes(), // authHash
        ],
    )
}

/// The marshalled `TPML_PCR_SELECTION` (Part 2 §10.9.7) of PCR `pcr` of the SHA-256 bank:
/// `count` 1, then one `TPMS_PCR_SELECTION` — `hash` [`TPM_ALG_SHA256`], `sizeofSelect` 3
/// and the bitmap ([`pcr_bitmap`]).
fn pcr_selection_sha256(pcr: u32) -> [u8; 10] {
    let [c0, c1, c2, c3] = 1u32.to_be_bytes();
    let [h0, h1] = TPM_ALG_SHA256.to_be_bytes();
    let [b0, b1, b2] = pcr_bitmap(pcr);
    [c0, c1, c2, c3, h0, h1, PCR_SELECT_MIN, b0, b1, b2]
}

/// TPM2_PolicyPCR (Part 3 §23.7): no authorization area; handle `policySession`
/// (`session`); then the parameters `pcrDigest` (a `TPM2B_DIGEST`: empty, so the TPM
/// digests the PCRs' current values rather than checking them against an expected digest)
/// and `pcrs`, a `TPML_PCR_SELECTION` of PCR `pcr` of the SHA-256 bank (as for
/// [`pcr_read_sha256`]; `pcr` must be below [`PCR_COUNT`]). The session's `policyDigest`
/// is then extended as [`policy_pcr_digest`] describes.
pub fn policy_pcr_sha256(session: u32, pcr: u32) -> Vec<u8> {
    command(
        TPM_ST_NO_SESSIONS,
        TPM_CC_POLICY_PCR,
        &[&session.to_be_bytes(), &0u16.to_be_bytes(), &pcr_selection_sha256(pcr)],
    )
}

/// The `policyDigest` of a SHA-256 policy session after TPM2_PolicyPCR ([`policy_pcr_sha256`])
/// of PCR `pcr` holding `pcr_value`, started from the all-zero digest of a new session
/// (Part 3 §23.7.1): SHA-256(`policyDigest_old` (32 zero bytes) || `TPM_CC_PolicyPCR`
/// (u32) || `pcrs` (the marshalled `TPML_PCR_SELECTION`: count 1, SHA-256, size 3, the
/// bitmap) || `pcrDigest`), where `pcrDigest` is the SHA-256 of the selected PCRs' values
/// concatenated — of the one value here. This is the `authPolicy` an NV index needs for
/// such a session to read it.
pub fn policy_pcr_digest(pcr_value: &[u8; 32], pcr: u32) -> [u8; 32] {
    use vpr_proto::crypto::hash;
    let pcr_digest = hash(&[pcr_value]);
    let zero = [0u8; SHA256_LEN];
    let code = TPM_CC_POLICY_PCR.to_be_bytes();
    hash(&[&zero, &code, &pcr_selection_sha256(pcr), &pcr_digest.0]).0
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
    Ok(command(TPM_ST_NO_SESSIONS, TPM_CC_POLICY_LOCALITY, &[&session.to_be_bytes(), &[bit]]))
}

/// The `policyDigest` after TPM2_PolicyLocality of `locality` in a session whose digest was
/// `digest` (Part 3 §23.4.1): SHA-256(`digest` || `TPM_CC_PolicyLocality` (u32) ||
/// `locality` (the one-byte `TPMA_LOCALITY`)).
pub fn policy_locality_digest(digest: &[u8; 32], locality: u8) -> Result<[u8; 32], TpmError> {
    let bit = locality_bit(locality)?;
    Ok(vpr_proto::crypto::hash(&[digest, &TPM_CC_POLICY_LOCALITY.to_be_bytes(), &[bit]]).0)
}

/// Checks the response to [`policy_locality`]: no authorization area and no body.
pub fn parse_policy_locality(bytes: &[u8]) -> Result<(), TpmError> {
    body(bytes, TPM_ST_NO_SESSIONS)?.end()
}

/// TPM2_NV_Write (Part 3 §31.8) of `data` at `offset` of NV index `index`, authorized by
/// the policy session `session`: handles `authHandle` and `nvIndex` both `index`, the
/// authorization area of [`nv_read_with_session`] (`continueSession` clear), then `data` (a
/// `TPM2B_MAX_NV_BUFFER`) and `offset`. The index must have [`TPMA_NV_POLICYWRITE`] and an
/// `authPolicy` equal to the session's `policyDigest`. `data` longer than a `TPM2B` holds is
/// cut, as for [`nv_write`].
pub fn nv_write_with_session(session: u32, index: u32, data: &[u8], offset: u16) -> Vec<u8> {
    let (size, data) = tpm2b(data);
    let auth = policy_session_auth(session);
    command(
        TPM_ST_SESSIONS,
        TPM_CC_NV_WRITE,
        &[
            &index.to_be_bytes(), // authHandle
            &index.to_be_bytes(), // nvIndex
            &auth,
            &size,
            data,
            &offset.to_be_bytes(),
        ],
    )
}

/// The authorization area of one policy session `session` without a nonce or an HMAC and
/// with `continueSession` clear: its size (u32, 9) and the `TPMS_AUTH_COMMAND` (Part 2
/// §10.13.2) — `sessionHandle`, an empty `nonceCaller`, `sessionAttributes` 0, an empty
/// `hmac`.
fn policy_session_auth(session: u32) -> [u8; 13] {
    let [s0, s1, s2, s3] = session.to_be_bytes();
    [0, 0, 0, 9, s0, s1, s2, s3, 0, 0, 0, 0, 0]
}

/// Checks the response to [`nv_write_with_session`]: `parameterSize` 0, then the
/// authorization area answering the policy session (as for [`parse_nv_read_policy`]).
pub fn parse_nv_write_policy(bytes: &[u8]) -> Result<(), TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    if r.u32("parameterSize truncated")? != 0 {
        return Err(TpmError::Malformed("NV_Write response with parameters"));
    }
    policy_session_response(r)
}

/// TPM2_FlushContext (Part 3 §28.4): no authorization area and no handles; the handle to
/// flush (`flushHandle`, a transient object or a session) is a parameter.
pub fn flush_context(handle: u32) -> Vec<u8> {
    command(TPM_ST_NO_SESSIONS, TPM_CC_FLUSH_CONTEXT, &[&handle.to_be_bytes()])
}

/// TPM2_NV_Read (Part 3 §31.13) of `size` bytes at `offset` of NV index `index`,
/// authorized by the policy session `session`: handles `authHandle` and `nvIndex` both
/// `index`, then the authorization area — its size (u32) and one `TPMS_AUTH_COMMAND`
/// (Part 2 §10.13.2): `sessionHandle` `session`, an empty `nonceCaller`,
/// `sessionAttributes` 0 (`TPMA_SESSION`, Part 2 §8.4: `continueSession` clear, so the TPM
/// flushes the session once the command succeeds) and an empty `hmac` (a policy session
/// without TPM2_PolicyAuthValue or TPM2_PolicyPassword carries none, Part 1 §19.7.1) —
/// then `size` and `offset`. The index must have [`TPMA_NV_POLICYREAD`] and an
/// `authPolicy` equal to the session's `policyDigest`; the TPM answers
/// `TPM_RC_POLICY_FAIL` otherwise ([`ResponseCode::is_policy_failure`]), and then keeps the
/// session (flush it: [`flush_context`]).
pub fn nv_read_with_session(session: u32, index: u32, size: u16, offset: u16) -> Vec<u8> {
    let auth = policy_session_auth(session);
    command(
        TPM_ST_SESSIONS,
        TPM_CC_NV_READ,
        &[
            &index.to_be_bytes(), // authHandle
            &index.to_be_bytes(), // nvIndex
            &auth,
            &size.to_be_bytes(),
            &offset.to_be_bytes(),
        ],
    )
}

/// The marshalled `TPMT_PUBLIC` (Part 2 §12.2.4) of a restricted ECDSA P-256 signing key
/// without a unique value: `type` [`TPM_ALG_ECC`], `nameAlg` [`TPM_ALG_SHA256`],
/// `objectAttributes` [`ATTESTATION_KEY_ATTRIBUTES`], an empty `authPolicy`, then
/// `parameters`, a `TPMS_ECC_PARMS` (Part 2 §12.2.3.6) — `symmetric` (a
/// `TPMT_SYM_DEF_OBJECT`: [`TPM_ALG_NULL`], nothing more), `scheme` (a `TPMT_ECC_SCHEME`:
/// [`TPM_ALG_ECDSA`] and its `hashAlg` [`TPM_ALG_SHA256`]), `curveID`
/// [`TPM_ECC_NIST_P256`], `kdf` (a `TPMT_KDF_SCHEME`: [`TPM_ALG_NULL`], nothing more) —
/// then `unique`, a `TPMS_ECC_POINT` of an empty `x` and an empty `y`.
const ECC_SIGNING_TEMPLATE: [u8; 24] = {
    let [t0, t1] = TPM_ALG_ECC.to_be_bytes();
    let [h0, h1] = TPM_ALG_SHA256.to_be_bytes();
    let [a0, a1, a2, a3] = ATTESTATION_KEY_ATTRIBUTES.to_be_bytes();
    let [n0, n1] = TPM_ALG_NULL.to_be_bytes();
    let [e0, e1] = TPM_ALG_ECDSA.to_be_bytes();
    let [c0, c1] = TPM_ECC_NIST_P256.to_be_bytes();
    [
        t0, t1, h0, h1, a0, a1, a2, a3, 0, 0, // type, nameAlg, objectAttributes, authPolicy
        n0, n1, e0, e1, h0, h1, c0, c1, n0, n1, // symmetric, scheme, curveID, kdf
        0, 0, 0, 0, // unique: empty x, empty y
    ]
};

/// TPM2_CreatePrimary (Part 3 §24.1) of a restricted ECDSA P-256 signing key — an
/// attestation key — in hierarchy `hierarchy` (e.g. [`TPM_RH_ENDORSEMENT`]), authorized by
/// the hierarchy's empty password: handle `primaryHandle` `hierarchy`, the empty-password
/// authorization area, then the parameters `inSensitive` (a `TPM2B_SENSITIVE_CREATE` of 4
/// bytes: an empty `userAuth` and empty `data`), `inPublic` (a `TPM2B_PUBLIC` of the
/// template `ECC_SIGNING_TEMPLATE` describes), `outsideInfo` (a `TPM2B_DATA`: empty) and
/// `creationPCR` (a `TPML_PCR_SELECTION`: no selection).
///
/// A primary key is derived from the hierarchy's seed and the template: the same TPM
/// returns the same key every time (until the hierarchy's seed changes).
pub fn create_primary_ecc_signing_key(hierarchy: u32) -> Vec<u8> {
    let template_len = u16::try_from(ECC_SIGNING_TEMPLATE.len()).unwrap_or(0);
    command(
        TPM_ST_SESSIONS,
        TPM_CC_CREATE_PRIMARY,
        &[
            &hierarchy.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &[0, 4, 0, 0, 0, 0], // inSensitive: 4 bytes, empty userAuth, empty data
            &template_len.to_be_bytes(),
            &ECC_SIGNING_TEMPLATE,
            &0u16.to_be_bytes(), // outsideInfo: empty
            &0u32.to_be_bytes(), // creationPCR: no selection
        ],
    )
}

/// The marshalled `TPMT_PUBLIC` (Part 2 §12.2.4) of the TCG EK Credential Profile's RSA-2048
/// endorsement key template L-1 (§B.3.3): `type` [`TPM_ALG_RSA`], `nameAlg`
/// [`TPM_ALG_SHA256`], `objectAttributes` [`EK_ATTRIBUTES`], `authPolicy` [`EK_POLICY_A`],
/// then a `TPMS_RSA_PARMS` (Part 2 §12.2.3.5): `symmetric` AES-128 in CFB mode, `scheme`
/// [`TPM_ALG_NULL`], `keyBits` 2048, `exponent` 0 (the default, 65537); then `unique`, 256
/// zero bytes. TPM2_CreatePrimary of it in the endorsement hierarchy gives the key the
/// manufacturer certified (the EK certificate holds its modulus).
pub fn endorsement_key_template() -> Vec<u8> {
    let mut t = Vec::with_capacity(2 + 2 + 4 + 2 + 32 + 6 + 2 + 2 + 4 + 2 + RSA2048_LEN);
    t.extend_from_slice(&TPM_ALG_RSA.to_be_bytes());
    t.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    t.extend_from_slice(&EK_ATTRIBUTES.to_be_bytes());
    t.extend_from_slice(&32u16.to_be_bytes());
    t.extend_from_slice(&EK_POLICY_A);
    t.extend_from_slice(&TPM_ALG_AES.to_be_bytes());
    t.extend_from_slice(&128u16.to_be_bytes());
    t.extend_from_slice(&TPM_ALG_CFB.to_be_bytes());
    t.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // scheme
    t.extend_from_slice(&2048u16.to_be_bytes()); // keyBits
    t.extend_from_slice(&0u32.to_be_bytes()); // exponent
    t.extend_from_slice(&RSA2048_SIZE);
    t.extend_from_slice(&[0; RSA2048_LEN]);
    t
}

/// TPM2_CreatePrimary (Part 3 §24.1) of the endorsement key
/// ([`endorsement_key_template`]) under [`TPM_RH_ENDORSEMENT`], authorized by its empty
/// password; the other parameters as for [`create_primary_ecc_signing_key`].
pub fn create_primary_endorsement_key() -> Vec<u8> {
    let template = endorsement_key_template();
    let (size, template) = tpm2b(&template);
    command(
        TPM_ST_SESSIONS,
        TPM_CC_CREATE_PRIMARY,
        &[
            &TPM_RH_ENDORSEMENT.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &[0, 4, 0, 0, 0, 0], // inSensitive: 4 bytes, empty userAuth, empty data
            &size,
            template,
            &0u16.to_be_bytes(), // outsideInfo: empty
            &0u32.to_be_bytes(), // creationPCR: no selection
        ],
    )
}

/// The marshalled `TPMT_PUBLIC` of the attestation key whose point is (`x`, `y`): the fields
/// of [`ECC_SIGNING_TEMPLATE`] up to `unique`, then a `TPMS_ECC_POINT` of the two 32-byte
/// coordinates. The key's TPM name is `TPM_ALG_SHA256` || SHA-256 of these bytes
/// ([`object_name`]).
pub fn attestation_key_public(x: &[u8; 32], y: &[u8; 32]) -> Vec<u8> {
    let head = &ECC_SIGNING_TEMPLATE[..ECC_SIGNING_TEMPLATE.len() - 4];
    [head, &P256_SIZE, x, &P256_SIZE, y].concat()
}

/// The name (Part 1 §16) of an object with the SHA-256 name algorithm and the marshalled
/// `TPMT_PUBLIC` `public`: [`TPM_ALG_SHA256`] || SHA-256(`public`).
pub fn object_name(public: &[u8]) -> [u8; 34] {
    vpr_proto::tpm2::sha256_name(public)
}

/// TPM2_PolicySecret (Part 3 §23.4) of the policy session `session` with the authorization
/// of `auth` (e.g. [`TPM_RH_ENDORSEMENT`]: its empty password): handles `authHandle` `auth`
/// and `policySession` `session`, the empty-password authorization area (for `authHandle`),
/// then the parameters `nonceTPM`, `cpHashA` and `policyRef` (`TPM2B`s, all empty: no
/// freshness, command or reference restriction) and `expiration` (INT32 0: none). The
/// session's `policyDigest` becomes as [`policy_secret_digest`] says.
pub fn policy_secret(auth: u32, session: u32) -> Vec<u8> {
    command(
        TPM_ST_SESSIONS,
        TPM_CC_POLICY_SECRET,
        &[
            &auth.to_be_bytes(),
            &session.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &0u16.to_be_bytes(), // nonceTPM
            &0u16.to_be_bytes(), // cpHashA
            &0u16.to_be_bytes(), // policyRef
            &0u32.to_be_bytes(), // expiration
        ],
    )
}

/// The `policyDigest` of a new SHA-256 policy session after TPM2_PolicySecret of the
/// permanent handle `auth` without a `policyRef` (Part 3 §23.4.1 and §23.2.4,
/// PolicyUpdate): SHA-256(SHA-256(0³² || `TPM_CC_PolicySecret` || name of `auth`) || the
/// empty `policyRef`). A permanent handle's name is the handle itself (Part 1 §16).
pub fn policy_secret_digest(auth: u32) -> [u8; 32] {
    use vpr_proto::crypto::hash;
    let first = hash(&[&[0; SHA256_LEN], &TPM_CC_POLICY_SECRET.to_be_bytes(), &auth.to_be_bytes()]);
    hash(&[&first.0]).0
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
    const AUTH_LEN: u32 = 2 * (4 + 2 + 1 + 2);
    command(
        TPM_ST_SESSIONS,
        TPM_CC_ACTIVATE_CREDENTIAL,
        &[
            &object.to_be_bytes(),
            &key.to_be_bytes(),
            &AUTH_LEN.to_be_bytes(),
            &TPM_RS_PW.to_be_bytes(),
            &[0, 0, 0, 0, 0], // empty nonceCaller, attributes 0, empty password
            &session.to_be_bytes(),
            &[0, 0, 0, 0, 0], // empty nonceCaller, continueSession clear, empty hmac
            credential_blob,
            secret,
        ],
    )
}

/// TPM2_Quote (Part 3 §18.4) with the signing key `sign_handle`, authorized by its empty
/// password: handle `signHandle`, the empty-password authorization area, then the
/// parameters `qualifyingData` (a `TPM2B_DATA`: `qualifying_data`, which the TPM wants of
/// at most the size of a `TPMT_HA` — `TPM_RC_SIZE` otherwise), `inScheme` (a
/// `TPMT_SIG_SCHEME`: [`TPM_ALG_NULL`], the key's own scheme) and `PCRselect`, a
/// `TPML_PCR_SELECTION` of one SHA-256 selection with the 3-byte bitmap of `pcrs` (PCRs
/// above 23 are left out).
pub fn quote_sha256(sign_handle: u32, qualifying_data: &[u8], pcrs: &[u32]) -> Vec<u8> {
    let (size, data) = tpm2b(qualifying_data);
    let mut bitmap = [0u8; PCR_SELECT_MIN as usize];
    for &pcr in pcrs {
        for (byte, bit) in bitmap.iter_mut().zip(pcr_bitmap(pcr)) {
            *byte |= bit;
        }
    }
    command(
        TPM_ST_SESSIONS,
        TPM_CC_QUOTE,
        &[
            &sign_handle.to_be_bytes(),
            &EMPTY_PASSWORD_AUTH,
            &size,
            data,
            &TPM_ALG_NULL.to_be_bytes(), // inScheme
            &1u32.to_be_bytes(),
            &TPM_ALG_SHA256.to_be_bytes(),
            &[PCR_SELECT_MIN],
            &bitmap,
        ],
    )
}

/// A TPM response code, `TPM_RC` (Part 2 §6.6). `Display` names the common ones and, for
/// format-one codes, the parameter, handle or session they are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode(pub u32);

/// Format-one codes (bit 7 set) carry an error number in bits 0 to 5 and, in bits 8 to 11,
/// a parameter number (bit 6 set), or a handle (bit 11 clear) or session (bit 11 set)
/// number in bits 8 to 10 (Part 2 §6.6.2).
const RC_FMT1: u32 = 0x080;
/// Format-one: bits 8 to 11 are a parameter number.
const RC_P: u32 = 0x040;
/// Format-zero: a TPM 2.0 code (not a TPM 1.2 one).
const RC_VER1: u32 = 0x100;
/// Format-zero: a vendor-defined code.
const RC_T: u32 = 0x400;
/// Format-zero: a warning (the command was not executed; it may succeed later).
const RC_S: u32 = 0x800;

impl ResponseCode {
    /// `TPM_RC_SUCCESS`.
    pub const SUCCESS: ResponseCode = ResponseCode(0x000);
    /// `TPM_RC_BAD_TAG`: the command's tag was bad (the response's tag is then
    /// [`TPM_ST_RSP_COMMAND`]).
    pub const BAD_TAG: ResponseCode = ResponseCode(0x01E);
    /// `TPM_RC_INITIALIZE`: TPM2_Startup has already run (or has not, for other commands).
    pub const INITIALIZE: ResponseCode = ResponseCode(0x100);
    /// `TPM_RC_FAILURE`: the TPM is in failure mode.
    pub const FAILURE: ResponseCode = ResponseCode(0x101);
    /// `TPM_RC_COMMAND_CODE`: command code not supported.
    pub const COMMAND_CODE: ResponseCode = ResponseCode(0x143);
    /// `TPM_RC_NV_RANGE`: an NV read or write beyond the index's data.
    pub const NV_RANGE: ResponseCode = ResponseCode(0x146);
    /// `TPM_RC_NV_LOCKED`: the NV index is locked against this access.
    pub const NV_LOCKED: ResponseCode = ResponseCode(0x148);
    /// `TPM_RC_NV_AUTHORIZATION`: the index's attributes do not allow this authorization.
    pub const NV_AUTHORIZATION: ResponseCode = ResponseCode(0x149);
    /// `TPM_RC_NV_UNINITIALIZED`: the NV index has never been written.
    pub const NV_UNINITIALIZED: ResponseCode = ResponseCode(0x14A);
    /// `TPM_RC_NV_DEFINED`: TPM2_NV_DefineSpace of an index that is already defined.
    pub const NV_DEFINED: ResponseCode = ResponseCode(0x14C);
    /// `TPM_RC_POLICY_FAIL` on session 1 (format one, `TPM_RC_S + TPM_RC_1`): the policy
    /// session in the first slot of the authorization area does not satisfy the entity's
    /// `authPolicy` — for a PCR policy, the PCR changed. The same error on another session
    /// or without a number is [`ResponseCode::is_policy_failure`] too.
    pub const POLICY_FAIL: ResponseCode = ResponseCode(0x99D);
    /// `TPM_RC_LOCALITY`: the command is not allowed at this locality (a warning).
    pub const LOCALITY: ResponseCode = ResponseCode(0x907);
    /// `TPM_RC_YIELDED`: the TPM suspended the command; it may be retried.
    pub const YIELDED: ResponseCode = ResponseCode(0x908);
    /// `TPM_RC_CANCELED`: the command was canceled.
    pub const CANCELED: ResponseCode = ResponseCode(0x909);
    /// `TPM_RC_TESTING`: the TPM is running self-tests.
    pub const TESTING: ResponseCode = ResponseCode(0x90A);
    /// `TPM_RC_RETRY`: the TPM was busy; retry the command.
    pub const RETRY: ResponseCode = ResponseCode(0x922);

    /// Whether this is `TPM_RC_INITIALIZE`: TPM2_Startup after the TPM was started (or a
    /// command before it was).
    pub fn is_initialize(&self) -> bool {
        *self == ResponseCode::INITIALIZE
    }

    /// Whether this is `TPM_RC_NV_DEFINED`: the NV index TPM2_NV_DefineSpace was to define
    /// already exists.
    pub fn is_nv_defined(&self) -> bool {
        *self == ResponseCode::NV_DEFINED
    }

    /// Whether this is `TPM_RC_POLICY_FAIL` (format one, error number 0x1D), whatever
    /// session, handle or parameter it names: a policy session's `policyDigest` did not
    /// match the `authPolicy` of what it was to authorize.
    pub fn is_policy_failure(&self) -> bool {
        self.0 & !0xFFF == 0 && self.0 & RC_FMT1 != 0 && self.0 & 0x3F == 0x1D
    }

    /// Whether this is a TCG-defined warning (format zero, severity bit set, `TPM_RC_WARN` +
    /// n): the
    /// command was not executed and may succeed if sent again (`TPM_RC_RETRY`,
    /// `TPM_RC_TESTING`, `TPM_RC_YIELDED`, ...).
    pub fn is_warning(&self) -> bool {
        self.0 & !0xFFF == 0 && self.0 & (RC_FMT1 | RC_VER1 | RC_T | RC_S) == (RC_VER1 | RC_S)
    }

    /// The name of a code without parameter, handle or session number (Part 2 §6.6.3).
    fn name(code: u32) -> Option<&'static str> {
        Some(match code {
            0x000 => "TPM_RC_SUCCESS",
            0x01E => "TPM_RC_BAD_TAG",
            // Format zero, TPM_RC_VER1 + n.
            0x100 => "TPM_RC_INITIALIZE",
            0x101 => "TPM_RC_FAILURE",
            0x103 => "TPM_RC_SEQUENCE",
            0x10B => "TPM_RC_PRIVATE",
            0x119 => "TPM_RC_HMAC",
            0x120 => "TPM_RC_DISABLED",
            0x121 => "TPM_RC_EXCLUSIVE",
            0x124 => "TPM_RC_AUTH_TYPE",
            0x125 => "TPM_RC_AUTH_MISSING",
            0x126 => "TPM_RC_POLICY",
            0x127 => "TPM_RC_PCR",
            0x128 => "TPM_RC_PCR_CHANGED",
            0x12D => "TPM_RC_UPGRADE",
            0x12E => "TPM_RC_TOO_MANY_CONTEXTS",
            0x12F => "TPM_RC_AUTH_UNAVAILABLE",
            0x130 => "TPM_RC_REBOOT",
            0x131 => "TPM_RC_UNBALANCED",
            0x142 => "TPM_RC_COMMAND_SIZE",
            0x143 => "TPM_RC_COMMAND_CODE",
            0x144 => "TPM_RC_AUTHSIZE",
            0x145 => "TPM_RC_AUTH_CONTEXT",
            0x146 => "TPM_RC_NV_RANGE",
            0x147 => "TPM_RC_NV_SIZE",
            0x148 => "TPM_RC_NV_LOCKED",
            0x149 => "TPM_RC_NV_AUTHORIZATION",
            0x14A => "TPM_RC_NV_UNINITIALIZED",
            0x14B => "TPM_RC_NV_SPACE",
            0x14C => "TPM_RC_NV_DEFINED",
            0x150 => "TPM_RC_BAD_CONTEXT",
            0x151 => "TPM_RC_CPHASH",
            0x152 => "TPM_RC_PARENT",
            0x153 => "TPM_RC_NEEDS_TEST",
            0x154 => "TPM_RC_NO_RESULT",
            0x155 => "TPM_RC_SENSITIVE",
            // Format one, TPM_RC_FMT1 + n.
            0x081 => "TPM_RC_ASYMMETRIC",
            0x082 => "TPM_RC_ATTRIBUTES",
            0x083 => "TPM_RC_HASH",
            0x084 => "TPM_RC_VALUE",
            0x085 => "TPM_RC_HIERARCHY",
            0x087 => "TPM_RC_KEY_SIZE",
            0x088 => "TPM_RC_MGF",
            0x089 => "TPM_RC_MODE",
            0x08A => "TPM_RC_TYPE",
            0x08B => "TPM_RC_HANDLE",
            0x08C => "TPM_RC_KDF",
            0x08D => "TPM_RC_RANGE",
            0x08E => "TPM_RC_AUTH_FAIL",
            0x08F => "TPM_RC_NONCE",
            0x090 => "TPM_RC_PP",
            0x092 => "TPM_RC_SCHEME",
            0x095 => "TPM_RC_SIZE",
            0x096 => "TPM_RC_SYMMETRIC",
            0x097 => "TPM_RC_TAG",
            0x098 => "TPM_RC_SELECTOR",
            0x09A => "TPM_RC_INSUFFICIENT",
            0x09B => "TPM_RC_SIGNATURE",
            0x09C => "TPM_RC_KEY",
            0x09D => "TPM_RC_POLICY_FAIL",
            0x09F => "TPM_RC_INTEGRITY",
            0x0A0 => "TPM_RC_TICKET",
            0x0A1 => "TPM_RC_RESERVED_BITS",
            0x0A2 => "TPM_RC_BAD_AUTH",
            0x0A3 => "TPM_RC_EXPIRED",
            0x0A4 => "TPM_RC_POLICY_CC",
            0x0A5 => "TPM_RC_BINDING",
            0x0A6 => "TPM_RC_CURVE",
            0x0A7 => "TPM_RC_ECC_POINT",
            // Warnings, TPM_RC_WARN + n.
            0x901 => "TPM_RC_CONTEXT_GAP",
            0x902 => "TPM_RC_OBJECT_MEMORY",
            0x903 => "TPM_RC_SESSION_MEMORY",
            0x904 => "TPM_RC_MEMORY",
            0x905 => "TPM_RC_SESSION_HANDLES",
            0x906 => "TPM_RC_OBJECT_HANDLES",
            0x907 => "TPM_RC_LOCALITY",
            0x908 => "TPM_RC_YIELDED",
            0x909 => "TPM_RC_CANCELED",
            0x90A => "TPM_RC_TESTING",
            0x920 => "TPM_RC_NV_RATE",
            0x921 => "TPM_RC_LOCKOUT",
            0x922 => "TPM_RC_RETRY",
            0x923 => "TPM_RC_NV_UNAVAILABLE",
            _ => return None,
        })
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rc = self.0;
        if rc & !0xFFF != 0 {
            // Not a TPM's: response codes have 12 bits.
            return write!(f, "unknown response code {rc:#x}");
        }
        if rc & RC_FMT1 == 0 {
            return match ResponseCode::name(rc) {
                Some(name) => write!(f, "{name} ({rc:#x})"),
                None if rc & RC_VER1 == 0 => write!(f, "TPM 1.2 response code {rc:#x}"),
                None if rc & RC_T != 0 => write!(f, "vendor-defined response code {rc:#x}"),
                None if rc & RC_S != 0 => write!(f, "unknown warning {rc:#x}"),
                None => write!(f, "unknown response code {rc:#x}"),
            };
        }
        let error = RC_FMT1 | (rc & 0x3F);
        match ResponseCode::name(error) {
            Some(name) => write!(f, "{name} ({rc:#x})")?,
            None => write!(f, "format-one error {error:#x} ({rc:#x})")?,
        }
        let n = (rc >> 8) & 0xF;
        if rc & RC_P != 0 {
            write!(f, " on parameter {n}")
        } else if n & 0x8 != 0 {
            write!(f, " on session {}", n & 0x7)
        } else if n != 0 {
            write!(f, " on handle {n}")
        } else {
            Ok(())
        }
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
    let mut r = Reader::new(bytes);
    let tag = r.u16("response shorter than its 10-byte header")?;
    let size = r.u32("response shorter than its 10-byte header")?;
    let code = r.u32("response shorter than its 10-byte header")?;
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

/// Checks the response to TPM2_Startup (Part 3 §9.3): no body.
/// `TPM_RC_INITIALIZE` ([`ResponseCode::is_initialize`]) means the TPM was already started.
pub fn parse_startup(bytes: &[u8]) -> Result<(), TpmError> {
    body(bytes, TPM_ST_NO_SESSIONS)?.end()
}

/// The random bytes of a response to TPM2_GetRandom (Part 3 §16.1): `randomBytes`, a
/// `TPM2B_DIGEST` (at most 64 bytes).
pub fn parse_get_random(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    let mut r = body(bytes, TPM_ST_NO_SESSIONS)?;
    let random = r.sized("randomBytes truncated")?;
    if random.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("randomBytes larger than any digest"));
    }
    r.end()?;
    Ok(random.to_vec())
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
    let nonce = r.sized("nonceTPM truncated")?;
    if nonce.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("nonceTPM larger than any digest"));
    }
    r.end()?;
    Ok((handle, nonce.to_vec()))
}

/// Checks the response to [`policy_pcr_sha256`] (Part 3 §23.7): no authorization area and
/// no body. `TPM_RC_VALUE` would mean a non-empty `pcrDigest` did not match the PCRs.
pub fn parse_policy_pcr(bytes: &[u8]) -> Result<(), TpmError> {
    body(bytes, TPM_ST_NO_SESSIONS)?.end()
}

/// Checks the response to [`flush_context`] (Part 3 §28.4): no authorization area and no
/// body. `TPM_RC_HANDLE` means nothing was loaded under the handle.
pub fn parse_flush_context(bytes: &[u8]) -> Result<(), TpmError> {
    body(bytes, TPM_ST_NO_SESSIONS)?.end()
}

/// Checks the rest of a response, `r`, is the authorization area answering the password
/// session: one `TPMS_AUTH_RESPONSE` (Part 2 §10.13.3) with an empty `nonceTPM`, any
/// `sessionAttributes` and an empty `hmac`, and nothing after it.
fn password_session_response(mut r: Reader<'_>) -> Result<(), TpmError> {
    if !r.sized("nonceTPM truncated")?.is_empty() {
        return Err(TpmError::Malformed("password session answered with a nonce"));
    }
    r.u8("sessionAttributes truncated")?;
    if !r.sized("hmac truncated")?.is_empty() {
        return Err(TpmError::Malformed("password session answered with an HMAC"));
    }
    r.end()
}

/// Checks the response to TPM2_PCR_Extend (Part 3 §22.2): no handles and no parameters, so
/// `parameterSize` 0, then the authorization area answering the password session: one
/// `TPMS_AUTH_RESPONSE` (Part 2 §10.13.3) with an empty `nonceTPM`, any
/// `sessionAttributes` and an empty `hmac`.
pub fn parse_pcr_extend(bytes: &[u8]) -> Result<(), TpmError> {
    no_parameters(bytes, "PCR_Extend response with parameters")
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

/// Checks the response to [`nv_define_space`] (Part 3 §31.3): no handles and no parameters,
/// as for [`parse_pcr_extend`]. `TPM_RC_NV_DEFINED` ([`ResponseCode::is_nv_defined`])
/// means the index already exists — with attributes and size that may not be the ones
/// asked.
pub fn parse_nv_define_space(bytes: &[u8]) -> Result<(), TpmError> {
    no_parameters(bytes, "NV_DefineSpace response with parameters")
}

/// Checks the response to [`nv_write`] (Part 3 §31.8): no handles and no parameters, as for
/// [`parse_pcr_extend`].
pub fn parse_nv_write(bytes: &[u8]) -> Result<(), TpmError> {
    no_parameters(bytes, "NV_Write response with parameters")
}

/// The public area of an NV index, `TPMS_NV_PUBLIC` (Part 2 §13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvPublic {
    /// `nvIndex`: the index's handle.
    pub index: u32,
    /// `nameAlg`: the hash algorithm of the index's name (`TPM_ALG_*`).
    pub name_alg: u16,
    /// `attributes` (`TPMA_NV`, Part 2 §13.4).
    pub attributes: u32,
    /// `dataSize`: the size of the index's data in bytes.
    pub data_size: u16,
    /// `authPolicy` if it is a SHA-256 digest (32 bytes); `None` if empty or of another size.
    pub auth_policy: Option<[u8; 32]>,
}

/// The public area in a response to TPM2_NV_ReadPublic (Part 3 §31.6): `nvPublic`, a
/// `TPM2B_NV_PUBLIC` (Part 2 §13.6) whose size must be exactly that of the
/// `TPMS_NV_PUBLIC` it wraps — `nvIndex` (u32), `nameAlg` (u16), `attributes` (u32),
/// `authPolicy` (`TPM2B_DIGEST`, at most 64 bytes), `dataSize` (u16) — then `nvName`, a
/// `TPM2B_NAME` (at most 66 bytes, not checked further), then nothing.
pub fn parse_nv_read_public(bytes: &[u8]) -> Result<NvPublic, TpmError> {
    let mut r = body(bytes, TPM_ST_NO_SESSIONS)?;
    let mut public = Reader::new(r.sized("nvPublic truncated")?);
    let index = public.u32("nvPublic shorter than a TPMS_NV_PUBLIC")?;
    let name_alg = public.u16("nvPublic shorter than a TPMS_NV_PUBLIC")?;
    let attributes = public.u32("nvPublic shorter than a TPMS_NV_PUBLIC")?;
    let policy = public.sized("nvPublic shorter than a TPMS_NV_PUBLIC")?;
    if policy.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("authPolicy larger than any digest"));
    }
    let data_size = public.u16("nvPublic shorter than a TPMS_NV_PUBLIC")?;
    if !public.bytes.is_empty() {
        return Err(TpmError::Malformed("nvPublic longer than a TPMS_NV_PUBLIC"));
    }
    let name = r.sized("nvName truncated")?;
    if name.len() > MAX_NAME {
        return Err(TpmError::Malformed("nvName larger than any name"));
    }
    r.end()?;
    let auth_policy = policy.try_into().ok();
    Ok(NvPublic { index, name_alg, attributes, data_size, auth_policy })
}

/// The data in a response to [`nv_read`] (Part 3 §31.13): `parameterSize` (u32), which
/// must be exactly the size of the parameter `data`, a `TPM2B_MAX_NV_BUFFER`; then the
/// authorization area answering the password session, as for [`parse_pcr_extend`]. How
/// many bytes the TPM returned is for the caller to check against the `size` it asked.
pub fn parse_nv_read(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    nv_read_data(bytes, password_session_response)
}

/// Checks the rest of a response, `r`, is the authorization area answering an unsalted,
/// unbound policy session without an authValue: one `TPMS_AUTH_RESPONSE` (Part 2 §10.13.3)
/// with a `nonceTPM` of at most 32 bytes (the TPM's fresh nonce, of the size of the
/// session's SHA-256), any `sessionAttributes` and an empty `hmac` (with an empty session
/// key and an empty command HMAC the TPM computes none), and nothing after it.
fn policy_session_response(mut r: Reader<'_>) -> Result<(), TpmError> {
    if r.sized("nonceTPM truncated")?.len() > SHA256_LEN {
        return Err(TpmError::Malformed("nonceTPM larger than a SHA-256 digest"));
    }
    r.u8("sessionAttributes truncated")?;
    if !r.sized("hmac truncated")?.is_empty() {
        return Err(TpmError::Malformed("policy session answered with an HMAC"));
    }
    r.end()
}

/// The data in a response to [`nv_read_with_session`] (Part 3 §31.13): as for
/// [`parse_nv_read`], but the authorization area answers the policy session — a
/// `nonceTPM` of up to 32 bytes, any `sessionAttributes`, an empty `hmac`. How many bytes
/// the TPM returned is for the caller to check against the `size` it asked.
/// `TPM_RC_POLICY_FAIL` ([`ResponseCode::is_policy_failure`]) means the session's policy
/// does not satisfy the index's `authPolicy`.
pub fn parse_nv_read_policy(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    nv_read_data(bytes, policy_session_response)
}

/// The response parameters after `parameterSize` (a u32: Part 1 §18.9, present in responses
/// with an authorization area): `parse` reads them and must use every byte the size covers.
fn parameters<'a, T>(
    r: &mut Reader<'a>,
    parse: impl FnOnce(&mut Reader<'a>) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let size = r.u32("parameterSize truncated")?;
    let size = usize::try_from(size)
        .map_err(|_| TpmError::Malformed("parameterSize larger than the response"))?;
    let mut parameters = Reader::new(r.take(size, "parameterSize larger than the response")?);
    let value = parse(&mut parameters)?;
    if !parameters.bytes.is_empty() {
        return Err(TpmError::Malformed("parameterSize larger than the parameters"));
    }
    Ok(value)
}

/// The data of an NV_Read response whose authorization area `session` checks.
fn nv_read_data(
    bytes: &[u8],
    session: fn(Reader<'_>) -> Result<(), TpmError>,
) -> Result<Vec<u8>, TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let data = parameters(&mut r, |p| p.sized("data truncated"))?;
    session(r)?;
    Ok(data.to_vec())
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
    r.end()?;
    Ok(digest)
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
        if public[fixed..fixed + 2] != RSA2048_SIZE {
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
    p.sized("creationData truncated")?;
    if p.sized("creationHash truncated")?.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("creationHash larger than any digest"));
    }
    p.u16("creationTicket truncated")?;
    p.u32("creationTicket truncated")?;
    if p.sized("creationTicket truncated")?.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("creationTicket digest larger than any digest"));
    }
    if p.sized("name truncated")?.len() > MAX_NAME {
        return Err(TpmError::Malformed("name larger than any name"));
    }
    Ok(())
}

/// Checks the response to [`policy_secret`] (Part 3 §23.4): `parameterSize`, then
/// `timeout` (a `TPM2B_TIMEOUT`, at most 8 bytes) and `policyTicket` (a `TPMT_TK_AUTH`:
/// `tag` u16, `hierarchy` u32, a `TPM2B_DIGEST`), then the authorization area answering the
/// password session. `TPM_RC_BAD_AUTH` would mean the hierarchy has a password.
pub fn parse_policy_secret(bytes: &[u8]) -> Result<(), TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    parameters(&mut r, |p| {
        if p.sized("timeout truncated")?.len() > 8 {
            return Err(TpmError::Malformed("timeout larger than 8 bytes"));
        }
        p.u16("policyTicket truncated")?;
        p.u32("policyTicket truncated")?;
        if p.sized("policyTicket truncated")?.len() > MAX_DIGEST {
            return Err(TpmError::Malformed("policyTicket digest larger than any digest"));
        }
        Ok(())
    })?;
    password_session_response(r)
}

/// The credential in a response to [`activate_credential`] (Part 3 §12.5):
/// `parameterSize`, then `certInfo` (a `TPM2B_DIGEST`, at most 64 bytes), then the
/// authorization area answering the password session (as for [`parse_pcr_extend`]) and
/// then the policy session (a `nonceTPM` of up to 32 bytes, any attributes, an empty
/// `hmac`). `TPM_RC_INTEGRITY` means the blob was not made for this key and this object's
/// name (a credential for another TPM or another key); `TPM_RC_POLICY_FAIL` a session that
/// does not satisfy the EK's policy.
pub fn parse_activate_credential(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let credential = parameters(&mut r, |p| p.sized("certInfo truncated"))?;
    if credential.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("certInfo larger than any digest"));
    }
    if !r.sized("nonceTPM truncated")?.is_empty() {
        return Err(TpmError::Malformed("password session answered with a nonce"));
    }
    r.u8("sessionAttributes truncated")?;
    if !r.sized("hmac truncated")?.is_empty() {
        return Err(TpmError::Malformed("password session answered with an HMAC"));
    }
    policy_session_response(r)?;
    Ok(credential.to_vec())
}

/// The point of the `TPMT_PUBLIC` (Part 2 §12.2.4) `public` of a key made from
/// [`ECC_SIGNING_TEMPLATE`]: the template's fields up to `unique`, then a `TPMS_ECC_POINT`
/// of two 32-byte coordinates, then nothing. The attributes and `authPolicy` are not
/// checked (the TPM may set others than asked only where the template leaves it free).
fn ecc_signing_public(public: &[u8]) -> Result<([u8; 32], [u8; 32]), TpmError> {
    const SHORT: &str = "outPublic shorter than an ECC TPMT_PUBLIC";
    let mut p = Reader::new(public);
    if p.u16(SHORT)? != TPM_ALG_ECC {
        return Err(TpmError::Malformed("outPublic is not an ECC key"));
    }
    if p.u16(SHORT)? != TPM_ALG_SHA256 {
        return Err(TpmError::Malformed("outPublic nameAlg is not SHA-256"));
    }
    p.u32(SHORT)?; // objectAttributes
    if p.sized(SHORT)?.len() > MAX_DIGEST {
        return Err(TpmError::Malformed("authPolicy larger than any digest"));
    }
    if p.u16(SHORT)? != TPM_ALG_NULL {
        return Err(TpmError::Malformed("outPublic has a symmetric algorithm"));
    }
    if p.u16(SHORT)? != TPM_ALG_ECDSA || p.u16(SHORT)? != TPM_ALG_SHA256 {
        return Err(TpmError::Malformed("outPublic scheme is not ECDSA with SHA-256"));
    }
    if p.u16(SHORT)? != TPM_ECC_NIST_P256 {
        return Err(TpmError::Malformed("outPublic curve is not NIST P-256"));
    }
    if p.u16(SHORT)? != TPM_ALG_NULL {
        return Err(TpmError::Malformed("outPublic has a KDF"));
    }
    let x: [u8; P256_LEN] = p
        .sized(SHORT)?
        .try_into()
        .map_err(|_| TpmError::Malformed("outPublic x is not 32 bytes"))?;
    let y: [u8; P256_LEN] = p
        .sized(SHORT)?
        .try_into()
        .map_err(|_| TpmError::Malformed("outPublic y is not 32 bytes"))?;
    if !p.bytes.is_empty() {
        return Err(TpmError::Malformed("outPublic longer than an ECC TPMT_PUBLIC"));
    }
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
/// `signature`, a `TPMT_SIGNATURE` (Part 2 §11.3.4) of `sigAlg` [`TPM_ALG_ECDSA`] and a
/// `TPMS_SIGNATURE_ECDSA` (Part 2 §11.3.2): `hash` [`TPM_ALG_SHA256`], `signatureR` and
/// `signatureS` (each a `TPM2B_ECC_PARAMETER` of at most 32 bytes, left-padded with zeros
/// to 32) — then the authorization area answering the password session. The contents of
/// `quoted` are not checked here: [`parse_tpms_attest_quote`].
pub fn parse_quote(bytes: &[u8]) -> Result<Quote, TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let quote = parameters(&mut r, |p| {
        let attest = p.sized("quoted truncated")?.to_vec();
        if p.u16("signature truncated")? != TPM_ALG_ECDSA {
            return Err(TpmError::Malformed("signature is not ECDSA"));
        }
        if p.u16("signature truncated")? != TPM_ALG_SHA256 {
            return Err(TpmError::Malformed("signature hash is not SHA-256"));
        }
        let r = left_padded(p.sized("signature truncated")?)?;
        let s = left_padded(p.sized("signature truncated")?)?;
        Ok(Quote { attest, r, s })
    })?;
    password_session_response(r)?;
    Ok(quote)
}

/// A big-endian ECC parameter of at most 32 bytes, left-padded with zeros to 32.
fn left_padded(value: &[u8]) -> Result<[u8; 32], TpmError> {
    let mut out = [0u8; P256_LEN];
    let at = P256_LEN
        .checked_sub(value.len())
        .ok_or(TpmError::Malformed("signature value longer than 32 bytes"))?;
    out[at..].copy_from_slice(value);
    Ok(out)
}

/// What a quote's `TPMS_ATTEST` attests: the format is shared with the uTPM's quotes and
/// `vpr verify` ([`vpr_proto::utpm::QuoteInfo`]).
pub use vpr_proto::utpm::QuoteInfo;

/// The contents of a quote's `TPMS_ATTEST` (Part 2 §10.12.12; read by
/// [`QuoteInfo::from_attest`], which refuses anything but a quote of one SHA-256 selection
/// of 3 bytes with a 32-byte `pcrDigest`, and trailing bytes).
///
/// Only meaningful once the signature over `attest` has been checked
/// ([`super::quote_verifies`]).
pub fn parse_tpms_attest_quote(attest: &[u8]) -> Result<QuoteInfo, TpmError> {
    QuoteInfo::from_attest(attest).map_err(|e| match e {
        vpr_proto::utpm::QuoteError::Malformed(what) => TpmError::Malformed(what),
        _ => TpmError::Malformed("TPMS_ATTEST refused"),
    })
}

/// Big-endian reads from an untrusted response, each failing with its own message.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmError> {
        if n > self.bytes.len() {
            return Err(TpmError::Malformed(what));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TpmError> {
        self.take(N, what)?.try_into().map_err(|_| TpmError::Malformed(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TpmError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        self.array(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// A `TPM2B_*`: a u16 size, then that many bytes.
    fn sized(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }

    /// Requires that nothing is left.
    fn end(&self) -> Result<(), TpmError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(TpmError::Malformed("trailing bytes after the response's last field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const DIGEST: [u8; 32] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE,
        0xFF, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
        0x32, 0x10,
    ];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

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
    fn nv_read_public_layout() {
        // tag NO_SESSIONS, size 14, TPM_CC_NV_ReadPublic, nvIndex.
        let expected = [0x80, 0x01, 0, 0, 0, 0x0E, 0, 0, 0x01, 0x69, 0x01, 0xC0, 0x00, 0x02];
        assert_eq!(nv_read_public(0x01C0_0002), expected);
    }

    #[test]
    fn nv_read_layout() {
        let expected = cat(&[
            &[0x80, 0x02],             // TPM_ST_SESSIONS
            &[0, 0, 0, 0x23],          // commandSize 35
            &[0, 0, 0x01, 0x4E],       // TPM_CC_NV_Read
            &[0x40, 0, 0, 0x01],       // authHandle: TPM_RH_OWNER
            &[0x01, 0xC0, 0x00, 0x02], // nvIndex
            &[0, 0, 0, 0x09],          // authorizationSize 9
            &[0x40, 0, 0, 0x09],       // TPM_RS_PW
            &[0, 0],                   // nonceCaller: empty
            &[0x00],                   // sessionAttributes
            &[0, 0],                   // hmac: empty password
            &[0x02, 0x00],             // size 512
            &[0x04, 0x00],             // offset 1024
        ]);
        assert_eq!(expected.len(), 35);
        assert_eq!(nv_read(TPM_RH_OWNER, 0x01C0_0002, 512, 1024), expected);
        // The index authorizing its own read.
        let own = nv_read(0x0150_0001, 0x0150_0001, 1, 0);
        assert_eq!(&own[10..18], &[0x01, 0x50, 0, 0x01, 0x01, 0x50, 0, 0x01]);
        assert_eq!(&own[31..], &[0, 1, 0, 0]);
    }

    #[test]
    fn nv_define_space_layout() {
        let attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_NO_DA;
        assert_eq!(attributes, 0x0202_0002);
        let expected = cat(&[
            &[0x80, 0x02],             // TPM_ST_SESSIONS
            &[0, 0, 0, 0x2D],          // commandSize 45
            &[0, 0, 0x01, 0x2A],       // TPM_CC_NV_DefineSpace
            &[0x40, 0, 0, 0x01],       // authHandle: TPM_RH_OWNER
            &[0, 0, 0, 0x09],          // authorizationSize 9
            &[0x40, 0, 0, 0x09],       // TPM_RS_PW
            &[0, 0],                   // nonceCaller: empty
            &[0x00],                   // sessionAttributes
            &[0, 0],                   // hmac: empty password
            &[0, 0],                   // auth: empty
            &[0, 14],                  // publicInfo: 14 bytes
            &[0x01, 0x50, 0x00, 0x10], // nvIndex
            &[0x00, 0x0B],             // nameAlg: SHA-256
            &[0x02, 0x02, 0x00, 0x02], // attributes: NO_DA, OWNERREAD, OWNERWRITE, ordinary
            &[0, 0],                   // authPolicy: empty
            &[0x02, 0xBC],             // dataSize 700
        ]);
        assert_eq!(expected.len(), 45);
        assert_eq!(nv_define_space(0x0150_0010, attributes, 700), expected);
    }

    #[test]
    fn nv_write_layout() {
        let expected = cat(&[
            &[0x80, 0x02],             // TPM_ST_SESSIONS
            &[0, 0, 0, 0x26],          // commandSize 38
            &[0, 0, 0x01, 0x37],       // TPM_CC_NV_Write
            &[0x40, 0, 0, 0x01],       // authHandle: TPM_RH_OWNER
            &[0x01, 0x50, 0x00, 0x10], // nvIndex
            &[0, 0, 0, 0x09],          // authorizationSize 9
            &[0x40, 0, 0, 0x09],       // TPM_RS_PW
            &[0, 0],                   // nonceCaller: empty
            &[0x00],                   // sessionAttributes
            &[0, 0],                   // hmac: empty password
            &[0, 3, 0xAA, 0xBB, 0xCC], // data: 3 bytes
            &[0x02, 0x00],             // offset 512
        ]);
        assert_eq!(expected.len(), 38);
        assert_eq!(nv_write(TPM_RH_OWNER, 0x0150_0010, &[0xAA, 0xBB, 0xCC], 512), expected);
        // The index authorizing its own write; an empty write.
        let own = nv_write(0x0150_0001, 0x0150_0001, &[], 7);
        assert_eq!(own.len(), 35);
        assert_eq!(&own[10..18], &[0x01, 0x50, 0, 0x01, 0x01, 0x50, 0, 0x01]);
        assert_eq!(&own[31..], &[0, 0, 0, 7]);
        // A full buffer of 512 bytes.
        let data = [0x5A; 512];
        let full = nv_write(TPM_RH_OWNER, 0x0150_0010, &data, 0);
        assert_eq!(full.len(), 35 + 512);
        assert_eq!(&full[2..6], &[0, 0, 0x02, 0x23]);
        assert_eq!(&full[31..33], &[0x02, 0x00]);
        assert_eq!(&full[33..545], &data);
        assert_eq!(&full[545..], &[0, 0]);
        // More than a TPM2B holds is cut to 65535 bytes, size field and all.
        let huge = vec![1; 70_000];
        let cut = nv_write(TPM_RH_OWNER, 0x0150_0010, &huge, 0);
        assert_eq!(cut.len(), 35 + 65_535);
        assert_eq!(&cut[31..33], &[0xFF, 0xFF]);
    }

    #[test]
    fn nv_define_space_with_policy_layout() {
        let attributes = TPMA_NV_OWNERWRITE | TPMA_NV_POLICYREAD | TPMA_NV_NO_DA;
        assert_eq!(attributes, 0x0208_0002);
        let expected = cat(&[
            &[0x80, 0x02],             // TPM_ST_SESSIONS
            &[0, 0, 0, 0x4D],          // commandSize 77
            &[0, 0, 0x01, 0x2A],       // TPM_CC_NV_DefineSpace
            &[0x40, 0, 0, 0x01],       // authHandle: TPM_RH_OWNER
            &[0, 0, 0, 0x09],          // authorizationSize 9
            &[0x40, 0, 0, 0x09],       // TPM_RS_PW
            &[0, 0],                   // nonceCaller: empty
            &[0x00],                   // sessionAttributes
            &[0, 0],                   // hmac: empty password
            &[0, 0],                   // auth: empty
            &[0, 46],                  // publicInfo: 46 bytes
            &[0x01, 0x50, 0x00, 0x20], // nvIndex
            &[0x00, 0x0B],             // nameAlg: SHA-256
            &[0x02, 0x08, 0x00, 0x02], // attributes: NO_DA, POLICYREAD, OWNERWRITE, ordinary
            &[0, 32],                  // authPolicy: 32 bytes ...
            &DIGEST,                   // ... the policy digest
            &[0x00, 0x20],             // dataSize 32
        ]);
        assert_eq!(expected.len(), 77);
        assert_eq!(nv_define_space_with_policy(0x0150_0020, attributes, 32, &DIGEST), expected);
    }

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
    fn nv_read_with_session_layout() {
        let expected = cat(&[
            &[0x80, 0x02],             // TPM_ST_SESSIONS
            &[0, 0, 0, 0x23],          // commandSize 35
            &[0, 0, 0x01, 0x4E],       // TPM_CC_NV_Read
            &[0x01, 0x50, 0x00, 0x20], // authHandle: the index
            &[0x01, 0x50, 0x00, 0x20], // nvIndex
            &[0, 0, 0, 0x09],          // authorizationSize 9
            &[0x03, 0, 0, 0x00],       // sessionHandle: the policy session
            &[0, 0],                   // nonceCaller: empty
            &[0x00],                   // sessionAttributes: continueSession clear
            &[0, 0],                   // hmac: empty
            &[0x00, 0x20],             // size 32
            &[0x00, 0x00],             // offset 0
        ]);
        assert_eq!(expected.len(), 35);
        assert_eq!(nv_read_with_session(0x0300_0000, 0x0150_0020, 32, 0), expected);
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
    fn nv_write_with_session_layout() {
        let command = nv_write_with_session(0x0300_0001, 0x01A0_0000, &[0xAB; 3], 0);
        let expected = cat(&[
            &[0x80, 0x02, 0, 0, 0, 0x26, 0, 0, 0x01, 0x37],
            &[0x01, 0xA0, 0, 0, 0x01, 0xA0, 0, 0], // authHandle, nvIndex: the index
            &[0, 0, 0, 9],                         // authorization area: 9 bytes
            &[0x03, 0, 0, 0x01, 0, 0, 0, 0, 0],    // the policy session, no nonce or hmac
            &[0, 3, 0xAB, 0xAB, 0xAB],             // data
            &[0, 0],                               // offset
        ]);
        assert_eq!(command, expected);
        // The response: parameterSize 0, then the policy session's answer (a nonce).
        let mut ok = vec![0x80, 0x02, 0, 0, 0, 0x23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16];
        ok.extend_from_slice(&[7; 16]);
        ok.extend_from_slice(&[0, 0, 0]);
        assert_eq!(parse_nv_write_policy(&ok), Ok(()));
        let mut hmac = ok.clone();
        hmac[5] += 1;
        *hmac.last_mut().unwrap() = 1;
        hmac.push(9);
        assert!(parse_nv_write_policy(&hmac).is_err());
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
    fn nv_attributes() {
        // The bits of swtpm's EK certificate index include OWNERREAD, AUTHREAD, NO_DA and
        // WRITTEN, and neither write bit here; it is an ordinary index.
        for bit in [TPMA_NV_OWNERREAD, TPMA_NV_AUTHREAD, TPMA_NV_NO_DA, TPMA_NV_WRITTEN] {
            assert_eq!(EK_CERT_ATTRIBUTES & bit, bit, "{bit:#x}");
        }
        for bit in [TPMA_NV_OWNERWRITE, TPMA_NV_AUTHWRITE] {
            assert_eq!(EK_CERT_ATTRIBUTES & bit, 0, "{bit:#x}");
        }
        assert_eq!(EK_CERT_ATTRIBUTES & TPMA_NV_TPM_NT_MASK, TPM_NT_ORDINARY);
        assert_eq!(
            [TPMA_NV_OWNERWRITE, TPMA_NV_AUTHWRITE, TPMA_NV_OWNERREAD, TPMA_NV_AUTHREAD],
            [0x2, 0x4, 0x2_0000, 0x4_0000]
        );
        assert_eq!([TPMA_NV_NO_DA, TPMA_NV_WRITTEN], [0x0200_0000, 0x2000_0000]);
        assert_eq!([TPMA_NV_WRITEDEFINE, TPMA_NV_POLICYREAD], [0x2000, 0x8_0000]);
        assert_eq!(EK_CERT_ATTRIBUTES & TPMA_NV_WRITEDEFINE, TPMA_NV_WRITEDEFINE);
        assert_eq!(EK_CERT_ATTRIBUTES & TPMA_NV_POLICYREAD, 0);
        assert_eq!(TPMA_NV_TPM_NT_MASK, 0xF0);
        // TPM_NT_COUNTER (1), shifted, is not ordinary.
        assert_ne!((1 << TPMA_NV_TPM_NT_SHIFT) & TPMA_NV_TPM_NT_MASK, TPM_NT_ORDINARY);
    }

    // Responses as a TPM sends them.

    fn startup_ok() -> Vec<u8> {
        vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0]
    }

    fn get_random_ok() -> Vec<u8> {
        let mut r = vec![0x80, 0x01, 0, 0, 0, 0x1C, 0, 0, 0, 0, 0x00, 0x10];
        r.extend(1..=16);
        r
    }

    fn pcr_extend_ok() -> Vec<u8> {
        cat(&[
            &[0x80, 0x02, 0, 0, 0, 0x13, 0, 0, 0, 0],
            &[0, 0, 0, 0], // parameterSize
            &[0, 0],       // nonceTPM
            &[0x01],       // sessionAttributes: continueSession
            &[0, 0],       // hmac
        ])
    }

    fn pcr_read_ok(bitmap: [u8; 3]) -> Vec<u8> {
        cat(&[
            &[0x80, 0x01, 0, 0, 0, 0x3E, 0, 0, 0, 0],
            &[0, 0, 0, 0x2A],             // pcrUpdateCounter
            &[0, 0, 0, 1, 0x00, 0x0B, 3], // one selection, SHA-256, 3 bytes
            &bitmap,
            &[0, 0, 0, 1, 0x00, 0x20], // one digest of 32 bytes
            &DIGEST,
        ])
    }

    /// Attributes of swtpm's EK certificate index: PPWRITE, WRITELOCKED, WRITEDEFINE,
    /// PPREAD, OWNERREAD, AUTHREAD, NO_DA, WRITTEN, PLATFORMCREATE (Part 2 §13.4).
    const EK_CERT_ATTRIBUTES: u32 = 0x6207_2801;

    fn nv_read_public_ok() -> Vec<u8> {
        cat(&[
            &[0x80, 0x01, 0, 0, 0, 0x3E, 0, 0, 0, 0],
            &[0, 14],                  // nvPublic: 14 bytes
            &[0x01, 0xC0, 0x00, 0x02], // nvIndex
            &[0x00, 0x0B],             // nameAlg: SHA-256
            &EK_CERT_ATTRIBUTES.to_be_bytes(),
            &[0, 0],              // authPolicy: empty
            &[0x04, 0x4C],        // dataSize 1100
            &[0, 34, 0x00, 0x0B], // nvName: SHA-256 ...
            &DIGEST,              // ... of the public area
        ])
    }

    fn nv_read_ok() -> Vec<u8> {
        let mut data = vec![0, 16];
        data.extend(1..=16);
        cat(&[
            &[0x80, 0x02, 0, 0, 0, 0x25, 0, 0, 0, 0],
            &[0, 0, 0, 18], // parameterSize
            &data,          // data: 16 bytes
            &[0, 0],        // nonceTPM
            &[0x01],        // sessionAttributes: continueSession
            &[0, 0],        // hmac
        ])
    }

    /// The response to TPM2_NV_DefineSpace or TPM2_NV_Write: like that to PCR_Extend.
    fn nv_no_parameters_ok() -> Vec<u8> {
        cat(&[
            &[0x80, 0x02, 0, 0, 0, 0x13, 0, 0, 0, 0],
            &[0, 0, 0, 0], // parameterSize
            &[0, 0],       // nonceTPM
            &[0x01],       // sessionAttributes: continueSession
            &[0, 0],       // hmac
        ])
    }

    /// The nonce of [`start_auth_session_ok`] and [`nv_read_policy_ok`].
    fn nonce_tpm() -> Vec<u8> {
        (0x40..0x60).collect()
    }

    fn start_auth_session_ok() -> Vec<u8> {
        cat(&[
            &[0x80, 0x01, 0, 0, 0, 0x30, 0, 0, 0, 0],
            &[0x03, 0, 0, 0], // sessionHandle: policy session 0
            &[0, 32],         // nonceTPM: 32 bytes
            &nonce_tpm(),
        ])
    }

    /// The response to TPM2_PolicyPCR or TPM2_FlushContext: the header alone.
    fn no_body_ok() -> Vec<u8> {
        vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0]
    }

    fn nv_read_policy_ok() -> Vec<u8> {
        let mut data = vec![0, 16];
        data.extend(1..=16);
        cat(&[
            &[0x80, 0x02, 0, 0, 0, 0x45, 0, 0, 0, 0],
            &[0, 0, 0, 18], // parameterSize
            &data,          // data: 16 bytes
            &[0, 32],       // nonceTPM: 32 bytes
            &nonce_tpm(),
            &[0x00], // sessionAttributes: continueSession clear
            &[0, 0], // hmac: empty
        ])
    }

    /// `bytes` with its size field set to its length.
    fn resized(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() >= 6 {
            let len = u32::try_from(bytes.len()).unwrap();
            bytes[2..6].copy_from_slice(&len.to_be_bytes());
        }
        bytes
    }

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

    #[test]
    fn nv_read_public_refusals() {
        let mutate = |at: usize, value: u8| {
            let mut r = nv_read_public_ok();
            r[at] = value;
            parse_nv_read_public(&r)
        };
        // The TPM2B_NV_PUBLIC size: one short, one long (then the name is misread), zero.
        assert_eq!(
            mutate(11, 13),
            Err(TpmError::Malformed("nvPublic shorter than a TPMS_NV_PUBLIC"))
        );
        assert!(matches!(mutate(11, 15), Err(TpmError::Malformed(_))));
        assert!(matches!(mutate(11, 0), Err(TpmError::Malformed(_))));
        // Inner size larger than what it wraps, with the wrapped bytes really there.
        let mut r = nv_read_public_ok();
        r[11] = 15;
        r.insert(26, 0);
        assert_eq!(
            parse_nv_read_public(&resized(r)),
            Err(TpmError::Malformed("nvPublic longer than a TPMS_NV_PUBLIC"))
        );
        // An authPolicy claiming bytes that are the dataSize.
        assert!(matches!(mutate(23, 1), Err(TpmError::Malformed(_))));
        // A real 32-byte authPolicy is fine.
        let mut r = nv_read_public_ok();
        r[11] = 14 + 32;
        r[23] = 32;
        r.splice(24..24, DIGEST);
        let parsed = parse_nv_read_public(&resized(r)).unwrap();
        assert_eq!(parsed.data_size, 1100);
        // An authPolicy larger than any digest.
        let mut r = nv_read_public_ok();
        r[11] = 14 + 65;
        r[23] = 65;
        r.splice(24..24, [7; 65]);
        assert_eq!(
            parse_nv_read_public(&resized(r)),
            Err(TpmError::Malformed("authPolicy larger than any digest"))
        );
        // The name: claiming more than is there, larger than any name, absent, trailing bytes.
        assert!(matches!(mutate(27, 35), Err(TpmError::Malformed(_))));
        let mut r = nv_read_public_ok();
        r[27] = 67;
        r.extend_from_slice(&[0; 33]);
        assert_eq!(
            parse_nv_read_public(&resized(r)),
            Err(TpmError::Malformed("nvName larger than any name"))
        );
        let bare = nv_read_public_ok()[..26].to_vec();
        assert_eq!(
            parse_nv_read_public(&resized(bare)),
            Err(TpmError::Malformed("nvName truncated"))
        );
        let mut long = nv_read_public_ok();
        long.push(0);
        assert_eq!(
            parse_nv_read_public(&resized(long)),
            Err(TpmError::Malformed("trailing bytes after the response's last field"))
        );
        // Sessions tag.
        assert!(matches!(mutate(1, 0x02), Err(TpmError::Malformed(_))));
    }

    #[test]
    fn nv_read_refusals() {
        let mutate = |at: usize, value: u8| {
            let mut r = nv_read_ok();
            r[at] = value;
            parse_nv_read(&r)
        };
        // parameterSize smaller or larger than the parameters.
        assert_eq!(mutate(13, 17), Err(TpmError::Malformed("data truncated")));
        assert_eq!(
            mutate(13, 19),
            Err(TpmError::Malformed("parameterSize larger than the parameters"))
        );
        assert_eq!(
            mutate(13, 0xFF),
            Err(TpmError::Malformed("parameterSize larger than the response"))
        );
        assert_eq!(
            mutate(10, 0xFF),
            Err(TpmError::Malformed("parameterSize larger than the response"))
        );
        // The data's own size smaller or larger than what parameterSize wraps.
        assert_eq!(
            mutate(15, 15),
            Err(TpmError::Malformed("parameterSize larger than the parameters"))
        );
        assert_eq!(mutate(15, 17), Err(TpmError::Malformed("data truncated")));
        // The session area: a nonce, an HMAC, none, trailing bytes; any attributes.
        assert_eq!(mutate(33, 0), Ok((1..=16).collect()));
        let with_nonce = cat(&[&nv_read_ok()[..32], &[0, 2, 9, 9, 0x01, 0, 0]]);
        assert_eq!(
            parse_nv_read(&resized(with_nonce)),
            Err(TpmError::Malformed("password session answered with a nonce"))
        );
        let with_hmac = cat(&[&nv_read_ok()[..35], &[0, 1, 9]]);
        assert_eq!(
            parse_nv_read(&resized(with_hmac)),
            Err(TpmError::Malformed("password session answered with an HMAC"))
        );
        let bare = nv_read_ok()[..32].to_vec();
        assert!(matches!(parse_nv_read(&resized(bare)), Err(TpmError::Malformed(_))));
        let mut long = nv_read_ok();
        long.push(0);
        assert!(matches!(parse_nv_read(&resized(long)), Err(TpmError::Malformed(_))));
        // No authorization area.
        assert!(matches!(mutate(1, 0x01), Err(TpmError::Malformed(_))));
        // An empty read is well-formed (the caller checks the length).
        let empty =
            cat(&[&[0x80, 0x02, 0, 0, 0, 0x13, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0], &[0, 0, 1, 0, 0]]);
        assert_eq!(parse_nv_read(&resized(empty)), Ok(Vec::new()));
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
    fn nv_read_policy_refusals() {
        let mutate = |at: usize, value: u8| {
            let mut r = nv_read_policy_ok();
            r[at] = value;
            parse_nv_read_policy(&r)
        };
        let data: Vec<u8> = (1..=16).collect();
        // parameterSize smaller or larger than the parameters; data's own size off.
        assert_eq!(mutate(13, 17), Err(TpmError::Malformed("data truncated")));
        assert_eq!(
            mutate(13, 19),
            Err(TpmError::Malformed("parameterSize larger than the parameters"))
        );
        assert_eq!(
            mutate(10, 0xFF),
            Err(TpmError::Malformed("parameterSize larger than the response"))
        );
        assert_eq!(mutate(15, 17), Err(TpmError::Malformed("data truncated")));
        // sessionAttributes: any.
        for attributes in [0x00, 0x01, 0xFF] {
            assert_eq!(mutate(66, attributes), Ok(data.clone()));
        }
        // nonceTPM of 0 to 32 bytes; 33 refused.
        let head = &nv_read_policy_ok()[..32];
        for n in [0u8, 1, 16, 20, 32] {
            let nonce = vec![9; usize::from(n)];
            let r = cat(&[head, &[0, n], &nonce, &[0x00, 0, 0]]);
            assert_eq!(parse_nv_read_policy(&resized(r)), Ok(data.clone()), "{n}-byte nonce");
        }
        let r = cat(&[head, &[0, 33], &[9; 33], &[0x00, 0, 0]]);
        assert_eq!(
            parse_nv_read_policy(&resized(r)),
            Err(TpmError::Malformed("nonceTPM larger than a SHA-256 digest"))
        );
        // An HMAC.
        let with_hmac = cat(&[&nv_read_policy_ok()[..67], &[0, 32], &DIGEST]);
        assert_eq!(
            parse_nv_read_policy(&resized(with_hmac)),
            Err(TpmError::Malformed("policy session answered with an HMAC"))
        );
        // nonceTPM claiming more than is there; no session area; trailing bytes.
        assert_eq!(mutate(33, 40), Err(TpmError::Malformed("nonceTPM truncated")));
        let bare = nv_read_policy_ok()[..32].to_vec();
        assert_eq!(
            parse_nv_read_policy(&resized(bare)),
            Err(TpmError::Malformed("nonceTPM truncated"))
        );
        let mut long = nv_read_policy_ok();
        long.push(0);
        assert_eq!(
            parse_nv_read_policy(&resized(long)),
            Err(TpmError::Malformed("trailing bytes after the response's last field"))
        );
        // No authorization area.
        assert_eq!(
            mutate(1, 0x01),
            Err(TpmError::Malformed("response without the authorization area the command had"))
        );
        // The password-session parser refuses the policy session's nonce, and this one
        // accepts the password session's empty answer.
        assert_eq!(
            parse_nv_read(&nv_read_policy_ok()),
            Err(TpmError::Malformed("password session answered with a nonce"))
        );
        assert_eq!(parse_nv_read_policy(&nv_read_ok()), Ok(data));
        // TPM_RC_POLICY_FAIL on session 1 and TPM_RC_HANDLE on handle 1 come through.
        for rc in [ResponseCode::POLICY_FAIL, ResponseCode(0x18B)] {
            let error = cat(&[&[0x80, 0x01, 0, 0, 0, 0x0A], &rc.0.to_be_bytes()]);
            assert_eq!(parse_nv_read_policy(&error), Err(TpmError::Tpm(rc)));
        }
    }

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

    const POINT_X: [u8; 32] = [0x1F; 32];
    const POINT_Y: [u8; 32] = [0x2E; 32];

    /// The `TPMT_PUBLIC` of the attestation key with point (`x`, `y`) as a TPM returns it.
    fn ecc_public(x: &[u8], y: &[u8]) -> Vec<u8> {
        let x_len = u16::try_from(x.len()).unwrap().to_be_bytes();
        let y_len = u16::try_from(y.len()).unwrap().to_be_bytes();
        cat(&[
            &[0x00, 0x23, 0x00, 0x0B, 0x00, 0x05, 0x04, 0x72, 0, 0],
            &[0x00, 0x10, 0x00, 0x18, 0x00, 0x0B, 0x00, 0x03, 0x00, 0x10],
            &x_len,
            x,
            &y_len,
            y,
        ])
    }

    /// A response to TPM2_CreatePrimary with `public` as the `TPMT_PUBLIC`.
    fn create_primary_with(public: &[u8]) -> Vec<u8> {
        let creation_data: &[u8] = &[
            0, 0, 0, 0, // pcrSelect: none
            0, 0,    // pcrDigest: empty
            0x01, // locality 0
            0x00, 0x23, // parentNameAlg: TPM_ALG_ECC... (any)
            0, 4, 0x40, 0, 0, 0x0B, // parentName: the hierarchy's handle
            0, 4, 0x40, 0, 0, 0x0B, // parentQualifiedName
            0, 0, // outsideInfo
        ];
        let public_len = u16::try_from(public.len()).unwrap().to_be_bytes();
        let data_len = u16::try_from(creation_data.len()).unwrap().to_be_bytes();
        let parameters = cat(&[
            &public_len,
            public,
            &data_len,
            creation_data,
            &[0, 32],
            &DIGEST,                                // creationHash
            &[0x80, 0x21, 0x40, 0, 0, 0x0B, 0, 32], // creationTicket: TPM_ST_CREATION, EH
            &DIGEST,
            &[0, 34, 0x00, 0x0B], // name: SHA-256 ...
            &DIGEST,              // ... of the public area
        ]);
        let parameter_size = u32::try_from(parameters.len()).unwrap().to_be_bytes();
        resized(cat(&[
            &[0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x80, 0, 0, 0], // objectHandle
            &parameter_size,
            &parameters,
            &[0, 0], // nonceTPM
            &[0x01], // sessionAttributes: continueSession
            &[0, 0], // hmac
        ]))
    }

    fn create_primary_ok() -> Vec<u8> {
        create_primary_with(&ecc_public(&POINT_X, &POINT_Y))
    }

    /// A `TPMS_ATTEST` of a quote of PCRs 0 and 17 with 16 bytes of extraData.
    fn attest_quote() -> Vec<u8> {
        let extra: Vec<u8> = (1..=16).collect();
        cat(&[
            &[0xFF, 0x54, 0x43, 0x47], // magic: TPM_GENERATED_VALUE
            &[0x80, 0x18],             // type: TPM_ST_ATTEST_QUOTE
            &[0, 34, 0x00, 0x0B],      // qualifiedSigner: SHA-256 ...
            &DIGEST,                   // ... name
            &[0, 16],                  // extraData: 16 bytes
            &extra,
            &[0, 0, 0, 0, 0, 0x01, 0x23, 0x45], // clock
            &[0, 0, 0, 3],                      // resetCount
            &[0, 0, 0, 0],                      // restartCount
            &[0x01],                            // safe
            &[0x20, 0x19, 0x10, 0x23, 0, 0x16, 0x36, 0x36], // firmwareVersion
            &[0, 0, 0, 1, 0x00, 0x0B, 3, 0x01, 0x00, 0x02], // pcrSelect: PCRs 0, 17
            &[0, 32],                           // pcrDigest
            &DIGEST,
        ])
    }

    #[test]
    fn ek_policy_is_policy_secret_of_the_endorsement_hierarchy() {
        assert_eq!(policy_secret_digest(TPM_RH_ENDORSEMENT), EK_POLICY_A);
        assert_ne!(policy_secret_digest(TPM_RH_OWNER), EK_POLICY_A);
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
        assert_eq!(public[..20], ECC_SIGNING_TEMPLATE[..20]);
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

    /// A response to TPM2_Quote of `attest` with `r` and `s` as given.
    fn quote_with(attest: &[u8], r: &[u8], s: &[u8]) -> Vec<u8> {
        let sized = |b: &[u8]| cat(&[&u16::try_from(b.len()).unwrap().to_be_bytes(), b]);
        let parameters = cat(&[
            &sized(attest),
            &[0x00, 0x18, 0x00, 0x0B], // sigAlg: ECDSA, hash: SHA-256
            &sized(r),
            &sized(s),
        ]);
        resized(cat(&[
            &[0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
            &u32::try_from(parameters.len()).unwrap().to_be_bytes(),
            &parameters,
            &[0, 0], // nonceTPM
            &[0x01], // sessionAttributes: continueSession
            &[0, 0], // hmac
        ]))
    }

    fn quote_ok() -> Vec<u8> {
        quote_with(&attest_quote(), &[0xA1; 32], &[0xB2; 32])
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

    use crate::testing::XorShift;

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

    #[test]
    fn response_code_display() {
        let cases: [(u32, &str); 28] = [
            (0x99D, "TPM_RC_POLICY_FAIL (0x99d) on session 1"),
            (0xA9D, "TPM_RC_POLICY_FAIL (0xa9d) on session 2"),
            (0x09D, "TPM_RC_POLICY_FAIL (0x9d)"),
            (0x100, "TPM_RC_INITIALIZE (0x100)"),
            (0x101, "TPM_RC_FAILURE (0x101)"),
            (0x143, "TPM_RC_COMMAND_CODE (0x143)"),
            (0x907, "TPM_RC_LOCALITY (0x907)"),
            (0x908, "TPM_RC_YIELDED (0x908)"),
            (0x909, "TPM_RC_CANCELED (0x909)"),
            (0x90A, "TPM_RC_TESTING (0x90a)"),
            (0x922, "TPM_RC_RETRY (0x922)"),
            (0x084, "TPM_RC_VALUE (0x84)"),
            (0x1C4, "TPM_RC_VALUE (0x1c4) on parameter 1"),
            (0xFC4, "TPM_RC_VALUE (0xfc4) on parameter 15"),
            (0x18B, "TPM_RC_HANDLE (0x18b) on handle 1"),
            (0x98E, "TPM_RC_AUTH_FAIL (0x98e) on session 1"),
            (0x9A2, "TPM_RC_BAD_AUTH (0x9a2) on session 1"),
            (0x146, "TPM_RC_NV_RANGE (0x146)"),
            (0x147, "TPM_RC_NV_SIZE (0x147)"),
            (0x148, "TPM_RC_NV_LOCKED (0x148)"),
            (0x149, "TPM_RC_NV_AUTHORIZATION (0x149)"),
            (0x14A, "TPM_RC_NV_UNINITIALIZED (0x14a)"),
            (0x14B, "TPM_RC_NV_SPACE (0x14b)"),
            (0x14C, "TPM_RC_NV_DEFINED (0x14c)"),
            (0x08B, "TPM_RC_HANDLE (0x8b)"),
            (0x28B, "TPM_RC_HANDLE (0x28b) on handle 2"),
            (0x920, "TPM_RC_NV_RATE (0x920)"),
            (0x923, "TPM_RC_NV_UNAVAILABLE (0x923)"),
        ];
        for (code, text) in cases {
            assert_eq!(ResponseCode(code).to_string(), text);
        }
        assert_eq!(ResponseCode::NV_RANGE.0, 0x146);
        assert_eq!(ResponseCode::NV_LOCKED.0, 0x148);
        assert_eq!(ResponseCode::NV_AUTHORIZATION.0, 0x149);
        assert_eq!(ResponseCode::NV_UNINITIALIZED.0, 0x14A);
        assert_eq!(ResponseCode::NV_DEFINED.0, 0x14C);
        assert_eq!(ResponseCode::POLICY_FAIL.0, 0x99D);
        assert_eq!(
            TpmError::Tpm(ResponseCode::POLICY_FAIL).to_string(),
            "the TPM answered TPM_RC_POLICY_FAIL (0x99d) on session 1"
        );
        assert_eq!(ResponseCode(0x0BF).to_string(), "format-one error 0xbf (0xbf)");
        assert_eq!(ResponseCode(0x01E).to_string(), "TPM_RC_BAD_TAG (0x1e)");
        assert_eq!(ResponseCode(0x003).to_string(), "TPM 1.2 response code 0x3");
        assert_eq!(ResponseCode(0x57F).to_string(), "vendor-defined response code 0x57f");
        assert_eq!(ResponseCode(0x97F).to_string(), "unknown warning 0x97f");
        assert_eq!(ResponseCode(0x17F).to_string(), "unknown response code 0x17f");
        assert_eq!(ResponseCode(0x8_0001).to_string(), "unknown response code 0x80001");
        assert_eq!(
            TpmError::Tpm(ResponseCode(0x1C4)).to_string(),
            "the TPM answered TPM_RC_VALUE (0x1c4) on parameter 1"
        );
        // Every code displays without panicking.
        for code in 0..=0x1000 {
            assert!(!ResponseCode(code).to_string().is_empty());
        }
    }

    #[test]
    fn response_code_predicates() {
        assert!(ResponseCode(0x100).is_initialize());
        assert!(!ResponseCode(0x101).is_initialize());
        assert!(!ResponseCode(0x1C4).is_initialize());
        assert!(ResponseCode(0x14C).is_nv_defined());
        for other in [0x000, 0x14A, 0x14B, 0x1CC, 0x94C, 0x1_014C] {
            assert!(!ResponseCode(other).is_nv_defined(), "{other:#x}");
        }
        for warning in [0x907, 0x908, 0x909, 0x90A, 0x922, 0x923] {
            assert!(ResponseCode(warning).is_warning(), "{warning:#x}");
        }
        for other in [0x000, 0x100, 0x101, 0x143, 0x1C4, 0x98E, 0x9A2, 0x1_0922, 0xD22] {
            assert!(!ResponseCode(other).is_warning(), "{other:#x}");
        }
        // TPM_RC_POLICY_FAIL on any session, handle or parameter, or none.
        for failure in [0x99D, 0x09D, 0xA9D, 0xF9D, 0x19D, 0x1DD] {
            assert!(ResponseCode(failure).is_policy_failure(), "{failure:#x}");
        }
        assert!(ResponseCode::POLICY_FAIL.is_policy_failure());
        // Not: TPM_RC_POLICY (format zero), TPM_RC_PCR_CHANGED, other format-one errors, a
        // format-zero code with the same low bits, a code beyond 12 bits.
        for other in [0x000, 0x126, 0x128, 0x98E, 0x99C, 0x99E, 0x01D, 0x11D, 0x91D, 0x1_099D] {
            assert!(!ResponseCode(other).is_policy_failure(), "{other:#x}");
        }
    }
}
