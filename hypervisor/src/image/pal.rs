//! PALs: their frames, nested page tables and runs, and the guest's hypercalls that drive
//! them (the ABI of `vpr_proto::hypercall`, vetted by `vpr_hypervisor::pal`).
//!
//! A PAL's frames come from the pool in one contiguous allocation; only the PAL's own nested
//! page table maps them, and a guest's never does (guests are mapped from frames of their
//! own), so a guest cannot name a PAL's memory. A PAL runs in a VMCB of its own (ASID
//! [`PAL_ASID`]), made for each execution and wiped afterwards; its registers never reach the
//! guest, whose own are restored by the world switch, and its x87/SSE state is replaced by
//! the guest's on the way out (`cpu.rs`).
//!
//! `register` copies the image out of the guest, measures the copy, checks it as an ELF
//! executable (`vpr_hypervisor::elf`) and copies its segments into the PAL's frames;
//! during a run the PAL may call the services of `pal::Service` (random bytes, its identity,
//! its trusted counters).

use crate::cpu::{self, FpuState};
use crate::mem::{self, OwnedFrames, PoolTables};
use crate::svm::vcpu::SvmVcpu;
use crate::svm::Svm;
use crate::tcc::Tcc;
use crate::tsc;
#[cfg(feature = "selftest")]
use alloc::format;
#[cfg(feature = "selftest")]
use alloc::string::String;
use alloc::vec::Vec;
use vpr_hypervisor::elf;
#[cfg(feature = "selftest")]
use vpr_hypervisor::inspect::Translate;
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::pal::{
    layout, total_pages, writable, Counters, PalCall, Region, RegionKind, Registry, Request,
    IMAGE_LIMITS, PAGE_TABLES_GPA,
};
use vpr_hypervisor::svm::npt::{GuestPhysAddr, NestedPageTable, PageSize};
use vpr_hypervisor::svm::setup::LongModeGuest;
use vpr_hypervisor::vm::{self, GuestRegisters, HypercallAction, Outcome};
use vpr_proto::hypercall::pal::{self, Service};
use vpr_proto::hypercall::{RegisterOut, Status, ABI_VERSION, MAX_IO_LEN, MAX_PALS};
use vpr_proto::utpm::{self, Upcrs};
use vpr_proto::Digest;
#[cfg(feature = "selftest")]
use x86_64::PhysAddr;

/// The ASID PALs run with (the test guests use 1).
pub const PAL_ASID: u32 = 2;

/// Guest page table bits (APM Vol. 2 §5.4): present, writable; PS in the PD entry.
const PRESENT_WRITABLE: u64 = 0x3;
const HUGE: u64 = 0x80;
/// 2 MiB, the size of a PD entry's page.
const HUGE_PAGE: u64 = 2 << 20;

/// A registered PAL. Dropping it zeroes its frames and gives them back.
#[derive(Debug)]
pub struct Pal {
    frames: OwnedFrames,
    regions: Vec<Region>,
    npt: Option<NestedPageTable>,
    tables: PoolTables,
    entry: u64,
    /// SHA-256 of its image: its identity.
    pub measurement: Digest,
    /// Bytes of the input page the last execution used (zeroed before the next).
    input_used: u64,
    /// Bytes of the output page the last execution claimed.
    output_used: u64,
    /// Its uPCRs (`vpr_proto::utpm`): uPCR 0 holds its identity.
    upcrs: Upcrs,
    /// The address space that registered it ([`GuestAccess::owner`]): the only one that may
    /// execute or unregister it.
    owner: u64,
}

impl Pal {
    /// Frames, page tables and a nested page table for a checked `image`, its segments
    /// copied in.
    fn new(image: &[u8], measurement: Digest) -> Result<Pal, Status> {
        let checked = elf::parse(image, &IMAGE_LIMITS).map_err(|e| {
            log::info!("pal: image refused: {e}");
            Status::BadImage
        })?;
        let regions = layout(&checked);
        let frames = OwnedFrames::allocate(total_pages(&regions)).ok_or(Status::NoMemory)?;
        let mut pal = Pal {
            frames,
            regions,
            npt: None,
            tables: PoolTables::default(),
            entry: checked.entry,
            measurement,
            input_used: 0,
            output_used: 0,
            upcrs: Upcrs::new(&measurement.0),
            owner: 0,
        };
        let first = pal.frames.first();
        let npt = NestedPageTable::new(&mut pal.tables).map_err(|_| Status::NoMemory)?;
        let npt = pal.npt.insert(npt);
        for region in &pal.regions {
            for page in 0..region.pages {
                let gpa = GuestPhysAddr::new(region.gpa + page * PAGE_SIZE);
                let frame = first + (region.first_page + page) * PAGE_SIZE;
                // Each PAL gets a fresh vCPU that flushes the TLB on its first VMRUN
                // (`LongModeGuest::write_to`), so the flush is taken care of.
                let _flush = npt
                    .map(&mut pal.tables, gpa, frame, PageSize::Size4K, region.permissions)
                    .map_err(|_| Status::NoMemory)?;
            }
        }
        // Its page tables: PML4[0] -> PDPT, PDPT[0] -> PD, PD: the first GiB in 2 MiB pages.
        let tables = pal.region(RegionKind::PageTables);
        let mut entry = |gpa: u64, value: u64| {
            let at = mem::usize_of(gpa - PAGE_TABLES_GPA);
            tables[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        entry(PAGE_TABLES_GPA, (PAGE_TABLES_GPA + 0x1000) | PRESENT_WRITABLE);
        entry(PAGE_TABLES_GPA + 0x1000, (PAGE_TABLES_GPA + 0x2000) | PRESENT_WRITABLE);
        for i in 0..512 {
            entry(PAGE_TABLES_GPA + 0x2000 + 8 * i, (i * HUGE_PAGE) | HUGE | PRESENT_WRITABLE);
        }
        for (i, segment) in checked.segments.iter().enumerate() {
            let Some(region) = pal.regions.iter().find(|r| r.kind == RegionKind::Segment(i)) else {
                return Err(Status::BadImage);
            };
            let gpa = region.gpa;
            // Only the pages that hold file bytes: the rest (`.bss`) is zero already, as
            // every frame of the allocation is.
            let file_end = segment.vaddr + segment.file_len;
            let bytes = pal.region(RegionKind::Segment(i));
            for (page, frame) in bytes.chunks_exact_mut(mem::usize_of(PAGE_SIZE)).enumerate() {
                let page_gpa = gpa + page as u64 * PAGE_SIZE;
                if page_gpa >= file_end {
                    break;
                }
                elf::fill_page(image, segment, page_gpa, frame).map_err(|_| Status::BadImage)?;
            }
        }
        Ok(pal)
    }

    /// The frames of the region of `kind`.
    fn region(&mut self, kind: RegionKind) -> &mut [u8] {
        let Some(region) = self.regions.iter().find(|r| r.kind == kind).copied() else {
            return &mut [];
        };
        let start = mem::usize_of(region.first_page * PAGE_SIZE);
        let len = mem::usize_of(region.pages * PAGE_SIZE);
        &mut self.frames.bytes_mut()[start..start + len]
    }

    /// The PAL's own bytes at `range` (one that [`writable`] or the layout vouched for).
    fn at(&mut self, range: Range) -> Option<&mut [u8]> {
        let region = self
            .regions
            .iter()
            .find(|r| r.span().start <= range.start && range.end <= r.span().end)?;
        let start = mem::usize_of(region.first_page * PAGE_SIZE + (range.start - region.gpa));
        self.frames.bytes_mut().get_mut(start..start + mem::usize_of(range.len()))
    }

    #[cfg(feature = "selftest")]
    /// The host-physical frames it owns.
    pub fn frames(&self) -> (PhysAddr, u64) {
        (self.frames.first(), self.frames.count())
    }

    /// Runs the PAL once on the input already in its input page; the output length on a
    /// clean finish, the kill report otherwise. The guest's x87/SSE state is saved before
    /// and restored after, so the PAL neither sees it nor leaves anything in it.
    fn run(
        &mut self,
        svm: &Svm,
        tcc: &Tcc,
        counters: &mut CounterStore,
        in_len: u64,
        out_cap: u64,
    ) -> Result<u64, RunError> {
        let nested_root = self.npt.as_ref().map(NestedPageTable::root).ok_or(RunError::Memory)?;
        let setup = LongModeGuest {
            asid: PAL_ASID,
            rip: self.entry,
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
        let guest_fpu = FpuState::save();
        FpuState::clean().restore();
        let mut done = None;
        let outcome =
            vm::run_isolated(&mut vcpu, &mut |r: &mut GuestRegisters| match PalCall::decode(r) {
                PalCall::Done { len } => {
                    done = Some(len);
                    HypercallAction::Finish
                }
                PalCall::Service { service, args } => {
                    (r.rax, r.rbx) = match self.service(tcc, counters, service, args) {
                        Ok(value) => (Status::Ok.as_u64(), value),
                        Err(status) => (status.as_u64(), 0),
                    };
                    HypercallAction::Resume
                }
                PalCall::Answer(status) => {
                    r.rax = status.as_u64();
                    HypercallAction::Resume
                }
            });
        guest_fpu.restore();
        // Dropping the vCPU wipes its registers and VMCB: nothing of the PAL's state leaves.
        drop(vcpu);
        match (outcome, done) {
            (Outcome::Finished, Some(len)) => Ok(len),
            (outcome, _) => Err(RunError::Killed(outcome)),
        }
    }

    /// One of the PAL's service calls (`pal::Service`); its value for RBX.
    fn service(
        &mut self,
        tcc: &Tcc,
        counters: &mut CounterStore,
        service: Service,
        args: [u64; 4],
    ) -> Result<u64, Status> {
        let [a, b, c, d] = args;
        let identity = self.measurement.0;
        match service {
            Service::Random => {
                if b > pal::MAX_RANDOM_LEN {
                    return Err(Status::TooLarge);
                }
                let out = self.writable(a, b)?;
                cpu::random(out)?;
                Ok(0)
            }
            Service::Identity => {
                self.writable(a, 32)?.copy_from_slice(&identity);
                Ok(0)
            }
            Service::CounterRead | Service::CounterIncrement => {
                let mut name = [0; 32];
                name.copy_from_slice(self.writable(a, 32)?);
                if service == Service::CounterRead {
                    counters.read(tcc, &identity, &name)
                } else {
                    counters.increment(tcc, &identity, &name)
                }
            }
            Service::Attest => {
                let mut data = [0; 32];
                data.copy_from_slice(self.writable(a, 32)?);
                let evidence =
                    tcc.keys()?.attest(tcc.certificate(), Digest(identity), Digest(data));
                self.writable(b, pal::ATTESTATION_LEN)?.copy_from_slice(&evidence);
                Ok(0)
            }
            Service::Quote => {
                let input: [u8; 64] = self
                    .writable(a, pal::QUOTE_INPUT_LEN)?
                    .try_into()
                    .map_err(|_| Status::BadPointer)?;
                let selection = u8::try_from(b)
                    .ok()
                    .filter(|&s| u64::from(s) < 1 << pal::UPCRS)
                    .ok_or(Status::BadArgument)?;
                let hypervisor = tcc.hypervisor_measurement();
                let quote =
                    tcc.keys()?.quote(&hypervisor, &input, selection, &self.upcrs).to_bytes();
                let len = quote.len() as u64;
                if len > d {
                    return Err(Status::TooLarge);
                }
                self.writable(c, len)?.copy_from_slice(&quote);
                Ok(len)
            }
            Service::PcrRead => {
                let value = usize::try_from(a)
                    .ok()
                    .and_then(|i| self.upcrs.read(i))
                    .ok_or(Status::BadArgument)?;
                self.writable(b, 32)?.copy_from_slice(&value);
                Ok(0)
            }
            Service::PcrExtend => {
                let index = usize::try_from(a)
                    .ok()
                    .filter(|&i| i < utpm::UPCRS)
                    .ok_or(Status::BadArgument)?;
                let mut digest = [0; 32];
                digest.copy_from_slice(self.writable(b, 32)?);
                self.upcrs.extend(index, &digest).ok_or(Status::BadArgument)?;
                Ok(0)
            }
            Service::Seal | Service::Unseal => {
                if b > pal::MAX_SEAL_LEN + pal::SEAL_OVERHEAD
                    || (service == Service::Seal && b > pal::MAX_SEAL_LEN)
                {
                    return Err(Status::TooLarge);
                }
                let input = self.writable(a, b)?.to_vec();
                let keys = tcc.keys()?;
                let output = if service == Service::Seal {
                    let mut nonce = [0; 12];
                    cpu::random(&mut nonce)?;
                    keys.seal(&identity, nonce, &input)
                } else {
                    keys.unseal(&identity, &input).ok_or(Status::Refused)?
                };
                let len = output.len() as u64;
                if len > d {
                    return Err(Status::TooLarge);
                }
                self.writable(c, len)?.copy_from_slice(&output);
                Ok(len)
            }
        }
    }

    /// The PAL's own memory at `[ptr, ptr + len)`, if the PAL may write all of it.
    fn writable(&mut self, ptr: u64, len: u64) -> Result<&mut [u8], Status> {
        let range = writable(&self.regions, ptr, len)?;
        self.at(range).ok_or(Status::BadPointer)
    }
}

/// Where the PAL counters of one registry live (the rest of the TCC's state is the boot's
/// [`Tcc`]).
#[derive(Debug)]
pub enum CounterStore {
    /// Counters in hypervisor memory: they outlive a PAL's registration, not a reboot (and
    /// each registry has its own, as separate machines' TCCs would).
    Memory(Counters),
    /// Counters in the TPM's NV memory (`tpm.rs`): they survive reboots.
    Tpm,
}

impl CounterStore {
    fn read(&mut self, tcc: &Tcc, identity: &[u8; 32], name: &[u8; 32]) -> Result<u64, Status> {
        match self {
            CounterStore::Memory(counters) => Ok(counters.read(identity, name)),
            CounterStore::Tpm => tcc.counter_read(&pal::counter_id(identity, name)),
        }
    }

    fn increment(
        &mut self,
        tcc: &Tcc,
        identity: &[u8; 32],
        name: &[u8; 32],
    ) -> Result<u64, Status> {
        match self {
            CounterStore::Memory(counters) => counters.increment(identity, name),
            CounterStore::Tpm => tcc.counter_increment(&pal::counter_id(identity, name)),
        }
    }
}

/// `bytes` into the guest's `out` (its capacity) and their length into `out_len`; the length.
fn write_out(
    guest: &mut dyn GuestAccess,
    out: Range,
    out_len: Range,
    bytes: &[u8],
) -> Result<u64, Status> {
    let len = bytes.len() as u64;
    if len > out.len() {
        return Err(Status::TooLarge);
    }
    if !guest.write(out.start, bytes) || !guest.write(out_len.start, &len.to_le_bytes()) {
        return Err(Status::BadPointer);
    }
    Ok(len)
}

/// Median TSC ticks, over `runs`, of what the Seal, Unseal, Attest and Quote services do once
/// their arguments are checked (64 bytes sealed; one signature; a uTPM quote of uPCR 0), for
/// the self-test's cost report.
#[cfg(feature = "selftest")]
pub fn key_operation_ticks(tcc: &Tcc, runs: usize) -> Result<[u64; 4], Status> {
    let keys = tcc.keys()?;
    let identity = [0x5A; 32];
    let data = [0xA5; 64];
    let blob = keys.seal(&identity, [1; 12], &data);
    let seal = tsc::median(runs, || {
        core::hint::black_box(keys.seal(&identity, [2; 12], &data));
        Ok::<(), Status>(())
    })?;
    let unseal = tsc::median(runs, || {
        core::hint::black_box(keys.unseal(&identity, &blob));
        Ok::<(), Status>(())
    })?;
    let attest = tsc::median(runs, || {
        core::hint::black_box(keys.attest(None, Digest(identity), Digest([3; 32])));
        Ok::<(), Status>(())
    })?;
    let upcrs = Upcrs::new(&identity);
    let quote = tsc::median(runs, || {
        core::hint::black_box(keys.quote(&[0; 32], &[4; 64], 1, &upcrs));
        Ok::<(), Status>(())
    })?;
    Ok([seal, unseal, attest, quote])
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
        // `frames` wipes itself when it goes back to the pool.
    }
}

/// A guest's memory as the hypercalls reach it: the test guests' by guest-physical address,
/// a Linux guest's processes' by guest-virtual address through their page tables.
pub trait GuestAccess {
    /// Where the guest's pointers must lie (checked before any access).
    fn window(&self) -> Range;
    /// Which address space of the guest calls (a Linux process: the physical address of its
    /// page-table root; a test guest: 0). PAL handles belong to the one that registered them.
    fn owner(&self) -> u64;
    /// Copies the guest's bytes at `addr` into `out`; `false` (an unusable pointer) if any
    /// byte is out of its reach.
    fn read(&mut self, addr: u64, out: &mut [u8]) -> bool;
    /// Copies `bytes` to the guest at `addr`; `false` if any byte is out of its reach (what
    /// was written before the failing page may stay).
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool;
}

/// The PAL registry and the guest's hypercalls.
#[derive(Debug)]
pub struct Pals<'a> {
    svm: &'a Svm,
    /// The TCC's state behind the PAL services: the boot's.
    tcc: &'a Tcc,
    registry: Registry<Pal>,
    /// Where the PALs' counters live, for as long as this registry lives (a machine's
    /// hypervisor has one registry; the self-test makes several, as several machines'
    /// TCCs).
    counters: CounterStore,
    /// TSC ticks the last successful register took, its log line not included.
    pub register_ticks: u64,
    /// The address space whose `activate` last succeeded: the only one that may `certify`.
    activator: Option<u64>,
}

impl<'a> Pals<'a> {
    #[cfg(feature = "selftest")]
    /// No PAL yet; the PALs' counters in memory, this registry's own.
    pub fn new(svm: &'a Svm, tcc: &'a Tcc) -> Self {
        Pals::with_counters(svm, tcc, CounterStore::Memory(Counters::default()))
    }

    /// No PAL yet; the PALs' counters live in `counters`.
    pub fn with_counters(svm: &'a Svm, tcc: &'a Tcc, counters: CounterStore) -> Self {
        Pals {
            svm,
            tcc,
            registry: Registry::new(MAX_PALS),
            counters,
            register_ticks: 0,
            activator: None,
        }
    }

    #[cfg(feature = "selftest")]
    /// How many PALs are registered.
    pub fn registered(&self) -> usize {
        self.registry.len()
    }

    #[cfg(feature = "selftest")]
    /// Checks PAL `handle`'s nested page table against its plan, from outside the PAL: every
    /// page of every region maps the frame the plan gives it, inside the PAL's allocation,
    /// with the region's permissions; no page is writable and executable; and no 2 MiB
    /// boundary of the first 4 GiB outside the regions maps anything. Returns the pages
    /// checked.
    pub fn audit(&mut self, handle: u64) -> Result<u64, String> {
        let pal = self.registry.get_mut(handle).map_err(|s| format!("handle: {s}"))?;
        let npt = pal.npt.as_ref().ok_or("the PAL has no nested page table")?;
        let (first, count) = (pal.frames.first(), pal.frames.count());
        let owned = Range::sized(first.as_u64(), count * PAGE_SIZE);
        let mut pages = 0;
        for region in &pal.regions {
            for page in 0..region.pages {
                let gpa = region.gpa + page * PAGE_SIZE;
                let t = npt
                    .translate(&mut pal.tables, GuestPhysAddr::new(gpa))
                    .ok_or_else(|| format!("{gpa:#x} ({:?}) is not mapped", region.kind))?;
                let frame = first + (region.first_page + page) * PAGE_SIZE;
                if t.address != frame || !owned.contains(t.address.as_u64()) {
                    return Err(format!("{gpa:#x} maps {:#x}, not {frame:#x}", t.address));
                }
                if t.permissions != region.permissions
                    || (t.permissions.write && t.permissions.execute)
                {
                    return Err(format!("{gpa:#x} ({:?}): {:?}", region.kind, t.permissions));
                }
                pages += 1;
            }
        }
        for gpa in (0..4u64 << 30).step_by(2 << 20) {
            let inside = pal.regions.iter().any(|r| r.span().contains(gpa));
            if !inside && npt.translate(&mut pal.tables, GuestPhysAddr::new(gpa)).is_some() {
                return Err(format!("{gpa:#x} is mapped outside the PAL's regions"));
            }
        }
        Ok(pages)
    }

    #[cfg(feature = "selftest")]
    /// The frames of PAL `handle`, if it is registered.
    pub fn frames(&mut self, handle: u64) -> Option<(PhysAddr, u64)> {
        self.registry.get_mut(handle).ok().map(|pal| pal.frames())
    }

    /// Handles one guest hypercall: status in RAX, result in RBX; the guest resumes.
    pub fn hypercall(
        &mut self,
        r: &mut GuestRegisters,
        guest: &mut dyn GuestAccess,
    ) -> HypercallAction {
        let ram = [guest.window()];
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

    fn handle(&mut self, request: Request, guest: &mut dyn GuestAccess) -> Result<u64, Status> {
        match request {
            Request::Version => Ok(ABI_VERSION),
            Request::Register { image, out } => {
                let start = tsc::read();
                // The image is copied out of the guest first, then measured and checked:
                // the guest can change its own memory, never this copy.
                let pages = image.len().div_ceil(PAGE_SIZE);
                let mut copy = OwnedFrames::allocate(pages).ok_or(Status::NoMemory)?;
                let copy = &mut copy.bytes_mut()[..mem::usize_of(image.len())];
                if !guest.read(image.start, copy) {
                    return Err(Status::BadPointer);
                }
                let measurement = Digest::of(copy);
                let mut pal = Pal::new(copy, measurement)?;
                pal.owner = guest.owner();
                let handle = self.registry.insert(pal)?;
                let result = RegisterOut { handle, measurement: measurement.0 };
                if !guest.write(out.start, &result.to_bytes()) {
                    drop(self.registry.remove(handle));
                    return Err(Status::BadPointer);
                }
                // Measured into the TPM before it can run; a TPM that fails refuses the PAL.
                if let Err(e) = self.tcc.measure_pal(&measurement.0) {
                    log::error!("pal: measuring handle={handle:#x} into the TPM failed: {e}");
                    drop(self.registry.remove(handle));
                    return Err(Status::Unavailable);
                }
                // The guest can move the TSC (MSR 0x10 is its own): no underflow on that.
                self.register_ticks = tsc::read().wrapping_sub(start);
                log::info!(
                    "pal: registered handle={handle:#x} identity={measurement} ({} bytes)",
                    image.len()
                );
                Ok(handle)
            }
            Request::Execute { handle, input, output, out_len } => {
                let pal = self.registry.get_mut(handle)?;
                if pal.owner != guest.owner() {
                    log::warn!(
                        "pal: handle={handle:#x} executed by another address space: refused"
                    );
                    return Err(Status::Refused);
                }
                // The input page holds exactly this input, then zeroes; the output page is
                // cleared of what the last execution claimed.
                let in_len = mem::usize_of(input.len());
                let clear = mem::usize_of(pal.input_used).max(in_len);
                let in_page = pal.region(RegionKind::Input);
                in_page[..clear].fill(0);
                // Counted before the read: a read that fails halfway leaves its pages here,
                // and the next input must clear them too.
                pal.input_used = pal.input_used.max(input.len());
                let in_page = pal.region(RegionKind::Input);
                if !guest.read(input.start, &mut in_page[..in_len]) {
                    return Err(Status::BadPointer);
                }
                pal.input_used = input.len();
                let clear = mem::usize_of(pal.output_used);
                pal.region(RegionKind::Output)[..clear].fill(0);
                let len = match pal.run(
                    self.svm,
                    self.tcc,
                    &mut self.counters,
                    input.len(),
                    output.len(),
                ) {
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
                pal.output_used = len.min(MAX_IO_LEN);
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
                if self.registry.get_mut(handle)?.owner != guest.owner() {
                    log::warn!(
                        "pal: handle={handle:#x} unregistered by another address space: refused"
                    );
                    return Err(Status::Refused);
                }
                drop(self.registry.remove(handle)?);
                log::info!("pal: unregistered handle={handle:#x}");
                Ok(0)
            }
            Request::Evidence { nonce, out, out_len } => {
                let mut n = [0; 32];
                if !guest.read(nonce.start, &mut n) {
                    return Err(Status::BadPointer);
                }
                let evidence = self.tcc.evidence(&n)?.to_bytes();
                write_out(guest, out, out_len, &evidence)
            }
            Request::Activate { credential, out, out_len } => {
                let mut blob = alloc::vec![0; mem::usize_of(credential.len())];
                if !guest.read(credential.start, &mut blob) {
                    return Err(Status::BadPointer);
                }
                let secret = self.tcc.activate(&blob)?;
                self.activator = Some(guest.owner());
                write_out(guest, out, out_len, &secret)
            }
            Request::Certify { certificate } => {
                if self.activator != Some(guest.owner()) {
                    log::warn!(
                        "pal: certify from an address space that activated nothing: refused"
                    );
                    return Err(Status::Refused);
                }
                let mut signature = [0; 64];
                if !guest.read(certificate.start, &mut signature) {
                    return Err(Status::BadPointer);
                }
                self.tcc.certify(signature)?;
                log::info!("pal: the TCC key is certified: its evidence is no longer simulated");
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
