//! The hypercall ABI between an untrusted guest, the hypervisor and a PAL (version 2).
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
//! | [`Call::Evidence`] | `0x7670_0004` | nonce ptr (32 bytes) | out ptr | out cap | out-len ptr | | | status, evidence length |
//! | [`Call::Activate`] | `0x7670_0005` | credential ptr | credential len | out ptr (64 bytes) | out-len ptr | | | status, secret length |
//! | [`Call::Certify`] | `0x7670_0006` | certificate ptr (64 bytes) | | | | | | status |
//!
//! Pointers are guest-physical addresses for a guest the hypervisor made (the test guests
//! identity-map their memory and pass their virtual addresses unchanged), and the calling
//! process's virtual addresses for a Linux guest (the hypervisor walks its page tables). Every range must lie in memory the
//! guest's own nested page table maps, without wrapping around; otherwise the call returns
//! [`Status::BadPointer`] and changes nothing.
//!
//! - `register` copies `image len` bytes (1 to [`MAX_IMAGE_LEN`]) of a PAL image into memory
//!   the guest can never reach, measures that copy with SHA-256, checks it, and writes a
//!   [`RegisterOut`] ([`REGISTER_OUT_LEN`] bytes: the handle, then the measurement) at
//!   `out ptr`. The image is a static ELF64 executable for x86-64 ([`pal`] says what it may
//!   contain); one that breaks a rule is [`Status::BadImage`].
//! - `execute` copies `in len` (at most [`MAX_IO_LEN`]) bytes of input into the PAL, runs it
//!   to completion, copies its output (at most `out cap`, itself at most [`MAX_IO_LEN`]) to
//!   `out ptr` and writes its length as a little-endian `u64` at `out-len ptr`. A PAL that
//!   faults is killed: [`Status::PalFault`], and its handle is gone.
//! - `unregister` zeroes and frees the PAL's memory; the handle becomes invalid.
//! - A handle belongs to the address space that registered it (a Linux guest's calling
//!   process: its page-table root): `execute` and `unregister` from any other are
//!   [`Status::Refused`] and change nothing.
//! - `evidence` (a machine with a TPM) writes the TPM half of the evidence over the caller's
//!   nonce ([`crate::utpm::TpmEvidenceParts`]: the attestation key's public area, its quote
//!   of PCRs 17-19 over the nonce, those PCRs, the log of PCR 18, the TCC key and the EK
//!   certificate), at most [`MAX_EVIDENCE_LEN`] bytes; [`Status::Unavailable`] without a TPM.
//! - `activate` runs TPM2_ActivateCredential with the endorsement key and the attestation key
//!   on a credential a verifier made (`TPM2B_ID_OBJECT` then `TPM2B_ENCRYPTED_SECRET`, at most
//!   [`MAX_CREDENTIAL_LEN`] bytes) and writes the secret (at most 64 bytes);
//!   [`Status::Refused`] for a credential made for another TPM or key.
//! - `certify` gives the hypervisor a certificate of its TCC key: a P-256 signature, by the
//!   key that certifies this cluster's TCCs, over `vpr_proto::msg::Attestation`'s certificate
//!   bytes for a non-simulated key. Only the address space whose `activate` last succeeded
//!   may give it (the enrollment agent proves the attestation key that way first), else
//!   [`Status::Refused`]. From then on the `Attest` service hands it out with
//!   evidence that is not marked simulated. The hypervisor cannot check who signed it (it does
//!   not know the cluster's key): a wrong certificate only makes its evidence fail. Without a
//!   TPM (keys that live for one boot) it is [`Status::Unavailable`].
//!
//! # PAL -> hypervisor
//!
//! A PAL runs in 64-bit mode at CPL 0 in its own address space ([`pal`] gives the layout),
//! entered at its ELF entry point with RDI = [`pal::INPUT_BASE`], RSI = input length, RDX =
//! [`pal::OUTPUT_BASE`], RCX = output capacity, RSP = [`pal::STACK_TOP`], every other general
//! register zero, and a clean x87/SSE state (FNINIT, MXCSR `0x1F80`, XMM registers zero) with
//! SSE enabled (CR4.OSFXSR and OSXMMEXCPT set, CR0.EM clear). It ends an execution with
//! `VMMCALL` and RAX = [`pal::DONE`], RBX = the output length. Its other `VMMCALL`s are the
//! services of [`pal::Service`]: each answers a [`Status`] in RAX (and a value in RBX) and
//! the PAL resumes (the services take their arguments in RBX, RCX, RDX and RSI). The guest
//! calls answer [`Status::Busy`] (no re-entrancy), anything else
//! [`Status::UnknownCall`]. The PAL's memory persists from one execution to the next; its
//! registers, general and vector, do not leave it.

use core::fmt;

/// CPUID leaf in which the hypervisor names itself to its OS guest (the range reserved for
/// hypervisors, 4000_0000h-4000_00FFh): a guest process checks it before its first `VMMCALL`.
pub const CPUID_LEAF: u32 = 0x4000_0000;
/// The hypervisor's 12-byte signature in leaf [`CPUID_LEAF`] (EBX, ECX, EDX).
pub const CPUID_SIGNATURE: &[u8; 12] = b"vpr hv vpr  ";

/// The ABI version [`Call::Version`] returns.
pub const ABI_VERSION: u64 = 2;

/// The largest PAL image `register` accepts, in bytes (the ELF file).
pub const MAX_IMAGE_LEN: u64 = 8 << 20;

/// The most memory a PAL image's segments may take, in 4 KiB pages (64 MiB).
pub const MAX_IMAGE_PAGES: u64 = 16 * 1024;

/// The largest input and output of one `execute`, in bytes.
pub const MAX_IO_LEN: u64 = 4 << 20;

/// How many PALs can be registered at once.
pub const MAX_PALS: usize = 8;

/// Bytes `register` writes at its out pointer: the handle (u64, little-endian) and the
/// 32-byte SHA-256 measurement of the image.
pub const REGISTER_OUT_LEN: u64 = 40;

/// The most bytes `evidence` writes.
pub const MAX_EVIDENCE_LEN: u64 = 16 << 10;
/// The most bytes of a credential `activate` reads.
pub const MAX_CREDENTIAL_LEN: u64 = 1024;
/// Bytes of a nonce (`evidence`), of an activated secret's buffer (`activate`) and of a
/// certificate (`certify`, 64: r || s).
pub const NONCE_LEN: u64 = 32;
/// See [`NONCE_LEN`].
pub const SECRET_LEN: u64 = 64;
/// See [`NONCE_LEN`].
pub const CERTIFICATE_LEN: u64 = 64;

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
    /// The TPM half of the evidence, over a nonce.
    Evidence = 0x7670_0004,
    /// Activate a verifier's credential for the attestation key.
    Activate = 0x7670_0005,
    /// Install a certificate of the TCC key.
    Certify = 0x7670_0006,
}

impl Call {
    /// Every call.
    pub const ALL: [Call; 7] = [
        Call::Version,
        Call::Register,
        Call::Execute,
        Call::Unregister,
        Call::Evidence,
        Call::Activate,
        Call::Certify,
    ];

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
    /// The image is empty or not an acceptable PAL image (see [`pal`]).
    BadImage = 8,
    /// The service is not available on this machine (e.g. no RDRAND).
    Unavailable = 9,
    /// An argument is outside its range (e.g. a counter number).
    BadArgument = 10,
    /// A sealed blob was refused: altered, sealed by another PAL, or on another boot.
    Refused = 11,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 12] = [
        Status::Ok,
        Status::UnknownCall,
        Status::BadPointer,
        Status::TooLarge,
        Status::NoSuchHandle,
        Status::Busy,
        Status::NoMemory,
        Status::PalFault,
        Status::BadImage,
        Status::Unavailable,
        Status::BadArgument,
        Status::Refused,
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
            Status::Unavailable => "unavailable",
            Status::BadArgument => "bad argument",
            Status::Refused => "refused",
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
    //! The PAL's side: its image, its address space and its calls to the hypervisor.
    //!
    //! # The image
    //!
    //! A static ELF64 executable (`ET_EXEC`, `EM_X86_64`, little-endian) linked at
    //! [`IMAGE_BASE`] or above: its `PT_LOAD` segments must lie in [`IMAGE_BASE`] -
    //! [`IMAGE_END`], take at most [`super::MAX_IMAGE_PAGES`] pages together, share no 4 KiB
    //! page, and none may be both writable and executable; the entry point must be in an
    //! executable one. `PT_INTERP`, `PT_DYNAMIC` and `PT_TLS` are refused (nothing loads,
    //! relocates or sets up TLS for a PAL). Its identity is the SHA-256 of the whole file.
    //!
    //! # The address space
    //!
    //! Guest-physical = guest-virtual: the PAL's page tables identity-map the first GiB with
    //! 2 MiB pages, all writable and executable; what the PAL may really do is decided by its
    //! nested page table, which maps only these, each part backed by frames of its own that
    //! nothing else maps:
    //!
    //! | address | what | access |
    //! | --- | --- | --- |
    //! | `0x0000`-`0x2FFF` | its page tables (set up by the hypervisor) | read, write |
    //! | [`STACK_BASE`] - [`STACK_TOP`] | stack | read, write |
    //! | [`INPUT_BASE`] | the input of the current execution, [`super::MAX_IO_LEN`] | read, write |
    //! | [`OUTPUT_BASE`] | the output of the current execution, [`super::MAX_IO_LEN`] | read, write |
    //! | [`IMAGE_BASE`] - [`IMAGE_END`] | the image's segments, with their ELF permissions | R, RW or RX |
    //!
    //! Nothing else is mapped: any other access is a nested page fault that kills the PAL.
    //! Everything persists across executions (segments are zeroed only at registration).

    /// `VMMCALL` with this in RAX ends an execution; RBX holds the output length.
    pub const DONE: u64 = 0x7670_0100;
    /// Lowest stack address.
    pub const STACK_BASE: u64 = 0x10_0000;
    /// Bytes of stack.
    pub const STACK_LEN: u64 = 1 << 20;
    /// The initial RSP.
    pub const STACK_TOP: u64 = STACK_BASE + STACK_LEN;
    /// Where the input is.
    pub const INPUT_BASE: u64 = 0x40_0000;
    /// Where the output goes.
    pub const OUTPUT_BASE: u64 = INPUT_BASE + super::MAX_IO_LEN;
    /// The lowest address an image segment may use.
    pub const IMAGE_BASE: u64 = 0x100_0000;
    /// The end of the range image segments may use (the page tables map the first GiB).
    pub const IMAGE_END: u64 = 0x4000_0000;
    /// Most bytes one [`Service::Random`] call fills.
    pub const MAX_RANDOM_LEN: u64 = 4096;
    /// Most trusted counters one TCC keeps in hypervisor memory (all identities together);
    /// TPM-kept counters are bounded by the TPM's NV memory.
    pub const MAX_COUNTERS: u64 = 1024;

    /// The counter a PAL of `identity` names `name` ([`Service::CounterRead`]):
    /// SHA-256("vpr counter" ‖ identity ‖ name). A PAL reaches only its own identity's
    /// counters, and PALs (or replicas) that share an image and a TCC keep theirs apart by
    /// name.
    #[must_use]
    pub fn counter_id(identity: &[u8; 32], name: &[u8; 32]) -> [u8; 32] {
        crate::crypto::hash(&[b"vpr counter", identity, name]).0
    }
    /// Most bytes [`Service::Seal`] seals at once.
    pub const MAX_SEAL_LEN: u64 = 4096;
    /// Bytes a sealed blob adds to what it seals (a 12-byte nonce and a 16-byte tag).
    pub const SEAL_OVERHEAD: u64 = 28;
    /// Bytes [`Service::Attest`] writes: whether the evidence is simulated (1 byte, 0 or 1),
    /// the TCC's P-256 public key (65, SEC1 uncompressed), its certificate (64) and the
    /// signature (64), as in `vpr_proto::msg::Attestation`.
    pub const ATTESTATION_LEN: u64 = 1 + 65 + 64 + 64;
    /// Bytes of the nonce and data [`Service::Quote`] reads: a verifier's 32-byte nonce,
    /// then the PAL's 32 bytes of data.
    pub const QUOTE_INPUT_LEN: u64 = 64;
    /// Most bytes a [`Service::Quote`] writes (a `TPM2B_ATTEST` and a `TPMT_SIGNATURE`,
    /// `crate::utpm::Quote::to_bytes`: about 250).
    pub const MAX_QUOTE_LEN: u64 = 512;
    /// uPCRs per PAL ([`Service::PcrRead`]): [`crate::utpm::UPCRS`].
    pub const UPCRS: u64 = crate::utpm::UPCRS as u64;

    const _: () = assert!(STACK_TOP <= INPUT_BASE);
    const _: () = assert!(OUTPUT_BASE + super::MAX_IO_LEN <= IMAGE_BASE);
    const _: () = assert!(IMAGE_BASE + super::MAX_IMAGE_PAGES * 4096 <= IMAGE_END);

    /// The hypervisor's services to a running PAL: `VMMCALL` with the number in RAX and the
    /// arguments in RBX and RCX; the status comes back in RAX, a value in RBX. Pointers are
    /// the PAL's own addresses and must lie in memory it may write (stack, input, output or
    /// a writable segment), else [`super::Status::BadPointer`].
    ///
    /// | service | RAX | RBX | RCX | returns (RAX, RBX) |
    /// | --- | --- | --- | --- | --- |
    /// | [`Service::Random`] | `0x7670_0101` | ptr | len (at most [`MAX_RANDOM_LEN`]) | status |
    /// | [`Service::Identity`] | `0x7670_0102` | ptr (32 bytes) | | status |
    /// | [`Service::CounterRead`] | `0x7670_0103` | name ptr (32 bytes) | | status, value |
    /// | [`Service::CounterIncrement`] | `0x7670_0104` | name ptr (32 bytes) | | status, new value |
    /// | [`Service::Attest`] | `0x7670_0105` | data ptr (32 bytes) | out ptr ([`ATTESTATION_LEN`]) | status |
    /// | [`Service::Seal`] | `0x7670_0106` | in ptr | in len (at most [`MAX_SEAL_LEN`]) | status, blob length |
    /// | [`Service::Unseal`] | `0x7670_0107` | in ptr | in len | status, data length |
    ///
    /// | [`Service::Quote`] | `0x7670_0108` | nonce and data ptr ([`QUOTE_INPUT_LEN`]) | uPCR selection (bitmap below 2^[`UPCRS`]) | status, quote length |
    /// | [`Service::PcrRead`] | `0x7670_0109` | uPCR (below [`UPCRS`]) | out ptr (32 bytes) | status |
    /// | [`Service::PcrExtend`] | `0x7670_010A` | uPCR | digest ptr (32 bytes) | status |
    ///
    /// `Seal`, `Unseal` and `Quote` take their output buffer in RDX (pointer) and RSI
    /// (capacity): a blob is `in len` + [`SEAL_OVERHEAD`] bytes, a quote at most
    /// [`MAX_QUOTE_LEN`]; a capacity too small is [`super::Status::TooLarge`] and writes
    /// nothing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u64)]
    pub enum Service {
        /// Random bytes from the processor's generator (RDRAND); [`super::Status::Unavailable`]
        /// without one.
        Random = 0x7670_0101,
        /// The PAL's identity: the SHA-256 of its image.
        Identity = 0x7670_0102,
        /// The value of the trusted counter the PAL names (32 bytes at RBX): counter
        /// [`counter_id`] of its identity and the name. Counters belong to the identity (a
        /// PAL registered again with the same image finds them as they were), start at 0 and
        /// never go back. In hypervisor memory they last until reboot; in the TPM's NV
        /// memory (a machine with a TPM) they survive it.
        CounterRead = 0x7670_0103,
        /// Adds one to the named trusted counter and returns the new value;
        /// [`super::Status::BadArgument`] at `u64::MAX` (counters never wrap),
        /// [`super::Status::NoMemory`] beyond [`MAX_COUNTERS`].
        CounterIncrement = 0x7670_0104,
        /// Evidence that this PAL (its identity) on this TCC vouches for 32 bytes of data: the
        /// TCC key's signature over `"vpr attest" || simulated || identity || data`
        /// (`vpr_proto::attest`). Until the uTPM roots it in the TPM the TCC key is made at
        /// boot, certifies itself, and the evidence says it is simulated.
        Attest = 0x7670_0105,
        /// Seals bytes to the PAL's identity (an AEAD under a key derived from the
        /// hypervisor's secret and the identity): only the same image can unseal them. Until
        /// the uTPM keeps the secret in the TPM, it is made at boot and blobs do not survive a
        /// reboot.
        Seal = 0x7670_0106,
        /// Opens a blob [`Service::Seal`] made for this identity on this boot, or
        /// [`super::Status::Refused`].
        Unseal = 0x7670_0107,
        /// A uTPM quote (`crate::utpm`): a `TPMS_ATTEST` over the selected uPCRs with the
        /// nonce and data as `extraData`, signed by the TCC key, as `TPM2B_ATTEST` ‖
        /// `TPMT_SIGNATURE`. With a TPM, the TCC key is bound to the TPM by PCR 19, which
        /// the hypervisor extends with the key's hash at boot, so a TPM quote of PCRs
        /// 17-19 vouches for the hypervisor, its PALs and this key.
        Quote = 0x7670_0108,
        /// Reads one of the PAL's uPCRs (uPCR 0 holds its identity from registration on;
        /// the others start at zero). They live as long as the registration.
        PcrRead = 0x7670_0109,
        /// Extends one of the PAL's uPCRs with a 32-byte digest.
        PcrExtend = 0x7670_010A,
    }

    impl Service {
        /// Every service.
        pub const ALL: [Service; 10] = [
            Service::Random,
            Service::Identity,
            Service::CounterRead,
            Service::CounterIncrement,
            Service::Attest,
            Service::Seal,
            Service::Unseal,
            Service::Quote,
            Service::PcrRead,
            Service::PcrExtend,
        ];

        /// The service with number `number`, if there is one.
        #[must_use]
        pub fn from_u64(number: u64) -> Option<Service> {
            Service::ALL.into_iter().find(|s| *s as u64 == number)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_stable_and_round_trip() {
        let expected = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        assert_eq!(Status::ALL.len(), expected.len());
        for (status, number) in Status::ALL.into_iter().zip(expected) {
            assert_eq!(status.as_u64(), number);
            assert_eq!(Status::from_u64(number), Some(status));
        }
        assert_eq!(Status::from_u64(12), None);
        assert_eq!(Status::from_u64(u64::MAX), None);
    }

    #[test]
    fn call_numbers_are_stable_and_round_trip() {
        let expected = [
            0x7670_0000,
            0x7670_0001,
            0x7670_0002,
            0x7670_0003,
            0x7670_0004,
            0x7670_0005,
            0x7670_0006,
        ];
        assert_eq!(Call::ALL.len(), expected.len());
        for (call, number) in Call::ALL.into_iter().zip(expected) {
            assert_eq!(call as u64, number);
            assert_eq!(Call::from_u64(number), Some(call));
        }
        assert_eq!(Call::from_u64(0), None);
        assert_eq!(Call::from_u64(pal::DONE), None);
    }

    #[test]
    fn service_numbers_are_stable_and_distinct_from_calls() {
        let expected = [
            0x7670_0101,
            0x7670_0102,
            0x7670_0103,
            0x7670_0104,
            0x7670_0105,
            0x7670_0106,
            0x7670_0107,
            0x7670_0108,
            0x7670_0109,
            0x7670_010A,
        ];
        assert_eq!(pal::Service::ALL.len(), expected.len());
        for (service, number) in pal::Service::ALL.into_iter().zip(expected) {
            assert_eq!(service as u64, number);
            assert_eq!(pal::Service::from_u64(number), Some(service));
            assert_eq!(Call::from_u64(number), None);
        }
        assert_eq!(pal::Service::from_u64(pal::DONE), None);
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
