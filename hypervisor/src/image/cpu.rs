//! Processor state the hypervisor manages for its guests and PALs beyond what VMRUN switches:
//! the x87/SSE state (FXSAVE/FXRSTOR) and the random number generator (RDRAND).
//!
//! The image itself is built soft-float (`x86_64-unknown-none`) and never touches x87 or
//! vector registers, so whatever they hold belongs to the guest or PAL that last ran. VMRUN
//! does not switch them (APM Vol. 2 §15.5.1 lists what it saves), so the hypervisor does:
//! before a PAL runs it saves the guest's state and loads a clean one; afterwards it restores
//! the guest's, which also overwrites everything the PAL left in those registers.
//!
//! Only the legacy FXSAVE image (x87, MXCSR, XMM0-15) is switched. The PALs vpr builds use
//! SSE2 and nothing wider, and legacy SSE instructions leave the upper halves of the YMM/ZMM
//! registers alone, so a guest's AVX state survives a PAL untouched and a PAL leaves nothing
//! there; a guest that gives PALs XCR0 bits beyond x87|SSE would need XSAVE here.

use core::arch::asm;
use core::arch::x86_64::__cpuid;
use vpr_proto::hypercall::Status;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

/// The 512-byte FXSAVE/FXRSTOR memory image, 16-byte aligned (APM Vol. 2 §11.4.4; Intel SDM
/// Vol. 1 §10.5.1, Table 10-2: FCW at byte 0, FSW 2, abridged FTW 4, MXCSR 24, ST0-7 from
/// 32, XMM0-15 from 160).
#[derive(Clone)]
#[repr(C, align(16))]
pub struct FpuState([u8; 512]);

/// x87 control word after FNINIT: all exceptions masked, 64-bit precision, round to nearest.
const FCW_DEFAULT: u16 = 0x037F;
/// MXCSR at reset: all SIMD exceptions masked, round to nearest (APM Vol. 1 §4.2.2).
const MXCSR_DEFAULT: u32 = 0x1F80;

impl FpuState {
    /// The state a PAL starts with: x87 as after FNINIT (empty stack), MXCSR at its reset
    /// value, every data register zero.
    pub fn clean() -> FpuState {
        let mut image = [0; 512];
        image[0..2].copy_from_slice(&FCW_DEFAULT.to_le_bytes());
        image[24..28].copy_from_slice(&MXCSR_DEFAULT.to_le_bytes());
        FpuState(image)
    }

    /// The state in the processor now.
    pub fn save() -> FpuState {
        let mut state = FpuState([0; 512]);
        // SAFETY: FXSAVE64 writes exactly 512 bytes at a 16-byte aligned address, which
        // `FpuState` is; CR0.EM and CR0.TS are clear (`init`), so it cannot fault.
        unsafe { asm!("fxsave64 [{}]", in(reg) state.0.as_mut_ptr(), options(nostack)) };
        state
    }

    /// Loads this state into the processor.
    pub fn restore(&self) {
        // SAFETY: the image is 16-byte aligned and was made by `save` or `clean` (MXCSR has no
        // reserved bit set), so FXRSTOR64 cannot fault; it changes only x87/SSE registers,
        // which the soft-float hypervisor does not use.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack)) };
    }
}

/// Lets FXSAVE/FXRSTOR reach the SSE state: CR4.OSFXSR and OSXMMEXCPT set, CR0.EM and TS
/// clear, CR0.MP set (APM Vol. 2 §3.1.1, §3.1.3). Fails without FXSR and SSE2 (CPUID 1 EDX
/// bits 24 and 26), which every x86-64 processor has.
pub fn init() -> Result<(), &'static str> {
    let edx = __cpuid(1).edx;
    if edx & (1 << 24) == 0 || edx & (1 << 26) == 0 {
        return Err("the processor lacks FXSR or SSE2");
    }
    // SAFETY: setting OSFXSR/OSXMMEXCPT only lets SSE instructions run and FXSAVE include the
    // XMM registers; no memory mapping changes.
    unsafe { Cr4::update(|f| *f |= Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE) };
    // SAFETY: MP/EM/TS only decide whether x87/SSE instructions trap; paging and protection
    // are untouched.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
    };
    Ok(())
}

/// Whether the processor has RDRAND (CPUID 1 ECX bit 30).
pub fn has_rdrand() -> bool {
    __cpuid(1).ecx & (1 << 30) != 0
}

/// Fills `buf` from RDRAND. RDRAND may fail transiently (CF clear); each word is retried up
/// to 10 times, as Intel's DRNG guide advises, and the whole call fails if one never comes
/// (or there is no RDRAND: [`Status::Unavailable`]), leaving `buf` unspecified: never hand
/// it out then.
pub fn random(buf: &mut [u8]) -> Result<(), Status> {
    if !has_rdrand() {
        return Err(Status::Unavailable);
    }
    for chunk in buf.chunks_mut(8) {
        let word = (0..10).find_map(|_| rdrand64()).ok_or(Status::Unavailable)?;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

fn rdrand64() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: RDRAND exists (checked by the caller) and only writes its destination and
    // the flags.
    unsafe {
        asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(value)
}
