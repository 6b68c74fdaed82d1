//! Leaving QEMU with a status: the isa-debug-exit device (`-device
//! isa-debug-exit,iobase=0xf4,iosize=0x04`) ends QEMU with status `(value << 1) | 1`.

use x86_64::instructions::port::Port;

/// The I/O port the runner configures the device at.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the image reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every self-test passed: QEMU exits with status 33 (the test image only).
    #[cfg(feature = "selftest")]
    Success = 0x10,
    /// Something failed: QEMU exits with status 35.
    Failure = 0x11,
}

/// Ends QEMU with `code`; on a machine without the device (a replica VM), turns it off.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the debug-exit device under QEMU and unused on the machines the
    // image runs on otherwise; writing it has no effect on memory.
    unsafe { port.write(code as u32) };
    power_off()
}

/// The SMI command port (the FADT's `SMI_CMD`: the PIIX4's or the ICH9's APM control port),
/// and the values that switch the chipset to ACPI mode (the FADT's `ACPI_ENABLE`; ACPI 6.4
/// §5.2.9, §16.3.1): QEMU's `pc` firmware takes 0xF1, its `q35` ICH9 model 0x02.
const SMI_COMMAND_PORT: u16 = 0xB2;
const ACPI_ENABLE_PIIX: u8 = 0xF1;
const ACPI_ENABLE_ICH9: u8 = 0x02;
/// The PCI vendor/device dword of QEMU's `q35` host bridge (the Q35 MCH, 8086:29C0).
const Q35_HOST_BRIDGE: u32 = 0x29C0_8086;

/// Whether the machine is QEMU's `q35` (by its host bridge, bus 0 device 0).
pub fn is_q35() -> bool {
    crate::ports::config_read(0, 0, 0) == Q35_HOST_BRIDGE
}

/// Switches the machine to ACPI mode (SCI_EN set) before the guest runs, so the guest never
/// needs the SMI command port, which the hypervisor keeps from it (an SMI runs the firmware's
/// SMM handler).
pub fn acpi_enable() {
    let value = if is_q35() { ACPI_ENABLE_ICH9 } else { ACPI_ENABLE_PIIX };
    let mut port = Port::<u8>::new(SMI_COMMAND_PORT);
    // SAFETY: port 0xB2 is the chipset's SMI command port; ACPI_ENABLE makes the firmware's
    // SMM handler (or QEMU's chipset model) set SCI_EN. It touches no memory of the
    // hypervisor's: the firmware's SMRAM is its own and the guest has not run yet.
    unsafe { port.write(value) };
}

/// ACPI PM1a control of QEMU's `pc` and `q35` machines (the PIIX4's or ICH9's PM base the
/// firmware sets, 0x600, plus 4) and what puts the machine in soft-off: SLP_EN with sleep
/// type 0, S5 in QEMU's DSDT (ACPI 6.4 §4.8.3.2.1).
const PM1A_CONTROL: u16 = 0x604;
const SOFT_OFF: u16 = 1 << 13;

/// Turns the machine off (ACPI S5); halts if it is still running after the write.
pub fn power_off() -> ! {
    let mut port = Port::<u16>::new(PM1A_CONTROL);
    // SAFETY: the PM1a control register; soft-off ends the machine and touches no memory.
    unsafe { port.write(SOFT_OFF) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
