//! The hypercall ABI between an untrusted guest, the hypervisor and a PAL (version 1).
//!
//! # Guest -> hypervisor
//!
//! A guest calls the hypervisor with `VMMCALL` (`0F 01 D9`, AMD APM Vol. 3; SVM intercepts it,
//! Vol. 2 §15.9). The call number is in RAX, the arguments in RBX, RCX, RDX, RSI, RDI and R8,
//! in that order. The hypervisor answers with a [`Status`] in RAX and, for some calls, a value
//! in RBX; it leaves every other register as it was and resumes the guest after the
//! `VMMCALL`.
//!
//! | call | RAX | RBX | RCX | RDX | RSI | RDI | R8 | returns (RAX, RBX) |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | [`Call::Version`] | `0x7670_0000` | | | | | | | `Ok`, [`ABI_VERSION`] |
//! | [`Call::Register`] | `0x7670_0001` | image ptr | image len | out ptr | | | | status, handle |
//! | [`Call::Execute`] | `0x7670_0002` | handle | in ptr | in len | out ptr | out cap | out-len ptr | status, output length |
//! | [`Call::Unregister`] | `0x7670_0003` | handle | | | | | | status |
//!
//! Pointers are guest-physical addresses (a guest that identity-maps its memory, as the test
//! guest does, passes its virtual addresses unchanged). Every range must lie in memory the
//! guest's own nested page table maps, without wrapping around; otherwise the call returns
//! [`Status::BadPointer`] and changes nothing.
//!
//! - `register` copies `image len` bytes (1 to [`MAX_IMAGE_LEN`]) of a PAL image into memory
//!   the guest can never reach, measures it with SHA-256, and writes a [`RegisterOut`]
//!   ([`REGISTER_OUT_LEN`] bytes: the handle, then the measurement) at `out ptr`. The image is
//!   a flat, position-independent blob whose entry point is its first byte.
//! - `execute` copies `in len` (at most [`MAX_IO_LEN`]) bytes of input into the PAL, runs it
//!   to completion, copies its output (at most `out cap`, itself at most [`MAX_IO_LEN`]) to
//!   `out ptr` and writes its length as a little-endian `u64` at `out-len ptr`. A PAL that
//!   faults is killed: [`Status::PalFault`], and its handle is gone.
//! - `unregister` zeroes and frees the PAL's memory; the handle becomes invalid.
//!
//! # PAL -> hypervisor
//!
//! A PAL runs in 64-bit mode at CPL 0 in its own address space ([`pal`] gives the layout),
//! entered at [`pal::CODE_BASE`] with RDI = input address, RSI = input length, RDX = output
//! address, RCX = output capacity, RSP = [`pal::STACK_TOP`] and every other general register
//! zero. It ends an execution with `VMMCALL` and RAX = [`pal::DONE`], RBX = the output length.
//! Any other `VMMCALL` gets a status in RAX and the PAL resumes: the guest calls answer
//! [`Status::Busy`] (no re-entrancy), anything else [`Status::UnknownCall`]. The PAL's data
//! and stack persist from one execution to the next; its general registers do not leave it.

use core::fmt;

/// The ABI version [`Call::Version`] returns.
pub const ABI_VERSION: u64 = 1;

/// The largest PAL image `register` accepts, in bytes.
pub const MAX_IMAGE_LEN: u64 = 64 * 1024;

/// The largest input and output of one `execute`, in bytes.
pub const MAX_IO_LEN: u64 = 4096;

/// How many PALs can be registered at once.
pub const MAX_PALS: usize = 8;

/// Bytes `register` writes at its out pointer: the handle (u64, little-endian) and the
/// 32-byte SHA-256 measurement of the image.
pub const REGISTER_OUT_LEN: u64 = 40;

/// A guest's hypercall numbers (RAX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Call {
    /// The ABI version, in RBX.
    Version = 0x7670_0000,
    /// Register a PAL image.
    Register = 0x7670_0001,
    /// Run a registered PAL on an input.
    Execute = 0x7670_0002,
    /// Forget a PAL and wipe its memory.
    Unregister = 0x7670_0003,
}

impl Call {
    /// Every call.
    pub const ALL: [Call; 4] = [Call::Version, Call::Register, Call::Execute, Call::Unregister];

    /// The call with number `number`, if there is one.
    #[must_use]
    pub fn from_u64(number: u64) -> Option<Call> {
        Call::ALL.into_iter().find(|call| *call as u64 == number)
    }
}

/// The status a hypercall returns in RAX. The numbers are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// No such call number.
    UnknownCall = 1,
    /// A pointer range is outside the caller's memory, wraps around, or overlaps another
    /// range of the same call.
    BadPointer = 2,
    /// A length exceeds its limit ([`MAX_IMAGE_LEN`], [`MAX_IO_LEN`]), or the output did not
    /// fit the caller's buffer.
    TooLarge = 3,
    /// The handle names no registered PAL.
    NoSuchHandle = 4,
    /// The call is not allowed now: a PAL called the guest interface (no re-entrancy).
    Busy = 5,
    /// The hypervisor has no memory (or no PAL slot) left.
    NoMemory = 6,
    /// The PAL faulted or misbehaved; it was killed and unregistered.
    PalFault = 7,
    /// The image is empty.
    BadImage = 8,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 9] = [
        Status::Ok,
        Status::UnknownCall,
        Status::BadPointer,
        Status::TooLarge,
        Status::NoSuchHandle,
        Status::Busy,
        Status::NoMemory,
        Status::PalFault,
        Status::BadImage,
    ];

    /// The status with number `value`, if there is one.
    #[must_use]
    pub fn from_u64(value: u64) -> Option<Status> {
        Status::ALL.into_iter().find(|status| *status as u64 == value)
    }

    /// The status as RAX carries it.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self as u64
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::UnknownCall => "unknown call",
            Status::BadPointer => "bad pointer",
            Status::TooLarge => "too large",
            Status::NoSuchHandle => "no such handle",
            Status::Busy => "busy",
            Status::NoMemory => "no memory",
            Status::PalFault => "PAL fault",
            Status::BadImage => "bad image",
        })
    }
}

/// What `register` writes at its out pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterOut {
    /// The PAL's handle.
    pub handle: u64,
    /// SHA-256 of the image: the PAL's identity.
    pub measurement: [u8; 32],
}

impl RegisterOut {
    /// The [`REGISTER_OUT_LEN`] bytes: handle (little-endian), then the measurement.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0; 40];
        out[..8].copy_from_slice(&self.handle.to_le_bytes());
        out[8..].copy_from_slice(&self.measurement);
        out
    }

    /// Reads the bytes [`RegisterOut::to_bytes`] wrote.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 40]) -> Self {
        let mut handle = [0; 8];
        handle.copy_from_slice(&bytes[..8]);
        let mut measurement = [0; 32];
        measurement.copy_from_slice(&bytes[8..]);
        RegisterOut { handle: u64::from_le_bytes(handle), measurement }
    }
}

pub mod pal {
    //! The PAL's side: its address space and its call to end an execution.
    //!
    //! A PAL's guest-physical (and guest-virtual: its page tables identity-map the first 2 MiB)
    //! address space, each part backed by frames of its own that nothing else maps:
    //!
    //! | address | what | access |
    //! | --- | --- | --- |
    //! | `0x0000`-`0x2FFF` | its page tables (set up by the hypervisor) | read, write |
    //! | [`CODE_BASE`] | the image, up to [`super::MAX_IMAGE_LEN`] | read, execute |
    //! | [`DATA_BASE`] | data, zeroed at registration, kept across executions | read, write |
    //! | [`STACK_BASE`] - [`STACK_TOP`] | stack, kept across executions | read, write |
    //! | [`INPUT_BASE`] | the input of the current execution | read, write |
    //! | [`OUTPUT_BASE`] | the output of the current execution | read, write |
    //!
    //! Nothing else is mapped: any other access is a nested page fault that kills the PAL.

    /// `VMMCALL` with this in RAX ends an execution; RBX holds the output length.
    pub const DONE: u64 = 0x7670_0100;
    /// Where the image is mapped; its first byte is the entry point.
    pub const CODE_BASE: u64 = 0x1_0000;
    /// Where the data pages start.
    pub const DATA_BASE: u64 = 0x2_0000;
    /// Bytes of data.
    pub const DATA_LEN: u64 = 16 * 1024;
    /// Lowest stack address.
    pub const STACK_BASE: u64 = 0x3_0000;
    /// Bytes of stack.
    pub const STACK_LEN: u64 = 16 * 1024;
    /// The initial RSP.
    pub const STACK_TOP: u64 = STACK_BASE + STACK_LEN;
    /// Where the input is.
    pub const INPUT_BASE: u64 = 0x4_0000;
    /// Where the output goes.
    pub const OUTPUT_BASE: u64 = 0x4_1000;

    const _: () = assert!(CODE_BASE + super::MAX_IMAGE_LEN <= DATA_BASE);
    const _: () = assert!(DATA_BASE + DATA_LEN <= STACK_BASE);
    const _: () = assert!(STACK_TOP <= INPUT_BASE);
    const _: () = assert!(INPUT_BASE + super::MAX_IO_LEN <= OUTPUT_BASE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_stable_and_round_trip() {
        let expected = [0, 1, 2, 3, 4, 5, 6, 7, 8];
        for (status, number) in Status::ALL.into_iter().zip(expected) {
            assert_eq!(status.as_u64(), number);
            assert_eq!(Status::from_u64(number), Some(status));
        }
        assert_eq!(Status::from_u64(9), None);
        assert_eq!(Status::from_u64(u64::MAX), None);
    }

    #[test]
    fn call_numbers_are_stable_and_round_trip() {
        let expected = [0x7670_0000, 0x7670_0001, 0x7670_0002, 0x7670_0003];
        for (call, number) in Call::ALL.into_iter().zip(expected) {
            assert_eq!(call as u64, number);
            assert_eq!(Call::from_u64(number), Some(call));
        }
        assert_eq!(Call::from_u64(0), None);
        assert_eq!(Call::from_u64(pal::DONE), None);
    }

    #[test]
    fn register_out_round_trips() {
        let out = RegisterOut { handle: 0x0102_0304_0506_0708, measurement: [0xAB; 32] };
        let bytes = out.to_bytes();
        assert_eq!(bytes.len() as u64, REGISTER_OUT_LEN);
        assert_eq!(bytes[0], 0x08);
        assert_eq!(RegisterOut::from_bytes(&bytes), out);
    }

    #[test]
    fn statuses_print() {
        assert_eq!(alloc::format!("{}", Status::PalFault), "PAL fault");
    }
}
