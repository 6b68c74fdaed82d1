//! Nested page tables: the host's translation of guest-physical addresses (APM §15.25).
//!
//! The format is long-mode 4-level paging (APM §5.3-§5.4); the table root goes in the VMCB's
//! N_CR3. Nested walks are user-mode accesses, so every level has U/S set (APM §15.25.5),
//! and permissions are decided at the leaf (non-leaf entries allow everything).
//!
//! The builder is generic over [`TableMemory`], which hands out and gives access to table
//! frames: the image backs it with identity-mapped physical frames, the tests with a map of
//! boxed tables that counts what was allocated and freed.

use core::fmt;
use x86_64::PhysAddr;

/// A guest-physical address: what the guest believes is physical, translated by the nested
/// page table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPhysAddr(u64);

impl GuestPhysAddr {
    /// The address `addr` (any value; the table refuses ones it cannot map).
    pub const fn new(addr: u64) -> Self {
        GuestPhysAddr(addr)
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// Entry bits (APM §5.4.1, Figure 5-20 and following).
pub mod flags {
    /// P: the entry is valid.
    pub const PRESENT: u64 = 1 << 0;
    /// R/W: writes are allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// U/S: user accesses are allowed; nested walks are user accesses.
    pub const USER: u64 = 1 << 2;
    /// PS: in a PDPT or PD entry, the entry maps a 1 GiB or 2 MiB page.
    pub const HUGE: u64 = 1 << 7;
    /// NX: instruction fetches are not allowed (needs EFER.NXE in the host).
    pub const NO_EXECUTE: u64 = 1 << 63;
}

/// What a guest may do with a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    /// Writes are allowed.
    pub write: bool,
    /// Instruction fetches are allowed.
    pub execute: bool,
}

impl Permissions {
    /// Read, write and execute.
    pub const ALL: Permissions = Permissions { write: true, execute: true };
    /// Read and write, no execute.
    pub const DATA: Permissions = Permissions { write: true, execute: false };
    /// Read only.
    pub const READ_ONLY: Permissions = Permissions { write: false, execute: false };
}

/// The page sizes the builder maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB, mapped by a PT entry.
    Size4K,
    /// 2 MiB, mapped by a PD entry with PS set.
    Size2M,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
        }
    }

    /// The level of the table whose entry maps a page of this size (1 = PT, 2 = PD).
    const fn leaf_level(self) -> u32 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
        }
    }
}

/// One 8-byte entry of a nested page table, at any level.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct NptEntry(u64);

impl NptEntry {
    /// Bits 51:12: the physical address of the next table or of a 4 KiB page.
    pub const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
    /// Bits 51:21: the physical address of a 2 MiB page (bit 12 is PAT there).
    pub const HUGE_ADDRESS_MASK: u64 = 0x000F_FFFF_FFE0_0000;

    /// An entry pointing to the next-level table: present, writable, user.
    pub fn table(table: PhysAddr) -> Self {
        NptEntry(
            table.as_u64() & Self::ADDRESS_MASK | flags::PRESENT | flags::WRITABLE | flags::USER,
        )
    }

    /// A leaf entry mapping `frame` with `permissions`; write-back memory (PAT index 0).
    pub fn page(frame: PhysAddr, size: PageSize, permissions: Permissions) -> Self {
        let mut bits = frame.as_u64() & Self::ADDRESS_MASK | flags::PRESENT | flags::USER;
        if permissions.write {
            bits |= flags::WRITABLE;
        }
        if !permissions.execute {
            bits |= flags::NO_EXECUTE;
        }
        if size == PageSize::Size2M {
            bits |= flags::HUGE;
        }
        NptEntry(bits)
    }

    /// The entry whose 64 bits are `raw`: for tables of another format in the same frames
    /// (the IOMMU's I/O page tables, `crate::iommu`).
    pub const fn from_raw(raw: u64) -> Self {
        NptEntry(raw)
    }

    /// The raw 64-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether the entry is valid.
    pub const fn is_present(self) -> bool {
        self.0 & flags::PRESENT != 0
    }

    /// Whether a PD entry maps a 2 MiB page rather than pointing to a PT.
    pub const fn is_huge(self) -> bool {
        self.0 & flags::HUGE != 0
    }

    /// The physical address it holds (next table, or the page's first byte).
    pub fn address(self) -> PhysAddr {
        let mask = if self.is_huge() { Self::HUGE_ADDRESS_MASK } else { Self::ADDRESS_MASK };
        PhysAddr::new_truncate(self.0 & mask)
    }
}

impl fmt::Debug for NptEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NptEntry({:#x})", self.0)
    }
}

/// One table of 512 entries, a 4 KiB page.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct NptTable {
    /// The entries, indexed by 9 bits of the guest-physical address.
    pub entries: [NptEntry; 512],
}

const _: () = assert!(size_of::<NptTable>() == 4096 && align_of::<NptTable>() == 4096);

/// Where table frames come from.
///
/// The nested page table calls [`TableMemory::table_mut`] only with addresses this backend
/// returned from [`TableMemory::allocate_table`] and has not taken back.
pub trait TableMemory {
    /// A zeroed frame for a new table, or `None` if memory is exhausted.
    fn allocate_table(&mut self) -> Option<PhysAddr>;
    /// Takes back a table frame once nothing points to it.
    fn free_table(&mut self, table: PhysAddr);
    /// Access to a table this backend allocated.
    fn table_mut(&mut self, table: PhysAddr) -> &mut NptTable;
}

/// Errors building a nested page table; each carries the guest-physical address at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NptError {
    /// The guest-physical or host-physical address is not aligned to the page size.
    Unaligned(u64),
    /// The guest-physical address needs more than 48 bits (4-level tables).
    OutOfRange(u64),
    /// Something is mapped there already.
    AlreadyMapped(u64),
    /// A 2 MiB page covers the address where a 4 KiB mapping was asked for.
    HugePageInTheWay(u64),
    /// No frame was left for a table.
    OutOfTables(u64),
}

impl fmt::Display for NptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, gpa) = match *self {
            NptError::Unaligned(a) => ("unaligned address", a),
            NptError::OutOfRange(a) => ("guest-physical address out of range", a),
            NptError::AlreadyMapped(a) => ("already mapped", a),
            NptError::HugePageInTheWay(a) => ("a 2 MiB page is in the way", a),
            NptError::OutOfTables(a) => ("out of memory for tables", a),
        };
        write!(f, "nested page table: {what} at {gpa:#x}")
    }
}

/// Proof that the nested page table changed: the guest's TLB may hold the old translation
/// until the vCPU flushes it (TLB_CONTROL on the next VMRUN, APM §15.16.1). Hand it to the
/// vCPU that runs on this table.
#[must_use = "the guest's TLB may still hold the old translation: hand this to the vCPU"]
#[derive(Debug)]
pub struct TlbFlush(());

impl TlbFlush {
    /// Merges two pending flushes into one.
    pub fn and(self, _other: TlbFlush) -> TlbFlush {
        self
    }
}

/// Bits 47:0 are translatable with four levels.
pub(crate) const GPA_LIMIT: u64 = 1 << 48;

/// The 9-bit index of `gpa` in a table of `level` (4 = PML4 ... 1 = PT).
#[allow(clippy::cast_possible_truncation, reason = "masked to 9 bits")]
pub(crate) fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// A nested page table, owned through its root; its tables live in a [`TableMemory`].
#[derive(Debug)]
pub struct NestedPageTable {
    root: PhysAddr,
}

impl NestedPageTable {
    /// An empty table (one zeroed PML4).
    pub fn new<M: TableMemory + ?Sized>(memory: &mut M) -> Result<Self, NptError> {
        let root = memory.allocate_table().ok_or(NptError::OutOfTables(0))?;
        Ok(NestedPageTable { root })
    }

    /// The PML4's physical address, for N_CR3.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Maps the page of `size` at `gpa` to the host frame `frame`.
    pub fn map<M: TableMemory + ?Sized>(
        &mut self,
        memory: &mut M,
        gpa: GuestPhysAddr,
        frame: PhysAddr,
        size: PageSize,
        permissions: Permissions,
    ) -> Result<TlbFlush, NptError> {
        let at = gpa.as_u64();
        if at >= GPA_LIMIT {
            return Err(NptError::OutOfRange(at));
        }
        if !at.is_multiple_of(size.bytes()) || !frame.as_u64().is_multiple_of(size.bytes()) {
            return Err(NptError::Unaligned(at));
        }
        let leaf = size.leaf_level();
        let mut table = self.root;
        for level in (leaf + 1..=4).rev() {
            let entry = memory.table_mut(table).entries[index(at, level)];
            table = if !entry.is_present() {
                let next = memory.allocate_table().ok_or(NptError::OutOfTables(at))?;
                memory.table_mut(table).entries[index(at, level)] = NptEntry::table(next);
                next
            } else if entry.is_huge() {
                return Err(NptError::HugePageInTheWay(at));
            } else {
                entry.address()
            };
        }
        let slot = &mut memory.table_mut(table).entries[index(at, leaf)];
        if slot.is_present() {
            return Err(NptError::AlreadyMapped(at));
        }
        *slot = NptEntry::page(frame, size, permissions);
        Ok(TlbFlush(()))
    }

    /// Frees every table (not the frames the leaves map: the guest's memory has its own
    /// owner).
    pub fn destroy<M: TableMemory + ?Sized>(self, memory: &mut M) {
        free_tables(memory, self.root, 4);
    }
}

fn free_tables<M: TableMemory + ?Sized>(memory: &mut M, table: PhysAddr, level: u32) {
    if level > 1 {
        for i in 0..512 {
            let entry = memory.table_mut(table).entries[i];
            if entry.is_present() && !entry.is_huge() {
                free_tables(memory, entry.address(), level - 1);
            }
        }
    }
    memory.free_table(table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{permissions, Translate, Translation};
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    /// Tables in boxes, addressed by made-up physical addresses; counts allocations and frees
    /// and can run out.
    #[derive(Default)]
    struct FakeMemory {
        tables: BTreeMap<u64, Box<NptTable>>,
        next: u64,
        allocated: usize,
        freed: Vec<u64>,
        limit: Option<usize>,
    }

    impl TableMemory for FakeMemory {
        fn allocate_table(&mut self) -> Option<PhysAddr> {
            if self.limit.is_some_and(|limit| self.allocated >= limit) {
                return None;
            }
            self.next += 0x1000;
            let addr = 0x4000_0000 + self.next;
            self.tables.insert(addr, Box::new(NptTable::zeroed()));
            self.allocated += 1;
            Some(PhysAddr::new(addr))
        }
        fn free_table(&mut self, table: PhysAddr) {
            assert!(self.tables.remove(&table.as_u64()).is_some(), "double free {table:?}");
            self.freed.push(table.as_u64());
        }
        fn table_mut(&mut self, table: PhysAddr) -> &mut NptTable {
            self.tables.get_mut(&table.as_u64()).expect("a table this memory allocated")
        }
    }

    fn gpa(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }
    fn hpa(a: u64) -> PhysAddr {
        PhysAddr::new(a)
    }

    #[test]
    fn maps_and_translates_4k_pages() {
        let mut mem = FakeMemory::default();
        let mut npt = NestedPageTable::new(&mut mem).unwrap();
        let _flush = npt
            .map(&mut mem, gpa(0x3000), hpa(0x80_5000), PageSize::Size4K, Permissions::ALL)
            .unwrap();
        let _flush = npt
            .map(&mut mem, gpa(0x4000), hpa(0x80_1000), PageSize::Size4K, Permissions::DATA)
            .unwrap();
        assert_eq!(mem.allocated, 4, "PML4, PDPT, PD, PT");
        let t = npt.translate(&mut mem, gpa(0x3123)).unwrap();
        assert_eq!(
            t,
            Translation {
                address: hpa(0x80_5123),
                size: PageSize::Size4K,
                permissions: Permissions::ALL
            }
        );
        assert_eq!(npt.translate(&mut mem, gpa(0x4008)).unwrap().permissions, Permissions::DATA);
        assert_eq!(npt.translate(&mut mem, gpa(0x5000)), None);
        assert_eq!(npt.translate(&mut mem, gpa(0x10000)), None);
        assert_eq!(npt.translate(&mut mem, gpa(1 << 48)), None);
    }

    #[test]
    fn every_level_allows_user_accesses() {
        let mut mem = FakeMemory::default();
        let mut npt = NestedPageTable::new(&mut mem).unwrap();
        let _flush = npt
            .map(
                &mut mem,
                gpa(0x7f_ffff_f000),
                hpa(0x1000),
                PageSize::Size4K,
                Permissions::READ_ONLY,
            )
            .unwrap();
        let mut table = npt.root();
        for level in (1..=4).rev() {
            let entry = mem.table_mut(table).entries[index(0x7f_ffff_f000, level)];
            assert!(
                entry.is_present() && entry.raw() & flags::USER != 0,
                "level {level}: {entry:?}"
            );
            if level > 1 {
                assert!(permissions(entry) == Permissions::ALL, "non-leaf grants all");
            } else {
                assert_eq!(entry.raw(), 0x1000 | flags::PRESENT | flags::USER | flags::NO_EXECUTE);
            }
            table = entry.address();
        }
    }

    #[test]
    fn maps_2m_pages_and_refuses_overlaps() {
        let mut mem = FakeMemory::default();
        let mut npt = NestedPageTable::new(&mut mem).unwrap();
        let _flush = npt
            .map(&mut mem, gpa(0x20_0000), hpa(0x60_0000), PageSize::Size2M, Permissions::ALL)
            .unwrap();
        assert_eq!(mem.allocated, 3, "no PT for a 2 MiB page");
        let t = npt.translate(&mut mem, gpa(0x2f_1234)).unwrap();
        assert_eq!((t.address, t.size), (hpa(0x6f_1234), PageSize::Size2M));
        assert_eq!(
            npt.map(&mut mem, gpa(0x20_1000), hpa(0x1000), PageSize::Size4K, Permissions::ALL)
                .err(),
            Some(NptError::HugePageInTheWay(0x20_1000))
        );
        assert_eq!(
            npt.map(&mut mem, gpa(0x20_0000), hpa(0x80_0000), PageSize::Size2M, Permissions::ALL)
                .err(),
            Some(NptError::AlreadyMapped(0x20_0000))
        );
        // A 2 MiB page over a range that has a 4 KiB table is refused too.
        let _flush = npt
            .map(&mut mem, gpa(0x1000), hpa(0x1000), PageSize::Size4K, Permissions::ALL)
            .unwrap();
        assert_eq!(
            npt.map(&mut mem, gpa(0), hpa(0), PageSize::Size2M, Permissions::ALL).err(),
            Some(NptError::AlreadyMapped(0))
        );
    }

    #[test]
    fn refuses_unaligned_and_out_of_range() {
        let mut mem = FakeMemory::default();
        let mut npt = NestedPageTable::new(&mut mem).unwrap();
        let all = Permissions::ALL;
        assert_eq!(
            npt.map(&mut mem, gpa(0x1001), hpa(0x1000), PageSize::Size4K, all).err(),
            Some(NptError::Unaligned(0x1001))
        );
        assert_eq!(
            npt.map(&mut mem, gpa(0x1000), hpa(0x1800), PageSize::Size4K, all).err(),
            Some(NptError::Unaligned(0x1000))
        );
        assert_eq!(
            npt.map(&mut mem, gpa(0x1000), hpa(0x1000), PageSize::Size2M, all).err(),
            Some(NptError::Unaligned(0x1000))
        );
        assert_eq!(
            npt.map(&mut mem, gpa(1 << 48), hpa(0), PageSize::Size4K, all).err(),
            Some(NptError::OutOfRange(1 << 48))
        );
        assert_eq!(mem.allocated, 1, "nothing allocated for refused maps");
    }

    #[test]
    fn destroy_frees_every_table_once() {
        let mut mem = FakeMemory::default();
        let mut npt = NestedPageTable::new(&mut mem).unwrap();
        for i in 0..8 {
            let _flush = npt
                .map(&mut mem, gpa(i << 30), hpa(i << 12), PageSize::Size4K, Permissions::ALL)
                .unwrap();
        }
        let _flush =
            npt.map(&mut mem, gpa(0x20_0000), hpa(0), PageSize::Size2M, Permissions::ALL).unwrap();
        let allocated = mem.allocated;
        assert_eq!(allocated, 1 + 1 + 8 + 8, "PML4, one PDPT, a PD and a PT per GiB");
        npt.destroy(&mut mem);
        assert_eq!(mem.freed.len(), allocated);
        assert!(mem.tables.is_empty());
    }

    #[test]
    fn running_out_of_tables_is_an_error_not_a_leak() {
        let mut mem = FakeMemory { limit: Some(3), ..FakeMemory::default() };
        let mut npt = NestedPageTable::new(&mut mem).unwrap();
        assert_eq!(
            npt.map(&mut mem, gpa(0x1000), hpa(0x1000), PageSize::Size4K, Permissions::ALL).err(),
            Some(NptError::OutOfTables(0x1000))
        );
        // The tables made before running out are linked and freed with the rest.
        npt.destroy(&mut mem);
        assert_eq!(mem.freed.len(), 3);
    }
}
