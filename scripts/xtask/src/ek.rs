//! The TPM's endorsement key certificate: `qemu/tpm-setup.sh` writes it (DER) beside the TPM
//! state; it must chain to the local CA that plays the manufacturer (checked with `openssl
//! verify`), and the hypervisor must read the same bytes out of the TPM's NV at boot (its log
//! gives their SHA-256).

use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The RSA EK certificate file `tpm-setup.sh` writes in the state folder.
const EK_CERT: &str = "ek-rsa2048.crt";

/// Checks that the EK certificate in `state` chains to the root of the CA in `ca` (through
/// its intermediate); returns the certificate's SHA-256 (lowercase hex).
pub fn check_chain(state: &Path, ca: &Path) -> Result<String, String> {
    crate::install::openssl()?;
    let der = state.join(EK_CERT);
    let bytes = fs::read(&der).map_err(|e| format!("{}: {e}", der.display()))?;
    let pem = state.join("ek-rsa2048.pem");
    crate::install::run(
        Command::new("openssl")
            .args(["x509", "-inform", "der", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem),
    )?;
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca.join("ca/swtpm-localca-rootca-cert.pem"))
        .arg("-untrusted")
        .arg(ca.join("ca/issuercert.pem"))
        .arg(&pem)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !verify.status.success() {
        return Err(format!(
            "the EK certificate does not chain to the local CA: {}",
            String::from_utf8_lossy(&verify.stdout).trim()
        ));
    }
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Checks the boot log's EK certificate line against `expected` (the file's SHA-256).
pub fn check_logged(expected: &str, lines: &[String]) -> Result<(), String> {
    match lines.iter().find_map(|line| logged(line)) {
        Some(digest) if digest == expected => {
            eprintln!("qemu-test: the hypervisor read the EK certificate the TPM was made with");
            Ok(())
        }
        Some(digest) => Err(format!(
            "the hypervisor read an EK certificate with SHA-256 {digest}, the TPM was made \\
             with {expected}"
        )),
        None => Err(String::from("the hypervisor logged no EK certificate")),
    }
}

/// The SHA-256 an EK certificate log line gives, if `line` is one.
pub fn logged(line: &str) -> Option<&str> {
    let rest = line.split("hv: TPM EK certificate").nth(1)?;
    let hex = rest.split("sha256=").nth(1)?.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_is_recognized() {
        let hex = "0f".repeat(32);
        let line = format!(
            "[0][INFO][tpm] hv: TPM EK certificate (RSA, NV 0x1c00002): 1016 bytes, sha256={hex}"
        );
        assert_eq!(logged(&line), Some(hex.as_str()));
        assert_eq!(logged("hv: TPM EK certificate: sha256=12"), None);
        assert_eq!(logged("hv: measurement sha256=00"), None);
        let lines = vec![line];
        assert!(check_logged(&hex, &lines).is_ok());
        assert!(check_logged(&"1f".repeat(32), &lines).is_err());
        assert!(check_logged(&hex, &[]).is_err());
    }
}
