//! The machine-level side of the hypervisor ABI (`vpr_proto::hypercall`, "PAL ->
//! hypervisor"): the entry point, the input and output buffers the hypervisor hands over,
//! the `VMMCALL` services, and `ud2`. This is the image's only module with unsafe code.
//!
//! `VMMCALL` (`0F 01 D9`) is described in the AMD64 Architecture Programmer's Manual, Vol. 3,
//! "VMMCALL": in a guest whose hypervisor intercepts it (Vol. 2, §15.9) it exits to the
//! hypervisor, which answers in the registers and resumes the guest after the instruction.
//! Outside SVM, or without the intercept, it raises `#UD`: the image only runs under the vpr
//! hypervisor. The ABI: the service number in RAX, arguments in RBX, RCX, RDX and RSI, a
//! [`Status`] back in RAX and a value in RBX; every other register is preserved.

#![allow(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::arch::{asm, global_asm};

use vpr_proto::hypercall::pal::{self, Service};
use vpr_proto::hypercall::{Status, MAX_IO_LEN};

/// Bytes one [`Service::Random`] call may fill: [`pal::MAX_RANDOM_LEN`].
const RANDOM_CHUNK: usize = 4096;
const _: () = assert!(RANDOM_CHUNK as u64 == pal::MAX_RANDOM_LEN);

/// Bytes [`Service::Attest`] writes: [`pal::ATTESTATION_LEN`] (simulated, TCC key,
/// certificate, signature: `vpr_proto::attest::SERVICE_LEN`).
pub const ATTESTATION_LEN: usize = vpr_proto::attest::SERVICE_LEN;

/// Most bytes [`seal`] seals: [`pal::MAX_SEAL_LEN`].
const MAX_SEAL_LEN: usize = 4096;
/// Bytes a sealed blob adds: [`pal::SEAL_OVERHEAD`].
const SEAL_OVERHEAD: usize = 28;
const _: () = assert!(MAX_SEAL_LEN as u64 == pal::MAX_SEAL_LEN);
const _: () = assert!(SEAL_OVERHEAD as u64 == pal::SEAL_OVERHEAD);

// The entry point. The hypervisor enters at the ELF entry with RDI = input pointer, RSI =
// input length, RDX = output pointer, RCX = output capacity, RSP = `pal::STACK_TOP` and the
// other general registers zero: exactly the System V arguments of `entry`. RSP is 16-byte
// aligned already; `and` keeps it so whatever happens, and `call` then leaves it as a
// function's entry expects (RSP + 8 aligned). `cld`: the ABI wants DF clear at a call and
// the hypervisor's ABI does not promise RFLAGS. `entry` never returns; `ud2` if it did.
global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "cld",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    ".size _start, . - _start",
    entry = sym entry,
);

/// Checks the registers the hypervisor entered with, makes the input and output slices, runs
/// the execution ([`crate::execute`]) and ends it with [`done`]. A `None` input (registers
/// that break the ABI) is answered by `execute` with a refusal; an output that breaks it
/// leaves nowhere to answer: [`abort`].
extern "C" fn entry(input: u64, len: u64, output: u64, cap: u64) -> ! {
    if output != pal::OUTPUT_BASE || cap > MAX_IO_LEN {
        abort();
    }
    let (Ok(out_addr), Ok(cap)) = (usize::try_from(output), usize::try_from(cap)) else { abort() };
    let out_ptr = core::ptr::with_exposed_provenance_mut::<u8>(out_addr);
    // SAFETY: the hypervisor maps `pal::OUTPUT_BASE` .. + `MAX_IO_LEN` readable and writable
    // for the PAL, backed by frames nothing else maps (hypercall::pal, "The address space"),
    // and `cap <= MAX_IO_LEN`. No Rust object lives there: the image's segments start at
    // `pal::IMAGE_BASE`, above the output (checked by a const assertion in hypercall.rs), and
    // the stack lies below the input. The address is non-null and u8 needs no alignment. This
    // is the only reference to the range: `entry` runs once per execution, never returns, and
    // the slice lives only in this frame and the calls below.
    let output = unsafe { core::slice::from_raw_parts_mut(out_ptr, cap) };
    let input_ok = input == pal::INPUT_BASE && len <= MAX_IO_LEN;
    let input = match (usize::try_from(input), usize::try_from(len)) {
        (Ok(addr), Ok(len)) if input_ok => {
            let ptr = core::ptr::with_exposed_provenance::<u8>(addr);
            // SAFETY: as for the output: `pal::INPUT_BASE` .. + `MAX_IO_LEN` is mapped for
            // the PAL alone, holds no Rust object, does not overlap the output (`OUTPUT_BASE
            // = INPUT_BASE + MAX_IO_LEN`), and `len <= MAX_IO_LEN`. Nothing writes it during
            // the execution (the hypervisor copied the input in before entering).
            Some(unsafe { core::slice::from_raw_parts(ptr, len) })
        }
        _ => None,
    };
    done(crate::execute(input, output))
}

/// Ends the execution: the output is the first `len` bytes of the output buffer. A `len`
/// beyond the capacity makes the hypervisor answer the guest with [`Status::TooLarge`].
pub fn done(len: u64) -> ! {
    // SAFETY: `VMMCALL` with RAX = `pal::DONE`, RBX = length ends the execution; the
    // hypervisor does not resume this one (the next enters at `_start` with a fresh stack),
    // so clobbering RBX, which LLVM reserves, does no harm; `ud2` stops the PAL if it ever
    // came back. The asm may read memory (no `nomem`): the output written before is in memory
    // when the hypervisor copies it out.
    unsafe {
        asm!(
            "mov rbx, {len}",
            "vmmcall",
            "ud2",
            len = in(reg) len,
            in("rax") pal::DONE,
            options(noreturn, nostack),
        );
    }
}

/// Stops the PAL: `ud2` raises `#UD`, which the PAL does not handle (it has no IDT), so the
/// hypervisor kills it (`Status::PalFault`). A crashed PAL is dead: the trusted code fails
/// only by stopping, never by answering wrongly.
pub fn abort() -> ! {
    // SAFETY: `ud2` touches no memory and no register; it never completes.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// One service call: RAX = `service`, (RBX, RCX, RDX, RSI) = `args`; returns (RAX, RBX).
///
/// # Safety
/// The arguments must suit the service: a pointer argument must be valid for the hypervisor
/// to read or write the service's bytes at, and that memory must not be in use by anything
/// else during the call.
unsafe fn vmmcall(service: Service, args: [u64; 4]) -> (u64, u64) {
    let [rbx, rcx, rdx, rsi] = args;
    let status: u64;
    let value: u64;
    // LLVM reserves RBX on x86-64 (it may hold the base pointer), so RBX cannot be an asm
    // operand. The argument goes in a scratch register `{b}` that `xchg` swaps into RBX for
    // the call; the second `xchg` puts the answer in `{b}` and RBX's own value back. (Where
    // RBX is free, LLVM may pick it as `{b}`: the `xchg`s are then no-ops, still right; `{b}`
    // is never RCX, RDX or RSI, which are named operands.) The hypervisor promises to change
    // only RAX and RBX; to stay conservative RCX, RDX and RSI are declared changed too, and
    // flags are not declared preserved.
    // SAFETY: VMMCALL under the vpr hypervisor changes no memory but what the service writes
    // at the pointer the caller vouches for (no `nomem`: the compiler assumes memory may
    // change) and does not touch the stack (`nostack`). RBX is restored before the asm ends.
    unsafe {
        asm!(
            "xchg {b}, rbx",
            "vmmcall",
            "xchg {b}, rbx",
            b = inout(reg) rbx => value,
            inout("rax") service as u64 => status,
            inout("rcx") rcx => _,
            inout("rdx") rdx => _,
            inout("rsi") rsi => _,
            options(nostack),
        );
    }
    (status, value)
}

/// `Ok` for [`Status::Ok`], else the status; a number the ABI does not define counts as
/// [`Status::Unavailable`].
fn check(rax: u64) -> Result<(), Status> {
    match Status::from_u64(rax) {
        Some(Status::Ok) => Ok(()),
        Some(status) => Err(status),
        None => Err(Status::Unavailable),
    }
}

/// Fills `buf` with random bytes from the hypervisor (RDRAND), [`pal::MAX_RANDOM_LEN`] at a
/// time.
///
/// # Errors
/// The hypervisor's status, e.g. [`Status::Unavailable`] without RDRAND; then `buf` may be
/// partly filled.
pub fn random(buf: &mut [u8]) -> Result<(), Status> {
    for chunk in buf.chunks_mut(RANDOM_CHUNK) {
        let (ptr, len) = (chunk.as_mut_ptr() as u64, chunk.len() as u64);
        // SAFETY: `chunk` is writable for `len` (at most MAX_RANDOM_LEN) bytes and borrowed
        // mutably for the call. It lies in memory the PAL may write (the stack or a writable
        // segment: the heap is in `.bss`), as the hypervisor requires.
        let (rax, _) = unsafe { vmmcall(Service::Random, [ptr, len, 0, 0]) };
        check(rax)?;
    }
    Ok(())
}

/// The PAL's identity: the SHA-256 of its image, as the hypervisor measured it.
///
/// # Errors
/// The hypervisor's status.
pub fn identity() -> Result<[u8; 32], Status> {
    let mut out = [0u8; 32];
    // SAFETY: `out` is 32 writable bytes on the stack, borrowed mutably for the call.
    let (rax, _) = unsafe { vmmcall(Service::Identity, [out.as_mut_ptr() as u64, 0, 0, 0]) };
    check(rax)?;
    Ok(out)
}

/// The value of the trusted counter this PAL names `name` (`pal::counter_id`).
///
/// # Errors
/// The hypervisor's status.
pub fn counter_read(name: &[u8; 32]) -> Result<u64, Status> {
    counter(Service::CounterRead, name)
}

/// Adds one to the trusted counter named `name`; returns the new value.
///
/// # Errors
/// The hypervisor's status ([`Status::BadArgument`] at `u64::MAX`, [`Status::NoMemory`] when
/// the TCC keeps no more counters).
pub fn counter_increment(name: &[u8; 32]) -> Result<u64, Status> {
    counter(Service::CounterIncrement, name)
}

/// [`Service::CounterRead`] or [`Service::CounterIncrement`] of the counter `name`.
fn counter(service: Service, name: &[u8; 32]) -> Result<u64, Status> {
    // The hypervisor reads the name only from memory the PAL may write: a copy on the stack.
    let mut name = *name;
    // SAFETY: `name` is a 32-byte array on the stack, borrowed mutably for the call; the
    // hypervisor reads it and writes nothing.
    let (rax, value) = unsafe { vmmcall(service, [name.as_mut_ptr() as u64, 0, 0, 0]) };
    check(rax).map(|()| value)
}

/// Evidence from the hypervisor that this PAL vouches for `data`: the [`ATTESTATION_LEN`]
/// bytes of [`Service::Attest`] (whether it is simulated, 1 byte; the TCC key, 65; its
/// certificate, 64; the signature, 64).
///
/// # Errors
/// The hypervisor's status (e.g. [`Status::Unavailable`] without a TCC key).
pub fn attest(data: &[u8; 32]) -> Result<[u8; ATTESTATION_LEN], Status> {
    // The hypervisor reads the data only from memory the PAL may write: a copy on the stack.
    let mut data = *data;
    let mut out = [0u8; ATTESTATION_LEN];
    let args = [data.as_mut_ptr() as u64, out.as_mut_ptr() as u64, 0, 0];
    // SAFETY: `data` (32 bytes) and `out` (ATTESTATION_LEN bytes) are distinct arrays on the
    // stack, writable and borrowed mutably for the call; the hypervisor reads the first and
    // writes the second.
    let (rax, _) = unsafe { vmmcall(Service::Attest, args) };
    check(rax)?;
    Ok(out)
}

/// Most bytes a uTPM quote takes: [`pal::MAX_QUOTE_LEN`].
const MAX_QUOTE_LEN: usize = 512;
const _: () = assert!(MAX_QUOTE_LEN as u64 == pal::MAX_QUOTE_LEN);

/// A uTPM quote of the uPCRs `selection` names over `nonce_data` (a verifier's nonce, then
/// the PAL's data): `TPM2B_ATTEST` ‖ `TPMT_SIGNATURE` (`vpr_proto::utpm`).
///
/// # Errors
/// [`Status::BadArgument`] for a selection beyond the uPCRs, else the hypervisor's status.
pub fn quote(nonce_data: &[u8; 64], selection: u8) -> Result<Vec<u8>, Status> {
    let mut input = *nonce_data;
    let mut out = vec![0u8; MAX_QUOTE_LEN];
    let args = [
        input.as_mut_ptr() as u64,
        u64::from(selection),
        out.as_mut_ptr() as u64,
        MAX_QUOTE_LEN as u64,
    ];
    // SAFETY: `input` (64 bytes, on the stack) and `out` (MAX_QUOTE_LEN bytes, on the heap
    // in `.bss`) are distinct, writable and borrowed mutably for the call; the hypervisor
    // reads the first and writes at most MAX_QUOTE_LEN bytes of the second.
    let (rax, len) = unsafe { vmmcall(Service::Quote, args) };
    check(rax)?;
    let len =
        usize::try_from(len).ok().filter(|&len| len <= MAX_QUOTE_LEN).ok_or(Status::Unavailable)?;
    out.truncate(len);
    Ok(out)
}

/// Seals `data` (at most [`pal::MAX_SEAL_LEN`] bytes) to this PAL's identity; the blob is
/// [`pal::SEAL_OVERHEAD`] bytes longer.
///
/// # Errors
/// [`Status::TooLarge`] for more than [`pal::MAX_SEAL_LEN`] bytes, else the hypervisor's status.
pub fn seal(data: &[u8]) -> Result<Vec<u8>, Status> {
    if data.len() > MAX_SEAL_LEN {
        return Err(Status::TooLarge);
    }
    transform(Service::Seal, data, data.len() + SEAL_OVERHEAD)
}

/// Opens a blob [`seal`] made for this PAL on this boot.
///
/// # Errors
/// [`Status::Refused`] for a blob altered, sealed by another PAL or on another boot;
/// [`Status::TooLarge`] for a blob longer than any seal makes; else the hypervisor's status.
pub fn unseal(blob: &[u8]) -> Result<Vec<u8>, Status> {
    if blob.len() > MAX_SEAL_LEN + SEAL_OVERHEAD {
        return Err(Status::TooLarge);
    }
    transform(Service::Unseal, blob, blob.len().saturating_sub(SEAL_OVERHEAD))
}

/// [`Service::Seal`] or [`Service::Unseal`] of `input` into a buffer of `cap` bytes.
fn transform(service: Service, input: &[u8], cap: usize) -> Result<Vec<u8>, Status> {
    // Copies on the heap (in `.bss`, writable, as the hypervisor requires of every pointer
    // even for input), each at least one byte long so that both pointers are real.
    let mut input_copy = Vec::with_capacity(input.len().max(1));
    input_copy.extend_from_slice(input);
    let mut out = vec![0u8; cap.max(1)];
    let args =
        [input_copy.as_mut_ptr() as u64, input.len() as u64, out.as_mut_ptr() as u64, cap as u64];
    // SAFETY: `input_copy` holds `input.len()` initialized bytes and `out` at least `cap`,
    // two distinct heap allocations in the PAL's writable memory, borrowed mutably for the
    // call; the hypervisor reads the first and writes at most `cap` bytes of the second.
    let (rax, len) = unsafe { vmmcall(service, args) };
    check(rax)?;
    // The hypervisor writes at most `cap` bytes; a longer length breaks the ABI.
    let len = usize::try_from(len).ok().filter(|&len| len <= cap).ok_or(Status::Unavailable)?;
    out.truncate(len);
    Ok(out)
}
