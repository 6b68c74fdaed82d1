//! The VMCB of a guest that starts in 64-bit mode, with the intercepts the hypervisor always
//! keeps.

use crate::svm::vmcb::{attrib, intercept, Segment, Vmcb};
use crate::svm::EFER_SVME;
use x86_64::PhysAddr;

/// misc1 intercepts every guest gets: HLT ends a run, port and MSR accesses go through the
/// all-ones permission maps (so every access exits), a triple fault exits instead of
/// resetting the machine, an NMI exits (the guest has no IDT of its own for it: the
/// hypervisor holds it for the OS), and so do an SMI (let in outside the guest), an INIT,
/// RSM and INVD.
pub const MISC1: u32 = intercept::NMI
    | intercept::SMI
    | intercept::INIT
    | intercept::RSM
    | intercept::INVD
    | intercept::HLT
    | intercept::IOIO_PROT
    | intercept::MSR_PROT
    | intercept::SHUTDOWN;

/// misc2 intercepts every guest gets: VMMCALL is the hypercall; VMRUN must be intercepted
/// (APM §15.5.1) and the other SVM instructions would let a guest touch host state.
pub const MISC2: u32 = intercept::VMRUN
    | intercept::VMMCALL
    | intercept::VMLOAD
    | intercept::VMSAVE
    | intercept::STGI
    | intercept::CLGI
    | intercept::SKINIT;

/// CR0 of a 64-bit guest: PE, MP, ET, NE, WP, PG.
pub const GUEST_CR0: u64 = 1 << 0 | 1 << 1 | 1 << 4 | 1 << 5 | 1 << 16 | 1 << 31;
/// CR4 of a 64-bit guest: PAE, and OSFXSR and OSXMMEXCPT so that it may use SSE (the
/// hypervisor saves and restores that state around PALs, `image/cpu.rs`).
pub const GUEST_CR4: u64 = 1 << 5 | 1 << 9 | 1 << 10;
/// EFER of a 64-bit guest: LME, LMA, and SVME, which VMRUN requires (APM §15.5.1).
pub const GUEST_EFER: u64 = 1 << 8 | 1 << 10 | EFER_SVME;
/// The power-on PAT (APM §7.8.2): WB, WT, UC-, UC, twice.
pub const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

/// The selectors the guest's segments claim (it has no GDT: it never reloads them).
const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;

/// Everything needed to start a 64-bit guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongModeGuest {
    /// Address space ID, non-zero (0 is the host's); each guest's own, or flush on reuse.
    pub asid: u32,
    /// Where the guest starts (a guest-virtual address).
    pub rip: u64,
    /// Its initial stack pointer (guest-virtual).
    pub rsp: u64,
    /// Guest-physical address of its PML4.
    pub cr3: u64,
    /// Host-physical address of the nested page table's PML4.
    pub nested_root: PhysAddr,
    /// Host-physical address of the 12 KiB I/O permission map.
    pub iopm: PhysAddr,
    /// Host-physical address of the 8 KiB MSR permission map.
    pub msrpm: PhysAddr,
    /// misc1 intercepts beyond [`MISC1`].
    pub extra_misc1: u32,
}

/// The control area every guest starts with: the misc1 intercepts `misc1` and always
/// [`MISC2`], the I/O and MSR permission maps `maps`, ASID `asid`, nested paging with the
/// table at `nested_root`, a TLB flush on the first VMRUN and nothing cached (clean bits 0).
pub fn control(
    vmcb: &mut Vmcb,
    misc1: u32,
    asid: u32,
    maps: (PhysAddr, PhysAddr),
    nested_root: PhysAddr,
) {
    let c = &mut vmcb.control;
    c.intercept_misc1 = misc1;
    c.intercept_misc2 = MISC2;
    c.iopm_base_pa = maps.0.as_u64();
    c.msrpm_base_pa = maps.1.as_u64();
    c.guest_asid = asid;
    c.tlb_control = 1;
    c.np_control = 1;
    c.ncr3 = nested_root.as_u64();
    c.vmcb_clean = 0;
}

fn flat(selector: u16, attrib: u16) -> Segment {
    Segment { selector, attrib, limit: 0xFFFF_FFFF, base: 0 }
}

impl LongModeGuest {
    /// Writes the control area and the guest state into `vmcb` (which should be zeroed): CPL
    /// 0, flat 64-bit segments, paging on with the guest's CR3, nested paging on, the
    /// standard intercepts, and a flush of the TLB on the first VMRUN.
    pub fn write_to(&self, vmcb: &mut Vmcb) {
        let maps = (self.iopm, self.msrpm);
        control(vmcb, MISC1 | self.extra_misc1, self.asid, maps, self.nested_root);

        let s = &mut vmcb.save;
        s.cs = flat(CODE_SELECTOR, attrib::CODE64);
        for segment in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
            *segment = flat(DATA_SELECTOR, attrib::DATA);
        }
        s.tr = Segment { selector: 0, attrib: attrib::TSS_BUSY, limit: 0x67, base: 0 };
        s.ldtr = Segment::default();
        // No GDT and no IDT: any exception in the guest becomes a triple fault, which the
        // SHUTDOWN intercept turns into an exit.
        s.gdtr = Segment::default();
        s.idtr = Segment::default();
        s.cpl = 0;
        s.efer = GUEST_EFER;
        s.cr0 = GUEST_CR0;
        s.cr3 = self.cr3;
        s.cr4 = GUEST_CR4;
        s.dr6 = 0xFFFF_0FF0;
        s.dr7 = 0x400;
        s.rflags = 0x2;
        s.rip = self.rip;
        s.rsp = self.rsp;
        s.rax = 0;
        s.g_pat = DEFAULT_PAT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;

    #[test]
    fn guest_passes_the_checks_vmrun_makes() {
        let mut vmcb = Box::new(Vmcb::zeroed());
        LongModeGuest {
            asid: 1,
            rip: 0x3000,
            rsp: 0x5000,
            cr3: 0,
            nested_root: PhysAddr::new(0x20_0000),
            iopm: PhysAddr::new(0x30_0000),
            msrpm: PhysAddr::new(0x30_3000),
            extra_misc1: intercept::CPUID,
        }
        .write_to(&mut vmcb);
        // APM §15.5.1: VMRUN intercepted, ASID non-zero, EFER.SVME set, long mode with paging
        // and PAE, CS.L set with CS.D clear.
        assert_ne!(vmcb.control.intercept_misc2 & intercept::VMRUN, 0);
        assert_ne!(vmcb.control.guest_asid, 0);
        assert_ne!(vmcb.save.efer & EFER_SVME, 0);
        assert_eq!(vmcb.save.efer & (1 << 8 | 1 << 10), 1 << 8 | 1 << 10);
        assert_ne!(vmcb.save.cr0 & 1 << 31, 0);
        assert_ne!(vmcb.save.cr4 & 1 << 5, 0);
        let cs = vmcb.save.cs.attrib;
        assert_eq!((cs >> 9 & 1, cs >> 10 & 1), (1, 0), "L=1, D=0");
        assert_eq!(vmcb.control.intercept_misc1, MISC1 | intercept::CPUID);
        assert_ne!(vmcb.control.intercept_misc1 & intercept::SHUTDOWN, 0);
        assert_eq!((vmcb.control.np_control, vmcb.control.ncr3), (1, 0x20_0000));
        assert_eq!((vmcb.save.rip, vmcb.save.rsp), (0x3000, 0x5000));
    }
}
