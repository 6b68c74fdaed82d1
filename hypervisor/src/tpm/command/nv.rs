//! NV indices: TPM2_NV_ReadPublic, TPM2_NV_DefineSpace, TPM2_NV_Write and TPM2_NV_Read,
//! authorized by the empty password or by a policy session ([`super::session`]).

use super::{body, end, no_parameters, parameters, password_session_response};
use super::{policy_session_response, Authorization, TPM_RH_OWNER, TPM_RS_PW};
use super::{TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS};
use crate::tpm::TpmError;
use alloc::vec::Vec;
use vpr_proto::tpm2::{Reader, Writer, MAX_DIGEST, MAX_NAME, TPM_ALG_SHA256};

/// `TPM_CC_NV_Read` (Part 2 §6.5.2).
pub const TPM_CC_NV_READ: u32 = 0x0000_014E;
/// `TPM_CC_NV_ReadPublic` (Part 2 §6.5.2).
pub const TPM_CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
/// `TPM_CC_NV_DefineSpace` (Part 2 §6.5.2).
pub const TPM_CC_NV_DEFINE_SPACE: u32 = 0x0000_012A;
/// `TPM_CC_NV_Write` (Part 2 §6.5.2).
pub const TPM_CC_NV_WRITE: u32 = 0x0000_0137;

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

/// TPM2_NV_ReadPublic (Part 3 §31.6): handle `nvIndex`, no authorization.
pub fn nv_read_public(index: u32) -> Vec<u8> {
    Writer::command(TPM_ST_NO_SESSIONS, TPM_CC_NV_READ_PUBLIC).u32(index).finish()
}

/// TPM2_NV_Read (Part 3 §31.13): handles `authHandle` (`auth`: [`TPM_RH_OWNER`], the
/// platform hierarchy, or `index` itself, as the index's attributes allow) and `nvIndex`,
/// the empty-password authorization area (for `authHandle`), then the parameters `size`
/// (bytes to read) and `offset` (where in the index's data). The TPM refuses `size` above
/// its `TPM2B_MAX_NV_BUFFER` (at least 512 bytes) and a range beyond the index's data
/// (`TPM_RC_NV_RANGE`).
pub fn nv_read(auth: u32, index: u32, size: u16, offset: u16) -> Vec<u8> {
    read(auth, index, TPM_RS_PW, size, offset)
}

/// TPM2_NV_Read (Part 3 §31.13) of `size` bytes at `offset` of NV index `index`,
/// authorized by the policy session `session`: handles `authHandle` and `nvIndex` both
/// `index`, then the authorization area of `session` (`continueSession` clear, so the TPM
/// flushes the session once the command succeeds) — then `size` and `offset`. The index
/// must have [`TPMA_NV_POLICYREAD`] and an `authPolicy` equal to the session's
/// `policyDigest`; the TPM answers `TPM_RC_POLICY_FAIL` otherwise
/// ([`super::ResponseCode::is_policy_failure`]), and then keeps the session (flush it:
/// [`super::flush_context`]).
pub fn nv_read_with_session(session: u32, index: u32, size: u16, offset: u16) -> Vec<u8> {
    read(index, index, session, size, offset)
}

/// TPM2_NV_Read of `size` bytes at `offset` of `index`, authorized by `session` for `auth`.
fn read(auth: u32, index: u32, session: u32, size: u16, offset: u16) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_NV_READ).u32(auth).u32(index);
    command.authorized_by(&[session]).u16(size).u16(offset).finish()
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
/// as [`super::policy_pcr_digest`]'s. With [`TPMA_NV_POLICYREAD`] in `attributes`, a policy
/// session whose `policyDigest` equals it may read the index ([`nv_read_with_session`]).
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
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_NV_DEFINE_SPACE).u32(TPM_RH_OWNER);
    let public = |w: Writer| {
        w.u32(index).u16(TPM_ALG_SHA256).u32(attributes).sized(auth_policy).u16(data_size)
    };
    command.authorized_by(&[TPM_RS_PW]).sized(&[]).sized_with(public).finish()
}

/// TPM2_NV_Write (Part 3 §31.8): handles `authHandle` (`auth`: [`TPM_RH_OWNER`], the
/// platform hierarchy, or `index` itself, as the index's attributes allow) and `nvIndex`,
/// the empty-password authorization area (for `authHandle`), then the parameters `data`
/// (a `TPM2B_MAX_NV_BUFFER`) and `offset` (where in the index's data). The TPM refuses
/// `data` above its `MAX_NV_BUFFER_SIZE` (at least 512 bytes) and a range beyond the
/// index's data (`TPM_RC_NV_RANGE`). `data` must fit in a `TPM2B` (at most 65535 bytes;
/// longer is cut to that, which the TPM then refuses as too large for its buffer).
pub fn nv_write(auth: u32, index: u32, data: &[u8], offset: u16) -> Vec<u8> {
    write(auth, index, TPM_RS_PW, data, offset)
}

/// TPM2_NV_Write (Part 3 §31.8) of `data` at `offset` of NV index `index`, authorized by
/// the policy session `session`: handles `authHandle` and `nvIndex` both `index`, the
/// authorization area of [`nv_read_with_session`] (`continueSession` clear), then `data` (a
/// `TPM2B_MAX_NV_BUFFER`) and `offset`. The index must have [`TPMA_NV_POLICYWRITE`] and an
/// `authPolicy` equal to the session's `policyDigest`. `data` longer than a `TPM2B` holds is
/// cut, as for [`nv_write`].
pub fn nv_write_with_session(session: u32, index: u32, data: &[u8], offset: u16) -> Vec<u8> {
    write(index, index, session, data, offset)
}

/// TPM2_NV_Write of `data` at `offset` of `index`, authorized by `session` for `auth`.
fn write(auth: u32, index: u32, session: u32, data: &[u8], offset: u16) -> Vec<u8> {
    let command = Writer::command(TPM_ST_SESSIONS, TPM_CC_NV_WRITE).u32(auth).u32(index);
    command.authorized_by(&[session]).sized(data).u16(offset).finish()
}

/// Checks the response to [`nv_define_space`] (Part 3 §31.3): no handles and no parameters,
/// as for [`super::parse_pcr_extend`]. `TPM_RC_NV_DEFINED`
/// ([`super::ResponseCode::is_nv_defined`]) means the index already exists — with
/// attributes and size that may not be the ones asked.
pub fn parse_nv_define_space(bytes: &[u8]) -> Result<(), TpmError> {
    no_parameters(bytes, "NV_DefineSpace response with parameters")
}

/// Checks the response to [`nv_write`] (Part 3 §31.8): no handles and no parameters, as for
/// [`super::parse_pcr_extend`].
pub fn parse_nv_write(bytes: &[u8]) -> Result<(), TpmError> {
    no_parameters(bytes, "NV_Write response with parameters")
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
    const SHORT: &str = "nvPublic shorter than a TPMS_NV_PUBLIC";
    let mut r = body(bytes, TPM_ST_NO_SESSIONS)?;
    let mut public = Reader::new(r.sized("nvPublic truncated")?);
    let (index, name_alg, attributes) =
        (public.u32(SHORT)?, public.u16(SHORT)?, public.u32(SHORT)?);
    let policy = public.sized_max(MAX_DIGEST, SHORT, "authPolicy larger than any digest")?;
    let data_size = public.u16(SHORT)?;
    public.finish("nvPublic longer than a TPMS_NV_PUBLIC")?;
    r.sized_max(MAX_NAME, "nvName truncated", "nvName larger than any name")?;
    end(&r)?;
    let auth_policy = policy.try_into().ok();
    Ok(NvPublic { index, name_alg, attributes, data_size, auth_policy })
}

/// The data in a response to [`nv_read`] (Part 3 §31.13): `parameterSize` (u32), which
/// must be exactly the size of the parameter `data`, a `TPM2B_MAX_NV_BUFFER`; then the
/// authorization area answering the password session, as for [`super::parse_pcr_extend`].
/// How many bytes the TPM returned is for the caller to check against the `size` it asked.
pub fn parse_nv_read(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    nv_read_data(bytes, password_session_response)
}

/// The data in a response to [`nv_read_with_session`] (Part 3 §31.13): as for
/// [`parse_nv_read`], but the authorization area answers the policy session — a
/// `nonceTPM` of up to 32 bytes, any `sessionAttributes`, an empty `hmac`. How many bytes
/// the TPM returned is for the caller to check against the `size` it asked.
/// `TPM_RC_POLICY_FAIL` ([`super::ResponseCode::is_policy_failure`]) means the session's
/// policy does not satisfy the index's `authPolicy`.
pub fn parse_nv_read_policy(bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    nv_read_data(bytes, policy_session_response)
}

/// The data of an NV_Read response whose authorization area `session` checks.
fn nv_read_data(
    bytes: &[u8],
    session: fn(Reader<'_>) -> Result<(), TpmError>,
) -> Result<Vec<u8>, TpmError> {
    let mut r = body(bytes, TPM_ST_SESSIONS)?;
    let data = parameters(&mut r, |p| Ok(p.sized("data truncated")?))?;
    session(r)?;
    Ok(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::command::fixtures::*;
    use crate::tpm::command::*;
    use alloc::vec;

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
}
