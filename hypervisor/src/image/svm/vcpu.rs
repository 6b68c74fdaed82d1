//! A vCPU on SVM: its VMCB, the page for the host's VMLOAD/VMSAVE state, and the guest's
//! general-purpose registers.

use super::{vmrun, Svm};
use crate::mem;
use vpr_hypervisor::memory::PAGE_SIZE;
#[cfg(feature = "selftest")]
use vpr_hypervisor::svm::npt::TlbFlush;
use vpr_hypervisor::svm::setup::LongModeGuest;
use vpr_hypervisor::svm::vmcb::Vmcb;
use vpr_hypervisor::svm::{exit, VMMCALL_LEN};
use vpr_hypervisor::vm::{GuestRegisters, Vcpu, VmExit};
use x86_64::PhysAddr;

/// One guest vCPU. Its frames go back to the pool when it is dropped.
#[derive(Debug)]
pub struct SvmVcpu {
    vmcb: PhysAddr,
    host_state: PhysAddr,
    registers: GuestRegisters,
    flush_pending: bool,
    nrip_save: bool,
}

impl SvmVcpu {
    /// A vCPU that starts `guest`; `None` if no frames are left.
    pub fn new(svm: &Svm, guest: &LongModeGuest) -> Option<Self> {
        SvmVcpu::with_setup(svm, |vmcb| guest.write_to(vmcb))
    }

    /// A vCPU whose zeroed VMCB `setup` fills in; `None` if no frames are left.
    pub fn with_setup(svm: &Svm, setup: impl FnOnce(&mut Vmcb)) -> Option<Self> {
        let vmcb = mem::allocate_zeroed(1)?;
        let Some(host_state) = mem::allocate_zeroed(1) else {
            mem::free(vmcb, 1);
            return None;
        };
        let mut vcpu = SvmVcpu {
            vmcb,
            host_state,
            registers: GuestRegisters::default(),
            flush_pending: false,
            nrip_save: svm.nrip_save,
        };
        setup(vcpu.vmcb());
        Some(vcpu)
    }

    /// The VMCB (hardware reads and writes it during VMRUN only).
    pub fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: the frame was allocated zeroed for this vCPU alone (an all-zero VMCB is a
        // valid value of the type) and is freed only on drop; `&mut self` makes the borrow
        // exclusive.
        unsafe { mem::frame_mut(self.vmcb) }
    }

    #[cfg(feature = "selftest")]
    /// Makes the next VMRUN flush the TLB, after a nested page table change.
    pub fn flush(&mut self, _change: TlbFlush) {
        self.flush_pending = true;
    }
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> VmExit {
        let (rax, flush) = (self.registers.rax, core::mem::take(&mut self.flush_pending));
        let vmcb = self.vmcb();
        vmcb.save.rax = rax;
        vmcb.control.next_rip = 0;
        if flush {
            // Flush all ASIDs: TCG has no flush-by-ASID (APM §15.16.1).
            vmcb.control.tlb_control = 1;
        }
        // SAFETY: the VMCB was set up by `LongModeGuest::write_to` with a nested page table
        // that maps only the guest's own frames, the host state page is this vCPU's, SVM was
        // enabled by `Svm::enable` (the only way to get the `Svm` this vCPU was made with),
        // and the hypervisor runs at CPL 0 with interrupts off.
        unsafe {
            vmrun::world_switch(self.vmcb.as_u64(), self.host_state.as_u64(), &mut self.registers)
        };
        let vmcb = self.vmcb();
        vmcb.control.tlb_control = 0;
        let rax = vmcb.save.rax;
        let exit = exit::normalize(&vmcb.control);
        self.registers.rax = rax;
        exit
    }

    fn registers(&mut self) -> &mut GuestRegisters {
        &mut self.registers
    }

    fn skip_hypercall(&mut self) {
        // QEMU's TCG saves no nRIP, and VMMCALL is 3 bytes.
        self.skip(VMMCALL_LEN);
    }

    fn hold_nmi(&mut self) {
        if !super::take_pending_nmi() {
            log::warn!("hv: an NMI exit, but no NMI came when GIF was set");
        }
    }

    fn take_smi(&mut self) {
        super::take_pending_smi();
    }

    /// Moves the guest past the `len`-byte instruction that caused the last exit (the
    /// processor's nRIP when it saves one, APM §15.7.1).
    fn skip(&mut self, len: u64) {
        let nrip_save = self.nrip_save;
        let vmcb = self.vmcb();
        vmcb.save.rip = if nrip_save && vmcb.control.next_rip != 0 {
            vmcb.control.next_rip
        } else {
            vmcb.save.rip + len
        };
    }

    /// Makes the next VMRUN deliver the event `eventinj` (APM §15.20) to the guest.
    fn inject(&mut self, eventinj: u64) {
        self.vmcb().control.event_injection = eventinj;
    }

    fn rip(&mut self) -> u64 {
        self.vmcb().save.rip
    }

    fn efer(&mut self) -> u64 {
        self.vmcb().save.efer
    }

    fn set_efer(&mut self, value: u64) {
        self.vmcb().save.efer = value;
    }
}

impl Drop for SvmVcpu {
    /// Wipes the guest's state before the frames go back: its registers here, its VMCB (RAX,
    /// RSP, RIP, control registers, the segment state VMSAVE stored) and the host-state page.
    /// A PAL's secrets must not survive it in frames the pool hands out again.
    fn drop(&mut self) {
        self.registers = GuestRegisters::default();
        for frame in [self.vmcb, self.host_state] {
            // SAFETY: both frames were allocated for this vCPU alone and are not in use (no
            // VMRUN runs during drop); they are identity-mapped pages.
            unsafe {
                core::ptr::write_bytes(
                    mem::usize_of(frame.as_u64()) as *mut u8,
                    0,
                    mem::usize_of(PAGE_SIZE),
                )
            };
        }
        mem::free(self.vmcb, 1);
        mem::free(self.host_state, 1);
    }
}
