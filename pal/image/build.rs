//! Links the PAL image as the hypervisor wants it (`vpr_proto::hypercall::pal`): a static
//! `ET_EXEC` for x86-64 with no C runtime, no libc, no dynamic loader, no TLS, its segments at
//! `pal::IMAGE_BASE` (16 MiB) and up, page-aligned so no two share a 4 KiB page, none both
//! writable and executable.

/// `vpr_proto::hypercall::pal::IMAGE_BASE`; `main.rs` checks the two agree.
const IMAGE_BASE: u64 = 0x100_0000;

fn main() {
    let text_segment = format!("-Wl,-Ttext-segment={IMAGE_BASE:#x}");
    for arg in [
        // GNU ld, whatever the toolchain's default (rust-lld since Rust 1.90, which knows no
        // -Ttext-segment): one linker on every toolchain, so one layout.
        "-fuse-ld=bfd",
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        text_segment.as_str(),
        "-Wl,-z,max-page-size=4096",
        "-Wl,-z,separate-code",
        "-Wl,-z,noexecstack",
        "-Wl,--build-id=none",
        "-Wl,--gc-sections",
        // The identity is the SHA-256 of the file: debug information (which holds the
        // checkout's absolute paths) would make it differ between two builds of the same
        // source in two places.
        "-Wl,--strip-debug",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
