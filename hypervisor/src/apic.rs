//! What an OS guest may write to its interrupt controllers. The local APIC and the I/O APIC
//! can send the processor an INIT (which would restart it outside guest mode, into the
//! firmware, with the hypervisor's memory intact), a start-up IPI or an SMI; the guest needs
//! none of them on one processor. Their pages are mapped read-only in the guest's nested page
//! table: reads reach the device, every write exits, is decoded (`decode`) and checked here,
//! and then done by the hypervisor or dropped.
//!
//! Delivery modes are bits 10:8 of the interrupt command register, of a local vector table
//! entry and of an I/O APIC redirection entry (AMD APM Vol. 2 §16.5 and §16.6; Intel SDM
//! Vol. 3A §11.5.1 and §11.6.1; the 82093AA I/O APIC datasheet §3.2.4). NMIs stay allowed:
//! the guest gets those it asks for, and one that arrives while a PAL runs is held by the
//! hypervisor and handed to the guest afterwards.

/// The local APIC's register page (the APIC base MSR's reset value; the guest cannot move it:
/// `svm::guest_os::OS_READ_ONLY_MSRS`).
pub const LOCAL_APIC: u64 = 0xFEE0_0000;
/// The I/O APIC's register page (QEMU's `pc` and `q35` machines, as the firmware's MADT says).
pub const IO_APIC: u64 = 0xFEC0_0000;

/// Local APIC registers (offsets in its page).
mod local {
    /// Interrupt command register, low half (writing it sends the IPI).
    pub const ICR_LOW: u32 = 0x300;
    /// The local vector table: CMCI (0x2F0), timer, thermal, performance counters, LINT0,
    /// LINT1 and error (0x320-0x370).
    pub const LVT_CMCI: u32 = 0x2F0;
    pub const LVT_FIRST: u32 = 0x320;
    pub const LVT_LAST: u32 = 0x370;
    /// The writable registers the guest may write (AMD APM Vol. 2 Table 16-2): task
    /// priority, EOI, logical destination and its format, spurious vector, error status, the
    /// ICR's two halves, the local vector table, the timer's initial count and divider.
    /// Nothing else: QEMU takes a write at offset 0 (and anywhere past the page, up to
    /// 0xFEEF_FFFF) as an MSI of the written value — an INIT or SMI like any other.
    pub const WRITABLE: [u32; 11] =
        [0x080, 0x0B0, 0x0D0, 0x0E0, 0x0F0, 0x280, 0x2F0, 0x300, 0x310, 0x380, 0x3E0];
}

/// I/O APIC registers: the index (IOREGSEL) and data (IOWIN) windows, QEMU's EOI register
/// (its I/O APIC is version 0x20), and the redirection table's registers (two per input, the
/// low one holding the delivery mode). QEMU decodes only the low 8 bits of the offset, so
/// 0x110 is the data window again: only these three offsets are written.
mod io {
    pub const IOREGSEL: u32 = 0x00;
    pub const IOWIN: u32 = 0x10;
    pub const EOI: u32 = 0x40;
    pub const REDIRECTION_FIRST: u32 = 0x10;
    pub const REDIRECTION_LAST: u32 = 0x3F;
}

/// A delivery mode (bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// 000: the vector, to the destination.
    Fixed,
    /// 001: the vector, to the lowest-priority processor of the destination.
    LowestPriority,
    /// 010: a system-management interrupt.
    Smi,
    /// 100: a non-maskable interrupt.
    Nmi,
    /// 101: INIT (or, level de-assert, the arbitration IDs' resynchronisation).
    Init,
    /// 110: a start-up IPI.
    StartUp,
    /// 111: the 8259's vector (ExtINT).
    ExtInt,
    /// 011.
    Reserved,
}

impl Delivery {
    /// The delivery mode of a register value.
    pub fn of(value: u32) -> Delivery {
        match value >> 8 & 7 {
            0 => Delivery::Fixed,
            1 => Delivery::LowestPriority,
            2 => Delivery::Smi,
            4 => Delivery::Nmi,
            5 => Delivery::Init,
            6 => Delivery::StartUp,
            7 => Delivery::ExtInt,
            _ => Delivery::Reserved,
        }
    }

    /// Whether an interrupt of this mode leaves the processor in the guest's hands: the
    /// vectored kinds and NMIs do; INIT, start-up and SMI take it out of guest mode.
    pub fn harmless(self) -> bool {
        matches!(
            self,
            Delivery::Fixed | Delivery::LowestPriority | Delivery::Nmi | Delivery::ExtInt
        )
    }
}

/// Why a write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a 32-bit access at a register's 16-byte boundary.
    Misaligned,
    /// Not a register the guest may write (the APIC ID, a read-only register, an offset
    /// QEMU takes as an MSI or an alias of another register).
    NotWritable,
    /// An interrupt command, local vector or redirection entry whose delivery mode would take
    /// the processor out of guest mode.
    Delivery(Delivery),
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refused::Misaligned => write!(f, "not an aligned 32-bit register write"),
            Refused::NotWritable => write!(f, "not a register the guest may write"),
            Refused::Delivery(mode) => write!(f, "delivery mode {mode:?}"),
        }
    }
}

/// Checks the guest's write of `value` to the local APIC register at `offset`: only the
/// registers of `local::WRITABLE` and the local vector table; of those, only the ICR and the
/// local vector table carry a delivery mode (ExtINT is meaningless in the ICR).
pub fn local_apic_write(offset: u32, value: u32) -> Result<(), Refused> {
    if !offset.is_multiple_of(16) || offset >= 0x1000 {
        return Err(Refused::Misaligned);
    }
    let lvt = (local::LVT_FIRST..=local::LVT_LAST).contains(&offset);
    if !lvt && !local::WRITABLE.contains(&offset) {
        return Err(Refused::NotWritable);
    }
    let mode = Delivery::of(value);
    let allowed = match offset {
        local::ICR_LOW => mode.harmless() && mode != Delivery::ExtInt,
        local::LVT_CMCI => mode.harmless(),
        _ if lvt => mode.harmless(),
        _ => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refused::Delivery(mode))
    }
}

/// The guest's view of the I/O APIC's index register: every write to it exits, so the
/// hypervisor knows which register a data write goes to, and selects it again itself before
/// doing that write (so nothing else that moved the index in between can redirect it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    select: u8,
}

/// What the hypervisor does for an allowed I/O APIC write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoApicWrite {
    /// Write the index register.
    Select(u8),
    /// Write the index register with the first value, then the data register with the second.
    Data(u8, u32),
    /// Write the EOI register (0x40) with the value.
    Eoi(u32),
}

impl IoApic {
    /// Checks the guest's write of `value` at `offset` and says what to do.
    pub fn write(&mut self, offset: u32, value: u32) -> Result<IoApicWrite, Refused> {
        if !offset.is_multiple_of(16) || offset >= 0x1000 {
            return Err(Refused::Misaligned);
        }
        match offset {
            io::IOREGSEL => {
                // The register is 8 bits wide; the rest of the word is ignored by the device.
                self.select = value.to_le_bytes()[0];
                Ok(IoApicWrite::Select(self.select))
            }
            io::IOWIN => {
                let index = u32::from(self.select);
                let low_half = index % 2 == 0;
                if (io::REDIRECTION_FIRST..=io::REDIRECTION_LAST).contains(&index)
                    && low_half
                    && !Delivery::of(value).harmless()
                {
                    return Err(Refused::Delivery(Delivery::of(value)));
                }
                Ok(IoApicWrite::Data(self.select, value))
            }
            io::EOI => Ok(IoApicWrite::Eoi(value)),
            _ => Err(Refused::NotWritable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_modes_decode() {
        let modes: [(u32, Delivery); 8] = [
            (0x0000_0030, Delivery::Fixed),
            (0x0000_0130, Delivery::LowestPriority),
            (0x0000_0200, Delivery::Smi),
            (0x0000_0300, Delivery::Reserved),
            (0x0000_0400, Delivery::Nmi),
            (0x0000_4500, Delivery::Init),
            (0x0000_0600, Delivery::StartUp),
            (0x0001_0700, Delivery::ExtInt),
        ];
        for (value, mode) in modes {
            assert_eq!(Delivery::of(value), mode, "{value:#x}");
        }
    }

    #[test]
    fn the_icr_sends_vectors_and_nmis_only() {
        // Linux's IPIs: a fixed vector to all others, an NMI to self.
        assert_eq!(local_apic_write(0x300, 0x000C_00FB), Ok(()));
        assert_eq!(local_apic_write(0x300, 0x0004_0400), Ok(()));
        // INIT to all including self (assert, level), as the warm-reset attack sends it;
        // start-up; SMI; ExtINT and the reserved mode.
        assert_eq!(local_apic_write(0x300, 0x0008_4500), Err(Refused::Delivery(Delivery::Init)));
        assert_eq!(local_apic_write(0x300, 0x0004_0600), Err(Refused::Delivery(Delivery::StartUp)));
        assert_eq!(local_apic_write(0x300, 0x0004_0200), Err(Refused::Delivery(Delivery::Smi)));
        assert_eq!(local_apic_write(0x300, 0x700), Err(Refused::Delivery(Delivery::ExtInt)));
        assert_eq!(local_apic_write(0x300, 0x300), Err(Refused::Delivery(Delivery::Reserved)));
        // The destination half carries no mode.
        assert_eq!(local_apic_write(0x310, 0xFF00_0500), Ok(()));
    }

    #[test]
    fn the_local_vector_table_keeps_vectors_nmis_and_extint() {
        // Linux: LINT0 ExtINT (masked or not), LINT1 NMI, the timer's vector, error vector.
        assert_eq!(local_apic_write(0x350, 0x0001_0700), Ok(()));
        assert_eq!(local_apic_write(0x360, 0x0000_0400), Ok(()));
        assert_eq!(local_apic_write(0x320, 0x0002_00EC), Ok(()));
        assert_eq!(local_apic_write(0x370, 0x0000_00FE), Ok(()));
        for lvt in [0x2F0, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370] {
            assert_eq!(local_apic_write(lvt, 0x500), Err(Refused::Delivery(Delivery::Init)));
            assert_eq!(local_apic_write(lvt, 0x200), Err(Refused::Delivery(Delivery::Smi)));
            // Masked does not make it harmless: the guest can unmask it later with a write
            // this check sees, but an entry the check let through must already be safe.
            assert_eq!(local_apic_write(lvt, 0x0001_0200), Err(Refused::Delivery(Delivery::Smi)));
        }
        // Other registers take any value: EOI, TPR, the timer's count and divider, SVR.
        for offset in [0x0B0, 0x080, 0x380, 0x3E0, 0x0F0] {
            assert_eq!(local_apic_write(offset, 0x500), Ok(()));
        }
    }

    #[test]
    fn only_writable_registers_are_written() {
        // Offset 0 is an MSI in QEMU (an INIT with this value); the ID, version, the ISR/IRR
        // banks, the timer's current count and reserved offsets are not written either.
        for offset in
            [0x000, 0x010, 0x020, 0x030, 0x090, 0x0A0, 0x0C0, 0x100, 0x200, 0x390, 0x3F0, 0xFF0]
        {
            assert_eq!(local_apic_write(offset, 0x500), Err(Refused::NotWritable), "{offset:#x}");
        }
        // I/O APIC: QEMU's aliases of the index and data windows.
        let mut ioapic = IoApic::default();
        for offset in [0x020, 0x100, 0x110, 0x210, 0xFF0] {
            assert_eq!(ioapic.write(offset, 0x500), Err(Refused::NotWritable), "{offset:#x}");
        }
        // An alias of the index does not move the tracked index.
        assert!(ioapic.write(0x00, 0x3E).is_ok());
        assert!(ioapic.write(0x100, 0x00).is_err());
        assert_eq!(ioapic.write(0x10, 0x500), Err(Refused::Delivery(Delivery::Init)));
    }

    #[test]
    fn misaligned_writes_are_refused() {
        assert_eq!(local_apic_write(0x304, 0), Err(Refused::Misaligned));
        assert_eq!(local_apic_write(0x1000, 0), Err(Refused::Misaligned));
        let mut ioapic = IoApic::default();
        assert_eq!(ioapic.write(0x14, 0), Err(Refused::Misaligned));
    }

    #[test]
    fn io_apic_redirection_entries_keep_vectors_nmis_and_extint() {
        let mut ioapic = IoApic::default();
        // Linux routes input 4 (COM1) to vector 0x24, fixed, physical, edge.
        assert_eq!(ioapic.write(0x00, 0x18), Ok(IoApicWrite::Select(0x18)));
        assert_eq!(ioapic.write(0x10, 0x24), Ok(IoApicWrite::Data(0x18, 0x24)));
        // The high half (the destination) takes anything.
        assert_eq!(ioapic.write(0x00, 0x19), Ok(IoApicWrite::Select(0x19)));
        assert_eq!(ioapic.write(0x10, 0x0000_0500), Ok(IoApicWrite::Data(0x19, 0x500)));
        // INIT, SMI and start-up on any input's low half are refused.
        for input in 0..24u8 {
            let select = 0x10 + 2 * input;
            assert!(ioapic.write(0x00, select.into()).is_ok());
            assert_eq!(ioapic.write(0x10, 0x500), Err(Refused::Delivery(Delivery::Init)));
            assert_eq!(ioapic.write(0x10, 0x200), Err(Refused::Delivery(Delivery::Smi)));
            assert_eq!(ioapic.write(0x10, 0x600), Err(Refused::Delivery(Delivery::StartUp)));
            assert_eq!(ioapic.write(0x10, 0x400), Ok(IoApicWrite::Data(select, 0x400)));
        }
        // The ID and arbitration registers carry no delivery mode.
        assert!(ioapic.write(0x00, 0x00).is_ok());
        assert_eq!(ioapic.write(0x10, 0x500), Ok(IoApicWrite::Data(0, 0x500)));
        // Only the low byte of the index counts, as on the device.
        assert_eq!(ioapic.write(0x00, 0xFF10), Ok(IoApicWrite::Select(0x10)));
        assert_eq!(ioapic.write(0x10, 0x500), Err(Refused::Delivery(Delivery::Init)));
        // QEMU's EOI register.
        assert_eq!(ioapic.write(0x40, 0x24), Ok(IoApicWrite::Eoi(0x24)));
    }
}
