//! The TPM quote the self-test makes, checked by a stock tool: `tpm2_checkquote` (tpm2-tools)
//! must accept the quote the hypervisor logged (TPMS_ATTEST, its ECDSA signature as a
//! TPMT_SIGNATURE, the key as a PEM public key, the nonce) and refuse it with another nonce.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// The DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480: id-ecPublicKey, prime256v1,
/// a 66-byte BIT STRING with no unused bits); the uncompressed point follows.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

/// Checks the quote logged in `lines` with tpm2_checkquote, writing its files in `dir`.
pub fn check(lines: &[String], dir: &Path) -> Result<(), String> {
    let line = lines
        .iter()
        .find(|l| l.contains("hv: TPM quote for tpm2_checkquote:"))
        .ok_or("the hypervisor logged no quote")?;
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let value = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| format!("the quote line has no {name}"))?;
        unhex(value).ok_or_else(|| format!("the quote's {name} is not hex"))
    };
    let (attest, r, s, point, nonce) =
        (field("attest")?, field("r")?, field("s")?, field("point")?, field("nonce")?);
    // TPMT_SIGNATURE (TPM 2.0 Part 2 §11.3.4): TPM_ALG_ECDSA, TPM_ALG_SHA256, r and s as TPM2Bs.
    let mut signature = Vec::from([0x00, 0x18, 0x00, 0x0B]);
    for part in [&r, &s] {
        let len = u16::try_from(part.len()).map_err(|_| "r or s too long")?;
        signature.extend_from_slice(&len.to_be_bytes());
        signature.extend_from_slice(part);
    }
    check_quote(dir, "quote", &attest, &signature, &point, &nonce)?;
    eprintln!("qemu-test: tpm2_checkquote accepts the TPM quote (and refuses another nonce)");
    Ok(())
}

/// Has `tpm2_checkquote` check a quote — `attest` (a TPMS_ATTEST), `signature` (a
/// TPMT_SIGNATURE) by the P-256 key whose point is `point` (x || y), qualifying data
/// `qualifying` — which it must accept, and refuse with other qualifying data. The files go
/// to `dir`, named after `name`.
pub fn check_quote(
    dir: &Path,
    name: &str,
    attest: &[u8],
    signature: &[u8],
    point: &[u8],
    qualifying: &[u8],
) -> Result<(), String> {
    let mut spki = unhex(P256_SPKI_PREFIX).ok_or("bad SPKI prefix")?;
    spki.push(4);
    spki.extend_from_slice(point);
    let write = |suffix: &str, bytes: &[u8]| {
        let path = dir.join(format!("{name}.{suffix}"));
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display())).map(|()| path)
    };
    let (message, sig, der) =
        (write("msg", attest)?, write("sig", signature)?, write("key.der", &spki)?);
    let pem = dir.join(format!("{name}.key.pem"));
    crate::install::run(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "der", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem),
    )?;
    crate::install::tpm2_tools()?;
    let checkquote = |qualifying: &str| {
        Command::new("tpm2_checkquote")
            .arg("-u")
            .arg(&pem)
            .arg("-m")
            .arg(&message)
            .arg("-s")
            .arg(&sig)
            .args(["-g", "sha256", "-q", qualifying])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !checkquote(&hex::encode(qualifying)) {
        return Err(format!("tpm2_checkquote refuses the {name}"));
    }
    if checkquote("00ff") {
        return Err(format!("tpm2_checkquote accepts the {name} with other qualifying data"));
    }
    Ok(())
}

/// The bytes of a hex string, if it is one.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_missing_lines() {
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0f1"), None);
        assert_eq!(unhex("zz"), None);
        let dir = std::env::temp_dir();
        assert!(check(&[String::from("nothing here")], &dir).is_err());
    }
}
