//! The machine a replica VM runs on, as its operator sets it up: its TPM (swtpm on a state
//! provisioned by `qemu/tpm-setup.sh`, with an EK certificate from the local CA) and the
//! measurement of the hypervisor it boots (what its PCR 17 must show).

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Whether KVM can run vpr's hypervisor: /dev/kvm opens for reading and writing and the host CPU
/// has SVM (without it, KVM cannot give the guest SVM either).
pub fn kvm_usable() -> bool {
    let device = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let svm = fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|line| line.starts_with("flags"))
            .any(|line| line.split_whitespace().any(|flag| flag == "svm"))
    });
    device && svm
}

/// QEMU's arguments that attach the swtpm whose control socket is `socket` as the machine's
/// TPM on the TIS interface (at 0xFED40000).
pub fn tpm_args(socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("socket,id=chrtpm,path={}", socket.display()),
        "-tpmdev".into(),
        "emulator,id=tpm0,chardev=chrtpm".into(),
        "-device".into(),
        "tpm-tis,tpmdev=tpm0".into(),
    ]
}

/// QEMU's arguments for a machine with `memory` (`-m`): the `q35` chipset with QEMU's AMD
/// IOMMU (the hypervisor owns it and confines every PCI device's DMA to the guest's RAM; it
/// runs Linux nowhere else), no default devices or display, its serial port on standard
/// output, no reboot (a reset ends QEMU), and no kvmvapic (QEMU's TPR-patching option ROM,
/// whose state in guest memory lets a guest make QEMU write any physical address: the
/// hypervisor refuses to run Linux where it finds it). Virtio devices on it take
/// [`VIRTIO_DMA`].
pub fn console_args(memory: &str) -> Vec<String> {
    [
        "-machine",
        "q35",
        "-device",
        "amd-iommu",
        "-m",
        memory,
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-global",
        NO_VAPIC,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The properties every virtio device takes on vpr's machines: its DMA through the IOMMU
/// (without `iommu_platform`, QEMU's virtio bypasses it) and no legacy interface.
pub const VIRTIO_DMA: &str = "iommu_platform=on,disable-legacy=on";

/// The `-global` that turns QEMU's kvmvapic off.
pub const NO_VAPIC: &str = "apic-common.vapic=off";

/// A running swtpm with its own state folder: both go when it is dropped.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    /// The TPM's state folder.
    pub dir: PathBuf,
    /// Its control socket (for `-chardev socket,path=`).
    pub socket: PathBuf,
}

impl Swtpm {
    /// Provisions a fresh TPM state in `dir` with `qemu/tpm-setup.sh` of the checkout `root`
    /// (EK certificates from the local CA in `ca`) and starts swtpm on it.
    pub fn start(root: &Path, dir: PathBuf, ca: &Path) -> Result<Swtpm, String> {
        let _ = fs::remove_dir_all(&dir);
        let setup = root.join("qemu/tpm-setup.sh");
        let status = Command::new(&setup)
            .arg(&dir)
            .arg(ca)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", setup.display()))?;
        if !status.success() {
            return Err(format!("{} failed ({status})", setup.display()));
        }
        let socket = dir.join("swtpm.sock");
        let child = Swtpm::spawn(&dir, &socket)?;
        Ok(Swtpm { child, dir, socket })
    }

    /// Starts swtpm again on the same state, as a machine's TPM after a reboot (the last one
    /// ended when QEMU disconnected).
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
        self.child = Swtpm::spawn(&self.dir, &self.socket)?;
        Ok(())
    }

    /// `swtpm socket` (TPM 2.0) on the state in `dir`, its control socket at `socket`, once
    /// the socket exists. `--terminate` ends it when QEMU disconnects.
    fn spawn(dir: &Path, socket: &Path) -> Result<Child, String> {
        let mut child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--terminate")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start swtpm: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("swtpm exited at start ({status})"));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(String::from("swtpm did not create its socket within 10 s"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(child)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The lowercase hex SHA-256 of every byte the loader loads of the image file at `image`:
/// `[__image_start, __load_end)` — the multiboot header, code, read-only data and `.data`
/// with its GOT and vtables — as the image hashes it at boot.
pub fn hypervisor_measurement(image: &Path) -> Result<String, String> {
    let bytes = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let range = loaded_range(image, &bytes)?;
    let digest = Sha256::digest(&bytes[range]);
    Ok(hex::encode(digest))
}

/// Where in the image file (`bytes`, read from `image`) the measured bytes are.
pub fn loaded_range(image: &Path, bytes: &[u8]) -> Result<std::ops::Range<usize>, String> {
    let symbols = symbols(image)?;
    file_range(bytes, symbol(&symbols, "__image_start")?, symbol(&symbols, "__load_end")?)
}

/// The address of symbol `name` in the image file at `image`.
pub fn image_symbol(image: &Path, name: &str) -> Result<u64, String> {
    symbol(&symbols(image)?, name)
}

/// The defined symbols of the image file at `image`, as `nm` lists them ("<hex> <type>
/// <name>" lines).
pub fn symbols(image: &Path) -> Result<String, String> {
    let out = Command::new("nm")
        .arg("--defined-only")
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run nm: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of `name` in `nm` output (lines "<hex> <type> <name>").
fn symbol(nm: &str, name: &str) -> Result<u64, String> {
    nm.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (value, _kind, symbol) = (parts.next()?, parts.next()?, parts.next()?);
            (symbol == name).then(|| u64::from_str_radix(value, 16).ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("the image has no symbol {name}"))
}

/// The file bytes holding virtual addresses `[start, end)`: both inside the file part of
/// one ELF64 `PT_LOAD` segment (ELF-64 Object File Format 1.5: e_phoff at 32, e_phentsize at
/// 54, e_phnum at 56; p_type, p_offset at 8, p_vaddr at 16, p_filesz at 32).
pub fn file_range(elf: &[u8], start: u64, end: u64) -> Result<std::ops::Range<usize>, String> {
    let malformed = || String::from("malformed ELF image");
    let u16_at = |at: usize| -> Result<u64, String> {
        let b = elf.get(at..at + 2).ok_or_else(malformed)?;
        Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |at: usize| -> Result<u64, String> {
        let b = elf.get(at..at + 8).ok_or_else(malformed)?;
        let mut word = [0; 8];
        word.copy_from_slice(b);
        Ok(u64::from_le_bytes(word))
    };
    if elf.get(..4) != Some(b"\x7fELF") || end < start {
        return Err(malformed());
    }
    let (phoff, phentsize, phnum) = (u64_at(32)?, u16_at(54)?, u16_at(56)?);
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).map_err(|_| malformed())?;
        let kind = u16_at(at)?;
        let (offset, vaddr, filesz) = (u64_at(at + 8)?, u64_at(at + 16)?, u64_at(at + 32)?);
        if kind == 1 && vaddr <= start && end <= vaddr + filesz {
            let first = usize::try_from(offset + (start - vaddr)).map_err(|_| malformed())?;
            let last = usize::try_from(offset + (end - vaddr)).map_err(|_| malformed())?;
            if last <= elf.len() {
                return Ok(first..last);
            }
        }
    }
    Err(format!("no PT_LOAD segment holds [{start:#x}, {end:#x}) in the file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_and_segments() {
        let nm = "0000000000100000 T __image_start\n0000000000140000 R __data_start\n";
        assert_eq!(symbol(nm, "__data_start"), Ok(0x14_0000));
        assert!(symbol(nm, "__bss_end").is_err());
        // An ELF header with one PT_LOAD: file offset 0x1000 holds vaddr 0x100000, 0x100 bytes.
        let mut elf = vec![0u8; 0x1100];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        elf[72..80].copy_from_slice(&0x1000u64.to_le_bytes());
        elf[80..88].copy_from_slice(&0x10_0000u64.to_le_bytes());
        elf[96..104].copy_from_slice(&0x100u64.to_le_bytes());
        assert_eq!(file_range(&elf, 0x10_0000, 0x10_0080), Ok(0x1000..0x1080));
        assert!(file_range(&elf, 0x10_0000, 0x10_0200).is_err());
        assert!(file_range(&elf[..40], 0x10_0000, 0x10_0080).is_err());
        assert!(file_range(b"not an elf", 0, 1).is_err());
    }
}
