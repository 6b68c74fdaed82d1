//! SVM on this processor: detecting and enabling it (APM Vol. 2 §15.4), the world switch
//! (`vmrun.rs`) and the vCPU (`vcpu.rs`).

pub mod vcpu;
mod vmrun;

use crate::mem;
use core::arch::x86_64::__cpuid;
use core::fmt;
use vpr_hypervisor::memory::PAGE_SIZE;
use vpr_hypervisor::svm::{
    CPUID_NESTED_PAGING, CPUID_NRIP_SAVE, CPUID_SVM, EFER_SVME, IOPM_BYTES, MSRPM_BYTES, MSR_VM_CR,
    MSR_VM_HSAVE_PA, VM_CR_SVMDIS,
};
use x86_64::registers::model_specific::{Efer, Msr};
use x86_64::PhysAddr;

/// Lets in the NMI that made the last exit: it stays pending after an NMI intercept (APM
/// §15.13.2) and the hypervisor keeps GIF clear, so it would meet the guest again at the next
/// VMRUN. GIF is set for one jump: the NMI is taken there by the hypervisor's NMI handler
/// (`exceptions::take_held_nmis` counts it). Tried a few times, in case the processor (TCG
/// checks for interrupts between translation blocks; the jump ends one) needs more than one
/// instruction boundary; `false` if none came.
pub fn take_pending_nmi() -> bool {
    for _ in 0..4 {
        let before = crate::exceptions::held_nmis();
        open_gif_window();
        if crate::exceptions::held_nmis() != before {
            return true;
        }
    }
    false
}

/// Lets in the SMI that made the last exit: it stays pending after an SMI intercept, as an
/// NMI does, and is held while GIF is clear. GIF is set for one jump, where the processor
/// takes it outside any guest: the firmware's SMM code (in SMRAM, which no guest can open:
/// `guest_os::PortFilter` keeps the chipset's SMRAM control) saves the hypervisor's state,
/// handles it and returns with RSM. Nothing tells the hypervisor it came; an SMI still
/// pending meets the guest again at the next VMRUN and exits again.
pub fn take_pending_smi() {
    open_gif_window();
}

/// Sets GIF for one jump (STGI, a jump that ends TCG's translation block, CLGI): what is
/// pending and held by GIF alone — an NMI or an SMI — is taken there.
fn open_gif_window() {
    // SAFETY: STGI and CLGI change only the global interrupt flag. In between, maskable
    // interrupts stay off (RFLAGS.IF is clear in the hypervisor), so what can be taken is an
    // NMI, whose handler only counts it, or an SMI, which the firmware's SMM code returns
    // from; both use the current stack, which is the hypervisor's.
    unsafe { core::arch::asm!("stgi", "jmp 2f", "2:", "clgi") };
}

/// Why SVM cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvmError {
    /// CPUID 8000_0001h ECX.SVM is clear.
    NotSupported,
    /// Firmware set VM_CR.SVMDIS.
    DisabledByFirmware,
    /// CPUID 8000_000Ah EDX.NP is clear.
    NoNestedPaging,
    /// No frames for the host save area or the permission maps.
    OutOfMemory,
}

impl fmt::Display for SvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SvmError::NotSupported => "the processor has no SVM (CPUID 8000_0001h ECX bit 2)",
            SvmError::DisabledByFirmware => "SVM is disabled by firmware (VM_CR.SVMDIS)",
            SvmError::NoNestedPaging => "no nested paging (CPUID 8000_000Ah EDX bit 0)",
            SvmError::OutOfMemory => "no memory for the SVM host structures",
        })
    }
}

/// SVM, enabled on this (the only) processor, with the structures all guests share.
#[derive(Debug)]
pub struct Svm {
    /// The I/O permission map: all ones, so every port access exits.
    pub iopm: PhysAddr,
    /// The MSR permission map: all ones, so every MSR access exits.
    pub msrpm: PhysAddr,
    /// How many ASIDs the processor has (CPUID 8000_000Ah EBX; the self-test reports it).
    #[cfg(feature = "selftest")]
    pub asids: u32,
    /// Whether the processor saves nRIP on instruction intercepts.
    pub nrip_save: bool,
}

/// Checks the processor, sets EFER.SVME and VM_HSAVE_PA, and builds the permission maps.
pub fn enable() -> Result<Svm, SvmError> {
    let max_extended = __cpuid(0x8000_0000).eax;
    if max_extended < 0x8000_000A || __cpuid(0x8000_0001).ecx & CPUID_SVM == 0 {
        return Err(SvmError::NotSupported);
    }
    // SAFETY: VM_CR exists on every processor with SVM (checked above); reading it has no
    // side effect.
    if unsafe { Msr::new(MSR_VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    let features = __cpuid(0x8000_000A);
    if features.edx & CPUID_NESTED_PAGING == 0 {
        return Err(SvmError::NoNestedPaging);
    }

    let host_save_area = mem::allocate_zeroed(1).ok_or(SvmError::OutOfMemory)?;
    let iopm = mem::allocate_zeroed(IOPM_BYTES / PAGE_SIZE).ok_or(SvmError::OutOfMemory)?;
    let msrpm = mem::allocate_zeroed(MSRPM_BYTES / PAGE_SIZE).ok_or(SvmError::OutOfMemory)?;
    for (map, bytes) in [(iopm, IOPM_BYTES), (msrpm, MSRPM_BYTES)] {
        // SAFETY: the frames were just allocated for this map, contiguous and identity-mapped;
        // nothing else refers to them.
        unsafe {
            core::ptr::write_bytes(
                mem::usize_of(map.as_u64()) as *mut u8,
                0xFF,
                mem::usize_of(bytes),
            )
        };
    }

    // SAFETY: SVM is supported and not disabled (checked above); setting EFER.SVME changes no
    // memory mapping and only makes the SVM instructions available.
    unsafe { Efer::write_raw(Efer::read_raw() | EFER_SVME) };
    // SAFETY: the host save area is a zeroed, page-aligned frame owned by SVM from now on;
    // VMRUN stores host state there (APM §15.30.4).
    unsafe { Msr::new(MSR_VM_HSAVE_PA).write(host_save_area.as_u64()) };

    Ok(Svm {
        iopm,
        msrpm,
        #[cfg(feature = "selftest")]
        asids: features.ebx,
        nrip_save: features.edx & CPUID_NRIP_SAVE != 0,
    })
}

#[cfg(feature = "selftest")]
/// Whether EFER.SVME is set.
pub fn enabled() -> bool {
    Efer::read_raw() & EFER_SVME != 0
}
