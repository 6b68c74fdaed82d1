//! The Virtual Machine Control Block: 4 KiB, a control area at 0x000 and the guest's state
//! save area at 0x400 (APM Appendix B, Tables B-1 and B-2). Offsets in comments are from the
//! start of their area and are checked at compile time.

use core::fmt;
use core::mem::offset_of;

/// The control area: what to intercept, where the bitmaps and nested tables are, and what the
/// processor reports on #VMEXIT (APM Table B-1).
#[repr(C)]
pub struct ControlArea {
    /// Bits 15:0 intercept reads of CR0-15, bits 31:16 writes.
    pub intercept_cr: u32, // +0x000
    /// Bits 15:0 intercept reads of DR0-15, bits 31:16 writes.
    pub intercept_dr: u32, // +0x004
    /// One bit per exception vector.
    pub intercept_exceptions: u32, // +0x008
    /// INTR, NMI, ..., HLT, IOIO_PROT, MSR_PROT, SHUTDOWN: see [`intercept`].
    pub intercept_misc1: u32, // +0x00C
    /// VMRUN, VMMCALL, ...: see [`intercept`].
    pub intercept_misc2: u32, // +0x010
    /// INVLPGB, PCID and others (unused).
    pub intercept_misc3: u32, // +0x014
    reserved_018: [u8; 0x03C - 0x018], // +0x018
    /// PAUSE filter threshold.
    pub pause_filter_threshold: u16, // +0x03C
    /// PAUSE filter count.
    pub pause_filter_count: u16, // +0x03E
    /// Physical address of the 12 KiB I/O permission map (APM §15.10.1).
    pub iopm_base_pa: u64, // +0x040
    /// Physical address of the 8 KiB MSR permission map (APM §15.11).
    pub msrpm_base_pa: u64, // +0x048
    /// Added to the TSC the guest reads.
    pub tsc_offset: u64, // +0x050
    /// The guest's address space ID; 0 is the host's and makes VMRUN fail (APM §15.16).
    pub guest_asid: u32, // +0x058
    /// TLB flush on VMRUN: 0 none, 1 all ASIDs, 3 this ASID, 7 this ASID's non-global
    /// entries (APM §15.16.1).
    pub tlb_control: u8, // +0x05C
    reserved_05d: [u8; 3],             // +0x05D
    /// V_TPR, V_IRQ, V_INTR_MASKING and the other virtual interrupt fields (APM §15.21).
    pub virtual_interrupt: u64, // +0x060
    /// Bit 0: the guest is in an interrupt shadow.
    pub interrupt_shadow: u64, // +0x068
    /// Why the guest exited (APM Appendix C).
    pub exit_code: u64, // +0x070
    /// Exit information 1 (meaning depends on the exit code).
    pub exit_info1: u64, // +0x078
    /// Exit information 2.
    pub exit_info2: u64, // +0x080
    /// An event that was being delivered when the exit happened (APM §15.7.2).
    pub exit_int_info: u64, // +0x088
    /// Bit 0: enable nested paging (APM §15.25.3).
    pub np_control: u64, // +0x090
    /// AVIC APIC bar (unused).
    pub avic_apic_bar: u64, // +0x098
    /// GHCB physical address (SEV-ES, unused).
    pub ghcb_pa: u64, // +0x0A0
    /// An event to inject at VMRUN (APM §15.20).
    pub event_injection: u64, // +0x0A8
    /// Nested page table root (hCR3) (APM §15.25.4).
    pub ncr3: u64, // +0x0B0
    /// Bit 0 LBR virtualization, bit 1 virtualized VMSAVE/VMLOAD.
    pub lbr_virtualization: u64, // +0x0B8
    /// VMCB clean bits (APM §15.15); 0 means reload everything.
    pub vmcb_clean: u64, // +0x0C0
    /// nRIP: the RIP after the intercepted instruction, if the CPU saves it (APM §15.7.1).
    pub next_rip: u64, // +0x0C8
    /// How many bytes of the guest instruction were fetched (decode assists).
    pub guest_instruction_len: u8, // +0x0D0
    /// The fetched bytes.
    pub guest_instruction_bytes: [u8; 15], // +0x0D1
    reserved_0e0: [u8; 0x400 - 0x0E0], // +0x0E0: AVIC pointers, VMSA pointer (unused)
}

const _: () = {
    assert!(size_of::<ControlArea>() == 0x400);
    assert!(offset_of!(ControlArea, intercept_misc1) == 0x00C);
    assert!(offset_of!(ControlArea, intercept_misc2) == 0x010);
    assert!(offset_of!(ControlArea, pause_filter_threshold) == 0x03C);
    assert!(offset_of!(ControlArea, iopm_base_pa) == 0x040);
    assert!(offset_of!(ControlArea, msrpm_base_pa) == 0x048);
    assert!(offset_of!(ControlArea, guest_asid) == 0x058);
    assert!(offset_of!(ControlArea, tlb_control) == 0x05C);
    assert!(offset_of!(ControlArea, exit_code) == 0x070);
    assert!(offset_of!(ControlArea, exit_info1) == 0x078);
    assert!(offset_of!(ControlArea, exit_info2) == 0x080);
    assert!(offset_of!(ControlArea, exit_int_info) == 0x088);
    assert!(offset_of!(ControlArea, np_control) == 0x090);
    assert!(offset_of!(ControlArea, event_injection) == 0x0A8);
    assert!(offset_of!(ControlArea, ncr3) == 0x0B0);
    assert!(offset_of!(ControlArea, vmcb_clean) == 0x0C0);
    assert!(offset_of!(ControlArea, next_rip) == 0x0C8);
    assert!(offset_of!(ControlArea, guest_instruction_len) == 0x0D0);
};

/// Intercept bits of [`ControlArea::intercept_misc1`] and [`ControlArea::intercept_misc2`]
/// (APM Table B-1, offsets 0x00C and 0x010).
pub mod intercept {
    /// misc1: physical interrupts.
    pub const INTR: u32 = 1 << 0;
    /// misc1: NMIs.
    pub const NMI: u32 = 1 << 1;
    /// misc1: SMI (taken in guest mode, SMM would run in the guest's context and save its
    /// registers where the guest can read them; the hypervisor lets it in outside the guest).
    pub const SMI: u32 = 1 << 2;
    /// misc1: INIT (the processor would otherwise reset into real mode, leaving guest mode
    /// without the hypervisor).
    pub const INIT: u32 = 1 << 3;
    /// misc1: CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// misc1: RSM (no guest is ever in SMM).
    pub const RSM: u32 = 1 << 19;
    /// misc1: INVD (which would discard dirty cache lines of every memory, the hypervisor's
    /// included).
    pub const INVD: u32 = 1 << 22;
    /// misc1: HLT.
    pub const HLT: u32 = 1 << 24;
    /// misc1: IN/OUT, filtered by the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// misc1: RDMSR/WRMSR, filtered by the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// misc1: shutdown (a triple fault) — without it a guest's triple fault resets the machine.
    pub const SHUTDOWN: u32 = 1 << 31;
    /// misc2: VMRUN; must be set or VMRUN fails (APM §15.5.1).
    pub const VMRUN: u32 = 1 << 0;
    /// misc2: VMMCALL, the hypercall.
    pub const VMMCALL: u32 = 1 << 1;
    /// misc2: VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// misc2: VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// misc2: STGI.
    pub const STGI: u32 = 1 << 4;
    /// misc2: CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// misc2: SKINIT.
    pub const SKINIT: u32 = 1 << 6;
}

/// A segment register in the state save area: selector, attributes packed into 12 bits
/// (descriptor bits 47:40 in 7:0, 55:52 in 11:8), limit and base (APM §15.5.1, Table B-2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The selector.
    pub selector: u16, // +0x0
    /// Type, S, DPL, P, AVL, L, D/B, G.
    pub attrib: u16, // +0x2
    /// The limit, in bytes.
    pub limit: u32, // +0x4
    /// The base address.
    pub base: u64, // +0x8
}

const _: () = assert!(size_of::<Segment>() == 0x10);

/// Segment attribute values.
pub mod attrib {
    /// 64-bit code: type 0xB (execute/read, accessed), S, P, L.
    pub const CODE64: u16 = 0x029B;
    /// Data: type 0x3 (read/write, accessed), S, P, D/B, G.
    pub const DATA: u16 = 0x0C93;
    /// A busy 64-bit TSS: type 0xB, P.
    pub const TSS_BUSY: u16 = 0x008B;
}

/// The guest's state, loaded by VMRUN and stored by #VMEXIT (APM Table B-2). Not all state
/// is swapped by VMRUN: FS, GS, TR, LDTR (hidden parts), KernelGsBase, STAR/LSTAR/CSTAR/SFMASK
/// and SYSENTER_* move with VMLOAD/VMSAVE (APM §15.5.2).
#[repr(C)]
#[allow(missing_docs, reason = "the fields are the registers of the same names")]
pub struct StateSaveArea {
    pub es: Segment,                   // +0x000
    pub cs: Segment,                   // +0x010
    pub ss: Segment,                   // +0x020
    pub ds: Segment,                   // +0x030
    pub fs: Segment,                   // +0x040
    pub gs: Segment,                   // +0x050
    pub gdtr: Segment,                 // +0x060
    pub ldtr: Segment,                 // +0x070
    pub idtr: Segment,                 // +0x080
    pub tr: Segment,                   // +0x090
    reserved_0a0: [u8; 0x0CB - 0x0A0], // +0x0A0
    /// The current privilege level (VMRUN takes it from here, not from SS.DPL).
    pub cpl: u8, // +0x0CB
    reserved_0cc: u32,                 // +0x0CC
    pub efer: u64,                     // +0x0D0
    reserved_0d8: [u8; 0x148 - 0x0D8], // +0x0D8
    pub cr4: u64,                      // +0x148
    pub cr3: u64,                      // +0x150
    pub cr0: u64,                      // +0x158
    pub dr7: u64,                      // +0x160
    pub dr6: u64,                      // +0x168
    pub rflags: u64,                   // +0x170
    pub rip: u64,                      // +0x178
    reserved_180: [u8; 0x1D8 - 0x180], // +0x180
    pub rsp: u64,                      // +0x1D8
    pub s_cet: u64,                    // +0x1E0
    pub ssp: u64,                      // +0x1E8
    pub isst_addr: u64,                // +0x1F0
    pub rax: u64,                      // +0x1F8
    pub star: u64,                     // +0x200
    pub lstar: u64,                    // +0x208
    pub cstar: u64,                    // +0x210
    pub sfmask: u64,                   // +0x218
    pub kernel_gs_base: u64,           // +0x220
    pub sysenter_cs: u64,              // +0x228
    pub sysenter_esp: u64,             // +0x230
    pub sysenter_eip: u64,             // +0x238
    pub cr2: u64,                      // +0x240
    reserved_248: [u8; 0x268 - 0x248], // +0x248
    /// The guest's PAT, used with nested paging (APM §15.25.8).
    pub g_pat: u64, // +0x268
    pub dbgctl: u64,                   // +0x270
    pub br_from: u64,                  // +0x278
    pub br_to: u64,                    // +0x280
    pub last_excp_from: u64,           // +0x288
    pub last_excp_to: u64,             // +0x290
    reserved_298: [u8; 0xC00 - 0x298], // +0x298
}

const _: () = {
    assert!(size_of::<StateSaveArea>() == 0xC00);
    assert!(offset_of!(StateSaveArea, cs) == 0x010);
    assert!(offset_of!(StateSaveArea, gdtr) == 0x060);
    assert!(offset_of!(StateSaveArea, tr) == 0x090);
    assert!(offset_of!(StateSaveArea, cpl) == 0x0CB);
    assert!(offset_of!(StateSaveArea, efer) == 0x0D0);
    assert!(offset_of!(StateSaveArea, cr4) == 0x148);
    assert!(offset_of!(StateSaveArea, cr3) == 0x150);
    assert!(offset_of!(StateSaveArea, cr0) == 0x158);
    assert!(offset_of!(StateSaveArea, dr7) == 0x160);
    assert!(offset_of!(StateSaveArea, rflags) == 0x170);
    assert!(offset_of!(StateSaveArea, rip) == 0x178);
    assert!(offset_of!(StateSaveArea, rsp) == 0x1D8);
    assert!(offset_of!(StateSaveArea, rax) == 0x1F8);
    assert!(offset_of!(StateSaveArea, star) == 0x200);
    assert!(offset_of!(StateSaveArea, kernel_gs_base) == 0x220);
    assert!(offset_of!(StateSaveArea, cr2) == 0x240);
    assert!(offset_of!(StateSaveArea, g_pat) == 0x268);
    assert!(offset_of!(StateSaveArea, last_excp_to) == 0x290);
};

/// A VMCB: one page, physically addressed by VMRUN/VMLOAD/VMSAVE (APM Appendix B).
#[repr(C, align(4096))]
pub struct Vmcb {
    /// The control area, at 0x000.
    pub control: ControlArea,
    /// The state save area, at 0x400.
    pub save: StateSaveArea,
}

const _: () = {
    assert!(size_of::<Vmcb>() == 0x1000);
    assert!(align_of::<Vmcb>() == 0x1000);
    assert!(offset_of!(Vmcb, save) == 0x400);
    // The fields the world switch and the exit dispatcher depend on, as absolute offsets.
    assert!(offset_of!(Vmcb, save) + offset_of!(StateSaveArea, rip) == 0x578);
    assert!(offset_of!(Vmcb, save) + offset_of!(StateSaveArea, rsp) == 0x5D8);
    assert!(offset_of!(Vmcb, save) + offset_of!(StateSaveArea, rax) == 0x5F8);
};

impl fmt::Debug for Vmcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s) = (&self.control, &self.save);
        f.debug_struct("Vmcb")
            .field("asid", &c.guest_asid)
            .field("exit_code", &format_args!("{:#x}", c.exit_code))
            .field("exit_info1", &format_args!("{:#x}", c.exit_info1))
            .field("exit_info2", &format_args!("{:#x}", c.exit_info2))
            .field("ncr3", &format_args!("{:#x}", c.ncr3))
            .field("rip", &format_args!("{:#x}", s.rip))
            .field("rsp", &format_args!("{:#x}", s.rsp))
            .field("rax", &format_args!("{:#x}", s.rax))
            .field("cr0", &format_args!("{:#x}", s.cr0))
            .field("cr3", &format_args!("{:#x}", s.cr3))
            .field("cr4", &format_args!("{:#x}", s.cr4))
            .field("efer", &format_args!("{:#x}", s.efer))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ControlArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlArea").field("exit_code", &self.exit_code).finish_non_exhaustive()
    }
}

impl fmt::Debug for StateSaveArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSaveArea").field("rip", &self.rip).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod zeroed {
    use super::*;

    impl Vmcb {
        /// Every field zero: nothing intercepted, no guest state (VMRUN would refuse it).
        pub(crate) const fn zeroed() -> Self {
            const NULL: Segment = Segment { selector: 0, attrib: 0, limit: 0, base: 0 };
            Vmcb {
                control: ControlArea {
                    intercept_cr: 0,
                    intercept_dr: 0,
                    intercept_exceptions: 0,
                    intercept_misc1: 0,
                    intercept_misc2: 0,
                    intercept_misc3: 0,
                    reserved_018: [0; 0x03C - 0x018],
                    pause_filter_threshold: 0,
                    pause_filter_count: 0,
                    iopm_base_pa: 0,
                    msrpm_base_pa: 0,
                    tsc_offset: 0,
                    guest_asid: 0,
                    tlb_control: 0,
                    reserved_05d: [0; 3],
                    virtual_interrupt: 0,
                    interrupt_shadow: 0,
                    exit_code: 0,
                    exit_info1: 0,
                    exit_info2: 0,
                    exit_int_info: 0,
                    np_control: 0,
                    avic_apic_bar: 0,
                    ghcb_pa: 0,
                    event_injection: 0,
                    ncr3: 0,
                    lbr_virtualization: 0,
                    vmcb_clean: 0,
                    next_rip: 0,
                    guest_instruction_len: 0,
                    guest_instruction_bytes: [0; 15],
                    reserved_0e0: [0; 0x400 - 0x0E0],
                },
                save: StateSaveArea {
                    es: NULL,
                    cs: NULL,
                    ss: NULL,
                    ds: NULL,
                    fs: NULL,
                    gs: NULL,
                    gdtr: NULL,
                    ldtr: NULL,
                    idtr: NULL,
                    tr: NULL,
                    reserved_0a0: [0; 0x0CB - 0x0A0],
                    cpl: 0,
                    reserved_0cc: 0,
                    efer: 0,
                    reserved_0d8: [0; 0x148 - 0x0D8],
                    cr4: 0,
                    cr3: 0,
                    cr0: 0,
                    dr7: 0,
                    dr6: 0,
                    rflags: 0,
                    rip: 0,
                    reserved_180: [0; 0x1D8 - 0x180],
                    rsp: 0,
                    s_cet: 0,
                    ssp: 0,
                    isst_addr: 0,
                    rax: 0,
                    star: 0,
                    lstar: 0,
                    cstar: 0,
                    sfmask: 0,
                    kernel_gs_base: 0,
                    sysenter_cs: 0,
                    sysenter_esp: 0,
                    sysenter_eip: 0,
                    cr2: 0,
                    reserved_248: [0; 0x268 - 0x248],
                    g_pat: 0,
                    dbgctl: 0,
                    br_from: 0,
                    br_to: 0,
                    last_excp_from: 0,
                    last_excp_to: 0,
                    reserved_298: [0; 0xC00 - 0x298],
                },
            }
        }
    }
}
