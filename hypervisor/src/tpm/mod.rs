//! The TPM 2.0 driver: the FIFO ("TIS") transport and the few commands the hypervisor sends,
//! as plain logic over a register-access trait so that all of it runs in host unit tests.
//!
//! - [`tis`]: the FIFO interface of the TCG PC Client Platform TPM Profile specification —
//!   register offsets and bits, and [`Tis`], which probes for a TPM and runs one command
//!   through the FIFO of a locality ([`Tis::transact`]) over any [`Mmio`] implementation;
//! - [`command`]: marshalling of TPM2_Startup, TPM2_GetRandom, TPM2_PCR_Extend,
//!   TPM2_PCR_Read, TPM2_NV_ReadPublic, TPM2_NV_Read, TPM2_NV_DefineSpace,
//!   TPM2_NV_Write, TPM2_StartAuthSession, TPM2_PolicyPCR, TPM2_PolicyLocality and
//!   TPM2_FlushContext, and
//!   parsing of their responses and of response codes ([`ResponseCode`]), one module per
//!   family of commands, written and read with [`vpr_proto::tpm2`]'s `Writer` and `Reader`;
//! - [`Tpm`]: the two together, one method per command — [`Tpm::nv_define`],
//!   [`Tpm::nv_write`] and [`Tpm::nv_read`] for NV indices the hypervisor keeps (such as
//!   trusted counters), [`Tpm::nv_read_all`] for a whole NV index such as the EK
//!   certificate's, [`EK_CERT_RSA_INDEX`], [`Tpm::store_pcr_bound_secret`] and
//!   [`Tpm::read_pcr_bound_secret`] for a secret only readable and writable at one locality
//!   while a PCR keeps its value, [`Tpm::bound_secret_index`] to check its index first —
//!   [`Tpm::create_attestation_key`], [`Tpm::quote`] and [`Tpm::flush`] for quotes of PCRs
//!   signed by an ECDSA P-256 key of the endorsement hierarchy, checked with
//!   [`quote_verifies`] — and [`extended`], the value a SHA-256 PCR takes when a digest is
//!   extended into it.
//!
//! The bootable image implements [`Mmio`] with volatile accesses to the TPM's register pages
//! at [`tis::TIS_BASE`]; under QEMU (`-device tpm-tis`, backed by swtpm) that is a TPM 2.0
//! whose `TPM_DID_VID` reads `0x0001_1014`.
//!
//! Everything the TPM or its registers return is untrusted: every wait is a bounded poll,
//! every length is checked before it is used, and nothing here panics whatever the device
//! does; a broken device is a [`TpmError`].
//!
//! What the driver does not do yet:
//!
//! - sessions other than the empty password session (`TPM_RS_PW`) and unsalted, unbound
//!   policy sessions of TPM2_PolicyPCR and TPM2_PolicyLocality: no HMAC sessions, no salted sessions,
//!   hence no parameter encryption and no protection against an interposer on the bus (a
//!   PCR-bound secret crosses the bus in the clear); commands needing other authorizations
//!   cannot be sent;
//! - interrupts (it polls), the CRB interface, TPM 1.2, command cancellation and
//!   `responseRetry`;
//! - retrying commands the TPM answers with a warning such as `TPM_RC_RETRY` or
//!   `TPM_RC_TESTING` ([`ResponseCode::is_warning`]): that is left to the caller.
//!
//! Specifications cited: TCG PC Client Platform TPM Profile Specification for TPM 2.0
//! ("PTP"), §6 (the FIFO interface's register space and protocol); Trusted Platform Module
//! Library, Family 2.0, Part 1 (Architecture), Part 2 (Structures) and Part 3 (Commands).

pub mod command;
pub mod counters;
pub mod tis;

pub use command::ResponseCode;
pub use tis::{Mmio, Tis, TisInfo};

use alloc::vec::Vec;
use core::fmt;

/// Why a TPM operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmError {
    /// No TPM answers at the TIS address: `TPM_DID_VID` reads all zeros or all ones.
    NoTpm,
    /// A bounded poll ran out waiting for the TPM (carried: what it waited for).
    Timeout(&'static str),
    /// The TPM broke the protocol: a response or register state that cannot be right
    /// (carried: what was wrong).
    Malformed(&'static str),
    /// The TPM executed the command and answered with a non-zero response code.
    Tpm(ResponseCode),
    /// After the last command byte the TPM still expected more (`TPM_STS_x.Expect` set).
    Expect,
    /// A command to send or a response to receive is larger than [`tis::MAX_COMMAND`] or
    /// [`tis::MAX_RESPONSE`] (4096 bytes), or an NV index or range to read is larger than
    /// [`NV_READ_MAX`] (8 KiB).
    TooLarge,
    /// The caller asked for something the driver refuses before touching the TPM: a
    /// locality above 4, a PCR above 23, an NV range beyond 65535 bytes, a command whose
    /// header is inconsistent (carried: what).
    Argument(&'static str),
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TpmError::NoTpm => write!(f, "no TPM (TPM_DID_VID reads all zeros or all ones)"),
            TpmError::Timeout(what) => write!(f, "timed out waiting for the TPM: {what}"),
            TpmError::Malformed(what) => write!(f, "TPM protocol violation: {what}"),
            TpmError::Tpm(rc) => write!(f, "the TPM answered {rc}"),
            TpmError::Expect => {
                write!(f, "the TPM expected more bytes after the last byte of the command")
            }
            TpmError::TooLarge => write!(
                f,
                "command or response larger than 4096 bytes, or NV index larger than 8 KiB"
            ),
            TpmError::Argument(what) => write!(f, "refused before reaching the TPM: {what}"),
        }
    }
}

/// A response the shared TPM 2.0 reader refused: the TPM broke the protocol.
impl From<vpr_proto::tpm2::Error> for TpmError {
    fn from(e: vpr_proto::tpm2::Error) -> Self {
        TpmError::Malformed(e.what())
    }
}

/// How many random bytes [`Tpm::get_random`] asks for per TPM2_GetRandom: a SHA-256 digest,
/// the most every PC Client TPM returns at once (Part 3 §16.1 caps a request at the
/// largest digest the TPM implements).
const RANDOM_CHUNK: usize = 32;

/// Bytes of `nonceCaller` for TPM2_StartAuthSession: the least the TPM accepts (Part 3
/// §11.1), taken from its own random number generator.
const SESSION_NONCE_LEN: usize = 16;

/// The `TPMA_NV` of an index [`Tpm::store_pcr_bound_secret`] defines: read and written
/// (whole) only with a policy session satisfying its policy — PCR and locality
/// ([`Tpm::bound_policy`]) — neither the owner nor the index's authValue may read or write
/// it; outside dictionary-attack lockout; an ordinary index. (The TPM adds
/// `TPMA_NV_WRITTEN` once it is written.)
pub const PCR_BOUND_SECRET_ATTRIBUTES: u32 = command::TPMA_NV_POLICYWRITE
    | command::TPMA_NV_WRITEALL
    | command::TPMA_NV_POLICYREAD
    | command::TPMA_NV_NO_DA;

/// The `TPMA_NV` of a PCR-bound page ([`Tpm::define_bound`]), such as the trusted counters':
/// as [`PCR_BOUND_SECRET_ATTRIBUTES`], read and written only with a policy session of its
/// PCR and locality, but written in parts (no `TPMA_NV_WRITEALL`).
pub const PCR_BOUND_PAGE_ATTRIBUTES: u32 =
    command::TPMA_NV_POLICYWRITE | command::TPMA_NV_POLICYREAD | command::TPMA_NV_NO_DA;

/// What NV index holds where a PCR-bound secret or page belongs ([`Tpm::bound_index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundIndex {
    /// No index there.
    Absent,
    /// An index with exactly the attributes and size asked for (for a secret:
    /// [`PCR_BOUND_SECRET_ATTRIBUTES`] and 32 bytes) and the policy of this PCR value and
    /// locality; `written` once something is in it.
    Bound {
        /// Whether it was written (`TPMA_NV_WRITTEN`).
        written: bool,
    },
    /// An index of other attributes, size or policy: bound to another PCR value (another
    /// launch), or defined by someone else (the owner may write it, or read it).
    Foreign(command::NvPublic),
}

/// The NV index of the RSA-2048 endorsement key's certificate (DER), as the TCG EK
/// Credential Profile places it and swtpm_setup writes (and locks) it at manufacturing.
pub const EK_CERT_RSA_INDEX: u32 = 0x01C0_0002;

/// The largest NV index [`Tpm::nv_read_all`] reads, and the most bytes [`Tpm::nv_read`]
/// reads at once: 8 KiB, well above an EK certificate
/// (about 1 KB for RSA-2048) or any chain of them a TPM stores in one index.
pub const NV_READ_MAX: u16 = 8192;

/// How many bytes [`Tpm::nv_read`] asks for per TPM2_NV_Read, and [`Tpm::nv_write`] sends
/// per TPM2_NV_Write: the smallest
/// `MAX_NV_BUFFER_SIZE` (the size of `TPM2B_MAX_NV_BUFFER`) of any TPM — PTP requires at
/// least 512.
const NV_CHUNK: u16 = 512;

/// A TPM 2.0 behind the FIFO interface: one method per command, each a full exchange at the
/// given locality (0 to 4; requested and released around every command).
#[derive(Debug)]
pub struct Tpm<M: Mmio> {
    tis: Tis<M>,
    /// Where policy sessions' caller nonces come from, if not from the TPM (TPM2_GetRandom,
    /// one command more per session).
    nonces: Option<fn(&mut [u8]) -> bool>,
}

impl<M: Mmio> Tpm<M> {
    /// The TPM whose registers `mmio` reaches; every wait polls at most `max_polls` times
    /// (see [`Tis::new`]).
    pub fn new(mmio: M, max_polls: u32) -> Self {
        Tpm { tis: Tis::new(mmio, max_polls), nonces: None }
    }

    /// The same, with the caller nonces of policy sessions from `fill` (the processor's
    /// random numbers, say) rather than a TPM2_GetRandom each: a trusted counter's increment
    /// is then four commands, not five. A nonce `fill` cannot make (`false`) comes from the
    /// TPM. The caller nonce only makes the session's nonces fresh (Part 1 §17.6.5): the
    /// policy itself does not depend on it.
    #[must_use]
    pub fn with_nonces(self, fill: fn(&mut [u8]) -> bool) -> Self {
        Tpm { nonces: Some(fill), ..self }
    }

    /// A policy session's caller nonce ([`Tpm::with_nonces`]).
    fn session_nonce(&mut self, locality: u8) -> Result<Vec<u8>, TpmError> {
        let mut nonce = alloc::vec![0; SESSION_NONCE_LEN];
        match self.nonces {
            Some(fill) if fill(&mut nonce) => Ok(nonce),
            _ => self.get_random(locality, SESSION_NONCE_LEN),
        }
    }

    /// The transport, for commands this type has no method for.
    pub fn tis(&mut self) -> &mut Tis<M> {
        &mut self.tis
    }

    /// Whether a TPM is there, and which ([`Tis::probe`]). The other methods send TPM 2.0
    /// commands: check [`TisInfo::tpm2`] first.
    pub fn probe(&mut self) -> Result<TisInfo, TpmError> {
        self.tis.probe()
    }

    /// TPM2_Startup(TPM_SU_CLEAR) (Part 3 §9.3): `true` if this started the TPM, `false` if
    /// it had already been started (`TPM_RC_INITIALIZE`, e.g. by the firmware).
    pub fn startup(&mut self, locality: u8) -> Result<bool, TpmError> {
        let response = self.tis.transact(locality, &command::startup_clear())?;
        match command::parse_startup(&response) {
            Ok(()) => Ok(true),
            Err(TpmError::Tpm(rc)) if rc.is_initialize() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `n` bytes from the TPM's random number generator (Part 3 §16.1), gathered with as
    /// many TPM2_GetRandom commands as it takes (the TPM may return fewer bytes than asked).
    /// A response with no bytes, or with more than asked, is [`TpmError::Malformed`].
    pub fn get_random(&mut self, locality: u8, n: usize) -> Result<Vec<u8>, TpmError> {
        let mut out = Vec::with_capacity(n.min(tis::MAX_RESPONSE));
        while out.len() < n {
            let want = (n - out.len()).min(RANDOM_CHUNK);
            // `want` is at most RANDOM_CHUNK, so it fits in a u16.
            let asked = u16::try_from(want).unwrap_or(0);
            let response = self.tis.transact(locality, &command::get_random(asked))?;
            let bytes = command::parse_get_random(&response)?;
            if bytes.is_empty() {
                return Err(TpmError::Malformed("TPM2_GetRandom returned no bytes"));
            }
            if bytes.len() > want {
                return Err(TpmError::Malformed("TPM2_GetRandom returned more bytes than asked"));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// TPM2_PCR_Extend (Part 3 §22.2) of the SHA-256 bank of PCR `pcr` (0 to 23) with
    /// `digest`, authorized by the empty password. Afterwards the PCR holds
    /// [`extended`]`(old, digest)`. Which localities may extend which PCRs is the TPM's
    /// decision (PTP: PCRs 17 to 22 are reserved to localities 2 to 4); a refusal is
    /// `TPM_RC_LOCALITY`.
    pub fn pcr_extend(
        &mut self,
        locality: u8,
        pcr: u32,
        digest: &[u8; 32],
    ) -> Result<(), TpmError> {
        check_pcr(pcr)?;
        let response = self.tis.transact(locality, &command::pcr_extend_sha256(pcr, digest))?;
        command::parse_pcr_extend(&response)
    }

    /// TPM2_PCR_Read (Part 3 §22.4) of the SHA-256 bank of PCR `pcr` (0 to 23). A TPM whose
    /// SHA-256 bank is not allocated answers without the PCR: [`TpmError::Malformed`].
    pub fn pcr_read(&mut self, locality: u8, pcr: u32) -> Result<[u8; 32], TpmError> {
        check_pcr(pcr)?;
        let response = self.tis.transact(locality, &command::pcr_read_sha256(pcr))?;
        command::parse_pcr_read_sha256(&response, pcr)
    }

    /// The whole data of NV index `index`: its size from TPM2_NV_ReadPublic (Part 3
    /// §31.6), then TPM2_NV_Read (Part 3 §31.13) authorized by the owner hierarchy's empty
    /// password ([`command::TPM_RH_OWNER`]) in pieces of at most 512 bytes. The index's
    /// attributes must allow owner reads (`TPMA_NV_OWNERREAD`) and it must have been
    /// written; the TPM refuses otherwise (e.g. `TPM_RC_NV_AUTHORIZATION`,
    /// `TPM_RC_NV_UNINITIALIZED`, `TPM_RC_NV_LOCKED`), and answers an index that does not
    /// exist with `TPM_RC_HANDLE`. An index larger than [`NV_READ_MAX`] is
    /// [`TpmError::TooLarge`] (nothing read); a public area about another index, or a piece
    /// of another length than asked, is [`TpmError::Malformed`].
    ///
    /// Nothing here authenticates the TPM or protects the bytes on the bus: whoever reads a
    /// certificate this way must verify it.
    pub fn nv_read_all(&mut self, locality: u8, index: u32) -> Result<Vec<u8>, TpmError> {
        let response = self.tis.transact(locality, &command::nv_read_public(index))?;
        let public = command::parse_nv_read_public(&response)?;
        if public.index != index {
            return Err(TpmError::Malformed("TPM2_NV_ReadPublic answered about another index"));
        }
        self.nv_read(locality, index, 0, public.data_size)
    }

    /// TPM2_NV_DefineSpace (Part 3 §31.3) of NV index `index` (a handle `0x01xx_xxxx`) with
    /// `attributes` (`TPMA_NV`, Part 2 §13.4: the [`command`]`::TPMA_NV_*` bits and the
    /// type, e.g. [`command::TPM_NT_ORDINARY`]) and `size` bytes of data, authorized by the
    /// owner hierarchy's empty password ([`command::TPM_RH_OWNER`]), with an empty
    /// authValue and no policy. `true` if this created the index, `false` if it already
    /// existed (`TPM_RC_NV_DEFINED`) — then with whatever attributes and size it was
    /// defined with, which the caller must check (TPM2_NV_ReadPublic) before trusting it.
    /// The TPM refuses attributes it does not accept, such as `TPMA_NV_WRITTEN` or no read
    /// or no write authorization (`TPM_RC_ATTRIBUTES`), a size above its
    /// `MAX_NV_INDEX_SIZE` (`TPM_RC_SIZE`), and a full NV memory (`TPM_RC_NV_SPACE`).
    ///
    /// An ordinary index cannot be read until it has been written: TPM2_NV_Read answers
    /// `TPM_RC_NV_UNINITIALIZED` ([`ResponseCode::NV_UNINITIALIZED`]) until then.
    pub fn nv_define(
        &mut self,
        locality: u8,
        index: u32,
        attributes: u32,
        size: u16,
    ) -> Result<bool, TpmError> {
        let command = command::nv_define_space(index, attributes, size);
        let response = self.tis.transact(locality, &command)?;
        match command::parse_nv_define_space(&response) {
            Ok(()) => Ok(true),
            Err(TpmError::Tpm(rc)) if rc.is_nv_defined() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` at `offset` into NV index `index` with TPM2_NV_Write (Part 3 §31.8),
    /// authorized by the owner hierarchy's empty password ([`command::TPM_RH_OWNER`]), in
    /// pieces of at most 512 bytes (in order; nothing is sent for empty `data`). The index's
    /// attributes must allow owner writes (`TPMA_NV_OWNERWRITE`; `TPM_RC_NV_AUTHORIZATION`
    /// otherwise) and the range must lie within its data (`TPM_RC_NV_RANGE`); a range
    /// beyond 65535 bytes is refused before reaching the TPM ([`TpmError::Argument`]).
    ///
    /// Each piece is its own command: when one fails, the pieces before it are written. A
    /// value that must change atomically, such as a counter, must fit in one piece.
    pub fn nv_write(
        &mut self,
        locality: u8,
        index: u32,
        offset: u16,
        data: &[u8],
    ) -> Result<(), TpmError> {
        self.write_in_pieces(offset, data, |tpm, piece, at| {
            let command = command::nv_write(command::TPM_RH_OWNER, index, piece, at);
            let response = tpm.tis.transact(locality, &command)?;
            command::parse_nv_write(&response)
        })
    }

    /// `size` bytes at `offset` of NV index `index`, read with TPM2_NV_Read (Part 3
    /// §31.13) authorized by the owner hierarchy's empty password
    /// ([`command::TPM_RH_OWNER`]) in pieces of at most 512 bytes (nothing is sent for
    /// `size` 0). The index's attributes must allow owner reads (`TPMA_NV_OWNERREAD`) and it
    /// must have been written; the TPM refuses otherwise (e.g. `TPM_RC_NV_AUTHORIZATION`,
    /// `TPM_RC_NV_UNINITIALIZED`, `TPM_RC_NV_LOCKED`), answers a range beyond the index's
    /// data with `TPM_RC_NV_RANGE`, and an index that does not exist with `TPM_RC_HANDLE`.
    /// `size` above [`NV_READ_MAX`] is [`TpmError::TooLarge`] and a range beyond 65535 bytes
    /// [`TpmError::Argument`] (nothing sent); a piece of another length than asked is
    /// [`TpmError::Malformed`].
    ///
    /// Nothing here authenticates the TPM or protects the bytes on the bus.
    pub fn nv_read(
        &mut self,
        locality: u8,
        index: u32,
        offset: u16,
        size: u16,
    ) -> Result<Vec<u8>, TpmError> {
        self.read_in_pieces(offset, size, |tpm, want, at| {
            let command = command::nv_read(command::TPM_RH_OWNER, index, want, at);
            let response = tpm.tis.transact(locality, &command)?;
            command::parse_nv_read(&response)
        })
    }

    /// Sends `data` to `offset` through `write` in pieces of at most [`NV_CHUNK`] bytes, in
    /// order (nothing for empty `data`), after checking the range ends by 65535.
    fn write_in_pieces(
        &mut self,
        offset: u16,
        data: &[u8],
        mut write: impl FnMut(&mut Self, &[u8], u16) -> Result<(), TpmError>,
    ) -> Result<(), TpmError> {
        check_nv_range(offset, data.len())?;
        let mut at = offset;
        for piece in data.chunks(usize::from(NV_CHUNK)) {
            write(self, piece, at)?;
            // A piece is at most NV_CHUNK bytes, and the range ends at most at 65535.
            at = at.saturating_add(u16::try_from(piece.len()).unwrap_or(NV_CHUNK));
        }
        Ok(())
    }

    /// `size` bytes from `offset` through `read` (asked for a length and an offset) in
    /// pieces of at most [`NV_CHUNK`] bytes, after checking `size` and the range; a piece of
    /// another length than asked is [`TpmError::Malformed`].
    fn read_in_pieces(
        &mut self,
        offset: u16,
        size: u16,
        mut read: impl FnMut(&mut Self, u16, u16) -> Result<Vec<u8>, TpmError>,
    ) -> Result<Vec<u8>, TpmError> {
        if size > NV_READ_MAX {
            return Err(TpmError::TooLarge);
        }
        check_nv_range(offset, usize::from(size))?;
        let mut out = Vec::with_capacity(usize::from(size));
        let mut done: u16 = 0;
        while done < size {
            let want = (size - done).min(NV_CHUNK);
            // `offset + size` is at most 65535 (checked above).
            let chunk = read(self, want, offset.saturating_add(done))?;
            if chunk.len() != usize::from(want) {
                return Err(TpmError::Malformed(
                    "TPM2_NV_Read returned other than the bytes asked",
                ));
            }
            out.extend_from_slice(&chunk);
            done += want;
        }
        Ok(out)
    }
}

impl<M: Mmio> Tpm<M> {
    /// The policy a PCR-bound secret's index has ([`PCR_BOUND_SECRET_ATTRIBUTES`]): the
    /// `policyDigest` of a SHA-256 policy session after TPM2_PolicyPCR of PCR `pcr` at its
    /// current value ([`command::policy_pcr_digest`]) and then TPM2_PolicyLocality of
    /// `locality` ([`command::policy_locality_digest`]).
    pub fn bound_policy(&mut self, locality: u8, pcr: u32) -> Result<[u8; 32], TpmError> {
        let value = self.pcr_read(locality, pcr)?;
        command::policy_locality_digest(&command::policy_pcr_digest(&value, pcr), locality)
    }

    /// What NV index `index` is, for a secret bound to PCR `pcr` at its current value and
    /// to `locality` (TPM2_NV_ReadPublic): absent (`TPM_RC_HANDLE`), bound as
    /// [`Tpm::store_pcr_bound_secret`] defines it (written or not), or foreign. Check this
    /// before trusting what the index holds: an index the owner may write holds what the
    /// owner wrote.
    pub fn bound_secret_index(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
    ) -> Result<BoundIndex, TpmError> {
        self.bound_index(locality, index, pcr, PCR_BOUND_SECRET_ATTRIBUTES, 32)
    }

    /// What NV index `index` is (TPM2_NV_ReadPublic), for an index of exactly `attributes`
    /// (besides `TPMA_NV_WRITTEN`) and `size` bytes, SHA-256 names and the policy of PCR
    /// `pcr` at its current value and `locality` ([`Tpm::bound_policy`]): absent
    /// (`TPM_RC_HANDLE`), bound so (written or not), or foreign — of other attributes, size
    /// or policy, whoever defined it.
    pub fn bound_index(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
        attributes: u32,
        size: u16,
    ) -> Result<BoundIndex, TpmError> {
        let policy = self.bound_policy(locality, pcr)?;
        let response = self.tis.transact(locality, &command::nv_read_public(index))?;
        let public = match command::parse_nv_read_public(&response) {
            Ok(public) => public,
            // TPM_RC_HANDLE (format 1, error 0x0B, of a handle: Part 2 §6.6.3).
            Err(TpmError::Tpm(rc)) if rc.0 & 0xC0 == 0x80 && rc.0 & 0x3F == 0x0B => {
                return Ok(BoundIndex::Absent);
            }
            Err(e) => return Err(e),
        };
        let written = public.attributes & command::TPMA_NV_WRITTEN != 0;
        let bound = public.index == index
            && public.name_alg == command::TPM_ALG_SHA256
            && public.attributes & !command::TPMA_NV_WRITTEN == attributes
            && public.data_size == size
            && public.auth_policy == Some(policy);
        Ok(if bound { BoundIndex::Bound { written } } else { BoundIndex::Foreign(public) })
    }

    /// Defines NV index `index` (a handle `0x01xx_xxxx`) with `attributes` (which should
    /// name policy access only, such as [`PCR_BOUND_SECRET_ATTRIBUTES`] or
    /// [`PCR_BOUND_PAGE_ATTRIBUTES`]), `size` bytes and `authPolicy` [`Tpm::bound_policy`]
    /// of PCR `pcr` and `locality` (TPM2_NV_DefineSpace, authorized by the owner
    /// hierarchy's empty password). An index that exists is refused with
    /// `TPM_RC_NV_DEFINED` ([`ResponseCode::is_nv_defined`]).
    pub fn define_bound(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
        attributes: u32,
        size: u16,
    ) -> Result<(), TpmError> {
        let policy = self.bound_policy(locality, pcr)?;
        let command = command::nv_define_space_with_policy(index, attributes, size, &policy);
        let response = self.tis.transact(locality, &command)?;
        command::parse_nv_define_space(&response)
    }

    /// Writes `data` at `offset` into NV index `index` with TPM2_NV_Write authorized by a
    /// policy session of PCR `pcr` and `locality` ([`Tpm::bound_policy`]), in pieces of at
    /// most 512 bytes, each under a session of its own (nothing is sent for empty `data`).
    /// When one piece fails, the pieces before it are written: a value that must change
    /// atomically must fit in one piece. A range beyond 65535 bytes is refused before
    /// reaching the TPM ([`TpmError::Argument`]).
    pub fn write_bound(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
        offset: u16,
        data: &[u8],
    ) -> Result<(), TpmError> {
        self.write_in_pieces(offset, data, |tpm, piece, at| {
            tpm.with_bound_session(locality, pcr, |tpm, session| {
                let command = command::nv_write_with_session(session, index, piece, at);
                let response = tpm.tis.transact(locality, &command)?;
                command::parse_nv_write_policy(&response)
            })
        })
    }

    /// `size` bytes at `offset` of NV index `index`, read with TPM2_NV_Read authorized by a
    /// policy session of PCR `pcr` and `locality` ([`Tpm::bound_policy`]), in pieces of at
    /// most 512 bytes, each under a session of its own (nothing is sent for `size` 0). The
    /// errors are those of [`Tpm::read_pcr_bound_secret`]; `size` above [`NV_READ_MAX`] is
    /// [`TpmError::TooLarge`], a range beyond 65535 bytes [`TpmError::Argument`], a piece of
    /// another length than asked [`TpmError::Malformed`].
    pub fn read_bound(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
        offset: u16,
        size: u16,
    ) -> Result<Vec<u8>, TpmError> {
        self.read_in_pieces(offset, size, |tpm, want, at| {
            tpm.with_bound_session(locality, pcr, |tpm, session| {
                let command = command::nv_read_with_session(session, index, want, at);
                let response = tpm.tis.transact(locality, &command)?;
                command::parse_nv_read_policy(&response)
            })
        })
    }

    /// Keeps the 32-byte `secret` in NV index `index` (a handle `0x01xx_xxxx`), readable and
    /// writable only at `locality` while PCR `pcr` (0 to 23, SHA-256 bank) holds the value
    /// it holds now: unless `defined` (the index is there already, bound so:
    /// [`Tpm::bound_secret_index`]), defines it ([`Tpm::define_bound`]) with
    /// [`PCR_BOUND_SECRET_ATTRIBUTES`] and 32 bytes; then writes `secret` into it with
    /// TPM2_NV_Write authorized by a policy session that satisfies that policy. Read it back
    /// with [`Tpm::read_pcr_bound_secret`].
    ///
    /// Defining an index that exists is refused with `TPM_RC_NV_DEFINED`
    /// ([`ResponseCode::is_nv_defined`]) and nothing is written. When the write fails the
    /// index stays defined, unwritten. The owner hierarchy may delete the index (an owner's
    /// index is the owner's to delete), never read or write it. The secret crosses the bus
    /// in the clear.
    pub fn store_pcr_bound_secret(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
        secret: &[u8; 32],
        defined: bool,
    ) -> Result<(), TpmError> {
        if !defined {
            self.define_bound(locality, index, pcr, PCR_BOUND_SECRET_ATTRIBUTES, 32)?;
        }
        self.write_bound(locality, index, pcr, 0, secret)
    }

    /// The 32-byte secret [`Tpm::store_pcr_bound_secret`] kept in NV index `index`, bound
    /// to PCR `pcr` (0 to 23) and `locality`: reads the 32 bytes at offset 0 with
    /// TPM2_NV_Read authorized by a policy session of PCR `pcr` and `locality`
    /// ([`Tpm::bound_policy`]).
    ///
    /// A PCR whose value changed since the secret was stored is `TPM_RC_POLICY_FAIL`
    /// ([`ResponseCode::is_policy_failure`]), and so is an index of another policy; a read
    /// at another locality is refused by the TPM (`TPM_RC_LOCALITY`); a PCR extended
    /// between TPM2_PolicyPCR and TPM2_NV_Read is `TPM_RC_PCR_CHANGED`; an index that does
    /// not exist is `TPM_RC_HANDLE`; an index of another size, less than 32 bytes,
    /// `TPM_RC_NV_RANGE`; a TPM out of session slots `TPM_RC_SESSION_MEMORY` (a warning). A
    /// PCR above 23 or a locality above 4 is [`TpmError::Argument`]; a read of other than 32
    /// bytes, or a session handle that is not a policy session's, [`TpmError::Malformed`].
    ///
    /// Nothing here authenticates the TPM or protects the secret on the bus; that the index
    /// is bound as it should be is for [`Tpm::bound_secret_index`] to say.
    pub fn read_pcr_bound_secret(
        &mut self,
        locality: u8,
        index: u32,
        pcr: u32,
    ) -> Result<[u8; 32], TpmError> {
        let data = self.read_bound(locality, index, pcr, 0, 32)?;
        data.try_into()
            .map_err(|_| TpmError::Malformed("TPM2_NV_Read returned other than the bytes asked"))
    }

    /// Runs `f` with a policy session (TPM2_StartAuthSession: unsalted, unbound, SHA-256,
    /// a 16-byte `nonceCaller` from TPM2_GetRandom) restricted to PCR `pcr`'s current value
    /// (TPM2_PolicyPCR) and to `locality` (TPM2_PolicyLocality), which `f` uses for one
    /// command with `continueSession` clear (the TPM flushes it once that command succeeds).
    /// When anything fails after the session started, the session is flushed
    /// (TPM2_FlushContext, whose own failure is ignored) and the first error returned.
    fn with_bound_session<T>(
        &mut self,
        locality: u8,
        pcr: u32,
        f: impl FnOnce(&mut Self, u32) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        check_pcr(pcr)?;
        check_locality(locality)?;
        let nonce = self.session_nonce(locality)?;
        let response = self.tis.transact(locality, &command::start_auth_session_policy(&nonce))?;
        let (session, _nonce_tpm) = command::parse_start_auth_session(&response)?;
        let result = (|| {
            let response =
                self.tis.transact(locality, &command::policy_pcr_sha256(session, pcr))?;
            command::parse_policy_pcr(&response)?;
            let response =
                self.tis.transact(locality, &command::policy_locality(session, locality)?)?;
            command::parse_policy_locality(&response)?;
            f(self, session)
        })();
        if result.is_err() {
            // Best effort: after a successful command the TPM has flushed the session
            // already, and answers TPM_RC_HANDLE.
            if let Ok(response) = self.tis.transact(locality, &command::flush_context(session)) {
                let _ = command::parse_flush_context(&response);
            }
        }
        result
    }
}

impl<M: Mmio> Tpm<M> {
    /// The attestation key: TPM2_CreatePrimary (Part 3 §24.1) of a restricted ECDSA P-256
    /// signing key in the endorsement hierarchy ([`command::TPM_RH_ENDORSEMENT`], authorized
    /// by its empty password) from the template of
    /// [`command::create_primary_ecc_signing_key`]. A primary key derives from the
    /// hierarchy's seed: the same TPM gives the same key every boot. Returns the transient
    /// handle it is loaded under (flush it with [`Tpm::flush`] when done) and its public
    /// point's `x` and `y`.
    ///
    /// Nothing here proves the key is a TPM's: that takes the endorsement key's certificate
    /// and a credential activation, which the driver does not do.
    pub fn create_attestation_key(
        &mut self,
        locality: u8,
    ) -> Result<(u32, [u8; 32], [u8; 32]), TpmError> {
        let command = command::create_primary_ecc_signing_key(command::TPM_RH_ENDORSEMENT);
        let response = self.tis.transact(locality, &command)?;
        command::parse_create_primary_ecc(&response)
    }

    /// TPM2_Quote (Part 3 §18.4) of the SHA-256 PCRs `pcrs` (each 0 to 23) with the
    /// signing key loaded under `key` (authorized by its empty password, signing with its
    /// own scheme), `qualifying_data` (at most 64 bytes, e.g. a verifier's nonce) becoming
    /// the attestation's `extraData`. Check it with [`quote_verifies`] and read it with
    /// [`command::parse_tpms_attest_quote`]. A PCR above 23 or longer `qualifying_data` is
    /// [`TpmError::Argument`] (nothing sent).
    pub fn quote(
        &mut self,
        locality: u8,
        key: u32,
        qualifying_data: &[u8],
        pcrs: &[u32],
    ) -> Result<command::Quote, TpmError> {
        for &pcr in pcrs {
            check_pcr(pcr)?;
        }
        if qualifying_data.len() > QUALIFYING_DATA_MAX {
            return Err(TpmError::Argument("qualifying data longer than 64 bytes"));
        }
        let command = command::quote_sha256(key, qualifying_data, pcrs);
        let response = self.tis.transact(locality, &command)?;
        command::parse_quote(&response)
    }

    /// The endorsement key: TPM2_CreatePrimary of the TCG EK Credential Profile's RSA-2048
    /// template L-1 ([`command::endorsement_key_template`]) under the endorsement hierarchy
    /// (its empty password). It derives from the endorsement seed, so it is the key the
    /// manufacturer certified: its modulus is the one in the EK certificate. Returns the
    /// transient handle (flush it with [`Tpm::flush`]) and the 256-byte modulus.
    pub fn create_endorsement_key(&mut self, locality: u8) -> Result<(u32, Vec<u8>), TpmError> {
        let response = self.tis.transact(locality, &command::create_primary_endorsement_key())?;
        command::parse_create_primary_rsa_ek(&response)
    }

    /// TPM2_ActivateCredential (Part 3 §12.5; the protocol of Part 1 §24): the credential a
    /// verifier made with TPM2_MakeCredential for the endorsement key loaded under `ek`
    /// and the name of the object loaded under `object` (e.g. the attestation key).
    /// Starts a policy session, satisfies the EK's policy in it (TPM2_PolicySecret of the
    /// endorsement hierarchy, by its empty password), then activates; the TPM flushes the
    /// session after the command, and it is flushed here if anything fails first.
    ///
    /// The TPM answers `TPM_RC_INTEGRITY` (on `credentialBlob`) when the credential was made
    /// for another EK or another object's name: getting the credential back proves the
    /// object is on the TPM that holds the EK.
    pub fn activate_credential(
        &mut self,
        locality: u8,
        object: u32,
        ek: u32,
        credential_blob: &[u8],
        secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let nonce = self.session_nonce(locality)?;
        let response = self.tis.transact(locality, &command::start_auth_session_policy(&nonce))?;
        let (session, _nonce_tpm) = command::parse_start_auth_session(&response)?;
        let result = (|| {
            let command = command::policy_secret(command::TPM_RH_ENDORSEMENT, session);
            command::parse_policy_secret(&self.tis.transact(locality, &command)?)?;
            let command =
                command::activate_credential(object, ek, session, credential_blob, secret);
            command::parse_activate_credential(&self.tis.transact(locality, &command)?)
        })();
        if result.is_err() {
            // Best effort, as in `read_pcr_bound_secret`.
            if let Ok(response) = self.tis.transact(locality, &command::flush_context(session)) {
                let _ = command::parse_flush_context(&response);
            }
        }
        result
    }

    /// TPM2_FlushContext (Part 3 §28.4) of the transient object or session `handle`.
    /// Nothing loaded under it is `TPM_RC_HANDLE`.
    pub fn flush(&mut self, locality: u8, handle: u32) -> Result<(), TpmError> {
        let response = self.tis.transact(locality, &command::flush_context(handle))?;
        command::parse_flush_context(&response)
    }
}

/// The most `qualifyingData` [`Tpm::quote`] sends: a SHA-512 digest (the TPM accepts up to
/// the size of a `TPMT_HA`, Part 2 §10.4.3).
const QUALIFYING_DATA_MAX: usize = 64;

/// Whether `quote`'s signature is a valid ECDSA P-256 signature, by the key whose public
/// point is (`x`, `y`), over the SHA-256 digest of `quote.attest` — as the TPM signs a
/// `TPMS_ATTEST` with an ECDSA/SHA-256 key (Part 1, "Attestation").
pub fn quote_verifies(x: &[u8; 32], y: &[u8; 32], quote: &command::Quote) -> bool {
    let mut public = [0u8; 65];
    public[0] = 0x04; // SEC1 uncompressed
    public[1..33].copy_from_slice(x);
    public[33..].copy_from_slice(y);
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&quote.r);
    signature[32..].copy_from_slice(&quote.s);
    vpr_proto::crypto::verify(&public, &quote.attest, &signature)
}

/// Refuses an NV range of `len` bytes at `offset` that ends beyond 65535 bytes, the most an
/// NV index holds (its `dataSize` is a u16).
fn check_nv_range(offset: u16, len: usize) -> Result<(), TpmError> {
    match usize::from(offset).checked_add(len) {
        Some(end) if end <= usize::from(u16::MAX) => Ok(()),
        _ => Err(TpmError::Argument("NV range beyond 65535 bytes")),
    }
}

/// Refuses a PCR index the PC Client platform does not have.
fn check_pcr(pcr: u32) -> Result<(), TpmError> {
    if pcr < command::PCR_COUNT {
        Ok(())
    } else {
        Err(TpmError::Argument("PCR index above 23"))
    }
}

/// `locality` is one of the TPM's five (0 to 4).
fn check_locality(locality: u8) -> Result<(), TpmError> {
    if locality <= 4 {
        Ok(())
    } else {
        Err(TpmError::Argument("locality above 4"))
    }
}

/// The value of a SHA-256 PCR holding `old` after `digest` is extended into it:
/// SHA-256(`old` || `digest`) (Part 1, "PCR Extend").
pub use vpr_proto::utpm::extended;

/// The identities extended into PCR 18 in one boot, in order: the event log a verifier
/// replays to check PCR 18 and find a PAL in it. Each identity once (a PAL registered again
/// is in it already), and at most [`PalLog::MAX`] of them: it must fit in the evidence
/// (`MAX_EVIDENCE_LEN`, 16 KiB, with the quote, keys and EK certificate) and in the heap, and
/// a guest process registering PALs in a loop must not grow it without end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PalLog(alloc::vec::Vec<[u8; 32]>);

// A full log takes at most half the evidence's room (the quote, keys and EK certificate the
// rest).
const _: () = assert!(PalLog::MAX as u64 * 32 <= vpr_proto::hypercall::MAX_EVIDENCE_LEN / 2);

/// What [`PalLog::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Logged already: nothing to extend.
    Known,
    /// New: extend PCR 18 with it, then [`PalLog::record`] it.
    New,
    /// The log is full (or no memory is left for it): refuse the PAL.
    Full,
}

impl PalLog {
    /// The most distinct identities one boot logs.
    pub const MAX: usize = 256;

    /// An empty log.
    pub const fn new() -> Self {
        PalLog(alloc::vec::Vec::new())
    }

    /// Whether `identity` needs extending, and room is reserved for it if so.
    pub fn admit(&mut self, identity: &[u8; 32]) -> Admission {
        if self.0.contains(identity) {
            Admission::Known
        } else if self.0.len() >= PalLog::MAX || self.0.try_reserve(1).is_err() {
            Admission::Full
        } else {
            Admission::New
        }
    }

    /// Logs `identity`, once PCR 18 was extended with it.
    pub fn record(&mut self, identity: [u8; 32]) {
        self.0.push(identity);
    }

    /// The identities, in order.
    pub fn identities(&self) -> &[[u8; 32]] {
        &self.0
    }
}

#[cfg(test)]
mod pal_log_tests {
    use super::*;

    #[test]
    fn a_pal_registered_again_does_not_grow_the_log() {
        let mut log = PalLog::default();
        assert_eq!(log.admit(&[1; 32]), Admission::New);
        log.record([1; 32]);
        for _ in 0..100_000 {
            assert_eq!(log.admit(&[1; 32]), Admission::Known);
        }
        assert_eq!(log.identities(), &[[1; 32]]);
    }

    #[test]
    fn the_log_stops_at_its_limit() {
        let mut log = PalLog::default();
        for i in 0..PalLog::MAX {
            let mut id = [0; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert_eq!(log.admit(&id), Admission::New);
            log.record(id);
        }
        assert_eq!(log.admit(&[0xFF; 32]), Admission::Full);
        assert_eq!(log.identities().len(), PalLog::MAX);
        // Known ones still pass.
        assert_eq!(log.admit(&log.identities()[7].clone()), Admission::Known);
    }
}

#[cfg(test)]
mod tests {
    use super::tis::fake::Fake;
    use super::*;
    use alloc::vec;
    use vpr_proto::crypto::KeyPair;

    /// A TPM 2.0 simulated at the command level, written from Part 3 independently of the
    /// driver's parsers: Startup, GetRandom, PCR_Extend and PCR_Read of a SHA-256 bank,
    /// NV_ReadPublic, and NV_DefineSpace, NV_Write and NV_Read (owner-authorized) of
    /// ordinary NV indices; unsalted, unbound SHA-256 policy sessions (StartAuthSession,
    /// PolicyPCR, PolicyLocality — its digest only: the simulation does not see localities —
    /// FlushContext) and NV_Read and NV_Write authorized by one against the index's
    /// `authPolicy`; CreatePrimary of the attestation key template (always the key
    /// [`attestation_key`]) and Quote with it, signed by that key.
    pub(super) struct Simulated {
        pub(super) started: bool,
        pcrs: [[u8; 32]; 24],
        counter: u32,
        random: u8,
        /// Most bytes one GetRandom returns.
        random_cap: usize,
        /// NV indices.
        pub(super) nv: Vec<NvIndex>,
        /// Most bytes one NV_Read may ask for, or one NV_Write carry (`MAX_NV_BUFFER_SIZE`).
        nv_buffer: usize,
        /// Largest index NV_DefineSpace accepts (`MAX_NV_INDEX_SIZE`).
        nv_index_max: usize,
        /// Knob: NV_Read returns one byte fewer than asked.
        nv_short: bool,
        /// Knob: NV_ReadPublic answers with the public area of this index instead.
        nv_other: Option<u32>,
        /// Loaded policy sessions.
        sessions: Vec<Session>,
        /// Knob: PolicyPCR answers this response code.
        policy_pcr_rc: Option<u32>,
        /// Transient objects loaded by CreatePrimary: all the one attestation key.
        objects: Vec<u32>,
    }

    /// A policy session of the simulated TPM.
    struct Session {
        handle: u32,
        /// `policyDigest`, SHA-256.
        digest: [u8; 32],
    }

    /// An NV index of the simulated TPM.
    pub(super) struct NvIndex {
        pub(super) handle: u32,
        /// `TPMA_NV` as defined (without `TPMA_NV_WRITTEN`, kept in `written`).
        attributes: u32,
        data: Vec<u8>,
        written: bool,
        /// `authPolicy`: empty or a SHA-256 digest.
        auth_policy: Vec<u8>,
    }

    /// `TPMA_NV` bits (Part 2 §13.4), spelled out here independently of `command`.
    const PPWRITE: u32 = 1 << 0;
    const OWNERWRITE: u32 = 1 << 1;
    const AUTHWRITE: u32 = 1 << 2;
    const POLICYWRITE: u32 = 1 << 3;
    const WRITEALL: u32 = 1 << 12;
    const PPREAD: u32 = 1 << 16;
    const OWNERREAD: u32 = 1 << 17;
    const AUTHREAD: u32 = 1 << 18;
    const POLICYREAD: u32 = 1 << 19;
    const WRITTEN: u32 = 1 << 29;

    /// The `TPMA_NV` of swtpm's EK certificate index (Part 2 §13.4): PPWRITE, WRITELOCKED,
    /// WRITEDEFINE, PPREAD, OWNERREAD, AUTHREAD, NO_DA, WRITTEN, PLATFORMCREATE.
    const EK_CERT_ATTRIBUTES: u32 = 0x6207_2801;

    fn reply(tag: u16, rc: u32, body: &[u8]) -> Vec<u8> {
        let mut r = tag.to_be_bytes().to_vec();
        r.extend_from_slice(&u32::try_from(10 + body.len()).unwrap().to_be_bytes());
        r.extend_from_slice(&rc.to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    impl Simulated {
        pub(super) fn new() -> Self {
            Simulated {
                started: false,
                pcrs: [[0; 32]; 24],
                counter: 0,
                random: 0,
                random_cap: 32,
                nv: Vec::new(),
                nv_buffer: 1024,
                nv_index_max: 2048,
                nv_short: false,
                nv_other: None,
                sessions: Vec::new(),
                policy_pcr_rc: None,
                objects: Vec::new(),
            }
        }

        /// A started TPM holding NV index `index` with `data`.
        fn with_nv(index: u32, data: Vec<u8>) -> Self {
            let mut simulated = Simulated::new();
            simulated.started = true;
            let attributes = EK_CERT_ATTRIBUTES & !WRITTEN;
            let auth_policy = Vec::new();
            simulated.nv.push(NvIndex {
                handle: index,
                attributes,
                data,
                written: true,
                auth_policy,
            });
            simulated
        }

        /// The empty-password authorization area at `at` of a command.
        fn assert_password_session(c: &[u8], at: usize) {
            assert_eq!(&c[at..at + 4], &[0, 0, 0, 9], "authorizationSize");
            assert_eq!(&c[at + 4..at + 8], &[0x40, 0, 0, 0x09], "TPM_RS_PW");
            assert_eq!(&c[at + 8..at + 13], &[0, 0, 0, 0, 0], "empty nonce, attributes, hmac");
        }

        pub(super) fn execute(&mut self, c: &[u8]) -> Vec<u8> {
            let be32 = |at: usize| u32::from_be_bytes(c[at..at + 4].try_into().unwrap());
            let code = be32(6);
            if code != 0x144 && !self.started {
                return reply(0x8001, 0x100, &[]);
            }
            match code {
                0x144 => {
                    assert_eq!(c.len(), 12);
                    if self.started {
                        return reply(0x8001, 0x100, &[]);
                    }
                    self.started = true;
                    reply(0x8001, 0, &[])
                }
                0x17B => {
                    let n = usize::from(u16::from_be_bytes([c[10], c[11]])).min(self.random_cap);
                    let mut body = u16::try_from(n).unwrap().to_be_bytes().to_vec();
                    for _ in 0..n {
                        self.random = self.random.wrapping_add(1);
                        body.push(self.random);
                    }
                    reply(0x8001, 0, &body)
                }
                0x182 => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
                    let pcr = be32(10);
                    assert_eq!(be32(14), 9, "authorizationSize");
                    assert_eq!(be32(18), 0x4000_0009, "TPM_RS_PW");
                    assert_eq!(&c[22..27], &[0, 0, 0, 0, 0], "empty nonce, attributes, hmac");
                    assert_eq!(be32(27), 1, "one digest");
                    assert_eq!(&c[31..33], &[0x00, 0x0B]);
                    let Some(old) = self.pcrs.get(usize::try_from(pcr).unwrap()) else {
                        return reply(0x8001, 0x184, &[]); // TPM_RC_VALUE on handle 1
                    };
                    let mut data = old.to_vec();
                    data.extend_from_slice(&c[33..65]);
                    self.pcrs[usize::try_from(pcr).unwrap()] = vpr_proto::Digest::of(&data).0;
                    self.counter += 1;
                    reply(0x8002, 0, &[0, 0, 0, 0, 0, 0, 0x01, 0, 0])
                }
                0x17E => {
                    assert_eq!(&c[10..17], &[0, 0, 0, 1, 0x00, 0x0B, 3]);
                    let bitmap = &c[17..20];
                    let pcr = (0..24).find(|&i| bitmap[i / 8] & (1 << (i % 8)) != 0).unwrap();
                    let mut body = self.counter.to_be_bytes().to_vec();
                    body.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x0B, 3]);
                    body.extend_from_slice(bitmap);
                    body.extend_from_slice(&[0, 0, 0, 1, 0, 32]);
                    body.extend_from_slice(&self.pcrs[pcr]);
                    reply(0x8001, 0, &body)
                }
                0x169 => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8001);
                    assert_eq!(c.len(), 14);
                    let index = be32(10);
                    let Some(nv) = self.nv.iter().find(|nv| nv.handle == index) else {
                        return reply(0x8001, 0x18B, &[]); // TPM_RC_HANDLE on handle 1
                    };
                    // TPMS_NV_PUBLIC: nvIndex, nameAlg, attributes, empty authPolicy, dataSize.
                    let mut public = self.nv_other.unwrap_or(index).to_be_bytes().to_vec();
                    public.extend_from_slice(&[0x00, 0x0B]);
                    let attributes = nv.attributes | if nv.written { WRITTEN } else { 0 };
                    public.extend_from_slice(&attributes.to_be_bytes());
                    public.extend_from_slice(
                        &u16::try_from(nv.auth_policy.len()).unwrap().to_be_bytes(),
                    );
                    public.extend_from_slice(&nv.auth_policy);
                    public.extend_from_slice(&u16::try_from(nv.data.len()).unwrap().to_be_bytes());
                    let mut body = u16::try_from(public.len()).unwrap().to_be_bytes().to_vec();
                    body.extend_from_slice(&public);
                    // nvName: nameAlg || SHA-256(TPMS_NV_PUBLIC).
                    body.extend_from_slice(&[0, 34, 0x00, 0x0B]);
                    body.extend_from_slice(&vpr_proto::Digest::of(&public).0);
                    reply(0x8001, 0, &body)
                }
                0x14E if be32(22) != 0x4000_0009 => self.nv_read_policy(c),
                0x14E => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
                    assert_eq!(c.len(), 35);
                    assert_eq!(be32(10), 0x4000_0001, "authHandle TPM_RH_OWNER");
                    let index = be32(14);
                    assert_eq!(be32(18), 9, "authorizationSize");
                    assert_eq!(be32(22), 0x4000_0009, "TPM_RS_PW");
                    assert_eq!(&c[26..31], &[0, 0, 0, 0, 0], "empty nonce, attributes, hmac");
                    let size = usize::from(u16::from_be_bytes([c[31], c[32]]));
                    let offset = usize::from(u16::from_be_bytes([c[33], c[34]]));
                    let Some(nv) = self.nv.iter().find(|nv| nv.handle == index) else {
                        return reply(0x8001, 0x28B, &[]); // TPM_RC_HANDLE on handle 2
                    };
                    // The access checks come before the command's own (Part 3 §31.13).
                    if nv.attributes & OWNERREAD == 0 {
                        return reply(0x8001, 0x149, &[]); // TPM_RC_NV_AUTHORIZATION
                    }
                    if !nv.written {
                        return reply(0x8001, 0x14A, &[]); // TPM_RC_NV_UNINITIALIZED
                    }
                    let data = &nv.data;
                    if size > self.nv_buffer {
                        return reply(0x8001, 0x1C4, &[]); // TPM_RC_VALUE on parameter 1
                    }
                    if offset + size > data.len() {
                        return reply(0x8001, 0x146, &[]); // TPM_RC_NV_RANGE
                    }
                    let mut chunk = data[offset..offset + size].to_vec();
                    if self.nv_short {
                        chunk.pop();
                    }
                    let n = u16::try_from(chunk.len()).unwrap();
                    let mut body = (u32::from(n) + 2).to_be_bytes().to_vec();
                    body.extend_from_slice(&n.to_be_bytes());
                    body.extend_from_slice(&chunk);
                    body.extend_from_slice(&[0, 0, 0x01, 0, 0]);
                    reply(0x8002, 0, &body)
                }
                0x12A => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
                    assert_eq!(be32(10), 0x4000_0001, "authHandle TPM_RH_OWNER");
                    Self::assert_password_session(c, 14);
                    assert_eq!(&c[27..29], &[0, 0], "auth: empty");
                    let policy_len = usize::from(u16::from_be_bytes([c[41], c[42]]));
                    assert_eq!(c.len(), 45 + policy_len);
                    let public_len = usize::from(u16::from_be_bytes([c[29], c[30]]));
                    assert_eq!(public_len, 14 + policy_len, "publicInfo: a TPMS_NV_PUBLIC");
                    let index = be32(31);
                    assert_eq!(&c[35..37], &[0x00, 0x0B], "nameAlg SHA-256");
                    let attributes = be32(37);
                    let auth_policy = c[43..43 + policy_len].to_vec();
                    let at = 43 + policy_len;
                    let size = usize::from(u16::from_be_bytes([c[at], c[at + 1]]));
                    // An authPolicy is empty or of the nameAlg's size: TPM_RC_SIZE on
                    // parameter 2 otherwise.
                    if policy_len != 0 && policy_len != 32 {
                        return reply(0x8001, 0x2D5, &[]);
                    }
                    // TPM_RC_ATTRIBUTES on parameter 2 (publicInfo): WRITTEN set, a type
                    // other than ordinary (the only one simulated), no way to write or to
                    // read.
                    let writes = PPWRITE | OWNERWRITE | AUTHWRITE | POLICYWRITE;
                    let reads = PPREAD | OWNERREAD | AUTHREAD | POLICYREAD;
                    if attributes & WRITTEN != 0
                        || attributes & 0xF0 != 0
                        || attributes & writes == 0
                        || attributes & reads == 0
                    {
                        return reply(0x8001, 0x2C2, &[]);
                    }
                    if index >> 24 != 0x01 {
                        return reply(0x8001, 0x2C4, &[]); // TPM_RC_VALUE on parameter 2
                    }
                    if size > self.nv_index_max {
                        return reply(0x8001, 0x2D5, &[]); // TPM_RC_SIZE on parameter 2
                    }
                    if self.nv.iter().any(|nv| nv.handle == index) {
                        return reply(0x8001, 0x14C, &[]); // TPM_RC_NV_DEFINED
                    }
                    // What unwritten bytes hold is this simulation's choice.
                    let data = vec![0xFF; size];
                    self.nv.push(NvIndex {
                        handle: index,
                        attributes,
                        data,
                        written: false,
                        auth_policy,
                    });
                    reply(0x8002, 0, &[0, 0, 0, 0, 0, 0, 0x01, 0, 0])
                }
                0x137 if be32(22) != 0x4000_0009 => self.nv_write_policy(c),
                0x137 => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
                    assert_eq!(be32(10), 0x4000_0001, "authHandle TPM_RH_OWNER");
                    let index = be32(14);
                    Self::assert_password_session(c, 18);
                    let n = usize::from(u16::from_be_bytes([c[31], c[32]]));
                    assert_eq!(c.len(), 35 + n);
                    let offset = usize::from(u16::from_be_bytes([c[33 + n], c[34 + n]]));
                    let Some(nv) = self.nv.iter_mut().find(|nv| nv.handle == index) else {
                        return reply(0x8001, 0x28B, &[]); // TPM_RC_HANDLE on handle 2
                    };
                    if nv.attributes & OWNERWRITE == 0 {
                        return reply(0x8001, 0x149, &[]); // TPM_RC_NV_AUTHORIZATION
                    }
                    if n > self.nv_buffer {
                        return reply(0x8001, 0x1D5, &[]); // TPM_RC_SIZE on parameter 1
                    }
                    if offset + n > nv.data.len() {
                        return reply(0x8001, 0x146, &[]); // TPM_RC_NV_RANGE
                    }
                    nv.data[offset..offset + n].copy_from_slice(&c[33..33 + n]);
                    nv.written = true;
                    reply(0x8002, 0, &[0, 0, 0, 0, 0, 0, 0x01, 0, 0])
                }
                0x176 => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8001);
                    assert_eq!(be32(10), 0x4000_0007, "tpmKey TPM_RH_NULL");
                    assert_eq!(be32(14), 0x4000_0007, "bind TPM_RH_NULL");
                    let n = usize::from(u16::from_be_bytes([c[18], c[19]]));
                    assert_eq!(c.len(), 20 + n + 7);
                    let rest = &c[20 + n..];
                    assert_eq!(&rest[..2], &[0, 0], "encryptedSalt: empty");
                    assert_eq!(rest[2], 0x01, "TPM_SE_POLICY");
                    assert_eq!(&rest[3..5], &[0x00, 0x10], "symmetric: TPM_ALG_NULL");
                    assert_eq!(&rest[5..7], &[0x00, 0x0B], "authHash: SHA-256");
                    if !(16..=32).contains(&n) {
                        return reply(0x8001, 0x1D5, &[]); // TPM_RC_SIZE on parameter 1
                    }
                    if self.sessions.len() >= 3 {
                        return reply(0x8001, 0x903, &[]); // TPM_RC_SESSION_MEMORY
                    }
                    let handle = (0x0300_0000..)
                        .find(|h| self.sessions.iter().all(|s| s.handle != *h))
                        .unwrap();
                    self.sessions.push(Session { handle, digest: [0; 32] });
                    let mut body = handle.to_be_bytes().to_vec();
                    body.extend_from_slice(&[0, 32]);
                    body.extend_from_slice(&Self::nonce_tpm());
                    reply(0x8001, 0, &body)
                }
                0x16F => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8001);
                    assert_eq!(c.len(), 15);
                    let handle = be32(10);
                    let locality = c[14];
                    let Some(session) = self.sessions.iter_mut().find(|s| s.handle == handle)
                    else {
                        return reply(0x8001, 0x910, &[]); // TPM_RC_REFERENCE_H0
                    };
                    // policyDigest_new = H(policyDigest_old || TPM_CC_PolicyLocality ||
                    // locality) (Part 3 §23.4.1). (Where the session is then used is not
                    // checked here: the simulation does not see localities.)
                    let mut message = session.digest.to_vec();
                    message.extend_from_slice(&[0, 0, 0x01, 0x6F, locality]);
                    session.digest = vpr_proto::Digest::of(&message).0;
                    reply(0x8001, 0, &[])
                }
                0x17F => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8001);
                    assert_eq!(c.len(), 26);
                    let handle = be32(10);
                    assert_eq!(&c[14..16], &[0, 0], "pcrDigest: empty");
                    let pcrs = &c[16..26];
                    assert_eq!(&pcrs[..7], &[0, 0, 0, 1, 0x00, 0x0B, 3]);
                    if let Some(rc) = self.policy_pcr_rc {
                        return reply(0x8001, rc, &[]);
                    }
                    let Some(session) = self.sessions.iter_mut().find(|s| s.handle == handle)
                    else {
                        return reply(0x8001, 0x910, &[]); // TPM_RC_REFERENCE_H0
                    };
                    // pcrDigest: the hash of the selected PCRs' values, in order.
                    let mut values = Vec::new();
                    for i in (0..24).filter(|&i| pcrs[7 + i / 8] & (1 << (i % 8)) != 0) {
                        values.extend_from_slice(&self.pcrs[i]);
                    }
                    let pcr_digest = vpr_proto::Digest::of(&values).0;
                    // policyDigest_new = H(policyDigest_old || TPM_CC_PolicyPCR || pcrs ||
                    // pcrDigest) (Part 3 §23.7.1).
                    let mut message = session.digest.to_vec();
                    message.extend_from_slice(&[0, 0, 0x01, 0x7F]);
                    message.extend_from_slice(pcrs);
                    message.extend_from_slice(&pcr_digest);
                    session.digest = vpr_proto::Digest::of(&message).0;
                    reply(0x8001, 0, &[])
                }
                0x165 => {
                    assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8001);
                    assert_eq!(c.len(), 14);
                    let handle = be32(10);
                    let before = self.sessions.len() + self.objects.len();
                    self.sessions.retain(|s| s.handle != handle);
                    self.objects.retain(|&o| o != handle);
                    if self.sessions.len() + self.objects.len() == before {
                        return reply(0x8001, 0x1CB, &[]); // TPM_RC_HANDLE on parameter 1
                    }
                    reply(0x8001, 0, &[])
                }
                0x131 => self.create_primary(c),
                0x158 => self.quote(c),
                _ => reply(0x8001, 0x143, &[]),
            }
        }

        /// CreatePrimary of the ECC P-256 restricted signing template in the endorsement
        /// hierarchy: always the key [`attestation_key`].
        fn create_primary(&mut self, c: &[u8]) -> Vec<u8> {
            assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
            assert_eq!(c.len(), 65);
            assert_eq!(&c[10..14], &[0x40, 0, 0, 0x0B], "TPM_RH_ENDORSEMENT");
            Self::assert_password_session(c, 14);
            assert_eq!(&c[27..35], &[0, 4, 0, 0, 0, 0, 0, 24], "inSensitive, inPublic size");
            let template = [
                0x00, 0x23, 0x00, 0x0B, 0x00, 0x05, 0x04, 0x72, 0, 0, 0x00, 0x10, 0x00, 0x18, 0x00,
                0x0B, 0x00, 0x03, 0x00, 0x10, 0, 0, 0, 0,
            ];
            assert_eq!(&c[35..59], &template);
            assert_eq!(&c[59..], &[0, 0, 0, 0, 0, 0]);
            if self.objects.len() >= 3 {
                return reply(0x8001, 0x902, &[]); // TPM_RC_OBJECT_MEMORY
            }
            let handle = (0x8000_0000..).find(|h| !self.objects.contains(h)).unwrap();
            self.objects.push(handle);
            let point = attestation_key().public();
            let mut public = template[..20].to_vec();
            public.extend_from_slice(&[0, 32]);
            public.extend_from_slice(&point[1..33]);
            public.extend_from_slice(&[0, 32]);
            public.extend_from_slice(&point[33..]);
            let name_digest = vpr_proto::Digest::of(&public).0;
            let mut parameters = vec![0, 88];
            parameters.extend_from_slice(&public);
            parameters.extend_from_slice(&[0, 6, 0, 0, 0, 0, 0, 0]); // creationData
            parameters.extend_from_slice(&[0, 32]);
            parameters.extend_from_slice(&[0x33; 32]); // creationHash
            parameters.extend_from_slice(&[0x80, 0x21, 0x40, 0, 0, 0x0B, 0, 32]);
            parameters.extend_from_slice(&[0x44; 32]); // creationTicket
            parameters.extend_from_slice(&[0, 34, 0x00, 0x0B]);
            parameters.extend_from_slice(&name_digest); // name
            let mut body = handle.to_be_bytes().to_vec();
            body.extend_from_slice(&u32::try_from(parameters.len()).unwrap().to_be_bytes());
            body.extend_from_slice(&parameters);
            body.extend_from_slice(&[0, 0, 0x01, 0, 0]);
            reply(0x8002, 0, &body)
        }

        /// Quote with a loaded attestation key of SHA-256 PCRs.
        fn quote(&mut self, c: &[u8]) -> Vec<u8> {
            assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
            let handle = u32::from_be_bytes(c[10..14].try_into().unwrap());
            Self::assert_password_session(c, 14);
            let n = usize::from(u16::from_be_bytes([c[27], c[28]]));
            let extra = &c[27..29 + n];
            let rest = &c[29 + n..];
            assert_eq!(&rest[..9], &[0x00, 0x10, 0, 0, 0, 1, 0x00, 0x0B, 3]);
            assert_eq!(rest.len(), 12);
            if !self.objects.contains(&handle) {
                return reply(0x8001, 0x18B, &[]); // TPM_RC_HANDLE on handle 1
            }
            let bitmap = &rest[9..12];
            let mut values = Vec::new();
            for pcr in (0..24).filter(|&i| bitmap[i / 8] & (1 << (i % 8)) != 0) {
                values.extend_from_slice(&self.pcrs[pcr]);
            }
            let mut attest = vec![0xFF, 0x54, 0x43, 0x47, 0x80, 0x18, 0, 34, 0x00, 0x0B];
            attest.extend_from_slice(&[0x55; 32]); // qualifiedSigner
            attest.extend_from_slice(extra);
            attest.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
            attest.extend_from_slice(&[0, 0, 0, 0, 0x20, 0x19, 0x10, 0x23]);
            attest.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x0B, 3]);
            attest.extend_from_slice(bitmap);
            attest.extend_from_slice(&[0, 32]);
            attest.extend_from_slice(&vpr_proto::Digest::of(&values).0);
            let signature = attestation_key().sign(&attest);
            let mut parameters = u16::try_from(attest.len()).unwrap().to_be_bytes().to_vec();
            parameters.extend_from_slice(&attest);
            parameters.extend_from_slice(&[0x00, 0x18, 0x00, 0x0B, 0, 32]);
            parameters.extend_from_slice(&signature[..32]);
            parameters.extend_from_slice(&[0, 32]);
            parameters.extend_from_slice(&signature[32..]);
            let mut body = u32::try_from(parameters.len()).unwrap().to_be_bytes().to_vec();
            body.extend_from_slice(&parameters);
            body.extend_from_slice(&[0, 0, 0x01, 0, 0]);
            reply(0x8002, 0, &body)
        }

        /// The nonceTPM of every session reply.
        fn nonce_tpm() -> [u8; 32] {
            [0x5A; 32]
        }

        /// NV_Write authorized by a policy session.
        fn nv_write_policy(&mut self, c: &[u8]) -> Vec<u8> {
            let be32 = |at: usize| u32::from_be_bytes(c[at..at + 4].try_into().unwrap());
            assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
            let index = be32(14);
            assert_eq!(be32(10), index, "authHandle: the index itself");
            assert_eq!(be32(18), 9, "authorizationSize");
            let handle = be32(22);
            assert_eq!(&c[26..31], &[0, 0, 0, 0, 0], "empty nonce, no attributes, empty hmac");
            let n = usize::from(u16::from_be_bytes([c[31], c[32]]));
            assert_eq!(c.len(), 35 + n);
            let offset = usize::from(u16::from_be_bytes([c[33 + n], c[34 + n]]));
            let Some(nv) = self.nv.iter_mut().find(|nv| nv.handle == index) else {
                return reply(0x8001, 0x18B, &[]); // TPM_RC_HANDLE on handle 1
            };
            let Some(at) = self.sessions.iter().position(|s| s.handle == handle) else {
                return reply(0x8001, 0x918, &[]); // TPM_RC_REFERENCE_S0
            };
            if nv.attributes & POLICYWRITE == 0 {
                return reply(0x8001, 0x149, &[]); // TPM_RC_NV_AUTHORIZATION
            }
            if self.sessions[at].digest[..] != nv.auth_policy[..] {
                return reply(0x8001, 0x99D, &[]); // TPM_RC_POLICY_FAIL on session 1
            }
            let whole = nv.attributes & WRITEALL == 0 || (offset == 0 && n == nv.data.len());
            if offset + n > nv.data.len() || !whole {
                return reply(0x8001, 0x146, &[]); // TPM_RC_NV_RANGE
            }
            nv.data[offset..offset + n].copy_from_slice(&c[33..33 + n]);
            nv.written = true;
            // continueSession clear: the session ends with the command.
            self.sessions.remove(at);
            let mut body = 0u32.to_be_bytes().to_vec();
            body.extend_from_slice(&[0, 32]);
            body.extend_from_slice(&Self::nonce_tpm());
            body.extend_from_slice(&[0x00, 0, 0]);
            reply(0x8002, 0, &body)
        }

        /// NV_Read authorized by a policy session.
        fn nv_read_policy(&mut self, c: &[u8]) -> Vec<u8> {
            let be32 = |at: usize| u32::from_be_bytes(c[at..at + 4].try_into().unwrap());
            assert_eq!(u16::from_be_bytes([c[0], c[1]]), 0x8002);
            assert_eq!(c.len(), 35);
            let index = be32(14);
            assert_eq!(be32(10), index, "authHandle: the index itself");
            assert_eq!(be32(18), 9, "authorizationSize");
            let handle = be32(22);
            assert_eq!(&c[26..31], &[0, 0, 0, 0, 0], "empty nonce, no attributes, empty hmac");
            let size = usize::from(u16::from_be_bytes([c[31], c[32]]));
            let offset = usize::from(u16::from_be_bytes([c[33], c[34]]));
            // Handles first, then the session, then the index's access checks.
            let Some(nv) = self.nv.iter().find(|nv| nv.handle == index) else {
                return reply(0x8001, 0x18B, &[]); // TPM_RC_HANDLE on handle 1
            };
            let Some(at) = self.sessions.iter().position(|s| s.handle == handle) else {
                return reply(0x8001, 0x918, &[]); // TPM_RC_REFERENCE_S0
            };
            if nv.attributes & POLICYREAD == 0 {
                return reply(0x8001, 0x149, &[]); // TPM_RC_NV_AUTHORIZATION
            }
            if self.sessions[at].digest[..] != nv.auth_policy[..] {
                return reply(0x8001, 0x99D, &[]); // TPM_RC_POLICY_FAIL on session 1
            }
            if !nv.written {
                return reply(0x8001, 0x14A, &[]); // TPM_RC_NV_UNINITIALIZED
            }
            if offset + size > nv.data.len() {
                return reply(0x8001, 0x146, &[]); // TPM_RC_NV_RANGE
            }
            let mut chunk = nv.data[offset..offset + size].to_vec();
            if self.nv_short {
                chunk.pop();
            }
            // continueSession clear: the session ends with the command.
            self.sessions.remove(at);
            let n = u16::try_from(chunk.len()).unwrap();
            let mut body = (u32::from(n) + 2).to_be_bytes().to_vec();
            body.extend_from_slice(&n.to_be_bytes());
            body.extend_from_slice(&chunk);
            body.extend_from_slice(&[0, 32]);
            body.extend_from_slice(&Self::nonce_tpm());
            body.extend_from_slice(&[0x00, 0, 0]);
            reply(0x8002, 0, &body)
        }
    }

    /// The simulated TPM's attestation key.
    fn attestation_key() -> KeyPair {
        KeyPair::from_secret(&[0x07; 32]).unwrap()
    }

    fn tpm(mut simulated: Simulated, burst: u16) -> Tpm<Fake> {
        Tpm::new(Fake::new(burst, move |c| simulated.execute(c)), 100)
    }

    #[test]
    fn extended_is_sha256_of_the_concatenation() {
        // SHA-256 of 64 zero bytes: PCR 0 of a fresh bank after extending a zero digest.
        let zeros = extended(&[0; 32], &[0; 32]);
        let expected = "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b";
        assert_eq!(vpr_proto::Digest(zeros).to_string(), expected);
        // Order matters.
        let (a, b) = ([1; 32], [2; 32]);
        assert_ne!(extended(&a, &b), extended(&b, &a));
        let mut concatenated = a.to_vec();
        concatenated.extend_from_slice(&b);
        assert_eq!(extended(&a, &b), vpr_proto::Digest::of(&concatenated).0);
    }

    #[test]
    fn driver_against_simulated_tpm() {
        let mut tpm = tpm(Simulated::new(), 6);
        let info = tpm.probe().unwrap();
        assert!(info.tpm2);
        assert_eq!((info.vendor, info.device), (0x1014, 0x0001));
        // A command before Startup is refused with TPM_RC_INITIALIZE.
        assert_eq!(tpm.pcr_read(0, 0), Err(TpmError::Tpm(ResponseCode::INITIALIZE)));
        assert_eq!(tpm.startup(0), Ok(true));
        assert_eq!(tpm.startup(0), Ok(false), "already started");

        let random = tpm.get_random(0, 100).unwrap();
        assert_eq!(random, (1..=100).collect::<Vec<u8>>());
        assert_eq!(tpm.get_random(0, 0), Ok(Vec::new()));

        assert_eq!(tpm.pcr_read(0, 16), Ok([0; 32]));
        let (a, b) = ([0xAA; 32], [0xBB; 32]);
        tpm.pcr_extend(0, 16, &a).unwrap();
        tpm.pcr_extend(2, 16, &b).unwrap();
        assert_eq!(tpm.pcr_read(0, 16), Ok(extended(&extended(&[0; 32], &a), &b)));
        assert_eq!(tpm.pcr_read(3, 23), Ok([0; 32]));
        tpm.pcr_extend(0, 23, &a).unwrap();
        assert_eq!(tpm.pcr_read(0, 23), Ok(extended(&[0; 32], &a)));

        let fake = tpm.tis().mmio();
        assert_eq!(fake.active, None);
        assert_eq!(fake.requests, fake.releases);
    }

    #[test]
    fn random_in_small_pieces() {
        let mut simulated = Simulated::new();
        simulated.started = true;
        simulated.random_cap = 5;
        let mut tpm = tpm(simulated, 0x1000);
        assert_eq!(tpm.get_random(0, 12).unwrap(), (1..=12).collect::<Vec<u8>>());
        // 5 + 5 + 2.
        assert_eq!(tpm.tis().mmio().executed.len(), 3);
    }

    #[test]
    fn random_misbehaviours() {
        // No bytes: refused rather than asked again forever.
        let mut simulated = Simulated::new();
        simulated.started = true;
        simulated.random_cap = 0;
        let mut tpm = tpm(simulated, 0x1000);
        assert_eq!(
            tpm.get_random(0, 4),
            Err(TpmError::Malformed("TPM2_GetRandom returned no bytes"))
        );
        // More bytes than asked.
        let mut response = vec![0x80, 0x01, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 4];
        response.extend_from_slice(&[9; 4]);
        let mut tpm = Tpm::new(Fake::canned(0x1000, response), 100);
        assert_eq!(
            tpm.get_random(0, 3),
            Err(TpmError::Malformed("TPM2_GetRandom returned more bytes than asked"))
        );
    }

    /// `n` bytes standing for a certificate.
    fn certificate(n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect()
    }

    /// The (size, offset) of every NV_Read the fake TPM executed.
    fn nv_reads(tpm: &mut Tpm<Fake>) -> Vec<(u16, u16)> {
        let fake = tpm.tis().mmio();
        let reads = fake.executed.iter().map(|(_, c)| c).filter(|c| c[8..10] == [0x01, 0x4E]);
        reads
            .map(|c| (u16::from_be_bytes([c[31], c[32]]), u16::from_be_bytes([c[33], c[34]])))
            .collect()
    }

    #[test]
    fn nv_read_all_in_chunks() {
        let cert = certificate(1100);
        let mut tpm = self::tpm(Simulated::with_nv(EK_CERT_RSA_INDEX, cert.clone()), 7);
        assert_eq!(tpm.nv_read_all(0, EK_CERT_RSA_INDEX), Ok(cert));
        assert_eq!(nv_reads(&mut tpm), [(512, 0), (512, 512), (76, 1024)]);
        let fake = tpm.tis().mmio();
        assert_eq!(fake.executed.len(), 4);
        assert_eq!(fake.executed[0].1, command::nv_read_public(EK_CERT_RSA_INDEX));
        assert_eq!(fake.active, None);
        assert_eq!(fake.requests, fake.releases);

        // Exactly one chunk, a multiple of chunks, the largest index, an empty one.
        for (n, reads) in [(512, 1), (1024, 2), (1, 1), (8192, 16), (0, 0)] {
            let cert = certificate(n);
            let mut tpm = self::tpm(Simulated::with_nv(0x0150_0000, cert.clone()), 0x1000);
            assert_eq!(tpm.nv_read_all(2, 0x0150_0000), Ok(cert), "{n} bytes");
            assert_eq!(nv_reads(&mut tpm).len(), reads, "{n} bytes");
        }
    }

    #[test]
    fn nv_read_all_errors() {
        // No such index: TPM_RC_HANDLE from NV_ReadPublic, no NV_Read.
        let mut tpm = self::tpm(Simulated::with_nv(0x0150_0000, certificate(10)), 0x1000);
        let error = tpm.nv_read_all(0, EK_CERT_RSA_INDEX).unwrap_err();
        assert_eq!(error, TpmError::Tpm(ResponseCode(0x18B)));
        assert_eq!(error.to_string(), "the TPM answered TPM_RC_HANDLE (0x18b) on handle 1");
        assert_eq!(nv_reads(&mut tpm), []);

        // A piece shorter than asked.
        let mut simulated = Simulated::with_nv(EK_CERT_RSA_INDEX, certificate(1100));
        simulated.nv_short = true;
        let mut tpm = self::tpm(simulated, 0x1000);
        assert_eq!(
            tpm.nv_read_all(0, EK_CERT_RSA_INDEX),
            Err(TpmError::Malformed("TPM2_NV_Read returned other than the bytes asked"))
        );
        assert_eq!(nv_reads(&mut tpm), [(512, 0)]);

        // The public area of another index.
        let mut simulated = Simulated::with_nv(EK_CERT_RSA_INDEX, certificate(100));
        simulated.nv_other = Some(0x01C0_000A);
        let mut tpm = self::tpm(simulated, 0x1000);
        assert_eq!(
            tpm.nv_read_all(0, EK_CERT_RSA_INDEX),
            Err(TpmError::Malformed("TPM2_NV_ReadPublic answered about another index"))
        );

        // Larger than 8 KiB: refused before any NV_Read.
        let mut tpm = self::tpm(Simulated::with_nv(EK_CERT_RSA_INDEX, certificate(8193)), 0x1000);
        assert_eq!(tpm.nv_read_all(0, EK_CERT_RSA_INDEX), Err(TpmError::TooLarge));
        assert_eq!(nv_reads(&mut tpm), []);

        // Errors of NV_Read come through: a TPM whose NV buffer is below 512 bytes refuses
        // the first piece.
        let mut simulated = Simulated::with_nv(EK_CERT_RSA_INDEX, certificate(1100));
        simulated.nv_buffer = 256;
        let mut tpm = self::tpm(simulated, 0x1000);
        assert_eq!(tpm.nv_read_all(0, EK_CERT_RSA_INDEX), Err(TpmError::Tpm(ResponseCode(0x1C4))));

        // An error of NV_ReadPublic other than TPM_RC_HANDLE (canned: every command is
        // answered TPM_RC_NV_LOCKED).
        let locked = vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x01, 0x48];
        let mut tpm = Tpm::new(Fake::canned(0x1000, locked), 100);
        assert_eq!(
            tpm.nv_read_all(0, EK_CERT_RSA_INDEX),
            Err(TpmError::Tpm(ResponseCode::NV_LOCKED))
        );

        // Before Startup, and at a locality that does not exist.
        let mut tpm = self::tpm(Simulated::new(), 0x1000);
        assert_eq!(
            tpm.nv_read_all(0, EK_CERT_RSA_INDEX),
            Err(TpmError::Tpm(ResponseCode::INITIALIZE))
        );
        assert_eq!(
            tpm.nv_read_all(5, EK_CERT_RSA_INDEX),
            Err(TpmError::Argument("locality above 4"))
        );
    }

    /// A counter-like index: owner-written, owner-read, outside dictionary-attack lockout.
    const COUNTER: u32 = 0x0150_0010;
    const COUNTER_ATTRIBUTES: u32 =
        command::TPMA_NV_OWNERWRITE | command::TPMA_NV_OWNERREAD | command::TPMA_NV_NO_DA;

    /// The (size, offset) of every NV_Write the fake TPM executed.
    fn nv_writes(tpm: &mut Tpm<Fake>) -> Vec<(u16, u16)> {
        let fake = tpm.tis().mmio();
        let writes = fake.executed.iter().map(|(_, c)| c).filter(|c| c[8..10] == [0x01, 0x37]);
        writes
            .map(|c| {
                let n = u16::from_be_bytes([c[31], c[32]]);
                let at = 33 + usize::from(n);
                (n, u16::from_be_bytes([c[at], c[at + 1]]))
            })
            .collect()
    }

    /// A started TPM with no NV index.
    fn started() -> Tpm<Fake> {
        let mut simulated = Simulated::new();
        simulated.started = true;
        tpm(simulated, 0x1000)
    }

    #[test]
    fn nv_define_new_and_already_defined() {
        let mut tpm = self::tpm(Simulated::new(), 5);
        tpm.startup(0).unwrap();
        assert_eq!(tpm.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 8), Ok(true));
        assert_eq!(
            tpm.tis().mmio().executed[1].1,
            command::nv_define_space(COUNTER, COUNTER_ATTRIBUTES, 8)
        );
        // Again, even with another size or attributes: it exists, as first defined.
        assert_eq!(tpm.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 8), Ok(false));
        assert_eq!(
            tpm.nv_define(2, COUNTER, command::TPMA_NV_AUTHREAD | command::TPMA_NV_AUTHWRITE, 16),
            Ok(false)
        );
        let public = tpm.tis().transact(0, &command::nv_read_public(COUNTER)).unwrap();
        let public = command::parse_nv_read_public(&public).unwrap();
        assert_eq!((public.index, public.attributes, public.data_size), (COUNTER, 0x0202_0002, 8));
        // Another index next to it.
        assert_eq!(tpm.nv_define(0, COUNTER + 1, COUNTER_ATTRIBUTES, 700), Ok(true));

        // Refusals of the TPM come through: WRITTEN asked for, no read authorization, a
        // size above the TPM's largest index, a handle that is not an NV index's.
        let written = COUNTER_ATTRIBUTES | command::TPMA_NV_WRITTEN;
        assert_eq!(
            tpm.nv_define(0, 0x0150_0020, written, 8),
            Err(TpmError::Tpm(ResponseCode(0x2C2)))
        );
        let write_only = command::TPMA_NV_OWNERWRITE;
        assert_eq!(
            tpm.nv_define(0, 0x0150_0020, write_only, 8),
            Err(TpmError::Tpm(ResponseCode(0x2C2)))
        );
        assert_eq!(
            tpm.nv_define(0, 0x0150_0020, COUNTER_ATTRIBUTES, 4096),
            Err(TpmError::Tpm(ResponseCode(0x2D5)))
        );
        assert_eq!(
            tpm.nv_define(0, 0x8100_0001, COUNTER_ATTRIBUTES, 8),
            Err(TpmError::Tpm(ResponseCode(0x2C4)))
        );
        // Before Startup, and at a locality that does not exist.
        let mut fresh = self::tpm(Simulated::new(), 0x1000);
        assert_eq!(
            fresh.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 8),
            Err(TpmError::Tpm(ResponseCode::INITIALIZE))
        );
        assert_eq!(
            fresh.nv_define(5, COUNTER, COUNTER_ATTRIBUTES, 8),
            Err(TpmError::Argument("locality above 4"))
        );

        let fake = tpm.tis().mmio();
        assert_eq!(fake.active, None);
        assert_eq!(fake.requests, fake.releases);
    }

    #[test]
    fn nv_write_then_read_back() {
        let mut tpm = started();
        assert_eq!(tpm.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 700), Ok(true));

        // Defined but never written: TPM_RC_NV_UNINITIALIZED, whichever way it is read.
        let uninitialized = TpmError::Tpm(ResponseCode::NV_UNINITIALIZED);
        assert_eq!(tpm.nv_read(0, COUNTER, 0, 8), Err(uninitialized));
        assert_eq!(tpm.nv_read_all(0, COUNTER), Err(uninitialized));
        let error = tpm.nv_read(0, COUNTER, 100, 600).unwrap_err();
        assert!(matches!(error, TpmError::Tpm(rc) if rc == ResponseCode::NV_UNINITIALIZED));
        assert_eq!(error.to_string(), "the TPM answered TPM_RC_NV_UNINITIALIZED (0x14a)");

        // 700 bytes, across two pieces.
        let mut expected = certificate(700);
        tpm.nv_write(0, COUNTER, 0, &expected).unwrap();
        assert_eq!(nv_writes(&mut tpm), [(512, 0), (188, 512)]);
        let fake = tpm.tis().mmio();
        let last = &fake.executed.last().unwrap().1;
        assert_eq!(*last, command::nv_write(command::TPM_RH_OWNER, COUNTER, &expected[512..], 512));
        fake.executed.clear();
        assert_eq!(tpm.nv_read(0, COUNTER, 0, 700), Ok(expected.clone()));
        assert_eq!(nv_reads(&mut tpm), [(512, 0), (188, 512)]);
        assert_eq!(tpm.nv_read_all(3, COUNTER), Ok(expected.clone()));
        // Written now, as the public area says.
        let public = tpm.tis().transact(0, &command::nv_read_public(COUNTER)).unwrap();
        let public = command::parse_nv_read_public(&public).unwrap();
        assert_eq!(public.attributes, COUNTER_ATTRIBUTES | command::TPMA_NV_WRITTEN);

        // A write at an offset, across the 512-byte boundary of the pieces.
        tpm.tis().mmio().executed.clear();
        let patch = vec![0xC3; 600];
        tpm.nv_write(1, COUNTER, 50, &patch).unwrap();
        assert_eq!(nv_writes(&mut tpm), [(512, 50), (88, 562)]);
        expected[50..650].copy_from_slice(&patch);
        assert_eq!(tpm.nv_read(0, COUNTER, 0, 700), Ok(expected.clone()));
        // Partial reads at an offset: within one piece, and across two.
        tpm.tis().mmio().executed.clear();
        assert_eq!(tpm.nv_read(0, COUNTER, 640, 20), Ok(expected[640..660].to_vec()));
        assert_eq!(tpm.nv_read(0, COUNTER, 100, 600), Ok(expected[100..].to_vec()));
        assert_eq!(nv_reads(&mut tpm), [(20, 640), (512, 100), (88, 612)]);

        // A counter's eight bytes, written in one piece (atomically) and read back.
        assert_eq!(tpm.nv_define(0, COUNTER + 1, COUNTER_ATTRIBUTES, 8), Ok(true));
        tpm.tis().mmio().executed.clear();
        tpm.nv_write(0, COUNTER + 1, 0, &42u64.to_be_bytes()).unwrap();
        assert_eq!(nv_writes(&mut tpm), [(8, 0)]);
        let value = tpm.nv_read(0, COUNTER + 1, 0, 8).unwrap();
        assert_eq!(u64::from_be_bytes(value.try_into().unwrap()), 42);

        // The last byte, and one past it.
        tpm.nv_write(0, COUNTER, 699, &[7]).unwrap();
        assert_eq!(tpm.nv_read(0, COUNTER, 699, 1), Ok(vec![7]));
        let range = Err(TpmError::Tpm(ResponseCode::NV_RANGE));
        assert_eq!(tpm.nv_write(0, COUNTER, 699, &[7, 8]), range);
        assert_eq!(tpm.nv_read(0, COUNTER, 699, 2), range.map(|()| Vec::new()));
        assert_eq!(tpm.nv_read(0, COUNTER, 0, 700).unwrap()[699], 7);

        let fake = tpm.tis().mmio();
        assert_eq!(fake.active, None);
        assert_eq!(fake.requests, fake.releases);
    }

    #[test]
    fn nv_write_and_read_errors() {
        // No such index: TPM_RC_HANDLE on the index's handle.
        let mut tpm = started();
        let handle = Err(TpmError::Tpm(ResponseCode(0x28B)));
        assert_eq!(tpm.nv_write(0, COUNTER, 0, &[1]), handle);
        assert_eq!(tpm.nv_read(0, COUNTER, 0, 1), handle.map(|()| Vec::new()));

        // Attributes without owner writes (the EK certificate's) or without owner reads.
        let mut tpm = self::tpm(Simulated::with_nv(EK_CERT_RSA_INDEX, certificate(100)), 0x1000);
        let authorization = Err(TpmError::Tpm(ResponseCode::NV_AUTHORIZATION));
        assert_eq!(tpm.nv_write(0, EK_CERT_RSA_INDEX, 0, &[1]), authorization);
        assert_eq!(tpm.nv_read(0, EK_CERT_RSA_INDEX, 0, 100), Ok(certificate(100)));
        let auth_read = command::TPMA_NV_OWNERWRITE | command::TPMA_NV_AUTHREAD;
        assert_eq!(tpm.nv_define(0, COUNTER, auth_read, 8), Ok(true));
        tpm.nv_write(0, COUNTER, 0, &[1; 8]).unwrap();
        assert_eq!(tpm.nv_read(0, COUNTER, 0, 8), authorization.map(|()| Vec::new()));

        // A TPM whose NV buffer is below 512 bytes refuses the first piece: nothing written.
        let mut simulated = Simulated::new();
        simulated.started = true;
        simulated.nv_buffer = 256;
        let mut tpm = self::tpm(simulated, 0x1000);
        assert_eq!(tpm.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 700), Ok(true));
        let data = certificate(700);
        assert_eq!(tpm.nv_write(0, COUNTER, 0, &data), Err(TpmError::Tpm(ResponseCode(0x1D5))));
        assert_eq!(nv_writes(&mut tpm), [(512, 0)]);
        assert_eq!(tpm.nv_write(0, COUNTER, 0, &data[..256]), Ok(()));

        // A piece shorter than asked.
        let mut simulated = Simulated::with_nv(COUNTER, certificate(700));
        simulated.nv_short = true;
        let mut tpm = self::tpm(simulated, 0x1000);
        assert_eq!(
            tpm.nv_read(0, COUNTER, 100, 10),
            Err(TpmError::Malformed("TPM2_NV_Read returned other than the bytes asked"))
        );

        // A write answered without its authorization area (canned: every command gets it).
        let bare = vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0];
        let mut tpm = Tpm::new(Fake::canned(0x1000, bare), 100);
        assert_eq!(
            tpm.nv_write(0, COUNTER, 0, &[1]),
            Err(TpmError::Malformed("response without the authorization area the command had"))
        );
        assert_eq!(
            tpm.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 8),
            Err(TpmError::Malformed("response without the authorization area the command had"))
        );
    }

    #[test]
    fn nv_arguments_are_checked_before_the_tpm() {
        let mut tpm = started();
        let beyond = Err(TpmError::Argument("NV range beyond 65535 bytes"));
        assert_eq!(tpm.nv_write(0, COUNTER, u16::MAX, &[1]), beyond);
        assert_eq!(tpm.nv_write(0, COUNTER, 1, &vec![0; 65_535]), beyond);
        assert_eq!(tpm.nv_write(0, COUNTER, 0, &vec![0; 65_536]), beyond);
        assert_eq!(tpm.nv_read(0, COUNTER, u16::MAX, 1), beyond.map(|()| Vec::new()));
        assert_eq!(tpm.nv_read(0, COUNTER, u16::MAX - 8191, 8192), beyond.map(|()| Vec::new()));
        assert_eq!(tpm.nv_read(0, COUNTER, 0, NV_READ_MAX + 1), Err(TpmError::TooLarge));
        // Nothing to write or read: nothing sent.
        assert_eq!(tpm.nv_write(0, COUNTER, u16::MAX, &[]), Ok(()));
        assert_eq!(tpm.nv_read(0, COUNTER, u16::MAX, 0), Ok(Vec::new()));
        assert_eq!(tpm.tis().mmio().accesses, 0);
        // The range may end exactly at 65535 bytes (then the TPM decides).
        assert_eq!(
            tpm.nv_read(0, COUNTER, u16::MAX - 1, 1),
            Err(TpmError::Tpm(ResponseCode(0x28B)))
        );
        assert_eq!(tpm.nv_write(5, COUNTER, 0, &[1]), Err(TpmError::Argument("locality above 4")));
    }

    /// An index for a PCR-bound secret, and the secret.
    const SECRET_INDEX: u32 = 0x0150_0030;
    const SECRET: [u8; 32] = [
        0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x21, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5, 0x96, 0x87, 0x78, 0x69, 0x5A, 0x4B, 0x3C, 0x2D,
        0x1E, 0x0F,
    ];

    /// The command codes the fake TPM executed, and forgets them.
    fn codes(tpm: &mut Tpm<Fake>) -> Vec<u32> {
        let fake = tpm.tis().mmio();
        let codes = fake
            .executed
            .iter()
            .map(|(_, c)| u32::from_be_bytes(c[6..10].try_into().unwrap()))
            .collect();
        fake.executed.clear();
        codes
    }

    /// Whether the simulated TPM has no session loaded under `0x0300_0000`: flushing it
    /// fails with TPM_RC_HANDLE.
    fn no_session(tpm: &mut Tpm<Fake>) -> bool {
        let response = tpm.tis().transact(0, &command::flush_context(0x0300_0000)).unwrap();
        let gone =
            command::parse_flush_context(&response) == Err(TpmError::Tpm(ResponseCode(0x1CB)));
        tpm.tis().mmio().executed.clear();
        gone
    }

    /// A caller nonce source replaces the session's TPM2_GetRandom; one that fails falls
    /// back to it.
    #[test]
    fn session_nonces_come_from_the_given_source() {
        fn fives(out: &mut [u8]) -> bool {
            out.fill(5);
            true
        }
        fn none(_: &mut [u8]) -> bool {
            false
        }
        for (fill, random) in [(fives as fn(&mut [u8]) -> bool, false), (none, true)] {
            let mut tpm = started().with_nonces(fill);
            assert_eq!(tpm.store_pcr_bound_secret(2, SECRET_INDEX, 17, &SECRET, false), Ok(()));
            codes(&mut tpm);
            assert_eq!(tpm.read_pcr_bound_secret(2, SECRET_INDEX, 17), Ok(SECRET));
            let executed: Vec<Vec<u8>> =
                tpm.tis().mmio().executed.iter().map(|(_, c)| c.clone()).collect();
            // (The simulated TPM's random bytes go on from where the write left them.)
            let fives = command::start_auth_session_policy(&[5; 16]);
            assert_eq!(executed.contains(&fives), !random);
            assert_eq!(executed.contains(&command::get_random(16)), random);
        }
    }

    #[test]
    fn pcr_bound_secret_round_trip() {
        let mut tpm = started();
        tpm.pcr_extend(2, 17, &[0x17; 32]).unwrap();
        let value = tpm.pcr_read(0, 17).unwrap();
        codes(&mut tpm);

        assert_eq!(tpm.store_pcr_bound_secret(2, SECRET_INDEX, 17, &SECRET, false), Ok(()));
        let fake = tpm.tis().mmio();
        let executed: Vec<Vec<u8>> = fake.executed.iter().map(|(_, c)| c.clone()).collect();
        assert!(fake.executed.iter().all(|(locality, _)| *locality == 2));
        let pcr_policy = command::policy_pcr_digest(&value, 17);
        let policy = command::policy_locality_digest(&pcr_policy, 2).unwrap();
        let nonce: Vec<u8> = (1..=16).collect(); // the simulated TPM's first random bytes
                                                 // Define (the owner's authorization), then write through a policy session: PCR 17,
                                                 // locality 2.
        assert_eq!(
            executed,
            [
                command::pcr_read_sha256(17),
                command::nv_define_space_with_policy(
                    SECRET_INDEX,
                    PCR_BOUND_SECRET_ATTRIBUTES,
                    32,
                    &policy
                ),
                command::get_random(16),
                command::start_auth_session_policy(&nonce),
                command::policy_pcr_sha256(0x0300_0000, 17),
                command::policy_locality(0x0300_0000, 2).unwrap(),
                command::nv_write_with_session(0x0300_0000, SECRET_INDEX, &SECRET, 0),
            ]
        );
        // POLICYWRITE, WRITEALL, POLICYREAD, NO_DA: no owner or authValue access.
        assert_eq!(PCR_BOUND_SECRET_ATTRIBUTES, 0x0208_1008);
        codes(&mut tpm);
        let public = tpm.tis().transact(0, &command::nv_read_public(SECRET_INDEX)).unwrap();
        let public = command::parse_nv_read_public(&public).unwrap();
        assert_eq!(public.attributes, PCR_BOUND_SECRET_ATTRIBUTES | command::TPMA_NV_WRITTEN);
        assert_eq!(public.data_size, 32);
        assert_eq!(public.auth_policy, Some(policy));
        codes(&mut tpm);
        assert!(no_session(&mut tpm));

        // Read back: GetRandom, StartAuthSession with its bytes, PolicyPCR, PolicyLocality,
        // NV_Read with the session, which the TPM flushes; no FlushContext.
        assert_eq!(tpm.read_pcr_bound_secret(2, SECRET_INDEX, 17), Ok(SECRET));
        let fake = tpm.tis().mmio();
        let executed: Vec<Vec<u8>> = fake.executed.iter().map(|(_, c)| c.clone()).collect();
        let nonce: Vec<u8> = (17..=32).collect();
        assert_eq!(
            executed,
            [
                command::get_random(16),
                command::start_auth_session_policy(&nonce),
                command::policy_pcr_sha256(0x0300_0000, 17),
                command::policy_locality(0x0300_0000, 2).unwrap(),
                command::nv_read_with_session(0x0300_0000, SECRET_INDEX, 32, 0),
            ]
        );
        codes(&mut tpm);
        assert!(no_session(&mut tpm));
        // A session of another locality does not satisfy the policy; the session is flushed.
        let error = tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17).unwrap_err();
        assert_eq!(error, TpmError::Tpm(ResponseCode::POLICY_FAIL));
        assert_eq!(codes(&mut tpm), [0x17B, 0x176, 0x17F, 0x16F, 0x14E, 0x165]);
        assert!(no_session(&mut tpm));

        // Neither the owner's password nor the policy of another PCR reads it, and the
        // owner cannot write it.
        assert_eq!(
            tpm.nv_read(0, SECRET_INDEX, 0, 32),
            Err(TpmError::Tpm(ResponseCode::NV_AUTHORIZATION))
        );
        assert_eq!(
            tpm.nv_write(0, SECRET_INDEX, 0, &[0; 32]),
            Err(TpmError::Tpm(ResponseCode::NV_AUTHORIZATION))
        );
        let error = tpm.read_pcr_bound_secret(2, SECRET_INDEX, 16).unwrap_err();
        assert_eq!(error, TpmError::Tpm(ResponseCode::POLICY_FAIL));
        assert_eq!(tpm.read_pcr_bound_secret(2, SECRET_INDEX, 17), Ok(SECRET));
        codes(&mut tpm);

        // Another secret under PCR 0, which holds zeros.
        let other = [0x42; 32];
        tpm.store_pcr_bound_secret(0, SECRET_INDEX + 1, 0, &other, false).unwrap();
        assert_eq!(tpm.read_pcr_bound_secret(0, SECRET_INDEX + 1, 0), Ok(other));
        assert_eq!(tpm.read_pcr_bound_secret(2, SECRET_INDEX, 17), Ok(SECRET));

        let fake = tpm.tis().mmio();
        assert_eq!(fake.active, None);
        assert_eq!(fake.requests, fake.releases);
    }

    #[test]
    fn pcr_bound_secret_after_the_pcr_changed() {
        let mut tpm = started();
        tpm.store_pcr_bound_secret(0, SECRET_INDEX, 17, &SECRET, false).unwrap();
        tpm.pcr_extend(2, 17, &[0x17; 32]).unwrap();
        codes(&mut tpm);

        let error = tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17).unwrap_err();
        assert_eq!(error, TpmError::Tpm(ResponseCode::POLICY_FAIL));
        assert!(matches!(error, TpmError::Tpm(rc) if rc.is_policy_failure()));
        assert_eq!(error.to_string(), "the TPM answered TPM_RC_POLICY_FAIL (0x99d) on session 1");
        // The session the TPM kept was flushed.
        let fake = tpm.tis().mmio();
        assert_eq!(fake.executed.last().unwrap().1, command::flush_context(0x0300_0000));
        assert_eq!(codes(&mut tpm), [0x17B, 0x176, 0x17F, 0x16F, 0x14E, 0x165]);
        assert!(no_session(&mut tpm));
        // Every later attempt fails the same way, and leaks no session.
        for _ in 0..5 {
            let error = tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17).unwrap_err();
            assert_eq!(error, TpmError::Tpm(ResponseCode::POLICY_FAIL));
        }
        assert!(no_session(&mut tpm));
    }

    #[test]
    fn pcr_bound_secret_errors() {
        // No such index: TPM_RC_HANDLE on the NV_Read, the session flushed.
        let mut tpm = started();
        let error = tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17).unwrap_err();
        assert_eq!(error, TpmError::Tpm(ResponseCode(0x18B)));
        assert_eq!(codes(&mut tpm), [0x17B, 0x176, 0x17F, 0x16F, 0x14E, 0x165]);
        assert!(no_session(&mut tpm));

        // Already defined: refused, nothing written, the old contents kept.
        tpm.store_pcr_bound_secret(0, SECRET_INDEX, 17, &SECRET, false).unwrap();
        codes(&mut tpm);
        assert_eq!(
            tpm.store_pcr_bound_secret(0, SECRET_INDEX, 17, &[0; 32], false),
            Err(TpmError::Tpm(ResponseCode::NV_DEFINED))
        );
        assert_eq!(codes(&mut tpm), [0x17E, 0x12A]);
        assert_eq!(tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17), Ok(SECRET));

        // An index that is not a secret's: owner-readable only, or too small.
        tpm.nv_define(0, COUNTER, COUNTER_ATTRIBUTES, 32).unwrap();
        tpm.nv_write(0, COUNTER, 0, &SECRET).unwrap();
        codes(&mut tpm);
        assert_eq!(
            tpm.read_pcr_bound_secret(0, COUNTER, 17),
            Err(TpmError::Tpm(ResponseCode::NV_AUTHORIZATION))
        );
        assert_eq!(codes(&mut tpm), [0x17B, 0x176, 0x17F, 0x16F, 0x14E, 0x165]);
        let policy = command::policy_pcr_digest(&[0; 32], 17);
        let policy = command::policy_locality_digest(&policy, 0).unwrap();
        let owner_written =
            command::TPMA_NV_OWNERWRITE | command::TPMA_NV_POLICYREAD | command::TPMA_NV_NO_DA;
        let small =
            command::nv_define_space_with_policy(SECRET_INDEX + 1, owner_written, 16, &policy);
        command::parse_nv_define_space(&tpm.tis().transact(0, &small).unwrap()).unwrap();
        tpm.nv_write(0, SECRET_INDEX + 1, 0, &[1; 16]).unwrap();
        assert_eq!(
            tpm.read_pcr_bound_secret(0, SECRET_INDEX + 1, 17),
            Err(TpmError::Tpm(ResponseCode::NV_RANGE))
        );
        assert!(no_session(&mut tpm));

        // PolicyPCR refused: the session flushed.
        let mut simulated = Simulated::new();
        simulated.started = true;
        simulated.policy_pcr_rc = Some(0x1C4);
        let mut tpm = self::tpm(simulated, 0x1000);
        assert_eq!(
            tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17),
            Err(TpmError::Tpm(ResponseCode(0x1C4)))
        );
        assert_eq!(codes(&mut tpm), [0x17B, 0x176, 0x17F, 0x165]);
        assert!(no_session(&mut tpm));

        // A read shorter than asked: Malformed (the TPM flushed the session with the
        // command).
        let mut simulated = Simulated::new();
        simulated.started = true;
        simulated.nv_short = true;
        let mut tpm = self::tpm(simulated, 0x1000);
        tpm.store_pcr_bound_secret(0, SECRET_INDEX, 17, &SECRET, false).unwrap();
        codes(&mut tpm);
        assert_eq!(
            tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17),
            Err(TpmError::Malformed("TPM2_NV_Read returned other than the bytes asked"))
        );
        assert_eq!(codes(&mut tpm), [0x17B, 0x176, 0x17F, 0x16F, 0x14E]);
        assert!(no_session(&mut tpm));

        // Refused before the TPM: a PCR above 23, a locality above 4.
        let mut tpm = started();
        let refused = Err(TpmError::Argument("PCR index above 23"));
        assert_eq!(tpm.read_pcr_bound_secret(0, SECRET_INDEX, 24), refused);
        assert_eq!(
            tpm.store_pcr_bound_secret(0, SECRET_INDEX, 24, &SECRET, false),
            refused.map(|_| ())
        );
        let locality = Err(TpmError::Argument("locality above 4"));
        assert_eq!(tpm.read_pcr_bound_secret(5, SECRET_INDEX, 17), locality);
        assert_eq!(
            tpm.store_pcr_bound_secret(5, SECRET_INDEX, 17, &SECRET, false),
            locality.map(|_| ())
        );
        assert_eq!(tpm.tis().mmio().accesses, 0);

        // Before Startup: TPM_RC_INITIALIZE from GetRandom, no session started.
        let mut tpm = self::tpm(Simulated::new(), 0x1000);
        assert_eq!(
            tpm.read_pcr_bound_secret(0, SECRET_INDEX, 17),
            Err(TpmError::Tpm(ResponseCode::INITIALIZE))
        );
        assert_eq!(codes(&mut tpm), [0x17B]);
    }

    #[test]
    fn bound_secret_indices_are_told_apart() {
        let mut tpm = started();
        tpm.pcr_extend(2, 17, &[0x17; 32]).unwrap();
        assert_eq!(tpm.bound_secret_index(2, SECRET_INDEX, 17), Ok(BoundIndex::Absent));
        // Defined as the hypervisor defines it, not yet written; then written.
        let policy = tpm.bound_policy(2, 17).unwrap();
        let define = command::nv_define_space_with_policy(
            SECRET_INDEX,
            PCR_BOUND_SECRET_ATTRIBUTES,
            32,
            &policy,
        );
        command::parse_nv_define_space(&tpm.tis().transact(0, &define).unwrap()).unwrap();
        let unwritten = BoundIndex::Bound { written: false };
        assert_eq!(tpm.bound_secret_index(2, SECRET_INDEX, 17), Ok(unwritten));
        tpm.store_pcr_bound_secret(2, SECRET_INDEX, 17, &SECRET, true).unwrap();
        let written = BoundIndex::Bound { written: true };
        assert_eq!(tpm.bound_secret_index(2, SECRET_INDEX, 17), Ok(written));
        assert_eq!(tpm.read_pcr_bound_secret(2, SECRET_INDEX, 17), Ok(SECRET));
        // The same index for another locality, or after PCR 17 changed: foreign.
        assert!(matches!(tpm.bound_secret_index(0, SECRET_INDEX, 17), Ok(BoundIndex::Foreign(_))));
        // An index with the same policy that the owner may write (what an owner who
        // replaced the index would define, to feed the hypervisor a known secret): foreign.
        let owner_written = PCR_BOUND_SECRET_ATTRIBUTES | command::TPMA_NV_OWNERWRITE;
        let define =
            command::nv_define_space_with_policy(SECRET_INDEX + 1, owner_written, 32, &policy);
        command::parse_nv_define_space(&tpm.tis().transact(0, &define).unwrap()).unwrap();
        tpm.nv_write(0, SECRET_INDEX + 1, 0, &[0; 32]).unwrap();
        match tpm.bound_secret_index(2, SECRET_INDEX + 1, 17) {
            Ok(BoundIndex::Foreign(public)) => {
                assert_eq!(public.attributes, owner_written | command::TPMA_NV_WRITTEN);
                assert_eq!(public.auth_policy, Some(policy));
            }
            other => panic!("{other:?}"),
        }
        // Of another size: foreign.
        let define = command::nv_define_space_with_policy(
            SECRET_INDEX + 2,
            PCR_BOUND_SECRET_ATTRIBUTES,
            16,
            &policy,
        );
        command::parse_nv_define_space(&tpm.tis().transact(0, &define).unwrap()).unwrap();
        assert!(matches!(
            tpm.bound_secret_index(2, SECRET_INDEX + 2, 17),
            Ok(BoundIndex::Foreign(_))
        ));
        tpm.pcr_extend(2, 17, &[0x18; 32]).unwrap();
        assert!(matches!(tpm.bound_secret_index(2, SECRET_INDEX, 17), Ok(BoundIndex::Foreign(_))));
        assert!(no_session(&mut tpm));
    }

    #[test]
    fn pcr_arguments_are_checked_before_the_tpm() {
        let mut tpm = tpm(Simulated::new(), 0x1000);
        let refused = Err(TpmError::Argument("PCR index above 23"));
        assert_eq!(tpm.pcr_read(0, 24), refused);
        assert_eq!(tpm.pcr_extend(0, 24, &[0; 32]), refused.map(|_: [u8; 32]| ()));
        assert_eq!(tpm.pcr_read(0, u32::MAX), refused);
        assert_eq!(tpm.pcr_read(5, 0), Err(TpmError::Argument("locality above 4")));
        assert_eq!(tpm.tis().mmio().accesses, 0);
    }

    #[test]
    fn errors_of_the_tpm_come_through() {
        // TPM_RC_LOCALITY from a TPM refusing PCR 17 at locality 0.
        let response = vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x09, 0x07];
        let mut tpm = Tpm::new(Fake::canned(8, response), 100);
        let error = tpm.pcr_extend(0, 17, &[0; 32]).unwrap_err();
        assert_eq!(error, TpmError::Tpm(ResponseCode::LOCALITY));
        assert_eq!(error.to_string(), "the TPM answered TPM_RC_LOCALITY (0x907)");
        // A startup failing otherwise than with TPM_RC_INITIALIZE.
        let response = vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x01, 0x01];
        let mut tpm = Tpm::new(Fake::canned(8, response), 100);
        assert_eq!(tpm.startup(0), Err(TpmError::Tpm(ResponseCode::FAILURE)));
        // No TPM at all.
        let mut fake = Fake::canned(8, Vec::new());
        fake.did_vid = 0;
        assert_eq!(Tpm::new(fake, 100).probe(), Err(TpmError::NoTpm));
    }

    #[test]
    fn error_display() {
        let cases = [
            (TpmError::NoTpm, "no TPM (TPM_DID_VID reads all zeros or all ones)"),
            (TpmError::Expect, "the TPM expected more bytes after the last byte of the command"),
            (
                TpmError::TooLarge,
                "command or response larger than 4096 bytes, or NV index larger than 8 KiB",
            ),
            (TpmError::Malformed("x"), "TPM protocol violation: x"),
            (TpmError::Argument("y"), "refused before reaching the TPM: y"),
            (TpmError::Timeout("z"), "timed out waiting for the TPM: z"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    /// The order n of the P-256 group, big-endian.
    const P256_ORDER: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63,
        0x25, 0x51,
    ];

    /// n - `s`, big-endian: the other valid `s` of an ECDSA signature.
    fn negated(s: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(d < 0);
            out[i] = u8::try_from(d.rem_euclid(256)).unwrap();
        }
        out
    }

    #[test]
    fn quote_verifies_a_signed_attestation() {
        let key = KeyPair::from_secret(&[0x42; 32]).unwrap();
        let public = key.public();
        let (x, y): ([u8; 32], [u8; 32]) =
            (public[1..33].try_into().unwrap(), public[33..].try_into().unwrap());
        // A TPMS_ATTEST of a quote of PCR 17, by hand.
        let mut attest = vec![0xFF, 0x54, 0x43, 0x47, 0x80, 0x18, 0, 34, 0x00, 0x0B];
        attest.extend_from_slice(&[0x55; 32]);
        attest.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
        attest.extend_from_slice(&[0; 17]);
        attest.extend_from_slice(&[0; 8]);
        attest.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x0B, 3, 0, 0, 0x02, 0, 32]);
        attest.extend_from_slice(&[0x66; 32]);
        let info = command::parse_tpms_attest_quote(&attest).unwrap();
        assert_eq!(info.extra_data, [1, 2, 3, 4]);
        assert_eq!((info.pcr_select, info.pcr_digest), ([0, 0, 0x02], [0x66; 32]));

        let signature = key.sign(&attest);
        let quote = command::Quote {
            attest: attest.clone(),
            r: signature[..32].try_into().unwrap(),
            s: signature[32..].try_into().unwrap(),
        };
        assert!(quote_verifies(&x, &y, &quote));
        // Both values of s verify (a TPM does not normalize it).
        let mut other_s = quote.clone();
        other_s.s = negated(&quote.s);
        assert_ne!(other_s.s, quote.s);
        assert!(quote_verifies(&x, &y, &other_s));
        // Any one bit changed anywhere is refused.
        for bit in 0..attest.len() * 8 {
            let mut changed = quote.clone();
            changed.attest[bit / 8] ^= 1 << (bit % 8);
            assert!(!quote_verifies(&x, &y, &changed), "attest bit {bit}");
        }
        for bit in 0..256 {
            let mut changed = quote.clone();
            changed.r[bit / 8] ^= 1 << (bit % 8);
            assert!(!quote_verifies(&x, &y, &changed), "r bit {bit}");
            let mut changed = quote.clone();
            changed.s[bit / 8] ^= 1 << (bit % 8);
            assert!(!quote_verifies(&x, &y, &changed), "s bit {bit}");
            let mut bad_x = x;
            bad_x[bit / 8] ^= 1 << (bit % 8);
            assert!(!quote_verifies(&bad_x, &y, &quote), "x bit {bit}");
        }
        // Another key, a zero signature, a point not on the curve.
        let other = KeyPair::from_secret(&[0x43; 32]).unwrap().public();
        let (ox, oy) = (other[1..33].try_into().unwrap(), other[33..].try_into().unwrap());
        assert!(!quote_verifies(&ox, &oy, &quote));
        let zero = command::Quote { attest, r: [0; 32], s: [0; 32] };
        assert!(!quote_verifies(&x, &y, &zero));
        assert!(!quote_verifies(&[0; 32], &[0; 32], &quote));
    }

    #[test]
    fn attestation_key_and_quote_against_simulated_tpm() {
        let mut tpm = started();
        tpm.pcr_extend(0, 0, &[0x10; 32]).unwrap();
        tpm.pcr_extend(2, 17, &[0x17; 32]).unwrap();
        let (pcr0, pcr17) = (tpm.pcr_read(0, 0).unwrap(), tpm.pcr_read(0, 17).unwrap());
        codes(&mut tpm);

        let (handle, x, y) = tpm.create_attestation_key(0).unwrap();
        assert_eq!(handle, 0x8000_0000);
        let public = attestation_key().public();
        assert_eq!((&x[..], &y[..]), (&public[1..33], &public[33..]));
        let fake = tpm.tis().mmio();
        assert_eq!(
            fake.executed[0].1,
            command::create_primary_ecc_signing_key(command::TPM_RH_ENDORSEMENT)
        );
        codes(&mut tpm);

        let nonce = [0xC0; 32];
        let quote = tpm.quote(2, handle, &nonce, &[17, 0]).unwrap();
        assert_eq!(
            tpm.tis().mmio().executed[0],
            (2, command::quote_sha256(handle, &nonce, &[0, 17]))
        );
        assert!(quote_verifies(&x, &y, &quote));
        let info = command::parse_tpms_attest_quote(&quote.attest).unwrap();
        assert_eq!(info.extra_data, nonce);
        assert_eq!(info.pcr_select, [0x01, 0x00, 0x02]);
        let mut values = pcr0.to_vec();
        values.extend_from_slice(&pcr17);
        assert_eq!(info.pcr_digest, vpr_proto::Digest::of(&values).0);
        // The same key again (deterministic), under another handle while the first is loaded.
        let (second, x2, y2) = tpm.create_attestation_key(0).unwrap();
        assert_eq!((second, x2, y2), (0x8000_0001, x, y));
        // After an extend the quote changes, and still verifies.
        tpm.pcr_extend(0, 0, &[0x11; 32]).unwrap();
        let later = tpm.quote(0, second, &[], &[0, 17]).unwrap();
        assert!(quote_verifies(&x, &y, &later));
        let later_info = command::parse_tpms_attest_quote(&later.attest).unwrap();
        assert!(later_info.extra_data.is_empty());
        assert_ne!(later_info.pcr_digest, info.pcr_digest);
        // Flushed: the handle is gone.
        assert_eq!(tpm.flush(0, handle), Ok(()));
        assert_eq!(tpm.flush(0, handle), Err(TpmError::Tpm(ResponseCode(0x1CB))));
        assert_eq!(tpm.quote(0, handle, &nonce, &[0]), Err(TpmError::Tpm(ResponseCode(0x18B))));
        assert_eq!(tpm.flush(0, second), Ok(()));
        codes(&mut tpm);

        // Refused before the TPM: a PCR above 23, qualifying data above 64 bytes, a locality.
        let refused = Err(TpmError::Argument("PCR index above 23"));
        assert_eq!(tpm.quote(0, handle, &nonce, &[0, 24]), refused);
        assert_eq!(
            tpm.quote(0, handle, &[0; 65], &[0]),
            Err(TpmError::Argument("qualifying data longer than 64 bytes"))
        );
        assert_eq!(tpm.create_attestation_key(5), Err(TpmError::Argument("locality above 4")));
        assert!(tpm.tis().mmio().executed.is_empty());
        // The TPM's errors come through: out of object memory, before Startup.
        for _ in 0..3 {
            tpm.create_attestation_key(0).unwrap();
        }
        assert_eq!(tpm.create_attestation_key(0), Err(TpmError::Tpm(ResponseCode(0x902))));
        let mut fresh = self::tpm(Simulated::new(), 0x1000);
        assert_eq!(fresh.create_attestation_key(0), Err(TpmError::Tpm(ResponseCode::INITIALIZE)));
        let fake = tpm.tis().mmio();
        assert_eq!(fake.active, None);
        assert_eq!(fake.requests, fake.releases);
    }
}
