//! Leaving QEMU with a status: the isa-debug-exit device (`-device
//! isa-debug-exit,iobase=0xf4,iosize=0x04`) ends QEMU with status `(value << 1) | 1`.

use x86_64::instructions::port::Port;

/// The I/O port the runner configures the device at.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the image reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every self-test passed: QEMU exits with status 33.
    Success = 0x10,
    /// Something failed: QEMU exits with status 35.
    Failure = 0x11,
}

/// Ends QEMU with `code`; on a machine without the device, halts forever.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the debug-exit device under QEMU and unused on the machines the
    // image runs on otherwise; writing it has no effect on memory.
    unsafe { port.write(code as u32) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
