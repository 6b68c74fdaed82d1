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
use spin::Mutex;
use vpr_hypervisor::tpm::tis::{Mmio, LOCALITY_STRIDE, TIS_BASE};
use vpr_hypervisor::tpm::{
    command, Admission, BoundSecretIndex, PalLog, Tpm, TpmError, EK_CERT_RSA_INDEX,
    PCR_BOUND_SECRET_ATTRIBUTES,
};
use vpr_proto::hypercall::Status;
use vpr_proto::utpm::{Quote, TpmEvidenceParts};
use vpr_proto::{crypto, Digest};

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

/// The TPM, once boot found one.
pub static TPM: Mutex<Option<Tpm<TisWindow>>> = Mutex::new(None);

/// Finds the TPM, starts it (TPM2_Startup(CLEAR): nothing before us did) and extends PCR 17
/// with `measurement` from locality 2; PCR 17 as read back afterwards. `Ok(None)` if the
/// machine has no TPM.
pub fn launch(measurement: &[u8; 32]) -> Result<Option<[u8; 32]>, TpmError> {
    HYPERVISOR.call_once(|| *measurement);
    let mut tpm = Tpm::new(TisWindow, MAX_POLLS);
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
    *TPM.lock() = Some(tpm);
    Ok(Some(pcr17))
}

/// The hypervisor's own measurement, as [`launch`] extended it into PCR 17.
static HYPERVISOR: spin::Once<[u8; 32]> = spin::Once::new();

/// The hypervisor's measurement (zero before [`launch`]).
pub fn hypervisor_measurement() -> [u8; 32] {
    HYPERVISOR.get().copied().unwrap_or([0; 32])
}

/// Extends PCR 19 with the TCC key's hash (once per boot, when the key is made).
pub fn bind_tcc_key(key_digest: &[u8; 32]) -> Result<(), TpmError> {
    match TPM.lock().as_mut() {
        Some(tpm) => tpm.pcr_extend(LAUNCH_LOCALITY, KEY_PCR, key_digest),
        None => Ok(()),
    }
}

/// The identities extended into PCR 18 this boot ([`PalLog`]).
static PAL_LOG: Mutex<PalLog> = Mutex::new(PalLog::new());

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

/// Extends PCR 18 with a PAL's identity (at registration, before it can run) and logs it
/// ([`pal_log`]) — once per identity and boot ([`PalLog`]). Without a TPM there is nothing to
/// extend.
pub fn measure_pal(identity: &[u8; 32]) -> Result<(), MeasureError> {
    match TPM.lock().as_mut() {
        Some(tpm) => {
            let mut log = PAL_LOG.lock();
            match log.admit(identity) {
                Admission::Known => Ok(()),
                Admission::Full => Err(MeasureError::LogFull),
                Admission::New => {
                    tpm.pcr_extend(LAUNCH_LOCALITY, PAL_PCR, identity)
                        .map_err(MeasureError::Tpm)?;
                    log.record(*identity);
                    Ok(())
                }
            }
        }
        None => Ok(()),
    }
}

/// The TPM half of the evidence over `nonce` (the `evidence` hypercall): the attestation
/// key's public area, its quote of PCRs 17 (the launch), 18 (the PALs) and 19 (the TCC key)
/// over `nonce`, those PCRs, PCR 18's log, the TCC key `tcc_key` and the EK certificate.
/// `Unavailable` without a TPM or when it fails (logged).
pub fn evidence(nonce: &[u8; 32], tcc_key: &[u8; 65]) -> Result<TpmEvidenceParts, Status> {
    let pal_log = pal_log();
    let mut tpm = TPM.lock();
    let tpm = tpm.as_mut().ok_or(Status::Unavailable)?;
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
        pal_log,
        tcc_key: *tcc_key,
        ek_certificate,
    })
}

/// TPM2_ActivateCredential of a verifier's `credential` (`TPM2B_ID_OBJECT` then
/// `TPM2B_ENCRYPTED_SECRET`) with the endorsement key and the attestation key (the
/// `activate` hypercall): the secret. `Refused` for a credential the TPM does not open (made
/// for another TPM or key: TPM_RC_INTEGRITY) or that is not two TPM2Bs; `Unavailable`
/// without a TPM or when it fails otherwise.
pub fn activate(credential: &[u8]) -> Result<alloc::vec::Vec<u8>, Status> {
    let split = credential
        .get(..2)
        .map(|n| 2 + usize::from(u16::from_be_bytes([n[0], n[1]])))
        .filter(|&at| at < credential.len())
        .ok_or(Status::Refused)?;
    let (blob, secret) = credential.split_at(split);
    let mut tpm = TPM.lock();
    let tpm = tpm.as_mut().ok_or(Status::Unavailable)?;
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

/// The identities extended into PCR 18 so far this boot, in order.
pub fn pal_log() -> alloc::vec::Vec<[u8; 32]> {
    PAL_LOG.lock().identities().to_vec()
}

/// Where a trusted counter may live in the TPM's NV memory: counter `id` (`pal::counter_id`
/// of a PAL identity and a name) in an owner-defined NV index (TPM 2.0 Part 2 §7.4:
/// 0x0180_0000-0x01BF_FFFF; counters take 0x0180_0000-0x019F_FFFF). The first slot is chosen
/// by a MAC of the id under a key from the master secret, so nobody outside the hypervisor
/// can tell which slot a counter will take (a guest's PAL cannot claim a Manager's slot
/// ahead of it), and `probe` steps past slots other counters took. The index holds the id
/// and the value, so a slot another counter took is recognized, not shared.
pub fn counter_nv_index(key: &[u8; 32], id: &[u8; 32], probe: u32) -> u32 {
    let mac = crypto::mac(key, &[&b"vpr counter slot"[..], &id[..]]);
    let first = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
    0x0180_0000 | (first.wrapping_add(probe) & 0x1F_FFFF)
}

/// Slots a counter may take, from its first: a counter whose every slot is another's is
/// `Unavailable`.
const COUNTER_PROBES: u32 = 32;

/// NV attributes of a counter's index: written and read with owner authorization (only the
/// hypervisor reaches the TPM: the TIS window is in no guest's nested page table), no
/// dictionary-attack lockout, ordinary (the hypervisor keeps it monotonic).
pub const COUNTER_ATTRIBUTES: u32 = (1 << 1) | (1 << 17) | (1 << 25);
/// Bytes of a counter's index: the counter's id, then the value (big-endian).
pub const COUNTER_NV_LEN: u16 = 40;

/// Counter `id` from the TPM: 0 if it was never incremented.
pub fn counter_read(id: &[u8; 32]) -> Result<u64, Status> {
    with_counter(id, |tpm, nv| Ok(read_counter(tpm, id, nv)?.unwrap_or(0)))
}

/// Adds one to counter `id` in the TPM; the new value. The value is written only once it is
/// known to be larger than the one read: counters never go back. The counter's NV index is
/// defined on its first increment only.
pub fn counter_increment(id: &[u8; 32]) -> Result<u64, Status> {
    with_counter(id, |tpm, nv| {
        let current = read_counter(tpm, id, nv)?;
        let next = current.unwrap_or(0).checked_add(1).ok_or(Status::BadArgument)?;
        let mut data = [0; COUNTER_NV_LEN as usize];
        data[..32].copy_from_slice(id);
        data[32..].copy_from_slice(&next.to_be_bytes());
        // A slot defined but never written (a crash between the two) is the counter's: its
        // define answers TPM_RC_NV_DEFINED (TPM 2.0 Part 2 §6.6.3, 0x14C), and the write goes on.
        let defined = match current {
            Some(_) => Ok(false),
            None => match tpm.nv_define(0, nv, COUNTER_ATTRIBUTES, COUNTER_NV_LEN) {
                Err(TpmError::Tpm(rc)) if rc.0 == 0x14C => Ok(false),
                other => other,
            },
        };
        defined.and_then(|_| tpm.nv_write(0, nv, 0, &data)).map_err(|e| {
            log::error!("hv: TPM counter {nv:#x}: {e}");
            Status::Unavailable
        })?;
        Ok(next)
    })
}

/// Runs `f` on the TPM and the NV index of counter `id`: the first of its slots that holds
/// it or is free (slots are never freed, so a counter is always in the first slot of its
/// sequence that is not another's).
fn with_counter<T>(
    id: &[u8; 32],
    f: impl FnOnce(&mut Tpm<TisWindow>, u32) -> Result<T, Status>,
) -> Result<T, Status> {
    // Before the TPM's lock: the master secret takes it on its first use.
    let key = counter_slot_key()?;
    let mut tpm = TPM.lock();
    let tpm = tpm.as_mut().ok_or(Status::Unavailable)?;
    for probe in 0..COUNTER_PROBES {
        let nv = counter_nv_index(&key, id, probe);
        match read_slot(tpm, id, nv)? {
            Slot::Ours(_) | Slot::Free => return f(tpm, nv),
            Slot::Other => {
                log::warn!("hv: TPM counter slot {nv:#x} belongs to another counter: the next");
            }
        }
    }
    log::error!("hv: every TPM slot of a counter belongs to another counter");
    Err(Status::Unavailable)
}

/// The key counter slots are chosen with (from the master secret).
pub fn counter_slot_key() -> Result<[u8; 32], Status> {
    let master = master_secret()?.ok_or(Status::Unavailable)?;
    Ok(crypto::mac(&master, &[&b"vpr counter slots"[..]]))
}

/// What an NV slot holds for a counter.
enum Slot {
    /// The counter, with its value.
    Ours(u64),
    /// Nothing yet (the index is not there, or was defined and never written).
    Free,
    /// Another counter.
    Other,
}

/// What slot `nv` holds for counter `id`.
fn read_slot(tpm: &mut Tpm<TisWindow>, id: &[u8; 32], nv: u32) -> Result<Slot, Status> {
    match tpm.nv_read(0, nv, 0, COUNTER_NV_LEN) {
        Ok(bytes) if bytes.len() == usize::from(COUNTER_NV_LEN) && bytes[..32] == id[..] => {
            let mut value = [0; 8];
            value.copy_from_slice(&bytes[32..]);
            Ok(Slot::Ours(u64::from_be_bytes(value)))
        }
        Ok(_) => Ok(Slot::Other),
        Err(TpmError::Tpm(rc)) if absent(rc.0) => Ok(Slot::Free),
        Err(e) => {
            log::error!("hv: TPM counter {nv:#x}: {e}");
            Err(Status::Unavailable)
        }
    }
}

/// The value in a counter's NV index; `None` if it was never incremented.
fn read_counter(tpm: &mut Tpm<TisWindow>, id: &[u8; 32], nv: u32) -> Result<Option<u64>, Status> {
    match read_slot(tpm, id, nv)? {
        Slot::Ours(value) => Ok(Some(value)),
        Slot::Free => Ok(None),
        Slot::Other => Err(Status::Unavailable),
    }
}

/// The NV index that holds the hypervisor's master secret (owner-defined range, above the
/// counters').
pub const MASTER_NV_INDEX: u32 = 0x01A0_0000;

/// The boot's master secret, once asked for: `None` without a TPM.
static MASTER: spin::Once<Result<Option<[u8; 32]>, Status>> = spin::Once::new();

/// The hypervisor's master secret, the root of its sealing and attestation keys: 32 bytes in
/// the TPM's NV memory that read and write only at locality 2 while PCR 17 holds the value
/// it had when they were stored (an NV index with a PolicyPCR and PolicyLocality read and
/// write policy, and no owner or authValue access), that is, only for this hypervisor image
/// after a measured launch. The index's public area is checked first: an index of other
/// attributes or policy (one the owner may write, so holding what the owner chose, or one of
/// another launch) is refused, and nothing is derived from it. Made and stored on first use
/// on a TPM that has none. `Ok(None)` without a TPM (the keys are then the boot's own);
/// `Unavailable` if the TPM's index is not this launch's or the TPM fails.
pub fn master_secret() -> Result<Option<[u8; 32]>, Status> {
    *MASTER.call_once(|| {
        let mut tpm = TPM.lock();
        let Some(tpm) = tpm.as_mut() else { return Ok(None) };
        let unavailable = |what: &str, e: TpmError| {
            log::error!("hv: the TPM's master secret does not open for this launch: {what}: {e}");
            Status::Unavailable
        };
        let index = tpm
            .bound_secret_index(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR)
            .map_err(|e| unavailable("reading its index's public area", e))?;
        let defined = match index {
            BoundSecretIndex::Bound { written: true } => {
                let secret = tpm
                    .read_pcr_bound_secret(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR)
                    .map_err(|e| unavailable("reading it", e))?;
                log::info!("hv: master secret read from the TPM (bound to PCR 17, locality 2)");
                return Ok(Some(secret));
            }
            BoundSecretIndex::Foreign(public) => {
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
            BoundSecretIndex::Bound { written: false } => true,
            BoundSecretIndex::Absent => false,
        };
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
        Ok(Some(secret))
    })
}

/// Whether a TPM response code says an NV index is not there (a handle error) or was never
/// written (TPM_RC_NV_UNINITIALIZED).
fn absent(rc: u32) -> bool {
    rc == 0x14A || (rc & 0xC0 == 0x80 && rc & 0x3F == 0x0B)
}
