//! The bootable hypervisor image: QEMU loads it with `-kernel` (multiboot 1), it enters long
//! mode, sets up its memory, measures itself into the TPM and runs Linux as its guest
//! (`vpr.guest=linux`). The test image (feature `selftest`) runs the boot self-test instead
//! when not told to run Linux, and reports its result on the serial port and through QEMU's
//! isa-debug-exit device; the production image has no self-test and refuses.
//!
//! Only `x86_64-unknown-none` builds the image; on other targets this binary is a stub so that
//! workspace-wide host builds keep working (the library's unit tests run there).

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod exceptions;
#[cfg(all(target_os = "none", feature = "selftest"))]
mod guest;
#[cfg(target_os = "none")]
mod iommu;
#[cfg(target_os = "none")]
mod linux;
#[cfg(target_os = "none")]
mod mem;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod pal;
#[cfg(target_os = "none")]
mod ports;
#[cfg(target_os = "none")]
mod qemu;
#[cfg(all(target_os = "none", feature = "selftest"))]
mod selftest;
#[cfg(target_os = "none")]
mod serial;
#[cfg(target_os = "none")]
mod svm;
#[cfg(target_os = "none")]
mod tcc;
#[cfg(target_os = "none")]
mod tpm;
#[cfg(target_os = "none")]
mod tsc;

/// On a host target there is nothing to run: say where the image is built.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vpr-hypervisor is a bare-metal image: build it with --target x86_64-unknown-none");
    eprintln!("and boot it with `cargo xtask qemu-test`");
    std::process::exit(2);
}

/// The 64-bit entry, called by `boot.rs` on the boot stack with the loader's EAX and EBX.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn hv_main(magic: u32, info: u32) -> ! {
    serial::init();
    exceptions::init();
    log::info!("hv: vpr hypervisor {} booting", env!("CARGO_PKG_VERSION"));
    if let Err(e) = mem::init(magic, info) {
        log::error!("hv: memory set-up failed: {e}");
        qemu::exit(qemu::ExitCode::Failure);
    }
    let [constant, data] = mem::image_loaded();
    let measurement = mem::image_measurement();
    log::info!(
        "hv: measurement sha256={measurement} (every loaded byte: header, code and read-only \
         data {} bytes, data {} bytes)",
        constant.len(),
        data.len()
    );
    if let Some(module) = mem::module(0) {
        log::info!(
            "hv: module 0 ({}): {} bytes, sha256={}",
            if mem::guest_layout().is_some() { "the guest's kernel" } else { "the PAL image" },
            module.len(),
            vpr_proto::Digest::of(module)
        );
    }
    if let Err(e) = cpu::init() {
        log::error!("hv: {e}");
        qemu::exit(qemu::ExitCode::Failure);
    }
    // The measured launch, the master secret and the TCC keys, before any guest runs. The
    // self-test reports a missing or failing TPM; boot goes on without one.
    let tcc = tcc::Tcc::boot(&measurement.0);
    // `vpr.guest=linux`: run Linux as the guest (a replica's machine).
    if mem::guest_layout().is_some() {
        let result = svm::enable()
            .map_err(|e| alloc::format!("SVM: {e}"))
            .and_then(|svm| linux::run(&svm, &tcc));
        if let Err(e) = result {
            log::error!("hv: Linux guest: {e}");
        }
        qemu::exit(qemu::ExitCode::Failure)
    }
    run_selftest(&tcc)
}

/// The test image (feature `selftest`, built by `cargo xtask qemu-test`): the boot self-test;
/// `vpr.boot=2`, the second boot of a two-boot run on one TPM state.
#[cfg(all(target_os = "none", feature = "selftest"))]
fn run_selftest(tcc: &tcc::Tcc) -> ! {
    let (passed, failed) = if mem::command_line().split_whitespace().any(|w| w == "vpr.boot=2") {
        log::info!("hv: second boot (command line: {})", mem::command_line());
        selftest::run_after_reboot(tcc)
    } else {
        selftest::run(tcc)
    };
    serial::write_line(format_args!("{passed} passed, {failed} failed"));
    qemu::exit(if failed == 0 { qemu::ExitCode::Success } else { qemu::ExitCode::Failure })
}

/// The production image runs Linux and its PALs only: it has no self-test to run.
#[cfg(all(target_os = "none", not(feature = "selftest")))]
fn run_selftest(_: &tcc::Tcc) -> ! {
    log::error!(
        "hv: this is the production image: it runs Linux (vpr.guest=linux) and nothing else; \
         the self-test is in the test image that `cargo xtask qemu-test` builds (refused)"
    );
    qemu::exit(qemu::ExitCode::Failure)
}

/// Reports the panic on the serial port and stops QEMU with the failure status.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => serial::write_line(format_args!("[0][PANIC] {} ({at})", info.message())),
        None => serial::write_line(format_args!("[0][PANIC] {}", info.message())),
    }
    qemu::exit(qemu::ExitCode::Failure)
}
