//! `linux-test`: Linux as the hypervisor's guest. Builds the hypervisor, the `vpr` binary and
//! the guest image (`qemu/guest-image.sh`: Debian's kernel, a busybox initramfs with `vpr`),
//! boots the hypervisor with the kernel and the initramfs as multiboot modules and
//! `vpr.guest=linux`, and judges the run from the serial log: Linux reaches user space, `vpr`
//! runs, every range the hypervisor keeps (it tells the guest, `vpr.hv=`) is refused to the
//! guest's root for reading and writing through /dev/mem, the guest goes on (`vpr` runs
//! again), and it powers off.

use crate::install;
use crate::qemu::{self, Boot};
use crate::Accel;
use crate::QemuTestOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use vpr_host::config::{ClusterConfig, ReplicaEntry};

/// Where the guest image is built (and its downloads cached).
const GUEST_DIR: &str = "target/guest";
/// The kernel's command line: the serial console, no KASLR (a stable layout in logs), /dev/mem
/// open to root for the probes, the smoke run.
const KERNEL_ARGS: &str =
    "console=ttyS0 earlyprintk=serial nokaslr no5lvl mitigations=off panic=-1 iomem=relaxed vpr.run=smoke";

/// Builds the `vpr` binary (debug), the PAL image and the guest image (with both); the kernel
/// and the initramfs.
fn guest_image(root: &Path) -> Result<(PathBuf, PathBuf), String> {
    let vpr = qemu::build_vpr(root)?;
    let pal = qemu::build_pal_image(root)?;
    let out = root.join(GUEST_DIR);
    install::run(
        Command::new(root.join("qemu/guest-image.sh"))
            .arg(&out)
            .arg(vpr)
            .env("VPR_GUEST_PAL", &pal),
    )?;
    // A one-replica cluster for the guest to run on the hypervisor, appended as a cpio.
    let identity = vpr_proto::Digest::of(&std::fs::read(&pal).map_err(|e| format!("{e}"))?);
    let config = out.join("cluster-1.toml");
    one_replica_cluster(&identity)
        .save(&config)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let extra = out.join("cluster-1.cpio.gz");
    install::run(
        Command::new(root.join("qemu/guest-config.sh"))
            .arg(&extra)
            .arg(format!("{}:/etc/vpr/cluster.toml", config.display())),
    )?;
    let combined = out.join("initramfs-smoke.cpio.gz");
    let mut bytes = std::fs::read(out.join("initramfs.cpio.gz")).map_err(|e| format!("{e}"))?;
    bytes.extend(std::fs::read(&extra).map_err(|e| format!("{e}"))?);
    std::fs::write(&combined, bytes).map_err(|e| format!("{}: {e}", combined.display()))?;
    Ok((out.join("vmlinuz"), combined))
}

/// A cluster of one replica (f = 0) listening in the guest, pinned to the PAL image `identity`.
/// Its manufacturer key certifies nothing the guest has (the hypervisor's evidence is
/// self-certified until the cluster's CA certifies TCC keys), so clients would refuse it: the
/// test shows the group forming on the real TCC, not client sessions.
fn one_replica_cluster(identity: &vpr_proto::Digest) -> ClusterConfig {
    let placeholder = vpr_proto::crypto::KeyPair::from_secret(&[0x11; 32]).map(|k| k.public());
    ClusterConfig {
        name: String::from("linux-test"),
        replicas: vec![ReplicaEntry { id: 0, address: String::from("0.0.0.0:17000") }],
        identity: identity.to_string(),
        manufacturer: hex::encode(placeholder.unwrap_or([0; 65])),
        allow_simulated: true,
        timeouts: Default::default(),
        max_in_flight: 32,
        max_batch: 256,
        retained_updates: 1024,
        simulation_manufacturer_key: None,
    }
}

/// The QEMU command line: the hypervisor with the kernel and initramfs as modules, 512 MiB, a
/// virtio NIC on user-mode networking, no isa-debug-exit (a guest must not end the machine
/// with a port write: it powers off instead).
pub fn command_line(image: &Path, kernel: &Path, initrd: &Path, kvm: bool) -> Vec<String> {
    let (accel, cpu) = if kvm { ("kvm", "host") } else { ("tcg", "max") };
    [
        "-kernel",
        &image.display().to_string(),
        "-initrd",
        &format!("{},{}", kernel.display(), initrd.display()),
        "-append",
        &format!("vpr.guest=linux -- {KERNEL_ARGS}"),
        "-m",
        "512M",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-accel",
        accel,
        "-cpu",
        cpu,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The whole task.
pub fn test(root: &Path, options: &QemuTestOptions) -> Result<(), String> {
    install::rust_target()?;
    let image = qemu::build_image(root)?;
    let (kernel, initrd) = guest_image(root)?;
    install::qemu("qemu-system-x86_64")?;
    let kvm = match options.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => qemu::kvm_usable(),
    };
    let args = command_line(&image, &kernel, &initrd, kvm);
    let boot = qemu::boot(&args, options.timeout, if kvm { "kvm" } else { "tcg" })?;
    verdict(&boot)
}

/// Whether a line containing `marker` was printed.
fn seen(lines: &[String], marker: &str) -> bool {
    lines.iter().any(|l| l.contains(marker))
}

/// The ranges the hypervisor told the guest it keeps (`vpr.hv=a-b,c-d` on the kernel's
/// command line as Linux printed it).
fn hypervisor_ranges(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .find_map(|l| l.split("vpr.hv=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|list| list.split(',').filter_map(|r| r.split('-').next()).map(String::from).collect())
        .unwrap_or_default()
}

/// Whether the run shows what it must.
pub fn verdict(boot: &Boot) -> Result<(), String> {
    let lines = &boot.lines;
    match boot.status {
        Some(status) if status.success() => {}
        Some(status) => {
            return Err(format!("QEMU exited with {status}: the guest did not power off"))
        }
        None => return Err(String::from("QEMU still running at the timeout; killed")),
    }
    for (marker, what) in [
        ("hv: entering Linux at", "the hypervisor did not enter Linux"),
        ("Run /init as init process", "Linux did not reach user space"),
        ("vpr-guest: vpr --version: vpr ", "vpr did not run in the guest"),
        ("vpr-guest: pal-smoke: ok", "the PAL did not run through the hypervisor from the guest"),
        (
            "vpr-guest: replica on the hypervisor: group formed",
            "the replica on the real TCC did not form its group",
        ),
        ("vpr-guest: smoke done", "the smoke run did not finish"),
    ] {
        if !seen(lines, marker) {
            return Err(String::from(what));
        }
    }
    let ranges = hypervisor_ranges(lines);
    if ranges.len() < 3 {
        return Err(format!(
            "the hypervisor named {} ranges of its memory, not 3 or more",
            ranges.len()
        ));
    }
    for addr in &ranges {
        for access in ["read", "write"] {
            let refused = format!("vpr-guest: hypervisor memory {addr} {access}: refused");
            if !seen(lines, &refused) {
                return Err(format!(
                    "the guest's {access} of hypervisor memory at {addr} was not refused"
                ));
            }
        }
    }
    if !seen(lines, "vpr-guest: after the probes, vpr --version: vpr ") {
        return Err(String::from("the guest did not go on after its probes"));
    }
    if !seen(lines, "hv: guest touched") {
        return Err(String::from("the hypervisor saw no nested page fault from the probes"));
    }
    eprintln!(
        "linux-test: Linux booted on the hypervisor, ran vpr, was refused {} ranges of \
         hypervisor memory (read and write) and went on; {:.1} s from QEMU's start to power-off",
        ranges.len(),
        boot.elapsed.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_the_kernel_command_line() {
        let lines = [String::from(
            "[    0.000000] Command line: console=ttyS0 vpr.run=smoke vpr.hv=0x100000-0x1c7000,0x104d000-0x184d000",
        )];
        assert_eq!(hypervisor_ranges(&lines), ["0x100000", "0x104d000"]);
        assert!(hypervisor_ranges(&[String::from("nothing")]).is_empty());
    }

    #[test]
    fn command_line_has_modules_and_no_exit_device() {
        let args =
            command_line(Path::new("/hv"), Path::new("/k"), Path::new("/i"), false).join(" ");
        assert!(args.contains("-kernel /hv -initrd /k,/i -append vpr.guest=linux -- console=ttyS0"));
        assert!(!args.contains("isa-debug-exit"));
        assert!(args.ends_with("-accel tcg -cpu max"));
    }
}
