//! PAL images: static ELF64 executables, checked and planned page by page.
//!
//! A PAL image is an x86-64, little-endian `ET_EXEC` file linked at a fixed address: nothing
//! relocates it, nothing loads libraries or an interpreter for it, and it has no TLS. The
//! hypervisor copies the image out of an untrusted guest, then
//!
//! - [`parse`] validates it against [`Limits`] (where it may lie, how many pages it may take)
//!   and returns the [`Image`]: its entry point and its loadable [`Segment`]s, sorted by
//!   address, on disjoint pages, none both writable and executable;
//! - [`fill_page`] gives the content of each page a segment covers, which the caller copies
//!   into a fresh frame and maps with the segment's [`Permissions`].
//!
//! Both take hostile input: every offset and length is checked (checked arithmetic, `get`
//! instead of indexing), and every refusal is a distinct [`ElfError`].
//!
//! Field layouts cite the ELF-64 Object File Format, version 1.5 (HP/Intel, "ELF-64"), and
//! the System V gABI, chapters "ELF Header" and "Program Header" ("gABI").
//!
//! What is not checked because nothing here uses it: `EI_OSABI` and `EI_ABIVERSION`,
//! `e_shoff`, `e_flags` and the section headers, `p_paddr` and `p_align` (pages are copied,
//! not mapped from the file, so `p_offset` and `p_vaddr` need not be congruent), and `PF_R`
//! (nested page tables cannot refuse reads: every segment is readable).

use crate::bytes::{u16_at, u32_at, u64_at};
use crate::memory::{align_down, Range, PAGE_SIZE};
use crate::svm::npt::Permissions;
use alloc::vec::Vec;
use core::fmt;

/// `e_ident[EI_MAG0..=EI_MAG3]`: `0x7F 'E' 'L' 'F'` (ELF-64 "File identification").
const MAGIC: [u8; 4] = [0x7F, b'E', b'L', b'F'];
/// `e_ident[EI_CLASS]` @4: `ELFCLASS64`.
const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` @5: `ELFDATA2LSB`, little-endian.
const ELFDATA2LSB: u8 = 1;
/// `e_ident[EI_VERSION]` @6 and `e_version`: `EV_CURRENT`.
const EV_CURRENT: u8 = 1;
/// `e_type`: an executable file.
const ET_EXEC: u16 = 2;
/// `e_type`: a shared object, which is also what position-independent executables are.
const ET_DYN: u16 = 3;
/// `e_machine`: AMD x86-64 (gABI machine list).
const EM_X86_64: u16 = 62;

/// Offsets in the file header, `Elf64_Ehdr` (ELF-64 "File header"; gABI "ELF Header").
mod ehdr {
    /// `e_ident[EI_CLASS]` (`e_ident` is 16 bytes @0, the magic in its first 4).
    pub const IDENT_CLASS: usize = 4;
    /// `e_ident[EI_DATA]`.
    pub const IDENT_DATA: usize = 5;
    /// `e_ident[EI_VERSION]`.
    pub const IDENT_VERSION: usize = 6;
    /// `e_type`, u16 @16.
    pub const TYPE: usize = 16;
    /// `e_machine`, u16 @18.
    pub const MACHINE: usize = 18;
    /// `e_version`, u32 @20.
    pub const VERSION: usize = 20;
    /// `e_entry`, u64 @24.
    pub const ENTRY: usize = 24;
    /// `e_phoff`, u64 @32 (`e_shoff` @40 and `e_flags` @48 are not used).
    pub const PHOFF: usize = 32;
    /// `e_ehsize`, u16 @52.
    pub const EHSIZE: usize = 52;
    /// `e_phentsize`, u16 @54.
    pub const PHENTSIZE: usize = 54;
    /// `e_phnum`, u16 @56.
    pub const PHNUM: usize = 56;
    /// The size of `Elf64_Ehdr`.
    pub const SIZE: usize = 64;
}

/// Offsets in a program header, `Elf64_Phdr` (ELF-64 "Program header table"; gABI "Program
/// Header").
mod phdr {
    /// `p_type`, u32 @0.
    pub const TYPE: usize = 0;
    /// `p_flags`, u32 @4.
    pub const FLAGS: usize = 4;
    /// `p_offset`, u64 @8.
    pub const OFFSET: usize = 8;
    /// `p_vaddr`, u64 @16 (`p_paddr` @24 is not used).
    pub const VADDR: usize = 16;
    /// `p_filesz`, u64 @32.
    pub const FILESZ: usize = 32;
    /// `p_memsz`, u64 @40 (`p_align` @48 is not used).
    pub const MEMSZ: usize = 40;
    /// The size of `Elf64_Phdr`.
    pub const SIZE: usize = 56;
}

/// `p_type` values (gABI "Segment Types"; the `PT_GNU_*` ones are GNU extensions).
mod pt {
    /// Unused entry.
    pub const NULL: u32 = 0;
    /// Loadable segment.
    pub const LOAD: u32 = 1;
    /// Dynamic linking information.
    pub const DYNAMIC: u32 = 2;
    /// Path of a program interpreter.
    pub const INTERP: u32 = 3;
    /// Auxiliary information.
    pub const NOTE: u32 = 4;
    /// The program header table itself.
    pub const PHDR: u32 = 6;
    /// Thread-local storage template.
    pub const TLS: u32 = 7;
    /// Exception-handling frame header.
    pub const GNU_EH_FRAME: u32 = 0x6474_E550;
    /// Stack permissions.
    pub const GNU_STACK: u32 = 0x6474_E551;
    /// Read-only after relocation.
    pub const GNU_RELRO: u32 = 0x6474_E552;
    /// Program properties (`.note.gnu.property`).
    pub const GNU_PROPERTY: u32 = 0x6474_E553;
}

/// `p_flags` bit: executable (gABI "Segment Permissions").
const PF_X: u32 = 1;
/// `p_flags` bit: writable.
const PF_W: u32 = 2;

/// The most program headers an image may have.
pub const MAX_PROGRAM_HEADERS: u16 = 16;

/// Where an image may lie and how large it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The addresses segments may occupy (in a PAL, virtual = guest-physical); every page a
    /// segment touches must lie inside it, so it should be page-aligned.
    pub window: Range,
    /// The most 4 KiB pages all segments may take together.
    pub max_pages: u64,
}

/// A loadable segment (`PT_LOAD`): `mem_len` bytes at `vaddr`, the first `file_len` of them
/// from the file at `file_offset`, the rest zero (`.bss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Its first address (`p_vaddr`, any alignment).
    pub vaddr: u64,
    /// Its size in memory (`p_memsz`, never 0).
    pub mem_len: u64,
    /// Where its file bytes start in the image (`p_offset`; meaningless if `file_len` is 0).
    pub file_offset: u64,
    /// How many of its bytes come from the file (`p_filesz`, at most `mem_len`).
    pub file_len: u64,
    /// How its pages are mapped: `PF_W` gives write, `PF_X` execute, never both.
    pub permissions: Permissions,
}

impl Segment {
    /// Its bytes, `[vaddr, vaddr + mem_len)`.
    pub fn bytes(&self) -> Range {
        Range::sized(self.vaddr, self.mem_len)
    }

    /// The pages it touches: `vaddr` rounded down to 4 KiB, `vaddr + mem_len` rounded up.
    /// [`parse`] only returns segments whose pages fit in the address space; for others the
    /// end saturates at the last page boundary.
    pub fn pages(&self) -> Range {
        let end = self.vaddr.saturating_add(self.mem_len);
        let end = round_up_page(end).unwrap_or(align_down(u64::MAX, PAGE_SIZE));
        Range::new(align_down(self.vaddr, PAGE_SIZE), end)
    }

    /// How many 4 KiB pages it touches.
    pub fn page_count(&self) -> u64 {
        self.pages().len() / PAGE_SIZE
    }
}

/// A checked image: where it starts and what to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The entry point (`e_entry`), inside an executable segment.
    pub entry: u64,
    /// The loadable segments, sorted by address, on pairwise disjoint pages.
    pub segments: Vec<Segment>,
}

/// Why an image was refused. A `segment` (or `first`/`second`) is an index into the program
/// header table, whatever the entry's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// The file does not start with `0x7F 'E' 'L' 'F'`.
    BadMagic,
    /// The file (this many bytes) is shorter than an ELF64 header.
    TruncatedHeader(usize),
    /// `EI_CLASS` (carried) is not `ELFCLASS64`.
    NotElf64(u8),
    /// `EI_DATA` (carried) is not `ELFDATA2LSB`.
    NotLittleEndian(u8),
    /// `EI_VERSION` (carried) is not `EV_CURRENT`.
    BadIdentVersion(u8),
    /// `e_type` (carried) is not `ET_EXEC`; `ET_DYN` (PIE) is refused, nothing relocates PALs.
    NotExecutable(u16),
    /// `e_machine` (carried) is not `EM_X86_64`.
    WrongMachine(u16),
    /// `e_version` (carried) is not `EV_CURRENT`.
    BadVersion(u32),
    /// `e_ehsize` (carried) is smaller than an ELF64 header.
    BadHeaderSize(u16),
    /// `e_phentsize` (carried) is not the size of `Elf64_Phdr`, 56.
    BadProgramHeaderSize(u16),
    /// `e_phnum` (carried) is 0 or more than [`MAX_PROGRAM_HEADERS`].
    BadProgramHeaderCount(u16),
    /// The program header table, at `e_phoff` (carried), does not lie inside the file.
    ProgramHeadersOutsideFile(u64),
    /// A `PT_DYNAMIC` entry: the image wants dynamic linking.
    Dynamic {
        /// Its index.
        segment: usize,
    },
    /// A `PT_INTERP` entry: the image wants a program interpreter.
    Interpreter {
        /// Its index.
        segment: usize,
    },
    /// A `PT_TLS` entry: PALs have no thread-local storage.
    ThreadLocalStorage {
        /// Its index.
        segment: usize,
    },
    /// An entry of a type this loader does not know.
    UnknownSegmentType {
        /// Its index.
        segment: usize,
        /// Its `p_type`.
        p_type: u32,
    },
    /// A `PT_LOAD` with `p_filesz > p_memsz`.
    FileLargerThanMemory {
        /// Its index.
        segment: usize,
    },
    /// A `PT_LOAD` whose file bytes, `[p_offset, p_offset + p_filesz)`, are not in the file.
    SegmentOutsideFile {
        /// Its index.
        segment: usize,
    },
    /// A `PT_LOAD` whose end, `p_vaddr + p_memsz` rounded up to a page, wraps around.
    SegmentWraps {
        /// Its index.
        segment: usize,
    },
    /// A `PT_LOAD` touching a page outside [`Limits::window`].
    SegmentOutsideWindow {
        /// Its index.
        segment: usize,
    },
    /// A `PT_LOAD` both writable and executable (W^X).
    WritableAndExecutable {
        /// Its index.
        segment: usize,
    },
    /// Two `PT_LOAD`s share bytes (`first` at the lower address).
    Overlap {
        /// One of them.
        first: usize,
        /// The other.
        second: usize,
    },
    /// Two `PT_LOAD`s share a 4 KiB page, whose permissions must be one segment's
    /// (`first` at the lower address).
    SharedPage {
        /// One of them.
        first: usize,
        /// The other.
        second: usize,
    },
    /// No `PT_LOAD` with bytes in memory.
    NoLoadSegment,
    /// The segments take more pages than [`Limits::max_pages`].
    TooManyPages {
        /// The pages they take.
        pages: u64,
        /// The limit.
        max: u64,
    },
    /// `e_entry` (carried) lies in a segment that is not executable.
    EntryNotExecutable(u64),
    /// `e_entry` (carried) lies in no segment.
    EntryOutsideSegments(u64),
    /// [`fill_page`] was given a buffer of this many bytes instead of a page.
    PageBufferSize(usize),
    /// [`fill_page`] was given an address (carried) that is not a page of the segment.
    PageOutsideSegment(u64),
    /// [`fill_page`] was given a segment whose file bytes are not in the image it was given.
    SegmentNotInImage,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::BadMagic => write!(f, "not an ELF file (bad magic)"),
            ElfError::TruncatedHeader(len) => {
                write!(f, "file of {len} bytes is too short for an ELF64 header")
            }
            ElfError::NotElf64(class) => write!(f, "not a 64-bit ELF file (EI_CLASS {class})"),
            ElfError::NotLittleEndian(data) => {
                write!(f, "not a little-endian ELF file (EI_DATA {data})")
            }
            ElfError::BadIdentVersion(v) => write!(f, "unsupported EI_VERSION {v}"),
            ElfError::NotExecutable(ET_DYN) => write!(
                f,
                "position-independent or shared object (ET_DYN): PALs must be static \
                 executables linked at a fixed address"
            ),
            ElfError::NotExecutable(t) => write!(f, "not an executable (e_type {t})"),
            ElfError::WrongMachine(m) => write!(f, "not an x86-64 file (e_machine {m})"),
            ElfError::BadVersion(v) => write!(f, "unsupported e_version {v}"),
            ElfError::BadHeaderSize(n) => write!(f, "ELF header size {n} is below 64"),
            ElfError::BadProgramHeaderSize(n) => {
                write!(f, "program header size {n} is not 56")
            }
            ElfError::BadProgramHeaderCount(n) => {
                write!(f, "{n} program headers (1 to {MAX_PROGRAM_HEADERS} allowed)")
            }
            ElfError::ProgramHeadersOutsideFile(off) => {
                write!(f, "program header table at {off:#x} runs past the end of the file")
            }
            ElfError::Dynamic { segment } => {
                write!(f, "segment {segment} is PT_DYNAMIC: dynamic linking is not supported")
            }
            ElfError::Interpreter { segment } => {
                write!(f, "segment {segment} is PT_INTERP: program interpreters are not supported")
            }
            ElfError::ThreadLocalStorage { segment } => {
                write!(f, "segment {segment} is PT_TLS: PALs have no thread-local storage")
            }
            ElfError::UnknownSegmentType { segment, p_type } => {
                write!(f, "segment {segment} has unknown type {p_type:#x}")
            }
            ElfError::FileLargerThanMemory { segment } => {
                write!(f, "segment {segment} has more bytes in the file than in memory")
            }
            ElfError::SegmentOutsideFile { segment } => {
                write!(f, "segment {segment} runs past the end of the file")
            }
            ElfError::SegmentWraps { segment } => {
                write!(f, "segment {segment} wraps around the address space")
            }
            ElfError::SegmentOutsideWindow { segment } => {
                write!(f, "segment {segment} lies outside the allowed addresses")
            }
            ElfError::WritableAndExecutable { segment } => {
                write!(f, "segment {segment} is writable and executable")
            }
            ElfError::Overlap { first, second } => {
                write!(f, "segments {first} and {second} overlap")
            }
            ElfError::SharedPage { first, second } => {
                write!(f, "segments {first} and {second} share a page")
            }
            ElfError::NoLoadSegment => write!(f, "no loadable segment"),
            ElfError::TooManyPages { pages, max } => {
                write!(f, "segments take {pages} pages, more than the {max} allowed")
            }
            ElfError::EntryNotExecutable(entry) => {
                write!(f, "entry point {entry:#x} is in a non-executable segment")
            }
            ElfError::EntryOutsideSegments(entry) => {
                write!(f, "entry point {entry:#x} is in no segment")
            }
            ElfError::PageBufferSize(len) => {
                write!(f, "page buffer of {len} bytes is not one page")
            }
            ElfError::PageOutsideSegment(addr) => {
                write!(f, "{addr:#x} is not a page of the segment")
            }
            ElfError::SegmentNotInImage => write!(f, "segment's file bytes are not in the image"),
        }
    }
}

/// `value` rounded up to a page boundary, `None` past the top of the address space.
fn round_up_page(value: u64) -> Option<u64> {
    Some(align_down(value.checked_add(PAGE_SIZE - 1)?, PAGE_SIZE))
}

/// The fields of `Elf64_Phdr` this loader uses.
struct ProgramHeader {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_filesz: u64,
    p_memsz: u64,
}

impl ProgramHeader {
    fn read(entry: &[u8]) -> Option<Self> {
        Some(ProgramHeader {
            p_type: u32_at(entry, phdr::TYPE)?,
            p_flags: u32_at(entry, phdr::FLAGS)?,
            p_offset: u64_at(entry, phdr::OFFSET)?,
            p_vaddr: u64_at(entry, phdr::VADDR)?,
            p_filesz: u64_at(entry, phdr::FILESZ)?,
            p_memsz: u64_at(entry, phdr::MEMSZ)?,
        })
    }
}

/// Checks the file header of `image`; its entry point and program header table.
fn read_header(image: &[u8]) -> Result<(u64, &[u8]), ElfError> {
    if image.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(ElfError::BadMagic);
    }
    let header = image.get(..ehdr::SIZE).ok_or(ElfError::TruncatedHeader(image.len()))?;
    // The header is 64 bytes, so every read below succeeds; a failure would still be an error.
    let truncated = ElfError::TruncatedHeader(image.len());
    let byte = |at: usize| header.get(at).copied().ok_or(truncated);
    let class = byte(ehdr::IDENT_CLASS)?;
    if class != ELFCLASS64 {
        return Err(ElfError::NotElf64(class));
    }
    let data = byte(ehdr::IDENT_DATA)?;
    if data != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian(data));
    }
    let ident_version = byte(ehdr::IDENT_VERSION)?;
    if ident_version != EV_CURRENT {
        return Err(ElfError::BadIdentVersion(ident_version));
    }
    let e_type = u16_at(header, ehdr::TYPE).ok_or(truncated)?;
    if e_type != ET_EXEC {
        return Err(ElfError::NotExecutable(e_type));
    }
    let machine = u16_at(header, ehdr::MACHINE).ok_or(truncated)?;
    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(machine));
    }
    let version = u32_at(header, ehdr::VERSION).ok_or(truncated)?;
    if version != u32::from(EV_CURRENT) {
        return Err(ElfError::BadVersion(version));
    }
    let ehsize = u16_at(header, ehdr::EHSIZE).ok_or(truncated)?;
    if usize::from(ehsize) < ehdr::SIZE {
        return Err(ElfError::BadHeaderSize(ehsize));
    }
    let phentsize = u16_at(header, ehdr::PHENTSIZE).ok_or(truncated)?;
    if usize::from(phentsize) != phdr::SIZE {
        return Err(ElfError::BadProgramHeaderSize(phentsize));
    }
    let phnum = u16_at(header, ehdr::PHNUM).ok_or(truncated)?;
    if phnum == 0 || phnum > MAX_PROGRAM_HEADERS {
        return Err(ElfError::BadProgramHeaderCount(phnum));
    }
    let entry = u64_at(header, ehdr::ENTRY).ok_or(truncated)?;
    let phoff = u64_at(header, ehdr::PHOFF).ok_or(truncated)?;
    let outside = ElfError::ProgramHeadersOutsideFile(phoff);
    let start = usize::try_from(phoff).map_err(|_| outside)?;
    let len = usize::from(phnum).checked_mul(phdr::SIZE).ok_or(outside)?;
    let end = start.checked_add(len).ok_or(outside)?;
    let table = image.get(start..end).ok_or(outside)?;
    Ok((entry, table))
}

/// Checks the `PT_LOAD` entry `ph` (number `segment`) of an image of `file_len` bytes; `None`
/// if it is empty in memory.
fn load_segment(
    segment: usize,
    ph: &ProgramHeader,
    file_len: u64,
    limits: &Limits,
) -> Result<Option<Segment>, ElfError> {
    if ph.p_filesz > ph.p_memsz {
        return Err(ElfError::FileLargerThanMemory { segment });
    }
    if ph.p_memsz == 0 {
        // Nothing in memory and (by the check above) nothing in the file: nothing to map.
        return Ok(None);
    }
    // No byte is read from a segment without file bytes, so its offset does not matter.
    if ph.p_filesz > 0 {
        let file_end = ph.p_offset.checked_add(ph.p_filesz);
        if file_end.is_none_or(|end| end > file_len) {
            return Err(ElfError::SegmentOutsideFile { segment });
        }
    }
    let end = ph.p_vaddr.checked_add(ph.p_memsz).ok_or(ElfError::SegmentWraps { segment })?;
    let pages_end = round_up_page(end).ok_or(ElfError::SegmentWraps { segment })?;
    let pages_start = align_down(ph.p_vaddr, PAGE_SIZE);
    if pages_start < limits.window.start || pages_end > limits.window.end {
        return Err(ElfError::SegmentOutsideWindow { segment });
    }
    let permissions =
        Permissions { write: ph.p_flags & PF_W != 0, execute: ph.p_flags & PF_X != 0 };
    if permissions.write && permissions.execute {
        return Err(ElfError::WritableAndExecutable { segment });
    }
    Ok(Some(Segment {
        vaddr: ph.p_vaddr,
        mem_len: ph.p_memsz,
        file_offset: ph.p_offset,
        file_len: ph.p_filesz,
        permissions,
    }))
}

/// Validates `image` as a PAL and plans its address space: its entry point and loadable
/// segments, sorted by address.
///
/// Program header types: `PT_LOAD` is loaded; `PT_NULL`, `PT_NOTE`, `PT_PHDR` and the GNU
/// `EH_FRAME`, `STACK`, `RELRO` and `PROPERTY` entries are ignored; `PT_DYNAMIC`, `PT_INTERP`,
/// `PT_TLS` and any other type are refused. A `PT_LOAD` with `p_memsz = 0` maps nothing and
/// is skipped (it cannot have file bytes either: `p_filesz <= p_memsz` is checked first); the
/// others must have their file bytes in the file (unchecked when `p_filesz = 0`), touch only
/// pages inside `limits.window`, not be both writable and executable, and share no page with
/// one another. Together they may take at most `limits.max_pages` pages, and the entry point
/// must lie in an executable one.
pub fn parse(image: &[u8], limits: &Limits) -> Result<Image, ElfError> {
    let (entry, table) = read_header(image)?;
    let file_len = image.len() as u64;
    let mut loads: Vec<(usize, Segment)> = Vec::new();
    for (segment, raw) in table.chunks_exact(phdr::SIZE).enumerate() {
        // `read_header` checked the table is in the file, so each entry reads whole.
        let ph = ProgramHeader::read(raw).ok_or(ElfError::ProgramHeadersOutsideFile(0))?;
        match ph.p_type {
            pt::LOAD => {
                if let Some(loaded) = load_segment(segment, &ph, file_len, limits)? {
                    loads.push((segment, loaded));
                }
            }
            pt::NULL
            | pt::NOTE
            | pt::PHDR
            | pt::GNU_EH_FRAME
            | pt::GNU_STACK
            | pt::GNU_RELRO
            | pt::GNU_PROPERTY => {}
            pt::DYNAMIC => return Err(ElfError::Dynamic { segment }),
            pt::INTERP => return Err(ElfError::Interpreter { segment }),
            pt::TLS => return Err(ElfError::ThreadLocalStorage { segment }),
            p_type => return Err(ElfError::UnknownSegmentType { segment, p_type }),
        }
    }
    if loads.is_empty() {
        return Err(ElfError::NoLoadSegment);
    }
    loads.sort_by_key(|(_, s)| s.vaddr);
    // Sorted by start, page ranges are pairwise disjoint if each ends before the next starts.
    for pair in loads.windows(2) {
        if let [(first, a), (second, b)] = pair {
            let (first, second) = (*first, *second);
            if !a.bytes().intersect(b.bytes()).is_empty() {
                return Err(ElfError::Overlap { first, second });
            }
            if a.pages().end > b.pages().start {
                return Err(ElfError::SharedPage { first, second });
            }
        }
    }
    let segments: Vec<Segment> = loads.into_iter().map(|(_, s)| s).collect();
    let pages = segments
        .iter()
        .try_fold(0u64, |sum, s| sum.checked_add(s.page_count()))
        .unwrap_or(u64::MAX);
    if pages > limits.max_pages {
        return Err(ElfError::TooManyPages { pages, max: limits.max_pages });
    }
    let holder = segments.iter().find(|s| s.vaddr <= entry && entry - s.vaddr < s.mem_len);
    match holder {
        None => Err(ElfError::EntryOutsideSegments(entry)),
        Some(s) if !s.permissions.execute => Err(ElfError::EntryNotExecutable(entry)),
        Some(_) => Ok(Image { entry, segments }),
    }
}

/// Writes into `page` (exactly [`PAGE_SIZE`] bytes) what `segment` of `image` puts in the
/// page at `page_addr` (4 KiB aligned, one of [`Segment::pages`]): its file bytes where it has
/// them, zero elsewhere (before `vaddr`, in the `.bss` part, after its end). On error `page`
/// is left untouched.
pub fn fill_page(
    image: &[u8],
    segment: &Segment,
    page_addr: u64,
    page: &mut [u8],
) -> Result<(), ElfError> {
    if page.len() as u64 != PAGE_SIZE {
        return Err(ElfError::PageBufferSize(page.len()));
    }
    let outside = ElfError::PageOutsideSegment(page_addr);
    let pages = segment.pages();
    let page_end = page_addr.checked_add(PAGE_SIZE).ok_or(outside)?;
    if !page_addr.is_multiple_of(PAGE_SIZE) || page_addr < pages.start || page_end > pages.end {
        return Err(outside);
    }
    let file_end =
        segment.vaddr.checked_add(segment.file_len).ok_or(ElfError::SegmentNotInImage)?;
    let part = Range::new(segment.vaddr, file_end).intersect(Range::new(page_addr, page_end));
    if part.is_empty() {
        page.fill(0);
        return Ok(());
    }
    // `part` lies in both the page and the file bytes, so these differences cannot underflow.
    let not_in_image = ElfError::SegmentNotInImage;
    let skip = part.start.checked_sub(segment.vaddr).ok_or(not_in_image)?;
    let src_start = segment.file_offset.checked_add(skip).ok_or(not_in_image)?;
    let src_end = src_start.checked_add(part.len()).ok_or(not_in_image)?;
    let src_start = usize::try_from(src_start).map_err(|_| not_in_image)?;
    let src_end = usize::try_from(src_end).map_err(|_| not_in_image)?;
    let src = image.get(src_start..src_end).ok_or(not_in_image)?;
    let dst_start = part.start.checked_sub(page_addr).ok_or(outside)?;
    let dst_start = usize::try_from(dst_start).map_err(|_| outside)?;
    let dst_end = dst_start.checked_add(src.len()).ok_or(outside)?;
    if dst_end > page.len() {
        return Err(outside);
    }
    page.fill(0);
    page.get_mut(dst_start..dst_end).ok_or(outside)?.copy_from_slice(src);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program header for the builder.
    #[derive(Debug, Clone, Copy)]
    struct Ph {
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
    }

    impl Image {
        /// How many 4 KiB pages its segments take together (at most [`Limits::max_pages`]).
        fn page_count(&self) -> u64 {
            self.segments.iter().map(Segment::page_count).fold(0, u64::saturating_add)
        }
    }

    const fn ph(kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph { kind, flags, offset, vaddr, filesz, memsz }
    }

    /// Read and execute (what `crate::pal::CODE` is).
    const CODE: Permissions = Permissions { write: false, execute: true };
    const PF_R: u32 = 4;
    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;
    const LIMITS: Limits = Limits { window: Range::new(0x10_0000, 0x20_0000), max_pages: 64 };
    const ENTRY: u64 = 0x10_1010;
    const FILE_LEN: usize = 0x3200;

    /// Text (RX, 2 pages), rodata (R, unaligned, 1 page), data + bss (RW, unaligned, 3 pages)
    /// and a GNU_STACK entry.
    fn valid_phs() -> Vec<Ph> {
        alloc::vec![
            ph(pt::LOAD, RX, 0x1000, 0x10_1000, 0x1800, 0x1800),
            ph(pt::LOAD, PF_R, 0x2800, 0x10_3800, 0x400, 0x400),
            ph(pt::LOAD, RW, 0x2C00, 0x10_4C00, 0x600, 0x2000),
            ph(pt::GNU_STACK, RW, 0, 0, 0, 0),
        ]
    }

    /// The payload byte at file offset `i`: never 0, so zero-filling shows.
    fn payload(i: usize) -> u8 {
        u8::try_from(i % 251).unwrap() + 1
    }

    /// An ELF64 executable of `len` bytes: the header, the program headers at 64, payload
    /// bytes everywhere else.
    fn build(entry: u64, phs: &[Ph], len: usize) -> Vec<u8> {
        let mut out: Vec<u8> = (0..len).map(payload).collect();
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(&MAGIC);
        header[4] = ELFCLASS64;
        header[5] = ELFDATA2LSB;
        header[6] = EV_CURRENT;
        header[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        header[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        header[20..24].copy_from_slice(&1u32.to_le_bytes());
        header[24..32].copy_from_slice(&entry.to_le_bytes());
        header[32..40].copy_from_slice(&64u64.to_le_bytes());
        header[52..54].copy_from_slice(&64u16.to_le_bytes());
        header[54..56].copy_from_slice(&56u16.to_le_bytes());
        header[56..58].copy_from_slice(&u16::try_from(phs.len()).unwrap().to_le_bytes());
        out[..64].copy_from_slice(&header);
        for (i, p) in phs.iter().enumerate() {
            let mut raw = [0u8; 56];
            raw[0..4].copy_from_slice(&p.kind.to_le_bytes());
            raw[4..8].copy_from_slice(&p.flags.to_le_bytes());
            raw[8..16].copy_from_slice(&p.offset.to_le_bytes());
            raw[16..24].copy_from_slice(&p.vaddr.to_le_bytes());
            raw[24..32].copy_from_slice(&p.vaddr.to_le_bytes());
            raw[32..40].copy_from_slice(&p.filesz.to_le_bytes());
            raw[40..48].copy_from_slice(&p.memsz.to_le_bytes());
            raw[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
            let at = 64 + 56 * i;
            out[at..at + 56].copy_from_slice(&raw);
        }
        out
    }

    fn valid() -> Vec<u8> {
        build(ENTRY, &valid_phs(), FILE_LEN)
    }

    /// The valid image with its program headers changed by `change`.
    fn with(change: impl FnOnce(&mut Vec<Ph>)) -> Vec<u8> {
        let mut phs = valid_phs();
        change(&mut phs);
        build(ENTRY, &phs, FILE_LEN)
    }

    fn set(image: &mut [u8], at: usize, bytes: &[u8]) {
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn err(image: &[u8]) -> ElfError {
        parse(image, &LIMITS).unwrap_err()
    }

    #[test]
    fn valid_image_parses() {
        let image = parse(&valid(), &LIMITS).unwrap();
        assert_eq!(image.entry, ENTRY);
        let text = Segment {
            vaddr: 0x10_1000,
            mem_len: 0x1800,
            file_offset: 0x1000,
            file_len: 0x1800,
            permissions: CODE,
        };
        let rodata = Segment {
            vaddr: 0x10_3800,
            mem_len: 0x400,
            file_offset: 0x2800,
            file_len: 0x400,
            permissions: Permissions::READ_ONLY,
        };
        let data = Segment {
            vaddr: 0x10_4C00,
            mem_len: 0x2000,
            file_offset: 0x2C00,
            file_len: 0x600,
            permissions: Permissions::DATA,
        };
        assert_eq!(image.segments, [text, rodata, data]);
        assert_eq!(text.pages(), Range::new(0x10_1000, 0x10_3000));
        assert_eq!(rodata.pages(), Range::new(0x10_3000, 0x10_4000));
        assert_eq!(data.pages(), Range::new(0x10_4000, 0x10_7000));
        assert_eq!([text, rodata, data].map(|s| s.page_count()), [2, 1, 3]);
        assert_eq!(image.page_count(), 6);
    }

    #[test]
    fn segments_come_out_sorted() {
        let image = with(|phs| phs.swap(0, 2));
        let image = parse(&image, &LIMITS).unwrap();
        let starts: Vec<u64> = image.segments.iter().map(|s| s.vaddr).collect();
        assert_eq!(starts, [0x10_1000, 0x10_3800, 0x10_4C00]);
    }

    #[test]
    fn every_truncation_is_refused() {
        let image = valid();
        for len in 0..image.len() {
            assert!(parse(&image[..len], &LIMITS).is_err(), "prefix of {len} bytes");
        }
        assert_eq!(err(&image[..3]), ElfError::BadMagic);
        assert_eq!(err(&image[..63]), ElfError::TruncatedHeader(63));
        assert_eq!(err(&image[..64 + 56]), ElfError::ProgramHeadersOutsideFile(64));
        assert_eq!(err(&image[..FILE_LEN - 1]), ElfError::SegmentOutsideFile { segment: 2 });
    }

    #[test]
    fn header_fields_are_checked() {
        let cases: [(usize, &[u8], ElfError); 14] = [
            (0, b"\x7fELG", ElfError::BadMagic),
            (0, b"\0\0\0\0", ElfError::BadMagic),
            (4, &[1], ElfError::NotElf64(1)),
            (5, &[2], ElfError::NotLittleEndian(2)),
            (6, &[0], ElfError::BadIdentVersion(0)),
            (16, &3u16.to_le_bytes(), ElfError::NotExecutable(ET_DYN)),
            (16, &1u16.to_le_bytes(), ElfError::NotExecutable(1)),
            (18, &3u16.to_le_bytes(), ElfError::WrongMachine(3)),
            (20, &2u32.to_le_bytes(), ElfError::BadVersion(2)),
            (52, &52u16.to_le_bytes(), ElfError::BadHeaderSize(52)),
            (54, &32u16.to_le_bytes(), ElfError::BadProgramHeaderSize(32)),
            (56, &0u16.to_le_bytes(), ElfError::BadProgramHeaderCount(0)),
            (56, &17u16.to_le_bytes(), ElfError::BadProgramHeaderCount(17)),
            (32, &0x3200u64.to_le_bytes(), ElfError::ProgramHeadersOutsideFile(0x3200)),
        ];
        for (at, bytes, expected) in cases {
            let mut image = valid();
            set(&mut image, at, bytes);
            assert_eq!(err(&image), expected, "{bytes:x?} at {at}");
        }
        // The table's end overflows.
        let mut image = valid();
        set(&mut image, 32, &(u64::MAX - 8).to_le_bytes());
        assert_eq!(err(&image), ElfError::ProgramHeadersOutsideFile(u64::MAX - 8));
        // A larger header size is accepted.
        let mut image = valid();
        set(&mut image, 52, &128u16.to_le_bytes());
        assert!(parse(&image, &LIMITS).is_ok());
    }

    #[test]
    fn program_header_table_may_sit_anywhere_in_the_file() {
        // Move the table to the end of the file (past the segments' bytes).
        let mut image = valid();
        let table = image[64..64 + 4 * 56].to_vec();
        image.extend_from_slice(&table);
        set(&mut image, 32, &u64::try_from(FILE_LEN).unwrap().to_le_bytes());
        assert_eq!(parse(&image, &LIMITS).unwrap().segments.len(), 3);
        image.pop();
        assert_eq!(
            err(&image),
            ElfError::ProgramHeadersOutsideFile(u64::try_from(FILE_LEN).unwrap())
        );
    }

    #[test]
    fn file_bytes_must_fit_in_memory_and_in_the_file() {
        let image = with(|phs| phs[1].filesz = 0x401);
        assert_eq!(err(&image), ElfError::FileLargerThanMemory { segment: 1 });
        let image = with(|phs| phs[1].offset = 0x3000);
        assert_eq!(err(&image), ElfError::SegmentOutsideFile { segment: 1 });
        let image = with(|phs| phs[1].offset = u64::MAX - 0x100);
        assert_eq!(err(&image), ElfError::SegmentOutsideFile { segment: 1 });
        // Without file bytes the offset is never used.
        let image = with(|phs| {
            phs[2].filesz = 0;
            phs[2].offset = u64::MAX;
        });
        assert_eq!(parse(&image, &LIMITS).unwrap().segments[2].file_len, 0);
    }

    #[test]
    fn segments_must_lie_in_the_window() {
        let below = with(|phs| phs[1].vaddr = 0xF_FC00);
        assert_eq!(err(&below), ElfError::SegmentOutsideWindow { segment: 1 });
        let above = with(|phs| phs[2].memsz = 0x20_0000 - 0x10_4C00 + 1);
        assert_eq!(err(&above), ElfError::SegmentOutsideWindow { segment: 2 });
        // Up to the window's end is fine.
        let last = with(|phs| phs[2].memsz = 0x20_0000 - 0x10_4C00);
        let limits = Limits { max_pages: 0x100, ..LIMITS };
        assert_eq!(parse(&last, &limits).unwrap().segments[2].pages().end, 0x20_0000);
        // An unaligned window: the segment's bytes fit, its first page does not.
        let limits = Limits { window: Range::new(0x10_1400, 0x20_0000), ..LIMITS };
        let unaligned = with(|phs| {
            phs[0].vaddr = 0x10_1800;
            phs[0].filesz = 0x1000;
            phs[0].memsz = 0x1000;
        });
        assert_eq!(parse(&unaligned, &limits), Err(ElfError::SegmentOutsideWindow { segment: 0 }));
    }

    #[test]
    fn segments_must_not_wrap() {
        let everywhere = Limits { window: Range::new(0, u64::MAX), max_pages: 64 };
        let wraps = with(|phs| {
            phs[2].vaddr = u64::MAX - 0xFFF;
            phs[2].memsz = 0x2000;
        });
        assert_eq!(parse(&wraps, &everywhere), Err(ElfError::SegmentWraps { segment: 2 }));
        // The end fits, but rounding it up to a page does not.
        let last_page = with(|phs| {
            phs[2].vaddr = u64::MAX - 0xFFF;
            phs[2].memsz = 0xFFF;
        });
        assert_eq!(parse(&last_page, &everywhere), Err(ElfError::SegmentWraps { segment: 2 }));
    }

    #[test]
    fn writable_code_is_refused() {
        let image = with(|phs| phs[2].flags = RW | PF_X);
        assert_eq!(err(&image), ElfError::WritableAndExecutable { segment: 2 });
        let image = with(|phs| phs[0].flags = PF_W | PF_X);
        assert_eq!(err(&image), ElfError::WritableAndExecutable { segment: 0 });
        // PF_R is not needed (pages are always readable), unknown flag bits are ignored.
        let image = with(|phs| phs[0].flags = PF_X | 0xF000_0000);
        assert_eq!(parse(&image, &LIMITS).unwrap().segments[0].permissions, CODE);
    }

    #[test]
    fn segments_must_not_share_pages() {
        // Rodata moved down to the page text ends in, without overlapping it.
        let shared = with(|phs| phs[1].vaddr = 0x10_2800);
        assert_eq!(err(&shared), ElfError::SharedPage { first: 0, second: 1 });
        let overlapping = with(|phs| phs[1].vaddr = 0x10_27FF);
        assert_eq!(err(&overlapping), ElfError::Overlap { first: 0, second: 1 });
        let same_start = with(|phs| phs[2].vaddr = 0x10_3800);
        assert!(matches!(err(&same_start), ElfError::Overlap { .. }));
        // One segment inside another, listed first.
        let nested = with(|phs| phs.insert(0, ph(pt::LOAD, PF_R, 0x1000, 0x10_1100, 0x10, 0x10)));
        assert_eq!(err(&nested), ElfError::Overlap { first: 1, second: 0 });
        // Reported in address order, whatever the table order.
        let swapped = with(|phs| {
            phs[1].vaddr = 0x10_2800;
            phs.swap(0, 1);
        });
        assert_eq!(err(&swapped), ElfError::SharedPage { first: 1, second: 0 });
        // Adjacent pages are fine.
        let adjacent = with(|phs| phs[1].vaddr = 0x10_3000);
        assert!(parse(&adjacent, &LIMITS).is_ok());
    }

    #[test]
    fn entry_must_be_in_code() {
        let in_rodata = build(0x10_3800, &valid_phs(), FILE_LEN);
        assert_eq!(err(&in_rodata), ElfError::EntryNotExecutable(0x10_3800));
        let in_bss = build(0x10_6BFF, &valid_phs(), FILE_LEN);
        assert_eq!(err(&in_bss), ElfError::EntryNotExecutable(0x10_6BFF));
        // Past the text's last byte, though on its last page.
        let past_text = build(0x10_2800, &valid_phs(), FILE_LEN);
        assert_eq!(err(&past_text), ElfError::EntryOutsideSegments(0x10_2800));
        let nowhere = build(0, &valid_phs(), FILE_LEN);
        assert_eq!(err(&nowhere), ElfError::EntryOutsideSegments(0));
        let last = build(0x10_27FF, &valid_phs(), FILE_LEN);
        assert_eq!(parse(&last, &LIMITS).unwrap().entry, 0x10_27FF);
    }

    #[test]
    fn loaders_and_tls_are_refused() {
        let refused = [
            (pt::INTERP, ElfError::Interpreter { segment: 3 }),
            (pt::DYNAMIC, ElfError::Dynamic { segment: 3 }),
            (pt::TLS, ElfError::ThreadLocalStorage { segment: 3 }),
            (5, ElfError::UnknownSegmentType { segment: 3, p_type: 5 }),
            (0x7000_0001, ElfError::UnknownSegmentType { segment: 3, p_type: 0x7000_0001 }),
        ];
        for (kind, expected) in refused {
            let image = with(|phs| phs[3].kind = kind);
            assert_eq!(err(&image), expected, "type {kind:#x}");
        }
    }

    #[test]
    fn informational_entries_are_ignored() {
        let ignored = [
            pt::NULL,
            pt::NOTE,
            pt::PHDR,
            pt::GNU_EH_FRAME,
            pt::GNU_STACK,
            pt::GNU_RELRO,
            pt::GNU_PROPERTY,
        ];
        for kind in ignored {
            // Even one claiming to be writable and executable, outside the window and file.
            let image = with(|phs| phs.push(ph(kind, RW | PF_X, u64::MAX, u64::MAX, 9, 1)));
            assert_eq!(parse(&image, &LIMITS).unwrap().segments.len(), 3, "type {kind:#x}");
        }
    }

    #[test]
    fn empty_loads_are_skipped() {
        let image = with(|phs| phs.push(ph(pt::LOAD, RW | PF_X, u64::MAX, u64::MAX, 0, 0)));
        assert_eq!(parse(&image, &LIMITS).unwrap().segments.len(), 3);
        let only_empty = build(ENTRY, &[ph(pt::LOAD, RX, 0x1000, 0x10_1000, 0, 0)], FILE_LEN);
        assert_eq!(err(&only_empty), ElfError::NoLoadSegment);
        let none = build(ENTRY, &[ph(pt::GNU_STACK, RW, 0, 0, 0, 0)], FILE_LEN);
        assert_eq!(err(&none), ElfError::NoLoadSegment);
    }

    #[test]
    fn page_budget_is_enforced() {
        let tight = Limits { max_pages: 6, ..LIMITS };
        assert_eq!(parse(&valid(), &tight).unwrap().page_count(), 6);
        let short = Limits { max_pages: 5, ..LIMITS };
        assert_eq!(parse(&valid(), &short), Err(ElfError::TooManyPages { pages: 6, max: 5 }));
        // Pages touched count, not bytes: 2 bytes across a page boundary take 2 pages.
        let straddling = with(|phs| phs[1] = ph(pt::LOAD, PF_R, 0x2800, 0x10_7FFF, 2, 2));
        assert_eq!(parse(&straddling, &tight), Err(ElfError::TooManyPages { pages: 7, max: 6 }));
    }

    #[test]
    fn fill_page_copies_file_bytes_and_zeroes_the_rest() {
        let file = valid();
        let image = parse(&file, &LIMITS).unwrap();
        let [text, rodata, data] = [image.segments[0], image.segments[1], image.segments[2]];
        let mut page = alloc::vec![0xAAu8; 4096];

        // A whole page of text.
        fill_page(&file, &text, 0x10_1000, &mut page).unwrap();
        assert_eq!(page, file[0x1000..0x2000]);
        // Text's last page: 0x800 bytes, then zeros.
        fill_page(&file, &text, 0x10_2000, &mut page).unwrap();
        assert_eq!(page[..0x800], file[0x2000..0x2800]);
        assert!(page[0x800..].iter().all(|&b| b == 0));

        // Rodata starts 0x800 into its page: zeros before and after.
        page.fill(0xAA);
        fill_page(&file, &rodata, 0x10_3000, &mut page).unwrap();
        assert!(page[..0x800].iter().all(|&b| b == 0));
        assert_eq!(page[0x800..0xC00], file[0x2800..0x2C00]);
        assert!(page[0xC00..].iter().all(|&b| b == 0));

        // Data: file bytes [0x10_4C00, 0x10_5200), bss up to 0x10_6C00.
        page.fill(0xAA);
        fill_page(&file, &data, 0x10_4000, &mut page).unwrap();
        assert!(page[..0xC00].iter().all(|&b| b == 0));
        assert_eq!(page[0xC00..], file[0x2C00..0x3000]);
        page.fill(0xAA);
        fill_page(&file, &data, 0x10_5000, &mut page).unwrap();
        assert_eq!(page[..0x200], file[0x3000..0x3200], "file part");
        assert!(page[0x200..].iter().all(|&b| b == 0), "bss part");
        page.fill(0xAA);
        fill_page(&file, &data, 0x10_6000, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 0), "pure bss");
    }

    #[test]
    fn fill_page_refuses_other_pages_and_buffers() {
        let file = valid();
        let image = parse(&file, &LIMITS).unwrap();
        let rodata = image.segments[1];
        let mut page = alloc::vec![0xAAu8; 4096];
        for addr in [0x10_2000, 0x10_4000, 0x10_3001, u64::MAX - 0xFFF, 0] {
            assert_eq!(
                fill_page(&file, &rodata, addr, &mut page),
                Err(ElfError::PageOutsideSegment(addr))
            );
        }
        assert!(page.iter().all(|&b| b == 0xAA), "untouched on error");
        let mut small = [0u8; 4095];
        assert_eq!(
            fill_page(&file, &rodata, 0x10_3000, &mut small),
            Err(ElfError::PageBufferSize(4095))
        );
        // A segment of another (longer) image.
        assert_eq!(
            fill_page(&file[..0x2900], &rodata, 0x10_3000, &mut page),
            Err(ElfError::SegmentNotInImage)
        );
        let forged = Segment { file_offset: u64::MAX - 0x100, ..rodata };
        assert_eq!(
            fill_page(&file, &forged, 0x10_3000, &mut page),
            Err(ElfError::SegmentNotInImage)
        );
        let forged = Segment { vaddr: u64::MAX - 0x10, mem_len: 0x20, file_len: 0x20, ..rodata };
        assert_eq!(forged.pages(), Range::new(u64::MAX - 0xFFF, u64::MAX - 0xFFF));
        assert!(fill_page(&file, &forged, u64::MAX - 0xFFF, &mut page).is_err());
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(ElfError::BadMagic.to_string(), "not an ELF file (bad magic)");
        assert_eq!(
            ElfError::WritableAndExecutable { segment: 2 }.to_string(),
            "segment 2 is writable and executable"
        );
        assert!(ElfError::NotExecutable(ET_DYN).to_string().contains("ET_DYN"));
        assert_eq!(
            ElfError::TooManyPages { pages: 7, max: 6 }.to_string(),
            "segments take 7 pages, more than the 6 allowed"
        );
    }

    /// What every image [`parse`] accepts satisfies.
    fn check_invariants(file: &[u8], image: &Image, limits: &Limits) {
        assert!(!image.segments.is_empty());
        for s in &image.segments {
            assert!(s.mem_len > 0 && s.file_len <= s.mem_len, "{s:x?}");
            let pages = s.pages();
            assert!(limits.window.start <= pages.start && pages.end <= limits.window.end);
            assert!(s.vaddr.checked_add(s.mem_len).is_some_and(|end| end <= pages.end));
            assert!(!(s.permissions.write && s.permissions.execute), "{s:x?}");
            if s.file_len > 0 {
                let end = s.file_offset.checked_add(s.file_len).unwrap();
                assert!(end <= file.len() as u64, "{s:x?}");
            }
        }
        for pair in image.segments.windows(2) {
            assert!(pair[0].pages().end <= pair[1].pages().start, "{pair:x?}");
        }
        assert!(image.page_count() <= limits.max_pages);
        assert!(image.segments.iter().any(|s| s.permissions.execute
            && s.bytes().start <= image.entry
            && image.entry < s.bytes().end));
    }

    use crate::testing::XorShift;

    #[test]
    fn mutated_images_never_panic() {
        let original = valid();
        let everywhere = Limits { window: Range::new(0, u64::MAX), max_pages: 64 };
        let headers_len = 64 + 56 * valid_phs().len();
        let interesting: [u64; 8] =
            [0, 1, 0xFFF, 0x1000, 0x10_0000, u64::MAX, u64::MAX - 0xFFF, 1 << 63];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut refused) = (0u32, 0u32);
        let mut page = alloc::vec![0u8; 4096];
        for round in 0..4000 {
            let mut file = original.clone();
            for _ in 0..1 + rng.below(4) {
                // Mostly the headers, where the decisions are.
                let at =
                    if rng.below(4) == 0 { rng.below(file.len()) } else { rng.below(headers_len) };
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
            let limits = if round % 2 == 0 { LIMITS } else { everywhere };
            match parse(&file, &limits) {
                Ok(image) => {
                    accepted += 1;
                    check_invariants(&file, &image, &limits);
                    for s in &image.segments {
                        let pages = s.pages();
                        let mut addr = pages.start;
                        while addr < pages.end {
                            fill_page(&file, s, addr, &mut page).unwrap();
                            addr += PAGE_SIZE;
                        }
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
