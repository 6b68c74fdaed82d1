//! The TCC's state: one object that boot makes (`hv_main`) and passes to whatever serves the
//! PALs — the machine's TPM and what the hypervisor keeps of it (PCR 18's log, the trusted
//! counters), the hypervisor's measurement, the TCC keys and their certificate. Nothing of
//! it is a global: the registries of PALs (`pal::Pals`) reach it through the reference they
//! were given.
//!
//! The order of boot is fixed here: the measured launch (PCR 17), then the master secret
//! (with the counters it owns), then the TCC keys and their binding into PCR 19 — all before
//! any guest runs.

use crate::cpu;
use crate::tpm::{self, MachineTpm, MeasureError, KEY_PCR, LAUNCH_LOCALITY};
use alloc::vec::Vec;
use spin::{Mutex, MutexGuard, Once};
use vpr_hypervisor::tpm::counters::Counters;
use vpr_hypervisor::tpm::{PalLog, TpmError};
use vpr_hypervisor::utpm::TccKeys;
use vpr_proto::crypto::{PublicKey, Signature};
use vpr_proto::hypercall::Status;
use vpr_proto::utpm::TpmEvidenceParts;
use vpr_proto::Digest;

/// The machine's TPM and what lives beside it for this boot.
#[derive(Debug)]
pub struct TpmState {
    /// The TPM.
    pub tpm: MachineTpm,
    /// The identities extended into PCR 18 this boot.
    log: PalLog,
    /// The trusted counters, once the master secret opened them (pages of the TPM's NV
    /// memory bound to PCR 17 and locality 2, like the master secret): `None` before, when
    /// they were refused, and after a TPM failure (they are read anew on the next use).
    counters: Option<Counters>,
    /// Whether the master secret opened: counters are used only then.
    master: bool,
}

/// The TCC's state (see the module's documentation).
#[derive(Debug)]
pub struct Tcc {
    /// The TPM, when the machine has one and it started.
    tpm: Option<Mutex<TpmState>>,
    /// The hypervisor's measurement, as extended into PCR 17.
    hypervisor: [u8; 32],
    /// The TCC keys, or why the boot has none.
    keys: Result<TccKeys, Status>,
    /// The certificate of the TCC key a verifier gave (`certify`), once given.
    certificate: Once<Signature>,
}

impl Tcc {
    /// The measured launch of the image measured as `measurement`, then the master secret
    /// and the TCC keys (logged, as are failures: a boot without a TPM, or whose TPM fails,
    /// goes on with keys of its own, or none).
    pub fn boot(measurement: &[u8; 32]) -> Tcc {
        let mut state = match tpm::launch(measurement) {
            Ok(Some(tpm)) => {
                Some(TpmState { tpm, log: PalLog::new(), counters: None, master: false })
            }
            Ok(None) => {
                log::warn!("hv: no TPM: no measured launch");
                None
            }
            Err(e) => {
                log::error!("hv: TPM: {e}");
                None
            }
        };
        let keys = keys(state.as_mut());
        if let Err(e) = &keys {
            log::error!("hv: TCC keys: {e}");
        }
        Tcc { tpm: state.map(Mutex::new), hypervisor: *measurement, keys, certificate: Once::new() }
    }

    /// The hypervisor's measurement (PCR 17's launch).
    pub fn hypervisor_measurement(&self) -> [u8; 32] {
        self.hypervisor
    }

    /// Whether the machine has a TPM (which then keeps the PALs' counters).
    pub fn has_tpm(&self) -> bool {
        self.tpm.is_some()
    }

    /// The TPM's state, `Unavailable` without one.
    pub fn tpm(&self) -> Result<MutexGuard<'_, TpmState>, Status> {
        self.tpm.as_ref().map(Mutex::lock).ok_or(Status::Unavailable)
    }

    /// The boot's TCC keys.
    pub fn keys(&self) -> Result<&TccKeys, Status> {
        self.keys.as_ref().map_err(|e| *e)
    }

    /// The TCC key's public key (SEC1 uncompressed).
    pub fn public_key(&self) -> Result<PublicKey, Status> {
        self.keys().map(TccKeys::public)
    }

    /// The certificate of the TCC key, if a verifier gave one.
    pub fn certificate(&self) -> Option<Signature> {
        self.certificate.get().copied()
    }

    /// Installs a certificate of the TCC key (`certify`): only for keys derived from the
    /// TPM-held master secret (bound to the TPM by PCR 19), once per boot.
    pub fn certify(&self, certificate: Signature) -> Result<(), Status> {
        if !self.keys()?.tpm_bound {
            return Err(Status::Unavailable);
        }
        let mut installed = false;
        self.certificate.call_once(|| {
            installed = true;
            certificate
        });
        if installed {
            Ok(())
        } else {
            Err(Status::Refused)
        }
    }

    /// Extends PCR 18 with a PAL's identity (at registration, before it can run), once per
    /// identity and boot. Without a TPM there is nothing to extend.
    pub fn measure_pal(&self, identity: &[u8; 32]) -> Result<(), MeasureError> {
        match &self.tpm {
            Some(state) => {
                let state = &mut *state.lock();
                tpm::measure_pal(&mut state.tpm, &mut state.log, identity)
            }
            None => Ok(()),
        }
    }

    /// The identities extended into PCR 18 so far this boot, in order.
    #[cfg(feature = "selftest")]
    pub fn pal_log(&self) -> Vec<[u8; 32]> {
        self.tpm.as_ref().map_or_else(Vec::new, |state| state.lock().log.identities().to_vec())
    }

    /// The TPM half of the evidence over `nonce` (`tpm::evidence`) for the TCC key.
    /// `Unavailable` without a TPM or keys.
    pub fn evidence(&self, nonce: &[u8; 32]) -> Result<TpmEvidenceParts, Status> {
        let key = self.public_key()?;
        let state = &mut *self.tpm()?;
        tpm::evidence(&mut state.tpm, state.log.identities(), nonce, &key)
    }

    /// A verifier's credential activated with the TPM's endorsement and attestation keys
    /// (`tpm::activate`).
    pub fn activate(&self, credential: &[u8]) -> Result<Vec<u8>, Status> {
        tpm::activate(&mut self.tpm()?.tpm, credential)
    }

    /// Counter `id` from the TPM: 0 if it was never incremented.
    pub fn counter_read(&self, id: &[u8; 32]) -> Result<u64, Status> {
        self.with_counters(|_, counters| Ok(counters.get(id)))
    }

    /// Adds one to counter `id` in the TPM; the new value. Counters never go back: only this
    /// launch writes them, and a deleted page is refused rather than read as zero.
    pub fn counter_increment(&self, id: &[u8; 32]) -> Result<u64, Status> {
        self.with_counters(|tpm, counters| counters.increment(tpm, id))
    }

    /// Runs `f` on the TPM and the counters, opening them first if they are not open; a
    /// failure is logged, and after a TPM failure the counters are read anew next time.
    fn with_counters<T>(
        &self,
        f: impl FnOnce(
            &mut MachineTpm,
            &mut Counters,
        ) -> Result<T, vpr_hypervisor::tpm::counters::CounterError>,
    ) -> Result<T, Status> {
        let state = &mut *self.tpm()?;
        if !state.master {
            return Err(Status::Unavailable);
        }
        let counters = match &mut state.counters {
            Some(counters) => counters,
            none => none.insert(tpm::open_counters(&mut state.tpm, false)?),
        };
        f(&mut state.tpm, counters).map_err(|e| {
            if let vpr_hypervisor::tpm::counters::CounterError::Tpm { .. } = e {
                state.counters = None;
            }
            tpm::counter_status(&e)
        })
    }
}

/// The TCC keys: derived from the TPM-held master secret when the boot has one (so they are
/// the same on every boot of this hypervisor on this TPM, and bound into PCR 19), else made
/// from RDRAND for this boot only. Opens the master secret's counters into `state`.
fn keys(mut state: Option<&mut TpmState>) -> Result<TccKeys, Status> {
    let keys = match state.as_deref_mut() {
        Some(state) => {
            let (secret, counters) = tpm::master_secret(&mut state.tpm)?;
            state.master = true;
            state.counters = counters;
            TccKeys::derive(&secret)
        }
        None => TccKeys::random(|secret| cpu::random(secret))?,
    };
    let digest = Digest::of(&keys.public());
    if let Some(state) = state {
        // The key is bound to the TPM: PCR 19 (a dynamic-launch PCR only locality 2 and up
        // extend, from all ones at TPM2_Startup) gets the key's hash, so a TPM quote of PCRs
        // 17-19 says which hypervisor holds which key.
        state.tpm.pcr_extend(LAUNCH_LOCALITY, KEY_PCR, &digest.0).map_err(|e: TpmError| {
            log::error!("hv: binding the TCC key into PCR 19: {e}");
            Status::Unavailable
        })?;
    }
    log::info!(
        "hv: TCC key {} (self-certified, simulated evidence): sha256 of its public key {}",
        if keys.tpm_bound {
            "derived from the TPM-held master secret"
        } else {
            "made for this boot"
        },
        digest
    );
    Ok(keys)
}
