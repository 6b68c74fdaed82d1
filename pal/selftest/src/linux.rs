//! The only OS interface of the self-test image: Linux x86_64 system calls for output, exit,
//! randomness and the clock, so the freestanding image can run as a plain process in CI.
//! The PAL proper never calls these; under the hypervisor its platform is the TCC.

use core::arch::asm;

const SYS_WRITE: u64 = 1;
const SYS_CLOCK_GETTIME: u64 = 228;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_GETRANDOM: u64 = 318;
const CLOCK_REALTIME: u64 = 0;

/// A raw three-argument system call (Linux x86_64 ABI: rax, rdi, rsi, rdx; rcx and r11
/// clobbered by `syscall`).
///
/// # Safety
/// The arguments must be valid for the call `nr`.
unsafe fn syscall3(nr: u64, a: u64, b: u64, c: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller guarantees the arguments suit the system call.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Writes all of `bytes` to standard output.
pub fn write_stdout(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the buffer is valid for `len` bytes for the duration of the call.
        let n = unsafe { syscall3(SYS_WRITE, 1, bytes.as_ptr() as u64, bytes.len() as u64) };
        let Ok(n) = usize::try_from(n) else { return };
        if n == 0 {
            return;
        }
        bytes = &bytes[n.min(bytes.len())..];
    }
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group takes a plain integer and does not return.
    unsafe { syscall3(SYS_EXIT_GROUP, code as u64, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

/// Fills `buf` from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is writable for its length; flags 0.
        let n = unsafe { syscall3(SYS_GETRANDOM, rest.as_mut_ptr() as u64, rest.len() as u64, 0) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => done += n,
            _ => exit(3),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_time_ms() -> i64 {
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a writable `struct timespec` (two 64-bit fields).
    let rc = unsafe { syscall3(SYS_CLOCK_GETTIME, CLOCK_REALTIME, ts.as_mut_ptr() as u64, 0) };
    if rc != 0 {
        return 0;
    }
    ts[0] * 1000 + ts[1] / 1_000_000
}

// Process entry: the kernel starts us with rsp 16-byte aligned; `call` then leaves it as the
// System V ABI expects at a function's entry. Nothing is passed: the test takes no arguments.
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym super::entry,
);
