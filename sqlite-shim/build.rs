//! Compiles SQLite's amalgamation freestanding and renames its symbols.
//!
//! The source is the amalgamation that the pinned `libsqlite3-sys` crate ships (the same
//! release rusqlite's `bundled` feature compiles, so differential tests compare one engine
//! version); it is read from the crate registry at build time and never committed here.
//! `VPR_SQLITE_AMALGAMATION=<dir with sqlite3.c>` overrides the lookup.
//!
//! The object is compiled with no libc headers (`-ffreestanding -nostdinc`, our `include/`),
//! identically for host builds and for the PAL image. Every `sqlite3*` symbol is then renamed
//! `vpr_sqlite3*` with objcopy, so this engine links beside rusqlite's in one test binary.

use sha2::{Digest as _, Sha256};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `libsqlite3-sys` release whose amalgamation we compile (SQLite 3.54.1).
const AMALGAMATION_CRATE: (&str, &str) = ("libsqlite3-sys", "0.40.0");

/// Compile-time options; see docs/design.md ("The PAL's SQLite") for the reasons.
const DEFINES: &[&str] = &[
    "SQLITE_OS_OTHER=1",
    "SQLITE_THREADSAFE=0",
    "SQLITE_OMIT_LOAD_EXTENSION",
    "SQLITE_OMIT_LOCALTIME",
    "SQLITE_OMIT_SHARED_CACHE",
    "SQLITE_OMIT_WAL",
    "SQLITE_OMIT_DEPRECATED",
    "SQLITE_TEMP_STORE=3",
    "SQLITE_DEFAULT_MEMSTATUS=0",
    "SQLITE_DQS=0",
    "SQLITE_ZERO_MALLOC",
    "SQLITE_ENABLE_MEMSYS5",
    "SQLITE_DEFAULT_FOREIGN_KEYS=1",
    "SQLITE_MAX_MMAP_SIZE=0",
    "SQLITE_CORE",
    "NDEBUG",
];

/// SHA-256 of the `sqlite3.c` this build compiles: SQLite 3.54.1's amalgamation as
/// libsqlite3-sys 0.40.0 ships it. The PAL's identity depends on every byte of it, and the file
/// is read from the cargo registry (or `VPR_SQLITE_AMALGAMATION`), which Cargo does not check
/// for this build: any other file is refused.
const AMALGAMATION_SHA256: &str =
    "0c657666d819f261cc4007526ad57e1669de9949df7a8ea847aa284a2bf0ee52";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = amalgamation_dir(&manifest);
    let sqlite_c = src.join("sqlite3.c");
    let bytes = std::fs::read(&sqlite_c)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", sqlite_c.display()));
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        digest == AMALGAMATION_SHA256,
        "{} has SHA-256 {digest}, not {AMALGAMATION_SHA256} (SQLite 3.54.1's amalgamation as \
         libsqlite3-sys 0.40.0 ships it): refusing to compile another SQLite into the PAL",
        sqlite_c.display()
    );
    println!("cargo:rerun-if-changed={}", sqlite_c.display());
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-env-changed=VPR_SQLITE_AMALGAMATION");

    let gcc_include = command_output(Command::new("gcc").arg("-print-file-name=include"));
    let mut build = cc::Build::new();
    build
        .compiler("gcc")
        .file(&sqlite_c)
        .include(manifest.join("include"))
        .flag("-ffreestanding")
        .flag("-nostdinc")
        .flag(format!("-isystem{}", gcc_include.trim()))
        .flag("-fno-stack-protector")
        .flag("-fno-asynchronous-unwind-tables")
        .flag("-mno-red-zone")
        .flag("-fno-math-errno")
        // Bit-identical floating point on every replica: baseline ISA, no fused multiply-add.
        .flag("-march=x86-64")
        .flag("-ffp-contract=off")
        .flag("-fPIC")
        .flag("-ffunction-sections")
        .flag("-fdata-sections")
        .flag("-w")
        .opt_level(2)
        .debug(false)
        .cargo_metadata(false);
    for d in DEFINES {
        build.flag(format!("-D{d}"));
    }
    let objects = build.compile_intermediates();

    let map = out.join("rename.map");
    let mut renames = std::collections::BTreeSet::new();
    for obj in &objects {
        let listing = command_output(Command::new("nm").arg("-g").arg(obj));
        for line in listing.lines() {
            if let Some(sym) = line.split_whitespace().last() {
                if sym.starts_with("sqlite3") {
                    renames.insert(sym.to_owned());
                }
            }
        }
    }
    assert!(renames.len() > 200, "nm found only {} sqlite3 symbols", renames.len());
    let text: String = renames.iter().map(|s| format!("{s} vpr_{s}\n")).collect();
    std::fs::write(&map, text).expect("write rename map");
    for obj in &objects {
        run(Command::new("objcopy").arg(format!("--redefine-syms={}", map.display())).arg(obj));
    }
    let lib = out.join("libvpr_sqlite3.a");
    let _ = std::fs::remove_file(&lib);
    run(Command::new("ar").arg("crs").arg(&lib).args(&objects));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=vpr_sqlite3");
    println!("cargo:include={}", src.display());
}

/// Finds the amalgamation: the override variable; else the pinned crate's source in the cargo
/// registry; else wherever `cargo metadata` says that crate is (a vendored or moved registry).
fn amalgamation_dir(manifest: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("VPR_SQLITE_AMALGAMATION") {
        return PathBuf::from(dir);
    }
    let (name, version) = AMALGAMATION_CRATE;
    let crate_dir = format!("{name}-{version}");
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(registry) = cargo_home.map(|h| h.join("registry").join("src")) {
        if let Ok(indexes) = std::fs::read_dir(&registry) {
            for index in indexes.flatten() {
                let dir = index.path().join(&crate_dir).join("sqlite3");
                if dir.join("sqlite3.c").is_file() {
                    return dir;
                }
            }
        }
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = env::var("TARGET").expect("TARGET");
    let json = command_output(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--filter-platform", &target])
            .arg("--manifest-path")
            .arg(manifest.join("Cargo.toml")),
    );
    let meta: serde_json::Value = serde_json::from_str(&json).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let pkg = packages
        .iter()
        .find(|p| p["name"] == name && p["version"] == version)
        .unwrap_or_else(|| panic!("{name} {version} is not in the dependency graph"));
    let manifest_path = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    let dir = manifest_path.parent().expect("crate dir").join("sqlite3");
    assert!(dir.join("sqlite3.c").is_file(), "no sqlite3.c in {}", dir.display());
    dir
}

fn command_output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}
