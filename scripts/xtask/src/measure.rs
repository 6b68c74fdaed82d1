//! The hypervisor's measurement, recomputed from its image file: the SHA-256 of every byte the
//! loader puts between `__image_start` and `__load_end` (the multiboot header, code,
//! read-only data and `.data` with its GOT and vtables), which the image hashes at boot, logs,
//! and extends into PCR 17. A run
//! whose logged measurement differs from the file's fails: the log would not describe the
//! image that was built.

use crate::{install, qemu};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::process::Command;

/// The lowercase hex SHA-256 of the image's loaded bytes, from the file at `image`.
pub fn expected(image: &Path) -> Result<String, String> {
    vpr_host::machine::hypervisor_measurement(image)
}

/// The measurement a boot log line reports, if `line` is the image's measurement line.
pub fn logged(line: &str) -> Option<&str> {
    let rest = line.split("hv: measurement sha256=").nth(1)?;
    let hex = rest.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// What a verifier expects of the production images built from this checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Measurements {
    /// The hypervisor's measurement (hex).
    hypervisor: String,
    /// The SHA-256 of the hypervisor image file (hex).
    hypervisor_file: String,
    /// The PAL's identity: the SHA-256 of its file (hex).
    pal: String,
}

/// Builds the production images of the checkout at `root` and measures them.
fn build_and_measure(root: &Path) -> Result<Measurements, String> {
    install::rust_target()?;
    let image = qemu::build_image(root, qemu::Image::Production)?;
    let pal = qemu::build_pal_image(root, qemu::Image::Production)?;
    Ok(Measurements {
        hypervisor: expected(&image)?,
        hypervisor_file: file_digest(&image)?,
        pal: file_digest(&pal)?,
    })
}

/// The lowercase hex SHA-256 of the file at `path`.
fn file_digest(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The first line `tool --version` prints, run in `root`.
fn version(root: &Path, tool: &str) -> String {
    match Command::new(tool).arg("--version").current_dir(root).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("?").to_string(),
        Err(e) => format!("? ({e})"),
    }
}

/// `cargo xtask measure [--again]`.
pub fn run(root: &Path, again: bool) -> Result<(), String> {
    let dirty = dirty(root);
    if dirty && again {
        return Err(String::from(
            "the checkout has uncommitted or untracked changes: --again builds a clone of HEAD, \
             which would not have them; commit them first",
        ));
    }
    let first = build_and_measure(root)?;
    if dirty {
        println!("(values of the working tree, which has uncommitted or untracked changes)");
    }
    // Every input the values depend on besides the commit (docs/hypervisor.md, "Reproducing
    // the measurements").
    println!("toolchain:                  {}", version(root, "rustc"));
    println!("C compiler (SQLite):        {}", version(root, "gcc"));
    println!("linker (PAL):               {}", version(root, "ld.bfd"));
    println!("hypervisor measurement:     {} (PCR 17 = SHA-256(ones || it))", first.hypervisor);
    println!("hypervisor image file:      {}", first.hypervisor_file);
    println!("PAL identity (its file):    {}", first.pal);
    if !again {
        return Ok(());
    }
    // A fresh clone of HEAD in another folder, built with target directories of its own.
    let elsewhere = std::env::temp_dir().join(format!("vpr-measure-again-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&elsewhere);
    install::run(
        Command::new("git").args(["clone", "--quiet", "--no-hardlinks"]).arg(root).arg(&elsewhere),
    )?;
    let second = build_and_measure(&elsewhere);
    let _ = std::fs::remove_dir_all(&elsewhere);
    let second = second?;
    println!(
        "again, in {}: {}",
        elsewhere.display(),
        if second == first { "identical" } else { "DIFFERENT" }
    );
    if second != first {
        return Err(format!(
            "two builds differ: {first:?} here, {second:?} in {}",
            elsewhere.display()
        ));
    }
    Ok(())
}

/// Whether the checkout at `root` has changes `git clone` would not carry (untracked files
/// included; ignored ones not).
fn dirty(root: &Path) -> bool {
    Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(root)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_is_recognized_exactly() {
        let hex = "ab".repeat(32);
        let line = format!("[0][INFO][vpr_hypervisor] hv: measurement sha256={hex} (header...)");
        assert_eq!(logged(&line), Some(hex.as_str()));
        assert_eq!(logged("hv: measurement sha256=abc (x)"), None);
        assert_eq!(logged("hv: module 0 (the PAL image): 1 bytes, sha256=00"), None);
    }
}
