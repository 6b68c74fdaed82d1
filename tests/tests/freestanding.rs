//! The PAL's code (service + SQLite) links with no libc: the self-test image is a static
//! executable with no interpreter, no dynamic section and no undefined symbol, and it passes
//! its own tests when run.
//!
//! The image is built here with the same command `scripts/test.sh` uses (a no-op when it is
//! already fresh), in its own target directory so it never waits on this test's own build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Builds the image and returns its path.
fn build_image() -> PathBuf {
    let root = root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--locked", "-p", "vpr-pal-selftest", "--profile", "freestanding"])
        .arg("--target-dir")
        .arg(root.join("target/image"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the freestanding image failed");
    root.join("target/image/freestanding/pal-selftest")
}

fn tool(name: &str, args: &[&str], image: &Path) -> String {
    let out =
        Command::new(name).args(args).arg(image).output().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn selftest_image_is_freestanding_and_passes() {
    let image = build_image();

    let undefined = tool("nm", &["-u"], &image);
    assert!(undefined.trim().is_empty(), "undefined symbols:\n{undefined}");
    let symbols = tool("nm", &[], &image);
    assert!(!symbols.to_ascii_lowercase().contains("glibc"), "glibc symbols in the image");
    for needed in ["vpr_sqlite3_open_v2", "vpr_sqlite3_step", "memcpy", "_start"] {
        assert!(
            symbols.lines().any(|l| l.split_whitespace().last() == Some(needed)),
            "{needed} not defined in the image"
        );
    }
    let headers = tool("readelf", &["--file-header", "--program-headers", "--dynamic"], &image);
    assert!(headers.contains("EXEC (Executable file)"), "not a static executable:\n{headers}");
    assert!(!headers.contains("INTERP"), "the image asks for a dynamic loader");
    assert!(headers.contains("There is no dynamic section"), "the image has a dynamic section");

    let out = Command::new(&image).output().expect("run the image");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "self-test failed ({}): {stdout}", out.status);
    assert!(stdout.contains("pal-selftest: ok"), "{stdout}");
    eprint!("{stdout}");
}
