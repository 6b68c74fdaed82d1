//! `qemu-test`: build the hypervisor image and the PAL image, start a software TPM (swtpm)
//! with a fresh state, boot the hypervisor with the PAL image as its module 0 (`-initrd`) and
//! the TPM on QEMU's TIS interface, judge the run.
//!
//! The image reports through two channels that must agree: its serial log ends with
//! `N passed, M failed`, and it ends QEMU through the isa-debug-exit device, which turns the
//! value v written to port 0xf4 into QEMU's exit status (v << 1) | 1. Success is v = 0x10,
//! status 33. Anything else fails the run — notably status 0, which is what QEMU returns when
//! the machine triple-faults under `-no-reboot`.

use crate::install::{self, IMAGE_TARGET};
use crate::{checkquote, ek, evidence, measure};
use crate::{Accel, QemuTestOptions};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
pub use vpr_host::machine::Swtpm;

/// The QEMU binary.
const QEMU: &str = "qemu-system-x86_64";
/// QEMU's exit status when the image writes 0x10 to isa-debug-exit.
pub const SUCCESS_STATUS: i32 = (0x10 << 1) | 1;
/// A smaller, faster firmware than SeaBIOS for `-kernel` boots (Debian's qemu-system-data).
const QBOOT: &str = "/usr/share/qemu/qboot.rom";
/// The profile and target directory of the image build (kept apart from host builds).
const PROFILE: &str = "freestanding";

/// Which hypervisor image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The production image: Linux and its PALs only (replica VMs, `linux-test`).
    Production,
    /// The test image (feature `selftest`): the boot self-test, its test guests, PALs and
    /// benchmarks (`qemu-test`). Its own measurement: it opens none of the production
    /// image's sealed state.
    Test,
}

impl Image {
    /// Its target directory (kept apart from host builds, and from each other's so that
    /// neither rebuilds the other).
    fn target_dir(self) -> &'static str {
        match self {
            Image::Production => "target/hypervisor",
            Image::Test => "target/hypervisor-test",
        }
    }

    /// The target directory of its PAL image (the production one shared with the
    /// freestanding self-test).
    fn pal_target_dir(self) -> &'static str {
        match self {
            Image::Production => "target/image",
            Image::Test => "target/image-test",
        }
    }
}
/// The code generation flag the image cannot do without (it is loaded at a fixed address).
const STATIC_RELOCATIONS: &str = "relocation-model=static";

/// Memory of the QEMU machine: the self-test registers two SQL PALs of about 50 MiB each.
const MEMORY: &str = "512M";

/// Where `image` is built.
pub fn image_path(root: &Path, image: Image) -> PathBuf {
    root.join(image.target_dir()).join(IMAGE_TARGET).join(PROFILE).join("vpr-hypervisor")
}

/// Where the PAL image (`pal/image`, the `vpr-pal-image` binary) of `image`'s kind is built:
/// the production PAL (the Manager's commands only) or the test PAL (feature `bare`: the bare
/// service too, for the self-test and `vpr pal-smoke`).
pub fn pal_image_path(root: &Path, image: Image) -> PathBuf {
    root.join(image.pal_target_dir()).join(PROFILE).join("vpr-pal-image")
}

/// Builds the PAL image of `image`'s kind (a static executable for the host's x86-64, linked
/// at the address the hypervisor's PAL ABI gives) and returns its path.
pub fn build_pal_image(root: &Path, image: Image) -> Result<PathBuf, String> {
    build_pal_image_in(root, image, &cargo_home())
}

/// [`build_pal_image`] with cargo's home at `home`.
pub fn build_pal_image_in(root: &Path, image: Image, home: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .env("CARGO_HOME", home)
        .args(["build", "--locked", "--package", "vpr-pal-image", "--bin", "vpr-pal-image"])
        .args(["--profile", PROFILE, "--target-dir", image.pal_target_dir()]);
    if image == Image::Test {
        build.args(["--features", "bare"]);
    }
    // The PAL builds for the host's target, for which .cargo/config.toml sets no flags.
    build.args(["--config", &rustflags_config("build", &[remap_flag(home)])]);
    install::run(&mut build)?;
    Ok(pal_image_path(root, image))
}

/// Builds the `vpr` binary (debug, as the tests use it) and returns its path.
pub fn build_vpr(root: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    install::run(Command::new(cargo).current_dir(root).args([
        "build",
        "--package",
        "vpr-host",
        "--bin",
        "vpr",
    ]))?;
    Ok(root.join("target/debug/vpr"))
}

/// Where cargo keeps the registry's sources: `$CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
    }
}

/// What cargo's home is called inside the images: the crates' source paths that panic
/// messages carry name it instead of this machine's folder, so that a build elsewhere (another
/// user, another `CARGO_HOME`) is byte-identical. The checkout's own paths are relative
/// already (cargo names a workspace member's files from its root), and the standard library's
/// come precompiled as `/rustc/<commit>/`.
pub const CARGO_HOME_IN_IMAGES: &str = "/cargo";

/// The rustc flag that renames cargo's home `home` to [`CARGO_HOME_IN_IMAGES`].
fn remap_flag(home: &Path) -> String {
    format!("--remap-path-prefix={}={CARGO_HOME_IN_IMAGES}", home.display())
}

/// A `--config` value that adds `flags` to the rustflags of `table` (`build` or
/// `target.<triple>`): cargo joins arrays of a `--config` with those of its config files.
fn rustflags_config(table: &str, flags: &[String]) -> String {
    let quoted: Vec<String> = flags.iter().map(|f| toml_string(f)).collect();
    format!("{table}.rustflags=[{}]", quoted.join(", "))
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds `image` and returns its path.
pub fn build_image(root: &Path, image: Image) -> Result<PathBuf, String> {
    build_image_in(root, image, &cargo_home())
}

/// [`build_image`] with cargo's home at `home`.
pub fn build_image_in(root: &Path, image: Image, home: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .env("CARGO_HOME", home)
        .args(["build", "--locked", "--package", "vpr-hypervisor", "--bin", "vpr-hypervisor"])
        .args(["--target", IMAGE_TARGET, "--profile", PROFILE])
        .args(["--target-dir", image.target_dir()]);
    if image == Image::Test {
        build.args(["--features", "selftest"]);
    }
    // Added to the `[target.x86_64-unknown-none]` flags of .cargo/config.toml.
    build.args([
        "--config",
        &rustflags_config(&format!("target.{IMAGE_TARGET}"), &[remap_flag(home)]),
    ]);
    // RUSTFLAGS from the environment replace those flags, among them the static relocation
    // model the image needs: keep it (and the remapping).
    for (var, separator) in [("CARGO_ENCODED_RUSTFLAGS", "\x1f"), ("RUSTFLAGS", " ")] {
        if let Ok(flags) = std::env::var(var) {
            if !flags.is_empty() {
                let flags = format!(
                    "{flags}{separator}-C{separator}{STATIC_RELOCATIONS}{separator}{}",
                    remap_flag(home)
                );
                build.env(var, flags);
            }
        }
    }
    install::run(&mut build)?;
    Ok(image_path(root, image))
}

/// The QEMU command line for `image` with `modules` (multiboot modules, in order) and, if
/// given, the control socket of a swtpm to attach as a TIS TPM at 0xFED40000.
pub fn command_line(
    image: &Path,
    modules: &[PathBuf],
    tpm: Option<&Path>,
    append: Option<&str>,
    kvm: bool,
    qboot: bool,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["-kernel".into(), image.display().to_string()];
    args.extend(vpr_host::machine::console_args(MEMORY));
    args.extend(["-device".into(), "isa-debug-exit,iobase=0xf4,iosize=0x04".into()]);
    if !modules.is_empty() {
        let list: Vec<String> = modules.iter().map(|m| m.display().to_string()).collect();
        args.extend(["-initrd".into(), list.join(",")]);
    }
    if let Some(append) = append {
        args.extend(["-append".into(), append.into()]);
    }
    if let Some(socket) = tpm {
        args.extend(vpr_host::machine::tpm_args(socket));
    }
    let (accel, cpu) = if kvm { ("kvm", "host") } else { ("tcg", "max") };
    args.extend(["-accel".into(), accel.into(), "-cpu".into(), cpu.into()]);
    if qboot {
        args.extend(["-bios".into(), QBOOT.into()]);
    }
    args
}

/// The counts in a `N passed, M failed` line, if `line` is one.
pub fn summary(line: &str) -> Option<(u32, u32)> {
    let (passed, failed) = line.trim().split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(passed) || !all_digits(failed) {
        return None;
    }
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

/// Kills QEMU if it is still running when dropped (timeout, error, panic).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Copies `stream` line by line to our stdout and sends each line to `lines`.
fn stream(
    stream: impl Read + Send + 'static,
    lines: mpsc::Sender<String>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let line = line.trim_end_matches('\r').to_string();
            println!("{line}");
            if lines.send(line).is_err() {
                break;
            }
        }
    })
}

/// The whole task.
pub fn test(root: &Path, options: &QemuTestOptions) -> Result<(), String> {
    install::rust_target()?;
    let image = build_image(root, Image::Test)?;
    let image_bytes = fs::metadata(&image).map_err(|e| format!("{}: {e}", image.display()))?.len();
    let pal = build_pal_image(root, Image::Test)?;
    if pal.display().to_string().contains(',') {
        return Err(format!("{}: QEMU cannot take a module path with a comma", pal.display()));
    }
    install::qemu(QEMU)?;

    let kvm = match options.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => vpr_host::machine::kvm_usable(),
    };
    let accel = if kvm { "kvm" } else { "tcg" };
    // A fresh TPM for every run (its state folder is removed afterwards), provisioned by the
    // local CA kept in target/tpm/ca.
    let tpm_dir = root.join("target/tpm").join(format!("qemu-test-{}", std::process::id()));
    let ca = root.join("target/tpm/ca");
    install::swtpm()?;
    let swtpm = Swtpm::start(root, tpm_dir, &ca)?;
    let ek = ek::check_chain(&swtpm.dir, &ca)?;
    eprintln!("qemu-test: the TPM's EK certificate chains to the local CA (openssl verify)");
    let qboot = Path::new(QBOOT).is_file();
    eprintln!("qemu-test: image {} ({image_bytes} bytes), {accel}", image.display());
    let mut swtpm = swtpm;

    // Boot 1: the whole self-test; the production PAL image as module 1.
    let production_pal = build_pal_image(root, Image::Production)?;
    let modules = [pal.clone(), production_pal];
    let args = command_line(&image, &modules, Some(&swtpm.socket), None, kvm, qboot);
    let first = boot(&args, options.timeout, accel)?;
    let first_verdict =
        first.verdict(&image, &ek).and_then(|()| checkquote::check(&first.lines, &swtpm.dir));
    // The CA's credential for the attestation key boot 1 logged, for boot 2 to activate.
    let credential = evidence::make_credential(&first.lines, &swtpm.dir);
    // Boot 2, on the same TPM state: what must survive a reboot, and what must not. The
    // blob boot 1 sealed goes along as module 1, as a guest would keep it on its disk, the
    // credential as module 2; a fresh nonce on the command line asks for evidence.
    swtpm.restart()?;
    let sealed = first.lines.iter().find_map(|line| sealed_blob(line)).unwrap_or_default();
    let sealed_path = swtpm.dir.join("sealed-for-boot-2.bin");
    fs::write(&sealed_path, sealed).map_err(|e| format!("{}: {e}", sealed_path.display()))?;
    // Modules keep their numbers whatever boot 1 left out: an empty file stands in.
    let placeholder = |name: &str| -> Result<PathBuf, String> {
        let path = swtpm.dir.join(name);
        fs::write(&path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    };
    let credential_path = match &credential {
        Ok(credential) => credential.module.clone(),
        Err(_) => placeholder("no-credential.bin")?,
    };
    let manager_path = swtpm.dir.join("manager-for-boot-2.bin");
    match manager_state(&first.lines) {
        Some(state) => fs::write(&manager_path, state)
            .map_err(|e| format!("{}: {e}", manager_path.display()))?,
        None => fs::write(&manager_path, b"").map_err(|e| format!("{e}"))?,
    }
    let modules = Vec::from([pal.clone(), sealed_path, credential_path, manager_path]);
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let append = format!("vpr.boot=2 vpr.nonce={}", hex::encode(nonce));
    let args = command_line(&image, &modules, Some(&swtpm.socket), Some(&append), kvm, qboot);
    let second = boot(&args, options.timeout, accel)?;
    let hypervisor = measure::expected(&image)?;
    let keep = root.join("target/tpm/evidence.json");
    let inputs = evidence::Inputs {
        root,
        state: &swtpm.dir,
        ca: &ca,
        other_ca: &root.join("target/tpm/other-ca"),
        pal: &pal,
        hypervisor: &hypervisor,
        nonce,
        keep: &keep,
    };
    let second_verdict = second
        .verdict(&image, &ek)
        .and(same_tcc_key(&first.lines, &second.lines))
        .and(credential.and_then(|made| evidence::check(&second.lines, &made, &inputs)));
    // Boot 3, on the same TPM state again: the image with a pointer in its `.data` changed.
    swtpm.restart()?;
    let third_verdict = patched_data_refused(&image, &swtpm, options.timeout, accel, kvm, qboot);
    // Boot 4, after the TPM's owner deleted a counter page and defined it again.
    let fourth_verdict =
        deleted_counter_page_refused(&image, &mut swtpm, options.timeout, accel, kvm, qboot);
    // Boot 5, after the TPM's owner replaced the master secret's index.
    let fifth_verdict =
        hostile_owner_refused(&image, &mut swtpm, options.timeout, accel, kvm, qboot);
    // Boot 6: the production image, told to run the self-test.
    let sixth_verdict = production_refuses_selftest(root, options.timeout, accel, kvm, qboot);
    drop(swtpm);

    // The closing line: both boots' counts, a boot that never printed them counting as one
    // failure.
    let (p1, f1) = first.counts.unwrap_or((0, 1));
    let (p2, f2) = second.counts.unwrap_or((0, 1));
    println!("{} passed, {} failed", p1 + p2, f1 + f2);
    first_verdict.map_err(|e| format!("first boot: {e}"))?;
    second_verdict.map_err(|e| format!("second boot: {e}"))?;
    third_verdict.map_err(|e| format!("third boot (a patched .data): {e}"))?;
    fourth_verdict.map_err(|e| format!("fourth boot (a deleted counter page): {e}"))?;
    fifth_verdict.map_err(|e| format!("fifth boot (a hostile TPM owner): {e}"))?;
    sixth_verdict.map_err(|e| format!("sixth boot (the production image): {e}"))
}

/// The production image has no self-test: booted as the test image is (no `vpr.guest=linux`),
/// it must refuse, say why and end QEMU with the failure status; and its measurement must
/// differ from the test image's.
fn production_refuses_selftest(
    root: &Path,
    timeout: Duration,
    accel: &str,
    kvm: bool,
    qboot: bool,
) -> Result<(), String> {
    let production = build_image(root, Image::Production)?;
    let test = image_path(root, Image::Test);
    if measure::expected(&production)? == measure::expected(&test)? {
        return Err(String::from("the production and test images measure the same"));
    }
    let args = command_line(&production, &[], None, None, kvm, qboot);
    let sixth = boot(&args, timeout, accel)?;
    if sixth.lines.iter().any(|l| l.contains("selftest") && l.contains(": ok")) {
        return Err(String::from("the production image ran a self-test"));
    }
    if !sixth.lines.iter().any(|l| l.contains("hv: this is the production image")) {
        return Err(String::from("the production image did not say why it refused"));
    }
    if sixth.status.and_then(|s| s.code()) == Some(SUCCESS_STATUS) {
        return Err(String::from("the production image exited with the success status"));
    }
    eprintln!(
        "qemu-test: the production image (measured apart from the test image) refuses to run \
         a self-test"
    );
    Ok(())
}

/// Counter page 0's NV index, as `vpr_hypervisor::tpm::counters` places it.
const COUNTER_PAGE_0: &str = "0x01800000";

/// The TPM's owner tries to roll the trusted counters back between boots. It can neither
/// write nor read page 0 (the TPM refuses both: the pages give the owner no access), so it
/// deletes it and defines it again exactly as the hypervisor would (same attributes, size
/// and policy: only this launch can write it, so it stays unwritten). Read as it is, it
/// would be a page of counters at zero; the genuine image's next boot opens the master
/// secret and must refuse the counters instead.
fn deleted_counter_page_refused(
    image: &Path,
    swtpm: &mut Swtpm,
    timeout: Duration,
    accel: &str,
    kvm: bool,
    qboot: bool,
) -> Result<(), String> {
    let policy = file(&swtpm.dir, "page-policy.bin", &bound_policy(&measure::expected(image)?)?)?;
    {
        let owner = OwnerTpm::start(&swtpm.dir)?;
        owner.refused_access(COUNTER_PAGE_0, 8, "counter page 0")?;
        owner.run("tpm2_nvundefine", &["-C", "o", COUNTER_PAGE_0])?;
        owner.run(
            "tpm2_nvdefine",
            &[
                "-C",
                "o",
                "-s",
                "488",
                "-a",
                "policywrite|policyread|no_da",
                "-L",
                &policy,
                COUNTER_PAGE_0,
            ],
        )?;
    }
    swtpm.restart()?;
    let args = command_line(image, &[], Some(&swtpm.socket), Some("vpr.guest=linux"), kvm, qboot);
    let fourth = boot(&args, timeout, accel)?;
    let seen = |text: &str| fourth.lines.iter().any(|l| l.contains(text));
    if !seen("hv: master secret read from the TPM") {
        return Err(String::from("the master secret did not open"));
    }
    if seen("hv: trusted counters read") || seen("hv: trusted counters made anew") {
        return Err(String::from("the hypervisor took the redefined counter page"));
    }
    if !seen("hv: trusted counters refused: counter page 0 (NV index 0x1800000) is in use but was never written") {
        return Err(String::from("the hypervisor did not say why it refused the counters"));
    }
    eprintln!(
        "qemu-test: the TPM's owner could neither read nor write a counter page, and the \
         hypervisor refused the counters once the owner deleted the page and defined it again"
    );
    Ok(())
}

/// How tpm2-tools reports TPM_RC_NV_AUTHORIZATION (TPM 2.0 Part 2 §6.6.3).
const NV_AUTHORIZATION: &str = "0x00000149";

/// The master secret's NV index, as `hypervisor/src/image/tpm.rs` places it.
const MASTER_NV_INDEX: &str = "0x01A00000";

/// The TPM's owner is not trusted (its password is empty, as on most machines). Between
/// boots it tries to read and to overwrite the master secret's index — the TPM refuses both:
/// the index gives the owner no access — then deletes it (an owner's index is the owner's to
/// delete) and defines a look-alike it can write: the same policy (PCR 17 of this image,
/// locality 2), plus owner write, holding zeros. The genuine image's next boot must refuse
/// that index rather than derive its keys from the owner's zeros.
fn hostile_owner_refused(
    image: &Path,
    swtpm: &mut Swtpm,
    timeout: Duration,
    accel: &str,
    kvm: bool,
    qboot: bool,
) -> Result<(), String> {
    let policy = file(&swtpm.dir, "master-policy.bin", &bound_policy(&measure::expected(image)?)?)?;
    let zeros = file(&swtpm.dir, "zeros.bin", &[0u8; 32])?;
    {
        let owner = OwnerTpm::start(&swtpm.dir)?;
        owner.refused_access(MASTER_NV_INDEX, 32, "the master secret")?;
        owner.run("tpm2_nvundefine", &["-C", "o", MASTER_NV_INDEX])?;
        let attributes = "ownerwrite|policywrite|writeall|policyread|no_da";
        owner.run(
            "tpm2_nvdefine",
            &["-C", "o", "-s", "32", "-a", attributes, "-L", &policy, MASTER_NV_INDEX],
        )?;
        owner.run("tpm2_nvwrite", &["-C", "o", "-i", &zeros, MASTER_NV_INDEX])?;
    }
    swtpm.restart()?;
    let args = command_line(image, &[], Some(&swtpm.socket), Some("vpr.guest=linux"), kvm, qboot);
    let fourth = boot(&args, timeout, accel)?;
    let seen = |text: &str| fourth.lines.iter().any(|l| l.contains(text));
    if seen("hv: master secret read from the TPM") || seen("hv: master secret made") {
        return Err(String::from("the hypervisor took the owner's index"));
    }
    if !seen("hv: the TPM's master secret does not open for this launch: NV index") {
        return Err(String::from("the hypervisor did not say why it refused the owner's index"));
    }
    eprintln!(
        "qemu-test: the TPM's owner could neither read nor overwrite the master secret, and the \
         hypervisor refused the owner-writable index that replaced it"
    );
    Ok(())
}

/// The policy of the master secret's index for the image whose measurement is
/// `measurement` (hex): TPM2_PolicyPCR of PCR 17 holding SHA-256(32 bytes of ones ||
/// measurement), then TPM2_PolicyLocality of locality 2 (TPM 2.0 Part 3 §23.7.1, §23.4.1).
fn bound_policy(measurement: &str) -> Result<[u8; 32], String> {
    use sha2::{Digest, Sha256};
    let measurement = hex::decode(measurement).map_err(|e| format!("measurement: {e}"))?;
    let pcr17 = Sha256::new().chain_update([0xFF; 32]).chain_update(&measurement).finalize();
    let pcr_digest = Sha256::digest(pcr17);
    // TPML_PCR_SELECTION: one selection, SHA-256, three bytes, PCR 17.
    let selection = [0, 0, 0, 1, 0x00, 0x0B, 3, 0x00, 0x00, 0x02];
    let after_pcr = Sha256::new()
        .chain_update([0; 32])
        .chain_update(0x0000_017Fu32.to_be_bytes())
        .chain_update(selection)
        .chain_update(pcr_digest)
        .finalize();
    let policy = Sha256::new()
        .chain_update(after_pcr)
        .chain_update(0x0000_016Fu32.to_be_bytes())
        .chain_update([1u8 << 2])
        .finalize();
    Ok(policy.into())
}

/// Writes `bytes` to the file `name` in `dir`; its path.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, String> {
    let path = dir.join(name);
    fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// swtpm on a machine's TPM state with its TCP interface (no QEMU attached), for tpm2-tools
/// acting as the TPM's owner; stopped when dropped.
struct OwnerTpm {
    child: std::process::Child,
    port: u16,
}

impl OwnerTpm {
    /// Starts swtpm on `dir` (TPM2_Startup done), its commands on a free port and its control
    /// channel on the next, as tpm2-tools' swtpm TCTI expects.
    fn start(dir: &Path) -> Result<OwnerTpm, String> {
        let port = (20_000..30_000u16)
            .find(|&p| {
                let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
                free(p) && free(p + 1)
            })
            .ok_or("no two free TCP ports for swtpm")?;
        let child = std::process::Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start swtpm: {e}"))?;
        let owner = OwnerTpm { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(String::from("swtpm's TCP interface did not come up"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(owner)
    }

    /// Reads and writes `size` bytes of NV index `index` (`what`) as the owner: both must be
    /// refused by the TPM itself, TPM_RC_NV_AUTHORIZATION (0x149), not by some other failure
    /// of the tools.
    fn refused_access(&self, index: &str, size: usize, what: &str) -> Result<(), String> {
        let dir = std::env::temp_dir();
        let zeros = file(&dir, &format!("vpr-owner-zeros-{}", std::process::id()), &vec![0; size])?;
        let read = self.run("tpm2_nvread", &["-C", "o", "-s", &size.to_string(), index]);
        let write = self.run("tpm2_nvwrite", &["-C", "o", "-i", &zeros, index]);
        let _ = fs::remove_file(&zeros);
        for (done, result) in [("read", read), ("overwrote", write)] {
            match result {
                Ok(()) => return Err(format!("the owner {done} {what}")),
                Err(e) if e.contains(NV_AUTHORIZATION) => {}
                Err(e) => {
                    return Err(format!("the owner's attempt on {what} failed otherwise: {e}"))
                }
            }
        }
        Ok(())
    }

    /// Runs a tpm2-tools command on this TPM; its error output if it fails.
    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new(tool)
            .arg("-T")
            .arg(format!("swtpm:host=127.0.0.1,port={}", self.port))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{tool} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }
}

impl Drop for OwnerTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A boot loader that patches a pointer in the image's `.data` (a GOT slot, a vtable pointer,
/// a static's initial value) changes where the code goes without touching the code. Boot 3
/// runs a copy of the image with the `log` crate's logger pointer changed (an initial value
/// the image overwrites before its first use, so the boot goes as far as the genuine one),
/// on the TPM state the genuine image wrote: its measurement must differ from the genuine
/// one, and the master secret, bound to PCR 17, must not open.
fn patched_data_refused(
    image: &Path,
    swtpm: &Swtpm,
    timeout: Duration,
    accel: &str,
    kvm: bool,
    qboot: bool,
) -> Result<(), String> {
    let mut bytes = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let logger = logger_symbol(image)?;
    let slot = vpr_host::machine::file_range(&bytes, logger, logger + 8)?;
    let data_start = vpr_host::machine::image_symbol(image, "__data_start")?;
    if logger < data_start {
        return Err(format!("the logger pointer at {logger:#x} is not in .data"));
    }
    for byte in &mut bytes[slot] {
        *byte ^= 0x40;
    }
    let patched = swtpm.dir.join("vpr-hypervisor-patched-data");
    fs::write(&patched, &bytes).map_err(|e| format!("{}: {e}", patched.display()))?;
    let genuine = measure::expected(image)?;
    let expected = measure::expected(&patched)?;
    if expected == genuine {
        return Err(String::from("the measurement does not cover the patched pointer"));
    }
    // An OS boot without a kernel: the launch and the master secret, then the refusal.
    let args =
        command_line(&patched, &[], Some(&swtpm.socket), Some("vpr.guest=linux"), kvm, qboot);
    let third = boot(&args, timeout, accel)?;
    match third.lines.iter().find_map(|line| measure::logged(line)) {
        Some(logged) if logged == expected => {}
        Some(logged) => return Err(format!("it logged {logged}, its file gives {expected}")),
        None => return Err(String::from("it logged no measurement")),
    }
    if !third.lines.iter().any(|l| l.contains("hv: the TPM's master secret does not open")) {
        return Err(String::from("the master secret opened for a patched image"));
    }
    eprintln!(
        "qemu-test: an image with a pointer in its .data patched measures differently and \
         cannot open the master secret"
    );
    Ok(())
}

/// The address of the `log` crate's logger (a static fat pointer whose initial value lies
/// in `.data`; the compiler may split it in two, `.0` and `.1`).
fn logger_symbol(image: &Path) -> Result<u64, String> {
    vpr_host::machine::symbols(image)?
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (value, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            let data = kind.eq_ignore_ascii_case("d");
            (data && name.contains("3log6LOGGER")).then(|| u64::from_str_radix(value, 16).ok())?
        })
        .max()
        .ok_or_else(|| String::from("the image has no logger pointer in .data (nm)"))
}

/// The bytes of a "sealed for the next boot" log line, if `line` is one.
fn sealed_blob(line: &str) -> Option<Vec<u8>> {
    checkquote::unhex(line.split("hv: sealed for the next boot: ").nth(1)?.trim())
}

/// The Manager state boot 1 logged for boot 2 (module 3): its restart command, an older and
/// a newer snapshot and the database digest, each as a u32 (little-endian) length and the
/// bytes.
fn manager_state(lines: &[String]) -> Option<Vec<u8>> {
    let line = lines.iter().find_map(|l| l.split("hv: manager for the next boot: ").nth(1))?;
    let mut module = Vec::new();
    for name in ["restore=", "old=", "new=", "digest="] {
        let value = line.split_whitespace().find_map(|w| w.strip_prefix(name))?;
        let bytes = checkquote::unhex(value)?;
        module.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
        module.extend_from_slice(&bytes);
    }
    Some(module)
}

/// The TCC key's digest a boot logged, if it made one.
fn tcc_key(lines: &[String]) -> Option<&str> {
    lines
        .iter()
        .find_map(|line| line.contains("hv: TCC key").then(|| line.rsplit(' ').next()).flatten())
}

/// The TCC key is derived from the TPM-held master secret: the same after a reboot.
fn same_tcc_key(first: &[String], second: &[String]) -> Result<(), String> {
    match (tcc_key(first), tcc_key(second)) {
        (Some(a), Some(b)) if a == b => {
            eprintln!("qemu-test: the TCC key is the same after the reboot");
            Ok(())
        }
        (a, b) => Err(format!("TCC key {a:?} in boot 1, {b:?} in boot 2")),
    }
}

/// What one boot gave.
pub struct Boot {
    /// QEMU's exit status (`None`: killed at the timeout).
    pub status: Option<ExitStatus>,
    /// Everything it printed, line by line.
    pub lines: Vec<String>,
    /// The self-test's `N passed, M failed`, if it printed one.
    pub counts: Option<(u32, u32)>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Boot {
    /// Whether the boot succeeded: QEMU's status, the self-test's counts, the logged
    /// hypervisor measurement and the EK certificate the hypervisor read.
    fn verdict(&self, image: &Path, ek: &str) -> Result<(), String> {
        let Some(status) = self.status else {
            return Err(String::from("QEMU still running at the timeout; killed"));
        };
        judge(status.code(), self.counts)?;
        check_measurement(image, &self.lines)?;
        ek::check_logged(ek, &self.lines)
    }
}

/// Boots QEMU with `args`, streams its output, waits at most `timeout`.
pub fn boot(args: &[String], timeout: Duration, accel: &str) -> Result<Boot, String> {
    boot_watching(args, timeout, accel, &mut |_| {})
}

/// [`boot`], showing `watch` each line as it comes.
pub fn boot_watching(
    args: &[String],
    timeout: Duration,
    accel: &str,
    watch: &mut dyn FnMut(&str),
) -> Result<Boot, String> {
    let mut running = spawn(args)?;
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    let status = loop {
        for line in running.lines.try_iter() {
            watch(&line);
            lines.push(line);
        }
        let qemu = &mut running.qemu.0;
        if let Some(status) = qemu.try_wait().map_err(|e| format!("waiting for QEMU: {e}"))? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = qemu.kill();
            let _ = qemu.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    lines.extend(running.lines());
    let counts = lines.iter().rev().find_map(|line| summary(line));
    let elapsed = running.started.elapsed();
    match status {
        Some(status) => eprintln!(
            "qemu-test: QEMU exited with {status} after {:.2}s ({accel})",
            elapsed.as_secs_f64()
        ),
        None => eprintln!("qemu-test: QEMU still running after {}s; killed", timeout.as_secs()),
    }
    Ok(Boot { status, lines, counts, elapsed })
}

/// A QEMU started by [`spawn`], its output streamed to ours and collected.
struct Running {
    qemu: KillOnDrop,
    lines: mpsc::Receiver<String>,
    readers: Vec<thread::JoinHandle<()>>,
    /// When it started.
    pub started: Instant,
}

impl Running {
    /// The lines printed so far and to the end (once QEMU has stopped).
    fn lines(&mut self) -> Vec<String> {
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        self.lines.try_iter().collect()
    }
}

/// Starts QEMU with `args`, streaming its output.
fn spawn(args: &[String]) -> Result<Running, String> {
    eprintln!("qemu-test: {QEMU} {}", args.join(" "));
    let started = Instant::now();
    let child = Command::new(QEMU)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut qemu = KillOnDrop(child);
    let (sender, lines) = mpsc::channel();
    let readers = [
        qemu.0.stdout.take().map(|out| stream(out, sender.clone())),
        qemu.0.stderr.take().map(|err| stream(err, sender.clone())),
    ];
    drop(sender);
    Ok(Running { qemu, lines, readers: readers.into_iter().flatten().collect(), started })
}

/// Checks the measurement the image logged against the one recomputed from its file.
fn check_measurement(image: &Path, lines: &[String]) -> Result<(), String> {
    let expected = measure::expected(image)?;
    match lines.iter().find_map(|line| measure::logged(line)) {
        Some(logged) if logged == expected => {
            eprintln!("qemu-test: the logged hypervisor measurement matches the image file");
            Ok(())
        }
        Some(logged) => {
            Err(format!("the image logged measurement {logged}, but its file gives {expected}"))
        }
        None => Err(String::from("the image logged no measurement")),
    }
}

/// Whether QEMU's exit `code` and the image's `counts` make a successful run.
pub fn judge(code: Option<i32>, counts: Option<(u32, u32)>) -> Result<(), String> {
    match (code, counts) {
        (Some(SUCCESS_STATUS), Some((passed, 0))) if passed > 0 => Ok(()),
        (Some(SUCCESS_STATUS), _) => {
            Err(String::from("success status, but no `N passed, 0 failed` line in the log"))
        }
        (Some(0), _) => Err(String::from(
            "QEMU exited with status 0: the machine reset (a triple fault under -no-reboot)",
        )),
        (code, Some((_, failed))) if failed > 0 => {
            Err(format!("{failed} self-test(s) failed (QEMU status {code:?})"))
        }
        (code, _) => Err(format!("QEMU status {code:?}, expected {SUCCESS_STATUS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustflags_are_added_as_one_toml_array() {
        let flags = [String::from("--remap-path-prefix=/a \"b\\c=/cargo"), String::from("-Cx")];
        assert_eq!(
            rustflags_config("target.x86_64-unknown-none", &flags),
            r#"target.x86_64-unknown-none.rustflags=["--remap-path-prefix=/a \"b\\c=/cargo", "-Cx"]"#
        );
        assert_eq!(toml_string("tab\there"), r#""tab\u0009here""#);
    }

    #[test]
    fn summary_lines_are_recognized_exactly() {
        assert_eq!(summary("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(summary("3 passed, 2 failed\r"), Some((3, 2)));
        assert_eq!(summary("[0][INFO][selftest] 3 passed, 2 failed"), None);
        assert_eq!(summary("x passed, 0 failed"), None);
        assert_eq!(summary("1 passed, 0 failed, 1 skipped"), None);
        assert_eq!(summary(" passed, 0 failed"), None);
    }

    #[test]
    fn command_line_has_exit_device_and_no_reboot() {
        let args = command_line(Path::new("/i"), &[PathBuf::from("/p")], None, None, false, true);
        let joined = args.join(" ");
        assert!(joined.starts_with("-kernel /i -machine q35 -device amd-iommu -m 512M "));
        assert!(joined.contains("-initrd /p -accel"));
        let tpm =
            command_line(Path::new("/i"), &[], Some(Path::new("/t/s")), Some("a=1"), false, false);
        assert!(tpm.join(" ").contains("-append a=1 -chardev"));
        assert!(tpm.join(" ").contains(
            "-chardev socket,id=chrtpm,path=/t/s -tpmdev emulator,id=tpm0,chardev=chrtpm \
             -device tpm-tis,tpmdev=tpm0"
        ));
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(joined.contains("-accel tcg -cpu max"));
        assert!(joined.ends_with("-bios /usr/share/qemu/qboot.rom"));
        let kvm = command_line(Path::new("/i"), &[], None, None, true, false).join(" ");
        assert!(kvm.contains("-accel kvm -cpu host") && !kvm.contains("-bios"));
        assert!(!kvm.contains("-initrd"));
    }

    #[test]
    fn boot_lines_carry_the_sealed_blob_and_the_tcc_key() {
        assert_eq!(
            sealed_blob("[0][INFO] hv: sealed for the next boot: 00ff10"),
            Some(vec![0, 255, 16])
        );
        assert_eq!(sealed_blob("hv: sealed for the next boot: 0f1"), None);
        assert_eq!(sealed_blob("hv: sealed for the next boot: zz"), None);
        let boot = |key: &str| {
            vec![format!("[0][INFO][pal] hv: TCC key x: sha256 of its public key {key}")]
        };
        assert!(same_tcc_key(&boot("ab"), &boot("ab")).is_ok());
        assert!(same_tcc_key(&boot("ab"), &boot("cd")).is_err());
        assert!(same_tcc_key(&boot("ab"), &[]).is_err());
        let line = String::from(
            "[0][INFO] hv: manager for the next boot: restore=0102 old=03 new= digest=ff",
        );
        assert_eq!(
            manager_state(&[line]),
            Some(vec![2, 0, 0, 0, 1, 2, 1, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0xff])
        );
        assert_eq!(manager_state(&[String::from("hv: manager for the next boot: old=03")]), None);
    }

    #[test]
    fn only_status_33_with_no_failures_passes() {
        assert_eq!(SUCCESS_STATUS, 33);
        assert!(judge(Some(33), Some((12, 0))).is_ok());
        assert!(judge(Some(33), Some((11, 1))).is_err());
        assert!(judge(Some(33), Some((0, 0))).is_err(), "no test ran");
        assert!(judge(Some(33), None).is_err(), "no summary line");
        assert!(judge(Some(0), Some((12, 0))).unwrap_err().contains("triple fault"));
        assert!(judge(Some(35), Some((11, 1))).is_err());
        assert!(judge(Some(1), None).is_err(), "QEMU itself failed");
        assert!(judge(None, None).is_err(), "killed by a signal");
    }
}
