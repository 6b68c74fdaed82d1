//! The interrupt controllers' registers, written by the hypervisor on the guest's behalf once
//! `vpr_hypervisor::apic` allowed the write: the local APIC's page and the I/O APIC's, which
//! the guest's nested page table maps read-only. Both lie in the identity-mapped first 4 GiB.

use vpr_hypervisor::apic::{IO_APIC, LOCAL_APIC};

/// The local APIC's interrupt command register, low half (Intel SDM Vol. 3 §11.6.1, AMD APM
/// Vol. 2 §16.5): an NMI (delivery mode 100b, bits 10:8), asserted (bit 14), to this
/// processor alone (destination shorthand 01b, bits 19:18).
const ICR_LOW: u64 = LOCAL_APIC + 0x300;
const SELF_NMI: u32 = 0b100 << 8 | 1 << 14 | 0b01 << 18;

/// Sends this processor an NMI through its local APIC. With GIF clear it stays pending until
/// the next VMRUN, where the guest takes it.
pub fn self_nmi() {
    if let Some(icr) = Register::at(ICR_LOW) {
        icr.write(SELF_NMI);
    }
}

/// A 32-bit register of the local APIC or the I/O APIC: a 16-byte aligned offset in one of
/// their pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register(u64);

impl Register {
    /// The register at physical address `addr`, if it is one of the two controllers'.
    pub fn at(addr: u64) -> Option<Register> {
        let page = addr & !0xFFF;
        ((page == LOCAL_APIC || page == IO_APIC) && addr.is_multiple_of(16))
            .then_some(Register(addr))
    }

    /// Writes `value` to the register.
    pub fn write(self, value: u32) {
        // SAFETY: the address is a 16-byte aligned register in the local APIC's or the I/O
        // APIC's page (checked by `at`), identity-mapped; the caller checked the value against the policy of
        // `vpr_hypervisor::apic`, so the write sends no INIT, start-up or SMI. It changes no
        // memory but the device's registers.
        unsafe { core::ptr::write_volatile(crate::mem::usize_of(self.0) as *mut u32, value) }
    }
}
