//! The hypervisor's checks of hypercall arguments, fed arbitrary registers: a guest's call
//! (`Request::decode` against the guest's RAM), a running PAL's call (`PalCall::decode`), a
//! PAL's pointers (`pal::writable` against its address-space plan) and the PAL handles a
//! guest names (`Registry`). No register value may make them panic, and each must agree with
//! the ABI's rules as restated here: lengths checked against their limits before pointers,
//! every accepted range inside the caller's memory without wrapping, the ranges written to
//! disjoint, handles never 0 and never reused.
//!
//! Input: a call (an index into the known numbers, or any number), six argument registers
//! (RBX, RCX, RDX, RSI, RDI, R8), the guest's RAM ranges, a PAL's segments, then registry
//! operations (`vpr_proto_fuzz::seeds` writes examples).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use vpr_hypervisor::elf::{Image, Segment};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::pal::{self, PalCall, RegionKind, Registry, Request};
use vpr_hypervisor::svm::npt::Permissions;
use vpr_hypervisor::vm::GuestRegisters;
use vpr_proto::hypercall::pal::{Service, DONE, IMAGE_BASE, IMAGE_END};
use vpr_proto::hypercall::{
    Call, Status, CERTIFICATE_LEN, MAX_CREDENTIAL_LEN, MAX_EVIDENCE_LEN, MAX_IMAGE_LEN, MAX_IO_LEN,
    MAX_PALS, NONCE_LEN, REGISTER_OUT_LEN, SECRET_LEN,
};
use vpr_proto_fuzz::Input;

/// The call numbers the input's first byte indexes: the guest's calls, the PAL services and
/// the end of a PAL's run.
fn numbers() -> Vec<u64> {
    let calls = Call::ALL.iter().map(|&c| c as u64);
    calls.chain(Service::ALL.iter().map(|&s| s as u64)).chain([DONE]).collect()
}

/// `[ptr, ptr + len)` if it lies in one of `ram` without wrapping (any empty range is fine).
fn in_ram(ram: &[Range], ptr: u64, len: u64) -> Result<Range, Status> {
    if len == 0 {
        return Ok(Range::new(ptr, ptr));
    }
    let end = u128::from(ptr) + u128::from(len);
    let fits = |r: &Range| u128::from(r.start) <= u128::from(ptr) && end <= u128::from(r.end);
    match u64::try_from(end) {
        Ok(end) if ram.iter().any(fits) => Ok(Range::new(ptr, end)),
        _ => Err(Status::BadPointer),
    }
}

/// Whether two ranges share a byte.
fn overlap(a: Range, b: Range) -> bool {
    !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
}

/// Refuses overlapping ranges.
fn apart(a: Range, b: Range) -> Result<(), Status> {
    if overlap(a, b) {
        Err(Status::BadPointer)
    } else {
        Ok(())
    }
}

/// What `Request::decode` must answer, from the ABI's table (`vpr_proto::hypercall`).
fn expected(r: &GuestRegisters, ram: &[Range]) -> Result<Request, Status> {
    let call = Call::ALL.into_iter().find(|&c| c as u64 == r.rax).ok_or(Status::UnknownCall)?;
    match call {
        Call::Version => Ok(Request::Version),
        Call::Register => {
            if r.rcx == 0 {
                return Err(Status::BadImage);
            }
            if r.rcx > MAX_IMAGE_LEN {
                return Err(Status::TooLarge);
            }
            let image = in_ram(ram, r.rbx, r.rcx)?;
            let out = in_ram(ram, r.rdx, REGISTER_OUT_LEN)?;
            apart(image, out)?;
            Ok(Request::Register { image, out })
        }
        Call::Execute => {
            if r.rdx > MAX_IO_LEN || r.rdi > MAX_IO_LEN {
                return Err(Status::TooLarge);
            }
            let input = in_ram(ram, r.rcx, r.rdx)?;
            let output = in_ram(ram, r.rsi, r.rdi)?;
            let out_len = in_ram(ram, r.r8, 8)?;
            apart(output, out_len)?;
            Ok(Request::Execute { handle: r.rbx, input, output, out_len })
        }
        Call::Unregister => Ok(Request::Unregister { handle: r.rbx }),
        Call::Evidence => {
            if r.rdx > MAX_EVIDENCE_LEN {
                return Err(Status::TooLarge);
            }
            let nonce = in_ram(ram, r.rbx, NONCE_LEN)?;
            let out = in_ram(ram, r.rcx, r.rdx)?;
            let out_len = in_ram(ram, r.rsi, 8)?;
            apart(out, out_len)?;
            Ok(Request::Evidence { nonce, out, out_len })
        }
        Call::Activate => {
            if r.rcx > MAX_CREDENTIAL_LEN {
                return Err(Status::TooLarge);
            }
            let credential = in_ram(ram, r.rbx, r.rcx)?;
            let out = in_ram(ram, r.rdx, SECRET_LEN)?;
            let out_len = in_ram(ram, r.rsi, 8)?;
            apart(out, out_len)?;
            Ok(Request::Activate { credential, out, out_len })
        }
        Call::Certify => Ok(Request::Certify { certificate: in_ram(ram, r.rbx, CERTIFICATE_LEN)? }),
    }
}

/// What `PalCall::decode` must answer: the services are 0x7670_0101 to 0x7670_010A, the
/// guest's calls (refused as busy) 0x7670_0000 to 0x7670_0006.
fn expected_pal_call(r: &GuestRegisters) -> PalCall {
    match r.rax {
        DONE => PalCall::Done { len: r.rbx },
        0x7670_0101..=0x7670_010A => PalCall::Service {
            service: Service::ALL[(r.rax - 0x7670_0101) as usize],
            args: [r.rbx, r.rcx, r.rdx, r.rsi],
        },
        0x7670_0000..=0x7670_0006 => PalCall::Answer(Status::Busy),
        _ => PalCall::Answer(Status::UnknownCall),
    }
}

/// Up to 255 ranges of `start`, `len` (saturating at the top).
fn ranges(input: &mut Input<'_>) -> Vec<Range> {
    let n = input.byte();
    (0..n).map(|_| Range::sized(input.number(), input.number())).collect()
}

/// Up to 4 segments inside the PAL window, as an accepted image has them (their pages may
/// overlap: `writable` does not rely on that).
fn segments(input: &mut Input<'_>) -> Vec<Segment> {
    let n = input.byte() % 5;
    let window = IMAGE_END - IMAGE_BASE;
    (0..n)
        .map(|_| {
            let vaddr = IMAGE_BASE + input.number() % window;
            let mem_len = 1 + input.number() % (IMAGE_END - vaddr);
            let flags = input.byte();
            let permissions = Permissions { write: flags & 1 != 0, execute: flags & 3 == 2 };
            Segment { vaddr, mem_len, file_offset: 0, file_len: 0, permissions }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let numbers = numbers();
    let selector = usize::from(input.byte());
    let rax = match numbers.get(selector) {
        Some(&number) => number,
        None => input.number(),
    };
    let [rbx, rcx, rdx, rsi, rdi, r8] = [(); 6].map(|()| input.number());
    let r = GuestRegisters { rax, rbx, rcx, rdx, rsi, rdi, r8, ..GuestRegisters::default() };
    let ram = ranges(&mut input);

    // A guest's call.
    let request = Request::decode(&r, &ram);
    assert_eq!(request, expected(&r, &ram), "{r:x?} with RAM {ram:x?}");
    assert_eq!(pal::check_range(&ram, rbx, rcx), in_ram(&ram, rbx, rcx));

    // A PAL's call, and the pointers its services take (`src/image/pal.rs`: a pointer in RBX
    // with a length in RCX or a fixed one, an output in RCX or RDX with its capacity next).
    assert_eq!(PalCall::decode(&r), expected_pal_call(&r));
    let segments = segments(&mut input);
    let image = Image { entry: IMAGE_BASE, segments };
    let regions = pal::layout(&image);
    assert_eq!(pal::total_pages(&regions), regions.iter().map(|r| r.pages).sum::<u64>());
    for (ptr, len) in [(rbx, rcx), (rbx, 32), (rcx, 32), (rdx, rsi), (rcx, rdx)] {
        let end = u128::from(ptr) + u128::from(len);
        let may_write = regions.iter().any(|r| {
            let span_end = u128::from(r.gpa) + u128::from(r.pages) * u128::from(PAGE_SIZE);
            r.permissions.write
                && r.kind != RegionKind::PageTables
                && u128::from(r.gpa) <= u128::from(ptr)
                && end <= span_end
        });
        let want = if may_write && end <= u128::from(u64::MAX) {
            Ok(Range::new(ptr, ptr + len))
        } else {
            Err(Status::BadPointer)
        };
        assert_eq!(pal::writable(&regions, ptr, len), want, "[{ptr:#x}, +{len:#x})");
    }

    // The handles a guest names: the registry against a model of it.
    let mut registry = Registry::new(MAX_PALS);
    let mut live: BTreeMap<u64, u32> = BTreeMap::new();
    let mut issued: Vec<u64> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut next = 0u32;
    while !input.is_empty() {
        let op = input.byte();
        let handle = match (op & 4 != 0, issued.is_empty()) {
            (true, false) => issued[usize::from(input.byte()) % issued.len()],
            _ => input.number(),
        };
        match op % 4 {
            0 => match registry.insert(next) {
                Ok(handle) => {
                    assert!(live.len() < MAX_PALS);
                    assert_ne!(handle, 0);
                    assert!(seen.insert(handle), "handle {handle:#x} reused");
                    live.insert(handle, next);
                    issued.push(handle);
                    next += 1;
                }
                Err(status) => {
                    assert_eq!(status, Status::NoMemory);
                    assert_eq!(live.len(), MAX_PALS);
                }
            },
            1 => match live.remove(&handle) {
                Some(value) => assert_eq!(registry.remove(handle), Ok(value)),
                None => assert_eq!(registry.remove(handle), Err(Status::NoSuchHandle)),
            },
            2 => match live.get(&handle) {
                Some(&value) => assert_eq!(registry.get_mut(handle).copied(), Ok(value)),
                None => assert_eq!(registry.get_mut(handle).copied(), Err(Status::NoSuchHandle)),
            },
            _ => {
                let mut drained = registry.drain();
                let mut want: Vec<u32> = live.values().copied().collect();
                drained.sort_unstable();
                want.sort_unstable();
                assert_eq!(drained, want);
                live.clear();
            }
        }
        assert_eq!(registry.len(), live.len());
        assert_eq!(registry.is_empty(), live.is_empty());
    }
});
