//! The TPM tests: the measured launch boot did, the TPM's refusal of a PCR 17 extend from a
//! locality below 2, random bytes, and an extend of the debug PCR read back.

use super::TestResult;
use crate::mem;
use crate::svm::Svm;
use crate::tcc::Tcc;
use crate::tpm::{MachineTpm, KEY_PCR, LAUNCH_PCR, PAL_PCR};
use alloc::format;
use alloc::string::String;
use vpr_hypervisor::tpm::{command, extended, TpmError, EK_CERT_RSA_INDEX};
use vpr_proto::Digest;

/// The TPM, or why the test cannot run.
fn with_tpm<T>(
    tcc: &Tcc,
    f: impl FnOnce(&mut MachineTpm) -> Result<T, String>,
) -> Result<T, String> {
    let mut state = tcc.tpm().map_err(|_| {
        String::from("no TPM found at boot (`cargo xtask qemu-test` attaches swtpm)")
    })?;
    f(&mut state.tpm)
}

fn err(e: TpmError) -> String {
    format!("TPM: {e}")
}

/// PCR 17 holds exactly one extend, from all ones, of the hypervisor's measurement.
pub fn tpm_measured_launch(_svm: &Svm, tcc: &Tcc) -> TestResult {
    let measurement = mem::image_measurement().0;
    let expected = extended(&[0xFF; 32], &measurement);
    with_tpm(tcc, |tpm| {
        let pcr17 = tpm.pcr_read(0, LAUNCH_PCR).map_err(err)?;
        if pcr17 != expected {
            return Err(format!("PCR 17 is {}, expected {}", Digest(pcr17), Digest(expected)));
        }
        Ok(())
    })
}

/// An extend of PCR 17 from locality 0 (where a guest's software would stand) is refused by
/// the TPM (TPM_RC_LOCALITY) and changes nothing.
pub fn tpm_refuses_launch_pcr_from_locality_0(_svm: &Svm, tcc: &Tcc) -> TestResult {
    with_tpm(tcc, |tpm| {
        let before = tpm.pcr_read(0, LAUNCH_PCR).map_err(err)?;
        match tpm.pcr_extend(0, LAUNCH_PCR, &[0x5A; 32]) {
            Err(TpmError::Tpm(rc)) if rc.0 == 0x907 => {}
            other => return Err(format!("extend from locality 0: {other:?}")),
        }
        if tpm.pcr_read(0, LAUNCH_PCR).map_err(err)? != before {
            return Err(String::from("a refused extend changed PCR 17"));
        }
        Ok(())
    })
}

/// Random bytes from the TPM differ between two calls; an extend of the debug PCR (16,
/// resettable, any locality) reads back as SHA-256(old || digest).
pub fn tpm_random_and_pcr_extend(_svm: &Svm, tcc: &Tcc) -> TestResult {
    with_tpm(tcc, |tpm| {
        let a = tpm.get_random(0, 32).map_err(err)?;
        let b = tpm.get_random(0, 32).map_err(err)?;
        if a.len() != 32 || a == b || a.iter().all(|&x| x == 0) {
            return Err(format!("random bytes {a:x?} then {b:x?}"));
        }
        let old = tpm.pcr_read(0, 16).map_err(err)?;
        let digest = Digest::of(b"vpr tpm self-test").0;
        tpm.pcr_extend(0, 16, &digest).map_err(err)?;
        let new = tpm.pcr_read(0, 16).map_err(err)?;
        if new != extended(&old, &digest) {
            return Err(format!("PCR 16 went from {} to {}", Digest(old), Digest(new)));
        }
        Ok(())
    })
}

/// The cost of TPM commands through the TIS under QEMU and swtpm (medians of 15).
pub fn tpm_cost(_svm: &Svm, tcc: &Tcc) -> TestResult {
    const RUNS: usize = 15;
    with_tpm(tcc, |tpm| {
        let random = crate::tsc::median(RUNS, || tpm.get_random(0, 32).map(drop).map_err(err))?;
        let read = crate::tsc::median(RUNS, || tpm.pcr_read(0, 16).map(drop).map_err(err))?;
        let extend = crate::tsc::median(RUNS, || tpm.pcr_extend(0, 16, &[7; 32]).map_err(err))?;
        log::info!(
            "hv: TPM command TSC ticks (median of {RUNS}): GetRandom(32) {random}, PCR_Read \
             {read}, PCR_Extend {extend}"
        );
        Ok(())
    })?;
    // A trusted counter kept in the TPM (an identity no other test uses): read, increment.
    let identity = Digest::of(b"vpr tpm cost counter").0;
    let counter = vpr_proto::hypercall::pal::counter_id(&identity, &[3; 32]);
    let read = crate::tsc::median(RUNS, || {
        tcc.counter_read(&counter).map(drop).map_err(|s| format!("{s}"))
    })?;
    let increment = crate::tsc::median(RUNS, || {
        tcc.counter_increment(&counter).map(drop).map_err(|s| format!("{s}"))
    })?;
    log::info!(
        "hv: TPM-kept counter TSC ticks (median of {RUNS}): read {read}, increment {increment}"
    );
    let [seal, unseal, attest, quote] =
        crate::pal::key_operation_ticks(tcc, RUNS).map_err(|s| format!("keys: {s}"))?;
    log::info!(
        "hv: PAL service TSC ticks (median of {RUNS}, keys from the TPM-held master secret): \
         seal 64 bytes {seal}, unseal {unseal}, attest {attest}, uTPM quote {quote}"
    );
    Ok(())
}

/// Registering a PAL extends PCR 18 with its identity, from locality 2.
pub fn tpm_measures_registered_pals(svm: &Svm, tcc: &Tcc) -> TestResult {
    let before = with_tpm(tcc, |tpm| tpm.pcr_read(0, PAL_PCR).map_err(err))?;
    let identity = super::pal::register_sum_pal(svm, tcc)?;
    let after = with_tpm(tcc, |tpm| tpm.pcr_read(0, PAL_PCR).map_err(err))?;
    if after != extended(&before, &identity) {
        return Err(format!(
            "PCR 18 went from {} to {}, expected the extend of {}",
            Digest(before),
            Digest(after),
            Digest(identity)
        ));
    }
    // Registered again (a loop of register and unregister must not grow PCR 18's log without
    // end): in the log already, so PCR 18 stays.
    for _ in 0..3 {
        super::pal::register_sum_pal(svm, tcc)?;
    }
    let again = with_tpm(tcc, |tpm| tpm.pcr_read(0, PAL_PCR).map_err(err))?;
    if again != after || tcc.pal_log().iter().filter(|id| **id == identity).count() != 1 {
        return Err(String::from("registering the same PAL again extended PCR 18 again"));
    }
    Ok(())
}

/// The TPM holds a manufacturer's certificate for its endorsement key: a DER SEQUENCE whose
/// length header covers exactly the bytes read. (`qemu-test` checks it is the certificate
/// the TPM was made with and that it chains to the local CA.)
pub fn tpm_ek_certificate(_svm: &Svm, tcc: &Tcc) -> TestResult {
    let cert = with_tpm(tcc, |tpm| {
        tpm.nv_read_all(0, vpr_hypervisor::tpm::EK_CERT_RSA_INDEX).map_err(err)
    })?;
    // DER (X.690 §8.1.3): 0x30, then a long-form length of one or two bytes for a certificate.
    let declared = match cert.get(..4) {
        Some([0x30, 0x81, n, _]) => usize::from(*n) + 3,
        Some([0x30, 0x82, hi, lo]) => (usize::from(*hi) << 8 | usize::from(*lo)) + 4,
        _ => 0,
    };
    if cert.len() < 100 || declared != cert.len() {
        return Err(format!("EK certificate of {} bytes declares {declared}", cert.len()));
    }
    Ok(())
}

/// After a reboot, before any PAL is registered, PCR 18 holds its reset value (all ones, as
/// the dynamic-launch PCRs 17-22 start): nothing of the previous boot's PALs is left.
pub fn tpm_pal_pcr_reset(_svm: &Svm, tcc: &Tcc) -> TestResult {
    let pcr18 = with_tpm(tcc, |tpm| tpm.pcr_read(0, PAL_PCR).map_err(err))?;
    if pcr18 != [0xFF; 32] {
        return Err(format!("PCR 18 is {} before any registration", Digest(pcr18)));
    }
    Ok(())
}

/// Counters kept in the TPM (first boot, on a fresh TPM): a PAL's counter 0 starts at 0,
/// increments to 1 and 2, and is still 2 after the PAL is unregistered and registered again
/// in another registry; another image's counter 0 is its own. The second boot reads it again.
pub fn tpm_counters(svm: &Svm, tcc: &Tcc) -> TestResult {
    let (image, other) = super::pal::counter_images();
    let first = super::pal::tpm_counter_runs(svm, tcc, &image, 0, &[0, 1, 1, 0])?;
    let again = super::pal::tpm_counter_runs(svm, tcc, &image, 0, &[0])?;
    let named = super::pal::tpm_counter_runs(svm, tcc, &image, 7, &[0, 1])?;
    let theirs = super::pal::tpm_counter_runs(svm, tcc, &other, 0, &[0, 1])?;
    if first != [0, 1, 2, 2] || again != [2] || named != [0, 1] || theirs != [0, 1] {
        return Err(format!(
            "counters: {first:?}, then {again:?}; another name's {named:?}; another image's \
             {theirs:?}"
        ));
    }
    Ok(())
}

/// The TPM's owner (whose password is empty, as on most machines) can neither read nor
/// write the counters' pages: the TPM answers TPM_RC_NV_AUTHORIZATION (0x149), and the
/// counter keeps its value.
pub fn tpm_counter_pages_refuse_the_owner(_svm: &Svm, tcc: &Tcc) -> TestResult {
    use vpr_hypervisor::tpm::counters::{PAGE_BASE, PAGE_LEN};
    let err = |s: vpr_proto::hypercall::Status| format!("{s}");
    let mut ours = [0u8; 32];
    crate::cpu::random(&mut ours).map_err(err)?;
    let counted = tcc.counter_increment(&ours).map_err(err)?;
    let refused = |what: &str, result: Result<(), TpmError>| match result {
        Err(TpmError::Tpm(rc)) if rc.0 == 0x149 => Ok(()),
        other => Err(format!("the owner's {what} of counter page 0: {other:?}")),
    };
    with_tpm(tcc, |tpm| {
        refused("write", tpm.nv_write(0, PAGE_BASE, 8 + 32, &[0; 8]))?;
        refused("read", tpm.nv_read(0, PAGE_BASE, 0, PAGE_LEN).map(drop))
    })?;
    let after = tcc.counter_read(&ours).map_err(err)?;
    if (counted, after) != (1, 1) {
        return Err(format!("counter: incremented to {counted}, then read {after}"));
    }
    Ok(())
}

/// After the reboot the TPM-kept counter is where the first boot left it (2), and goes on.
pub fn tpm_counters_after_reboot(svm: &Svm, tcc: &Tcc) -> TestResult {
    let (image, other) = super::pal::counter_images();
    let values = super::pal::tpm_counter_runs(svm, tcc, &image, 0, &[0, 1])?;
    let named = super::pal::tpm_counter_runs(svm, tcc, &image, 7, &[0])?;
    let theirs = super::pal::tpm_counter_runs(svm, tcc, &other, 0, &[0])?;
    if values != [2, 3] || named != [1] || theirs != [1] {
        return Err(format!(
            "after the reboot: {values:?}; another name's {named:?}; another image's {theirs:?}"
        ));
    }
    Ok(())
}

/// What the first boot seals for the second.
const FOR_NEXT_BOOT: &[u8] = b"sealed in boot 1, for boot 2";

/// Seals a secret with the sealer PAL and logs the blob, which `qemu-test` hands to the second
/// boot as module 1 (as a guest would keep it on its disk).
pub fn tpm_seal_for_next_boot(svm: &Svm, tcc: &Tcc) -> TestResult {
    let (status, blob) = super::pal::sealer(svm, tcc, 0, FOR_NEXT_BOOT)?;
    if status != 0 || blob.len() != FOR_NEXT_BOOT.len() + 28 {
        return Err(format!("seal: status {status:#x}, {} bytes", blob.len()));
    }
    log::info!("hv: sealed for the next boot: {}", hex(&blob));
    Ok(())
}

/// The blob the first boot sealed (module 1) opens for the same PAL after the reboot, and
/// with one bit changed it does not.
pub fn tpm_unseal_after_reboot(svm: &Svm, tcc: &Tcc) -> TestResult {
    let blob = mem::module(1).ok_or("no module 1: the first boot's sealed blob")?;
    let (status, opened) = super::pal::sealer(svm, tcc, 1, blob)?;
    if status != 0 || opened != FOR_NEXT_BOOT {
        return Err(format!("unseal after reboot: status {status:#x}, {opened:x?}"));
    }
    let mut tampered = blob.to_vec();
    tampered[20] ^= 1;
    let (status, _) = super::pal::sealer(svm, tcc, 1, &tampered)?;
    if status != vpr_proto::hypercall::Status::Refused.as_u64() {
        return Err(format!("a tampered blob: status {status:#x}"));
    }
    Ok(())
}

/// The master secret's NV index is this launch's (PCR 17 and locality 2 policy, no owner
/// access): the TPM refuses it at locality 0, the owner's reads and writes, and, once PCR 17
/// no longer holds this hypervisor's launch value (another image, or anything extended after
/// it), every read: a policy failure. Last test of the boot: PCR 17 stays changed.
pub fn tpm_master_secret_needs_pcr17(_svm: &Svm, tcc: &Tcc) -> TestResult {
    use crate::tpm::{LAUNCH_LOCALITY, MASTER_NV_INDEX};
    with_tpm(tcc, |tpm| {
        // Its index: this launch's policy, no owner access.
        let index = tpm.bound_secret_index(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR);
        if index != Ok(vpr_hypervisor::tpm::BoundIndex::Bound { written: true }) {
            return Err(format!("the master secret's index: {index:?}"));
        }
        // At locality 0, with PCR 17 as it is: refused by the TPM.
        if let Ok(_) | Err(TpmError::Argument(_)) =
            tpm.read_pcr_bound_secret(0, MASTER_NV_INDEX, LAUNCH_PCR)
        {
            return Err(String::from("the master secret read at locality 0"));
        }
        // The owner can neither read nor write it.
        if tpm.nv_read(0, MASTER_NV_INDEX, 0, 32).is_ok() {
            return Err(String::from("the owner read the master secret"));
        }
        if tpm.nv_write(0, MASTER_NV_INDEX, 0, &[0; 32]).is_ok() {
            return Err(String::from("the owner wrote the master secret"));
        }
        tpm.pcr_extend(LAUNCH_LOCALITY, LAUNCH_PCR, &[0xEE; 32]).map_err(err)?;
        match tpm.read_pcr_bound_secret(LAUNCH_LOCALITY, MASTER_NV_INDEX, LAUNCH_PCR) {
            Err(TpmError::Tpm(rc)) if rc.is_policy_failure() => Ok(()),
            other => Err(format!("reading the master secret after PCR 17 changed: {other:?}")),
        }
    })
}

/// A TPM quote: an ECC P-256 signing key made under the endorsement hierarchy (the same key
/// on every boot of this TPM) quotes PCRs 17 and 18 with a nonce; the quote names the nonce
/// and the two PCRs, its PCR digest is SHA-256(PCR 17 || PCR 18) as read, and its signature
/// verifies with the key's public point (and not once the quote is changed).
pub fn tpm_quote(_svm: &Svm, tcc: &Tcc) -> TestResult {
    use vpr_hypervisor::tpm::command::parse_tpms_attest_quote;
    use vpr_hypervisor::tpm::quote_verifies;
    with_tpm(tcc, |tpm| {
        let (key, x, y) = tpm.create_attestation_key(0).map_err(err)?;
        let nonce = Digest::of(b"vpr self-test quote nonce").0;
        let start = crate::tsc::read();
        let quote = tpm.quote(0, key, &nonce, &[LAUNCH_PCR, PAL_PCR]);
        let ticks = crate::tsc::read() - start;
        let _ = tpm.flush(0, key);
        let quote = quote.map_err(err)?;
        let info = parse_tpms_attest_quote(&quote.attest).map_err(err)?;
        let pcr17 = tpm.pcr_read(0, LAUNCH_PCR).map_err(err)?;
        let pcr18 = tpm.pcr_read(0, PAL_PCR).map_err(err)?;
        let digest = vpr_proto::crypto::hash(&[&pcr17, &pcr18]).0;
        if info.extra_data != nonce || info.pcr_select != [0, 0, 0b110] || info.pcr_digest != digest
        {
            return Err(format!("quote says {info:?}"));
        }
        if !quote_verifies(&x, &y, &quote) {
            return Err(String::from("the quote's signature does not verify"));
        }
        let mut changed = quote.clone();
        let last = changed.attest.len() - 1;
        changed.attest[last] ^= 1;
        if quote_verifies(&x, &y, &changed) {
            return Err(String::from("a changed quote verifies"));
        }
        let public = [&[4u8][..], &x, &y].concat();
        // For a check by stock tools (`qemu-test` runs tpm2_checkquote on it).
        log::info!(
            "hv: TPM quote for tpm2_checkquote: attest={} r={} s={} point={} nonce={}",
            hex(&quote.attest),
            hex(&quote.r),
            hex(&quote.s),
            hex(&public[1..]),
            hex(&nonce)
        );
        log::info!(
            "hv: TPM quote of PCRs 17 and 18 by the endorsement-hierarchy P-256 key (sha256 of \
             its point {}): {ticks} TSC ticks",
            Digest::of(&public)
        );
        Ok(())
    })
}

/// Lowercase hex, for log lines `qemu-test` reads back.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// PCR 19 holds exactly one extend, from all ones, of the SHA-256 of the TCC key (made at
/// boot): a TPM quote of it names the key the uTPM signs with. Locality 0 cannot extend it.
pub fn tpm_tcc_key_bound(_svm: &Svm, tcc: &Tcc) -> TestResult {
    let key = tcc.public_key().map_err(|s| format!("TCC key: {s}"))?;
    let expected = extended(&[0xFF; 32], &Digest::of(&key).0);
    with_tpm(tcc, |tpm| {
        let pcr19 = tpm.pcr_read(0, KEY_PCR).map_err(err)?;
        if pcr19 != expected {
            return Err(format!("PCR 19 is {}, expected {}", Digest(pcr19), Digest(expected)));
        }
        match tpm.pcr_extend(0, KEY_PCR, &[0x5A; 32]) {
            Err(TpmError::Tpm(rc)) if rc.0 == 0x907 => Ok(()),
            other => Err(format!("extend of PCR 19 from locality 0: {other:?}")),
        }
    })
}

/// The endorsement key the TPM derives from the EK template is the key its manufacturer
/// certified (its modulus is in the EK certificate); the attestation key's public area is
/// logged, for the verifier's credential (`qemu-test` makes it from this line and the EK
/// certificate, and the second boot activates it).
pub fn tpm_endorsement_and_attestation_keys(_svm: &Svm, tcc: &Tcc) -> TestResult {
    with_tpm(tcc, |tpm| {
        let cert = tpm.nv_read_all(0, EK_CERT_RSA_INDEX).map_err(err)?;
        let (ek, modulus) = tpm.create_endorsement_key(0).map_err(err)?;
        let _ = tpm.flush(0, ek);
        if modulus.len() != 256 || !cert.windows(modulus.len()).any(|w| w == modulus) {
            return Err(String::from("the EK's modulus is not the certified one"));
        }
        let (ak, x, y) = tpm.create_attestation_key(0).map_err(err)?;
        let _ = tpm.flush(0, ak);
        let public = command::attestation_key_public(&x, &y);
        log::info!(
            "hv: attestation key public area {} name {}",
            hex(&public),
            hex(&command::object_name(&public))
        );
        Ok(())
    })
}

/// The credential a verifier made (module 2: `TPM2B_ID_OBJECT` then
/// `TPM2B_ENCRYPTED_SECRET`) for the EK certificate's key and the attestation key's name
/// opens on this TPM (TPM2_ActivateCredential; the secret is logged for `qemu-test` to
/// compare), and with one bit changed it does not (TPM_RC_INTEGRITY).
pub fn tpm_activate_credential(_svm: &Svm, tcc: &Tcc) -> TestResult {
    use vpr_proto::hypercall::Status;
    let module = mem::module(2).ok_or("no module 2: the verifier's credential")?;
    let start = crate::tsc::read();
    let credential = tcc.activate(module).map_err(|s| format!("activating the credential: {s}"))?;
    let ticks = crate::tsc::read() - start;
    // One bit changed in the credential blob's last byte (the first TPM2B).
    let blob_end = module.get(..2).map_or(0, |n| 2 + usize::from(u16::from_be_bytes([n[0], n[1]])));
    let mut tampered = module.to_vec();
    if let Some(byte) = tampered.get_mut(blob_end.saturating_sub(1)) {
        *byte ^= 1;
    }
    match tcc.activate(&tampered) {
        Err(Status::Refused) => {}
        other => return Err(format!("a tampered credential: {other:?}")),
    }
    log::info!("hv: credential activated: {} ({ticks} TSC ticks)", hex(&credential));
    Ok(())
}

/// The nonce `qemu-test` put on the command line (`vpr.nonce=<64 hex digits>`).
fn nonce_from_command_line() -> Result<[u8; 32], String> {
    let word = mem::command_line()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vpr.nonce="))
        .ok_or("no vpr.nonce= on the command line")?;
    let mut nonce = [0; 32];
    if word.len() != 64 {
        return Err(format!("vpr.nonce={word}: not 32 bytes of hex"));
    }
    for (i, byte) in nonce.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&word[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("vpr.nonce={word}: not hex"))?;
    }
    Ok(nonce)
}

/// The caller's data the PAL quotes (labelled) in the evidence `qemu-test` checks with
/// `vpr verify`.
pub const EVIDENCE_DATA: &[u8] = b"vpr verify: data the caller chose";

/// Evidence for `vpr verify`, over the verifier's nonce (from the command line): the PAL
/// image, registered, makes a uTPM quote of its uPCR 0 (its identity) over the nonce and
/// SHA-256 of [`EVIDENCE_DATA`], which verifies with the TCC key; then the attestation key
/// quotes PCRs 17 (the hypervisor), 18 (its PALs) and 19 (the TCC key) over the same nonce
/// (the `evidence` hypercall's parts). Both are logged for `qemu-test`.
pub fn tpm_evidence(svm: &Svm, tcc: &Tcc) -> TestResult {
    use vpr_proto::pal_io::{Command, Outcome};
    use vpr_proto::utpm::{self, Quote};
    let nonce = nonce_from_command_line()?;
    let data = Digest::of(EVIDENCE_DATA);
    let mut pals = crate::pal::Pals::new(svm, tcc);
    let (handle, _) = super::sql::register(svm, &mut pals)?;
    let identity = Digest::of(super::sql::image()?).0;
    let command = Command::Quote { nonce: Digest(nonce), data, selection: 1 };
    let start = crate::tsc::read();
    let outcomes = super::sql::execute(svm, &mut pals, handle, &[command])?;
    let ticks = crate::tsc::read() - start;
    let Some(Outcome::Quote { quote: pal_quote }) = outcomes.first() else {
        return Err(format!("quote: {outcomes:?}"));
    };
    let key = tcc.public_key().map_err(|s| format!("TCC key: {s}"))?;
    let quote = Quote::from_bytes(pal_quote).map_err(|e| format!("uTPM quote: {e}"))?;
    let info = quote
        .verify(&key, &[utpm::extended(&[0; 32], &identity)])
        .map_err(|e| format!("uTPM quote: {e}"))?;
    if info.extra_data != [nonce, utpm::caller_data(&data.0)].concat()
        || info.qualified_signer != utpm::signer_name(&key)
    {
        return Err(format!("uTPM quote says {info:?}"));
    }
    log::info!("hv: uTPM quote by the PAL: {ticks} TSC ticks (execute included)");
    let parts = tcc.evidence(&nonce).map_err(|s| format!("evidence: {s}"))?;
    log::info!(
        "hv: evidence: nonce={} pal_quote={} parts={}",
        hex(&nonce),
        hex(pal_quote),
        hex(&parts.to_bytes())
    );
    Ok(())
}
