//! Attacks on the hypervisor's isolation, run as root inside its Linux guest by `cargo xtask
//! linux-test` (`vpr guest-probe`): each tries one way around the nested page table and says
//! what happened, for the test to judge. On a machine where the path is open the attack
//! works and the report says so; under vpr's hypervisor it must be refused.
//!
//! - fw_cfg DMA (QEMU's firmware configuration device, docs/specs/fw_cfg.rst in QEMU's
//!   tree): the guest writes the physical address of a request to ports 0x514 (high half)
//!   and 0x518 (low half, which starts the transfer), big-endian, and the device writes the
//!   selected item wherever the request says, with no IOMMU in the way. The probe aims it at
//!   a buffer of its own, so a working transfer shows without harming anything.
//! - MSI-X: an enabled message interrupt is a device's memory write of a value the guest
//!   chose to an address it chose (an INIT or SMI, or a write anywhere); the probe sets the
//!   enable bit of a virtio function and reads it back.

#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The fw_cfg DMA address ports and the request's control bits (select an item, read it).
const FW_CFG_DMA_HIGH: u16 = 0x514;
const FW_CFG_DMA_LOW: u16 = 0x518;
const FW_CFG_DMA_SELECT: u32 = 0x08;
const FW_CFG_DMA_READ: u32 = 0x02;
/// The item that holds the signature "QEMU".
const FW_CFG_SIGNATURE: u32 = 0x0000;
const PAGE: usize = 4096;

/// A page of this process's memory, locked in RAM, with its physical address.
struct LockedPage {
    ptr: *mut u8,
}

impl LockedPage {
    fn new(fill: u8) -> Result<LockedPage> {
        // SAFETY: an anonymous private mapping of one page; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        let mut page = LockedPage { ptr: ptr.cast() };
        page.bytes_mut().fill(fill);
        Ok(page)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the page is mapped read-write for the lifetime of `self`, and `&mut self`
        // makes this the only borrow of it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, PAGE) }
    }

    /// Its physical address, from /proc/self/pagemap (bits 54:0 of the entry are the frame
    /// number when bit 63 says present; root sees them).
    fn physical(&self) -> Result<u64> {
        let pagemap = File::open("/proc/self/pagemap").context("/proc/self/pagemap")?;
        let mut entry = [0u8; 8];
        pagemap.read_exact_at(&mut entry, (self.ptr as u64 / PAGE as u64) * 8)?;
        let entry = u64::from_le_bytes(entry);
        let frame = entry & ((1 << 55) - 1);
        if entry >> 63 == 0 || frame == 0 {
            bail!("the page's frame is not visible (not root?)");
        }
        Ok(frame * PAGE as u64)
    }
}

impl Drop for LockedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), PAGE) };
    }
}

/// A 32-bit OUT.
fn out32(port: u16, value: u32) {
    // SAFETY: OUT touches no memory of this process; the caller raised its I/O privilege
    // level (iopl 3) so the instruction is allowed.
    unsafe { std::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack)) };
}

/// Asks fw_cfg to DMA its signature into a buffer of this process; what the buffer and the
/// request's control word hold afterwards.
pub fn fw_cfg_dma() -> Result<String> {
    let mut request = LockedPage::new(0)?;
    let target = LockedPage::new(0xAA)?;
    let (request_pa, target_pa) = (request.physical()?, target.physical()?);
    // FWCfgDmaAccess: control, length (big-endian u32 each), address (big-endian u64).
    let control = FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ;
    let bytes = request.bytes_mut();
    bytes[0..4].copy_from_slice(&control.to_be_bytes());
    bytes[4..8].copy_from_slice(&4u32.to_be_bytes());
    bytes[8..16].copy_from_slice(&target_pa.to_be_bytes());
    // SAFETY: raising this (root) process's I/O privilege level changes no memory.
    if unsafe { libc::iopl(3) } != 0 {
        bail!("iopl: {}", std::io::Error::last_os_error());
    }
    // The ports are big-endian: the high half first, the low half starts the transfer.
    #[allow(clippy::cast_possible_truncation, reason = "the address in two halves")]
    let (high, low) = ((request_pa >> 32) as u32, request_pa as u32);
    out32(FW_CFG_DMA_HIGH, high.swap_bytes());
    out32(FW_CFG_DMA_LOW, low.swap_bytes());
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: as above.
    unsafe { libc::iopl(0) };
    // SAFETY: volatile reads of the two locked pages, which the device may have written.
    let (got, control_after) = unsafe {
        let got: [u8; 4] = std::ptr::read_volatile(target.ptr.cast());
        let control: [u8; 4] = std::ptr::read_volatile(request.ptr.cast());
        (got, u32::from_be_bytes(control))
    };
    Ok(if &got == b"QEMU" {
        format!(
            "DONE: the device wrote \"QEMU\" at {target_pa:#x} (request control {control_after:#x})"
        )
    } else {
        format!(
            "refused: the buffer at {target_pa:#x} is unchanged ({got:02x?}), request control \
             {control_after:#x}"
        )
    })
}

/// Tries to enable MSI-X on the first virtio function (vendor 0x1AF4) through its
/// configuration space in sysfs, the way any driver would: what the enable bit reads
/// afterwards. The byte is written back as it was.
pub fn msi_enable() -> Result<String> {
    let devices = std::fs::read_dir("/sys/bus/pci/devices").context("/sys/bus/pci/devices")?;
    for device in devices {
        let path = device?.path();
        let vendor = std::fs::read_to_string(path.join("vendor")).unwrap_or_default();
        if vendor.trim() != "0x1af4" {
            continue;
        }
        let config = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path.join("config"))
            .with_context(|| format!("{}/config", path.display()))?;
        let mut space = [0u8; 256];
        config.read_exact_at(&mut space, 0)?;
        // The capability list (PCI 3.0 §6.7), looking for MSI-X (0x11).
        let mut at = usize::from(space[0x34] & 0xFC);
        let mut capability = None;
        for _ in 0..48 {
            if !(0x40..=0xFC).contains(&at) {
                break;
            }
            if space[at] == 0x11 {
                capability = Some(at);
                break;
            }
            at = usize::from(space[at + 1] & 0xFC);
        }
        let Some(at) = capability else { continue };
        // Message Control's high byte: bit 7 is MSI-X Enable.
        let control = at + 3;
        let before = space[control];
        config.write_all_at(&[before | 0x80], control as u64)?;
        let mut after = [0u8];
        config.read_exact_at(&mut after, control as u64)?;
        config.write_all_at(&[before], control as u64)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(if after[0] & 0x80 != 0 {
            format!("DONE: MSI-X of {name} enabled (control byte {:#04x})", after[0])
        } else {
            format!(
                "refused: MSI-X of {name} still disabled (control byte {:#04x} after writing {:#04x})",
                after[0],
                before | 0x80
            )
        });
    }
    bail!("no virtio function with MSI-X")
}
