//! PALs (pieces of application logic, after TrustVisor): the checks and plans behind the
//! hypercall ABI of `vpr_proto::hypercall`, without privilege.
//!
//! - [`check_range`] and [`disjoint`] vet the pointers a guest passes;
//! - [`Request::decode`] turns a guest's registers into a vetted request;
//! - [`layout`] plans a PAL's address space from its checked ELF image (what goes where, with
//!   which permissions);
//! - [`PalCall::decode`] reads what a running PAL asks for; [`writable`] vets its pointers;
//! - [`Counters`] keeps the trusted counters of each PAL identity;
//! - [`Registry`] holds registered PALs behind handles that are never reused.
//!
//! The image (`src/image/pal.rs`) owns the frames, the nested page tables and the world switch.

use crate::elf;
use crate::memory::{Range, PAGE_SIZE};
use crate::svm::npt::Permissions;
use crate::vm::GuestRegisters;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use vpr_proto::hypercall::pal::{self, Service};
use vpr_proto::hypercall::{
    Call, Status, CERTIFICATE_LEN, MAX_CREDENTIAL_LEN, MAX_EVIDENCE_LEN, MAX_IMAGE_LEN,
    MAX_IMAGE_PAGES, MAX_IO_LEN, NONCE_LEN, REGISTER_OUT_LEN, SECRET_LEN,
};

/// The range `[ptr, ptr + len)` if it lies entirely inside one of `ram` (the guest-physical
/// ranges the caller's nested page table maps) and does not wrap around; an empty range is
/// accepted anywhere (nothing is read or written through it).
pub fn check_range(ram: &[Range], ptr: u64, len: u64) -> Result<Range, Status> {
    if len == 0 {
        return Ok(Range::new(ptr, ptr));
    }
    let end = ptr.checked_add(len).ok_or(Status::BadPointer)?;
    let range = Range::new(ptr, end);
    if ram.iter().any(|r| r.start <= range.start && range.end <= r.end) {
        Ok(range)
    } else {
        Err(Status::BadPointer)
    }
}

/// Whether no two of `ranges` share a byte.
pub fn disjoint(ranges: &[Range]) -> bool {
    ranges.iter().enumerate().all(|(i, a)| {
        ranges[i + 1..].iter().all(|b| a.is_empty() || b.is_empty() || a.intersect(*b).is_empty())
    })
}

/// The output buffer `out` (pointer, capacity) and the 8-byte length word at `len_ptr` a call
/// writes: each checked by [`check_range`], and not overlapping each other.
fn outputs(ram: &[Range], out: (u64, u64), len_ptr: u64) -> Result<(Range, Range), Status> {
    let out = check_range(ram, out.0, out.1)?;
    let out_len = check_range(ram, len_ptr, 8)?;
    if !disjoint(&[out, out_len]) {
        return Err(Status::BadPointer);
    }
    Ok((out, out_len))
}

/// A guest's request, its pointers vetted against its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The ABI version.
    Version,
    /// Register the image at `image`, write the result at `out`.
    Register {
        /// The image.
        image: Range,
        /// Where the [`vpr_proto::hypercall::RegisterOut`] goes.
        out: Range,
    },
    /// Run PAL `handle` on `input`, its output into `output` (its capacity), the output
    /// length into `out_len`.
    Execute {
        /// The PAL.
        handle: u64,
        /// The input.
        input: Range,
        /// The output buffer.
        output: Range,
        /// Where the output length (u64) goes.
        out_len: Range,
    },
    /// Forget PAL `handle`.
    Unregister {
        /// The PAL.
        handle: u64,
    },
    /// The TPM half of the evidence over the nonce at `nonce`, into `out` (its capacity), its
    /// length into `out_len`.
    Evidence {
        /// The verifier's nonce (32 bytes).
        nonce: Range,
        /// The output buffer.
        out: Range,
        /// Where the length (u64) goes.
        out_len: Range,
    },
    /// Activate the credential at `credential`; the secret into `out` (64 bytes), its length
    /// into `out_len`.
    Activate {
        /// The credential: `TPM2B_ID_OBJECT` then `TPM2B_ENCRYPTED_SECRET`.
        credential: Range,
        /// The output buffer.
        out: Range,
        /// Where the length (u64) goes.
        out_len: Range,
    },
    /// Install the certificate (64 bytes) at `certificate`.
    Certify {
        /// The certificate.
        certificate: Range,
    },
}

impl Request {
    /// Decodes the call in `r` (RAX = number, arguments in RBX, RCX, RDX, RSI, RDI, R8) from
    /// a guest whose memory is `ram`. Lengths are checked before pointers, so an oversized
    /// request is [`Status::TooLarge`] whatever its pointers.
    pub fn decode(r: &GuestRegisters, ram: &[Range]) -> Result<Request, Status> {
        match Call::from_u64(r.rax).ok_or(Status::UnknownCall)? {
            Call::Version => Ok(Request::Version),
            Call::Register => {
                let (ptr, len, out) = (r.rbx, r.rcx, r.rdx);
                if len == 0 {
                    return Err(Status::BadImage);
                }
                if len > MAX_IMAGE_LEN {
                    return Err(Status::TooLarge);
                }
                let image = check_range(ram, ptr, len)?;
                let out = check_range(ram, out, REGISTER_OUT_LEN)?;
                if !disjoint(&[image, out]) {
                    return Err(Status::BadPointer);
                }
                Ok(Request::Register { image, out })
            }
            Call::Execute => {
                let (handle, in_ptr, in_len, out_ptr, out_cap, len_ptr) =
                    (r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.r8);
                if in_len > MAX_IO_LEN || out_cap > MAX_IO_LEN {
                    return Err(Status::TooLarge);
                }
                let input = check_range(ram, in_ptr, in_len)?;
                // The input is copied in before anything is written, so it may overlap the
                // output.
                let (output, out_len) = outputs(ram, (out_ptr, out_cap), len_ptr)?;
                Ok(Request::Execute { handle, input, output, out_len })
            }
            Call::Unregister => Ok(Request::Unregister { handle: r.rbx }),
            Call::Evidence => {
                let (nonce, out, cap, len) = (r.rbx, r.rcx, r.rdx, r.rsi);
                if cap > MAX_EVIDENCE_LEN {
                    return Err(Status::TooLarge);
                }
                let nonce = check_range(ram, nonce, NONCE_LEN)?;
                let (out, out_len) = outputs(ram, (out, cap), len)?;
                Ok(Request::Evidence { nonce, out, out_len })
            }
            Call::Activate => {
                let (credential, len, out, out_len) = (r.rbx, r.rcx, r.rdx, r.rsi);
                if len > MAX_CREDENTIAL_LEN {
                    return Err(Status::TooLarge);
                }
                let credential = check_range(ram, credential, len)?;
                let (out, out_len) = outputs(ram, (out, SECRET_LEN), out_len)?;
                Ok(Request::Activate { credential, out, out_len })
            }
            Call::Certify => {
                Ok(Request::Certify { certificate: check_range(ram, r.rbx, CERTIFICATE_LEN)? })
            }
        }
    }
}

/// What a PAL asked for when it called the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PalCall {
    /// It is done; its output has this many bytes.
    Done {
        /// The output length it claims (not yet checked against the capacity).
        len: u64,
    },
    /// A service of [`pal::Service`], with its arguments (RBX, RCX, RDX, RSI) still
    /// unchecked.
    Service {
        /// Which.
        service: Service,
        /// The arguments: RBX, RCX, RDX, RSI.
        args: [u64; 4],
    },
    /// Anything else: answer with this status and resume it.
    Answer(Status),
}

impl PalCall {
    /// Decodes a PAL's call: [`pal::DONE`] ends the execution; the services are passed on;
    /// the guest's calls are refused with [`Status::Busy`] (a PAL cannot register, execute or
    /// unregister PALs: no re-entrancy); every other number is [`Status::UnknownCall`].
    pub fn decode(r: &GuestRegisters) -> PalCall {
        if r.rax == pal::DONE {
            PalCall::Done { len: r.rbx }
        } else if let Some(service) = Service::from_u64(r.rax) {
            PalCall::Service { service, args: [r.rbx, r.rcx, r.rdx, r.rsi] }
        } else if Call::from_u64(r.rax).is_some() {
            PalCall::Answer(Status::Busy)
        } else {
            PalCall::Answer(Status::UnknownCall)
        }
    }
}

/// What a region of a PAL's address space holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Its page tables (PML4, PDPT, PD).
    PageTables,
    /// The stack.
    Stack,
    /// The input of an execution.
    Input,
    /// The output of an execution.
    Output,
    /// A loadable segment of the image (its index among them).
    Segment(usize),
}

/// A region of a PAL's guest-physical address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// What it holds.
    pub kind: RegionKind,
    /// Its guest-physical address (page aligned).
    pub gpa: u64,
    /// Its pages.
    pub pages: u64,
    /// What the PAL may do there (nested page table permissions).
    pub permissions: Permissions,
    /// Where its frames start in the PAL's contiguous allocation, in pages.
    pub first_page: u64,
}

impl Region {
    /// Its guest-physical range.
    pub fn span(&self) -> Range {
        Range::sized(self.gpa, self.pages * PAGE_SIZE)
    }
}

/// Where a PAL's page tables go: PML4, PDPT, PD (512 entries of 2 MiB, identity).
pub const PAGE_TABLES_GPA: u64 = 0;

/// The limits a PAL image is checked against (`vpr_proto::hypercall::pal`).
pub const IMAGE_LIMITS: elf::Limits =
    elf::Limits { window: Range::new(pal::IMAGE_BASE, pal::IMAGE_END), max_pages: MAX_IMAGE_PAGES };

/// The plan of a PAL's address space for a checked image: page tables, stack, input and
/// output (read-write, never executable), then each segment with its own permissions (the
/// ELF check refused writable code). `register` allocates [`total_pages`] frames at once
/// and maps each region.
pub fn layout(image: &elf::Image) -> Vec<Region> {
    let mut plan = Vec::from([
        (RegionKind::PageTables, PAGE_TABLES_GPA, 3, Permissions::DATA),
        (RegionKind::Stack, pal::STACK_BASE, pal::STACK_LEN / PAGE_SIZE, Permissions::DATA),
        (RegionKind::Input, pal::INPUT_BASE, MAX_IO_LEN / PAGE_SIZE, Permissions::DATA),
        (RegionKind::Output, pal::OUTPUT_BASE, MAX_IO_LEN / PAGE_SIZE, Permissions::DATA),
    ]);
    for (i, segment) in image.segments.iter().enumerate() {
        let pages = segment.pages();
        plan.push((
            RegionKind::Segment(i),
            pages.start,
            pages.len() / PAGE_SIZE,
            segment.permissions,
        ));
    }
    let mut first_page = 0;
    plan.into_iter()
        .map(|(kind, gpa, pages, permissions)| {
            let region = Region { kind, gpa, pages, permissions, first_page };
            first_page += pages;
            region
        })
        .collect()
}

/// Frames a PAL with this layout needs.
pub fn total_pages(regions: &[Region]) -> u64 {
    regions.iter().map(|r| r.pages).sum()
}

/// The range `[ptr, ptr + len)` of a PAL's own memory if the PAL may write all of it: inside
/// one writable region other than its page tables, without wrapping around.
pub fn writable(regions: &[Region], ptr: u64, len: u64) -> Result<Range, Status> {
    let end = ptr.checked_add(len).ok_or(Status::BadPointer)?;
    let range = Range::new(ptr, end);
    let inside = |r: &&Region| {
        r.permissions.write
            && r.kind != RegionKind::PageTables
            && r.span().start <= range.start
            && range.end <= r.span().end
    };
    if regions.iter().any(|r| inside(&r)) {
        Ok(range)
    } else {
        Err(Status::BadPointer)
    }
}

/// The trusted counters of every PAL identity ([`pal::Service::CounterRead`]): kept in
/// hypervisor memory, so they outlive a PAL's registration but not a reboot.
#[derive(Debug, Default)]
pub struct Counters {
    by_id: BTreeMap<[u8; 32], u64>,
}

impl Counters {
    /// The counter `name` of the PAL `identity` (`pal::counter_id`): 0 if never incremented.
    pub fn read(&self, identity: &[u8; 32], name: &[u8; 32]) -> u64 {
        self.by_id.get(&pal::counter_id(identity, name)).copied().unwrap_or(0)
    }

    /// Adds one to counter `name` of `identity`; its new value. A counter at `u64::MAX`
    /// stays there and the call fails ([`Status::BadArgument`]): counters never wrap. A new
    /// counter beyond [`pal::MAX_COUNTERS`] is [`Status::NoMemory`].
    pub fn increment(&mut self, identity: &[u8; 32], name: &[u8; 32]) -> Result<u64, Status> {
        let id = pal::counter_id(identity, name);
        let full = self.by_id.len() as u64 >= pal::MAX_COUNTERS;
        let value = match self.by_id.get_mut(&id) {
            Some(value) => value,
            None if full => return Err(Status::NoMemory),
            None => self.by_id.entry(id).or_insert(0),
        };
        *value = value.checked_add(1).ok_or(Status::BadArgument)?;
        Ok(*value)
    }
}

/// Registered PALs behind handles. A handle is `(generation << 8) | (slot + 1)`: never 0, and
/// a slot's generation grows on every registration, so a stale handle names nothing.
#[derive(Debug)]
pub struct Registry<T> {
    slots: Vec<(u64, Option<T>)>,
}

impl<T> Registry<T> {
    /// An empty registry with `capacity` slots (at most 255).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(255);
        Registry { slots: (0..capacity).map(|_| (0, None)).collect() }
    }

    /// Stores `value`; its handle, or [`Status::NoMemory`] when every slot is taken.
    pub fn insert(&mut self, value: T) -> Result<u64, Status> {
        let (index, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, (_, v))| v.is_none())
            .ok_or(Status::NoMemory)?;
        slot.0 = slot.0.wrapping_add(1) & (u64::MAX >> 8);
        slot.1 = Some(value);
        Ok(slot.0 << 8 | (index as u64 + 1))
    }

    fn slot(&self, handle: u64) -> Result<usize, Status> {
        let index = usize::try_from(handle & 0xFF).map_err(|_| Status::NoSuchHandle)?;
        let index = index.checked_sub(1).ok_or(Status::NoSuchHandle)?;
        match self.slots.get(index) {
            Some((generation, Some(_))) if *generation == handle >> 8 => Ok(index),
            _ => Err(Status::NoSuchHandle),
        }
    }

    /// The value behind `handle`.
    pub fn get_mut(&mut self, handle: u64) -> Result<&mut T, Status> {
        let index = self.slot(handle)?;
        self.slots[index].1.as_mut().ok_or(Status::NoSuchHandle)
    }

    /// Takes the value behind `handle` out; the handle is dead from now on.
    pub fn remove(&mut self, handle: u64) -> Result<T, Status> {
        let index = self.slot(handle)?;
        self.slots[index].1.take().ok_or(Status::NoSuchHandle)
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|(_, v)| v.is_some()).count()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every value out.
    pub fn drain(&mut self) -> Vec<T> {
        self.slots.iter_mut().filter_map(|(_, v)| v.take()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code: read and execute, never written (W^X).
    const CODE: Permissions = Permissions { write: false, execute: true };

    const RAM: [Range; 2] = [Range::new(0x1000, 0x9000), Range::new(0x10000, 0x11000)];

    fn regs(call: Call, args: [u64; 6]) -> GuestRegisters {
        GuestRegisters {
            rax: call as u64,
            rbx: args[0],
            rcx: args[1],
            rdx: args[2],
            rsi: args[3],
            rdi: args[4],
            r8: args[5],
            ..GuestRegisters::default()
        }
    }

    #[test]
    fn ranges_must_lie_in_one_ram_range() {
        assert_eq!(check_range(&RAM, 0x1000, 0x8000), Ok(Range::new(0x1000, 0x9000)));
        assert_eq!(check_range(&RAM, 0x8FFF, 2), Err(Status::BadPointer));
        assert_eq!(check_range(&RAM, 0x0FFF, 1), Err(Status::BadPointer));
        // Spanning two RAM ranges with a hole between them.
        assert_eq!(check_range(&RAM, 0x8000, 0x9000), Err(Status::BadPointer));
        assert_eq!(check_range(&RAM, u64::MAX - 1, 4), Err(Status::BadPointer));
        assert_eq!(check_range(&RAM, 0xDEAD_0000, 0), Ok(Range::new(0xDEAD_0000, 0xDEAD_0000)));
    }

    #[test]
    fn disjointness() {
        let a = Range::new(0x1000, 0x2000);
        assert!(disjoint(&[a, Range::new(0x2000, 0x3000)]));
        assert!(!disjoint(&[a, Range::new(0x1FFF, 0x3000)]));
        assert!(!disjoint(&[Range::new(0, 1), a, Range::new(0x1800, 0x1801)]));
        assert!(disjoint(&[a, Range::new(0x1800, 0x1800)]));
    }

    #[test]
    fn requests_decode_with_their_limits() {
        let register = regs(Call::Register, [0x1000, 100, 0x2000, 0, 0, 0]);
        assert_eq!(
            Request::decode(&register, &RAM),
            Ok(Request::Register {
                image: Range::new(0x1000, 0x1064),
                out: Range::new(0x2000, 0x2028)
            })
        );
        let cases = [
            (regs(Call::Register, [0x1000, 0, 0x2000, 0, 0, 0]), Status::BadImage),
            (regs(Call::Register, [0x1000, MAX_IMAGE_LEN + 1, 0x2000, 0, 0, 0]), Status::TooLarge),
            (regs(Call::Register, [0x1000, 0x100, 0x1080, 0, 0, 0]), Status::BadPointer),
            (regs(Call::Register, [0x1000, 0x100, 0x8FF0, 0, 0, 0]), Status::BadPointer),
            (regs(Call::Execute, [1, 0x1000, MAX_IO_LEN + 1, 0x2000, 8, 0x3000]), Status::TooLarge),
            (regs(Call::Execute, [1, 0x1000, 8, 0x2000, u64::MAX, 0x3000]), Status::TooLarge),
            (regs(Call::Execute, [1, 0x1000, 8, 0x2000, 16, 0x2008]), Status::BadPointer),
            (regs(Call::Execute, [1, 0x1000, 8, 0x2000, 16, 0x9000]), Status::BadPointer),
            (regs(Call::Execute, [1, u64::MAX - 3, 8, 0x2000, 16, 0x3000]), Status::BadPointer),
        ];
        for (r, status) in cases {
            assert_eq!(Request::decode(&r, &RAM), Err(status), "{r:x?}");
        }
        let execute = regs(Call::Execute, [7, 0x2000, 8, 0x2000, 16, 0x3000]);
        assert!(matches!(Request::decode(&execute, &RAM), Ok(Request::Execute { handle: 7, .. })));
        let unknown = GuestRegisters { rax: 0x7670_0007, ..GuestRegisters::default() };
        assert_eq!(Request::decode(&unknown, &RAM), Err(Status::UnknownCall));
    }

    #[test]
    fn tpm_requests_decode_with_their_limits() {
        let evidence = regs(Call::Evidence, [0x1000, 0x2000, 0x1000, 0x3000, 0, 0]);
        assert_eq!(
            Request::decode(&evidence, &RAM),
            Ok(Request::Evidence {
                nonce: Range::new(0x1000, 0x1020),
                out: Range::new(0x2000, 0x3000),
                out_len: Range::new(0x3000, 0x3008)
            })
        );
        let activate = regs(Call::Activate, [0x1000, 300, 0x2000, 0x3000, 0, 0]);
        assert_eq!(
            Request::decode(&activate, &RAM),
            Ok(Request::Activate {
                credential: Range::new(0x1000, 0x112C),
                out: Range::new(0x2000, 0x2040),
                out_len: Range::new(0x3000, 0x3008)
            })
        );
        let certify = regs(Call::Certify, [0x1000, 0, 0, 0, 0, 0]);
        assert_eq!(
            Request::decode(&certify, &RAM),
            Ok(Request::Certify { certificate: Range::new(0x1000, 0x1040) })
        );
        let cases = [
            (
                regs(Call::Evidence, [0x1000, 0x2000, MAX_EVIDENCE_LEN + 1, 0x3000, 0, 0]),
                Status::TooLarge,
            ),
            (regs(Call::Evidence, [0x8FF0, 0x2000, 0x100, 0x3000, 0, 0]), Status::BadPointer),
            (regs(Call::Evidence, [0x1000, 0x2000, 0x100, 0x20F8, 0, 0]), Status::BadPointer),
            (
                regs(Call::Activate, [0x1000, MAX_CREDENTIAL_LEN + 1, 0x2000, 0x3000, 0, 0]),
                Status::TooLarge,
            ),
            (regs(Call::Activate, [0x1000, 100, 0x2000, 0x2020, 0, 0]), Status::BadPointer),
            (regs(Call::Activate, [0x1000, 100, 0x8FF0, 0x3000, 0, 0]), Status::BadPointer),
            (regs(Call::Certify, [0x8FE0, 0, 0, 0, 0, 0]), Status::BadPointer),
            (regs(Call::Certify, [u64::MAX - 8, 0, 0, 0, 0, 0]), Status::BadPointer),
        ];
        for (r, status) in cases {
            assert_eq!(Request::decode(&r, &RAM), Err(status), "{r:x?}");
        }
    }

    #[test]
    fn pal_calls() {
        let done = GuestRegisters { rax: pal::DONE, rbx: 24, ..GuestRegisters::default() };
        assert_eq!(PalCall::decode(&done), PalCall::Done { len: 24 });
        for call in Call::ALL {
            let r = GuestRegisters { rax: call as u64, ..GuestRegisters::default() };
            assert_eq!(PalCall::decode(&r), PalCall::Answer(Status::Busy));
        }
        for service in Service::ALL {
            let r = GuestRegisters {
                rax: service as u64,
                rbx: 5,
                rcx: 6,
                rdx: 7,
                rsi: 8,
                rdi: 9,
                ..Default::default()
            };
            assert_eq!(PalCall::decode(&r), PalCall::Service { service, args: [5, 6, 7, 8] });
        }
        let r = GuestRegisters { rax: 0x1234, ..GuestRegisters::default() };
        assert_eq!(PalCall::decode(&r), PalCall::Answer(Status::UnknownCall));
    }

    fn segment(vaddr: u64, mem_len: u64, permissions: Permissions) -> elf::Segment {
        elf::Segment { vaddr, mem_len, file_offset: 0, file_len: 0, permissions }
    }

    fn image() -> elf::Image {
        let base = pal::IMAGE_BASE;
        elf::Image {
            entry: base,
            segments: Vec::from([
                segment(base, 0x1801, CODE),
                segment(base + 0x2000, 0x10, Permissions::READ_ONLY),
                segment(base + 0x3008, 0x2000, Permissions::DATA),
            ]),
        }
    }

    #[test]
    fn layout_follows_the_segments() {
        let regions = layout(&image());
        let kinds: Vec<_> = regions.iter().map(|r| (r.kind, r.gpa, r.pages)).collect();
        let base = pal::IMAGE_BASE;
        assert_eq!(
            kinds[4..],
            [
                (RegionKind::Segment(0), base, 2),
                (RegionKind::Segment(1), base + 0x2000, 1),
                (RegionKind::Segment(2), base + 0x3000, 3),
            ]
        );
        assert_eq!(regions[4].permissions, CODE);
        assert_eq!(regions[5].permissions, Permissions::READ_ONLY);
        for r in regions.iter().filter(|r| !matches!(r.kind, RegionKind::Segment(_))) {
            assert_eq!(r.permissions, Permissions::DATA, "{r:?}");
        }
        // Regions do not overlap, in guest-physical space or in the allocation, and all lie in
        // the first GiB the PAL's page tables map.
        let spans: Vec<Range> = regions.iter().map(Region::span).collect();
        let frames: Vec<Range> =
            regions.iter().map(|r| Range::sized(r.first_page, r.pages)).collect();
        assert!(disjoint(&spans));
        assert!(disjoint(&frames));
        assert!(spans.iter().all(|s| s.end <= pal::IMAGE_END));
        let io = 2 * MAX_IO_LEN / PAGE_SIZE;
        assert_eq!(total_pages(&regions), 3 + pal::STACK_LEN / PAGE_SIZE + io + 2 + 1 + 3);
    }

    #[test]
    fn pal_pointers_must_be_writable_memory_of_its_own() {
        let regions = layout(&image());
        let base = pal::IMAGE_BASE;
        assert_eq!(writable(&regions, pal::STACK_BASE, 32), Ok(Range::sized(pal::STACK_BASE, 32)));
        assert!(writable(&regions, pal::OUTPUT_BASE + MAX_IO_LEN - 8, 8).is_ok());
        assert!(writable(&regions, base + 0x3000, 0x3000).is_ok());
        for (ptr, len) in [
            (base, 8),                 // code
            (base + 0x2000, 8),        // read-only data
            (PAGE_TABLES_GPA, 8),      // its page tables
            (pal::STACK_TOP - 4, 8),   // past the stack
            (pal::INPUT_BASE - 8, 16), // straddles a hole
            (base + 0x5FF8, 16),       // past the data segment
            (u64::MAX - 3, 8),         // wraps
            (0x7000_0000, 1),          // nowhere
        ] {
            assert_eq!(writable(&regions, ptr, len), Err(Status::BadPointer), "{ptr:#x}+{len}");
        }
    }

    #[test]
    fn counters_belong_to_an_identity_and_a_name_and_never_go_back() {
        let mut counters = Counters::default();
        let (a, b) = ([1; 32], [2; 32]);
        let (view, state) = ([0; 32], [3; 32]);
        assert_eq!(counters.read(&a, &view), 0);
        assert_eq!(counters.increment(&a, &view), Ok(1));
        assert_eq!(counters.increment(&a, &view), Ok(2));
        assert_eq!(counters.increment(&a, &state), Ok(1));
        assert_eq!(counters.read(&a, &view), 2);
        assert_eq!(counters.read(&b, &view), 0);
        counters.by_id.insert(pal::counter_id(&b, &state), u64::MAX);
        assert_eq!(counters.increment(&b, &state), Err(Status::BadArgument));
        assert_eq!(counters.read(&b, &state), u64::MAX);
        // A full TCC refuses new counters, and still counts the ones it has.
        let mut full = Counters::default();
        for i in 0..pal::MAX_COUNTERS {
            let mut name = [0; 32];
            name[..8].copy_from_slice(&i.to_le_bytes());
            assert_eq!(full.increment(&a, &name), Ok(1));
        }
        assert_eq!(full.increment(&a, &[0xEE; 32]), Err(Status::NoMemory));
        assert_eq!(full.increment(&a, &[0; 32]), Ok(2));
    }

    #[test]
    fn handles_are_not_reused() {
        let mut registry = Registry::new(2);
        let a = registry.insert('a').unwrap();
        let b = registry.insert('b').unwrap();
        assert_ne!(a, 0);
        assert_eq!(registry.insert('c'), Err(Status::NoMemory));
        assert_eq!(registry.remove(a), Ok('a'));
        assert_eq!(registry.remove(a), Err(Status::NoSuchHandle));
        let c = registry.insert('c').unwrap();
        assert_ne!(c, a);
        assert_eq!(registry.get_mut(a), Err(Status::NoSuchHandle));
        assert_eq!(registry.get_mut(c), Ok(&mut 'c'));
        assert_eq!(registry.get_mut(0), Err(Status::NoSuchHandle));
        assert_eq!(registry.get_mut(b + 0x100), Err(Status::NoSuchHandle));
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.drain().len(), 2);
        assert!(registry.is_empty());
    }
}
