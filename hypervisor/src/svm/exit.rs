//! SVM exit codes (APM Appendix C, Table C-1) and their normalization into [`VmExit`].

use crate::svm::vmcb::ControlArea;
use crate::vm::VmExit;

/// Exit codes the hypervisor names.
pub mod code {
    /// Exception vector `n` is `EXCEPTION_BASE + n` (0x40-0x5F).
    pub const EXCEPTION_BASE: u64 = 0x40;
    /// An NMI (the NMI stays pending: APM §15.13.2).
    pub const NMI: u64 = 0x61;
    /// An SMI (the SMI stays pending, as an NMI does).
    pub const SMI: u64 = 0x62;
    /// An INIT signal.
    pub const INIT: u64 = 0x63;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// RSM.
    pub const RSM: u64 = 0x73;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT; EXITINFO1 holds the port and direction (APM §15.10.2).
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR; EXITINFO1 is 0 for RDMSR, 1 for WRMSR (APM §15.11).
    pub const MSR: u64 = 0x7C;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7F;
    /// VMRUN executed by the guest.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// Nested page fault; EXITINFO1 error code, EXITINFO2 guest-physical address
    /// (APM §15.25.6).
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID as hardware writes it: -1 in all 64 bits.
    pub const INVALID: u64 = u64::MAX;
    /// VMEXIT_INVALID as QEMU's TCG writes it: -1 in the low 32 bits only.
    pub const INVALID_32: u64 = 0xFFFF_FFFF;
}

/// IOIO EXITINFO1 bit 0: the access was IN (APM Figure 15-2).
const IOIO_TYPE_IN: u64 = 1 << 0;

/// Turns the exit the processor reported in `control` into a [`VmExit`].
pub fn normalize(control: &ControlArea) -> VmExit {
    from_raw(control.exit_code, control.exit_info1, control.exit_info2)
}

/// Turns a raw exit code and its two information words into a [`VmExit`].
pub fn from_raw(exit_code: u64, info1: u64, info2: u64) -> VmExit {
    match exit_code {
        code::VMMCALL => VmExit::Hypercall,
        code::HLT => VmExit::Halt,
        code::NPF => VmExit::NestedPageFault { gpa: info2, error: info1 },
        code::SHUTDOWN => VmExit::Shutdown,
        code::NMI => VmExit::Nmi,
        code::SMI => VmExit::Smi,
        code::IOIO => VmExit::Io {
            port: u16::try_from(info1 >> 16 & 0xFFFF).unwrap_or(u16::MAX),
            write: info1 & IOIO_TYPE_IN == 0,
        },
        code::MSR => VmExit::Msr { write: info1 & 1 == 1 },
        code::CPUID => VmExit::Cpuid,
        code::INIT => VmExit::Init,
        code::RSM => VmExit::Rsm,
        code::INVD => VmExit::Invd,
        // VMRUN, then (VMMCALL, 0x81, is a hypercall) VMLOAD, VMSAVE, STGI, CLGI, SKINIT
        // (APM Appendix C).
        raw @ (code::VMRUN | 0x82..=0x86) => VmExit::Virtualization { code: raw },
        code::INVALID | code::INVALID_32 => VmExit::Invalid,
        code => VmExit::Other { code, info1, info2 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svm::vmcb::Vmcb;

    #[test]
    fn both_invalid_encodings_are_invalid() {
        assert_eq!(from_raw(u64::MAX, 0, 0), VmExit::Invalid);
        assert_eq!(from_raw(0xFFFF_FFFF, 0, 0), VmExit::Invalid);
        // Other large codes are not mistaken for it.
        assert_eq!(
            from_raw(0xFFFF_FFFE, 1, 2),
            VmExit::Other { code: 0xFFFF_FFFE, info1: 1, info2: 2 }
        );
    }

    #[test]
    fn npf_carries_address_and_error() {
        let mut vmcb = Vmcb::zeroed();
        vmcb.control.exit_code = code::NPF;
        vmcb.control.exit_info1 = 1 << 32 | 0x4;
        vmcb.control.exit_info2 = 0x10000;
        assert_eq!(
            normalize(&vmcb.control),
            VmExit::NestedPageFault { gpa: 0x10000, error: 0x1_0000_0004 }
        );
    }

    #[test]
    fn io_decodes_port_and_direction() {
        // OUT to 0xf4, 32-bit operand (SZ32, bit 6).
        assert_eq!(
            from_raw(code::IOIO, 0xf4 << 16 | 1 << 6, 0),
            VmExit::Io { port: 0xf4, write: true }
        );
        // IN from 0x3f8, 8-bit operand.
        assert_eq!(
            from_raw(code::IOIO, 0x3f8 << 16 | 1 << 4 | 1, 0),
            VmExit::Io { port: 0x3f8, write: false }
        );
    }

    #[test]
    fn the_rest_maps_by_code() {
        assert_eq!(from_raw(code::VMMCALL, 0, 0), VmExit::Hypercall);
        assert_eq!(from_raw(code::HLT, 0, 0), VmExit::Halt);
        assert_eq!(from_raw(code::SHUTDOWN, 0, 0), VmExit::Shutdown);
        assert_eq!(from_raw(code::NMI, 0, 0), VmExit::Nmi);
        assert_eq!(from_raw(code::MSR, 1, 0), VmExit::Msr { write: true });
        assert_eq!(from_raw(code::MSR, 0, 0), VmExit::Msr { write: false });
        assert_eq!(from_raw(code::CPUID, 0, 0), VmExit::Cpuid);
        assert_eq!(from_raw(code::INIT, 0, 0), VmExit::Init);
        assert_eq!(from_raw(code::RSM, 0, 0), VmExit::Rsm);
        assert_eq!(from_raw(code::INVD, 0, 0), VmExit::Invd);
        for raw in [code::VMRUN, 0x82, 0x83, 0x84, 0x85, 0x86] {
            assert_eq!(from_raw(raw, 0, 0), VmExit::Virtualization { code: raw });
        }
        assert_eq!(from_raw(0x87, 0, 0), VmExit::Other { code: 0x87, info1: 0, info2: 0 });
        assert_eq!(
            from_raw(code::EXCEPTION_BASE + 6, 0, 0),
            VmExit::Other { code: 0x46, info1: 0, info2: 0 }
        );
    }
}
