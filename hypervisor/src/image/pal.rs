//! PALs: their frames, nested page tables and runs, and the guest's hypercalls that drive
//! them (the ABI of `vpr_proto::hypercall`, vetted by `vpr_hypervisor::pal`).
//!
//! A PAL's frames come from the pool in one contiguous allocation; only the PAL's own nested
//! page table maps them, and a guest's never does (guests are mapped from frames of their
//! own), so a guest cannot name a PAL's memory. A PAL runs in a VMCB of its own (ASID
//! [`PAL_ASID`]), made for each execution and wiped afterwards; its registers never reach the
//! guest, whose own are restored by the world switch.

use crate::guest::GuestMemory;
use crate::mem::{self, PoolTables};
use crate::svm::vcpu::SvmVcpu;
use crate::svm::Svm;
use crate::tsc;
use vpr_hypervisor::memory::PAGE_SIZE;
use vpr_hypervisor::pal::{
    layout, total_pages, PalCall, Region, RegionKind, Registry, Request, PAGE_TABLES_GPA,
};
use vpr_hypervisor::svm::npt::{GuestPhysAddr, NestedPageTable, PageSize};
use vpr_hypervisor::svm::setup::LongModeGuest;
use vpr_hypervisor::vm::{self, GuestRegisters, HypercallAction, Outcome};
use vpr_proto::hypercall::{pal, RegisterOut, Status, ABI_VERSION, MAX_PALS};
use vpr_proto::Digest;
use x86_64::PhysAddr;

/// The ASID PALs run with (the test guests use 1).
pub const PAL_ASID: u32 = 2;

/// Guest page table bits (APM Vol. 2 §5.4): present, writable; PS in the PD entry.
const PRESENT_WRITABLE: u64 = 0x3;
const HUGE: u64 = 0x80;

/// A registered PAL. Dropping it zeroes its frames and gives them back.
#[derive(Debug)]
pub struct Pal {
    frames: PhysAddr,
    pages: u64,
    regions: [Region; 6],
    npt: Option<NestedPageTable>,
    tables: PoolTables,
    /// SHA-256 of its image: its identity.
    pub measurement: Digest,
}

impl Pal {
    /// Frames and a nested page table for a PAL of `image_len` bytes, its page tables
    /// written; the image is not yet copied in.
    fn new(image_len: u64) -> Result<Pal, Status> {
        let regions = layout(image_len)?;
        let pages = total_pages(&regions);
        let frames = mem::allocate_zeroed(pages).ok_or(Status::NoMemory)?;
        let mut pal = Pal {
            frames,
            pages,
            regions,
            npt: None,
            tables: PoolTables::default(),
            measurement: Digest::default(),
        };
        let npt = NestedPageTable::new(&mut pal.tables).map_err(|_| Status::NoMemory)?;
        let npt = pal.npt.insert(npt);
        for region in &regions {
            for page in 0..region.pages {
                let gpa = GuestPhysAddr::new(region.gpa + page * PAGE_SIZE);
                let frame = frames + (region.first_page + page) * PAGE_SIZE;
                // Each PAL gets a fresh vCPU that flushes the TLB on its first VMRUN
                // (`LongModeGuest::write_to`), so the flush is taken care of.
                let _flush = npt
                    .map(&mut pal.tables, gpa, frame, PageSize::Size4K, region.permissions)
                    .map_err(|_| Status::NoMemory)?;
            }
        }
        let tables = pal.region(RegionKind::PageTables);
        let mut entry = |gpa: u64, value: u64| {
            let at = mem::usize_of(gpa - PAGE_TABLES_GPA);
            tables[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        entry(PAGE_TABLES_GPA, (PAGE_TABLES_GPA + 0x1000) | PRESENT_WRITABLE);
        entry(PAGE_TABLES_GPA + 0x1000, (PAGE_TABLES_GPA + 0x2000) | PRESENT_WRITABLE);
        entry(PAGE_TABLES_GPA + 0x2000, HUGE | PRESENT_WRITABLE);
        Ok(pal)
    }

    /// The frames of the region of `kind`.
    fn region(&mut self, kind: RegionKind) -> &mut [u8] {
        let region = self.regions.iter().find(|r| r.kind == kind).copied();
        let Some(region) = region else { return &mut [] };
        let start = self.frames.as_u64() + region.first_page * PAGE_SIZE;
        // SAFETY: the region's pages lie inside this PAL's allocation (`layout` numbers them
        // within `total_pages`), which it owns alone until drop; the PAL does not run while
        // the hypervisor holds this borrow, and `&mut self` keeps it unique.
        unsafe {
            core::slice::from_raw_parts_mut(
                mem::usize_of(start) as *mut u8,
                mem::usize_of(region.pages * PAGE_SIZE),
            )
        }
    }

    /// The host-physical frames it owns.
    pub fn frames(&self) -> (PhysAddr, u64) {
        (self.frames, self.pages)
    }

    /// Runs the PAL once on the input already in its input page; the output length on a
    /// clean finish, the kill report otherwise.
    fn run(&mut self, svm: &Svm, in_len: u64, out_cap: u64) -> Result<u64, RunError> {
        let nested_root = self.npt.as_ref().map(NestedPageTable::root).ok_or(RunError::Memory)?;
        let setup = LongModeGuest {
            asid: PAL_ASID,
            rip: pal::CODE_BASE,
            rsp: pal::STACK_TOP,
            cr3: PAGE_TABLES_GPA,
            nested_root,
            iopm: svm.iopm,
            msrpm: svm.msrpm,
            extra_misc1: 0,
        };
        let mut vcpu = SvmVcpu::new(svm, &setup).ok_or(RunError::Memory)?;
        *vm::Vcpu::registers(&mut vcpu) = GuestRegisters {
            rdi: pal::INPUT_BASE,
            rsi: in_len,
            rdx: pal::OUTPUT_BASE,
            rcx: out_cap,
            ..GuestRegisters::default()
        };
        let mut done = None;
        let outcome = vm::run(&mut vcpu, &mut |r: &mut GuestRegisters| match PalCall::decode(r) {
            PalCall::Done { len } => {
                done = Some(len);
                HypercallAction::Finish
            }
            PalCall::Answer(status) => {
                r.rax = status.as_u64();
                HypercallAction::Resume
            }
        });
        // Dropping the vCPU wipes its registers and VMCB: nothing of the PAL's state leaves.
        drop(vcpu);
        match (outcome, done) {
            (Outcome::Finished, Some(len)) => Ok(len),
            (outcome, _) => Err(RunError::Killed(outcome)),
        }
    }
}

/// Why a PAL's run failed.
#[derive(Debug)]
enum RunError {
    /// No frames for its vCPU.
    Memory,
    /// It faulted or stopped without saying it was done.
    Killed(Outcome),
}

impl Drop for Pal {
    fn drop(&mut self) {
        if let Some(npt) = self.npt.take() {
            npt.destroy(&mut self.tables);
        }
        for kind in [
            RegionKind::PageTables,
            RegionKind::Code,
            RegionKind::Data,
            RegionKind::Stack,
            RegionKind::Input,
            RegionKind::Output,
        ] {
            self.region(kind).fill(0);
        }
        mem::free(self.frames, self.pages);
    }
}

/// The PAL registry and the guest's hypercalls.
#[derive(Debug)]
pub struct Pals<'a> {
    svm: &'a Svm,
    registry: Registry<Pal>,
    /// TSC ticks the last successful register took, its log line not included.
    pub register_ticks: u64,
}

impl<'a> Pals<'a> {
    /// No PAL yet.
    pub fn new(svm: &'a Svm) -> Self {
        Pals { svm, registry: Registry::new(MAX_PALS), register_ticks: 0 }
    }

    /// The frames of PAL `handle`, if it is registered.
    pub fn frames(&mut self, handle: u64) -> Option<(PhysAddr, u64)> {
        self.registry.get_mut(handle).ok().map(|pal| pal.frames())
    }

    /// Handles one guest hypercall: status in RAX, result in RBX; the guest resumes.
    pub fn hypercall(
        &mut self,
        r: &mut GuestRegisters,
        guest: &mut GuestMemory,
    ) -> HypercallAction {
        let ram = [guest.ram()];
        let result = Request::decode(r, &ram).and_then(|request| self.handle(request, guest));
        match result {
            Ok(value) => {
                r.rax = Status::Ok.as_u64();
                r.rbx = value;
            }
            Err(status) => r.rax = status.as_u64(),
        }
        HypercallAction::Resume
    }

    fn handle(&mut self, request: Request, guest: &mut GuestMemory) -> Result<u64, Status> {
        match request {
            Request::Version => Ok(ABI_VERSION),
            Request::Register { image, out } => {
                let start = tsc::read();
                let mut pal = Pal::new(image.len())?;
                let code = &mut pal.region(RegionKind::Code)[..mem::usize_of(image.len())];
                if !guest.read(image.start, code) {
                    return Err(Status::BadPointer);
                }
                // Measured from the hypervisor's copy, which the guest can no longer change.
                let measurement = Digest::of(code);
                pal.measurement = measurement;
                let handle = self.registry.insert(pal)?;
                let result = RegisterOut { handle, measurement: measurement.0 };
                if !guest.write(out.start, &result.to_bytes()) {
                    drop(self.registry.remove(handle));
                    return Err(Status::BadPointer);
                }
                self.register_ticks = tsc::read() - start;
                log::info!(
                    "pal: registered handle={handle:#x} identity={measurement} ({} bytes)",
                    image.len()
                );
                Ok(handle)
            }
            Request::Execute { handle, input, output, out_len } => {
                let pal = self.registry.get_mut(handle)?;
                let in_len = mem::usize_of(input.len());
                let in_page = pal.region(RegionKind::Input);
                in_page.fill(0);
                if !guest.read(input.start, &mut in_page[..in_len]) {
                    return Err(Status::BadPointer);
                }
                pal.region(RegionKind::Output).fill(0);
                let len = match pal.run(self.svm, input.len(), output.len()) {
                    Ok(len) => len,
                    Err(RunError::Memory) => return Err(Status::NoMemory),
                    Err(RunError::Killed(outcome)) => {
                        match outcome {
                            Outcome::Killed(reason) => {
                                log::info!("pal: handle={handle:#x} killed: {reason}");
                            }
                            _ => log::info!("pal: handle={handle:#x} killed: hlt"),
                        }
                        drop(self.registry.remove(handle));
                        return Err(Status::PalFault);
                    }
                };
                if len > output.len() {
                    return Err(Status::TooLarge);
                }
                let bytes = &pal.region(RegionKind::Output)[..mem::usize_of(len)];
                if !guest.write(output.start, bytes)
                    || !guest.write(out_len.start, &len.to_le_bytes())
                {
                    return Err(Status::BadPointer);
                }
                Ok(len)
            }
            Request::Unregister { handle } => {
                drop(self.registry.remove(handle)?);
                log::info!("pal: unregistered handle={handle:#x}");
                Ok(0)
            }
        }
    }
}

impl Drop for Pals<'_> {
    fn drop(&mut self) {
        drop(self.registry.drain());
    }
}
