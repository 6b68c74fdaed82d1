//! The PAL tests: an untrusted test guest registers, executes and unregisters PALs through
//! the hypercall ABI, and attacks it; hostile PALs attack their own isolation.
//!
//! The guest runs the `script` program: the test writes a list of hypercalls into the guest's
//! memory, the guest makes them with VMMCALL and stores what came back, and the test reads
//! that afterwards. The guest's data pages (at `DATA` = 0x5000):
//!
//! | GPA | what |
//! | --- | --- |
//! | `0x5000` | the script (two pages) |
//! | `0x7000`, `0x8000`, `0x9000` | PAL images |
//! | `0xA000` | input |
//! | `0xB000` | output buffers |
//! | `0xC000` | register results (40 bytes each), output lengths from `0xC100` |

use super::{expect_killed, rdtsc, TestResult};
use crate::guest::{pal_image, program, GuestMemory, Options, TestGuest, DATA, PAL_SECRET};
use crate::mem;
use crate::pal::Pals;
use crate::svm::Svm;
use crate::tcc::Tcc;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vpr_hypervisor::memory::PAGE_SIZE;
use vpr_hypervisor::vm::{GuestRegisters, HypercallAction, Outcome, VmExit};
use vpr_proto::attest::AttestError;
use vpr_proto::hypercall::{Call, RegisterOut, Status, ABI_VERSION, MAX_IMAGE_LEN, MAX_IO_LEN};
use vpr_proto::Digest;

const SCRIPT: u64 = DATA;
const IMAGE_A: u64 = 0x7000;
const IMAGE_B: u64 = 0x8000;
const INPUT: u64 = 0xA000;
const OUTPUT: u64 = 0xB000;
const RESULT: u64 = 0xC000;
const OUT_LEN: u64 = 0xC100;
/// Data pages: the guest's memory ends at 0x10000.
const DATA_PAGES: u64 = 11;
const RAM_END: u64 = 0x10000;
/// In a script, RBX = this means "the handle the last register returned".
const PREV: u64 = u64::MAX - 1;
/// Entries that fit in the script's two pages.
pub(super) const MAX_CALLS: usize = 63;

const VERSION: u64 = Call::Version as u64;
const REGISTER: u64 = Call::Register as u64;
const EXECUTE: u64 = Call::Execute as u64;
const UNREGISTER: u64 = Call::Unregister as u64;

/// One hypercall of a script: RAX, RBX, RCX, RDX, RSI, RDI, R8.
pub(super) type Args = [u64; 7];

/// What came back from one call: RAX, RBX, RCX, RDX, RSI, RDI, R8, R9, and the TSC ticks the
/// hypervisor spent on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply {
    pub(super) regs: [u64; 8],
    pub(super) ticks: u64,
}

impl Reply {
    pub(super) fn status(&self) -> Option<Status> {
        Status::from_u64(self.regs[0])
    }
}

/// Runs a fresh script guest whose memory `setup` fills, making `calls` against `pals`;
/// returns the replies and the guest (for its memory).
fn run_script(
    svm: &Svm,
    pals: &mut Pals<'_>,
    setup: &[(u64, &[u8])],
    calls: &[Args],
) -> Result<(Vec<Reply>, TestGuest), String> {
    run_script_in(svm, pals, DATA_PAGES, setup, calls)
}

/// [`run_script`] in a guest with `data_pages` data pages from [`DATA`] (the script takes
/// the first two).
pub(super) fn run_script_in(
    svm: &Svm,
    pals: &mut Pals<'_>,
    data_pages: u64,
    setup: &[(u64, &[u8])],
    calls: &[Args],
) -> Result<(Vec<Reply>, TestGuest), String> {
    if calls.len() > MAX_CALLS {
        return Err(format!("{} calls do not fit in a script", calls.len()));
    }
    let options = Options { data_pages, ..Options::default() };
    let mut guest = TestGuest::new(svm, program::script(), options)
        .map_err(|e| format!("guest set-up: {e}"))?;
    let memory = guest.memory();
    let mut ok = memory.write(SCRIPT, &(calls.len() as u64).to_le_bytes());
    for (i, call) in calls.iter().enumerate() {
        let at = SCRIPT + 64 + 128 * i as u64;
        for (j, value) in call.iter().enumerate() {
            ok &= memory.write(at + 8 * j as u64, &value.to_le_bytes());
        }
    }
    for (gpa, bytes) in setup {
        ok &= memory.write(*gpa, bytes);
    }
    if !ok {
        return Err(String::from("the script does not fit in the guest"));
    }
    let mut ticks = Vec::new();
    let outcome = guest.run_with_memory(|r: &mut GuestRegisters, memory: &mut GuestMemory| {
        let start = rdtsc();
        let action = pals.hypercall(r, memory);
        ticks.push(rdtsc() - start);
        action
    });
    if outcome != Outcome::Halted || ticks.len() != calls.len() {
        return Err(format!(
            "script guest: {outcome:?} after {} of {} calls",
            ticks.len(),
            calls.len()
        ));
    }
    let memory = guest.memory();
    let mut replies = Vec::new();
    for (i, ticks) in ticks.into_iter().enumerate() {
        let at = SCRIPT + 64 + 128 * i as u64 + 64;
        let mut regs = [0; 8];
        for (j, reg) in regs.iter_mut().enumerate() {
            *reg = read_u64(memory, at + 8 * j as u64)?;
        }
        replies.push(Reply { regs, ticks });
    }
    Ok((replies, guest))
}

pub(super) fn read_u64(memory: &mut GuestMemory, gpa: u64) -> Result<u64, String> {
    let mut bytes = [0; 8];
    if !memory.read(gpa, &mut bytes) {
        return Err(format!("guest-physical {gpa:#x} is outside the guest"));
    }
    Ok(u64::from_le_bytes(bytes))
}

/// [`run_script`] of the calls of `calls`, failing unless each reply has the status paired
/// with its call.
fn run_expecting(
    svm: &Svm,
    pals: &mut Pals<'_>,
    setup: &[(u64, &[u8])],
    calls: &[(Args, Status)],
) -> Result<(Vec<Reply>, TestGuest), String> {
    let args: Vec<Args> = calls.iter().map(|(a, _)| *a).collect();
    let expected: Vec<Status> = calls.iter().map(|(_, s)| *s).collect();
    let (replies, guest) = run_script(svm, pals, setup, &args)?;
    expect_statuses(&replies, &expected)?;
    Ok((replies, guest))
}

/// Fails unless each reply has the expected status.
fn expect_statuses(replies: &[Reply], expected: &[Status]) -> TestResult {
    for (i, (reply, status)) in replies.iter().zip(expected).enumerate() {
        if reply.status() != Some(*status) {
            return Err(format!("call #{i}: expected {status}, got RAX {:#x}", reply.regs[0]));
        }
    }
    if replies.len() != expected.len() {
        return Err(format!("{} replies, {} expected", replies.len(), expected.len()));
    }
    Ok(())
}

fn len(image: &[u8]) -> u64 {
    image.len() as u64
}

/// The ABI version, and unknown call numbers.
pub fn hypercall_version(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = Pals::new(svm, tcc);
    let calls =
        [[VERSION, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0], [VERSION + 7, 0, 0, 0, 0, 0, 0]];
    let (replies, _) = run_script(svm, &mut pals, &[], &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::UnknownCall, Status::UnknownCall])?;
    if replies[0].regs[1] != ABI_VERSION {
        return Err(format!("version {}", replies[0].regs[1]));
    }
    Ok(())
}

/// SHA-256 on this target (the portable back end) against the FIPS 180-2 "abc" vector.
pub fn sha256_known_answer(_svm: &Svm, _tcc: &Tcc) -> TestResult {
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let digest = format!("{}", Digest::of(b"abc"));
    if digest != expected {
        return Err(format!("SHA-256(\"abc\") = {digest}"));
    }
    Ok(())
}

/// Register, execute twice (output checked, the counter in PAL data persists), registers not
/// leaked, unregister (the frames are wiped, the handle is dead); the measurement is SHA-256
/// of the image.
pub fn pal_lifecycle(svm: &Svm, tcc: &Tcc) -> TestResult {
    let image = &pal_image(program::pal_sum());
    let input: [u8; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let mut pals = Pals::new(svm, tcc);
    let exec = |out: u64, out_len: u64| [EXECUTE, PREV, INPUT, 10, out, 64, out_len];
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        exec(OUTPUT, OUT_LEN),
        exec(OUTPUT + 0x100, OUT_LEN + 8),
    ];
    let setup: [(u64, &[u8]); 2] = [(IMAGE_A, image), (INPUT, &input)];
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::Ok, Status::Ok])?;
    // Unregister (from another guest run: the handle is just a number) wipes the frames.
    let handle = replies[0].regs[1];
    let (frames, pages) = pals.frames(handle).ok_or("the PAL is not registered")?;
    if mem::frames_zeroed(frames, pages) {
        return Err(String::from("the PAL's frames are blank while it is registered"));
    }
    let later = [
        [UNREGISTER, handle, 0, 0, 0, 0, 0],
        [EXECUTE, handle, INPUT, 10, OUTPUT + 0x200, 64, OUT_LEN + 16],
    ];
    let (after, _) = run_script(svm, &mut pals, &[], &later)?;
    expect_statuses(&after, &[Status::Ok, Status::NoSuchHandle])?;
    if !mem::frames_zeroed(frames, pages) {
        return Err(String::from("unregister left the PAL's frames unwiped"));
    }
    let memory = guest.memory();
    let mut out = [0; 40];
    memory.read(RESULT, &mut out);
    let registered = RegisterOut::from_bytes(&out);
    if registered.handle != replies[0].regs[1] || registered.measurement != Digest::of(image).0 {
        return Err(format!("register wrote {registered:x?}"));
    }
    log::info!("hv: pal image {} bytes, identity {}", image.len(), Digest::of(image));
    let sum: u64 = input.iter().map(|&b| u64::from(b)).sum();
    let xor = input.iter().fold(0, |x, &b| x ^ u64::from(b));
    for (run, reply) in replies[1..3].iter().enumerate() {
        let base = OUTPUT + 0x100 * run as u64;
        let got =
            [read_u64(memory, base)?, read_u64(memory, base + 8)?, read_u64(memory, base + 16)?];
        let out_len = read_u64(memory, OUT_LEN + 8 * run as u64)?;
        if got != [sum, xor, run as u64 + 1] || out_len != 24 || reply.regs[1] != 24 {
            return Err(format!("execution {run}: output {got:?}, length {out_len}"));
        }
        // RCX, RDX, RSI, RDI, R8 come back as the guest passed them, R9 as the zero it set:
        // none of the PAL's secret.
        let sent = &calls[run + 1];
        let expected = [sent[2], sent[3], sent[4], sent[5], sent[6], 0];
        if reply.regs[2..] != expected || reply.regs.contains(&PAL_SECRET) {
            return Err(format!("execution {run}: registers came back as {:x?}", reply.regs));
        }
    }
    log::info!(
        "hv: pal register: {} TSC ticks; execute: {} and {} TSC ticks",
        replies[0].ticks,
        replies[1].ticks,
        replies[2].ticks
    );
    Ok(())
}

/// The PAL's frames are in no translation of the guest's nested page table, and a guest
/// reading them by their host address faults and is killed; the PAL still runs afterwards.
pub fn pal_memory_unreachable(svm: &Svm, tcc: &Tcc) -> TestResult {
    let image = &pal_image(program::pal_sum());
    let mut pals = Pals::new(svm, tcc);
    let calls = [[REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0]];
    let (replies, mut guest) = run_script(svm, &mut pals, &[(IMAGE_A, image)], &calls)?;
    expect_statuses(&replies, &[Status::Ok])?;
    let handle = replies[0].regs[1];
    let (frames, pages) = pals.frames(handle).ok_or("the PAL is not registered")?;
    let pal_range = frames.as_u64()..frames.as_u64() + pages * PAGE_SIZE;
    for gpa in (0..RAM_END).step_by(4096) {
        match guest.translate(gpa) {
            Some(t) if pal_range.contains(&t.address.as_u64()) => {
                return Err(format!("guest-physical {gpa:#x} reaches the PAL"));
            }
            _ => {}
        }
    }
    // The guest aims at one of the PAL's frames (its stack's first): with guest-physical =
    // host-physical that is where it would be; its nested page table maps nothing there.
    let code = frames.as_u64() + 3 * PAGE_SIZE;
    let options = Options { data_pages: 1, ..Options::default() };
    let mut peek =
        TestGuest::new(svm, program::peek(), options).map_err(|e| format!("guest set-up: {e}"))?;
    peek.memory().write(DATA, &code.to_le_bytes());
    let outcome = peek.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    expect_killed(
        outcome,
        |exit| matches!(exit, VmExit::NestedPageFault { gpa, error } if *gpa == code && error & 0x2 == 0),
    )?;
    let calls = [[EXECUTE, handle, INPUT, 1, OUTPUT, 64, OUT_LEN]];
    let (replies, _) = run_script(svm, &mut pals, &[], &calls)?;
    expect_statuses(&replies, &[Status::Ok])
}

/// A guest reading the hypervisor's image is killed by a nested page fault.
pub fn guest_cannot_read_hypervisor(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let image = mem::image_range().start;
    let options = Options { data_pages: 1, ..Options::default() };
    let mut peek =
        TestGuest::new(svm, program::peek(), options).map_err(|e| format!("guest set-up: {e}"))?;
    peek.memory().write(DATA, &image.to_le_bytes());
    let outcome = peek.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    expect_killed(
        outcome,
        |exit| matches!(exit, VmExit::NestedPageFault { gpa, .. } if *gpa == image),
    )
}

/// Hostile hypercalls: bad numbers, lengths, pointers and handles each get their status,
/// and the PAL and the hypervisor carry on.
pub fn hostile_hypercalls(svm: &Svm, tcc: &Tcc) -> TestResult {
    let image = &pal_image(program::pal_sum());
    let n = len(image);
    let hv = mem::image_range().start;
    let mut pals = Pals::new(svm, tcc);
    let calls: [(Args, Status); 22] = [
        ([VERSION + 0x100, 0, 0, 0, 0, 0, 0], Status::UnknownCall),
        ([REGISTER, IMAGE_A, 0, RESULT, 0, 0, 0], Status::BadImage),
        ([REGISTER, IMAGE_A, MAX_IMAGE_LEN + 1, RESULT, 0, 0, 0], Status::TooLarge),
        ([REGISTER, IMAGE_A, u64::MAX, RESULT, 0, 0, 0], Status::TooLarge),
        ([REGISTER, 0xFFFF_F000, n, RESULT, 0, 0, 0], Status::BadPointer),
        ([REGISTER, u64::MAX - 10, n, RESULT, 0, 0, 0], Status::BadPointer),
        ([REGISTER, RAM_END - 0x100, 0x200, RESULT, 0, 0, 0], Status::BadPointer),
        ([REGISTER, IMAGE_A, n, IMAGE_A + 8, 0, 0, 0], Status::BadPointer),
        ([REGISTER, IMAGE_A, n, hv, 0, 0, 0], Status::BadPointer),
        ([REGISTER, hv, n, RESULT, 0, 0, 0], Status::BadPointer),
        ([EXECUTE, 0x101, INPUT, 1, OUTPUT, 64, OUT_LEN], Status::NoSuchHandle),
        ([EXECUTE, 0, INPUT, 1, OUTPUT, 64, OUT_LEN], Status::NoSuchHandle),
        ([UNREGISTER, 0x4242, 0, 0, 0, 0, 0], Status::NoSuchHandle),
        ([REGISTER, IMAGE_A, n, RESULT, 0, 0, 0], Status::Ok),
        ([EXECUTE, PREV, INPUT, MAX_IO_LEN + 1, OUTPUT, 64, OUT_LEN], Status::TooLarge),
        ([EXECUTE, PREV, INPUT, 1, OUTPUT, u64::MAX, OUT_LEN], Status::TooLarge),
        ([EXECUTE, PREV, INPUT, 1, OUTPUT, 64, OUTPUT + 8], Status::BadPointer),
        ([EXECUTE, PREV, INPUT, 1, hv, 64, OUT_LEN], Status::BadPointer),
        ([EXECUTE, PREV, INPUT, 1, OUTPUT, 8, OUT_LEN], Status::TooLarge),
        ([EXECUTE, PREV, INPUT, 1, OUTPUT, 64, OUT_LEN], Status::Ok),
        ([UNREGISTER, PREV, 0, 0, 0, 0, 0], Status::Ok),
        ([UNREGISTER, PREV, 0, 0, 0, 0, 0], Status::NoSuchHandle),
    ];
    let (_, mut guest) = run_expecting(svm, &mut pals, &[(IMAGE_A, image)], &calls)?;
    // The execution whose output did not fit still ran: the counter says 2.
    let counter = read_u64(guest.memory(), OUTPUT + 16)?;
    if counter != 2 {
        return Err(format!("PAL counter {counter} after two executions"));
    }
    Ok(())
}

/// PALs that fault (outside their memory, writing their code, executing their data), halt or
/// touch a port are killed and unregistered; one that claims too much output gets
/// `TooLarge`.
pub fn hostile_pal_is_killed(svm: &Svm, tcc: &Tcc) -> TestResult {
    let hostile = &pal_image(program::pal_hostile());
    let good = &pal_image(program::pal_sum());
    let mut pals = Pals::new(svm, tcc);
    let reg = |image: u64, n: u64| [REGISTER, image, n, RESULT, 0, 0, 0];
    let exec = |attack: u64| [EXECUTE, PREV, INPUT + attack, 1, OUTPUT, 64, OUT_LEN];
    let h = len(hostile);
    let calls = [
        (reg(IMAGE_B, h), Status::Ok),
        (exec(0), Status::PalFault),
        (exec(0), Status::NoSuchHandle),
        (reg(IMAGE_B, h), Status::Ok),
        (exec(1), Status::PalFault),
        (reg(IMAGE_B, h), Status::Ok),
        (exec(2), Status::PalFault),
        (reg(IMAGE_B, h), Status::Ok),
        (exec(3), Status::TooLarge),
        ([UNREGISTER, PREV, 0, 0, 0, 0, 0], Status::Ok),
        (reg(IMAGE_B, h), Status::Ok),
        (exec(4), Status::PalFault),
        (reg(IMAGE_B, h), Status::Ok),
        (exec(5), Status::PalFault),
        (reg(IMAGE_A, len(good)), Status::Ok),
        (exec(0), Status::Ok),
        ([UNREGISTER, PREV, 0, 0, 0, 0, 0], Status::Ok),
    ];
    let setup: [(u64, &[u8]); 3] =
        [(IMAGE_A, good), (IMAGE_B, hostile), (INPUT, &[0, 1, 2, 3, 4, 5])];
    run_expecting(svm, &mut pals, &setup, &calls).map(drop)
}

/// A PAL cannot call the guest interface (no re-entrancy): execute and register answer
/// `Busy`, an unknown number `UnknownCall`, and the PAL finishes normally.
pub fn pal_reentrancy_refused(svm: &Svm, tcc: &Tcc) -> TestResult {
    let image = &pal_image(program::pal_reenter());
    let mut pals = Pals::new(svm, tcc);
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        [EXECUTE, PREV, INPUT, 0, OUTPUT, 64, OUT_LEN],
        [UNREGISTER, PREV, 0, 0, 0, 0, 0],
    ];
    let (replies, mut guest) = run_script(svm, &mut pals, &[(IMAGE_A, image)], &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::Ok, Status::Ok])?;
    let memory = guest.memory();
    let got =
        [read_u64(memory, OUTPUT)?, read_u64(memory, OUTPUT + 8)?, read_u64(memory, OUTPUT + 16)?];
    let expected = [Status::Busy, Status::Busy, Status::UnknownCall].map(Status::as_u64);
    if got != expected {
        return Err(format!("the PAL saw statuses {got:?}"));
    }
    Ok(())
}

/// The cost of register and execute, over many calls.
pub fn pal_cost(svm: &Svm, tcc: &Tcc) -> TestResult {
    const EXECUTIONS: usize = 50;
    let image = &pal_image(program::pal_sum());
    let mut pals = Pals::new(svm, tcc);
    let mut calls = Vec::from([[REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0]]);
    calls.extend((0..EXECUTIONS).map(|_| [EXECUTE, PREV, INPUT, 64, OUTPUT, 64, OUT_LEN]));
    calls.push([UNREGISTER, PREV, 0, 0, 0, 0, 0]);
    let (replies, mut guest) = run_script(svm, &mut pals, &[(IMAGE_A, image)], &calls)?;
    if let Some((i, r)) = replies.iter().enumerate().find(|(_, r)| r.status() != Some(Status::Ok)) {
        return Err(format!("call #{i}: RAX {:#x}", r.regs[0]));
    }
    let counter = read_u64(guest.memory(), OUTPUT + 16)?;
    if counter != EXECUTIONS as u64 {
        return Err(format!("PAL counter {counter} after {EXECUTIONS} executions"));
    }
    let execute: u64 = replies[1..=EXECUTIONS].iter().map(|r| r.ticks).sum();
    // The time of a register as the guest sees it includes the marker line the hypervisor
    // writes to the serial port (which under TCG costs more than the rest); the hypervisor
    // also counts its work alone.
    log::info!(
        "hv: pal register {} TSC ticks ({} without its log line), execute {} TSC ticks (mean \
         of {EXECUTIONS}, 64 bytes in), unregister {}",
        replies[0].ticks,
        pals.register_ticks,
        execute / EXECUTIONS as u64,
        replies[EXECUTIONS + 1].ticks
    );
    Ok(())
}

/// Images that are not acceptable PAL executables (a flat blob, writable code, a segment
/// outside the image window, a position-independent executable) are refused with
/// `BadImage`, leave nothing registered, and a good image registered after them runs.
pub fn bad_images_refused(svm: &Svm, tcc: &Tcc) -> TestResult {
    let good = pal_image(program::pal_sum());
    let flat = program::pal_sum();
    let mut writable_code = good.clone();
    writable_code[64 + 4] = 7; // first program header's p_flags: R|W|X
    let mut outside = good.clone();
    outside[64 + 16..64 + 24].copy_from_slice(&0x1000u64.to_le_bytes()); // p_vaddr below the window
    let mut dynamic = good.clone();
    dynamic[16] = 3; // e_type ET_DYN
    let mut pals = Pals::new(svm, tcc);
    let reg = |image: u64, n: usize| [REGISTER, image, n as u64, RESULT, 0, 0, 0];
    let calls = [
        (reg(IMAGE_A, flat.len()), Status::BadImage),
        (reg(IMAGE_B, writable_code.len()), Status::BadImage),
        (reg(IMAGE_B + 0x800, outside.len()), Status::BadImage),
        (reg(INPUT, dynamic.len()), Status::BadImage),
        (reg(IMAGE_A + 0x800, good.len()), Status::Ok),
    ];
    let setup: [(u64, &[u8]); 5] = [
        (IMAGE_A, flat),
        (IMAGE_B, &writable_code),
        (IMAGE_B + 0x800, &outside),
        (INPUT, &dynamic),
        (IMAGE_A + 0x800, &good),
    ];
    let (replies, _) = run_expecting(svm, &mut pals, &setup, &calls)?;
    if pals.registered() != 1 {
        return Err(format!("{} PALs registered after refusals", pals.registered()));
    }
    let handle = replies[4].regs[1];
    let calls = [[EXECUTE, handle, INPUT, 3, OUTPUT, 64, OUT_LEN]];
    let (replies, mut guest) = run_script(svm, &mut pals, &[(INPUT, &[1, 2, 3])], &calls)?;
    expect_statuses(&replies, &[Status::Ok])?;
    let sum = read_u64(guest.memory(), OUTPUT)?;
    if sum != 6 {
        return Err(format!("sum {sum}"));
    }
    Ok(())
}

/// The PAL services: random bytes, its identity, trusted counters that belong to its
/// identity (they survive unregistering it and are not another PAL's), and the refusals of
/// wrong arguments.
pub fn pal_services(svm: &Svm, tcc: &Tcc) -> TestResult {
    let image = &pal_image(program::pal_services());
    let other = &pal_image(program::pal_sum());
    let mut pals = Pals::new(svm, tcc);
    let exec = |out: u64| [EXECUTE, PREV, INPUT, 0, out, 1024, OUT_LEN];
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        exec(OUTPUT),
        [UNREGISTER, PREV, 0, 0, 0, 0, 0],
        [REGISTER, IMAGE_B, len(other), RESULT + 40, 0, 0, 0],
        [REGISTER, IMAGE_A, len(image), RESULT + 80, 0, 0, 0],
        exec(OUTPUT + 1024),
    ];
    let setup: [(u64, &[u8]); 2] = [(IMAGE_A, image), (IMAGE_B, other)];
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok; 6])?;
    let memory = guest.memory();
    let mut outputs = [[0u8; 224]; 2];
    for (i, out) in outputs.iter_mut().enumerate() {
        if !memory.read(OUTPUT + 1024 * i as u64, out) {
            return Err(String::from("output outside the guest"));
        }
    }
    let word = |out: &[u8; 224], at: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&out[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let ok = Status::Ok.as_u64();
    for (run, out) in outputs.iter().enumerate() {
        // (RAX, RBX) after each call, as the PAL saw them.
        let results: Vec<(u64, u64)> =
            (0..10).map(|i| (word(out, 64 + 16 * i), word(out, 72 + 16 * i))).collect();
        let first = 2 * run as u64;
        let expected = [
            (ok, 0),
            (ok, 0),
            (ok, first + 1),
            (ok, first + 2),
            (ok, first + 2),
            (Status::BadPointer.as_u64(), 0), // a counter name in its code
            (Status::BadPointer.as_u64(), 0),
            (Status::TooLarge.as_u64(), 0),
            (Status::BadPointer.as_u64(), 0),
            (ok, 0),
        ];
        if results != expected {
            return Err(format!("run {run}: services answered {results:x?}"));
        }
        if out[32..64] != Digest::of(image).0 {
            return Err(format!("run {run}: identity {:x?}", &out[32..64]));
        }
    }
    if outputs[0][..32] == outputs[1][..32] || outputs[0][..32] == [0; 32] {
        return Err(String::from("random bytes repeat or are zero"));
    }
    Ok(())
}

/// The guest's XMM registers and MXCSR survive a PAL run that changes them all; the PAL
/// starts with a clean x87/SSE state and none of its values reach the guest.
pub fn vector_state_isolated(svm: &Svm, tcc: &Tcc) -> TestResult {
    const GUEST_MXCSR: u32 = 0x3F80; // round down, all exceptions masked
    let image = &pal_image(program::pal_vector());
    let mut pals = Pals::new(svm, tcc);
    let (replies, _) = run_script(
        svm,
        &mut pals,
        &[(IMAGE_A, image)],
        &[[REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0]],
    )?;
    expect_statuses(&replies, &[Status::Ok])?;
    let handle = replies[0].regs[1];
    let options = Options { data_pages: 3, ..Options::default() };
    let mut guest = TestGuest::new(svm, program::vector(), options)
        .map_err(|e| format!("guest set-up: {e}"))?;
    let patterns: Vec<u128> =
        (0..16u128).map(|i| 0x1111_2222_3333_4444_5555_6666_7777_0000 | (i + 1)).collect();
    let (out, out_len) = (DATA + 0x1000, DATA + 0x2000);
    let memory = guest.memory();
    let mut ok = true;
    for (i, p) in patterns.iter().enumerate() {
        ok &= memory.write(DATA + 16 * i as u64, &p.to_le_bytes());
    }
    let args = [EXECUTE, handle, DATA, 0, out, 1024, out_len];
    for (i, a) in args.iter().enumerate() {
        ok &= memory.write(DATA + 256 + 8 * i as u64, &a.to_le_bytes());
    }
    ok &= memory.write(DATA + 320, &GUEST_MXCSR.to_le_bytes());
    if !ok {
        return Err(String::from("the vector guest's data does not fit"));
    }
    let outcome = guest.run_with_memory(|r: &mut GuestRegisters, memory: &mut GuestMemory| {
        pals.hypercall(r, memory)
    });
    if outcome != Outcome::Halted {
        return Err(format!("vector guest: {outcome:?}"));
    }
    let memory = guest.memory();
    let status = read_u64(memory, DATA + 768)?;
    if status != Status::Ok.as_u64() {
        return Err(format!("execute returned {status:#x}"));
    }
    let mut after = [0u8; 256];
    let mut mxcsr = [0u8; 4];
    let mut seen = [0u8; 264];
    if !(memory.read(DATA + 512, &mut after)
        && memory.read(DATA + 776, &mut mxcsr)
        && memory.read(out, &mut seen))
    {
        return Err(String::from("results outside the guest"));
    }
    let xmm = |bytes: &[u8], i: usize| {
        let mut b = [0; 16];
        b.copy_from_slice(&bytes[16 * i..16 * i + 16]);
        u128::from_le_bytes(b)
    };
    // What the PAL started with: zero XMM registers, MXCSR 0x1F80, FCW 0x037F, FSW 0.
    if (0..16).any(|i| xmm(&seen, i) != 0)
        || seen[256..260] != 0x1F80u32.to_le_bytes()
        || seen[260..264] != [0x7F, 0x03, 0, 0]
    {
        return Err(format!("the PAL started with {:x?}", &seen[..]));
    }
    // What the guest has afterwards: its own values, none of the PAL's.
    for (i, p) in patterns.iter().enumerate() {
        if xmm(&after, i) != *p {
            return Err(format!("guest XMM{i} came back as {:#x}", xmm(&after, i)));
        }
    }
    if u32::from_le_bytes(mxcsr) != GUEST_MXCSR {
        return Err(format!("guest MXCSR came back as {:#x}", u32::from_le_bytes(mxcsr)));
    }
    let secret = PAL_SECRET.to_le_bytes();
    if after.windows(8).any(|w| w == secret) {
        return Err(String::from("the PAL's secret reached the guest's vector registers"));
    }
    Ok(())
}

/// Sealing and attestation: a blob sealed by a PAL opens for the same image only, not when
/// one bit of it changed nor for another image; the evidence a PAL gets verifies with the
/// TCC key as its certifier, says it is simulated, and names the PAL and the data.
pub fn pal_seal_and_attest(svm: &Svm, tcc: &Tcc) -> TestResult {
    let code = program::pal_sealer();
    let image = &pal_image(code);
    // The same code with one more (unreachable) byte: another identity.
    let other = &pal_image(&[code, &[0x90]].concat());
    let data = [0x42u8; 32];
    let secret = b"the group key K and this replica's id";
    let mut pals = Pals::new(svm, tcc);
    let exec = |handle: u64, input: u64, len: u64, out: u64, out_len: u64| {
        [EXECUTE, handle, input, len, out, 1040, out_len]
    };
    let seal_input = [&[0u8][..], secret].concat();
    let attest_input = [&[2u8][..], &data].concat();
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        [REGISTER, IMAGE_B, len(other), RESULT + 40, 0, 0, 0],
    ];
    let setup: [(u64, &[u8]); 2] = [(IMAGE_A, image), (IMAGE_B, other)];
    let (replies, _) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::Ok])?;
    let (a, b) = (replies[0].regs[1], replies[1].regs[1]);
    let calls = [
        exec(a, INPUT, seal_input.len() as u64, OUTPUT, OUT_LEN),
        exec(a, INPUT + 0x100, attest_input.len() as u64, OUTPUT + 0x500, OUT_LEN + 8),
    ];
    let setup: [(u64, &[u8]); 2] = [(INPUT, &seal_input), (INPUT + 0x100, &attest_input)];
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::Ok])?;
    let memory = guest.memory();
    let (status, blob_len) = (read_u64(memory, OUTPUT)?, read_u64(memory, OUTPUT + 8)?);
    let want = secret.len() as u64 + vpr_proto::hypercall::pal::SEAL_OVERHEAD;
    if status != Status::Ok.as_u64() || blob_len != want {
        return Err(format!("seal: status {status:#x}, blob of {blob_len} bytes"));
    }
    let mut blob = alloc::vec![0; mem::usize_of(blob_len)];
    let mut evidence = [0u8; 194];
    if !memory.read(OUTPUT + 16, &mut blob) || !memory.read(OUTPUT + 0x500 + 16, &mut evidence) {
        return Err(String::from("outputs outside the guest"));
    }
    if read_u64(memory, OUTPUT + 0x500)? != Status::Ok.as_u64() {
        return Err(String::from("attest failed"));
    }
    if blob.windows(secret.len()).any(|w| w == secret) {
        return Err(String::from("the sealed blob shows the secret"));
    }
    // Unseal: by the sealer, by the sealer with one bit flipped, by the other image.
    let mut tampered = blob.clone();
    tampered[20] ^= 1;
    let unseal = |blob: &[u8]| [&[1u8][..], blob].concat();
    let inputs = [unseal(&blob), unseal(&tampered), unseal(&blob)];
    let calls = [
        exec(a, INPUT, inputs[0].len() as u64, OUTPUT, OUT_LEN),
        exec(a, INPUT + 0x100, inputs[1].len() as u64, OUTPUT + 0x500, OUT_LEN + 8),
        exec(b, INPUT + 0x200, inputs[2].len() as u64, OUTPUT + 0xA00, OUT_LEN + 16),
    ];
    let setup: [(u64, &[u8]); 3] =
        [(INPUT, &inputs[0]), (INPUT + 0x100, &inputs[1]), (INPUT + 0x200, &inputs[2])];
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok; 3])?;
    let memory = guest.memory();
    let statuses = [
        read_u64(memory, OUTPUT)?,
        read_u64(memory, OUTPUT + 0x500)?,
        read_u64(memory, OUTPUT + 0xA00)?,
    ];
    let refused = Status::Refused.as_u64();
    if statuses != [Status::Ok.as_u64(), refused, refused] {
        return Err(format!("unseal statuses {statuses:?}"));
    }
    let mut opened = alloc::vec![0; secret.len()];
    memory.read(OUTPUT + 16, &mut opened);
    if opened != secret || read_u64(memory, OUTPUT + 8)? != secret.len() as u64 {
        return Err(format!("unsealed {opened:x?}"));
    }
    // The evidence.
    let bytes: &[u8; vpr_proto::attest::SERVICE_LEN] = evidence
        .as_slice()
        .try_into()
        .map_err(|_| format!("{} bytes of evidence", evidence.len()))?;
    let attestation =
        vpr_proto::msg::Attestation::from_service_bytes(Digest::of(image), Digest(data), bytes)
            .ok_or("the evidence's first byte is neither 0 nor 1")?;
    let tcc_key = attestation.tcc_key;
    let (id_a, id_b, d) = (Digest::of(image), Digest::of(other), Digest(data));
    let checks = [
        (attestation.verify(&tcc_key, &id_a, &d, true), Ok(())),
        (attestation.verify(&tcc_key, &id_a, &d, false), Err(AttestError::Simulated)),
        (attestation.verify(&tcc_key, &id_b, &d, true), Err(AttestError::Identity(id_a))),
        (attestation.verify(&tcc_key, &id_a, &Digest([0; 32]), true), Err(AttestError::Data)),
    ];
    for (i, (got, want)) in checks.into_iter().enumerate() {
        if got != want {
            return Err(format!("attestation check {i}: {got:?}, expected {want:?}"));
        }
    }
    Ok(())
}

/// The TCC's attestation key, as the evidence of a sealer PAL registered in `pals` shows it
/// (until the uTPM, the key certifies itself: it is what verifiers must trust).
pub(super) fn tcc_key(svm: &Svm, pals: &mut Pals<'_>) -> Result<[u8; 65], String> {
    let image = &pal_image(program::pal_sealer());
    let input = [&[2u8][..], &[0; 32]].concat();
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        [EXECUTE, PREV, INPUT, input.len() as u64, OUTPUT, 1040, OUT_LEN],
        [UNREGISTER, PREV, 0, 0, 0, 0, 0],
    ];
    let setup: [(u64, &[u8]); 2] = [(IMAGE_A, image), (INPUT, &input)];
    let (replies, mut guest) = run_script(svm, pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok; 3])?;
    let mut key = [0; 65];
    if read_u64(guest.memory(), OUTPUT)? != Status::Ok.as_u64()
        || !guest.memory().read(OUTPUT + 16 + 1, &mut key)
    {
        return Err(String::from("attest failed"));
    }
    Ok(key)
}

/// Registers the sum PAL in a registry of its own (and unregisters it); its identity.
pub(super) fn register_sum_pal(svm: &Svm, tcc: &Tcc) -> Result<[u8; 32], String> {
    let image = &pal_image(program::pal_sum());
    let mut pals = Pals::new(svm, tcc);
    let calls =
        [[REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0], [UNREGISTER, PREV, 0, 0, 0, 0, 0]];
    let (replies, _) = run_script(svm, &mut pals, &[(IMAGE_A, image)], &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::Ok])?;
    Ok(Digest::of(image).0)
}

/// Wrong calls of the sealing and attestation services each get their status and change
/// nothing: input in its code, too long an input, too small an output, a blob that is not
/// one, data in its page tables, output running off its output region or into its code, an
/// output pointer that wraps.
pub fn pal_service_abuse_refused(svm: &Svm, tcc: &Tcc) -> TestResult {
    let image = &pal_image(program::pal_abuse());
    let mut pals = Pals::new(svm, tcc);
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        [EXECUTE, PREV, INPUT, 0, OUTPUT, 1024, OUT_LEN],
    ];
    let (replies, mut guest) = run_script(svm, &mut pals, &[(IMAGE_A, image)], &calls)?;
    expect_statuses(&replies, &[Status::Ok, Status::Ok])?;
    let expected = [
        Status::BadPointer,
        Status::TooLarge,
        Status::TooLarge,
        Status::Refused,
        Status::BadPointer,
        Status::BadPointer,
        Status::BadPointer,
        Status::BadPointer,
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = read_u64(guest.memory(), OUTPUT + 64 + 16 * i as u64)?;
        if got != want.as_u64() {
            return Err(format!("call {i}: status {got:#x}, expected {want}"));
        }
    }
    Ok(())
}

/// Runs the counter PAL in a registry whose counters live in the TPM: one execution per
/// entry of `ops` (0 reads counter 0, 1 increments it); the values it saw.
pub(super) fn tpm_counter_runs(
    svm: &Svm,
    tcc: &Tcc,
    image: &[u8],
    name: u8,
    ops: &[u8],
) -> Result<Vec<u64>, String> {
    let mut pals = Pals::with_counters(svm, tcc, crate::pal::CounterStore::Tpm);
    let mut calls = Vec::from([[REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0]]);
    // Each input: the operation, then the counter's name.
    let inputs: Vec<Vec<u8>> = ops.iter().map(|&op| [&[op][..], &[name; 32]].concat()).collect();
    let mut setup: Vec<(u64, &[u8])> = Vec::from([(IMAGE_A, image)]);
    for (i, input) in inputs.iter().enumerate() {
        let at = INPUT + 64 * i as u64;
        setup.push((at, input));
        calls.push([EXECUTE, PREV, at, 33, OUTPUT + 16 * i as u64, 16, OUT_LEN + 8 * i as u64]);
    }
    calls.push([UNREGISTER, PREV, 0, 0, 0, 0, 0]);
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    if let Some(r) = replies.iter().find(|r| r.status() != Some(Status::Ok)) {
        return Err(format!("a call failed: RAX {:#x}", r.regs[0]));
    }
    let mut values = Vec::new();
    for i in 0..ops.len() as u64 {
        let status = read_u64(guest.memory(), OUTPUT + 16 * i)?;
        if status != Status::Ok.as_u64() {
            return Err(format!("counter call {i}: status {status:#x}"));
        }
        values.push(read_u64(guest.memory(), OUTPUT + 16 * i + 8)?);
    }
    Ok(values)
}

/// The counter PAL's image, and the same code with one more byte: another identity.
pub(super) fn counter_images() -> (Vec<u8>, Vec<u8>) {
    let code = program::pal_counter();
    (pal_image(code), pal_image(&[code, &[0x90]].concat()))
}

/// Runs the sealer PAL once on `op` (0 seal, 1 unseal) and `data`: the service's status and
/// the bytes it produced.
pub(super) fn sealer(svm: &Svm, tcc: &Tcc, op: u8, data: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let image = &pal_image(program::pal_sealer());
    let input = [&[op][..], data].concat();
    let mut pals = Pals::new(svm, tcc);
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        [EXECUTE, PREV, INPUT, input.len() as u64, OUTPUT, 1040, OUT_LEN],
        [UNREGISTER, PREV, 0, 0, 0, 0, 0],
    ];
    let setup: [(u64, &[u8]); 2] = [(IMAGE_A, image), (INPUT, &input)];
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok; 3])?;
    let memory = guest.memory();
    let (status, n) = (read_u64(memory, OUTPUT)?, read_u64(memory, OUTPUT + 8)?);
    let mut out = alloc::vec![0; mem::usize_of(n.min(1024))];
    if status == Status::Ok.as_u64() && !memory.read(OUTPUT + 16, &mut out) {
        return Err(String::from("output outside the guest"));
    }
    Ok((status, out))
}

/// uPCRs (TrustVisor's micro-PCRs, `vpr_proto::utpm`): uPCR 0 holds SHA-256(0 || identity)
/// from registration on; uPCR 1 extends to SHA-256(0 || digest); uPCR 8 does not exist
/// (`BadArgument`) and a digest in the PAL's code is `BadPointer`. Registered again, the PAL
/// starts from fresh uPCRs (they live as long as a registration), and the same extension
/// gives the same value.
pub fn pal_upcrs(svm: &Svm, tcc: &Tcc) -> TestResult {
    use vpr_proto::utpm::extended;
    let image = &pal_image(program::pal_upcr());
    let identity = Digest::of(image).0;
    let digest = Digest::of(b"vpr upcr self-test").0;
    let mut pals = Pals::new(svm, tcc);
    let exec = |out: u64| [EXECUTE, PREV, INPUT, 32, out, 104, OUT_LEN];
    let calls = [
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        exec(OUTPUT),
        exec(OUTPUT + 1024),
        [UNREGISTER, PREV, 0, 0, 0, 0, 0],
        [REGISTER, IMAGE_A, len(image), RESULT, 0, 0, 0],
        exec(OUTPUT + 2048),
    ];
    let setup: [(u64, &[u8]); 2] = [(IMAGE_A, image), (INPUT, &digest)];
    let (replies, mut guest) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(&replies, &[Status::Ok; 6])?;
    let once = extended(&[0; 32], &digest);
    let twice = extended(&once, &digest);
    let ok = Status::Ok.as_u64();
    let statuses = [ok, ok, ok, Status::BadArgument.as_u64(), Status::BadPointer.as_u64()];
    for (run, upcr1) in [(0u64, once), (1, twice), (2, once)] {
        let mut out = [0u8; 104];
        if !guest.memory().read(OUTPUT + 1024 * run, &mut out) {
            return Err(String::from("output outside the guest"));
        }
        let answered: Vec<u64> = (0..5)
            .map(|i| read_u64(guest.memory(), OUTPUT + 1024 * run + 64 + 8 * i))
            .collect::<Result<_, _>>()?;
        if out[..32] != extended(&[0; 32], &identity)
            || out[32..64] != upcr1
            || answered != statuses
        {
            return Err(format!(
                "run {run}: uPCR 0 {:x?}, uPCR 1 {:x?}, statuses {answered:x?}",
                &out[..32],
                &out[32..64]
            ));
        }
    }
    Ok(())
}

/// Boot 2 (after the TPM tests): a verifier's certificate of the TCC key, given by hypercall
/// (`certify`), makes the `Attest` service's evidence non-simulated: it verifies against the
/// verifier's key without `allow_simulated`, for the PAL and its data. Before the guest's
/// `activate` of the verifier's credential (module 2) succeeded, `certify` is `Refused`; a
/// second certificate is `Refused`, and a pointer outside the guest `BadPointer`.
pub fn certified_tcc_key(svm: &Svm, tcc: &Tcc) -> TestResult {
    use vpr_proto::crypto::KeyPair;
    use vpr_proto::msg::Attestation;
    let mut pals = Pals::new(svm, tcc);
    let key = tcc_key(svm, &mut pals)?;
    let mut secret = [0u8; 32];
    crate::cpu::random(&mut secret).map_err(|s| format!("random: {s}"))?;
    let ca = KeyPair::from_secret(&secret).ok_or("no CA key")?;
    let certificate = ca.sign(&Attestation::certificate_bytes(false, &key));
    let credential = crate::mem::module(2).ok_or("no module 2: the verifier's credential")?;
    let calls = [
        [Call::Certify as u64, INPUT, 0, 0, 0, 0, 0],
        [Call::Activate as u64, OUTPUT, credential.len() as u64, RESULT, OUT_LEN, 0, 0],
        [Call::Certify as u64, INPUT, 0, 0, 0, 0, 0],
        [Call::Certify as u64, INPUT, 0, 0, 0, 0, 0],
        [Call::Certify as u64, RAM_END - 32, 0, 0, 0, 0, 0],
    ];
    let setup: [(u64, &[u8]); 2] = [(INPUT, &certificate), (OUTPUT, credential)];
    let (replies, _) = run_script(svm, &mut pals, &setup, &calls)?;
    expect_statuses(
        &replies,
        &[Status::Refused, Status::Ok, Status::Ok, Status::Refused, Status::BadPointer],
    )?;
    // The evidence a PAL now gets (the sealer PAL's `Attest`, op 2).
    let image = &pal_image(program::pal_sealer());
    let data = [0x42u8; 32];
    let (status, bytes) = sealer(svm, tcc, 2, &data)?;
    let service: Option<&[u8; vpr_proto::attest::SERVICE_LEN]> = bytes.as_slice().try_into().ok();
    let evidence = service
        .filter(|_| status == Status::Ok.as_u64())
        .and_then(|b| Attestation::from_service_bytes(Digest::of(image), Digest(data), b))
        .ok_or_else(|| format!("attest: status {status:#x}, {} bytes", bytes.len()))?;
    if evidence.simulated || evidence.certificate != certificate || evidence.tcc_key != key {
        return Err(String::from("the evidence does not carry the certificate, or is simulated"));
    }
    evidence
        .verify(&ca.public(), &Digest::of(image), &Digest(data), false)
        .map_err(|e| format!("certified evidence: {e}"))?;
    if evidence.verify(&key, &Digest::of(image), &Digest(data), false).is_ok() {
        return Err(String::from("the evidence verifies against a key that did not certify it"));
    }
    Ok(())
}
