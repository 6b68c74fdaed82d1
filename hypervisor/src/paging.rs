//! A guest's own page tables, walked by the hypervisor: how a guest-virtual address of a guest
//! process (a buffer it passes to a hypercall) becomes a guest-physical one. Long-mode 4-level
//! paging (APM Vol. 2 §5.3: PML4, PDPT, PD, PT; 1 GiB and 2 MiB pages by the PS bit), as a user
//! access: every level must be present and allow user access, and for a write, writes.
//!
//! The walk reads table entries through a callback that must refuse any guest-physical
//! address that is not the guest's own RAM: a hostile guest can point its CR3 or any entry
//! anywhere, and the hypervisor must never read its own memory on the guest's behalf.

/// Entry bits (APM Vol. 2 §5.3.3, §5.4): present, writable, user, page size.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Bits 51:12 of an entry: the next table's (or the page's) physical address.
const ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;
/// The lower canonical half of a 48-bit address space: where user space lives.
pub const USER_END: u64 = 1 << 47;

/// Why an address does not translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// Not a canonical user address (the upper half, or beyond 48 bits); for a supervisor
    /// walk, not canonical.
    NotUser(u64),
    /// A level is not present.
    NotPresent(u64),
    /// A level forbids user access, or (for a write) writes.
    Protected(u64),
    /// A table lies outside the guest's RAM (the read callback refused it).
    BadTable(u64),
    /// A large page's reserved address bits are set.
    Reserved(u64),
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WalkError::NotUser(va) => write!(f, "{va:#x} is not a user (or canonical) address"),
            WalkError::NotPresent(va) => write!(f, "{va:#x} is not mapped"),
            WalkError::Protected(va) => write!(f, "{va:#x} is not accessible to user writes"),
            WalkError::BadTable(pa) => write!(f, "a page table at {pa:#x} is not guest RAM"),
            WalkError::Reserved(va) => write!(f, "{va:#x}: reserved bits in a large page"),
        }
    }
}

/// The guest-physical address of the user-mode access (a write if `write`) to `va` under
/// the page tables at `cr3`, reading each entry with `entry(guest-physical address)` (`None`:
/// not the guest's RAM).
pub fn translate(
    cr3: u64,
    va: u64,
    write: bool,
    entry: impl FnMut(u64) -> Option<u64>,
) -> Result<u64, WalkError> {
    if va >= USER_END {
        return Err(WalkError::NotUser(va));
    }
    walk_levels(cr3, va, |e| e & USER != 0 && (!write || e & WRITABLE != 0), entry)
}

/// The guest-physical address of a supervisor-mode read of `va` (a canonical address of
/// either half) under the page tables at `cr3`: how the hypervisor fetches the kernel
/// instruction that caused an exit. Every level must be present; the user and write bits do
/// not matter to a supervisor read.
pub fn translate_supervisor(
    cr3: u64,
    va: u64,
    entry: impl FnMut(u64) -> Option<u64>,
) -> Result<u64, WalkError> {
    // Canonical: bits 63:47 all equal (APM Vol. 2 §5.3.1).
    let high = va >> 47;
    if high != 0 && high != (1 << 17) - 1 {
        return Err(WalkError::NotUser(va));
    }
    walk_levels(cr3, va, |_| true, entry)
}

/// The 4-level walk of `va`, each level's entry checked by `allows`.
fn walk_levels(
    cr3: u64,
    va: u64,
    allows: impl Fn(u64) -> bool,
    mut entry: impl FnMut(u64) -> Option<u64>,
) -> Result<u64, WalkError> {
    let mut table = cr3 & ADDRESS;
    // Level 4 (PML4, bits 47:39) down to level 1 (PT, bits 20:12).
    for level in (1..=4u32).rev() {
        let shift = 12 + 9 * (level - 1);
        let at = table + ((va >> shift) & 0x1FF) * 8;
        let e = entry(at).ok_or(WalkError::BadTable(at))?;
        if e & PRESENT == 0 {
            return Err(WalkError::NotPresent(va));
        }
        if !allows(e) {
            return Err(WalkError::Protected(va));
        }
        let large = (level == 3 || level == 2) && e & PAGE_SIZE_BIT != 0;
        if large {
            let size = 1u64 << shift;
            let base = e & ADDRESS;
            // Bits 12..shift of a large page's address (bit 12 is PAT) must be zero beyond PAT.
            if base & (size - 1) & !(1 << 12) != 0 {
                return Err(WalkError::Reserved(va));
            }
            return Ok((base & !(size - 1)) | (va & (size - 1)));
        }
        table = e & ADDRESS;
    }
    Ok(table | (va & 0xFFF))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// Guest memory holding page-table entries; RAM is [0, 16 MiB).
    struct Tables(BTreeMap<u64, u64>);

    impl Tables {
        fn read(&self, pa: u64) -> Option<u64> {
            (pa < 16 << 20).then(|| self.0.get(&pa).copied().unwrap_or(0))
        }
    }

    const U: u64 = PRESENT | WRITABLE | USER;

    /// PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> page 0x5000 for VA
    /// 0x40_0000_0000 + 0x20_0000 + 0x3000 (PML4[0], PDPT[256], PD[1], PT[3]).
    fn tables() -> Tables {
        let mut t = BTreeMap::new();
        t.insert(0x1000, 0x2000 | U);
        t.insert(0x2000 + 256 * 8, 0x3000 | U);
        t.insert(0x3000 + 8, 0x4000 | U);
        t.insert(0x4000 + 3 * 8, 0x5000 | U);
        // A read-only user page at PT[4], a kernel page at PT[5].
        t.insert(0x4000 + 4 * 8, 0x6000 | PRESENT | USER);
        t.insert(0x4000 + 5 * 8, 0x7000 | PRESENT | WRITABLE);
        // A 2 MiB page at PD[2] -> 0x80_0000, a 1 GiB page at PDPT[1] -> 0x4000_0000.
        t.insert(0x3000 + 2 * 8, 0x80_0000 | U | PAGE_SIZE_BIT);
        t.insert(0x2000 + 8, 0x4000_0000 | U | PAGE_SIZE_BIT);
        // PD[3] points at a table beyond RAM.
        t.insert(0x3000 + 3 * 8, 0x4000_0000_0000 | U);
        Tables(t)
    }

    fn walk(va: u64, write: bool) -> Result<u64, WalkError> {
        let t = tables();
        translate(0x1000, va, write, |pa| t.read(pa))
    }

    const BASE: u64 = 256 << 30; // PDPT[256] of PML4[0]

    #[test]
    fn four_levels_and_large_pages() {
        assert_eq!(walk(BASE + 0x20_3123, false), Ok(0x5123));
        assert_eq!(walk(BASE + 0x20_3FFF, true), Ok(0x5FFF));
        assert_eq!(walk(BASE + 0x40_1234, true), Ok(0x80_1234));
        assert_eq!(walk((1 << 30) + 0x1234_5678, false), Ok(0x4000_0000 + 0x1234_5678));
    }

    #[test]
    fn protections_are_those_of_a_user_access() {
        assert_eq!(walk(BASE + 0x20_4000, false), Ok(0x6000));
        assert_eq!(walk(BASE + 0x20_4000, true), Err(WalkError::Protected(BASE + 0x20_4000)));
        assert_eq!(walk(BASE + 0x20_5000, false), Err(WalkError::Protected(BASE + 0x20_5000)));
        assert_eq!(walk(BASE + 0x20_6000, false), Err(WalkError::NotPresent(BASE + 0x20_6000)));
        assert_eq!(walk(0x1000, false), Err(WalkError::NotPresent(0x1000)));
        assert_eq!(walk(USER_END, false), Err(WalkError::NotUser(USER_END)));
        assert_eq!(walk(u64::MAX, false), Err(WalkError::NotUser(u64::MAX)));
    }

    #[test]
    fn supervisor_reads_ignore_user_and_write_bits() {
        let t = tables();
        let read = |va: u64| translate_supervisor(0x1000, va, |pa| t.read(pa));
        // A kernel page, a read-only user page, a large page.
        assert_eq!(read(BASE + 0x20_5010), Ok(0x7010));
        assert_eq!(read(BASE + 0x20_4000), Ok(0x6000));
        assert_eq!(read(BASE + 0x40_1234), Ok(0x80_1234));
        assert_eq!(read(BASE + 0x20_6000), Err(WalkError::NotPresent(BASE + 0x20_6000)));
        // The upper half is walked (PML4[511] is absent here); non-canonical is refused.
        assert_eq!(read(0xFFFF_FF80_0000_0000), Err(WalkError::NotPresent(0xFFFF_FF80_0000_0000)));
        assert_eq!(read(1 << 47), Err(WalkError::NotUser(1 << 47)));
        assert_eq!(read(0x8000_0000_0000_0000), Err(WalkError::NotUser(0x8000_0000_0000_0000)));
    }

    #[test]
    fn tables_outside_ram_are_refused() {
        let va = BASE + 0x60_0000; // PD[3]
        assert_eq!(walk(va, false), Err(WalkError::BadTable(0x4000_0000_0000)));
        let t = tables();
        assert_eq!(
            translate(1 << 40, 0, false, |pa| t.read(pa)),
            Err(WalkError::BadTable(1 << 40))
        );
    }

    #[test]
    fn random_tables_never_yield_an_address_after_a_refused_read() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            let mut t = BTreeMap::new();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.insert((x >> 20) & 0xF_FFF8, x);
            }
            let t = Tables(t);
            let mut refused = false;
            let result = translate(x & 0xFF_F000, x >> 17, x & 1 == 0, |pa| {
                let v = t.read(pa);
                refused |= v.is_none();
                v
            });
            // A walk that needed memory outside RAM never yields an address.
            assert!(!(refused && result.is_ok()));
            if let Ok(pa) = result {
                assert!(pa < 1 << 52);
            }
        }
    }
}
