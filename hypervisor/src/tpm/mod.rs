//! The TPM 2.0 driver: the FIFO ("TIS") transport and the few commands the hypervisor sends,
//! as plain logic over a register-access trait so that all of it runs in host unit tests.
//!
//! - [`tis`]: the FIFO interface of the TCG PC Client Platform TPM Profile specification —
//!   register offsets and bits, and [`Tis`], which probes for a TPM and runs one command
//!   through the FIFO of a locality ([`Tis::transact`]) over any [`Mmio`] implementation;
//! - [`command`]: marshalling of TPM2_Startup, TPM2_GetRandom, TPM2_PCR_Extend,
//!   TPM2_PCR_Read, TPM2_NV_ReadPublic and TPM2_NV_Read, and parsing of their responses and
//!   of response codes ([`ResponseCode`]);
//! - [`Tpm`]: the two together, one method per command (and [`Tpm::nv_read_all`], which
//!   reads a whole NV index such as the EK certificate's, [`EK_CERT_RSA_INDEX`]), and
//!   [`extended`], the value a SHA-256 PCR takes when a digest is extended into it.
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
//! - sessions other than the empty password session (`TPM_RS_PW`): no HMAC or policy
//!   sessions, hence no parameter encryption and no protection against an interposer on the
//!   bus; commands needing other authorizations cannot be sent;
//! - interrupts (it polls), the CRB interface, TPM 1.2, command cancellation and
//!   `responseRetry`;
//! - retrying commands the TPM answers with a warning such as `TPM_RC_RETRY` or
//!   `TPM_RC_TESTING` ([`ResponseCode::is_warning`]): that is left to the caller.
//!
//! Specifications cited: TCG PC Client Platform TPM Profile Specification for TPM 2.0
//! ("PTP"), §6 (the FIFO interface's register space and protocol); Trusted Platform Module
//! Library, Family 2.0, Part 1 (Architecture), Part 2 (Structures) and Part 3 (Commands).

pub mod command;
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
    /// [`tis::MAX_RESPONSE`] (4096 bytes), or an NV index to read is larger than
    /// [`NV_READ_MAX`] (8 KiB).
    TooLarge,
    /// The caller asked for something the driver refuses before touching the TPM: a
    /// locality above 4, a PCR above 23, a command whose header is inconsistent (carried:
    /// what).
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

/// How many random bytes [`Tpm::get_random`] asks for per TPM2_GetRandom: a SHA-256 digest,
/// the most every PC Client TPM returns at once (Part 3 §16.1 caps a request at the
/// largest digest the TPM implements).
const RANDOM_CHUNK: usize = 32;

/// The NV index of the RSA-2048 endorsement key's certificate (DER), as the TCG EK
/// Credential Profile places it and swtpm_setup writes (and locks) it at manufacturing.
pub const EK_CERT_RSA_INDEX: u32 = 0x01C0_0002;

/// The largest NV index [`Tpm::nv_read_all`] reads: 8 KiB, well above an EK certificate
/// (about 1 KB for RSA-2048) or any chain of them a TPM stores in one index.
pub const NV_READ_MAX: u16 = 8192;

/// How many bytes [`Tpm::nv_read_all`] asks for per TPM2_NV_Read: the smallest
/// `MAX_NV_BUFFER_SIZE` (the size of `TPM2B_MAX_NV_BUFFER`) of any TPM — PTP requires at
/// least 512.
const NV_CHUNK: u16 = 512;

/// A TPM 2.0 behind the FIFO interface: one method per command, each a full exchange at the
/// given locality (0 to 4; requested and released around every command).
#[derive(Debug)]
pub struct Tpm<M: Mmio> {
    tis: Tis<M>,
}

impl<M: Mmio> Tpm<M> {
    /// The TPM whose registers `mmio` reaches; every wait polls at most `max_polls` times
    /// (see [`Tis::new`]).
    pub fn new(mmio: M, max_polls: u32) -> Self {
        Tpm { tis: Tis::new(mmio, max_polls) }
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
        let size = public.data_size;
        if size > NV_READ_MAX {
            return Err(TpmError::TooLarge);
        }
        let mut out = Vec::with_capacity(usize::from(size));
        let mut offset: u16 = 0;
        while offset < size {
            let want = (size - offset).min(NV_CHUNK);
            let command = command::nv_read(command::TPM_RH_OWNER, index, want, offset);
            let response = self.tis.transact(locality, &command)?;
            let chunk = command::parse_nv_read(&response)?;
            if chunk.len() != usize::from(want) {
                return Err(TpmError::Malformed(
                    "TPM2_NV_Read returned other than the bytes asked",
                ));
            }
            out.extend_from_slice(&chunk);
            offset += want;
        }
        Ok(out)
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

/// The value of a SHA-256 PCR holding `old` after `digest` is extended into it:
/// SHA-256(`old` || `digest`) (Part 1, "PCR Extend").
pub fn extended(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    vpr_proto::crypto::hash(&[old, digest]).0
}

#[cfg(test)]
mod tests {
    use super::tis::fake::Fake;
    use super::*;
    use alloc::vec;

    /// A TPM 2.0 simulated at the command level, written from Part 3 independently of the
    /// driver's parsers: Startup, GetRandom, PCR_Extend and PCR_Read of a SHA-256 bank,
    /// NV_ReadPublic and NV_Read (owner-authorized) of ordinary NV indices.
    struct Simulated {
        started: bool,
        pcrs: [[u8; 32]; 24],
        counter: u32,
        random: u8,
        /// Most bytes one GetRandom returns.
        random_cap: usize,
        /// NV indices: handle and data.
        nv: Vec<(u32, Vec<u8>)>,
        /// Most bytes one NV_Read may ask for (`MAX_NV_BUFFER_SIZE`).
        nv_buffer: usize,
        /// Knob: NV_Read returns one byte fewer than asked.
        nv_short: bool,
        /// Knob: NV_ReadPublic answers with the public area of this index instead.
        nv_other: Option<u32>,
    }

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
        fn new() -> Self {
            Simulated {
                started: false,
                pcrs: [[0; 32]; 24],
                counter: 0,
                random: 0,
                random_cap: 32,
                nv: Vec::new(),
                nv_buffer: 1024,
                nv_short: false,
                nv_other: None,
            }
        }

        /// A started TPM holding NV index `index` with `data`.
        fn with_nv(index: u32, data: Vec<u8>) -> Self {
            let mut simulated = Simulated::new();
            simulated.started = true;
            simulated.nv.push((index, data));
            simulated
        }

        fn execute(&mut self, c: &[u8]) -> Vec<u8> {
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
                    let Some((_, data)) = self.nv.iter().find(|(i, _)| *i == index) else {
                        return reply(0x8001, 0x18B, &[]); // TPM_RC_HANDLE on handle 1
                    };
                    // TPMS_NV_PUBLIC: nvIndex, nameAlg, attributes, empty authPolicy, dataSize.
                    let mut public = self.nv_other.unwrap_or(index).to_be_bytes().to_vec();
                    public.extend_from_slice(&[0x00, 0x0B]);
                    public.extend_from_slice(&EK_CERT_ATTRIBUTES.to_be_bytes());
                    public.extend_from_slice(&[0, 0]);
                    public.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
                    let mut body = u16::try_from(public.len()).unwrap().to_be_bytes().to_vec();
                    body.extend_from_slice(&public);
                    // nvName: nameAlg || SHA-256(TPMS_NV_PUBLIC).
                    body.extend_from_slice(&[0, 34, 0x00, 0x0B]);
                    body.extend_from_slice(&vpr_proto::Digest::of(&public).0);
                    reply(0x8001, 0, &body)
                }
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
                    let Some((_, data)) = self.nv.iter().find(|(i, _)| *i == index) else {
                        return reply(0x8001, 0x28B, &[]); // TPM_RC_HANDLE on handle 2
                    };
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
                _ => reply(0x8001, 0x143, &[]),
            }
        }
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
}
