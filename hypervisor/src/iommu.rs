//! The AMD IOMMU: where it is, and what its registers, device table entries and commands
//! hold; its I/O page tables ([`IoPageTable`]), and how its ACPI table is hidden ([`acpi`]).
//!
//! The hypervisor owns the IOMMU and gives it the policy of SVM's Device Exclusion Vector
//! (APM, "External Access Protection"), which QEMU does not emulate: every device ID
//! translates its DMA through one I/O page table, an identity map of the OS guest's RAM and
//! nothing else. No device then reaches the hypervisor's memory (image, heap, frame pool:
//! PALs and these very tables) or any MMIO (the TPM, the IOMMU, the ECAM window). The guest's
//! OS must not see the IOMMU: its ACPI table (IVRS) is removed from the RSDT and the XSDT.
//!
//! Everything here is data and logic; the image's `iommu` module does the MMIO. Hardware facts
//! cite the AMD I/O Virtualization Technology (IOMMU) Specification, AMD publication 48882,
//! revision 3 ("IOMMU spec"), by section title; ACPI facts the ACPI Specification 6.5
//! ("ACPI"). Where QEMU 7.2's emulation (`-M q35 -device amd-iommu`) departs from the spec,
//! the comments say so; what is written here is right for both. QEMU 7.2, as measured:
//! - a device table entry with V=0 (all zeroes, too) passes DMA through untranslated, so every
//!   device ID needs V=1 and TV=1, and the table is not bounds-checked against its size;
//! - the PR bit of a leaf entry is not checked, so unmapped entries must be all zeroes, and
//!   the cached permission is the leaf's alone;
//! - commands run when the tail pointer is written; the event log records nothing; a refused
//!   DMA reads zeroes and drops writes.

pub mod acpi;
pub mod devices;
mod page_table;

pub use page_table::{IoPageTable, LeafCounts};

use crate::memory::PAGE_SIZE;
use core::fmt;
use x86_64::PhysAddr;

/// Errors building the IOMMU's structures; each carries the address or size at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuError {
    /// An address that must be aligned (4 KiB; 8 bytes for a completion store) is not.
    Unaligned(u64),
    /// An address past what the identity map covers (4 GiB).
    OutOfRange(u64),
    /// A size the register cannot encode (device table frames, command buffer entries).
    BadSize(u64),
    /// No frame was left for a table (at the I/O address being mapped).
    OutOfTables(u64),
    /// Something is mapped there already (a bug of the builder's, not of its input).
    AlreadyMapped(u64),
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IommuError::Unaligned(a) => write!(f, "IOMMU: unaligned address {a:#x}"),
            IommuError::OutOfRange(a) => write!(f, "IOMMU: address {a:#x} out of range"),
            IommuError::BadSize(n) => write!(f, "IOMMU: size {n} cannot be encoded"),
            IommuError::OutOfTables(a) => write!(f, "IOMMU: out of table frames at {a:#x}"),
            IommuError::AlreadyMapped(a) => write!(f, "IOMMU: {a:#x} is mapped already"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registers (IOMMU spec, "IOMMU MMIO Registers")

/// Bytes of the IOMMU's MMIO window (the registers below lie in its first 16 KiB; QEMU's
/// window is this long).
pub const MMIO_BYTES: u64 = 0x4000;

/// The IOMMU's 64-bit MMIO registers the hypervisor uses (IOMMU spec, "IOMMU MMIO
/// Registers"). Each is 8-byte aligned and lies in the first [`MMIO_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// Device Table Base Address Register: the base (51:12) and the size in 4 KiB units
    /// minus one (8:0) ([`device_table_base`]).
    DeviceTableBase,
    /// Command Buffer Base Address Register: the base (51:12) and ComLen, log2 of the
    /// entries (59:56) ([`command_buffer_base`]).
    CommandBufferBase,
    /// IOMMU Control Register ([`control`]).
    Control,
    /// IOMMU Exclusion Base Register: bit 0 (ExEn) lets a range's DMA go untranslated.
    ExclusionBase,
    /// IOMMU Exclusion Range Limit Register.
    ExclusionLimit,
    /// IOMMU Extended Feature Register ([`features`]); there if the capability header's
    /// EFRSup is set ([`Location::has_extended_features`]).
    ExtendedFeatures,
    /// Command Buffer Head Pointer Register: the byte offset (18:4) of the next command the
    /// IOMMU reads.
    CommandHead,
    /// Command Buffer Tail Pointer Register: the byte offset (18:4) past the last command
    /// software wrote.
    CommandTail,
    /// IOMMU Status Register ([`status`]).
    Status,
}

impl Register {
    /// The register's offset in the MMIO window.
    pub const fn offset(self) -> u64 {
        match self {
            Register::DeviceTableBase => 0x0000,
            Register::CommandBufferBase => 0x0008,
            Register::Control => 0x0018,
            Register::ExclusionBase => 0x0020,
            Register::ExclusionLimit => 0x0028,
            Register::ExtendedFeatures => 0x0030,
            Register::CommandHead => 0x2000,
            Register::CommandTail => 0x2008,
            Register::Status => 0x2020,
        }
    }
}

/// IOMMU Control Register bits.
pub mod control {
    /// IommuEn: DMA is translated (and interrupts remapped) by the device table.
    pub const IOMMU_ENABLE: u64 = 1 << 0;
    /// Coherent: the IOMMU's reads of the device table and I/O page tables snoop the
    /// processors' caches (QEMU ignores it; real hardware needs it or cache flushes).
    pub const COHERENT: u64 = 1 << 10;
    /// CmdBufEn: the IOMMU fetches commands from the command buffer.
    pub const COMMAND_BUFFER_ENABLE: u64 = 1 << 12;
}

/// IOMMU Status Register bits.
pub mod status {
    /// CmdBufRun: the IOMMU is fetching commands.
    pub const COMMAND_BUFFER_RUNNING: u64 = 1 << 4;
}

/// IOMMU Extended Feature Register bits.
pub mod features {
    /// IASup: INVALIDATE_IOMMU_ALL is implemented.
    pub const INVALIDATE_ALL: u64 = 1 << 6;
}

/// Bits 51:12: where the pointers the IOMMU follows go.
const POINTER_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// The largest device table one register describes: 512 frames, 2 MiB, an entry for every
/// 16-bit device ID.
pub const MAX_DEVICE_TABLE_FRAMES: u64 = 512;

/// `addr` as a pointer the IOMMU follows: 4 KiB aligned (and, as a `PhysAddr`, below 2^52).
fn pointer(addr: PhysAddr) -> Result<u64, IommuError> {
    let addr = addr.as_u64();
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(IommuError::Unaligned(addr));
    }
    Ok(addr)
}

/// The Device Table Base Address Register's value for a table of `frames` 4 KiB frames at
/// `base` (IOMMU spec, "Device Table Base Address Register": Size is frames minus one).
pub fn device_table_base(base: PhysAddr, frames: u64) -> Result<u64, IommuError> {
    let base = pointer(base)?;
    if frames == 0 || frames > MAX_DEVICE_TABLE_FRAMES {
        return Err(IommuError::BadSize(frames));
    }
    Ok(base | (frames - 1))
}

/// Bytes of one command.
pub const COMMAND_BYTES: u64 = 16;
/// The byte offset bits (18:4) of the command buffer's head and tail pointer registers.
pub const COMMAND_POINTER_MASK: u64 = 0x7_FFF0;

/// The Command Buffer Base Address Register's value for a buffer of `entries` commands at
/// `base` (IOMMU spec, "Command Buffer Base Address Register": ComLen is log2 of the entries,
/// 8 to 15, so 256 to 32768 commands, 4 KiB to 512 KiB).
pub fn command_buffer_base(base: PhysAddr, entries: u64) -> Result<u64, IommuError> {
    let base = pointer(base)?;
    if !entries.is_power_of_two() || !(256..=32768).contains(&entries) {
        return Err(IommuError::BadSize(entries));
    }
    Ok(base | u64::from(entries.trailing_zeros()) << 56)
}

/// The byte offset of the command after the one at `offset` in a buffer of `buffer_bytes`,
/// wrapping to the start.
pub fn next_command_offset(offset: u64, buffer_bytes: u64) -> u64 {
    let next = offset.saturating_add(COMMAND_BYTES);
    if next >= buffer_bytes {
        0
    } else {
        next
    }
}

// ---------------------------------------------------------------------------------------------
// Device table (IOMMU spec, "Device Table Entry Format")

/// A device ID (the PCI requester ID): bus (15:8), device (7:3), function (2:0). The device
/// table is indexed by it.
pub const fn device_id(bus: u8, device: u8, function: u8) -> u16 {
    (bus as u16) << 8 | ((device & 0x1F) as u16) << 3 | (function & 7) as u16
}

/// The I/O APIC's device ID on QEMU's machines (0:14.0, as QEMU's IVRS says). QEMU checks
/// the I/O APIC's interrupt messages, and device writes to 0xFEE0_0000-0xFEEF_FFFF, against
/// this entry.
pub const IO_APIC_DEVICE_ID: u16 = device_id(0, 0x14, 0);

/// Device table entry bits (IOMMU spec, "Device Table Entry Format"), by 64-bit word.
mod dte {
    /// Word 0, V: the entry is valid (V=0 passes DMA through untranslated).
    pub const VALID: u64 = 1 << 0;
    /// Word 0, TV: the translation fields are valid (TV=0 passes DMA through too).
    pub const TRANSLATION_VALID: u64 = 1 << 1;
    /// Word 0, Mode (11:9): the I/O page table's levels; 0 passes DMA through.
    pub const MODE_SHIFT: u32 = 9;
    /// Word 0, IR: DMA reads allowed (as far as the page table allows them too).
    pub const READ: u64 = 1 << 61;
    /// Word 0, IW: DMA writes allowed (likewise).
    pub const WRITE: u64 = 1 << 62;
    /// Word 1, DomainID (15:0): the tag of the IOMMU's cached translations.
    pub const DOMAIN_MASK: u64 = 0xFFFF;
    /// Word 2, IV: the interrupt fields are valid; with IV=0 interrupts pass unchanged.
    pub const INTERRUPT_MAP_VALID: u64 = 1 << 0;
    /// Word 2, IntCtl (61:60): what happens to fixed and arbitrated interrupts; left 00b,
    /// which target-aborts them. The other fields of word 2 (IntTabLen 4:1, IG 5, the
    /// interrupt table root 51:6, and the pass bits InitPass 56, EIntPass 57, NMIPass 58,
    /// Lint0Pass 62, Lint1Pass 63) stay zero: no table, and INIT, ExtInt, NMI, LINT0 and
    /// LINT1 are blocked. (QEMU 7.2 before 7.2.17 read the pass bits from word 3: zero too.)
    pub const INTERRUPT_CONTROL_MASK: u64 = 0b11 << 60;
}

/// A device table entry: 256 bits as four little-endian 64-bit words.
///
/// Fields left zero deny too: IoCtl (word 1, 36:35) target-aborts the device's port I/O,
/// SysMgt (41:40) its DMA to the system-management range, EX (39) exempts nothing from
/// translation, and word 3 (reserved in QEMU 7.2, which refuses the entry otherwise) is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTableEntry([u64; 4]);

impl DeviceTableEntry {
    /// Bytes of an entry.
    pub const BYTES: usize = 32;

    /// Words 0 and 1 for DMA through `table` tagged `domain`: V, TV, Mode, the root, IR and
    /// IW (QEMU checks the entry's IR/IW, then every level's, and caches the leaf's alone).
    fn translated(table: &IoPageTable, domain: u16) -> [u64; 4] {
        let mode = u64::from(IoPageTable::LEVELS) << dte::MODE_SHIFT;
        let root = table.root().as_u64() & POINTER_MASK;
        [
            dte::VALID | dte::TRANSLATION_VALID | mode | root | dte::READ | dte::WRITE,
            u64::from(domain) & dte::DOMAIN_MASK,
            0,
            0,
        ]
    }

    /// DMA through `table` in `domain`; every interrupt the device sends is blocked: IV=1,
    /// IntCtl=00b (target abort), no interrupt table, no pass bit.
    pub fn blocking_interrupts(table: &IoPageTable, domain: u16) -> Self {
        let mut words = Self::translated(table, domain);
        words[2] = dte::INTERRUPT_MAP_VALID & !dte::INTERRUPT_CONTROL_MASK;
        DeviceTableEntry(words)
    }

    /// DMA through `table` in `domain`; the device's interrupts pass unchanged (IV=0). For
    /// the I/O APIC ([`IO_APIC_DEVICE_ID`]), whose messages carry the guest's INTx lines.
    pub fn passing_interrupts(table: &IoPageTable, domain: u16) -> Self {
        DeviceTableEntry(Self::translated(table, domain))
    }

    /// The 32 bytes as the IOMMU reads them.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Commands (IOMMU spec, "Commands")

/// Command opcodes (bits 63:60 of the first 64-bit word, 31:28 of the second dword).
mod opcode {
    pub const COMPLETION_WAIT: u64 = 0x01;
    pub const INVALIDATE_DEVTAB_ENTRY: u64 = 0x02;
    pub const INVALIDATE_IOMMU_PAGES: u64 = 0x03;
    pub const INVALIDATE_INTERRUPT_TABLE: u64 = 0x05;
    pub const INVALIDATE_IOMMU_ALL: u64 = 0x08;
}

/// COMPLETION_WAIT's S bit: store the data at the address when earlier commands are done.
const COMPLETION_STORE: u64 = 1 << 0;
/// INVALIDATE_IOMMU_PAGES's S bit (the address encodes a range) and PDE bit (directory
/// entries too), and the address that with S=1 means every page.
const PAGES_SIZE: u64 = 1 << 0;
const PAGES_DIRECTORIES: u64 = 1 << 1;
const ALL_PAGES: u64 = 0x7FFF_FFFF_FFFF_F000;

/// A 128-bit command, as two little-endian 64-bit words (the spec draws four dwords: the
/// first word holds dwords 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command([u64; 2]);

impl Command {
    /// The command `opcode` with its other fields `first` and `second`.
    const fn new(opcode: u64, first: u64, second: u64) -> Command {
        Command([first | opcode << 60, second])
    }

    /// COMPLETION_WAIT (IOMMU spec, "COMPLETION_WAIT"): once every earlier command is done,
    /// the IOMMU writes `data` at `store` (8-byte aligned; as a `PhysAddr`, below 2^52).
    pub fn completion_wait(store: PhysAddr, data: u64) -> Result<Command, IommuError> {
        let at = store.as_u64();
        if !at.is_multiple_of(8) {
            return Err(IommuError::Unaligned(at));
        }
        Ok(Command::new(opcode::COMPLETION_WAIT, at | COMPLETION_STORE, data))
    }

    /// INVALIDATE_DEVTAB_ENTRY (IOMMU spec, "INVALIDATE_DEVTAB_ENTRY"): the IOMMU forgets
    /// what it cached of `device`'s entry.
    pub const fn invalidate_device_table_entry(device: u16) -> Command {
        Command::new(opcode::INVALIDATE_DEVTAB_ENTRY, device as u64, 0)
    }

    /// INVALIDATE_IOMMU_PAGES (IOMMU spec, "INVALIDATE_IOMMU_PAGES") of every page of
    /// `domain`: S=1, PDE=1, address 0x7FFF_FFFF_FFFF_F000, PASID 0.
    pub const fn invalidate_iommu_pages(domain: u16) -> Command {
        Command::new(
            opcode::INVALIDATE_IOMMU_PAGES,
            (domain as u64) << 32,
            ALL_PAGES | PAGES_DIRECTORIES | PAGES_SIZE,
        )
    }

    /// INVALIDATE_INTERRUPT_TABLE (IOMMU spec, "INVALIDATE_INTERRUPT_TABLE") of `device`.
    pub const fn invalidate_interrupt_table(device: u16) -> Command {
        Command::new(opcode::INVALIDATE_INTERRUPT_TABLE, device as u64, 0)
    }

    /// INVALIDATE_IOMMU_ALL (IOMMU spec, "INVALIDATE_IOMMU_ALL"): everything the IOMMU cached;
    /// only where the Extended Feature Register says IASup.
    pub const fn invalidate_all() -> Command {
        Command::new(opcode::INVALIDATE_IOMMU_ALL, 0, 0)
    }

    /// The 16 bytes as the IOMMU reads them.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Finding the IOMMU (IOMMU spec, "IOMMU Capability Block Registers"; PCI Local Bus 3.0 §6.7)

/// Where the IOMMU is: its PCI function on bus 0, its capability and its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// PCI device number.
    pub device: u8,
    /// PCI function number.
    pub function: u8,
    /// Offset of the IOMMU capability in the function's configuration space.
    pub capability: u8,
    /// The IOMMU Capability Header (the capability's first dword).
    pub header: u32,
    /// Physical address of the MMIO registers (IOMMU Base Address Low bits 31:14 and High).
    pub base: u64,
}

impl Location {
    /// Whether the Extended Feature Register exists (the header's EFRSup, bit 27).
    pub const fn has_extended_features(&self) -> bool {
        self.header & 1 << 27 != 0
    }
}

/// Configuration registers (PCI Local Bus 3.0 §6.1, §6.7).
mod config {
    /// Vendor ID (15:0); all ones where no function answers.
    pub const ID: u8 = 0x00;
    /// Status (31:16): bit 4 (20 of the dword), a capabilities list.
    pub const COMMAND_STATUS: u8 = 0x04;
    pub const HAS_CAPABILITIES: u32 = 1 << 20;
    /// Class code (31:8): base class, subclass, programming interface.
    pub const CLASS: u8 = 0x08;
    /// Header type (23:16): bit 7 (23 of the dword), a multi-function device.
    pub const HEADER: u8 = 0x0C;
    pub const MULTI_FUNCTION: u32 = 1 << 23;
    /// Capabilities pointer (7:0).
    pub const CAPABILITIES: u8 = 0x34;
}

/// Base class 0x08 (system peripheral), subclass 0x06 (IOMMU).
const CLASS_IOMMU: u32 = 0x0806;
/// Capability ID 0x0F (secure device), CapType 011b (IOMMU) in bits 18:16.
const CAPABILITY_ID: u32 = 0x0F;
const CAPABILITY_TYPE_IOMMU: u32 = 0b011;
/// IOMMU Base Address Low: bits 31:14 of the base (bit 0 is Enable).
const BASE_LOW_MASK: u32 = 0xFFFF_C000;
/// Capabilities a function may hold at most: 4-byte aligned, in 0x40-0xFF.
const MAX_CAPABILITIES: usize = 48;

/// The IOMMU among bus 0's functions, read through `config(device, function, register)`
/// (a configuration dword, all ones where nothing answers); the first one found.
pub fn find(mut config: impl FnMut(u8, u8, u8) -> u32) -> Option<Location> {
    for device in 0..32 {
        if config(device, 0, config::ID) & 0xFFFF == 0xFFFF {
            continue;
        }
        let multi = config(device, 0, config::HEADER) & config::MULTI_FUNCTION != 0;
        for function in 0..if multi { 8 } else { 1 } {
            if config(device, function, config::ID) & 0xFFFF == 0xFFFF
                || config(device, function, config::CLASS) >> 16 != CLASS_IOMMU
            {
                continue;
            }
            if let Some(location) = locate(&mut config, device, function) {
                return Some(location);
            }
        }
    }
    None
}

/// The IOMMU capability of `device`/`function`, if its list has one: a bounded walk.
fn locate(
    config: &mut impl FnMut(u8, u8, u8) -> u32,
    device: u8,
    function: u8,
) -> Option<Location> {
    if config(device, function, config::COMMAND_STATUS) & config::HAS_CAPABILITIES == 0 {
        return None;
    }
    let mut next = config(device, function, config::CAPABILITIES) & 0xFC;
    for _ in 0..MAX_CAPABILITIES {
        // 0 ends the list; nothing may point into the header.
        let at = u8::try_from(next).ok().filter(|&at| at >= 0x40)?;
        let header = config(device, function, at);
        if header & 0xFF == CAPABILITY_ID && (header >> 16) & 0b111 == CAPABILITY_TYPE_IOMMU {
            let low = config(device, function, at.checked_add(4)?);
            let high = config(device, function, at.checked_add(8)?);
            return Some(Location {
                device,
                function,
                capability: at,
                header,
                base: u64::from(high) << 32 | u64::from(low & BASE_LOW_MASK),
            });
        }
        next = (header >> 8) & 0xFC;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;
    use alloc::collections::BTreeMap;

    // ---- Registers, device table entries, commands: bit layouts against the spec.

    impl DeviceTableEntry {
        /// The four 64-bit words.
        const fn words(self) -> [u64; 4] {
            self.0
        }
    }

    impl Command {
        /// The two 64-bit words.
        const fn words(self) -> [u64; 2] {
            self.0
        }
    }

    impl Location {
        /// The IOMMU function's own device ID.
        const fn device_id(&self) -> u16 {
            device_id(0, self.device, self.function)
        }
    }

    #[test]
    fn register_offsets_and_base_encodings() {
        let offsets = [
            (Register::DeviceTableBase, 0x0000),
            (Register::CommandBufferBase, 0x0008),
            (Register::Control, 0x0018),
            (Register::ExclusionBase, 0x0020),
            (Register::ExclusionLimit, 0x0028),
            (Register::ExtendedFeatures, 0x0030),
            (Register::CommandHead, 0x2000),
            (Register::CommandTail, 0x2008),
            (Register::Status, 0x2020),
        ];
        for (register, offset) in offsets {
            assert_eq!(register.offset(), offset, "{register:?}");
            assert!(offset % 8 == 0 && offset + 8 <= MMIO_BYTES);
        }
        assert_eq!(control::IOMMU_ENABLE | control::COMMAND_BUFFER_ENABLE, 0x1001);
        let at = PhysAddr::new(0x7F00_0000);
        assert_eq!(device_table_base(at, 2), Ok(0x7F00_0001), "8 KiB: size field 1");
        assert_eq!(device_table_base(at, 512), Ok(0x7F00_01FF), "every 16-bit device ID");
        assert_eq!(device_table_base(at, 0), Err(IommuError::BadSize(0)));
        assert_eq!(device_table_base(at, 513), Err(IommuError::BadSize(513)));
        let odd = PhysAddr::new(0x7F00_0800);
        assert_eq!(device_table_base(odd, 2), Err(IommuError::Unaligned(0x7F00_0800)));
        assert_eq!(command_buffer_base(at, 256), Ok(0x0800_0000_7F00_0000), "ComLen 8");
        assert_eq!(command_buffer_base(at, 32768), Ok(0x0F00_0000_7F00_0000), "ComLen 15");
        for bad in [0, 128, 300, 65536] {
            assert_eq!(command_buffer_base(at, bad), Err(IommuError::BadSize(bad)));
        }
        assert_eq!(next_command_offset(0, 4096), 16);
        assert_eq!(next_command_offset(4080, 4096), 0, "wraps");
        assert_eq!(next_command_offset(u64::MAX, 4096), 0);
        assert_eq!(next_command_offset(0, 0), 0, "no buffer: no panic");
        assert_eq!(4080 & COMMAND_POINTER_MASK, 4080);
    }

    fn table_at(root: u64) -> IoPageTable {
        IoPageTable::with_root(PhysAddr::new(root))
    }

    #[test]
    fn device_table_entries_translate_and_block_interrupts() {
        let table = table_at(0x1234_5000);
        let blocking = DeviceTableEntry::blocking_interrupts(&table, 1);
        // V (0), TV (1), Mode 3 (11:9), root (51:12), IR (61), IW (62); DomainID 1; IV (128).
        assert_eq!(blocking.words(), [0x6000_0000_1234_5603, 1, 1, 0]);
        let passing = DeviceTableEntry::passing_interrupts(&table, 0xBEEF);
        assert_eq!(passing.words(), [0x6000_0000_1234_5603, 0xBEEF, 0, 0]);
        let bytes = blocking.to_bytes();
        assert_eq!(bytes[..8], 0x6000_0000_1234_5603_u64.to_le_bytes());
        assert_eq!((bytes[8], bytes[16], bytes[24]), (1, 1, 0));
        // Nothing outside the fields named; QEMU 7.2 refuses entries with reserved bits set
        // (word 0 bits 7:2 and 63, word 1 bit 8, word 2 bits 55:52 and 59, word 3).
        for entry in [blocking, passing] {
            let w = entry.words();
            assert_eq!(w[0] & !(3 | 7 << 9 | POINTER_MASK | 3 << 61), 0);
            assert_eq!(w[1] & !0xFFFF, 0, "IoCtl, SysMgt, EX: zero (deny)");
            assert_eq!(w[2] & !1, 0, "IntCtl 00b, no table, no pass bit");
            assert_eq!(w[3], 0);
        }
        assert_eq!(IO_APIC_DEVICE_ID, 0xA0);
        assert_eq!(device_id(1, 0x1F, 7), 0x01FF);
        assert_eq!(device_id(0, 0xFF, 0xFF), 0x00FF, "out-of-range parts are masked");
    }

    /// The spec's four dwords of a command.
    fn dwords(command: Command) -> [u32; 4] {
        let b = command.to_bytes();
        core::array::from_fn(|i| {
            u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        })
    }

    #[test]
    fn command_layouts_match_the_spec() {
        let store = PhysAddr::new(0x1234_5678_9AB8);
        let wait = Command::completion_wait(store, 0x1122_3344_5566_7788).unwrap();
        // Dword 0: store address 31:3 and S (0); dword 1: address 51:32 and the opcode
        // (31:28); dwords 2-3: the data.
        assert_eq!(dwords(wait), [0x5678_9AB9, 0x1000_1234, 0x5566_7788, 0x1122_3344]);
        assert_eq!(
            Command::completion_wait(PhysAddr::new(0x1004), 0),
            Err(IommuError::Unaligned(0x1004))
        );
        let devtab = Command::invalidate_device_table_entry(0xA0);
        assert_eq!(dwords(devtab), [0xA0, 0x2000_0000, 0, 0]);
        // Dword 1: DomainID (15:0); dword 2: S (0), PDE (1), address 31:12; dword 3: 63:32.
        let pages = Command::invalidate_iommu_pages(1);
        assert_eq!(dwords(pages), [0, 0x3000_0001, 0xFFFF_F003, 0x7FFF_FFFF]);
        let interrupts = Command::invalidate_interrupt_table(0x18);
        assert_eq!(dwords(interrupts), [0x18, 0x5000_0000, 0, 0]);
        assert_eq!(dwords(Command::invalidate_all()), [0, 0x8000_0000, 0, 0]);
        let opcodes = [wait, devtab, pages, interrupts, Command::invalidate_all()]
            .map(|c| c.words()[0] >> 60);
        assert_eq!(opcodes, [1, 2, 3, 5, 8]);
    }

    #[test]
    fn commands_pass_qemus_reserved_bit_checks() {
        let field = |w: u64, low: u32, bits: u32| (w >> low) & ((1 << bits) - 1);
        let wait = Command::completion_wait(PhysAddr::new(0xF_FFFF_FFFF_FFF8), u64::MAX).unwrap();
        assert_eq!(field(wait.words()[0], 52, 8), 0);
        for device in [0, 0xA0, 0xFFFF] {
            for command in [
                Command::invalidate_device_table_entry(device),
                Command::invalidate_interrupt_table(device),
            ] {
                let [w0, w1] = command.words();
                assert_eq!((field(w0, 0, 16), field(w0, 16, 44), w1), (u64::from(device), 0, 0));
            }
        }
        let [w0, w1] = Command::invalidate_iommu_pages(0xFFFF).words();
        assert_eq!((field(w0, 20, 12), field(w0, 48, 12), field(w1, 3, 9)), (0, 0, 0));
        assert_eq!(field(w0, 32, 16), 0xFFFF);
        let [w0, w1] = Command::invalidate_all().words();
        assert_eq!((field(w0, 0, 60), w1), (0, 0));
    }

    // ---- Finding the IOMMU.

    /// Configuration space of bus 0: 64 dwords per (device, function).
    #[derive(Default)]
    struct FakeConfig(BTreeMap<(u8, u8), [u32; 64]>);

    impl FakeConfig {
        fn function(&mut self, device: u8, function: u8, class: u32) -> &mut [u32; 64] {
            let space = self.0.entry((device, function)).or_insert([0; 64]);
            space[0] = 0x1234_1022;
            space[2] = class << 16 | 0x01;
            space
        }
        fn space(&mut self, device: u8, function: u8) -> &mut [u32; 64] {
            self.0.get_mut(&(device, function)).unwrap()
        }
        fn read(&self, device: u8, function: u8, register: u8) -> u32 {
            self.0
                .get(&(device, function))
                .map_or(u32::MAX, |space| space[usize::from(register / 4)])
        }
    }

    /// A function like QEMU's amd-iommu: the capability at 0x40 (then MSI at 0x58), the
    /// registers at 0xFED80000.
    fn qemu_iommu(config: &mut FakeConfig, device: u8, function: u8) {
        let space = config.function(device, function, CLASS_IOMMU);
        space[1] = 1 << 20;
        space[0x34 / 4] = 0x40;
        space[0x40 / 4] = 0x1F03_580F;
        space[0x44 / 4] = 0xFED8_0000;
        space[0x48 / 4] = 0;
        space[0x58 / 4] = 0x0000_0005;
    }

    #[test]
    fn finds_qemus_iommu() {
        let mut config = FakeConfig::default();
        config.function(0, 0, 0x0600);
        config.function(1, 0, 0x0300);
        qemu_iommu(&mut config, 3, 0);
        let found = find(|d, f, r| config.read(d, f, r)).unwrap();
        let expected = Location {
            device: 3,
            function: 0,
            capability: 0x40,
            header: 0x1F03_580F,
            base: 0xFED8_0000,
        };
        assert_eq!(found, expected);
        assert_eq!(found.device_id(), 0x18);
        assert!(found.has_extended_features());
    }

    #[test]
    fn finds_it_behind_other_capabilities_and_functions() {
        let mut config = FakeConfig::default();
        config.function(0x1F, 0, 0x0601)[3] = 1 << 23; // multi-function
        qemu_iommu(&mut config, 0x1F, 5);
        let space = config.space(0x1F, 5);
        space[0x34 / 4] = 0x80;
        space[0x80 / 4] = 0x0000_4009; // vendor-specific, next 0x40
        space[0x44 / 4] = 0xFED8_3FFF; // Enable and reserved bits are not the address
        space[0x48 / 4] = 0x1;
        let found = find(|d, f, r| config.read(d, f, r)).unwrap();
        assert_eq!((found.device, found.function, found.capability), (0x1F, 5, 0x40));
        assert_eq!(found.base, 0x1_FED8_0000);
        // A single-function device's other functions are not probed.
        config.space(0x1F, 0)[3] = 0;
        assert_eq!(find(|d, f, r| config.read(d, f, r)), None);
    }

    #[test]
    fn malformed_capability_lists_end() {
        type Mutation = dyn Fn(&mut [u32; 64]);
        let cases: [&Mutation; 5] = [
            &|s| s[1] = 0,                  // no capabilities list
            &|s| s[0x40 / 4] = 0x0000_580F, // ID 0x0F, but not the IOMMU type
            &|s| {
                s[0x34 / 4] = 0x48;
                s[0x48 / 4] = 0x0000_4C01;
                s[0x4C / 4] = 0x0000_4801; // a loop
            },
            &|s| {
                s[0x34 / 4] = 0x48;
                s[0x48 / 4] = 0x0000_1001; // into the header
            },
            &|s| {
                s[0x34 / 4] = 0xFC;
                s[0xFC / 4] = 0x0003_000F; // the IOMMU, but its registers past the space
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut config = FakeConfig::default();
            qemu_iommu(&mut config, 2, 0);
            case(config.space(2, 0));
            let mut reads = 0;
            let found = find(|d, f, r| {
                reads += 1;
                config.read(d, f, r)
            });
            assert_eq!(found, None, "case {i}");
            assert!(reads < 200, "case {i}: {reads} reads");
        }
    }

    #[test]
    fn absent_iommu_and_random_config_spaces_end() {
        assert_eq!(find(|_, _, _| u32::MAX), None);
        let mut rng = XorShift(0x00C0_FFEE);
        for _ in 0..2000 {
            let seed = rng.next();
            let mut reads = 0;
            let _ = find(|d, f, r| {
                reads += 1;
                let v = (seed ^ u64::from(d) << 16 ^ u64::from(f) << 8 ^ u64::from(r))
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                u32::try_from(v >> 32).unwrap()
            });
            assert!(reads <= 32 * (2 + 8 * (2 + 2 + 48 + 2)), "{reads}");
        }
    }
}
