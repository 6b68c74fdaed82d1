//! The verifier's and the CA's side of the TPM evidence, across the two boots of `qemu-test`:
//!
//! - after boot 1, the CA makes a credential (TPM2_MakeCredential, in software) for the
//!   TPM's EK — the key in its EK certificate — and the attestation key whose public area
//!   the hypervisor logged; it goes to boot 2 as module 2;
//! - boot 2 activates it on the TPM and logs the secret: equal to the one made, it proves the
//!   attestation key is on the EK's TPM, and the CA issues the attestation key's
//!   certificate;
//! - boot 2 also logs evidence over the nonce put on its command line: the PAL's uTPM quote
//!   and the TPM quote of PCRs 17-19. The runner writes it as an evidence file and runs
//!   `vpr verify` on it (accepted with only the CA's root certificate) and on altered copies
//!   (each refused for its reason); `tpm2_checkquote` must accept both quotes.

use crate::checkquote::{check_quote, unhex};
use crate::install;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use vpr_host::evidence::{credential, x509, Evidence, HexBytes};
use vpr_proto::utpm::{Quote, TpmEvidenceParts};

/// The RSA EK certificate `qemu/tpm-setup.sh` writes in the TPM's state folder.
const EK_CERT: &str = "ek-rsa2048.crt";
/// The caller's data the PAL quotes in boot 2 (`selftest/tpm.rs`, `EVIDENCE_DATA`).
const EVIDENCE_DATA: &[u8] = b"vpr verify: data the caller chose";

/// A credential made for boot 2 to activate.
pub struct Credential {
    /// The module file: `TPM2B_ID_OBJECT` then `TPM2B_ENCRYPTED_SECRET`.
    pub module: PathBuf,
    secret: [u8; 32],
    ak: p256::PublicKey,
}

/// The value of `name=` in the first line containing `marker`.
fn field(lines: &[String], marker: &str, name: &str) -> Result<Vec<u8>, String> {
    let line = lines
        .iter()
        .find(|l| l.contains(marker))
        .ok_or_else(|| format!("the hypervisor logged no `{marker}` line"))?;
    let prefix = format!("{name}=");
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .ok_or_else(|| format!("the `{marker}` line has no {name}"))?;
    unhex(value).ok_or_else(|| format!("{name} in the `{marker}` line is not hex"))
}

/// After boot 1: the credential for the attestation key boot 1 logged and the EK in the TPM's
/// EK certificate, written to `state/credential.bin`.
pub fn make_credential(lines: &[String], state: &Path) -> Result<Credential, String> {
    let line = lines
        .iter()
        .find_map(|l| l.split("hv: attestation key public area ").nth(1))
        .ok_or("boot 1 logged no attestation key")?;
    let public = line.split_whitespace().next().and_then(unhex).ok_or("bad attestation key")?;
    let ak = credential::parse_attestation_key(&public).map_err(|e| format!("the AK: {e}"))?;
    let ek_der = fs::read(state.join(EK_CERT)).map_err(|e| format!("{EK_CERT}: {e}"))?;
    let ek_cert = x509::read_certificates(&ek_der).map_err(|e| e.to_string())?;
    let ek = ek_cert
        .first()
        .ok_or("no EK certificate")
        .and_then(|c| x509::rsa_public_key(c).map_err(|_| "the EK is not RSA"))?;
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let made = credential::make_credential(&ek, &ak.name, &secret, &mut rand_core::OsRng)
        .map_err(|e| format!("MakeCredential: {e}"))?;
    let module = state.join("credential.bin");
    fs::write(&module, [made.id_object, made.encrypted_secret].concat())
        .map_err(|e| format!("{}: {e}", module.display()))?;
    Ok(Credential { module, secret, ak: ak.key })
}

/// What the evidence check needs besides the boot's log.
pub struct Inputs<'a> {
    /// The workspace root.
    pub root: &'a Path,
    /// The TPM's state folder (the EK certificate; the evidence files go here too).
    pub state: &'a Path,
    /// The local CA's folder.
    pub ca: &'a Path,
    /// Another CA's folder (made on first use), for the refusals.
    pub other_ca: &'a Path,
    /// The PAL image file.
    pub pal: &'a Path,
    /// The hypervisor's measurement (hex).
    pub hypervisor: &'a str,
    /// The nonce boot 2 got.
    pub nonce: [u8; 32],
    /// Where to keep the genuine evidence file for users to try `vpr verify` on.
    pub keep: &'a Path,
}

/// After boot 2: the activated credential, the AK certificate, the evidence and its checks.
pub fn check(lines: &[String], made: &Credential, inputs: &Inputs<'_>) -> Result<(), String> {
    let activated = lines
        .iter()
        .find_map(|l| l.split("hv: credential activated: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(unhex)
        .ok_or("boot 2 logged no activated credential")?;
    if activated != made.secret {
        return Err(String::from("the activated credential is not the one made"));
    }
    eprintln!("qemu-test: credential activation: the attestation key is on the EK's TPM");
    let marker = "hv: evidence:";
    if field(lines, marker, "nonce")? != inputs.nonce {
        return Err(String::from("boot 2's evidence is over another nonce than it was given"));
    }
    let parts = TpmEvidenceParts::from_bytes(&field(lines, marker, "parts")?)
        .map_err(|e| format!("boot 2's evidence: {e}"))?;
    let ca = x509::Ca::load(inputs.ca).map_err(|e| format!("the CA: {e}"))?;
    let now = SystemTime::now();
    let year = Duration::from_secs(365 * 24 * 3600);
    let issue = |ca: &x509::Ca| {
        let (serial, ek) = (x509::random_serial(), &parts.ek_certificate);
        ca.issue_attestation_key_certificate(&made.ak, ek, serial, now, now + year)
            .map_err(|e| format!("issuing the AK certificate: {e}"))
    };
    let identity: [u8; 32] = vpr_proto::Digest::of(
        &fs::read(inputs.pal).map_err(|e| format!("{}: {e}", inputs.pal.display()))?,
    )
    .0;
    let genuine = Evidence::from_tpm(
        &parts,
        issue(&ca)?,
        vec![ca.intermediate_der().to_vec()],
        field(lines, marker, "pal_quote")?,
        &identity,
    );
    stock_tools_accept(&genuine, &made.ak, inputs)?;

    // The verifier's run, with only the CA's root certificate.
    let vpr = crate::qemu::build_vpr(inputs.root)?;
    let root = inputs.ca.join(x509::ROOT_CERTIFICATE_FILE);
    let data = vpr_proto::Digest::of(EVIDENCE_DATA).0;
    let verify = Verify { vpr: &vpr, dir: inputs.state, root: &root, identity, data, inputs };
    // Accepted, and said to be a simulated late launch.
    let genuine_file = match verify.run("genuine", &genuine, &[], None)? {
        (true, text, file)
            if text.starts_with("verified:")
                && text.contains(vpr_host::evidence::SIMULATED_LAUNCH_WARNING) =>
        {
            file
        }
        (_, text, _) => {
            return Err(format!(
                "vpr verify refuses the genuine chain or does not say its launch is simulated: \
                 {text}"
            ))
        }
    };
    fs::copy(&genuine_file, inputs.keep).map_err(|e| format!("{}: {e}", inputs.keep.display()))?;

    // A chain from another CA: the other CA's root as the anchor, and an AK certificate the
    // other CA issued in the evidence.
    let other = other_ca(inputs)?;
    let other_root = inputs.other_ca.join(x509::ROOT_CERTIFICATE_FILE);
    verify.refused("another CA's root", &genuine, &[], Some(&other_root), "signature")?;
    let mut forged = genuine.clone();
    if let Some(tpm) = forged.tpm.as_mut() {
        tpm.ak_certificate = issue(&other)?;
        tpm.intermediates.push(HexBytes(other.intermediate_der().to_vec()));
    }
    verify.refused("an AK certificate from another CA", &forged, &[], None, "attestation key")?;
    let mut changed = genuine.clone();
    if let Some(pcr) = changed.tpm.as_mut().and_then(|t| t.pcrs.get_mut(0)) {
        pcr.0[0] ^= 1;
    }
    verify.refused("a changed PCR 17", &changed, &[], None, "pcrDigest")?;
    // The `launch` field is unsigned: edited to claim a DRTM, it is refused by PCR 17's value.
    let mut claimed = genuine.clone();
    if let Some(tpm) = claimed.tpm.as_mut() {
        tpm.launch = String::from("skinit");
    }
    verify.refused("a launch claimed as skinit", &claimed, &[], None, "PCR 17 shows")?;
    let other_identity = hex::encode(vpr_proto::Digest::of(b"another PAL").0);
    verify.refused(
        "a quote for another PAL",
        &genuine,
        &["--identity", &other_identity],
        None,
        // PCR 18's log shows which PALs ran: the first link to name the wrong PAL.
        "PAL",
    )?;
    let other_nonce = hex::encode(vpr_proto::Digest::of(b"a later request").0);
    verify.refused("a replayed nonce", &genuine, &["--nonce", &other_nonce], None, "nonce")?;
    let key = vpr_proto::crypto::KeyPair::generate(&mut rand_core::OsRng);
    let simulated = Evidence::simulated(&key, &identity, &inputs.nonce, &data);
    verify.refused("simulated evidence", &simulated, &[], None, "simulated evidence")?;
    verify.expect("simulated evidence, allowed", &simulated, &["--allow-simulation"], None)?;
    eprintln!(
        "qemu-test: vpr verify accepts the genuine chain ({}) and refuses another CA, a changed \
         PCR, a launch claimed as skinit, another PAL, a replayed nonce and simulated evidence \
         without --allow-simulation",
        inputs.keep.display()
    );
    Ok(())
}

/// `tpm2_checkquote` accepts the TPM quote (with the AK certificate's key) and the PAL's uTPM
/// quote (with the TCC key), each with its qualifying data.
fn stock_tools_accept(
    e: &Evidence,
    ak: &p256::PublicKey,
    inputs: &Inputs<'_>,
) -> Result<(), String> {
    let tpm = e.tpm.as_ref().ok_or("no TPM part")?;
    let quote = Quote::from_bytes(&tpm.quote).map_err(|e| format!("TPM quote: {e}"))?;
    let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(ak, false);
    let ak = point.as_bytes().get(1..).ok_or("empty attestation key")?;
    check_quote(
        inputs.state,
        "tpm-quote",
        &quote.attest,
        &quote.tpmt_signature(),
        ak,
        &inputs.nonce,
    )?;
    let pal = Quote::from_bytes(&e.pal_quote).map_err(|e| format!("uTPM quote: {e}"))?;
    let point = e.tcc_key.get(1..).ok_or("empty TCC key")?;
    let data = vpr_proto::Digest::of(EVIDENCE_DATA).0;
    let qualifying = [&inputs.nonce[..], &vpr_proto::utpm::caller_data(&data)[..]].concat();
    check_quote(
        inputs.state,
        "utpm-quote",
        &pal.attest,
        &pal.tpmt_signature(),
        point,
        &qualifying,
    )?;
    eprintln!(
        "qemu-test: tpm2_checkquote accepts the evidence's TPM quote and the PAL's uTPM quote"
    );
    Ok(())
}

/// The other CA (made by `qemu/tpm-setup.sh` with a throwaway TPM on first use).
fn other_ca(inputs: &Inputs<'_>) -> Result<x509::Ca, String> {
    if !inputs.other_ca.join(x509::ROOT_CERTIFICATE_FILE).is_file() {
        let state = inputs.other_ca.with_extension("tpm");
        install::run(
            Command::new(inputs.root.join("qemu/tpm-setup.sh")).arg(&state).arg(inputs.other_ca),
        )?;
        let _ = fs::remove_dir_all(&state);
    }
    x509::Ca::load(inputs.other_ca).map_err(|e| format!("the other CA: {e}"))
}

/// `vpr verify` runs against one expectation.
struct Verify<'a> {
    vpr: &'a Path,
    dir: &'a Path,
    root: &'a Path,
    identity: [u8; 32],
    data: [u8; 32],
    inputs: &'a Inputs<'a>,
}

impl Verify<'_> {
    /// Runs `vpr verify` on `evidence` (written to a file named after `case`) with `extra`
    /// arguments overriding the expected ones; its exit success and output.
    fn run(
        &self,
        case: &str,
        evidence: &Evidence,
        extra: &[&str],
        root: Option<&Path>,
    ) -> Result<(bool, String, PathBuf), String> {
        let file = self.dir.join(format!("evidence-{}.json", case.replace([' ', ','], "-")));
        fs::write(&file, evidence.to_json()).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut args: Vec<String> = vec![
            "verify".into(),
            file.display().to_string(),
            "--ca".into(),
            root.unwrap_or(self.root).display().to_string(),
        ];
        let defaults = [
            ("--nonce", hex::encode(self.inputs.nonce)),
            ("--identity", hex::encode(self.identity)),
            ("--data", hex::encode(self.data)),
            ("--hypervisor", self.inputs.hypervisor.to_string()),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag.to_string(), value]);
            }
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let output = Command::new(self.vpr)
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.vpr.display()))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("qemu-test: vpr verify ({case}): {}", text.lines().next().unwrap_or(""));
        Ok((output.status.success(), text, file))
    }

    /// `vpr verify` must accept; the evidence file.
    fn expect(
        &self,
        case: &str,
        evidence: &Evidence,
        extra: &[&str],
        root: Option<&Path>,
    ) -> Result<PathBuf, String> {
        match self.run(case, evidence, extra, root)? {
            (true, text, file) if text.starts_with("verified:") => Ok(file),
            (_, text, _) => Err(format!("vpr verify refuses {case}: {text}")),
        }
    }

    /// `vpr verify` must refuse, saying `why`.
    fn refused(
        &self,
        case: &str,
        evidence: &Evidence,
        extra: &[&str],
        root: Option<&Path>,
        why: &str,
    ) -> Result<(), String> {
        match self.run(case, evidence, extra, root)? {
            (false, text, _) if text.starts_with("refused:") && text.contains(why) => Ok(()),
            (_, text, _) => {
                Err(format!("vpr verify on {case}: expected a refusal ({why}), got {text}"))
            }
        }
    }
}
