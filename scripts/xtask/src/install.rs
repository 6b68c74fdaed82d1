//! Installing what the tasks need when it is missing.

use std::path::Path;
use std::process::{Command, Stdio};

/// The Rust target the hypervisor image is built for.
pub const IMAGE_TARGET: &str = "x86_64-unknown-none";

/// Runs `command`, failing with its name and status unless it succeeds.
pub fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}

/// Whether `program --version` runs.
fn runs(program: &str) -> bool {
    answers(program, "--version")
}

/// Whether `program arg` runs and succeeds.
fn answers(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Adds the image's target with rustup unless the toolchain already has it.
pub fn rust_target() -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot).join("lib/rustlib").join(IMAGE_TARGET).is_dir() {
        return Ok(());
    }
    eprintln!("xtask: installing the {IMAGE_TARGET} target");
    run(Command::new("rustup").args(["target", "add", IMAGE_TARGET]))
}

/// Installs QEMU's x86 system emulator with apt unless `qemu` runs.
pub fn qemu(qemu: &str) -> Result<(), String> {
    apt_unless_runs(qemu, &["qemu-system-x86"])
}

/// Installs the software TPM (swtpm, and swtpm-tools for its set-up) with apt unless
/// `swtpm` runs.
pub fn swtpm() -> Result<(), String> {
    apt_unless_runs("swtpm", &["swtpm", "swtpm-tools"])
}

/// Installs tpm2-tools (tpm2_checkquote checks the TPM quote) with apt unless it runs.
pub fn tpm2_tools() -> Result<(), String> {
    apt_unless_runs("tpm2_checkquote", &["tpm2-tools"])
}

/// Installs openssl (it checks EK certificate chains) with apt unless `openssl version` runs.
pub fn openssl() -> Result<(), String> {
    if answers("openssl", "version") {
        return Ok(());
    }
    apt_install("openssl", &["openssl"])?;
    if answers("openssl", "version") {
        Ok(())
    } else {
        Err(String::from("openssl still does not run after installing it"))
    }
}

/// Installs `packages` with apt-get (through sudo when not root) unless `program --version`
/// runs; fails if it still does not run afterwards.
fn apt_unless_runs(program: &str, packages: &[&str]) -> Result<(), String> {
    if runs(program) {
        return Ok(());
    }
    apt_install(program, packages)?;
    if runs(program) {
        Ok(())
    } else {
        Err(format!("{program} still does not run after installing {}", packages.join(" ")))
    }
}

/// Installs `packages` with apt-get, through sudo when not root.
fn apt_install(program: &str, packages: &[&str]) -> Result<(), String> {
    eprintln!("xtask: {program} not found; installing {} with apt-get", packages.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            command.arg("apt-get");
        }
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    apt(&["update", "-qq"])?;
    let mut install = Vec::from(["install", "-y", "-qq", "--no-install-recommends"]);
    install.extend_from_slice(packages);
    apt(&install)
}
