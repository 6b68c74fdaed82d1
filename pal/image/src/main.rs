//! The PAL image: vpr's trusted service as a bare-metal ELF that the vpr hypervisor registers
//! and runs.
//!
//! This is the same `vpr-pal` code that the simulation backend runs in-process, linked with no
//! libc and no OS: the V-PR Manager (`vpr_pal::Manager`: initialization, the normal case,
//! primary change, state transfer) on the hypervisor's TCC services (the `tcc` module), over
//! SQLite through `sqlite-shim`. Its only outside interface is the hypervisor's, in the `hv`
//! module.
//!
//! There are two images. The production image serves the Manager's commands only (`Start`,
//! `Restore`, `Call`, `Status`, `Quote`); the test image (feature `bare`, the `bare` module)
//! also serves the bare service — SQL executed and updates applied without replication, and
//! the PAL services one by one (`Execute`, `Apply`, `Digest`, `Info`, `Random`, `Counter`) —
//! for the hypervisor's self-test and `vpr pal-smoke`. The production image answers those
//! with `Refused`. Each is its own identity (the SHA-256 of its file).
//!
//! # Entry and exit
//!
//! `vpr_proto::hypercall` ("PAL -> hypervisor" and the `pal` module) is the ABI. A guest
//! registers the image (the hypervisor measures it: the SHA-256 of this file is the PAL's
//! identity) and calls `execute` with an input. The hypervisor enters `_start` with RDI =
//! `pal::INPUT_BASE`, RSI = input length, RDX = `pal::OUTPUT_BASE`, RCX = output capacity and
//! RSP = `pal::STACK_TOP`. The image decodes the input as a `vpr_proto::pal_io::Command`, runs
//! it, writes the encoded `pal_io::Outcome` to the output and ends the execution with
//! `VMMCALL` `pal::DONE` and the output length. `pal_io` documents the commands and outcomes;
//! in short:
//!
//! - an input that is not a command is answered [`Outcome::Refused`] with the decode error;
//! - with an output capacity below `pal_io::MIN_OUTPUT_CAPACITY` nothing runs and the reported
//!   length is that minimum, so the hypervisor answers `Status::TooLarge`;
//! - `Execute` (test image) runs with a result budget of the output capacity (the service's
//!   `set_max_result_bytes`): results beyond it are the SQL error `SQLITE_TOOBIG`, results
//!   the heap cannot hold `SQLITE_NOMEM`, never a crash. An `Executed` outcome too large
//!   for the output (an update as large as the database), or whose encoding cannot be
//!   allocated, is not sent: the request's writes are taken back (undo records) and the
//!   answer is `Refused`, so a refused command never changed the state;
//! - `Start` and `Restore` make the Manager (a fresh one, or one restarted from its sealed
//!   group state); they are refused while one runs, and a configuration or blob the Manager
//!   refuses is answered `Refused` with its reason. `Call` hands the Manager one
//!   `vpr_proto::tcc::Call` and answers its effects; `Status` reports where it stands. Both
//!   are refused until a Manager runs;
//! - a Manager call cannot be taken back: its `Effects` are never refused for their size.
//!   They are measured before they are encoded; if they do not fit the output (or their
//!   encoding cannot be allocated), the answer is `Outcome::EffectsLost` with their length
//!   and the capacity: the call took effect and its effects are lost, which the host must
//!   handle as messages the network lost (it must give `Call` the full `MAX_IO_LEN`; see
//!   `pal_io`, "Output capacity"). The Manager's requests have the service's default result
//!   budget (`vpr_pal::service::DEFAULT_MAX_RESULT_BYTES`).
//!
//! Memory persists across executions (the hypervisor keeps a PAL's memory until it is
//! unregistered): the heap, the [`Manager`] and (in the test image) the bare service are set
//! up by the executions that first need them and used by every later one. The Manager and the
//! bare service are independent: each has its own database, and the bare commands work
//! whether a Manager runs or not. Each execution starts on a fresh stack.
//!
//! # Failure
//!
//! A panic, an allocation failure (but for results and outputs, whose sizes clients choose:
//! those are allocated fallibly, and a failure is an error answer), an invalid hypervisor
//! answer where no answer can be given (no random bytes for SQLite or the Manager's keys, no
//! evidence for an attestation), or a failed roll-back executes `ud2`: the hypervisor kills a
//! faulting PAL (`Status::PalFault`) and forgets it. A crashed PAL is dead, which matches the
//! trust model: the trusted code fails only by stopping. Nothing derived from the input
//! panics.
//!
//! # Memory
//!
//! The image's segments are linked at `pal::IMAGE_BASE` (16 MiB; see `build.rs`) and take
//! about 33 MiB: the code and constants (about 1 MiB) and a 32 MiB heap in `.bss`, so the file
//! stays small and the hypervisor zeroes the heap at registration. SQLite's fixed memsys5
//! pool takes 8 MiB of the heap (page cache, statements; running out is `SQLITE_NOMEM`, not a
//! crash); the rest holds the database file (the in-memory VFS grows it by an eighth when it
//! can, exactly what is needed otherwise, and a growth briefly needs the old and the new
//! copy), results, the input's
//! decoded copy and the encoded output (each at most `MAX_IO_LEN`, 4 MiB). The Manager's
//! database lives there too, beside the bare service's; a snapshot it makes or adopts is
//! held whole, several times over while it is encoded or decoded. The stack is the
//! hypervisor's: `pal::STACK_LEN`, 1 MiB.
//!
//! # Platform
//!
//! SQLite's randomness (the seed of `random()` and `randomblob()`) comes from the
//! hypervisor's `Random` service (RDRAND); without it the PAL stops rather than hand SQLite
//! predictable bytes. There is no trusted clock yet: the time is 0, so `datetime('now')`
//! reads 1970-01-01 00:00:00. Only results replicate, never re-execution, so neither makes
//! replicas diverge.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(feature = "bare")]
mod bare;
mod hv;
mod tcc;

#[cfg(feature = "bare")]
use bare::bare_command;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use linked_list_allocator::LockedHeap;
use spin::Mutex;
use sqlite_shim::{Config, Platform};
#[cfg(feature = "bare")]
use vpr_pal::Service;
use vpr_pal::{Effect, GroupConfig, Manager};
use vpr_proto::hypercall::pal;
use vpr_proto::pal_io::{self, Command, Outcome};

use crate::tcc::HvTcc;

// Keep the C library functions (memcpy...) in the link: nothing in Rust names this crate.
use vpr_crt as _;

/// The Rust heap: 32 MiB, of which SQLite's memsys5 pool takes 8 MiB.
const HEAP_BYTES: usize = 32 << 20;
const SQLITE_HEAP_BYTES: usize = 8 << 20;

// build.rs links the image at this address (-Ttext-segment).
const _: () = assert!(pal::IMAGE_BASE == 0x100_0000);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// The heap's memory, zero-initialized so it lands in `.bss`. The first execution takes the
/// lock and leaks the guard, handing the allocator a `&'static mut` to it: from then on the
/// lock stays held, which is how later executions know the allocator has it.
static HEAP_MEMORY: Mutex<[MaybeUninit<u8>; HEAP_BYTES]> =
    Mutex::new([MaybeUninit::new(0); HEAP_BYTES]);

/// What persists from one execution to the next.
struct State {
    /// `sqlite_shim::initialize` succeeded (it may run only once).
    engine: bool,
    /// The bare service, created by the first command that needs it (the test image's).
    #[cfg(feature = "bare")]
    service: Option<Service>,
    /// The Manager, once `Start` or `Restore` made it.
    manager: Option<Manager<HvTcc>>,
}

/// The state. The PAL has one thread and the hypervisor never re-enters it, so the lock is
/// never contended; it only makes the access safe.
static STATE: Mutex<State> = Mutex::new(State {
    engine: false,
    #[cfg(feature = "bare")]
    service: None,
    manager: None,
});

/// The refusal of a Manager command before `Start` or `Restore`.
const NO_MANAGER: &str = "no Manager runs: Start or Restore one first";

/// Runs one execution: `input` is the input (`None` if the hypervisor's registers broke the
/// ABI), `output` the output buffer. Returns the output length for [`hv::done`].
fn execute(input: Option<&[u8]>, output: &mut [u8]) -> u64 {
    if let Some(memory) = HEAP_MEMORY.try_lock() {
        let memory: &'static mut [MaybeUninit<u8>; HEAP_BYTES] = spin::MutexGuard::leak(memory);
        ALLOCATOR.lock().init_from_slice(memory);
    }
    if output.len() < pal_io::MIN_OUTPUT_CAPACITY {
        return len_u64(pal_io::MIN_OUTPUT_CAPACITY);
    }
    let Some(mut state) = STATE.try_lock() else { hv::abort() };
    let bytes = match input.map(Command::decode) {
        None => Outcome::refused("the input registers break the entry ABI").encode(),
        Some(Err(e)) => Outcome::refused(&format!("malformed command: {e}")).encode(),
        Some(Ok(command)) => run(&mut state, command, output.len()),
    };
    // `run` answers at most `output.len()` bytes (refusing what does not fit, or reporting
    // lost effects); should that ever fail, nothing is written and the length beyond the
    // capacity makes the hypervisor answer TooLarge rather than deliver a truncated outcome.
    if let Some(out) = output.get_mut(..bytes.len()) {
        out.copy_from_slice(&bytes);
    }
    len_u64(bytes.len())
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Runs a command; returns the encoded outcome, at most `capacity` bytes long (which is at
/// least `pal_io::MIN_OUTPUT_CAPACITY`).
fn run(state: &mut State, command: Command, capacity: usize) -> Vec<u8> {
    let outcome = match command {
        Command::Call(call) => return call_manager(state, call, capacity),
        Command::Start { group } => start_manager(state, &group, Begin::New),
        Command::Restore { group, sealed, log } => {
            start_manager(state, &group, Begin::Restore { sealed: &sealed, log: log.as_deref() })
        }
        Command::Quote { nonce, data, selection } => {
            let mut nonce_data = [0; 64];
            nonce_data[..32].copy_from_slice(nonce.as_bytes());
            // The caller's data, labelled as the caller's: the PAL vouches for nothing in it.
            nonce_data[32..].copy_from_slice(&vpr_proto::utpm::caller_data(&data.0));
            match hv::quote(&nonce_data, selection) {
                Ok(quote) => Outcome::Quote { quote },
                Err(status) => Outcome::refused(&format!("quote: {status}")),
            }
        }
        Command::Status => match &state.manager {
            Some(manager) => Outcome::Status(manager.wire_status()),
            None => Outcome::refused(NO_MANAGER),
        },
        // The bare service's commands: the test PAL image's only.
        bare => return bare_command(state, bare, capacity),
    };
    let bytes = outcome.encode();
    if bytes.len() <= capacity {
        bytes
    } else {
        Outcome::refused("output too large").encode()
    }
}

/// SQLite's engine (pool, randomness, clock), set up on first use. A failure is answered
/// with a refusal and tried again by the next command.
fn engine(state: &mut State) -> Result<(), Outcome> {
    if !state.engine {
        let config = Config {
            heap_bytes: SQLITE_HEAP_BYTES,
            platform: Platform { fill_random, unix_time_ms: || 0 },
        };
        sqlite_shim::initialize(config)
            .map_err(|e| Outcome::refused(&format!("cannot set up SQLite: {e}")))?;
        state.engine = true;
    }
    Ok(())
}

/// How a Manager begins.
enum Begin<'a> {
    /// A new replica ([`Command::Start`]).
    New,
    /// A restart ([`Command::Restore`]) from the sealed group state, and from the log if the
    /// host has one.
    Restore { sealed: &'a [u8], log: Option<&'a [Vec<u8>]> },
}

/// [`Command::Start`] and [`Command::Restore`]: makes the Manager of replica `group.me` on the
/// hypervisor's TCC services, and reports its status.
fn start_manager(state: &mut State, group: &vpr_proto::tcc::Group, begin: Begin<'_>) -> Outcome {
    if state.manager.is_some() {
        return Outcome::refused("a Manager runs already");
    }
    if let Err(refused) = engine(state) {
        return refused;
    }
    let config = GroupConfig::from(group);
    let tcc = match HvTcc::new(&config) {
        Ok(tcc) => tcc,
        Err(status) => return Outcome::refused(&format!("identity: {status}")),
    };
    let manager = match begin {
        Begin::New => Manager::new(tcc, config),
        Begin::Restore { sealed, log: None } => Manager::restore(tcc, config, sealed),
        Begin::Restore { sealed, log: Some(log) } => Manager::recover(tcc, config, sealed, log),
    };
    match manager {
        Ok(manager) => {
            let status = manager.wire_status();
            state.manager = Some(manager);
            Outcome::Status(status)
        }
        Err(reason) => Outcome::refused(&format!("cannot start the Manager: {reason}")),
    }
}

/// [`Command::Call`]: one call of the Manager and its effects. The call cannot be taken back:
/// effects that do not fit `capacity` (measured before anything is encoded), or whose
/// encoding cannot be allocated, are answered [`Outcome::EffectsLost`], so the host sees
/// that they took effect and were lost.
fn call_manager(state: &mut State, call: vpr_proto::tcc::Call, capacity: usize) -> Vec<u8> {
    let Some(manager) = state.manager.as_mut() else {
        return Outcome::refused(NO_MANAGER).encode();
    };
    let effects = manager.handle(call).into_iter().map(clip_refusal).collect();
    let outcome = Outcome::Effects { effects, status: manager.wire_status() };
    let len = outcome.encoded_len();
    let encoded = if len <= capacity { outcome.try_encode() } else { None };
    encoded.unwrap_or_else(|| {
        drop(outcome);
        Outcome::EffectsLost { len: len_u64(len), capacity: len_u64(capacity) }.encode()
    })
}

/// A refusal's reason clipped to what decoders accept (`tcc::MAX_REASON_BYTES`), so one long
/// reason cannot make the whole outcome undecodable.
fn clip_refusal(effect: Effect) -> Effect {
    match effect {
        Effect::Refused(reason) if reason.len() > vpr_proto::tcc::MAX_REASON_BYTES => {
            Effect::Refused(String::from(pal_io::clip_utf8(
                &reason,
                vpr_proto::tcc::MAX_REASON_BYTES,
            )))
        }
        effect => effect,
    }
}

/// SQLite's random source: the hypervisor's, or nothing (`ud2`).
fn fill_random(buf: &mut [u8]) {
    if hv::random(buf).is_err() {
        hv::abort();
    }
}

/// A command of the bare service, which the production image does not serve.
#[cfg(not(feature = "bare"))]
fn bare_command(_: &mut State, command: Command, _: usize) -> Vec<u8> {
    Outcome::refused(&format!(
        "{} is a command of the test PAL image: this production image serves the Manager's \
         commands only (Start, Restore, Call, Status, Quote)",
        command.name()
    ))
    .encode()
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    hv::abort()
}
