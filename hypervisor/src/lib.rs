//! vpr's micro-hypervisor: the parts that need no privilege, built and unit-tested on the host.
//!
//! The bootable image (`src/image/`, the `vpr-hypervisor` binary for `x86_64-unknown-none`)
//! adds what needs ring 0: the multiboot entry, the serial port, the world switch. Everything
//! here is plain data and logic over it, so it compiles for the host and its tests run with
//! `cargo test -p vpr-hypervisor --lib`:
//!
//! - [`vm`]: the architecture-neutral core — guest registers, normalized exits, the exit loop
//!   that runs a guest and kills it (never the hypervisor) on anything it does not handle;
//! - [`svm`]: AMD SVM — the VMCB layout, exit codes and their normalization, guest state
//!   set-up, nested page tables;
//! - [`apic`] and [`decode`]: what an OS guest may write to its interrupt controllers, and
//!   the stores the hypervisor completes for it;
//! - [`elf`]: PAL images: ELF64 executables checked and planned page by page;
//! - [`iommu`]: the AMD IOMMU that keeps devices' DMA in an OS guest's RAM: finding it, its
//!   device table entries, I/O page tables and commands, and hiding it from ACPI;
//! - `inspect` (tests and the test image only): reading back what was built, to check it;
//! - [`memory`] and [`multiboot`]: the boot memory map, where the heap goes, the frame pool;
//! - [`pal`]: the hypercall ABI's checks, PAL address-space plans and the PAL registry;
//! - [`tpm`]: the TPM 2.0 driver: TIS transport over an MMIO trait, command marshalling and
//!   response parsing.
//!
//! Hardware facts cite the AMD64 Architecture Programmer's Manual, Volume 2 (System
//! Programming), revision 3.42 ("APM").

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod apic;
mod bytes;
pub mod decode;
pub mod elf;
#[cfg(any(test, feature = "selftest"))]
pub mod inspect;
pub mod iommu;
pub mod linux;
pub mod memory;
pub mod multiboot;
pub mod paging;
pub mod pal;
pub mod svm;
#[cfg(test)]
mod testing;
pub mod tpm;
pub mod utpm;
pub mod vm;
