//! Test guests: a few bytes of 64-bit code in a five-page guest, for the boot self-test.
//!
//! Guest-physical layout (each page a frame of its own, mapped by the nested page table;
//! nothing else is mapped, so any other guest-physical access is a nested page fault):
//!
//! | GPA      | what                                                       |
//! | -------- | ---------------------------------------------------------- |
//! | `0x0000` | PML4: entry 0 -> PDPT                                      |
//! | `0x1000` | PDPT: entry 0 -> PD                                        |
//! | `0x2000` | PD: guest-virtual 0-1 GiB to guest-physical 0-1 GiB, 2 MiB pages |
//! | `0x3000` | code (the program), entry point                            |
//! | `0x4000` | stack, RSP starts at `0x5000`                              |
//! | `0x5000` | [`Options::data_pages`] data pages, if any ([`DATA`])      |
//!
//! The guest runs at CPL 0 in long mode with its own page tables (guest-virtual = guest-
//! physical over the first 1 GiB, 2 MiB pages) and no GDT or IDT: an exception in it becomes a
//! triple fault. Its page tables reach far beyond its memory on purpose: what it may touch is
//! decided by the nested page table alone, and hostile guests aim at addresses outside it.

use crate::mem::{self, PoolTables};
use crate::svm::vcpu::SvmVcpu;
use crate::svm::Svm;
use core::fmt;
use vpr_hypervisor::inspect::{Translate, Translation};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::svm::npt::{
    GuestPhysAddr, NestedPageTable, NptError, PageSize, Permissions, TlbFlush,
};
use vpr_hypervisor::svm::setup::LongModeGuest;
use vpr_hypervisor::vm::{self, GuestRegisters, HypercallAction, Hypercalls, Outcome};
use x86_64::PhysAddr;

mod programs;

pub use programs::{call, pal_image, program, PAL_SECRET, PATTERNS};

/// Guest-physical address of the guest's PML4.
const PML4: u64 = 0x0000;
/// Guest-physical address of its PDPT.
const PDPT: u64 = 0x1000;
/// Guest-physical address of its PD.
const PD: u64 = 0x2000;
/// Guest-physical (and virtual) address of the code page.
pub const CODE: u64 = 0x3000;
/// Guest-physical address of the stack page.
const STACK: u64 = 0x4000;
/// Guest-physical address of the first data page.
pub const DATA: u64 = 0x5000;
/// Pages of guest memory before the data pages.
const PAGES: u64 = 5;
/// Most data pages a test guest gets (32 MiB: room for a PAL image and its I/O).
const MAX_DATA_PAGES: u64 = 8192;

/// Guest page table bits (APM Vol. 2 §5.4): present, writable, and for the PD entry PS.
const PRESENT_WRITABLE: u64 = 0x3;
const HUGE: u64 = 0x80;

/// How to set up a test guest beyond its program.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The ASID (0 makes VMRUN refuse the guest).
    pub asid: u32,
    /// misc1 intercepts beyond the standard ones.
    pub extra_misc1: u32,
    /// Data pages after the stack, at [`DATA`].
    pub data_pages: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { asid: 1, extra_misc1: 0, data_pages: 0 }
    }
}

/// Why a test guest could not be built.
#[derive(Debug)]
pub enum GuestError {
    /// The program does not fit in its page.
    ProgramTooLarge(usize),
    /// No frames left.
    OutOfMemory,
    /// The nested page table refused a mapping.
    Npt(NptError),
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::ProgramTooLarge(n) => write!(f, "program of {n} bytes exceeds a page"),
            GuestError::OutOfMemory => write!(f, "out of frames"),
            GuestError::Npt(e) => write!(f, "{e}"),
        }
    }
}

/// A test guest's memory and the nested page table that maps it; dropping it gives every
/// frame back.
#[derive(Debug)]
pub struct GuestMemory {
    npt: Option<NestedPageTable>,
    tables: PoolTables,
    frames: PhysAddr,
    pages: u64,
}

impl GuestMemory {
    /// `PAGES + data_pages` zeroed pages, mapped at guest-physical 0, with the guest's page
    /// tables and `program` written in; also the proof that the nested page table changed.
    fn new(program: &[u8], data_pages: u64) -> Result<(Self, TlbFlush), GuestError> {
        if program.len() > mem::usize_of(PAGE_SIZE) {
            return Err(GuestError::ProgramTooLarge(program.len()));
        }
        let pages = PAGES + data_pages.min(MAX_DATA_PAGES);
        let frames = mem::allocate_zeroed(pages).ok_or(GuestError::OutOfMemory)?;
        let mut memory = GuestMemory { npt: None, tables: PoolTables::default(), frames, pages };
        let tables = &mut memory.tables;
        let npt = memory.npt.insert(NestedPageTable::new(tables).map_err(GuestError::Npt)?);
        let mut flush: Option<TlbFlush> = None;
        for page in 0..pages {
            let gpa = GuestPhysAddr::new(page * PAGE_SIZE);
            let frame = frames + page * PAGE_SIZE;
            let change = npt
                .map(tables, gpa, frame, PageSize::Size4K, Permissions::ALL)
                .map_err(GuestError::Npt)?;
            flush = Some(match flush {
                Some(earlier) => earlier.and(change),
                None => change,
            });
        }

        let mut entry = |gpa: u64, value: u64| memory.write(gpa, &value.to_le_bytes());
        let mut written = entry(PML4, PDPT | PRESENT_WRITABLE);
        written &= entry(PDPT, PD | PRESENT_WRITABLE);
        for i in 0..512 {
            written &= entry(PD + 8 * i, (i << 21) | HUGE | PRESENT_WRITABLE);
        }
        written &= memory.write(CODE, program);
        let flush = flush.ok_or(GuestError::OutOfMemory)?;
        if !written {
            return Err(GuestError::ProgramTooLarge(program.len()));
        }
        Ok((memory, flush))
    }

    /// The guest-physical range of its memory (all of it mapped by its nested page table).
    pub fn ram(&self) -> Range {
        Range::new(0, self.pages * PAGE_SIZE)
    }

    /// The guest's memory as bytes.
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `frames` are `pages` contiguous frames allocated for this guest alone and
        // freed only on drop; the guest does not run while the hypervisor holds this borrow
        // (the hypervisor runs only between exits and `&mut self` keeps the borrow unique).
        unsafe {
            core::slice::from_raw_parts_mut(
                mem::usize_of(self.frames.as_u64()) as *mut u8,
                mem::usize_of(self.pages * PAGE_SIZE),
            )
        }
    }

    /// Copies `data` to guest-physical `gpa`; `false` (nothing written) if it does not fit.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match self.slice(gpa, data.len()) {
            Some(at) => {
                self.bytes()[at].copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Copies guest-physical `gpa` into `out`; `false` (nothing read) if it is outside.
    pub fn read(&mut self, gpa: u64, out: &mut [u8]) -> bool {
        match self.slice(gpa, out.len()) {
            Some(at) => {
                out.copy_from_slice(&self.bytes()[at]);
                true
            }
            None => false,
        }
    }

    fn slice(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let end = gpa.checked_add(u64::try_from(len).ok()?)?;
        (end <= self.ram().end).then(|| mem::usize_of(gpa)..mem::usize_of(end))
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        if let Some(npt) = self.npt.take() {
            npt.destroy(&mut self.tables);
        }
        mem::free(self.frames, self.pages);
    }
}

/// A test guest: its memory, its nested page table and its vCPU. Dropping it gives every
/// frame back.
#[derive(Debug)]
pub struct TestGuest {
    /// The vCPU (the VMCB is reachable through it).
    pub vcpu: SvmVcpu,
    memory: GuestMemory,
}

impl TestGuest {
    /// A guest that will run `program` from [`CODE`].
    pub fn new(svm: &Svm, program: &[u8], options: Options) -> Result<Self, GuestError> {
        let (memory, flush) = GuestMemory::new(program, options.data_pages)?;
        let nested_root = memory.npt.as_ref().map(NestedPageTable::root);
        let setup = LongModeGuest {
            asid: options.asid,
            rip: CODE,
            rsp: STACK + PAGE_SIZE,
            cr3: PML4,
            nested_root: nested_root.ok_or(GuestError::OutOfMemory)?,
            iopm: svm.iopm,
            msrpm: svm.msrpm,
            extra_misc1: options.extra_misc1,
        };
        let mut vcpu = SvmVcpu::new(svm, &setup).ok_or(GuestError::OutOfMemory)?;
        vcpu.flush(flush);
        Ok(TestGuest { vcpu, memory })
    }

    /// Runs the guest until it finishes, halts or is killed.
    pub fn run<H: Hypercalls + ?Sized>(&mut self, calls: &mut H) -> Outcome {
        vm::run_isolated(&mut self.vcpu, calls)
    }

    /// Runs the guest like [`TestGuest::run`], giving the handler the guest's memory too.
    pub fn run_with_memory(
        &mut self,
        mut calls: impl FnMut(&mut GuestRegisters, &mut GuestMemory) -> HypercallAction,
    ) -> Outcome {
        let memory = &mut self.memory;
        vm::run_isolated(&mut self.vcpu, &mut |r: &mut GuestRegisters| calls(r, memory))
    }

    /// The guest's memory (while it does not run).
    pub fn memory(&mut self) -> &mut GuestMemory {
        &mut self.memory
    }

    /// Where the nested page table sends `gpa`.
    pub fn translate(&mut self, gpa: u64) -> Option<Translation> {
        let memory = &mut self.memory;
        memory.npt.as_ref()?.translate(&mut memory.tables, GuestPhysAddr::new(gpa))
    }
}

impl crate::pal::GuestAccess for GuestMemory {
    fn window(&self) -> vpr_hypervisor::memory::Range {
        self.ram()
    }

    fn owner(&self) -> u64 {
        0
    }

    fn read(&mut self, addr: u64, out: &mut [u8]) -> bool {
        GuestMemory::read(self, addr, out)
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        GuestMemory::write(self, addr, bytes)
    }
}
