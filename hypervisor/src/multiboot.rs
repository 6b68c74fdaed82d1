//! The Multiboot 1 boot information (Multiboot Specification 0.6.96, §3.3): the loader's
//! magic, the information structure and its memory map, parsed from bytes.
//!
//! The image reads the structures out of physical memory and hands the bytes here; nothing is
//! trusted about them beyond their length.

use crate::memory::{MemoryError, Range, RangeSet, PAGE_SIZE};
use core::fmt;

/// What a Multiboot 1 loader leaves in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// Bytes of the information structure this parser reads (up to and including `mmap_addr`).
pub const INFO_LEN: usize = 52;

/// Bytes of one module entry (`mod_start`, `mod_end`, `string`, reserved).
pub const MODULE_ENTRY_LEN: usize = 16;

/// `flags` bit: `cmdline` is valid.
const FLAG_CMDLINE: u32 = 1 << 2;
/// `flags` bit: `mods_count` and `mods_addr` are valid.
const FLAG_MODULES: u32 = 1 << 3;
/// `flags` bit: `mmap_length` and `mmap_addr` are valid.
const FLAG_MMAP: u32 = 1 << 6;

/// Errors in the boot information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    /// EAX did not hold [`BOOTLOADER_MAGIC`]; carries what it held.
    BadMagic(u32),
    /// A structure ended early; carries the offset that was out of bounds.
    Truncated(usize),
    /// The loader passed no memory map.
    NoMemoryMap,
    /// The memory map has more usable regions than a [`RangeSet`] holds.
    TooManyRegions,
    /// A module lies where the hypervisor cannot reach it (above its identity map).
    ModuleOutOfReach,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => write!(f, "not loaded by multiboot (magic {m:#x})"),
            BootInfoError::Truncated(at) => write!(f, "boot information truncated at {at}"),
            BootInfoError::NoMemoryMap => write!(f, "the loader passed no memory map"),
            BootInfoError::TooManyRegions => write!(f, "too many usable memory regions"),
            BootInfoError::ModuleOutOfReach => write!(f, "a module lies above 4 GiB"),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, BootInfoError> {
    let field = bytes.get(at..at + 4).ok_or(BootInfoError::Truncated(at))?;
    Ok(u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, BootInfoError> {
    Ok(u64::from(u32_at(bytes, at)?) | u64::from(u32_at(bytes, at + 4)?) << 32)
}

/// The parts of the information structure the hypervisor uses; addresses are physical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootInfo {
    /// The `flags` word.
    pub flags: u32,
    /// Address of the NUL-terminated command line.
    pub cmdline: Option<u32>,
    /// Address and count of the module entries.
    pub modules: Option<(u32, u32)>,
    /// Address and length in bytes of the memory map.
    pub memory_map: Option<(u32, u32)>,
}

impl BootInfo {
    /// Parses the first [`INFO_LEN`] bytes of the structure, after checking the magic.
    pub fn parse(magic: u32, bytes: &[u8]) -> Result<Self, BootInfoError> {
        if magic != BOOTLOADER_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        let flags = u32_at(bytes, 0)?;
        let has = |bit: u32| flags & bit != 0;
        Ok(BootInfo {
            flags,
            cmdline: if has(FLAG_CMDLINE) { Some(u32_at(bytes, 16)?) } else { None },
            modules: if has(FLAG_MODULES) {
                Some((u32_at(bytes, 24)?, u32_at(bytes, 20)?))
            } else {
                None
            },
            memory_map: if has(FLAG_MMAP) {
                Some((u32_at(bytes, 48)?, u32_at(bytes, 44)?))
            } else {
                None
            },
        })
    }

    /// The memory the loader's own structures occupy, which must not be reused before they
    /// are read: the information structure at `info_addr`, the memory map, the module table,
    /// and one page for the command line (QEMU's are short).
    pub fn structures(&self, info_addr: u32) -> [Range; 4] {
        let at = |addr: u32, len: u64| Range::sized(u64::from(addr), len);
        let modules = self.modules.map_or(Range::default(), |(addr, count)| {
            at(addr, u64::from(count) * MODULE_ENTRY_LEN as u64)
        });
        [
            at(info_addr, INFO_LEN as u64),
            self.memory_map.map_or(Range::default(), |(addr, len)| at(addr, u64::from(len))),
            modules,
            self.cmdline.map_or(Range::default(), |addr| at(addr, PAGE_SIZE)),
        ]
    }
}

/// The most modules the hypervisor looks at.
pub const MAX_MODULES: usize = 4;

/// Reads the module table (`MODULE_ENTRY_LEN` bytes each: `mod_start`, `mod_end`, `string`,
/// reserved; §3.3): the physical range of each module's contents, at most [`MAX_MODULES`].
/// A module whose end precedes its start is an error, not an empty range.
pub fn modules(table: &[u8], count: u32) -> Result<([Range; MAX_MODULES], usize), BootInfoError> {
    let mut out = [Range::default(); MAX_MODULES];
    let count = (count as usize).min(MAX_MODULES);
    for (i, slot) in out.iter_mut().enumerate().take(count) {
        let at = i * MODULE_ENTRY_LEN;
        let (start, end) = (u32_at(table, at)?, u32_at(table, at + 4)?);
        if end < start {
            return Err(BootInfoError::Truncated(at + 4));
        }
        *slot = Range::new(u64::from(start), u64::from(end));
    }
    Ok((out, count))
}

/// A memory map entry's type; 1 is RAM the OS may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Usable RAM (type 1).
    Available,
    /// ACPI tables, reclaimable after they are read (type 3).
    AcpiReclaimable,
    /// Must be preserved across hibernation (type 4).
    AcpiNvs,
    /// Defective RAM (type 5).
    Defective,
    /// Anything else: reserved.
    Reserved(u32),
}

impl From<u32> for RegionKind {
    fn from(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Available,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Defective,
            other => RegionKind::Reserved(other),
        }
    }
}

/// One memory map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The physical addresses it covers.
    pub range: Range,
    /// What they are.
    pub kind: RegionKind,
}

/// Iterates over the entries of a memory map (`mmap_length` bytes at `mmap_addr`). Each entry
/// is `size: u32` then `size` bytes holding `base_addr: u64, length: u64, type: u32`; an entry
/// that does not fit ends the iteration with an error.
#[derive(Debug, Clone)]
pub struct MemoryMap<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> MemoryMap<'a> {
    /// The map in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        MemoryMap { bytes, at: 0 }
    }

    fn entry(&self) -> Result<(Region, usize), BootInfoError> {
        let size = u32_at(self.bytes, self.at)? as usize;
        let body = self.at + 4;
        if size < 20 || body + size > self.bytes.len() {
            return Err(BootInfoError::Truncated(self.at));
        }
        let start = u64_at(self.bytes, body)?;
        let len = u64_at(self.bytes, body + 8)?;
        let kind = RegionKind::from(u32_at(self.bytes, body + 16)?);
        Ok((Region { range: Range::sized(start, len), kind }, body + size))
    }

    /// The usable RAM of the map, inside `window`.
    pub fn usable(self, window: Range) -> Result<RangeSet, BootInfoError> {
        let mut set = RangeSet::default();
        for region in self {
            let region = region?;
            if region.kind == RegionKind::Available {
                set.add(region.range.intersect(window))
                    .map_err(|_: MemoryError| BootInfoError::TooManyRegions)?;
            }
        }
        Ok(set)
    }
}

impl Iterator for MemoryMap<'_> {
    type Item = Result<Region, BootInfoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        match self.entry() {
            Ok((region, next)) => {
                self.at = next;
                Some(Ok(region))
            }
            Err(e) => {
                self.at = self.bytes.len();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn entry(map: &mut Vec<u8>, start: u64, len: u64, kind: u32) {
        map.extend_from_slice(&20u32.to_le_bytes());
        map.extend_from_slice(&start.to_le_bytes());
        map.extend_from_slice(&len.to_le_bytes());
        map.extend_from_slice(&kind.to_le_bytes());
    }

    /// The map QEMU gives a 256 MiB machine.
    fn qemu_map() -> Vec<u8> {
        let mut map = Vec::new();
        entry(&mut map, 0, 0x9fc00, 1);
        entry(&mut map, 0x9fc00, 0x400, 2);
        entry(&mut map, 0xf0000, 0x10000, 2);
        entry(&mut map, 0x10_0000, 0xfee_0000, 1);
        entry(&mut map, 0xffe_0000, 0x2_0000, 2);
        entry(&mut map, 0xfffc_0000, 0x4_0000, 2);
        map
    }

    #[test]
    fn parses_info_flags_and_fields() {
        let mut info = [0u8; INFO_LEN];
        info[0..4].copy_from_slice(&(FLAG_MMAP | FLAG_CMDLINE).to_le_bytes());
        info[16..20].copy_from_slice(&0x9000u32.to_le_bytes());
        info[44..48].copy_from_slice(&144u32.to_le_bytes());
        info[48..52].copy_from_slice(&0x9100u32.to_le_bytes());
        let parsed = BootInfo::parse(BOOTLOADER_MAGIC, &info).unwrap();
        assert_eq!(parsed.cmdline, Some(0x9000));
        assert_eq!(parsed.memory_map, Some((0x9100, 144)));
        assert_eq!(parsed.modules, None);
        let [info_range, mmap, modules, cmdline] = parsed.structures(0x8000);
        assert_eq!(info_range, Range::new(0x8000, 0x8000 + 52));
        assert_eq!(mmap, Range::new(0x9100, 0x9100 + 144));
        assert!(modules.is_empty());
        assert_eq!(cmdline, Range::new(0x9000, 0xa000));
    }

    #[test]
    fn refuses_bad_magic_and_short_info() {
        assert_eq!(BootInfo::parse(0x1234, &[0; INFO_LEN]), Err(BootInfoError::BadMagic(0x1234)));
        let flags_only = FLAG_MMAP.to_le_bytes();
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &flags_only),
            Err(BootInfoError::Truncated(48))
        );
    }

    #[test]
    fn memory_map_yields_regions_and_usable_ram() {
        let map = qemu_map();
        let regions: Vec<_> = MemoryMap::new(&map).collect::<Result<_, _>>().unwrap();
        assert_eq!(regions.len(), 6);
        assert_eq!(regions[3].range, Range::new(0x10_0000, 0xffe_0000));
        assert_eq!(regions[5].kind, RegionKind::Reserved(2));
        let usable = MemoryMap::new(&map).usable(Range::new(0x10_0000, 1 << 32)).unwrap();
        assert_eq!(usable.ranges(), [Range::new(0x10_0000, 0xffe_0000)]);
    }

    #[test]
    fn truncated_entries_end_the_map_with_an_error() {
        let mut map = qemu_map();
        map.truncate(map.len() - 3);
        let results: Vec<_> = MemoryMap::new(&map).collect();
        assert_eq!(results.len(), 6);
        assert_eq!(results[5], Err(BootInfoError::Truncated(5 * 24)));
        // A size field smaller than an entry is refused rather than looping.
        let mut tiny = Vec::new();
        tiny.extend_from_slice(&0u32.to_le_bytes());
        tiny.extend_from_slice(&[0; 20]);
        assert_eq!(MemoryMap::new(&tiny).next(), Some(Err(BootInfoError::Truncated(0))));
        assert!(MemoryMap::new(&map).usable(Range::new(0, u64::MAX)).is_err());
    }

    #[test]
    fn module_table() {
        let mut table = Vec::new();
        for (start, end) in [(0x20_0000u32, 0x20_1234u32), (0x30_0000, 0x30_0000)] {
            for word in [start, end, 0x9000, 0] {
                table.extend_from_slice(&word.to_le_bytes());
            }
        }
        let (ranges, count) = modules(&table, 2).unwrap();
        assert_eq!(count, 2);
        assert_eq!(ranges[0], Range::new(0x20_0000, 0x20_1234));
        assert!(ranges[1].is_empty());
        assert_eq!(modules(&table, 3), Err(BootInfoError::Truncated(32)));
        assert_eq!(modules(&table[..20], 2), Err(BootInfoError::Truncated(20)));
        assert_eq!(modules(&table, 0).unwrap().1, 0);
        let mut reversed = table.clone();
        reversed[4..8].copy_from_slice(&0x10u32.to_le_bytes());
        assert_eq!(modules(&reversed, 1), Err(BootInfoError::Truncated(4)));
        // A huge count reads no further than MAX_MODULES entries.
        let long = [0u8; MODULE_ENTRY_LEN * MAX_MODULES];
        assert_eq!(modules(&long, u32::MAX).unwrap().1, MAX_MODULES);
    }
}
