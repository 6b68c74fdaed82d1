//! The machine's TPM: the TIS register window reached with volatile MMIO (`vpr_hypervisor::tpm`
//! does the rest), and the measured launch at boot.
//!
//! QEMU has no SKINIT, so there is no real late launch: at boot the hypervisor extends PCR 17
//! itself, from locality 2, with the SHA-256 of its code and read-only data (the measurement
//! the boot log prints). PCR 17 starts at all ones and only localities 2-4 may extend it, so
//! after boot it holds exactly SHA-256(ones || measurement) unless a guest could reach
//! locality 2 — which it cannot: the TIS window is not in any guest's nested page table. The
//! evidence is that of a simulated late launch: its PCR values differ from those a real
//! SKINIT launch would give. Every PAL the hypervisor registers is measured into PCR 18 the
//! same way, so PCRs 17 and 18 together say which hypervisor ran which PALs.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use vpr_hypervisor::tpm::counters::{Binding, CounterError, Counters};
use vpr_hypervisor::tpm::tis::{Mmio, LOCALITY_STRIDE, TIS_BASE};
use vpr_hypervisor::tpm::{
    command, Admission, BoundIndex, PalLog, Tpm, TpmError, EK_CERT_RSA_INDEX,
    PCR_BOUND_SECRET_ATTRIBUTES,
};
use vpr_proto::hypercall::Status;
use vpr_proto::utpm::{Quote, TpmEvidenceParts};
use vpr_proto::Digest;

/// The locality the hypervisor measures itself from (the dynamic-launch localities are 2-4;
/// QEMU drops writes at 4).
pub const LAUNCH_LOCALITY: u8 = 2;
/// The PCR of the (simulated) dynamic launch.
pub const LAUNCH_PCR: u32 = 17;
/// The PCR every registered PAL's identity is extended into, from [`LAUNCH_LOCALITY`] (a
/// dynamic-launch PCR: software below locality 2 cannot extend it).
pub const PAL_PCR: u32 = 18;
/// The PCR the hypervisor's TCC key is bound into (its SHA-256, from [`LAUNCH_LOCALITY`]),
/// once per boot when the key is made.
pub const KEY_PCR: u32 = 19;
/// Register polls before a TIS wait gives up (each an MMIO read: a QEMU exit, a few µs under
/// TCG). Generous: creating the RSA endorsement key from its seed (for a credential
/// activation) takes a software TPM seconds, more when several share a loaded host.
const MAX_POLLS: u32 = 50_000_000;

/// The TIS window: five localities of 4 KiB at 0xFED4_0000 (PTP §6.5.2), identity-mapped by
/// `boot.rs` (the first 4 GiB).
#[derive(Debug)]
pub struct TisWindow;

impl TisWindow {
    /// The address of `offset` in `locality`'s page, if both are in the window.
    fn address(locality: u8, offset: u16) -> Option<usize> {
        (locality < 5 && u64::from(offset) < LOCALITY_STRIDE).then(|| {
            crate::mem::usize_of(
                TIS_BASE + u64::from(locality) * LOCALITY_STRIDE + u64::from(offset),
            )
        })
    }
}

impl Mmio for TisWindow {
    fn read8(&mut self, locality: u8, offset: u16) -> u8 {
        match TisWindow::address(locality, offset) {
            // SAFETY: the address is in the TIS window (checked), which boot.rs maps and
            // nothing else uses; a device register read has no effect on memory.
            Some(at) => unsafe { core::ptr::read_volatile(at as *const u8) },
            None => 0xFF,
        }
    }

    fn read32(&mut self, locality: u8, offset: u16) -> u32 {
        match TisWindow::address(locality, offset).filter(|at| at % 4 == 0) {
            // SAFETY: as in `read8`; the address is 4-byte aligned (checked).
            Some(at) => unsafe { core::ptr::read_volatile(at as *const u32) },
            None => u32::MAX,
        }
    }

    fn write8(&mut self, locality: u8, offset: u16, value: u8) {
        if let Some(at) = TisWindow::address(locality, offset) {
            // SAFETY: the address is in the TIS window (checked); writing a TIS register
            // talks to the TPM and touches no memory.
            unsafe { core::ptr::write_volatile(at as *mut u8, value) };
        }
    }

    fn write32(&mut self, locality: u8, offset: u16, value: u32) {
        if let Some(at) = TisWindow::address(locality, offset).filter(|at| at % 4 == 0) {
            // SAFETY: as in `write8`; the address is 4-byte aligned (checked).
            unsafe { core::ptr::write_volatile(at as *mut u32, value) };
        }
    }
}

/// The machine's TPM.
pub type MachineTpm = Tpm<TisWindow>;

/// Finds the TPM, starts it (TPM2_Startup(CLEAR): nothing before us did) and extends PCR 17
/// with `measurement` from locality 2. `Ok(None)` if the machine has no TPM.
pub fn launch(measurement: &[u8; 32]) -> Result<Option<MachineTpm>, TpmError> {
    // Policy sessions' caller nonces from RDRAND: one TPM command less per counter increment.
    let mut tpm = Tpm::new(TisWindow, MAX_POLLS).with_nonces(|out| crate::cpu::random(out).is_ok());
    let info = match tpm.probe() {
        Ok(info) => info,
        Err(TpmError::NoTpm) => return Ok(None),
        Err(e) => return Err(e),
    };
    log::info!(
        "hv: TPM {} vendor {:#06x} device {:#06x} revision {}",
        if info.tpm2 { "2.0" } else { "1.2" },
        info.vendor,
        info.device,
        info.revision
    );
    let fresh = tpm.startup(0)?;
    tpm.pcr_extend(LAUNCH_LOCALITY, LAUNCH_PCR, measurement)?;
    let pcr17 = tpm.pcr_read(0, LAUNCH_PCR)?;
    log::info!(
        "hv: simulated late launch: PCR 17 extended from locality {LAUNCH_LOCALITY} (TPM {}), now {}",
        if fresh { "started" } else { "already started" },
        vpr_proto::Digest(pcr17)
    );
    // The manufacturer's certificate of the TPM's endorsement key: the root of the evidence
    // chain a verifier checks (a TPM without one was not provisioned by a manufacturer).
    match tpm.nv_read_all(0, EK_CERT_RSA_INDEX) {
        Ok(cert) => log::info!(
            "hv: TPM EK certificate (RSA, NV {EK_CERT_RSA_INDEX:#x}): {} bytes, sha256={}",
            cert.len(),
            vpr_proto::Digest::of(&cert)
        ),
        Err(e) => log::warn!("hv: TPM EK certificate (RSA, NV {EK_CERT_RSA_INDEX:#x}): {e}"),
    }
    Ok(Some(tpm))
}

/// Why a PAL was not measured.
#[derive(Debug)]
pub enum MeasureError {
    /// The TPM failed.
    Tpm(TpmError),
    /// [`PalLog::MAX`] distinct identities were measured this boot already.
    LogFull,
}

impl core::fmt::Display for MeasureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MeasureError::Tpm(e) => write!(f, "{e}"),
            MeasureError::LogFull => {
                write!(f, "{} distinct PALs measured this boot already", PalLog::MAX)
            }
        }
    }
}

/// Extends PCR 18 with a PAL's identity unless `log` (the identities of this boot) has it
/// already, and records it there.
pub fn measure_pal(
    tpm: &mut MachineTpm,
    log: &mut PalLog,
    identity: &[u8; 32],
) -> Result<(), MeasureError> {
    match log.admit(identity) {
        Admission::Known => Ok(()),
        Admission::Full => Err(MeasureError::LogFull),
        Admission::New => {
            tpm.pcr_extend(LAUNCH_LOCALITY, PAL_PCR, identity).map_err(MeasureError::Tpm)?;
            log.record(*identity);
            Ok(())
        }
    }
}

/// The TPM half of the evidence over `nonce` (the `evidence` hypercall): the attestation
/// key's public area, its quote of PCRs 17 (the launch), 18 (the PALs) and 19 (the TCC key)
/// over `nonce`, those PCRs, PCR 18's log `pal_log`, the TCC key `tcc_key` and the EK
/// certificate. `Unavailable` when the TPM fails (logged).
pub fn evidence(
    tpm: &mut MachineTpm,
    pal_log: &[[u8; 32]],
    nonce: &[u8; 32],
    tcc_key: &[u8; 65],
) -> Result<TpmEvidenceParts, Status> {
    let fail = |e: TpmError| {
        log::error!("hv: evidence: TPM: {e}");
        Status::Unavailable
    };
    let (ak, x, y) = tpm.create_attestation_key(0).map_err(fail)?;
    let quote = tpm.quote(0, ak, nonce, &[LAUNCH_PCR, PAL_PCR, KEY_PCR]);
    let _ = tpm.flush(0, ak);
    let quote = quote.map_err(fail)?;
    let mut signature = [0; 64];
    signature[..32].copy_from_slice(&quote.r);
    signature[32..].copy_from_slice(&quote.s);
    let mut pcrs = [[0; 32]; 3];
    for (value, pcr) in pcrs.iter_mut().zip([LAUNCH_PCR, PAL_PCR, KEY_PCR]) {
        *value = tpm.pcr_read(0, pcr).map_err(fail)?;
    }
    let ek_certificate = tpm.nv_read_all(0, EK_CERT_RSA_INDEX).map_err(fail)?;
    Ok(TpmEvidenceParts {
        ak_public: command::attestation_key_public(&x, &y),
        quote: Quote { attest: quote.attest, signature }.to_bytes(),
        pcrs,
        pal_log: pal_log.to_vec(),
        tcc_key: *tcc_key,
        ek_certificate,
    })
}

/// TPM2_ActivateCredential of a verifier's `credential` (`TPM2B_ID_OBJECT` then
/// `TPM2B_ENCRYPTED_SECRET`) with the endorsement key and the attestation key (the
/// `activate` hypercall): the secret. `Refused` for a credential the TPM does not open (made
/// for another TPM or key: TPM_RC_INTEGRITY) or that is not two TPM2Bs; `Unavailable` when
/// the TPM fails otherwise.
pub fn activate(tpm: &mut MachineTpm, credential: &[u8]) -> Result<Vec<u8>, Status> {
    let split = credential
        .get(..2)
        .map(|n| 2 + usize::from(u16::from_be_bytes([n[0], n[1]])))
        .filter(|&at| at < credential.len())
        .ok_or(Status::Refused)?;
    let (blob, secret) = credential.split_at(split);
    let fail = |e: TpmError| match e {
        TpmError::Tpm(rc) if rc.0 & 0x3F == 0x1F => Status::Refused, // TPM_RC_INTEGRITY
        e => {
            log::error!("hv: credential activation: TPM: {e}");
            Status::Unavailable
        }
    };
    let (ek, _) = tpm.create_endorsement_key(0).map_err(fail)?;
    let result = tpm.create_attestation_key(0).and_then(|(ak, _, _)| {
        let activated = tpm.activate_credential(0, ak, ek, blob, secret);
        let _ = tpm.flush(0, ak);
        activated
    });
    let _ = tpm.flush(0, ek);
    result.map_err(fail)
}

/// The binding of the counters' pages: this launch.
const COUNTER_BINDING: Binding = Binding { locality: LAUNCH_LOCALITY, pcr: LAUNCH_PCR };

/// Opens the counters of the master secret that was there, or (`fresh`) makes them anew for
/// one about to be made; logs what it found.
pub fn open_counters(tpm: &mut MachineTpm, fresh: bool) -> Result<Counters, Status> {
    let opened = if fresh {
        Counters::initialize(tpm, COUNTER_BINDING)
    } else {
        Counters::open(tpm, COUNTER_BINDING)
    };
    match opened {
        Ok(counters) => {
            log::info!(
                "hv: trusted counters {}: {} in {} page(s) of the TPM's NV memory (bound to PCR \
                 17, locality 2)",
                if fresh { "made anew" } else { "read" },
                counters.len(),
                counters.pages()
            );
            Ok(counters)
        }
        Err(e) => {
            log::error!("hv: trusted counters refused: {e}");
            Err(Status::Unavailable)
        }
    }
}

/// What a counter failure tells the PAL: a bad argument for its own mistakes, the TCC
/// unavailable otherwise (logged).
pub fn counter_status(e: &CounterError) -> Status {
    log::error!("hv: trusted counters: {e}");
    match e {
        CounterError::Overflow | CounterError::ZeroId => Status::BadArgument,
        _ => Status::Unavailable,
    }
}

/// The NV index that holds the hypervisor's master secret (owner-defined range, above the
/// counters').
pub const MASTER_NV_INDEX: u32 = 0x01A0_0000;

/// The hypervisor's master secret, the root of its sealing and attestation keys, with the
/// trusted counters that belong to it (`None` when they were refused: the keys work, the
/// counters say why on every use).
///
/// The secret is 32 bytes in the TPM's NV memory that read and write only at locality 2
/// while PCR 17 holds the value it had when they were stored (an NV index with a PolicyPCR
/// and PolicyLocality read and write policy, and no owner or authValue access), that is,
/// only for this hypervisor image after a measured launch. The index's public area is
/// checked first: an index of other attributes or policy (one the owner may write, so
/// holding what the owner chose, or one of another launch) is refused, and nothing is
/// derived from it. Made and stored on a TPM that has none, after its counters are made
/// anew. `Unavailable` if the TPM's index is not this launch's or the TPM fails.
pub fn master_secret(tpm: &mut MachineTpm) -> Result<([u8; 32], Option<Counters>), Status> {
    let unavailable = |what: &str, e: TpmError| {
        log::error!("hv: the TPM's master secret does not open for this launch: {what}: {e}");
        Status::Unavailable
    };
    let index = tpm
        .bound_secret_index(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR)
        .map_err(|e| unavailable("reading its index's public area", e))?;
    let defined = match index {
        BoundIndex::Bound { written: true } => {
            let secret = tpm
                .read_pcr_bound_secret(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR)
                .map_err(|e| unavailable("reading it", e))?;
            log::info!("hv: master secret read from the TPM (bound to PCR 17, locality 2)");
            return Ok((secret, open_counters(tpm, false).ok()));
        }
        BoundIndex::Foreign(public) => {
            log::error!(
                "hv: the TPM's master secret does not open for this launch: NV index \
                 {MASTER_NV_INDEX:#x} has attributes {:#x}, {} bytes and policy {}, not \
                 {:#x}, 32 bytes and this launch's PCR 17 and locality 2 policy: another \
                 launch's, or defined by someone else (refused; nothing is derived from it)",
                public.attributes,
                public.data_size,
                public.auth_policy.map_or(String::from("none"), |p| Digest(p).to_string()),
                PCR_BOUND_SECRET_ATTRIBUTES,
            );
            return Err(Status::Unavailable);
        }
        BoundIndex::Bound { written: false } => true,
        BoundIndex::Absent => false,
    };
    // A new TCC: its counters start empty, written before the secret that owns them.
    let counters = open_counters(tpm, true)?;
    let mut secret = [0; 32];
    let from_tpm = tpm.get_random(0, 32).map_err(|e| {
        log::error!("hv: TPM random bytes: {e}");
        Status::Unavailable
    })?;
    crate::cpu::random(&mut secret)?;
    // Both sources: neither a weak RDRAND nor a weak TPM alone decides the secret.
    let secret = vpr_proto::crypto::hash(&[b"vpr hv master", &secret, &from_tpm]).0;
    tpm.store_pcr_bound_secret(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR, &secret, defined)
        .map_err(|e| {
            log::error!("hv: storing the master secret in the TPM: {e}");
            Status::Unavailable
        })?;
    log::info!("hv: master secret made and stored in the TPM (bound to PCR 17, locality 2)");
    Ok((secret, Some(counters)))
}
