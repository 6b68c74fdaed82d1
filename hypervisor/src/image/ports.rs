//! Port I/O the hypervisor does on the guest's behalf, for the ports it filters
//! (`vpr_hypervisor::svm::guest_os::FILTERED_PORTS`): once the filter allowed an access, the
//! access itself, and the sizing of a PCI BAR before a write of it is allowed.

use vpr_hypervisor::svm::guest_os::{self, BarKind};
use x86_64::instructions::port::Port;

/// PCI configuration mechanism 1: the address and data ports (PCI Local Bus 3.0 §3.2.2.3.2).
const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Reads `size` (1, 2 or 4) bytes at `port`; all ones for a port that is not filtered (this
/// module reaches no other).
pub fn read(port: u16, size: u8) -> u32 {
    if !guest_os::filtered(port) {
        return u32::MAX;
    }
    // SAFETY: called only for the filtered ports (RTC/CMOS, PM1a control, PCI configuration)
    // once the filter allowed the read: reading them touches no memory, only the device's
    // registers the guest may read anyway.
    unsafe {
        match size {
            1 => u32::from(Port::<u8>::new(port).read()),
            2 => u32::from(Port::<u16>::new(port).read()),
            _ => Port::<u32>::new(port).read(),
        }
    }
}

/// Writes the low `size` (1, 2 or 4) bytes of `value` at `port`.
#[allow(clippy::cast_possible_truncation, reason = "the low bytes are what is written")]
pub fn write(port: u16, size: u8, value: u32) {
    if !guest_os::filtered(port) {
        return; // this module reaches no other port
    }
    // SAFETY: called only for the filtered ports once the filter allowed this write (no
    // chipset memory or SMRAM control, no BAR over the platform window, no reset, no sleep
    // state but soft-off, not the CMOS shutdown byte): the device's registers change as the
    // guest could change them itself; no memory of the hypervisor's is written.
    unsafe {
        match size {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            _ => Port::<u32>::new(port).write(value),
        }
    }
}

/// The BAR at configuration address `select`: its kind, and what it reads after its sizing
/// value was written (its size mask); its value is written back.
pub fn size_bar(select: u32) -> (BarKind, u32) {
    let register = select & 0xFC;
    let previous = if register >= 0x14 {
        write(CONFIG_ADDRESS, 4, select - 4);
        read(CONFIG_DATA, 4)
    } else {
        0
    };
    write(CONFIG_ADDRESS, 4, select);
    let old = read(CONFIG_DATA, 4);
    let kind = BarKind::of(register, old, previous);
    write(CONFIG_DATA, 4, kind.sizing_value());
    let mask = read(CONFIG_DATA, 4);
    write(CONFIG_DATA, 4, old);
    (kind, mask)
}

/// The configuration dword at `register` of bus 0's `device`/`function` (all ones where no
/// function answers).
pub fn config_read(device: u8, function: u8, register: u8) -> u32 {
    select(
        1 << 31 | u32::from(device) << 11 | u32::from(function) << 8 | u32::from(register & 0xFC),
    );
    read(CONFIG_DATA, 4)
}

/// Selects configuration address `select` for the next access of the data ports.
pub fn select(select: u32) {
    write(CONFIG_ADDRESS, 4, select);
}
