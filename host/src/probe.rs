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
//! - edu DMA (QEMU's educational PCI device, vendor 0x1234 device 0x11E8, hw/misc/edu.c and
//!   docs/specs/edu.txt in QEMU's tree): a DMA engine the guest programs through BAR 0
//!   (source, destination, count and command registers at 0x80..0x98, a 4 KiB buffer at
//!   device address 0x40000). The probe enables the function's bus mastering through its
//!   sysfs `config`, maps `resource0`, and first copies a pattern from a page of its own
//!   through the device's buffer into another (the control: DMA works on the guest's
//!   memory). Then it loads a sentinel into the buffer, DMAs 64 bytes from a target
//!   address (one of the hypervisor's, `vpr.hv=` on the kernel's command line) into it and
//!   back to its own page: the sentinel still there or zeros (what QEMU's IOMMU gives for a
//!   refused read) means refused, anything else is the target's memory. Last it DMAs 64
//!   bytes of a pattern to the target; the guest cannot see whether that landed, so the test
//!   checks the hypervisor's memory afterwards.

#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

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

    /// Its first `len` bytes, read volatile: a device may have written them.
    fn read(&self, len: usize) -> Vec<u8> {
        (0..len.min(PAGE))
            // SAFETY: `at` is within the page, which is mapped readable for the lifetime of
            // `self`; a volatile read of a byte has no alignment requirement.
            .map(|at| unsafe { std::ptr::read_volatile(self.ptr.add(at)) })
            .collect()
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

/// QEMU's edu device: its PCI identity (as sysfs spells it) and its identification register,
/// which reads 0x010000ED (version 1.0).
const EDU_VENDOR: &str = "0x1234";
const EDU_DEVICE: &str = "0x11e8";
const EDU_ID: usize = 0x00;
const EDU_ID_VALUE: u32 = 0x0100_00ED;
/// Its DMA registers in BAR 0, 64 bits each.
const EDU_DMA_SOURCE: usize = 0x80;
const EDU_DMA_DESTINATION: usize = 0x88;
const EDU_DMA_COUNT: usize = 0x90;
const EDU_DMA_COMMAND: usize = 0x98;
/// Command bits: start (the device clears it when the transfer is done) and direction (set:
/// from the device's buffer to RAM). Bit 2, raise an interrupt, stays clear: no driver here
/// would take it.
const EDU_DMA_RUN: u64 = 1;
const EDU_DMA_TO_RAM: u64 = 2;
/// The device's buffer, at this address of its own, and its size.
const EDU_BUFFER: u64 = 0x40000;
const EDU_BUFFER_LEN: u64 = 4096;
/// The device ANDs the RAM address of a transfer with its `dma_mask` (28 bits unless QEMU's
/// `-device edu,dma_mask=` says otherwise) and goes on silently with what is left: anything
/// at or above this limit would land somewhere else, so the probe refuses it.
const EDU_DMA_LIMIT: u64 = 1 << 28;
/// The device starts a transfer 100 ms (QEMU's virtual clock) after the command.
const EDU_DMA_TIMEOUT: Duration = Duration::from_secs(10);
/// How many bytes the control copies, and the attacks read and write at the target.
const EDU_CONTROL_LEN: u64 = 256;
const EDU_ATTACK_LEN: u64 = 64;
/// Pages to lock at most (64 MiB) while looking for ones below `EDU_DMA_LIMIT`.
const EDU_PAGE_TRIES: usize = 16384;
/// What the device's buffer holds before the read attack, what the page the buffer is copied
/// back to holds before each copy, and what the write attack writes.
const EDU_SENTINEL: &[u8] = b"vpr edu sentinel";
const EDU_BACK_FILL: u8 = 0x5A;
const EDU_WRITE_PATTERN: &[u8] = b"vpr edu dma write probe!";

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From RAM into the device's buffer.
    ToDevice,
    /// From the device's buffer to RAM.
    ToRam,
}

/// What one transfer writes to the DMA registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Transfer {
    source: u64,
    destination: u64,
    count: u64,
    command: u64,
}

impl Transfer {
    /// `len` bytes between RAM at `ram` and the device's buffer at `offset`, or why the
    /// device cannot be asked for them.
    fn new(direction: Direction, ram: u64, offset: u64, len: u64) -> Result<Transfer, String> {
        // QEMU 7.2's edu_check_range stops the whole machine (hw_error) unless the range in
        // the buffer is non-empty and ends strictly before the buffer's end: an off-by-one
        // that later QEMU fixed, but there a transfer of the full 4096 bytes kills QEMU.
        if len == 0 || offset.checked_add(len).is_none_or(|end| end >= EDU_BUFFER_LEN) {
            return Err(format!(
                "{len} bytes at offset {offset:#x} of the edu buffer: QEMU 7.2 stops the \
                 machine unless the length is non-zero and ends below {EDU_BUFFER_LEN:#x}"
            ));
        }
        if ram.checked_add(len).is_none_or(|end| end > EDU_DMA_LIMIT) {
            return Err(format!(
                "{len} bytes at {ram:#x} are beyond the edu device's DMA mask {:#x}: it would \
                 cut the address down and reach somewhere else",
                EDU_DMA_LIMIT - 1
            ));
        }
        let buffer = EDU_BUFFER + offset;
        Ok(match direction {
            Direction::ToDevice => {
                Transfer { source: ram, destination: buffer, count: len, command: EDU_DMA_RUN }
            }
            Direction::ToRam => Transfer {
                source: buffer,
                destination: ram,
                count: len,
                command: EDU_DMA_RUN | EDU_DMA_TO_RAM,
            },
        })
    }
}

/// What came back from the read attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOutcome {
    /// Zeros: QEMU's IOMMU answers a refused read so.
    Zeros,
    /// The device's buffer still held the sentinel: nothing was read.
    Unchanged,
    /// The copy back to the probe's page did not happen (it still holds its fill).
    NotCopiedBack,
    /// Anything else: the target's memory.
    Leaked,
}

/// Judges the bytes the read attack copied back.
fn judge_read(got: &[u8], sentinel: &[u8]) -> ReadOutcome {
    if got.iter().all(|&b| b == 0) {
        ReadOutcome::Zeros
    } else if got == sentinel {
        ReadOutcome::Unchanged
    } else if got.iter().all(|&b| b == EDU_BACK_FILL) {
        ReadOutcome::NotCopiedBack
    } else {
        ReadOutcome::Leaked
    }
}

/// `len` bytes of `pattern` repeated.
fn repeated(pattern: &[u8], len: u64) -> Vec<u8> {
    pattern.iter().copied().cycle().take(usize::try_from(len).unwrap_or(0)).collect()
}

/// A number in hex, with or without `0x`.
fn parse_hex(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    u64::from_str_radix(digits, 16).map_err(|e| format!("{text:?} is not a hex number: {e}"))
}

/// The hypervisor's ranges, `[start, end)`, from `vpr.hv=START-END,...` on a kernel command
/// line (none if it has no `vpr.hv=`).
fn hypervisor_ranges(command_line: &str) -> Result<Vec<(u64, u64)>, String> {
    let Some(list) = command_line.split_whitespace().find_map(|t| t.strip_prefix("vpr.hv=")) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .filter(|r| !r.is_empty())
        .map(|range| {
            let (start, end) =
                range.split_once('-').ok_or_else(|| format!("vpr.hv range {range:?}: no '-'"))?;
            Ok((parse_hex(start)?, parse_hex(end)?))
        })
        .collect()
}

/// The start of the first hypervisor range the device can read `EDU_ATTACK_LEN` bytes of.
fn default_target(ranges: &[(u64, u64)]) -> Option<u64> {
    ranges
        .iter()
        .find(|&&(start, end)| {
            start.checked_add(EDU_ATTACK_LEN).is_some_and(|e| e <= end && e <= EDU_DMA_LIMIT)
        })
        .map(|&(start, _)| start)
}

/// A locked page of this process that the edu device reaches (below `EDU_DMA_LIMIT`), and its
/// physical address. Pages found too high are kept in `kept`, so the kernel hands out other
/// frames; the caller holds them until it is done.
fn reachable_page(kept: &mut Vec<LockedPage>) -> Result<(LockedPage, u64)> {
    for _ in 0..EDU_PAGE_TRIES {
        let page = LockedPage::new(0)?;
        let physical = page.physical()?;
        if physical + PAGE as u64 <= EDU_DMA_LIMIT {
            return Ok((page, physical));
        }
        kept.push(page);
    }
    bail!(
        "none of {EDU_PAGE_TRIES} locked pages of this process lies below {EDU_DMA_LIMIT:#x}, \
         the edu device's DMA reach"
    )
}

/// QEMU's edu device, found in sysfs, bus mastering on, its registers mapped.
struct Edu {
    /// Its sysfs name (the PCI address).
    name: String,
    /// Its configuration space, and its command register before and after the probe set
    /// memory decoding and bus mastering (restored on drop).
    config: File,
    command_before: u16,
    command: u16,
    /// The first page of BAR 0, mapped from `resource0`.
    regs: *mut u8,
}

impl Edu {
    fn open() -> Result<Edu> {
        let path = Edu::find()?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let config = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path.join("config"))
            .with_context(|| format!("{}/config", path.display()))?;
        // The PCI command register (offset 4): bit 1 memory decoding, bit 2 bus mastering.
        let read_command = || -> Result<u16> {
            let mut command = [0u8; 2];
            config.read_exact_at(&mut command, 4).context("reading the PCI command register")?;
            Ok(u16::from_le_bytes(command))
        };
        let command_before = read_command()?;
        if command_before & 0b110 != 0b110 {
            config
                .write_all_at(&(command_before | 0b110).to_le_bytes(), 4)
                .context("writing the PCI command register")?;
        }
        let command = read_command()?;
        let resource = path.join("resource0");
        let bar = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&resource)
            .with_context(|| format!("{}", resource.display()))?;
        // SAFETY: a shared mapping of the first page of BAR 0 from its sysfs resource file;
        // the result is checked, and only `Edu`'s register accessors touch it.
        let regs = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                bar.as_raw_fd(),
                0,
            )
        };
        if regs == libc::MAP_FAILED {
            let error = std::io::Error::last_os_error();
            if command != command_before {
                let _ = config.write_all_at(&command_before.to_le_bytes(), 4);
            }
            bail!("mmap of {}: {error}", resource.display());
        }
        let edu = Edu { name, config, command_before, command, regs: regs.cast() };
        if edu.command & 0b110 != 0b110 {
            bail!(
                "{}: its PCI command register reads {:#06x} after setting memory decoding and \
                 bus mastering (bits 1 and 2)",
                edu.name,
                edu.command
            );
        }
        let id = edu.read32(EDU_ID);
        if id != EDU_ID_VALUE {
            bail!(
                "{}: the identification register reads {id:#010x}, not {EDU_ID_VALUE:#010x}: \
                 its BAR 0 does not answer",
                edu.name
            );
        }
        Ok(edu)
    }

    /// Its folder under /sys/bus/pci/devices.
    fn find() -> Result<PathBuf> {
        let devices = std::fs::read_dir("/sys/bus/pci/devices").context("/sys/bus/pci/devices")?;
        for device in devices {
            let path = device?.path();
            let read = |file: &str| std::fs::read_to_string(path.join(file)).unwrap_or_default();
            if read("vendor").trim() == EDU_VENDOR && read("device").trim() == EDU_DEVICE {
                return Ok(path);
            }
        }
        bail!(
            "no edu device (PCI {}:{}) under /sys/bus/pci/devices: QEMU needs -device edu",
            EDU_VENDOR.trim_start_matches("0x"),
            EDU_DEVICE.trim_start_matches("0x")
        )
    }

    fn read32(&self, register: usize) -> u32 {
        assert!(register.is_multiple_of(4) && register + 4 <= PAGE);
        // SAFETY: the register is within the mapped page and aligned (checked above); a
        // volatile read of device memory.
        unsafe { std::ptr::read_volatile(self.regs.add(register).cast::<u32>()) }
    }

    fn read64(&self, register: usize) -> u64 {
        assert!(register.is_multiple_of(8) && register + 8 <= PAGE);
        // SAFETY: as in `read32`.
        unsafe { std::ptr::read_volatile(self.regs.add(register).cast::<u64>()) }
    }

    fn write64(&self, register: usize, value: u64) {
        assert!(register.is_multiple_of(8) && register + 8 <= PAGE);
        // SAFETY: the register is within the mapped (writable) page and aligned (checked
        // above); a volatile write of device memory, none of this process's.
        unsafe { std::ptr::write_volatile(self.regs.add(register).cast::<u64>(), value) };
    }

    /// Waits until no transfer runs; the command register then.
    fn wait_idle(&self) -> Result<u64> {
        let start = Instant::now();
        loop {
            let command = self.read64(EDU_DMA_COMMAND);
            if command & EDU_DMA_RUN == 0 {
                return Ok(command);
            }
            if start.elapsed() > EDU_DMA_TIMEOUT {
                bail!(
                    "timeout: the DMA command register still reads {command:#x} after {} s",
                    EDU_DMA_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs one transfer to its end; the command register then.
    fn run(&self, transfer: Transfer) -> Result<u64> {
        self.wait_idle()?;
        self.write64(EDU_DMA_SOURCE, transfer.source);
        self.write64(EDU_DMA_DESTINATION, transfer.destination);
        self.write64(EDU_DMA_COUNT, transfer.count);
        let taken = [
            self.read64(EDU_DMA_SOURCE),
            self.read64(EDU_DMA_DESTINATION),
            self.read64(EDU_DMA_COUNT),
        ];
        if taken != [transfer.source, transfer.destination, transfer.count] {
            bail!(
                "the device did not take the transfer: source, destination and count read \
                 {:#x}, {:#x}, {:#x} after writing {:#x}, {:#x}, {:#x}",
                taken[0],
                taken[1],
                taken[2],
                transfer.source,
                transfer.destination,
                transfer.count
            );
        }
        // The pages' contents, written by this thread, before the device reads them.
        fence(Ordering::SeqCst);
        self.write64(EDU_DMA_COMMAND, transfer.command);
        let command = self.wait_idle()?;
        fence(Ordering::SeqCst);
        Ok(command)
    }
}

impl Drop for Edu {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe { libc::munmap(self.regs.cast(), PAGE) };
        if self.command != self.command_before {
            // Best effort: the function's command register as the probe found it.
            let _ = self.config.write_all_at(&self.command_before.to_le_bytes(), 4);
        }
    }
}

/// Programs QEMU's edu device to DMA: first between pages of this process (the control), then
/// 64 bytes from `target` (hex; by default the start of the first hypervisor range from
/// `vpr.hv=` on the kernel's command line it can reach), then 64 bytes to it. Each finding
/// goes to `report` as it comes, one line each.
pub fn edu_dma(target: Option<&str>, report: &mut dyn FnMut(String)) -> Result<()> {
    let command_line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let ranges = hypervisor_ranges(&command_line).map_err(anyhow::Error::msg)?;
    let target = match target {
        Some(text) => parse_hex(text).map_err(|e| anyhow::anyhow!("--target: {e}"))?,
        None => default_target(&ranges).with_context(|| {
            format!(
                "no --target, and no hypervisor range (vpr.hv={} on the kernel's command line) \
                 below {EDU_DMA_LIMIT:#x}, the edu device's DMA reach",
                show_ranges(&ranges)
            )
        })?,
    };
    // Refused before touching the device if the device cannot aim there.
    let read = Transfer::new(Direction::ToDevice, target, 0, EDU_ATTACK_LEN)
        .map_err(|e| anyhow::anyhow!("target: {e}"))?;
    let write = Transfer::new(Direction::ToRam, target, 0, EDU_ATTACK_LEN)
        .map_err(|e| anyhow::anyhow!("target: {e}"))?;
    let owner = ranges.iter().find(|&&(start, end)| (start..end).contains(&target));
    report(match owner {
        Some((start, end)) => {
            format!("target {target:#x}, in the hypervisor's range {start:#x}-{end:#x}")
        }
        None => {
            format!("target {target:#x}, in no hypervisor range (vpr.hv={})", show_ranges(&ranges))
        }
    });

    let edu = Edu::open()?;
    report(format!(
        "device {}, PCI command register {:#06x} (was {:#06x}), BAR 0 mapped",
        edu.name, edu.command, edu.command_before
    ));
    let mut kept = Vec::new();
    let (mut source, source_pa) = reachable_page(&mut kept)?;
    let (mut back, back_pa) = reachable_page(&mut kept)?;
    let to_device = |ram, len| Transfer::new(Direction::ToDevice, ram, 0, len);
    let to_ram = |ram, len| Transfer::new(Direction::ToRam, ram, 0, len);
    let control_len = usize::try_from(EDU_CONTROL_LEN)?;
    let attack_len = usize::try_from(EDU_ATTACK_LEN)?;

    // The control: a pattern from one page through the device's buffer to the other.
    let pattern: Vec<u8> = (0..=255u8).cycle().map(|b| b ^ 0x5C).take(control_len).collect();
    source.bytes_mut()[..control_len].copy_from_slice(&pattern);
    back.bytes_mut().fill(EDU_BACK_FILL);
    edu.run(to_device(source_pa, EDU_CONTROL_LEN).map_err(anyhow::Error::msg)?)?;
    edu.run(to_ram(back_pa, EDU_CONTROL_LEN).map_err(anyhow::Error::msg)?)?;
    let got = back.read(control_len);
    if got != pattern {
        bail!(
            "control: {EDU_CONTROL_LEN} bytes from {source_pa:#x} through the device to \
             {back_pa:#x} arrived as {:02x?}...: the DMA engine does not work on the guest's \
             own memory, so a refusal would prove nothing",
            &got[..16]
        );
    }
    report(format!(
        "control: DMA works on the guest's memory ({EDU_CONTROL_LEN} bytes {source_pa:#x} -> \
         device -> {back_pa:#x})"
    ));

    // The read: the sentinel into the buffer (checked there), the target over it, and back.
    let sentinel = repeated(EDU_SENTINEL, EDU_ATTACK_LEN);
    source.bytes_mut()[..attack_len].copy_from_slice(&sentinel);
    back.bytes_mut().fill(EDU_BACK_FILL);
    edu.run(to_device(source_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    edu.run(to_ram(back_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    if back.read(attack_len) != sentinel {
        bail!("read: the sentinel did not reach the device's buffer and back");
    }
    back.bytes_mut().fill(EDU_BACK_FILL);
    let after_read = edu.run(read)?;
    edu.run(to_ram(back_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    let got = back.read(attack_len);
    match judge_read(&got, &sentinel) {
        ReadOutcome::Zeros => report(format!(
            "read: refused (zeros): the {EDU_ATTACK_LEN} bytes at {target:#x} came back as \
             zeros, QEMU's IOMMU's answer to a refused read (command register {after_read:#x})"
        )),
        ReadOutcome::Unchanged => report(format!(
            "read: refused: the device's buffer still holds the sentinel after the read of \
             {target:#x} (command register {after_read:#x})"
        )),
        ReadOutcome::NotCopiedBack => {
            bail!("read: the copy of the device's buffer to {back_pa:#x} did not arrive")
        }
        ReadOutcome::Leaked => {
            report(format!(
                "read: DONE: read {EDU_ATTACK_LEN} bytes at {target:#x}: {}",
                hex(&got)
            ));
        }
    }

    // The write: a pattern into the buffer, then to the target.
    let pattern = repeated(EDU_WRITE_PATTERN, EDU_ATTACK_LEN);
    source.bytes_mut()[..attack_len].copy_from_slice(&pattern);
    edu.run(to_device(source_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    let after_write = edu.run(write)?;
    // Read the target back through the device, the sentinel in its buffer first: the pattern
    // coming back means the write landed.
    source.bytes_mut()[..attack_len].copy_from_slice(&sentinel);
    edu.run(to_device(source_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    back.bytes_mut().fill(EDU_BACK_FILL);
    edu.run(read)?;
    edu.run(to_ram(back_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    let landed = back.read(attack_len) == pattern;
    report(format!(
        "write: {} {EDU_ATTACK_LEN} bytes of {:?} repeated to {target:#x} (command register \
         {after_write:#x} afterwards), {}",
        if landed { "DONE:" } else { "refused:" },
        String::from_utf8_lossy(EDU_WRITE_PATTERN),
        if landed {
            "and they read back from there"
        } else {
            "and they do not read back from there"
        }
    ));
    drop(kept);
    Ok(())
}

/// The local APIC's message window (Intel SDM Vol. 3 §11.11.1, AMD APM Vol. 2 §16.5): a
/// 4-byte write at 0xFEE0_0000 is an interrupt message to APIC 0 (physical destination), its
/// data the vector (bits 7:0) and the delivery mode (bits 10:8).
const MSI_ADDRESS: u64 = 0xFEE0_0000;

/// Has the edu device send an interrupt message by DMA: a 4-byte write of `mode`'s data
/// (`smi`: delivery mode 2; `nmi`: 4) into the local APIC's window — what a device whose
/// DMA the guest steers can do without any MSI capability. The device must have been started
/// with a DMA mask reaching 0xFEE0_0000 (`-device edu,dma_mask=0xffffffff`): the probe checks
/// that first, since a 28-bit mask would turn the write into one of guest RAM.
pub fn edu_message(mode: &str, report: &mut dyn FnMut(String)) -> Result<()> {
    let delivery: u32 = match mode {
        "smi" => 2,
        "nmi" => 4,
        other => bail!("no interrupt message {other:?} (known: smi, nmi)"),
    };
    let edu = Edu::open()?;
    let mut kept = Vec::new();
    let (mut page, page_pa) = reachable_page(&mut kept)?;
    let (mut back, back_pa) = reachable_page(&mut kept)?;
    let to_device = |ram, len| Transfer::new(Direction::ToDevice, ram, 0, len);
    let to_ram = |ram, len| Transfer::new(Direction::ToRam, ram, 0, len);
    // The mask: a read of the page's address plus 256 MiB comes back as the page's own bytes
    // when the device cuts addresses to 28 bits.
    let pattern = repeated(EDU_SENTINEL, EDU_ATTACK_LEN);
    let len = usize::try_from(EDU_ATTACK_LEN)?;
    page.bytes_mut()[..len].copy_from_slice(&pattern);
    back.bytes_mut().fill(EDU_BACK_FILL);
    let aliased = Transfer {
        source: page_pa + EDU_DMA_LIMIT,
        ..to_device(page_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?
    };
    edu.run(aliased)?;
    edu.run(to_ram(back_pa, EDU_ATTACK_LEN).map_err(anyhow::Error::msg)?)?;
    if back.read(len) == pattern {
        bail!("the edu device's DMA mask is 28 bits: start it with dma_mask=0xffffffff");
    }
    // The message: its data into the device's buffer, then 4 bytes to the window.
    let data = delivery << 8;
    page.bytes_mut()[..4].copy_from_slice(&data.to_le_bytes());
    edu.run(to_device(page_pa, 4).map_err(anyhow::Error::msg)?)?;
    let message =
        Transfer { destination: MSI_ADDRESS, ..to_ram(page_pa, 4).map_err(anyhow::Error::msg)? };
    let after = edu.run(message)?;
    report(format!(
        "{mode} sent: data {data:#x} written by DMA to {MSI_ADDRESS:#x} (command register \
         {after:#x})"
    ));
    drop(kept);
    Ok(())
}

/// Ranges as `vpr.hv=` writes them.
fn show_ranges(ranges: &[(u64, u64)]) -> String {
    let shown: Vec<String> = ranges.iter().map(|(s, e)| format!("{s:#x}-{e:#x}")).collect();
    shown.join(",")
}

/// Bytes as hex digits, no separators.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_program_the_registers() {
        assert_eq!(
            Transfer::new(Direction::ToDevice, 0x12_3000, 0, 64),
            Ok(Transfer { source: 0x12_3000, destination: 0x40000, count: 64, command: 1 })
        );
        assert_eq!(
            Transfer::new(Direction::ToRam, 0x12_3000, 0x10, 256),
            Ok(Transfer { source: 0x40010, destination: 0x12_3000, count: 256, command: 3 })
        );
    }

    #[test]
    fn transfers_qemu_7_2_would_abort_on_are_refused() {
        // The whole buffer (QEMU 7.2's off-by-one), nothing, and past the buffer's end.
        assert!(Transfer::new(Direction::ToDevice, 0x1000, 0, 4096).is_err());
        assert!(Transfer::new(Direction::ToDevice, 0x1000, 0, 0).is_err());
        assert!(Transfer::new(Direction::ToRam, 0x1000, 4032, 64).is_err());
        assert!(Transfer::new(Direction::ToRam, 0x1000, 4031, 64).is_ok());
        assert!(Transfer::new(Direction::ToRam, 0x1000, u64::MAX, 64).is_err());
    }

    #[test]
    fn addresses_beyond_the_dma_mask_are_refused() {
        assert!(Transfer::new(Direction::ToDevice, 0x0FFF_FFC0, 0, 64).is_ok());
        assert!(Transfer::new(Direction::ToDevice, 0x0FFF_FFC1, 0, 64).is_err());
        assert!(Transfer::new(Direction::ToRam, 0x1000_0000, 0, 64).is_err());
        assert!(Transfer::new(Direction::ToRam, u64::MAX - 8, 0, 64).is_err());
    }

    #[test]
    fn hypervisor_ranges_parse_from_the_command_line() {
        let line = "console=ttyS0 pci=nomsi hpet=disable vpr.hv=0x100000-0x400000,0x1f000000-0x20000000 quiet\n";
        assert_eq!(
            hypervisor_ranges(line),
            Ok(vec![(0x10_0000, 0x40_0000), (0x1F00_0000, 0x2000_0000)])
        );
        assert_eq!(hypervisor_ranges("console=ttyS0"), Ok(Vec::new()));
        assert_eq!(hypervisor_ranges("vpr.hv="), Ok(Vec::new()));
        assert!(hypervisor_ranges("vpr.hv=0x1000").is_err());
        assert!(hypervisor_ranges("vpr.hv=0x1000-zz").is_err());
    }

    #[test]
    fn the_default_target_is_the_first_reachable_range() {
        assert_eq!(
            default_target(&[(0x2000_0000, 0x3000_0000), (0x10_0000, 0x40_0000)]),
            Some(0x10_0000)
        );
        assert_eq!(default_target(&[(0x1000, 0x1020)]), None);
        assert_eq!(default_target(&[(0x0FFF_FFF0, 0x2000_0000)]), None);
        assert_eq!(default_target(&[]), None);
    }

    #[test]
    fn hex_parses_with_or_without_prefix() {
        assert_eq!(parse_hex("0x1f000"), Ok(0x1F000));
        assert_eq!(parse_hex("1F000"), Ok(0x1F000));
        assert!(parse_hex("0x").is_err());
        assert!(parse_hex("12g").is_err());
    }

    #[test]
    fn the_read_is_judged_by_what_came_back() {
        let sentinel = repeated(EDU_SENTINEL, 64);
        assert_eq!(sentinel.len(), 64);
        assert_eq!(&sentinel[16..32], EDU_SENTINEL);
        assert_eq!(judge_read(&[0; 64], &sentinel), ReadOutcome::Zeros);
        assert_eq!(judge_read(&sentinel, &sentinel), ReadOutcome::Unchanged);
        assert_eq!(judge_read(&[EDU_BACK_FILL; 64], &sentinel), ReadOutcome::NotCopiedBack);
        let mut leaked = [0u8; 64];
        leaked[3] = 0xE8;
        assert_eq!(judge_read(&leaked, &sentinel), ReadOutcome::Leaked);
    }
}
