//! Reading back what the hypervisor built, to check it: the unit tests' and the test image's
//! oracles (the audits of a PAL's and a test guest's nested page table). Compiled for tests
//! and with feature `selftest` only: the production image has none of it.

use crate::svm::npt::{
    flags, index, GuestPhysAddr, NestedPageTable, NptEntry, PageSize, Permissions, TableMemory,
    GPA_LIMIT,
};
use x86_64::PhysAddr;

/// Where a guest-physical address leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The host-physical address of the same byte.
    pub address: PhysAddr,
    /// The size of the page that maps it.
    pub size: PageSize,
    /// What the guest may do there.
    pub permissions: Permissions,
}

/// The permissions a leaf `entry` grants.
pub const fn permissions(entry: NptEntry) -> Permissions {
    let raw = entry.raw();
    Permissions { write: raw & flags::WRITABLE != 0, execute: raw & flags::NO_EXECUTE == 0 }
}

/// Walking a nested page table as the processor does.
pub trait Translate {
    /// Where `gpa` leads, if anywhere.
    fn translate<M: TableMemory + ?Sized>(
        &self,
        memory: &mut M,
        gpa: GuestPhysAddr,
    ) -> Option<Translation>;
}

impl Translate for NestedPageTable {
    fn translate<M: TableMemory + ?Sized>(
        &self,
        memory: &mut M,
        gpa: GuestPhysAddr,
    ) -> Option<Translation> {
        let at = gpa.as_u64();
        if at >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root();
        for level in (1..=4).rev() {
            let entry = memory.table_mut(table).entries[index(at, level)];
            if !entry.is_present() {
                return None;
            }
            if level == 1 || entry.is_huge() {
                let size = if level == 2 { PageSize::Size2M } else { PageSize::Size4K };
                let address = entry.address() + (at % size.bytes());
                return Some(Translation { address, size, permissions: permissions(entry) });
            }
            table = entry.address();
        }
        None
    }
}
