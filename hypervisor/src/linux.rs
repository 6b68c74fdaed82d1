//! Linux guests: the bzImage's setup header, the E820 memory map, where the kernel, the
//! initrd and the boot structures go, the "zero page" (`struct boot_params`) and the flat GDT
//! of the 32-bit boot protocol.
//!
//! The hypervisor starts an unmodified kernel at its 32-bit entry point:
//!
//! - [`BzImage::parse`] checks the kernel file (boot protocol 2.12 or later, loadable high,
//!   relocatable) and splits off the protected-mode code, which is copied to
//!   [`Placement::kernel`];
//! - [`e820`] builds the map the guest sees: its RAM, minus what the hypervisor keeps, which
//!   shows as reserved;
//! - [`place`] chooses the addresses of the kernel, the initrd, the zero page, the command
//!   line and the GDT;
//! - [`boot_params`] fills the zero page and [`gdt`] gives the GDT.
//!
//! The guest then starts in 32-bit protected mode with paging off at `code32_start`
//! ([`Placement::kernel`]), with `CS` = [`BOOT_CS`], `DS`, `ES` and `SS` = [`BOOT_DS`] (flat
//! 4 GiB segments from [`gdt`] at [`Placement::gdt`]), interrupts disabled, `ESI` =
//! [`Placement::boot_params`] and `EBP`, `EDI`, `EBX` zero (boot.rst "32-bit Boot Protocol").
//!
//! Everything here takes hostile input: the kernel file comes from whoever supplies the guest.
//! Every offset and length is checked and every refusal is a distinct [`LinuxError`].
//!
//! Layouts cite the Linux kernel's "The Linux/x86 Boot Protocol"
//! (`Documentation/arch/x86/boot.rst`, "boot.rst") and "Zero Page"
//! (`Documentation/arch/x86/zero-page.rst`, "zero-page.rst"); descriptor formats the AMD64
//! Architecture Programmer's Manual, Volume 2 ("APM").
//!
//! Not checked because nothing here relies on it: the jump instruction at 0x200 (only its
//! offset byte, which gives the header's length), `xloadflags` (the 32-bit entry exists in
//! every bzImage; `XLF_KERNEL_64` only announces the 64-bit one), `min_alignment` and the
//! checksum. Fields the loader does not write (`setup_data` among them) are passed on as the
//! file has them.

use crate::bytes::{bytes_at, u16_at, u32_at, u64_at, u8_at};
use crate::memory::{Range, PAGE_SIZE};
use alloc::vec::Vec;
use core::fmt;

/// Offsets in the kernel file's first sectors and in the zero page, which holds the setup
/// header at the same offsets (boot.rst "The Real-Mode Kernel Header"; zero-page.rst: `hdr`
/// @0x1F1).
mod hdr {
    /// `setup_sects`, u8 @0x1F1: the size of the setup code in 512-byte sectors (0 means 4),
    /// and the first byte of the setup header.
    pub const SETUP_SECTS: usize = 0x1F1;
    /// `syssize`, u32 @0x1F4: the size of the protected-mode code in 16-byte paragraphs (a
    /// full 32 bits from protocol 2.04).
    pub const SYSSIZE: usize = 0x1F4;
    /// `boot_flag`, u16 @0x1FE: 0xAA55.
    pub const BOOT_FLAG: usize = 0x1FE;
    /// `jump`, 2 bytes @0x200; its second byte @0x201 is the jump's offset, and the header
    /// ends at 0x202 plus that byte (boot.rst "Details of Header Fields", `jump`).
    pub const JUMP_OFFSET: usize = 0x201;
    /// `header`, 4 bytes @0x202: the magic "HdrS".
    pub const HEADER: usize = 0x202;
    /// `version`, u16 @0x206: the boot protocol version, major in the high byte.
    pub const VERSION: usize = 0x206;
    /// `type_of_loader`, u8 @0x210 (written by the loader).
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `loadflags`, u8 @0x211.
    pub const LOADFLAGS: usize = 0x211;
    /// `code32_start`, u32 @0x214: where the protected-mode code was loaded.
    pub const CODE32_START: usize = 0x214;
    /// `ramdisk_image`, u32 @0x218: the initrd's address.
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `ramdisk_size`, u32 @0x21C: the initrd's size.
    pub const RAMDISK_SIZE: usize = 0x21C;
    /// `heap_end_ptr`, u16 @0x224: end of the setup heap, relative to the real-mode code.
    pub const HEAP_END_PTR: usize = 0x224;
    /// `cmd_line_ptr`, u32 @0x228: the command line's address (protocol 2.02).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `initrd_addr_max`, u32 @0x22C: the highest address the initrd may occupy (2.03).
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    /// `kernel_alignment`, u32 @0x230: the alignment a relocatable kernel needs (2.05).
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// `relocatable_kernel`, u8 @0x234: nonzero if the kernel may load anywhere suitably
    /// aligned (2.05).
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    /// `cmdline_size`, u32 @0x238: the longest command line, without its NUL (2.06).
    pub const CMDLINE_SIZE: usize = 0x238;
    /// `pref_address`, u64 @0x258: the preferred load address (2.10).
    pub const PREF_ADDRESS: usize = 0x258;
    /// `init_size`, u32 @0x260: the memory the kernel needs from its runtime start address
    /// until it reads its memory map (2.10).
    pub const INIT_SIZE: usize = 0x260;
    /// The end of `init_size`, the last field read: the header must reach at least here.
    pub const MIN_END: usize = 0x264;
    /// The end of the setup header's room in the zero page: `edd_mbr_sig_buffer` follows
    /// @0x290 (zero-page.rst).
    pub const MAX_END: usize = 0x290;
}

/// Offsets in the zero page outside the setup header (zero-page.rst).
mod zp {
    /// `e820_entries`, u8 @0x1E8: how many entries `e820_table` holds.
    pub const E820_ENTRIES: usize = 0x1E8;
    /// `e820_table` @0x2D0: 128 entries of 20 bytes (`struct boot_e820_entry`: `addr` u64,
    /// `size` u64, `type` u32), up to 0xCD0.
    pub const E820_TABLE: usize = 0x2D0;
    /// The size of one `e820_table` entry.
    pub const E820_ENTRY_LEN: usize = 20;
}

/// `boot_flag`: the boot sector signature.
const BOOT_FLAG: u16 = 0xAA55;
/// `header`: "HdrS".
const MAGIC: [u8; 4] = *b"HdrS";
/// The oldest boot protocol accepted: 2.12 (every field read exists from 2.10; 2.12 is the
/// one `xloadflags` and the 64-bit-clean `ext_*` fields arrived with).
pub const MIN_VERSION: u16 = 0x020C;
/// `loadflags` bit 0, `LOADED_HIGH`: the protected-mode code loads at 0x100000 or above.
const LOADED_HIGH: u8 = 0x01;
/// `loadflags` bit 7, `CAN_USE_HEAP`: `heap_end_ptr` is valid.
const CAN_USE_HEAP: u8 = 0x80;
/// `type_of_loader` for a loader without an assigned ID (boot.rst, `type_of_loader`).
const LOADER_UNDEFINED: u8 = 0xFF;
/// `heap_end_ptr`: 0xFE00, the setup heap's end as an offset from the real-mode code (boot.rst
/// "Details of Header Fields", `heap_end_ptr`), the top of its 64 KiB segment less 0x200. Only
/// the 16-bit setup code uses the heap, and the 32-bit entry skips that code.
const HEAP_END: u16 = 0xFE00;

/// The size of the zero page.
pub const BOOT_PARAMS_SIZE: usize = 4096;
/// The most entries the zero page's `e820_table` holds (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX_ENTRIES: usize = 128;
/// The size of the GDT [`gdt`] returns: four 8-byte descriptors.
pub const GDT_LEN: usize = 32;
/// `__BOOT_CS`: the code selector the 32-bit boot protocol requires (boot.rst "32-bit Boot
/// Protocol": "`__BOOT_CS`(0x10) and `__BOOT_DS`(0x18)").
pub const BOOT_CS: u16 = 0x10;
/// `__BOOT_DS`: the data selector for `DS`, `ES` and `SS` (boot.rst "32-bit Boot Protocol").
pub const BOOT_DS: u16 = 0x18;

/// `LOAD_PHYSICAL_ADDR` of the usual x86-64 configuration: the lowest load address
/// [`place`] picks when `pref_address` is taken.
const KERNEL_MIN_ADDRESS: u64 = 16 << 20;
/// The least alignment [`place`] gives the kernel (a 2 MiB large page).
const KERNEL_MIN_ALIGNMENT: u64 = 2 << 20;
/// Everything the 32-bit entry reaches lies below 4 GiB: paging is off.
const FOUR_GIB: u64 = 1 << 32;
/// Where the zero page, the command line and the GDT go: conventional memory above the
/// real-mode interrupt vectors and BIOS data and below the EBDA.
const LOW_WINDOW: Range = Range::new(0x1_0000, 0x9_0000);

/// Why a kernel, or a plan for booting it, was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxError {
    /// The file (`len` bytes) ends before byte `needed` of its header.
    Truncated {
        /// The file's length.
        len: usize,
        /// The bytes the header needs.
        needed: usize,
    },
    /// `boot_flag` (carried) is not 0xAA55.
    BadBootFlag(u16),
    /// `header` (carried, little-endian) is not "HdrS".
    BadMagic(u32),
    /// `version` (carried) is below [`MIN_VERSION`].
    OldProtocol(u16),
    /// The setup header ends (carried: 0x202 plus the byte at 0x201) before the fields read.
    HeaderTooShort(usize),
    /// The setup header ends (carried) past its room in the zero page, 0x290.
    HeaderTooLong(usize),
    /// `loadflags` (carried) lacks `LOADED_HIGH`.
    NotLoadedHigh(u8),
    /// `relocatable_kernel` is 0.
    NotRelocatable,
    /// `kernel_alignment` (carried) is not a power of two.
    BadKernelAlignment(u32),
    /// The protected-mode code starts (`offset`, from `setup_sects`) at or past the end of
    /// the file (`len` bytes).
    SetupPastEnd {
        /// `(setup_sects + 1) * 512`.
        offset: usize,
        /// The file's length.
        len: usize,
    },
    /// The protected-mode code (`len` bytes) is shorter than `syssize` says (`expected`).
    ProtectedModeTruncated {
        /// Its length in the file.
        len: u64,
        /// `syssize * 16`.
        expected: u64,
    },
    /// The E820 map needs this many entries, more than [`E820_MAX_ENTRIES`].
    TooManyE820Entries(usize),
    /// The command line (`len` bytes without its NUL) is longer than `cmdline_size` (`max`).
    CommandLineTooLong {
        /// Its length.
        len: u64,
        /// `cmdline_size`.
        max: u32,
    },
    /// No aligned RAM of this many bytes, free and below 4 GiB, for the kernel.
    KernelDoesNotFit(u64),
    /// No free RAM of this many bytes (rounded up to pages) below the initrd's limit.
    InitrdDoesNotFit(u64),
    /// No free RAM in low memory (0x10000 to 0x90000) for this structure.
    NoLowMemory(&'static str),
    /// The kernel, placed at this address, does not lie below 4 GiB.
    KernelOutOfReach(u64),
    /// The initrd does not end at or below `limit` (the lower of `initrd_addr_max + 1` and
    /// 4 GiB).
    InitrdOutOfReach {
        /// Its address.
        addr: u64,
        /// Its length.
        len: u64,
        /// The first address it may not touch.
        limit: u64,
    },
    /// The command line, placed at this address, does not lie below 4 GiB.
    CommandLineOutOfReach(u64),
}

/// A boot protocol version, shown as "major.minor".
struct Version(u16);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 >> 8, self.0 & 0xFF)
    }
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinuxError::Truncated { len, needed } => {
                write!(f, "kernel file of {len} bytes ends before its header's {needed:#x} bytes")
            }
            LinuxError::BadBootFlag(flag) => {
                write!(f, "not a Linux kernel: boot flag {flag:#06x} is not 0xaa55")
            }
            LinuxError::BadMagic(magic) => {
                write!(f, "not a bzImage: header magic {magic:#010x} is not \"HdrS\"")
            }
            LinuxError::OldProtocol(v) => {
                write!(f, "boot protocol {} is older than {}", Version(v), Version(MIN_VERSION))
            }
            LinuxError::HeaderTooShort(end) => {
                write!(f, "setup header ends at {end:#x}, before init_size")
            }
            LinuxError::HeaderTooLong(end) => write!(
                f,
                "setup header ends at {end:#x}, past its room in the zero page ({:#x})",
                hdr::MAX_END
            ),
            LinuxError::NotLoadedHigh(flags) => {
                write!(f, "kernel does not load high (loadflags {flags:#04x})")
            }
            LinuxError::NotRelocatable => write!(f, "kernel is not relocatable"),
            LinuxError::BadKernelAlignment(a) => {
                write!(f, "kernel_alignment {a:#x} is not a power of two")
            }
            LinuxError::SetupPastEnd { offset, len } => write!(
                f,
                "protected-mode code would start at {offset:#x}, past the file's {len} bytes"
            ),
            LinuxError::ProtectedModeTruncated { len, expected } => write!(
                f,
                "protected-mode code of {len} bytes is shorter than syssize's {expected} bytes"
            ),
            LinuxError::TooManyE820Entries(n) => {
                write!(f, "E820 map of {n} entries exceeds the zero page's {E820_MAX_ENTRIES}")
            }
            LinuxError::CommandLineTooLong { len, max } => {
                write!(f, "command line of {len} bytes is longer than the kernel's {max}")
            }
            LinuxError::KernelDoesNotFit(size) => {
                write!(f, "no free RAM below 4 GiB for the kernel's {size:#x} bytes")
            }
            LinuxError::InitrdDoesNotFit(size) => {
                write!(f, "no free RAM below the initrd limit for its {size:#x} bytes")
            }
            LinuxError::NoLowMemory(what) => {
                write!(f, "no free RAM between 0x10000 and 0x90000 for the {what}")
            }
            LinuxError::KernelOutOfReach(addr) => {
                write!(f, "kernel at {addr:#x} does not lie below 4 GiB")
            }
            LinuxError::InitrdOutOfReach { addr, len, limit } => write!(
                f,
                "initrd of {len:#x} bytes at {addr:#x} does not end at or below {limit:#x}"
            ),
            LinuxError::CommandLineOutOfReach(addr) => {
                write!(f, "command line at {addr:#x} does not lie below 4 GiB")
            }
        }
    }
}

/// A usize as a u64 (lossless on every target this builds for; saturating otherwise).
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A checked bzImage: its setup header and its protected-mode code.
#[derive(Clone, Copy)]
pub struct BzImage<'a> {
    /// The setup header, bytes 0x1F1 up to 0x202 plus the byte at 0x201.
    header: &'a [u8],
    /// The protected-mode code, from `(setup_sects + 1) * 512` to the end of the file.
    protected_mode: &'a [u8],
    setup_sects: u8,
    version: u16,
    kernel_alignment: u32,
    pref_address: u64,
    init_size: u32,
    initrd_addr_max: u32,
    cmdline_size: u32,
}

impl fmt::Debug for BzImage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BzImage")
            .field("version", &format_args!("{}", Version(self.version)))
            .field("setup_sects", &self.setup_sects)
            .field("header_len", &self.header.len())
            .field("protected_mode_len", &self.protected_mode.len())
            .field("kernel_alignment", &format_args!("{:#x}", self.kernel_alignment))
            .field("pref_address", &format_args!("{:#x}", self.pref_address))
            .field("init_size", &format_args!("{:#x}", self.init_size))
            .field("initrd_addr_max", &format_args!("{:#x}", self.initrd_addr_max))
            .field("cmdline_size", &self.cmdline_size)
            .finish()
    }
}

impl<'a> BzImage<'a> {
    /// Checks the kernel file `bytes`: boot flag, "HdrS", protocol 2.12 or later, a setup
    /// header inside the file and the zero page, `LOADED_HIGH`, relocatable, a power-of-two
    /// `kernel_alignment`, and protected-mode code that is not empty and at least as long as
    /// `syssize` says.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LinuxError> {
        let truncated = |needed: usize| LinuxError::Truncated { len: bytes.len(), needed };
        let flag = u16_at(bytes, hdr::BOOT_FLAG).ok_or(truncated(hdr::BOOT_FLAG + 2))?;
        if flag != BOOT_FLAG {
            return Err(LinuxError::BadBootFlag(flag));
        }
        let magic = bytes_at::<4>(bytes, hdr::HEADER).ok_or(truncated(hdr::HEADER + 4))?;
        if magic != MAGIC {
            return Err(LinuxError::BadMagic(u32::from_le_bytes(magic)));
        }
        let version = u16_at(bytes, hdr::VERSION).ok_or(truncated(hdr::VERSION + 2))?;
        if version < MIN_VERSION {
            return Err(LinuxError::OldProtocol(version));
        }
        // boot.rst "Details of Header Fields", `jump`: "the end of setup header can be
        // calculated as follows: 0x0202 + byte value at offset 0x0201".
        let jump = u8_at(bytes, hdr::JUMP_OFFSET).ok_or(truncated(hdr::JUMP_OFFSET + 1))?;
        let end = hdr::HEADER + usize::from(jump);
        if end < hdr::MIN_END {
            return Err(LinuxError::HeaderTooShort(end));
        }
        if end > hdr::MAX_END {
            return Err(LinuxError::HeaderTooLong(end));
        }
        let header = bytes.get(hdr::SETUP_SECTS..end).ok_or(truncated(end))?;
        // Every field below lies in [0x1F1, MIN_END), which `header` covers.
        let field = |offset: usize| offset - hdr::SETUP_SECTS;
        let short = LinuxError::HeaderTooShort(end);
        let loadflags = u8_at(header, field(hdr::LOADFLAGS)).ok_or(short)?;
        if loadflags & LOADED_HIGH == 0 {
            return Err(LinuxError::NotLoadedHigh(loadflags));
        }
        if u8_at(header, field(hdr::RELOCATABLE_KERNEL)).ok_or(short)? == 0 {
            return Err(LinuxError::NotRelocatable);
        }
        let kernel_alignment = u32_at(header, field(hdr::KERNEL_ALIGNMENT)).ok_or(short)?;
        if !kernel_alignment.is_power_of_two() {
            return Err(LinuxError::BadKernelAlignment(kernel_alignment));
        }
        // boot.rst "Details of Header Fields", `setup_sects`: "If this field is 0, the real
        // value is 4"; "Loading The Rest of The Kernel": the protected-mode kernel "starts at
        // offset (setup_sects+1)*512 in the kernel file".
        let setup_sects = match u8_at(header, field(hdr::SETUP_SECTS)).ok_or(short)? {
            0 => 4,
            n => n,
        };
        let offset = (usize::from(setup_sects) + 1) * 512;
        let protected_mode = match bytes.get(offset..) {
            Some(code) if !code.is_empty() => code,
            _ => return Err(LinuxError::SetupPastEnd { offset, len: bytes.len() }),
        };
        let syssize = u32_at(header, field(hdr::SYSSIZE)).ok_or(short)?;
        let expected = u64::from(syssize) * 16;
        if to_u64(protected_mode.len()) < expected {
            return Err(LinuxError::ProtectedModeTruncated {
                len: to_u64(protected_mode.len()),
                expected,
            });
        }
        Ok(BzImage {
            header,
            protected_mode,
            setup_sects,
            version,
            kernel_alignment,
            pref_address: u64_at(header, field(hdr::PREF_ADDRESS)).ok_or(short)?,
            init_size: u32_at(header, field(hdr::INIT_SIZE)).ok_or(short)?,
            initrd_addr_max: u32_at(header, field(hdr::INITRD_ADDR_MAX)).ok_or(short)?,
            cmdline_size: u32_at(header, field(hdr::CMDLINE_SIZE)).ok_or(short)?,
        })
    }

    /// The protected-mode code: what is copied to [`Placement::kernel`].
    pub fn protected_mode(&self) -> &'a [u8] {
        self.protected_mode
    }

    /// The setup header, bytes 0x1F1 up to 0x202 plus the byte at 0x201: what is copied to
    /// the zero page at 0x1F1.
    pub fn setup_header(&self) -> &'a [u8] {
        self.header
    }

    /// The boot protocol version (`version`), major in the high byte: 0x020F is 2.15.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The setup code's size in sectors (`setup_sects`, with 0 read as 4).
    pub fn setup_sects(&self) -> u8 {
        self.setup_sects
    }

    /// The alignment the kernel needs (`kernel_alignment`, a power of two).
    pub fn kernel_alignment(&self) -> u32 {
        self.kernel_alignment
    }

    /// The preferred load address (`pref_address`).
    pub fn pref_address(&self) -> u64 {
        self.pref_address
    }

    /// The memory the kernel needs from its load address while it decompresses
    /// (`init_size`).
    pub fn init_size(&self) -> u32 {
        self.init_size
    }

    /// The highest address the initrd may occupy (`initrd_addr_max`).
    pub fn initrd_addr_max(&self) -> u32 {
        self.initrd_addr_max
    }

    /// The longest command line, without its NUL (`cmdline_size`).
    pub fn cmdline_size(&self) -> u32 {
        self.cmdline_size
    }

    /// The bytes the kernel occupies from its load address: the larger of `init_size` and
    /// the protected-mode code.
    pub fn kernel_span(&self) -> u64 {
        u64::from(self.init_size).max(to_u64(self.protected_mode.len()))
    }
}

/// The type of an E820 entry (zero-page.rst `e820_table`; the values of the ACPI address
/// range types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Kind {
    /// `E820_TYPE_RAM`: memory the kernel may use.
    Ram = 1,
    /// `E820_TYPE_RESERVED`: memory the kernel must leave alone.
    Reserved = 2,
}

impl E820Kind {
    /// Its `type` value in the table.
    pub fn code(self) -> u32 {
        match self {
            E820Kind::Ram => 1,
            E820Kind::Reserved => 2,
        }
    }
}

impl fmt::Display for E820Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E820Kind::Ram => write!(f, "usable"),
            E820Kind::Reserved => write!(f, "reserved"),
        }
    }
}

/// One entry of the E820 map (`struct boot_e820_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Its first address.
    pub addr: u64,
    /// Its length in bytes (never 0 in a map from [`e820`]).
    pub size: u64,
    /// What it is.
    pub kind: E820Kind,
}

impl E820Entry {
    /// Its addresses.
    pub fn range(&self) -> Range {
        Range::sized(self.addr, self.size)
    }
}

impl fmt::Display for E820Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.range(), self.kind)
    }
}

/// `ranges` without empty ones, sorted, overlapping and adjacent ones merged.
fn normalize(ranges: &[Range]) -> Vec<Range> {
    let mut sorted: Vec<Range> = ranges.iter().copied().filter(|r| !r.is_empty()).collect();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// The addresses of `from` outside every range of `holes` (both normalized), normalized.
fn subtract(from: &[Range], holes: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    for range in from {
        let mut start = range.start;
        for hole in holes {
            if hole.start >= range.end {
                break;
            }
            if hole.end <= start {
                continue;
            }
            if hole.start > start {
                out.push(Range::new(start, hole.start));
            }
            start = hole.end;
            if start >= range.end {
                break;
            }
        }
        if start < range.end {
            out.push(Range::new(start, range.end));
        }
    }
    out
}

/// The E820 map for a guest with RAM `ram` of which the hypervisor keeps `reserved`: the RAM
/// outside every reserved range as [`E820Kind::Ram`], every reserved range as
/// [`E820Kind::Reserved`]. Sorted by address, disjoint, empty ranges dropped, adjacent ranges
/// of one kind merged; at most [`E820_MAX_ENTRIES`] entries.
pub fn e820(ram: &[Range], reserved: &[Range]) -> Result<Vec<E820Entry>, LinuxError> {
    let reserved = normalize(reserved);
    let usable = subtract(&normalize(ram), &reserved);
    let entry = |kind: E820Kind| move |r: &Range| E820Entry { addr: r.start, size: r.len(), kind };
    let mut entries: Vec<E820Entry> = usable
        .iter()
        .map(entry(E820Kind::Ram))
        .chain(reserved.iter().map(entry(E820Kind::Reserved)))
        .collect();
    entries.sort_unstable_by_key(|e| e.addr);
    // Both lists are merged already and interleave, so nothing merges here; kept so the
    // output's promise does not rest on that argument.
    let mut map: Vec<E820Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        match map.last_mut() {
            Some(last) if last.kind == e.kind && last.range().end == e.addr => {
                last.size += e.size;
            }
            _ => map.push(e),
        }
    }
    if map.len() > E820_MAX_ENTRIES {
        return Err(LinuxError::TooManyE820Entries(map.len()));
    }
    Ok(map)
}

/// Where [`place`] puts things: guest-physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The protected-mode code and the kernel's working memory (`code32_start`, the 32-bit
    /// entry point), aligned to `kernel_alignment` and at least 2 MiB.
    pub kernel: u64,
    /// The initrd, page-aligned; 0 if there is none.
    pub initrd: u64,
    /// The zero page (4 KiB, page-aligned).
    pub boot_params: u64,
    /// The NUL-terminated command line (page-aligned).
    pub cmdline: u64,
    /// The GDT from [`gdt`] (one page).
    pub gdt: u64,
}

/// `value` rounded up to a multiple of `align` (a power of two), `None` on overflow.
fn checked_align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The lowest multiple of `align` (a power of two) starting `size` bytes inside one range of
/// `free` (normalized) and `window`.
fn lowest_fit(free: &[Range], size: u64, align: u64, window: Range) -> Option<u64> {
    free.iter().find_map(|range| {
        let range = range.intersect(window);
        let start = checked_align_up(range.start, align)?;
        (start.checked_add(size)? <= range.end).then_some(start)
    })
}

/// The highest multiple of `align` (a power of two) starting `size` bytes inside one range of
/// `free` (normalized) and `window`.
fn highest_fit(free: &[Range], size: u64, align: u64, window: Range) -> Option<u64> {
    free.iter().rev().find_map(|range| {
        let range = range.intersect(window);
        let start = range.end.checked_sub(size)? & !(align - 1);
        (start >= range.start).then_some(start)
    })
}

/// Chooses where the kernel, the initrd (`initrd_len` bytes, 0 for none), the zero page, the
/// command line (`cmdline_len` bytes plus its NUL) and the GDT go, in the guest's RAM `ram`
/// and outside every range of `reserved` and of each other.
///
/// - The kernel takes [`BzImage::kernel_span`] bytes at `pref_address` if they are free and
///   `pref_address` is suitably aligned, else at the lowest free address at or above
///   `pref_address` and 16 MiB aligned to `kernel_alignment` (at least 2 MiB), all below
///   4 GiB. Never below `pref_address`: a relocatable kernel loaded lower runs from
///   `pref_address` anyway (boot.rst "Details of Header Fields", `init_size`: "if
///   (load_address < pref_address) load_address = pref_address").
/// - The zero page, the command line and the GDT take the lowest free pages between 0x10000
///   and 0x90000.
/// - The initrd takes the highest free pages ending at or below `initrd_addr_max + 1` and
///   4 GiB, never page 0.
pub fn place(
    image: &BzImage<'_>,
    initrd_len: u64,
    cmdline_len: u64,
    ram: &[Range],
    reserved: &[Range],
) -> Result<Placement, LinuxError> {
    check_cmdline(image, cmdline_len)?;
    let ram = normalize(ram);
    let mut taken = reserved.to_vec();
    let free = |taken: &[Range]| subtract(&ram, &normalize(taken));

    let span = image.kernel_span();
    let align = u64::from(image.kernel_alignment()).max(KERNEL_MIN_ALIGNMENT);
    let pref = image.pref_address();
    let at_pref = Range::sized(pref, span);
    let kernel = if pref != 0
        && pref.is_multiple_of(align)
        && at_pref.end <= FOUR_GIB
        && free(&taken).iter().any(|r| r.start <= at_pref.start && at_pref.end <= r.end)
    {
        pref
    } else {
        let window = Range::new(pref.max(KERNEL_MIN_ADDRESS), FOUR_GIB);
        lowest_fit(&free(&taken), span, align, window).ok_or(LinuxError::KernelDoesNotFit(span))?
    };
    taken.push(Range::sized(kernel, span));

    let mut low = |size: u64, what: &'static str| {
        let addr = lowest_fit(&free(&taken), size, PAGE_SIZE, LOW_WINDOW)
            .ok_or(LinuxError::NoLowMemory(what))?;
        taken.push(Range::sized(addr, size));
        Ok(addr)
    };
    let boot_params = low(to_u64(BOOT_PARAMS_SIZE), "zero page")?;
    // cmdline_len is at most cmdline_size, a u32, so this does not overflow.
    let cmdline =
        low(checked_align_up(cmdline_len + 1, PAGE_SIZE).unwrap_or(u64::MAX), "command line")?;
    let gdt = low(PAGE_SIZE, "GDT")?;

    let initrd = if initrd_len == 0 {
        0
    } else {
        let size = checked_align_up(initrd_len, PAGE_SIZE)
            .ok_or(LinuxError::InitrdDoesNotFit(initrd_len))?;
        // Never at 0: a `ramdisk_image` of 0 says there is no initrd (boot.rst
        // "Details of Header Fields", `ramdisk_image`), and the kernel would ignore it.
        let window = Range::new(PAGE_SIZE, initrd_limit(image));
        highest_fit(&free(&taken), size, PAGE_SIZE, window)
            .ok_or(LinuxError::InitrdDoesNotFit(size))?
    };
    Ok(Placement { kernel, initrd, boot_params, cmdline, gdt })
}

/// The first address the initrd may not touch: `initrd_addr_max + 1`, at most 4 GiB.
fn initrd_limit(image: &BzImage<'_>) -> u64 {
    (u64::from(image.initrd_addr_max()) + 1).min(FOUR_GIB)
}

/// Refuses a command line longer than the kernel takes.
fn check_cmdline(image: &BzImage<'_>, cmdline_len: u64) -> Result<(), LinuxError> {
    if cmdline_len > u64::from(image.cmdline_size()) {
        return Err(LinuxError::CommandLineTooLong { len: cmdline_len, max: image.cmdline_size() });
    }
    Ok(())
}

/// The zero page for booting `image` as `placement` says with an initrd of `initrd_len`
/// bytes (0 for none), a command line of `cmdline_len` bytes (without its NUL) and the
/// memory map `e820` (from [`e820`]): zeros, the setup header at 0x1F1, then the fields a
/// loader writes (boot.rst "Details of Header Fields"; zero-page.rst). The sentinel at 0x1EF
/// stays 0, so the kernel trusts every field.
pub fn boot_params(
    image: &BzImage<'_>,
    placement: &Placement,
    initrd_len: u64,
    cmdline_len: u64,
    e820: &[E820Entry],
) -> Result<[u8; BOOT_PARAMS_SIZE], LinuxError> {
    check_cmdline(image, cmdline_len)?;
    let kernel_end = placement.kernel.checked_add(image.kernel_span());
    if kernel_end.is_none_or(|end| end > FOUR_GIB) {
        return Err(LinuxError::KernelOutOfReach(placement.kernel));
    }
    let code32_start = u32::try_from(placement.kernel)
        .map_err(|_| LinuxError::KernelOutOfReach(placement.kernel))?;
    let (ramdisk_image, ramdisk_size) = ramdisk(image, placement.initrd, initrd_len)?;
    // The command line and its NUL.
    let cmdline_end = placement.cmdline.checked_add(cmdline_len).and_then(|end| end.checked_add(1));
    if cmdline_end.is_none_or(|end| end > FOUR_GIB) {
        return Err(LinuxError::CommandLineOutOfReach(placement.cmdline));
    }
    let cmd_line_ptr = u32::try_from(placement.cmdline)
        .map_err(|_| LinuxError::CommandLineOutOfReach(placement.cmdline))?;
    let entries = u8::try_from(e820.len())
        .ok()
        .filter(|&n| usize::from(n) <= E820_MAX_ENTRIES)
        .ok_or(LinuxError::TooManyE820Entries(e820.len()))?;

    let mut page = [0u8; BOOT_PARAMS_SIZE];
    let header = image.setup_header();
    let end = hdr::SETUP_SECTS + header.len();
    page.get_mut(hdr::SETUP_SECTS..end)
        .ok_or(LinuxError::HeaderTooLong(end))?
        .copy_from_slice(header);
    page[hdr::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    page[hdr::LOADFLAGS] |= CAN_USE_HEAP;
    put(&mut page, hdr::CODE32_START, &code32_start.to_le_bytes());
    put(&mut page, hdr::RAMDISK_IMAGE, &ramdisk_image.to_le_bytes());
    put(&mut page, hdr::RAMDISK_SIZE, &ramdisk_size.to_le_bytes());
    put(&mut page, hdr::HEAP_END_PTR, &HEAP_END.to_le_bytes());
    put(&mut page, hdr::CMD_LINE_PTR, &cmd_line_ptr.to_le_bytes());
    page[zp::E820_ENTRIES] = entries;
    let table = &mut page[zp::E820_TABLE..zp::E820_TABLE + E820_MAX_ENTRIES * zp::E820_ENTRY_LEN];
    for (slot, entry) in table.chunks_exact_mut(zp::E820_ENTRY_LEN).zip(e820) {
        put(slot, 0, &entry.addr.to_le_bytes());
        put(slot, 8, &entry.size.to_le_bytes());
        put(slot, 16, &entry.kind.code().to_le_bytes());
    }
    Ok(page)
}

/// `ramdisk_image` and `ramdisk_size` for an initrd of `len` bytes at `addr`.
fn ramdisk(image: &BzImage<'_>, addr: u64, len: u64) -> Result<(u32, u32), LinuxError> {
    if len == 0 {
        return Ok((0, 0));
    }
    let limit = initrd_limit(image);
    let out_of_reach = LinuxError::InitrdOutOfReach { addr, len, limit };
    if addr.checked_add(len).is_none_or(|end| end > limit) {
        return Err(out_of_reach);
    }
    // Both below the limit, itself at most 4 GiB.
    let image = u32::try_from(addr).map_err(|_| out_of_reach)?;
    let size = u32::try_from(len).map_err(|_| out_of_reach)?;
    Ok((image, size))
}

/// Writes `bytes` at `offset` in `page`; every caller passes a constant offset inside it.
fn put(page: &mut [u8], offset: usize, bytes: &[u8]) {
    if let Some(field) = page.get_mut(offset..offset + bytes.len()) {
        field.copy_from_slice(bytes);
    }
}

/// The flat 4 GiB 32-bit code descriptor (APM §4.7.1 "Descriptor Format", Figures 4-14
/// and 4-15): base 0, limit 0xF_FFFF, access 0x9B, flags 0xC (see [`gdt`]).
const FLAT_CODE: u64 = 0x00CF_9B00_0000_FFFF;
/// The flat 4 GiB data descriptor: as [`FLAT_CODE`], with access 0x93.
const FLAT_DATA: u64 = 0x00CF_9300_0000_FFFF;

/// The GDT of the 32-bit boot protocol, loaded at [`Placement::gdt`] with a limit of
/// `GDT_LEN - 1`: two null descriptors, then at [`BOOT_CS`] a flat 4 GiB 32-bit code segment
/// (access 0x9B: present, ring 0, execute/read, accessed; flags 0xC: 4 KiB granularity,
/// 32-bit) and at [`BOOT_DS`] a flat 4 GiB data segment (access 0x93: read/write). boot.rst
/// "32-bit Boot Protocol": "a GDT must be loaded with the descriptors for selectors
/// `__BOOT_CS`(0x10) and `__BOOT_DS`(0x18); both descriptors must be 4G flat segment;
/// `__BOOT_CS` must have execute/read permission, and `__BOOT_DS` must have read/write
/// permission".
pub fn gdt() -> [u8; GDT_LEN] {
    let mut table = [0u8; GDT_LEN];
    put(&mut table, usize::from(BOOT_CS), &FLAT_CODE.to_le_bytes());
    put(&mut table, usize::from(BOOT_DS), &FLAT_DATA.to_le_bytes());
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;
    use alloc::string::ToString;

    /// A legacy segment descriptor (APM §4.7.1 "Descriptor Format", Figures 4-14 and
    /// 4-15): limit bits 15:0 in bits 15:0, base bits 23:0 in bits 39:16, the access byte
    /// (P, DPL, S, type) in bits 47:40, limit bits 19:16 in bits 51:48, the flags (G, D/B, L,
    /// AVL) in bits 55:52 and base bits 31:24 in bits 63:56.
    fn descriptor(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
        let (base, limit) = (u64::from(base), u64::from(limit));
        (limit & 0xFFFF)
            | (base & 0xFF_FFFF) << 16
            | u64::from(access) << 40
            | ((limit >> 16) & 0xF) << 48
            | u64::from(flags & 0xF) << 52
            | ((base >> 24) & 0xFF) << 56
    }

    const MIB: u64 = 1 << 20;
    /// `setup_sects` of the test image: the protected-mode code starts at 4 * 512.
    const SETUP_SECTS: u8 = 3;
    const PM_OFFSET: usize = 2048;
    const PM_LEN: usize = 0x1000;
    const FILE_LEN: usize = PM_OFFSET + PM_LEN;
    /// The jump's offset byte: the header ends at 0x202 + 0x6A = 0x26C (as in protocol 2.15).
    const JUMP: u8 = 0x6A;
    const HEADER_END: usize = 0x26C;
    const INIT_SIZE: u32 = 0x03F9_8000;
    const PREF: u64 = 16 * MIB;

    /// The payload byte at file offset `i`: never 0, so copies and zeroing show.
    fn payload(i: usize) -> u8 {
        u8::try_from(i % 251).unwrap() + 1
    }

    fn set(file: &mut [u8], at: usize, bytes: &[u8]) {
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A minimal bzImage: payload bytes everywhere but the fields the parser reads.
    fn valid() -> Vec<u8> {
        let mut f: Vec<u8> = (0..FILE_LEN).map(payload).collect();
        f[0x1F1] = SETUP_SECTS;
        set(&mut f, 0x1F4, &u32::try_from(PM_LEN / 16).unwrap().to_le_bytes());
        set(&mut f, 0x1FE, &0xAA55u16.to_le_bytes());
        f[0x200] = 0xEB;
        f[0x201] = JUMP;
        set(&mut f, 0x202, b"HdrS");
        set(&mut f, 0x206, &0x020Fu16.to_le_bytes());
        f[0x211] = LOADED_HIGH;
        set(&mut f, 0x22C, &0x7FFF_FFFFu32.to_le_bytes());
        set(&mut f, 0x230, &0x20_0000u32.to_le_bytes());
        f[0x234] = 1;
        set(&mut f, 0x238, &0x7FFu32.to_le_bytes());
        set(&mut f, 0x258, &PREF.to_le_bytes());
        set(&mut f, 0x260, &INIT_SIZE.to_le_bytes());
        f
    }

    fn with(change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut f = valid();
        change(&mut f);
        f
    }

    fn err(file: &[u8]) -> LinuxError {
        BzImage::parse(file).unwrap_err()
    }

    #[test]
    fn parses_every_field() {
        let file = valid();
        let image = BzImage::parse(&file).unwrap();
        assert_eq!(image.version(), 0x020F);
        assert_eq!(image.setup_sects(), SETUP_SECTS);
        assert_eq!(image.kernel_alignment(), 0x20_0000);
        assert_eq!(image.pref_address(), PREF);
        assert_eq!(image.init_size(), INIT_SIZE);
        assert_eq!(image.initrd_addr_max(), 0x7FFF_FFFF);
        assert_eq!(image.cmdline_size(), 0x7FF);
        assert_eq!(image.protected_mode(), &file[PM_OFFSET..]);
        assert_eq!(image.setup_header(), &file[0x1F1..HEADER_END]);
        assert_eq!(image.kernel_span(), u64::from(INIT_SIZE));
        let debug = alloc::format!("{image:?}");
        assert!(debug.contains("2.15") && debug.contains("0x3f98000"), "{debug}");
    }

    #[test]
    fn kernel_span_covers_a_code_larger_than_init_size() {
        let file = with(|f| set(f, 0x260, &0x100u32.to_le_bytes()));
        let image = BzImage::parse(&file).unwrap();
        assert_eq!(image.kernel_span(), u64::try_from(PM_LEN).unwrap());
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let file = with(|f| {
            f[0x1F1] = 0;
            set(f, 0x1F4, &0x10u32.to_le_bytes());
        });
        let image = BzImage::parse(&file).unwrap();
        assert_eq!(image.setup_sects(), 4);
        assert_eq!(image.protected_mode(), &file[5 * 512..]);
    }

    #[test]
    fn header_of_the_largest_length_is_accepted() {
        let file = with(|f| f[0x201] = 0x8E);
        assert_eq!(BzImage::parse(&file).unwrap().setup_header(), &file[0x1F1..0x290]);
        let file = with(|f| f[0x201] = 0x62);
        assert_eq!(BzImage::parse(&file).unwrap().setup_header(), &file[0x1F1..0x264]);
    }

    #[test]
    fn refusals() {
        let len = FILE_LEN;
        let cases: [(usize, &[u8], LinuxError); 14] = [
            (0x1FE, &[0x55, 0xAB], LinuxError::BadBootFlag(0xAB55)),
            (0x1FE, &[0, 0], LinuxError::BadBootFlag(0)),
            (0x202, b"HdrT", LinuxError::BadMagic(u32::from_le_bytes(*b"HdrT"))),
            (0x206, &0x020Bu16.to_le_bytes(), LinuxError::OldProtocol(0x020B)),
            (0x206, &0x0112u16.to_le_bytes(), LinuxError::OldProtocol(0x0112)),
            (0x201, &[0x61], LinuxError::HeaderTooShort(0x263)),
            (0x201, &[0x8F], LinuxError::HeaderTooLong(0x291)),
            (0x211, &[0x80], LinuxError::NotLoadedHigh(0x80)),
            (0x234, &[0], LinuxError::NotRelocatable),
            (0x230, &0x30_0000u32.to_le_bytes(), LinuxError::BadKernelAlignment(0x30_0000)),
            (0x230, &0u32.to_le_bytes(), LinuxError::BadKernelAlignment(0)),
            (0x1F1, &[0xFF], LinuxError::SetupPastEnd { offset: 256 * 512, len }),
            // The code would start exactly at the end of the file: empty.
            (0x1F1, &[11], LinuxError::SetupPastEnd { offset: len, len }),
            (
                0x1F4,
                &0x101u32.to_le_bytes(),
                LinuxError::ProtectedModeTruncated { len: 0x1000, expected: 0x1010 },
            ),
        ];
        for (at, bytes, expected) in cases {
            let file = with(|f| set(f, at, bytes));
            assert_eq!(err(&file), expected, "{bytes:x?} at {at:#x}");
            assert!(!expected.to_string().is_empty());
        }
        assert_eq!(
            LinuxError::OldProtocol(0x020B).to_string(),
            "boot protocol 2.11 is older than 2.12"
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let file = valid();
        for len in 0..file.len() {
            assert!(BzImage::parse(&file[..len]).is_err(), "prefix of {len} bytes");
        }
        let truncated = |len, needed| LinuxError::Truncated { len, needed };
        assert_eq!(err(&file[..0x100]), truncated(0x100, 0x200));
        assert_eq!(err(&file[..0x204]), truncated(0x204, 0x206));
        assert_eq!(err(&file[..0x207]), truncated(0x207, 0x208));
        // The header runs past the end of the file.
        assert_eq!(err(&file[..0x240]), truncated(0x240, HEADER_END));
        assert_eq!(err(&file[..HEADER_END - 1]), truncated(HEADER_END - 1, HEADER_END));
        assert_eq!(
            err(&file[..PM_OFFSET]),
            LinuxError::SetupPastEnd { offset: PM_OFFSET, len: PM_OFFSET }
        );
        assert_eq!(
            err(&file[..FILE_LEN - 1]),
            LinuxError::ProtectedModeTruncated { len: 0xFFF, expected: 0x1000 }
        );
    }

    /// RAM of a 512 MiB guest: conventional memory and everything from 1 MiB.
    const RAM: [Range; 2] = [Range::new(0, 0xA_0000), Range::new(MIB, 512 * MIB)];
    /// What the hypervisor keeps: its image and its frame pool.
    const RESERVED: [Range; 2] = [Range::new(MIB, 10 * MIB), Range::new(384 * MIB, 512 * MIB)];

    fn entry(addr: u64, end: u64, kind: E820Kind) -> E820Entry {
        E820Entry { addr, size: end - addr, kind }
    }

    #[test]
    fn e820_of_a_typical_guest() {
        let reserved = [Range::new(MIB, 8 * MIB), Range::new(400 * MIB, 512 * MIB)];
        let map = e820(&RAM, &reserved).unwrap();
        assert_eq!(
            map,
            [
                entry(0, 0xA_0000, E820Kind::Ram),
                entry(MIB, 8 * MIB, E820Kind::Reserved),
                entry(8 * MIB, 400 * MIB, E820Kind::Ram),
                entry(400 * MIB, 512 * MIB, E820Kind::Reserved),
            ]
        );
        assert_eq!(map[1].to_string(), "[0x100000, 0x800000) reserved");
        assert_eq!(map[2].to_string(), "[0x800000, 0x19000000) usable");
    }

    #[test]
    fn e820_merges_and_sorts() {
        let ram = [
            Range::new(6 * MIB, 8 * MIB),
            Range::new(0, 4 * MIB),
            Range::new(2 * MIB, 6 * MIB),
            Range::new(5 * MIB, 5 * MIB),
            Range::new(9 * MIB, 3 * MIB),
        ];
        assert_eq!(e820(&ram, &[]).unwrap(), [entry(0, 8 * MIB, E820Kind::Ram)]);
        let reserved = [
            Range::new(2 * MIB, 3 * MIB),
            Range::new(MIB, 2 * MIB),
            Range::new(MIB + 5, 2 * MIB + 5),
            Range::new(7 * MIB, 7 * MIB),
            // Outside the RAM: still reserved.
            Range::new(10 * MIB, 11 * MIB),
        ];
        assert_eq!(
            e820(&ram, &reserved).unwrap(),
            [
                entry(0, MIB, E820Kind::Ram),
                entry(MIB, 3 * MIB, E820Kind::Reserved),
                entry(3 * MIB, 8 * MIB, E820Kind::Ram),
                entry(10 * MIB, 11 * MIB, E820Kind::Reserved),
            ]
        );
        // A reserved range covering all the RAM leaves no RAM entry.
        assert_eq!(
            e820(&ram, &[Range::new(0, 16 * MIB)]).unwrap(),
            [entry(0, 16 * MIB, E820Kind::Reserved)]
        );
        assert_eq!(e820(&[], &[]).unwrap(), []);
    }

    #[test]
    fn e820_holds_at_most_128_entries() {
        let fragments: Vec<Range> =
            (0..129).map(|i| Range::sized(i * 2 * PAGE_SIZE, PAGE_SIZE)).collect();
        assert_eq!(e820(&fragments, &[]), Err(LinuxError::TooManyE820Entries(129)));
        assert_eq!(e820(&fragments[..128], &[]).unwrap().len(), 128);
        // Reserved ranges count too: 65 RAM pieces around 64 holes.
        let ram = [Range::new(0, 129 * PAGE_SIZE)];
        let holes: Vec<Range> =
            (0..64).map(|i| Range::sized((2 * i + 1) * PAGE_SIZE, PAGE_SIZE)).collect();
        assert_eq!(e820(&ram, &holes), Err(LinuxError::TooManyE820Entries(129)));
    }

    /// Up to `n` random ranges in `[0, space)`, some empty, some overlapping.
    fn random_ranges(rng: &mut XorShift, n: usize, space: usize) -> Vec<Range> {
        (0..rng.below(n + 1))
            .map(|_| {
                let start = to_u64(rng.below(space));
                Range::new(start, start + to_u64(rng.below(space / 4)))
            })
            .collect()
    }

    #[test]
    fn e820_never_shows_reserved_memory_as_ram() {
        const SPACE: usize = 256;
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..2000 {
            let ram = random_ranges(&mut rng, 6, SPACE);
            let reserved = random_ranges(&mut rng, 6, SPACE);
            let map = e820(&ram, &reserved).unwrap();
            for pair in map.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!(a.range().end <= b.addr, "{map:?}");
                assert!(a.kind != b.kind || a.range().end < b.addr, "unmerged {map:?}");
            }
            for addr in 0..to_u64(SPACE + SPACE / 4) {
                let in_ram = ram.iter().any(|r| r.contains(addr));
                let in_reserved = reserved.iter().any(|r| r.contains(addr));
                let kind = map.iter().find(|e| e.range().contains(addr)).map(|e| e.kind);
                let expected = match (in_ram, in_reserved) {
                    (_, true) => Some(E820Kind::Reserved),
                    (true, false) => Some(E820Kind::Ram),
                    (false, false) => None,
                };
                assert_eq!(kind, expected, "{addr}: ram {ram:?} reserved {reserved:?}");
            }
            assert!(map.iter().all(|e| e.size > 0));
        }
    }

    fn placed(file: &[u8], initrd_len: u64, reserved: &[Range]) -> Result<Placement, LinuxError> {
        place(&BzImage::parse(file).unwrap(), initrd_len, 100, &RAM, reserved)
    }

    fn overlaps(a: Range, b: Range) -> bool {
        !a.intersect(b).is_empty()
    }

    #[test]
    fn place_uses_pref_address_when_free() {
        let file = valid();
        let image = BzImage::parse(&file).unwrap();
        let initrd_len = 20 * MIB + 123;
        let p = place(&image, initrd_len, 100, &RAM, &RESERVED).unwrap();
        assert_eq!(p.kernel, PREF);
        assert_eq!(p.boot_params, 0x1_0000);
        assert_eq!(p.cmdline, 0x1_1000);
        assert_eq!(p.gdt, 0x1_2000);
        // The highest pages below the hypervisor's frame pool.
        assert_eq!(p.initrd, 384 * MIB - (20 * MIB + PAGE_SIZE));
        assert_eq!(p.initrd % PAGE_SIZE, 0);
        let kernel = Range::sized(p.kernel, image.kernel_span());
        let initrd = Range::sized(p.initrd, initrd_len);
        let low = [p.boot_params, p.cmdline, p.gdt].map(|a| Range::sized(a, PAGE_SIZE));
        let all = [kernel, initrd, low[0], low[1], low[2]];
        for (i, a) in all.iter().enumerate() {
            assert!(RAM.iter().any(|r| r.start <= a.start && a.end <= r.end), "{a} not RAM");
            assert!(RESERVED.iter().all(|r| !overlaps(*a, *r)), "{a} reserved");
            for b in &all[i + 1..] {
                assert!(!overlaps(*a, *b), "{a} and {b} overlap");
            }
        }
    }

    #[test]
    fn place_moves_the_kernel_off_a_taken_pref_address() {
        let file = valid();
        let span = u64::from(INIT_SIZE);
        let mut reserved = RESERVED.to_vec();
        reserved.push(Range::sized(16 * MIB, span));
        let p = placed(&file, MIB, &reserved).unwrap();
        // 16 MiB + init_size = 0x4F98000, rounded up to 2 MiB.
        assert_eq!(p.kernel, 0x500_0000);
        // One taken page at the end of pref's span is enough to move it.
        let mut reserved = RESERVED.to_vec();
        reserved.push(Range::sized(16 * MIB + span - PAGE_SIZE, PAGE_SIZE));
        assert_eq!(placed(&file, MIB, &reserved).unwrap().kernel, 16 * MIB + span + 0x6_8000);
        // A small hole just above pref: the next 2 MiB boundary after it.
        let mut reserved = RESERVED.to_vec();
        reserved.push(Range::new(20 * MIB, 21 * MIB));
        assert_eq!(placed(&file, MIB, &reserved).unwrap().kernel, 22 * MIB);
        // A larger kernel_alignment is honored.
        let aligned = with(|f| set(f, 0x230, &0x100_0000u32.to_le_bytes()));
        assert_eq!(placed(&aligned, MIB, &reserved).unwrap().kernel, 32 * MIB);
    }

    #[test]
    fn place_never_goes_below_pref_address() {
        // A misaligned pref_address: the next aligned address above it.
        let file = with(|f| set(f, 0x258, &(17 * MIB).to_le_bytes()));
        assert_eq!(placed(&file, MIB, &RESERVED).unwrap().kernel, 18 * MIB);
        // A pref_address above 16 MiB whose span is taken: not back down to 16 MiB.
        let file = with(|f| set(f, 0x258, &(64 * MIB).to_le_bytes()));
        let mut reserved = RESERVED.to_vec();
        reserved.push(Range::new(64 * MIB, 65 * MIB));
        assert_eq!(placed(&file, MIB, &reserved).unwrap().kernel, 66 * MIB);
        // No pref_address: from 16 MiB.
        let file = with(|f| set(f, 0x258, &0u64.to_le_bytes()));
        assert_eq!(placed(&file, MIB, &RESERVED).unwrap().kernel, 16 * MIB);
        // One beyond the RAM: nothing fits.
        let file = with(|f| set(f, 0x258, &(1u64 << 40).to_le_bytes()));
        assert_eq!(
            placed(&file, MIB, &RESERVED),
            Err(LinuxError::KernelDoesNotFit(u64::from(INIT_SIZE)))
        );
    }

    #[test]
    fn place_refuses_what_does_not_fit() {
        let file = valid();
        let image = BzImage::parse(&file).unwrap();
        let span = u64::from(INIT_SIZE);
        // The initrd: 384 MiB - (10 MiB + span) is free below the pool, not 320 MiB more.
        let free_top = 384 * MIB - (16 * MIB + span);
        assert!(placed(&file, free_top, &RESERVED).is_ok());
        assert_eq!(
            placed(&file, free_top + 1, &RESERVED),
            Err(LinuxError::InitrdDoesNotFit(free_top + PAGE_SIZE))
        );
        assert_eq!(
            placed(&file, u64::MAX - 2, &RESERVED),
            Err(LinuxError::InitrdDoesNotFit(u64::MAX - 2))
        );
        // The kernel: only 64 MiB of RAM.
        let small = [Range::new(0, 0xA_0000), Range::new(MIB, 64 * MIB)];
        assert_eq!(place(&image, 0, 0, &small, &[]), Err(LinuxError::KernelDoesNotFit(span)));
        // Low memory: all reserved, or only room for the zero page.
        let no_low = [Range::new(0, MIB)];
        assert_eq!(place(&image, 0, 0, &RAM, &no_low), Err(LinuxError::NoLowMemory("zero page")));
        let one_page = [Range::new(0, 0x1_0000), Range::new(0x1_1000, MIB)];
        assert_eq!(
            place(&image, 0, 0, &RAM, &one_page),
            Err(LinuxError::NoLowMemory("command line"))
        );
        // The command line is at most cmdline_size bytes.
        assert_eq!(
            place(&image, 0, 0x800, &RAM, &RESERVED),
            Err(LinuxError::CommandLineTooLong { len: 0x800, max: 0x7FF })
        );
        assert!(place(&image, 0, 0x7FF, &RAM, &RESERVED).is_ok());
    }

    #[test]
    fn place_details() {
        // No initrd.
        let file = valid();
        assert_eq!(placed(&file, 0, &RESERVED).unwrap().initrd, 0);
        // A long command line takes two pages; the GDT comes after.
        let long = with(|f| set(f, 0x238, &0xFFFFu32.to_le_bytes()));
        let image = BzImage::parse(&long).unwrap();
        let p = place(&image, 0, 5000, &RAM, &RESERVED).unwrap();
        assert_eq!((p.boot_params, p.cmdline, p.gdt), (0x1_0000, 0x1_1000, 0x1_3000));
        // A 4095-byte command line and its NUL fill exactly one page.
        let p = place(&image, 0, 4095, &RAM, &RESERVED).unwrap();
        assert_eq!((p.cmdline, p.gdt), (0x1_1000, 0x1_2000));
        // initrd_addr_max bounds the initrd.
        let low_max = with(|f| set(f, 0x22C, &(256 * MIB - 1).to_le_bytes()[..4]));
        let p = placed(&low_max, 3 * MIB, &RESERVED).unwrap();
        assert_eq!(p.initrd, 253 * MIB);
        // Reserved low pages are skipped.
        let reserved = [RESERVED[0], RESERVED[1], Range::new(0, 0x1_1800)];
        let p = placed(&file, 0, &reserved).unwrap();
        assert_eq!((p.boot_params, p.cmdline, p.gdt), (0x1_2000, 0x1_3000, 0x1_4000));
    }

    #[test]
    fn place_never_puts_the_initrd_at_zero() {
        // initrd_addr_max 0xFFF leaves only page 0, which is free RAM: an initrd there would
        // have a ramdisk_image of 0, which says there is none.
        let file = with(|f| set(f, 0x22C, &0xFFFu32.to_le_bytes()));
        assert_eq!(
            placed(&file, PAGE_SIZE, &RESERVED),
            Err(LinuxError::InitrdDoesNotFit(PAGE_SIZE))
        );
        // Page 0 the only free page left once the kernel and the low structures are placed.
        let kernel_end = PREF + u64::from(INIT_SIZE);
        let reserved = [
            Range::new(PAGE_SIZE, 0x1_0000),
            Range::new(0x1_3000, PREF),
            Range::new(kernel_end, 512 * MIB),
        ];
        assert_eq!(placed(&valid(), 1, &reserved), Err(LinuxError::InitrdDoesNotFit(PAGE_SIZE)));
        // With page 1 free too, the initrd takes it.
        let reserved = [Range::new(2 * PAGE_SIZE, 0x1_0000), reserved[1], reserved[2]];
        assert_eq!(placed(&valid(), 1, &reserved).map(|p| p.initrd), Ok(PAGE_SIZE));
    }

    /// The zero page for the test image with a 20 MiB initrd and a 100-byte command line.
    fn zero_page() -> (Vec<u8>, Placement, Vec<E820Entry>, [u8; BOOT_PARAMS_SIZE]) {
        let file = valid();
        let image = BzImage::parse(&file).unwrap();
        let p = place(&image, 20 * MIB, 100, &RAM, &RESERVED).unwrap();
        let map = e820(&RAM, &RESERVED).unwrap();
        let page = boot_params(&image, &p, 20 * MIB, 100, &map).unwrap();
        (file, p, map, page)
    }

    fn u32_in(page: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(page[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn boot_params_fields() {
        let (file, p, _, page) = zero_page();
        assert_eq!(page[0x210], 0xFF);
        assert_eq!(page[0x211], LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(u32_in(&page, 0x214), u32::try_from(p.kernel).unwrap());
        assert_eq!(u32_in(&page, 0x218), u32::try_from(p.initrd).unwrap());
        assert_eq!(u32_in(&page, 0x21C), u32::try_from(20 * MIB).unwrap());
        assert_eq!(page[0x224..0x226], 0xFE00u16.to_le_bytes());
        assert_eq!(u32_in(&page, 0x228), u32::try_from(p.cmdline).unwrap());
        // Everything else of the header is the file's.
        let written =
            |i: usize| matches!(i, 0x210 | 0x211 | 0x214..0x220 | 0x224..0x226 | 0x228..0x22C);
        for i in 0x1F1..HEADER_END {
            if !written(i) {
                assert_eq!(page[i], file[i], "byte {i:#x}");
            }
        }
        // Nothing outside the header, the entry count and the table is written.
        let table_end = 0x2D0 + 4 * 20;
        for (i, byte) in page.iter().enumerate() {
            if !(0x1F1..HEADER_END).contains(&i) && i != 0x1E8 && !(0x2D0..table_end).contains(&i) {
                assert_eq!(*byte, 0, "byte {i:#x}");
            }
        }
        assert_eq!(page[0x1EF], 0, "sentinel");
    }

    #[test]
    fn boot_params_e820_table() {
        let (_, _, map, page) = zero_page();
        assert_eq!(page[0x1E8], 4);
        let expected: [(u64, u64, u32); 4] = [
            (0, 0xA_0000, 1),
            (MIB, 9 * MIB, 2),
            (10 * MIB, 374 * MIB, 1),
            (384 * MIB, 128 * MIB, 2),
        ];
        assert_eq!(map.len(), expected.len());
        for (i, (addr, size, kind)) in expected.into_iter().enumerate() {
            let at = 0x2D0 + 20 * i;
            assert_eq!(page[at..at + 8], addr.to_le_bytes(), "entry {i}");
            assert_eq!(page[at + 8..at + 16], size.to_le_bytes(), "entry {i}");
            assert_eq!(page[at + 16..at + 20], kind.to_le_bytes(), "entry {i}");
        }
        // The full table fits before eddbuf at 0xD00.
        let full: Vec<E820Entry> =
            (0..128).map(|i| E820Entry { addr: i, size: 1, kind: E820Kind::Reserved }).collect();
        let file = valid();
        let image = BzImage::parse(&file).unwrap();
        let p = place(&image, 0, 0, &RAM, &RESERVED).unwrap();
        let page = boot_params(&image, &p, 0, 0, &full).unwrap();
        assert_eq!(page[0x1E8], 128);
        assert_eq!(page[0x2D0 + 127 * 20..0x2D0 + 127 * 20 + 8], 127u64.to_le_bytes());
        assert_eq!(page[0x2D0 + 128 * 20..], [0; 0x330]);
        let too_many: Vec<E820Entry> = (0..129).map(|i| full[i % 128]).collect();
        assert_eq!(
            boot_params(&image, &p, 0, 0, &too_many),
            Err(LinuxError::TooManyE820Entries(129))
        );
        let way_too_many: Vec<E820Entry> = (0..300).map(|i| full[i % 128]).collect();
        assert_eq!(
            boot_params(&image, &p, 0, 0, &way_too_many),
            Err(LinuxError::TooManyE820Entries(300))
        );
    }

    #[test]
    fn boot_params_refusals() {
        let file = with(|f| set(f, 0x22C, &u32::MAX.to_le_bytes()));
        let image = BzImage::parse(&file).unwrap();
        let p = place(&image, MIB, 100, &RAM, &RESERVED).unwrap();
        let ok = boot_params(&image, &p, MIB, 100, &[]).unwrap();
        assert_eq!((u32_in(&ok, 0x218), u32_in(&ok, 0x21C)), (0x17F0_0000, 0x10_0000));
        let four_gib = 1u64 << 32;
        let initrd = |addr: u64, len: u64| {
            boot_params(&image, &Placement { initrd: addr, ..p }, len, 100, &[])
        };
        let out = |addr, len| Err(LinuxError::InitrdOutOfReach { addr, len, limit: four_gib });
        assert_eq!(initrd(four_gib, MIB), out(four_gib, MIB));
        assert_eq!(initrd(four_gib - PAGE_SIZE, 2 * PAGE_SIZE), out(four_gib - PAGE_SIZE, 8192));
        assert_eq!(initrd(u64::MAX, 2), out(u64::MAX, 2));
        assert!(initrd(four_gib - PAGE_SIZE, PAGE_SIZE).is_ok());
        // No initrd: both fields 0 wherever `initrd` points.
        let none = initrd(u64::MAX, 0).unwrap();
        assert_eq!((u32_in(&none, 0x218), u32_in(&none, 0x21C)), (0, 0));
        // initrd_addr_max, when it is below 4 GiB.
        let low_max = valid();
        let low_image = BzImage::parse(&low_max).unwrap();
        assert_eq!(
            boot_params(&low_image, &Placement { initrd: 0x8000_0000, ..p }, 1, 100, &[]),
            Err(LinuxError::InitrdOutOfReach { addr: 0x8000_0000, len: 1, limit: 0x8000_0000 })
        );
        let kernel = |addr| boot_params(&image, &Placement { kernel: addr, ..p }, MIB, 100, &[]);
        assert_eq!(kernel(four_gib), Err(LinuxError::KernelOutOfReach(four_gib)));
        assert_eq!(kernel(four_gib - MIB), Err(LinuxError::KernelOutOfReach(four_gib - MIB)));
        assert_eq!(kernel(u64::MAX), Err(LinuxError::KernelOutOfReach(u64::MAX)));
        let cmdline = |addr| boot_params(&image, &Placement { cmdline: addr, ..p }, MIB, 100, &[]);
        assert_eq!(cmdline(four_gib - 100), Err(LinuxError::CommandLineOutOfReach(four_gib - 100)));
        assert!(cmdline(four_gib - 101).is_ok());
        assert_eq!(
            boot_params(&image, &p, MIB, 0x800, &[]),
            Err(LinuxError::CommandLineTooLong { len: 0x800, max: 0x7FF })
        );
    }

    #[test]
    fn gdt_is_flat() {
        let table = gdt();
        assert_eq!(table[..16], [0; 16]);
        assert_eq!(table[16..24], 0x00CF_9B00_0000_FFFFu64.to_le_bytes());
        assert_eq!(table[24..32], 0x00CF_9300_0000_FFFFu64.to_le_bytes());
        assert_eq!((BOOT_CS, BOOT_DS), (0x10, 0x18));
        assert_eq!(descriptor(0x1234_5678, 0xA_BCDE, 0x9A, 0x4), 0x124A_9A34_5678_BCDE);
        assert_eq!(FLAT_CODE, descriptor(0, 0xF_FFFF, 0x9B, 0xC));
        assert_eq!(FLAT_DATA, descriptor(0, 0xF_FFFF, 0x93, 0xC));
    }

    #[test]
    fn mutated_images_never_panic() {
        let original = valid();
        let interesting: [u64; 8] = [0, 1, 0xFF, 0x1000, 0x20_0000, 1 << 31, u64::MAX, 1 << 32];
        let map = e820(&RAM, &RESERVED).unwrap();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut refused) = (0u32, 0u32);
        for _ in 0..4000 {
            let mut file = original.clone();
            for _ in 0..1 + rng.below(3) {
                // Mostly the header, where the decisions are.
                let at = if rng.below(4) == 0 {
                    rng.below(file.len())
                } else {
                    0x1F1 + rng.below(hdr::MAX_END - 0x1F1)
                };
                match rng.below(4) {
                    0 => file[at] ^= 1 << rng.below(8),
                    1 => file[at] = rng.next().to_le_bytes()[0],
                    2 => {
                        let value = interesting[rng.below(interesting.len())];
                        let at = at.min(file.len() - 8);
                        file[at..at + 8].copy_from_slice(&value.to_le_bytes());
                    }
                    _ => {
                        let at = at.min(file.len() - 8);
                        file[at..at + 8].copy_from_slice(&rng.next().to_le_bytes());
                    }
                }
            }
            if rng.below(16) == 0 {
                file.truncate(rng.below(file.len()));
            }
            match BzImage::parse(&file) {
                Ok(image) => {
                    accepted += 1;
                    let end = 0x1F1 + image.setup_header().len();
                    assert!((hdr::MIN_END..=hdr::MAX_END).contains(&end));
                    assert_eq!(image.setup_header(), &file[0x1F1..end]);
                    assert!(!image.protected_mode().is_empty());
                    let offset = file.len() - image.protected_mode().len();
                    assert_eq!(offset, (usize::from(image.setup_sects()) + 1) * 512);
                    let initrd_len = rng.next() >> rng.below(64);
                    let cmdline_len = rng.next() >> rng.below(64);
                    if let Ok(p) = place(&image, initrd_len, cmdline_len, &RAM, &RESERVED) {
                        assert!(p.kernel.is_multiple_of(0x20_0000) && p.kernel >= 16 * MIB);
                        let page = boot_params(&image, &p, initrd_len, cmdline_len, &map);
                        assert!(page.is_ok(), "{image:?} {p:?} {page:?}");
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(accepted > 100 && refused > 100, "{accepted} accepted, {refused} refused");
    }
}
