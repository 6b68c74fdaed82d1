//! The hypervisor's ABI (`vpr_proto::hypercall`) from a process of its Linux guest: `VMMCALL`
//! with buffers in the process's memory, which the hypervisor reaches through the process's
//! page tables (so they are locked in memory for the call: `mlock`). The only unsafe code of
//! the host crate.
//!
//! Nothing here is trusted: the hypervisor checks every pointer and length, and the PAL's
//! answers are checked by whoever reads them.

#![allow(unsafe_code)]

use std::arch::asm;
use std::arch::x86_64::__cpuid;

use vpr_proto::hypercall::{
    Call, RegisterOut, Status, ABI_VERSION, CPUID_LEAF, CPUID_SIGNATURE, MAX_EVIDENCE_LEN,
    MAX_IO_LEN, REGISTER_OUT_LEN,
};

/// [`REGISTER_OUT_LEN`] as an array length.
const REGISTER_OUT_BYTES: usize = 40;
const _: () = assert!(REGISTER_OUT_BYTES as u64 == REGISTER_OUT_LEN);

/// Why the hypervisor cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HypercallError {
    /// This process does not run on the vpr hypervisor (no signature in CPUID 4000_0000h).
    #[error("not running on the vpr hypervisor (CPUID leaf 0x40000000 does not name it)")]
    NotOnHypervisor,
    /// It speaks another ABI version.
    #[error("the hypervisor speaks ABI version {0}, this program {ABI_VERSION}")]
    Version(u64),
    /// A call failed.
    #[error("{call:?}: {status}")]
    Status {
        /// The call.
        call: Call,
        /// The hypervisor's answer.
        status: Status,
    },
    /// A buffer could not be locked in memory.
    #[error("cannot lock a {0}-byte buffer in memory (mlock)")]
    Lock(usize),
}

/// Whether this process runs on the vpr hypervisor: CPUID leaf 4000_0000h (the hypervisor
/// range) holds its signature. CPUID runs at any privilege; under another hypervisor or none,
/// the leaf says something else.
pub fn on_vpr_hypervisor() -> bool {
    let max = __cpuid(CPUID_LEAF);
    let mut signature = [0u8; 12];
    signature[..4].copy_from_slice(&max.ebx.to_le_bytes());
    signature[4..8].copy_from_slice(&max.ecx.to_le_bytes());
    signature[8..].copy_from_slice(&max.edx.to_le_bytes());
    &signature == CPUID_SIGNATURE
}

/// A `VMMCALL`: RAX = `call`, then RBX, RCX, RDX, RSI, RDI, R8 = `args`; returns (RAX, RBX).
///
/// # Safety
/// Must run on the vpr hypervisor ([`on_vpr_hypervisor`]): elsewhere `VMMCALL` raises #UD.
/// Every pointer in `args` must be valid, for the call's length, for the hypervisor to read
/// (input) or write (output), locked in memory, and not used by anything else meanwhile.
unsafe fn vmmcall(call: Call, args: [u64; 6]) -> (u64, u64) {
    let [rbx, rcx, rdx, rsi, rdi, r8] = args;
    let status: u64;
    let value: u64;
    // LLVM reserves RBX, so the argument goes through a scratch register `{b}` that `xchg`
    // swaps in and out (as in the PAL image's `hv.rs`). The hypervisor changes RAX and RBX
    // and writes the memory the pointers name; the other argument registers are declared
    // changed to stay conservative.
    // SAFETY: the caller guarantees we run on the vpr hypervisor and that the pointers are
    // valid and locked; no `nomem` (the hypervisor writes output buffers) and the stack is not
    // touched (`nostack`); RBX is restored before the asm ends.
    unsafe {
        asm!(
            "xchg {b}, rbx",
            "vmmcall",
            "xchg {b}, rbx",
            b = inout(reg) rbx => value,
            inout("rax") call as u64 => status,
            inout("rcx") rcx => _,
            inout("rdx") rdx => _,
            inout("rsi") rsi => _,
            inout("rdi") rdi => _,
            inout("r8") r8 => _,
            options(nostack),
        );
    }
    (status, value)
}

/// Memory locked for the duration of a call (`mlock`, undone on drop), so that the pages the
/// hypervisor walks to are present. Declared after the buffer it locks, it is dropped first.
struct Locked {
    ptr: *const u8,
    len: usize,
}

impl Locked {
    fn new(bytes: &[u8]) -> Result<Self, HypercallError> {
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        if len > 0 {
            // SAFETY: `mlock` reads no memory; it pins the pages of a live allocation of this
            // process.
            if unsafe { libc::mlock(ptr.cast(), len) } != 0 {
                return Err(HypercallError::Lock(len));
            }
        }
        Ok(Locked { ptr, len })
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: undoes the `mlock` of `new`; on a range that is no longer mapped it
            // fails harmlessly (ENOMEM), and it never touches the memory.
            unsafe { libc::munlock(self.ptr.cast(), self.len) };
        }
    }
}

/// The hypervisor, as a process of its guest reaches it.
#[derive(Debug)]
pub struct Hypervisor {
    _private: (),
}

fn check(call: Call, (rax, rbx): (u64, u64)) -> Result<u64, HypercallError> {
    match Status::from_u64(rax) {
        Some(Status::Ok) => Ok(rbx),
        Some(status) => Err(HypercallError::Status { call, status }),
        None => Err(HypercallError::Status { call, status: Status::Unavailable }),
    }
}

impl Hypervisor {
    /// The hypervisor, if this process runs on it and it speaks this ABI version.
    ///
    /// # Errors
    /// [`HypercallError::NotOnHypervisor`], [`HypercallError::Version`].
    pub fn open() -> Result<Self, HypercallError> {
        if !on_vpr_hypervisor() {
            return Err(HypercallError::NotOnHypervisor);
        }
        // SAFETY: on the vpr hypervisor (checked); `Version` takes no pointer.
        let version = check(Call::Version, unsafe { vmmcall(Call::Version, [0; 6]) })?;
        if version != ABI_VERSION {
            return Err(HypercallError::Version(version));
        }
        Ok(Hypervisor { _private: () })
    }

    /// Registers the PAL `image` (an ELF executable); its handle and measurement.
    ///
    /// # Errors
    /// The hypervisor's refusal (`BadImage`, `TooLarge`, `NoMemory`...), or a lock failure.
    pub fn register(&self, image: &[u8]) -> Result<RegisterOut, HypercallError> {
        let mut out = [0u8; REGISTER_OUT_BYTES];
        let _image = Locked::new(image)?;
        let _out = Locked::new(&out)?;
        let args = [image.as_ptr() as u64, image.len() as u64, out.as_mut_ptr() as u64, 0, 0, 0];
        // SAFETY: on the vpr hypervisor (`open`); the image is read and `out` written, both
        // live, locked and borrowed for the call.
        check(Call::Register, unsafe { vmmcall(Call::Register, args) })?;
        Ok(RegisterOut::from_bytes(&out))
    }

    /// Runs PAL `handle` on `input`; its output (at most `capacity` bytes, up to
    /// [`MAX_IO_LEN`]).
    ///
    /// # Errors
    /// The hypervisor's refusal (`NoSuchHandle`, `TooLarge`, `PalFault`...), or a lock
    /// failure.
    pub fn execute(
        &self,
        handle: u64,
        input: &[u8],
        capacity: usize,
    ) -> Result<Vec<u8>, HypercallError> {
        let capacity = capacity.min(usize::try_from(MAX_IO_LEN).unwrap_or(usize::MAX));
        self.call_with_output(Call::Execute, input, capacity, |input, len, out, cap, out_len| {
            [handle, input, len, out, cap, out_len]
        })
    }

    /// The TPM half of the evidence over `nonce` (`vpr_proto::utpm::TpmEvidenceParts`).
    ///
    /// # Errors
    /// `Unavailable` without a TPM, or a lock failure.
    pub fn evidence(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, HypercallError> {
        let capacity = usize::try_from(MAX_EVIDENCE_LEN).unwrap_or(16 << 10);
        self.call_with_output(Call::Evidence, nonce, capacity, |nonce, _, out, cap, out_len| {
            [nonce, out, cap, out_len, 0, 0]
        })
    }

    /// Activates a verifier's credential for the attestation key; the secret.
    ///
    /// # Errors
    /// `Refused` for a credential made for another TPM or key, `TooLarge`, a lock failure.
    pub fn activate(&self, credential: &[u8]) -> Result<Vec<u8>, HypercallError> {
        self.call_with_output(Call::Activate, credential, 64, |input, len, out, _, out_len| {
            [input, len, out, out_len, 0, 0]
        })
    }

    /// A call that reads `input` and writes at most `capacity` bytes and their length (a
    /// little-endian u64); `args` places the input's pointer and length, the output's pointer
    /// and capacity and the length's pointer in the call's registers. The bytes written.
    fn call_with_output(
        &self,
        call: Call,
        input: &[u8],
        capacity: usize,
        args: impl FnOnce(u64, u64, u64, u64, u64) -> [u64; 6],
    ) -> Result<Vec<u8>, HypercallError> {
        let mut output = vec![0u8; capacity];
        let mut len = [0u8; 8];
        let _in = Locked::new(input)?;
        let _out = Locked::new(&output)?;
        let _len = Locked::new(&len)?;
        let args = args(
            input.as_ptr() as u64,
            input.len() as u64,
            output.as_mut_ptr() as u64,
            capacity as u64,
            len.as_mut_ptr() as u64,
        );
        // SAFETY: on the vpr hypervisor (`open`); the input is read, the output (at most its
        // capacity) and the length written, all live, locked and borrowed for the call.
        check(call, unsafe { vmmcall(call, args) })?;
        let n = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
        output.truncate(n.min(capacity));
        Ok(output)
    }

    /// Installs a certificate of the TCC key.
    ///
    /// # Errors
    /// `Unavailable` without a TPM, `Refused` if one is installed already.
    pub fn certify(&self, certificate: &[u8; 64]) -> Result<(), HypercallError> {
        let _certificate = Locked::new(certificate)?;
        let args = [certificate.as_ptr() as u64, 0, 0, 0, 0, 0];
        // SAFETY: on the vpr hypervisor (`open`); the certificate is read, live, locked and
        // borrowed for the call.
        check(Call::Certify, unsafe { vmmcall(Call::Certify, args) }).map(drop)
    }

    /// Forgets PAL `handle` (its memory wiped).
    ///
    /// # Errors
    /// `NoSuchHandle`.
    pub fn unregister(&self, handle: u64) -> Result<(), HypercallError> {
        // SAFETY: on the vpr hypervisor (`open`); `Unregister` takes no pointer.
        check(Call::Unregister, unsafe { vmmcall(Call::Unregister, [handle, 0, 0, 0, 0, 0]) })
            .map(drop)
    }
}
