//! The IOMMU's I/O page tables for host translations (IOMMU spec, "I/O Page Tables for Host
//! Translations"): the identity map of the memory devices may reach, and its walk.

use super::{IommuError, POINTER_MASK};
use crate::memory::{Range, PAGE_SIZE};
use crate::svm::npt::{NptEntry, TableMemory};
use alloc::vec::Vec;
use x86_64::PhysAddr;

/// I/O page table entry bits, for directory entries (PDEs) and leaves (PTEs) alike.
mod pte {
    /// PR: the entry is valid (QEMU 7.2 does not check it in a leaf).
    pub const PRESENT: u64 = 1 << 0;
    /// NextLevel (11:9): the level of the table the entry points to; 0 in a leaf, whose
    /// page size is then its table's (4 KiB at level 1, 2 MiB at level 2).
    pub const NEXT_LEVEL_SHIFT: u32 = 9;
    /// IR: reads allowed.
    pub const READ: u64 = 1 << 61;
    /// IW: writes allowed.
    pub const WRITE: u64 = 1 << 62;
}

/// A 2 MiB page, a level-2 leaf.
const LARGE_PAGE: u64 = 2 << 20;

/// How many 2 MiB and 4 KiB leaves an identity map has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeafCounts {
    /// Level-2 leaves.
    pub pages_2m: u64,
    /// Level-1 leaves.
    pub pages_4k: u64,
}

/// A 3-level I/O page table (Mode 3: 39-bit I/O addresses), owned through its root; its
/// tables live in a [`TableMemory`], whose 512-entry frames hold I/O page table entries as
/// raw words. (The nested page table's frames are reused rather than a trait of its own:
/// the image's `PoolTables` hands out hypervisor frames no guest maps, and frees them.)
#[derive(Debug)]
pub struct IoPageTable {
    root: PhysAddr,
}

/// The 9-bit index of `iova` in a table of `level` (3 ... 1).
#[allow(clippy::cast_possible_truncation, reason = "masked to 9 bits")]
fn index(iova: u64, level: u32) -> usize {
    ((iova >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// An entry's NextLevel field.
#[allow(clippy::cast_possible_truncation, reason = "masked to 3 bits")]
fn next_level(entry: u64) -> u32 {
    (entry >> pte::NEXT_LEVEL_SHIFT & 7) as u32
}

/// An entry's address field.
fn address(entry: u64) -> PhysAddr {
    PhysAddr::new_truncate(entry & POINTER_MASK)
}

/// A directory entry for the table `next` of `level`: present, readable and writable (the
/// spec wants IR/IW at every level for the access to be allowed).
fn directory(next: PhysAddr, level: u32) -> u64 {
    next.as_u64() & POINTER_MASK
        | u64::from(level) << pte::NEXT_LEVEL_SHIFT
        | pte::PRESENT
        | pte::READ
        | pte::WRITE
}

/// A leaf entry mapping the page at `frame` for reads and writes.
fn leaf(frame: u64) -> u64 {
    frame & POINTER_MASK | pte::PRESENT | pte::READ | pte::WRITE
}

/// `allowed` without empty ranges, checked (4 KiB aligned, below [`IoPageTable::LIMIT`]),
/// sorted and with overlapping or touching ranges merged.
fn merged(allowed: &[Range]) -> Result<Vec<Range>, IommuError> {
    let mut ranges = Vec::with_capacity(allowed.len());
    for range in allowed.iter().filter(|r| !r.is_empty()) {
        for edge in [range.start, range.end] {
            if !edge.is_multiple_of(PAGE_SIZE) {
                return Err(IommuError::Unaligned(edge));
            }
        }
        if range.end > IoPageTable::LIMIT {
            return Err(IommuError::OutOfRange(range.end));
        }
        ranges.push(*range);
    }
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    Ok(out)
}

impl IoPageTable {
    /// Levels of the table: the device table entry's Mode.
    pub const LEVELS: u32 = 3;
    /// The identity map covers physical addresses below 4 GiB (the hypervisor's own window).
    pub const LIMIT: u64 = 4 << 30;
    /// A table mapping each I/O address in `allowed` to the same physical address, readable
    /// and writable, and nothing else: 2 MiB leaves where a whole aligned 2 MiB lies in the
    /// ranges' union, 4 KiB leaves elsewhere. Entries that map nothing are all zeroes. On
    /// error every table made is given back.
    pub fn identity<M: TableMemory + ?Sized>(
        memory: &mut M,
        allowed: &[Range],
    ) -> Result<(IoPageTable, LeafCounts), IommuError> {
        let ranges = merged(allowed)?;
        let root = memory.allocate_table().ok_or(IommuError::OutOfTables(0))?;
        let table = IoPageTable { root };
        let mut counts = LeafCounts::default();
        for range in &ranges {
            let mut at = range.start;
            while at < range.end {
                let large = at.is_multiple_of(LARGE_PAGE) && range.end - at >= LARGE_PAGE;
                if let Err(e) = table.map(memory, at, large) {
                    table.destroy(memory);
                    return Err(e);
                }
                if large {
                    counts.pages_2m += 1;
                    at += LARGE_PAGE;
                } else {
                    counts.pages_4k += 1;
                    at += PAGE_SIZE;
                }
            }
        }
        Ok((table, counts))
    }

    /// Maps the page at `at` to itself: 2 MiB if `large`, else 4 KiB.
    fn map<M: TableMemory + ?Sized>(
        &self,
        memory: &mut M,
        at: u64,
        large: bool,
    ) -> Result<(), IommuError> {
        let leaf_level = if large { 2 } else { 1 };
        let mut table = self.root;
        for level in (leaf_level + 1..=Self::LEVELS).rev() {
            let i = index(at, level);
            let entry = memory.table_mut(table).entries[i].raw();
            table = if entry == 0 {
                let next = memory.allocate_table().ok_or(IommuError::OutOfTables(at))?;
                memory.table_mut(table).entries[i] = NptEntry::from_raw(directory(next, level - 1));
                next
            } else if next_level(entry) == level - 1 {
                address(entry)
            } else {
                return Err(IommuError::AlreadyMapped(at));
            };
        }
        let slot = &mut memory.table_mut(table).entries[index(at, leaf_level)];
        if slot.raw() != 0 {
            return Err(IommuError::AlreadyMapped(at));
        }
        *slot = NptEntry::from_raw(leaf(at));
        Ok(())
    }

    /// A table whose root is at `root` (for tests of what points to it).
    #[cfg(test)]
    pub(super) fn with_root(root: PhysAddr) -> Self {
        IoPageTable { root }
    }

    /// The root table's physical address, for the device table entries.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Gives back every table.
    pub fn destroy<M: TableMemory + ?Sized>(self, memory: &mut M) {
        free_tables(memory, self.root, Self::LEVELS);
    }
}

fn free_tables<M: TableMemory + ?Sized>(memory: &mut M, table: PhysAddr, level: u32) {
    if level > 1 {
        for i in 0..512 {
            let entry = memory.table_mut(table).entries[i].raw();
            if entry & pte::PRESENT != 0 && next_level(entry) == level - 1 {
                free_tables(memory, address(entry), level - 1);
            }
        }
    }
    memory.free_table(table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svm::npt::NptTable;
    use crate::testing::XorShift;
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;

    /// Where an I/O address leads.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct IoTranslation {
        /// The physical address of the same byte.
        address: u64,
        /// The size of the page that maps it.
        page_size: u64,
        /// Whether DMA may read it.
        read: bool,
        /// Whether DMA may write it.
        write: bool,
    }

    /// I/O addresses a 3-level table translates: 39 bits. (QEMU 7.2 ignores the bits above,
    /// so higher addresses alias lower ones: to the same allowed frames, never others.)
    const REACH: u64 = 1 << 39;

    impl IoPageTable {
        /// Where DMA to `iova` leads, as the spec walks the table: `None` if nothing maps it.
        fn translate<M: TableMemory + ?Sized>(
            &self,
            memory: &mut M,
            iova: u64,
        ) -> Option<IoTranslation> {
            if iova >= REACH {
                return None;
            }
            let mut table = self.root;
            for level in (1..=Self::LEVELS).rev() {
                let entry = memory.table_mut(table).entries[index(iova, level)].raw();
                if entry & pte::PRESENT == 0 {
                    return None;
                }
                match next_level(entry) {
                    0 => {
                        let size = PAGE_SIZE << (9 * (level - 1));
                        let page = address(entry).as_u64() & !(size - 1);
                        return Some(IoTranslation {
                            address: page + iova % size,
                            page_size: size,
                            read: entry & pte::READ != 0,
                            write: entry & pte::WRITE != 0,
                        });
                    }
                    next if next == level - 1 => table = address(entry),
                    _ => return None,
                }
            }
            None
        }
    }

    /// Tables in boxes at made-up addresses; counts what was allocated and freed, can run out.
    #[derive(Default)]
    struct FakeTables {
        tables: BTreeMap<u64, Box<NptTable>>,
        next: u64,
        allocated: usize,
        freed: usize,
        limit: Option<usize>,
    }

    impl TableMemory for FakeTables {
        fn allocate_table(&mut self) -> Option<PhysAddr> {
            if self.limit.is_some_and(|limit| self.allocated >= limit) {
                return None;
            }
            self.next += 0x1000;
            let addr = 0x1_0000_0000 + self.next;
            self.tables.insert(addr, Box::new(NptTable::zeroed()));
            self.allocated += 1;
            Some(PhysAddr::new(addr))
        }
        fn free_table(&mut self, table: PhysAddr) {
            assert!(self.tables.remove(&table.as_u64()).is_some(), "double free {table:?}");
            self.freed += 1;
        }
        fn table_mut(&mut self, table: PhysAddr) -> &mut NptTable {
            self.tables.get_mut(&table.as_u64()).expect("a table this memory allocated")
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn identity_map_uses_2m_leaves_where_it_can() {
        let mut mem = FakeTables::default();
        // 1-3 MiB: no whole aligned 2 MiB, so 4 KiB leaves; 4-6 MiB: one 2 MiB leaf, then
        // 4 KiB leaves up to where a touching range ends (the two are merged).
        let allowed = [
            Range::new(MIB, 3 * MIB),
            Range::new(4 * MIB, 6 * MIB + 0x1000),
            Range::new(6 * MIB + 0x1000, 6 * MIB + 0x3000),
            Range::new(0x8000_0000, 0x8000_0000), // empty: ignored
        ];
        let (table, counts) = IoPageTable::identity(&mut mem, &allowed).unwrap();
        assert_eq!(counts, LeafCounts { pages_2m: 1, pages_4k: 512 + 3 });
        let t = table.translate(&mut mem, 0x10_0123).unwrap();
        assert_eq!(
            t,
            IoTranslation { address: 0x10_0123, page_size: 0x1000, read: true, write: true }
        );
        let t = table.translate(&mut mem, 5 * MIB + 7).unwrap();
        assert_eq!((t.address, t.page_size), (5 * MIB + 7, LARGE_PAGE));
        for unmapped in [0, MIB - 1, 3 * MIB, 4 * MIB - 1, 6 * MIB + 0x3000, 1 << 32, 1 << 39] {
            assert_eq!(table.translate(&mut mem, unmapped), None, "{unmapped:#x}");
        }
        assert_eq!(mem.allocated, 1 + 1 + 3, "root, a level-2 table, three level-1 tables");
        table.destroy(&mut mem);
        assert_eq!(mem.freed, mem.allocated);
    }

    #[test]
    fn every_entry_is_a_mapping_a_directory_or_all_zeroes() {
        // QEMU 7.2 does not check a leaf's PR: an entry that maps nothing must be all zeroes.
        let mut mem = FakeTables::default();
        let allowed = [Range::new(0x1000, 0x20_3000), Range::new(0xC000_0000, 0xC060_0000)];
        let (table, _) = IoPageTable::identity(&mut mem, &allowed).unwrap();
        let rw = pte::PRESENT | pte::READ | pte::WRITE;
        let mut pending = Vec::from([(table.root(), IoPageTable::LEVELS)]);
        let mut seen = 0;
        while let Some((at, level)) = pending.pop() {
            seen += 1;
            for raw in mem.table_mut(at).entries.map(NptEntry::raw) {
                if raw == 0 {
                    continue;
                }
                assert_eq!(raw & rw, rw, "every level allows reads and writes");
                assert_eq!(raw & !(POINTER_MASK | 7 << 9 | rw), 0, "{raw:#x}");
                if next_level(raw) != 0 {
                    assert_eq!(next_level(raw), level - 1);
                    pending.push((address(raw), level - 1));
                } else {
                    assert!(level <= 2, "no 1 GiB leaves");
                }
            }
        }
        assert_eq!(seen, mem.allocated);
    }

    #[test]
    fn identity_map_matches_the_allowed_set_exactly() {
        let mut rng = XorShift(0x10_4D5A);
        for _ in 0..40 {
            let mut allowed = Vec::new();
            for _ in 0..rng.below(6) {
                let start = (rng.next() % (64 * MIB)) & !0xFFF;
                let len = (rng.next() % (5 * MIB)) & !0xFFF;
                allowed.push(Range::new(start, start + len));
            }
            let mut mem = FakeTables::default();
            let (table, counts) = IoPageTable::identity(&mut mem, &allowed).unwrap();
            let mut pages = 0;
            for page in (0..72 * MIB).step_by(0x1000) {
                let inside = allowed.iter().any(|r| r.contains(page));
                let t = table.translate(&mut mem, page + 0x10);
                assert_eq!(t.map(|t| t.address), inside.then_some(page + 0x10), "{page:#x}");
                pages += u64::from(inside);
            }
            assert_eq!(counts.pages_2m * 512 + counts.pages_4k, pages);
            table.destroy(&mut mem);
            assert_eq!(mem.freed, mem.allocated);
        }
    }

    #[test]
    fn identity_map_refuses_bad_ranges_and_gives_tables_back() {
        let mut mem = FakeTables::default();
        for (range, error) in [
            (Range::new(0x1800, 0x3000), IommuError::Unaligned(0x1800)),
            (Range::new(0x1000, 0x3001), IommuError::Unaligned(0x3001)),
            (Range::new(0xFFFF_F000, 0x1_0000_1000), IommuError::OutOfRange(0x1_0000_1000)),
        ] {
            assert_eq!(IoPageTable::identity(&mut mem, &[range]).err(), Some(error));
        }
        assert_eq!(mem.allocated, 0, "nothing allocated for refused input");
        let mut mem = FakeTables { limit: Some(3), ..FakeTables::default() };
        let allowed = [Range::new(0, 0x1000), Range::new(1 << 30, (1 << 30) + 0x1000)];
        assert_eq!(
            IoPageTable::identity(&mut mem, &allowed).err(),
            Some(IommuError::OutOfTables(1 << 30))
        );
        assert_eq!((mem.freed, mem.tables.len()), (3, 0), "no leak");
    }
}
