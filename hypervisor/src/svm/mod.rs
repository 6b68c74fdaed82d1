//! AMD SVM (Secure Virtual Machine): the hardware layouts and the logic over them that needs
//! no privilege. The instructions themselves (VMRUN, VMLOAD, VMSAVE) and the MSR writes live in
//! the image (`src/image/svm/`).
//!
//! Reference: AMD64 Architecture Programmer's Manual, Volume 2, revision 3.42, chapter 15
//! ("Secure Virtual Machine") and appendices B (VMCB layout) and C (exit codes).

pub mod exit;
pub mod guest_os;
pub mod npt;
pub mod os_policy;
pub mod setup;
pub mod vmcb;

/// CPUID function 8000_0001h, ECX bit 2: SVM is supported (APM §15.4).
pub const CPUID_SVM: u32 = 1 << 2;
/// CPUID function 8000_000Ah, EDX bit 0: nested paging is supported (APM §15.25.1).
pub const CPUID_NESTED_PAGING: u32 = 1 << 0;
/// CPUID function 8000_000Ah, EDX bit 3: the processor saves the next RIP (nRIP) on
/// instruction intercepts (APM §15.7.1). QEMU's TCG does not.
pub const CPUID_NRIP_SAVE: u32 = 1 << 3;

/// EFER bit 12, SVME: SVM instructions are enabled (APM §15.4).
pub const EFER_SVME: u64 = 1 << 12;
/// MSR VM_CR (C001_0114h); bit 4, SVMDIS, means firmware disabled SVM (APM §15.30.1).
pub const MSR_VM_CR: u32 = 0xC001_0114;
/// VM_CR bit 4: SVM is disabled.
pub const VM_CR_SVMDIS: u64 = 1 << 4;
/// MSR VM_HSAVE_PA (C001_0117h): physical address of the host save area VMRUN stores the
/// host's state in (APM §15.30.4).
pub const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;

/// Bytes of the I/O permission map: one bit per port, 64 K ports + 3 bytes, in 12 KiB
/// (APM §15.10.1).
pub const IOPM_BYTES: u64 = 12 * 1024;
/// Bytes of the MSR permission map: two bits per MSR for three MSR ranges, 8 KiB
/// (APM §15.11).
pub const MSRPM_BYTES: u64 = 8 * 1024;

/// Length of VMMCALL (0F 01 D9): without nRIP save the hypervisor advances RIP by this itself.
pub const VMMCALL_LEN: u64 = 3;
