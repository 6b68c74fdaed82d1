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

/// Builds the production images of the checkout at `root`, with cargo's home at `home`, and
/// measures them.
fn build_and_measure(root: &Path, home: &Path) -> Result<Measurements, String> {
    install::rust_target()?;
    let image = qemu::build_image_in(root, qemu::Image::Production, home)?;
    let pal = qemu::build_pal_image_in(root, qemu::Image::Production, home)?;
    let folders = [home.to_path_buf(), root.to_path_buf()];
    for file in [&image, &pal] {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if let Some(folder) = build_folder_in(&bytes, &folders) {
            return Err(format!(
                "{} names the build machine's folder {folder}: a build elsewhere would not \
                 measure the same",
                file.display()
            ));
        }
    }
    Ok(Measurements {
        hypervisor: expected(&image)?,
        hypervisor_file: file_digest(&image)?,
        pal: file_digest(&pal)?,
    })
}

/// The first of `folders` (absolute paths of the build machine) that `image` names, if any.
fn build_folder_in(image: &[u8], folders: &[std::path::PathBuf]) -> Option<String> {
    folders.iter().map(|f| f.display().to_string()).find(|folder| {
        folder.len() > 1 && image.windows(folder.len()).any(|w| w == folder.as_bytes())
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
    let first = build_and_measure(root, &qemu::cargo_home())?;
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
    // A fresh clone of HEAD in another folder, built with target directories of its own and
    // with cargo's home in yet another folder (its registry the same files, reached through a
    // symbolic link: rustc sees the other path).
    let elsewhere = std::env::temp_dir().join(format!("vpr-measure-again-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&elsewhere);
    let (clone, home) = (elsewhere.join("vpr"), elsewhere.join("cargo-home"));
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    let registry = qemu::cargo_home().join("registry");
    std::os::unix::fs::symlink(&registry, home.join("registry"))
        .map_err(|e| format!("linking {}: {e}", registry.display()))?;
    install::run(
        Command::new("git").args(["clone", "--quiet", "--no-hardlinks"]).arg(root).arg(&clone),
    )?;
    let second = build_and_measure(&clone, &home);
    let _ = std::fs::remove_dir_all(&elsewhere);
    let second = second?;
    println!(
        "again, in {} with CARGO_HOME={}: {}",
        clone.display(),
        home.display(),
        if second == first { "identical" } else { "DIFFERENT" }
    );
    if second != first {
        return Err(format!(
            "two builds differ: {first:?} here, {second:?} in {}",
            clone.display()
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
    fn a_build_folder_named_in_an_image_is_found() {
        let folders = [std::path::PathBuf::from("/home/u/.cargo"), "/src/vpr".into()];
        let image = b"\0panicked at /cargo/registry/src/x/lib.rs\0";
        assert_eq!(build_folder_in(image, &folders), None);
        let leaked = b"\0/home/u/.cargo/registry/src/x/lib.rs\0";
        assert_eq!(build_folder_in(leaked, &folders).as_deref(), Some("/home/u/.cargo"));
        assert_eq!(build_folder_in(b"at /src/vpr/x.rs", &folders).as_deref(), Some("/src/vpr"));
    }

    #[test]
    fn the_log_line_is_recognized_exactly() {
        let hex = "ab".repeat(32);
        let line = format!("[0][INFO][vpr_hypervisor] hv: measurement sha256={hex} (header...)");
        assert_eq!(logged(&line), Some(hex.as_str()));
        assert_eq!(logged("hv: measurement sha256=abc (x)"), None);
        assert_eq!(logged("hv: module 0 (the PAL image): 1 bytes, sha256=00"), None);
    }
}
