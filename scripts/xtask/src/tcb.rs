//! `tcb`: the trusted computing base in lines of code, per component, and the size of the
//! images that carry it.
//!
//! What is counted (see `lines.rs` for the line classes): every `.rs`, `.c` and `.h` file under
//! a component's folders. Code lines are the non-blank lines that are not only comments; lines
//! of `#[cfg(test)]` modules (inline, or in the file a `#[cfg(test)] mod name;` names) and all
//! files under a `tests/` folder are test lines, not code. `unsafe` lines are code lines with
//! the `unsafe` keyword outside comments and strings. Build scripts and linker scripts are not
//! counted (they run at build time, not in the image).
//!
//! Third-party code is listed apart and never added to "trusted (ours)": SQLite's amalgamation
//! (the `sqlite3.c` that sqlite-shim's build script compiles), and the crates the trusted
//! crates link, split into the crypto crates (everything `sha2`, `hmac`, `hkdf`, `p256` and
//! `chacha20poly1305` pull in) and the rest, counted over their `src/**/*.rs` in the cargo
//! registry.

use crate::install;
use crate::json::{self, Json};
use crate::lines::{self, Counts, Lang};
use crate::qemu;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The options of `tcb`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcbOptions {
    /// Where to write the report as JSON as well.
    pub json: Option<PathBuf>,
    /// Rebuild the images even when they exist.
    pub build: bool,
}

/// Where a component stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Ours, in the TCB: summed into "trusted (ours)".
    Trusted,
    /// In the TCB but not ours: listed apart.
    ThirdParty,
    /// Outside the TCC; Byzantine in the fault model.
    Untrusted,
    /// Not in any deployed image (tests, tools).
    NotTcb,
}

impl Trust {
    fn label(self) -> &'static str {
        match self {
            Trust::Trusted => "trusted",
            Trust::ThirdParty => "trusted, 3rd party",
            Trust::Untrusted => "untrusted",
            Trust::NotTcb => "not TCB",
        }
    }
}

/// One of our components: folders (or files) relative to the workspace root.
#[derive(Debug)]
struct Component {
    name: &'static str,
    trust: Trust,
    paths: &'static [&'static str],
    /// Folders and files under `paths` that belong to another component.
    exclude: &'static [&'static str],
    /// Whether test code counts as test lines (false where tests are the component).
    split_tests: bool,
}

const COMPONENTS: &[Component] = &[
    Component {
        name: "hypervisor image",
        trust: Trust::Trusted,
        paths: &["hypervisor/src/image"],
        exclude: TEST_IMAGE_ONLY,
        split_tests: true,
    },
    Component {
        name: "hypervisor lib",
        trust: Trust::Trusted,
        paths: &["hypervisor/src"],
        exclude: &["hypervisor/src/image", "hypervisor/src/inspect.rs"],
        split_tests: true,
    },
    Component {
        name: "pal",
        trust: Trust::Trusted,
        paths: &["pal/src"],
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "pal/image",
        trust: Trust::Trusted,
        paths: &["pal/image/src"],
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "proto",
        trust: Trust::Trusted,
        paths: &["proto/src"],
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "sqlite-shim (own code)",
        trust: Trust::Trusted,
        paths: &[
            "sqlite-shim/src",
            "sqlite-shim/crt/src",
            "sqlite-shim/include",
            "sqlite-shim/tests",
        ],
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "host",
        trust: Trust::Untrusted,
        paths: &["host/src", "host/tests"],
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "tests",
        trust: Trust::NotTcb,
        paths: &["tests/src", "tests/tests", "tests/benches"],
        exclude: &[],
        split_tests: false,
    },
    Component {
        name: "hypervisor test image",
        trust: Trust::NotTcb,
        paths: TEST_IMAGE_ONLY,
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "pal/selftest",
        trust: Trust::NotTcb,
        paths: &["pal/selftest/src"],
        exclude: &[],
        split_tests: true,
    },
    Component {
        name: "scripts/xtask",
        trust: Trust::NotTcb,
        paths: &["scripts/xtask/src"],
        exclude: &[],
        split_tests: true,
    },
];

/// What only the test image (feature `selftest`) compiles: the boot self-test, its test
/// guests, and the library's module that reads back what was built (also compiled for the
/// unit tests). The production image has none of it.
const TEST_IMAGE_ONLY: &[&str] = &[
    "hypervisor/src/image/selftest.rs",
    "hypervisor/src/image/selftest",
    "hypervisor/src/image/guest",
    "hypervisor/src/inspect.rs",
];

/// The crates whose dependency closure is "crypto".
const CRYPTO_ROOTS: &[&str] = &["sha2", "hmac", "hkdf", "p256", "chacha20poly1305"];
/// Our crates that run inside the TCC, whose dependencies are trusted.
const TRUSTED_PACKAGES: &[&str] =
    &["vpr-pal", "vpr-pal-image", "vpr-proto", "vpr-hypervisor", "vpr-crt"];
/// The target the trusted crates' dependencies are resolved for.
const TCC_TARGET: &str = "x86_64-unknown-none";
/// The crate shipping the amalgamation sqlite-shim compiles (as in sqlite-shim/build.rs).
const AMALGAMATION_CRATE: (&str, &str) = ("libsqlite3-sys", "0.40.0");
/// A counted row of the report.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    trust: Trust,
    paths: Vec<String>,
    counts: Counts,
}

/// A third-party crate.
#[derive(Debug, Clone)]
struct Crate {
    name: String,
    version: String,
    dir: PathBuf,
    counts: Counts,
}

/// An image's sizes.
#[derive(Debug, Clone)]
struct Image {
    name: &'static str,
    path: PathBuf,
    note: String,
    /// File size, memory size of the PT_LOAD segments, file size of them; `None` if missing.
    sizes: Option<(u64, u64, u64)>,
}

/// The source files under `dir` (sorted), skipping `exclude`.
fn source_files(dir: &Path, exclude: &[PathBuf], out: &mut Vec<PathBuf>) {
    if exclude.iter().any(|e| e == dir) {
        return;
    }
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, exclude, out);
        } else if lang(&path).is_some() && !exclude.contains(&path) {
            out.push(path);
        }
    }
}

fn lang(path: &Path) -> Option<Lang> {
    match path.extension()?.to_str()? {
        "rs" => Some(Lang::Rust),
        "c" | "h" => Some(Lang::C),
        _ => None,
    }
}

/// Counts `files`; test modules named by `#[cfg(test)] mod x;` and files under a `tests`
/// folder (below `base`) are test code when `split_tests`. Returns the newest modification
/// time too.
fn count(base: &Path, files: &[PathBuf], split_tests: bool) -> (Counts, Option<SystemTime>) {
    let mut scans = Vec::new();
    let mut test_files: Vec<PathBuf> = Vec::new();
    let mut newest = None;
    for path in files {
        let Some(lang) = lang(path) else { continue };
        let Ok(bytes) = fs::read(path) else { continue };
        let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
        newest = newest.max(modified);
        let scan = lines::scan(&String::from_utf8_lossy(&bytes), lang);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let parent = path.parent().unwrap_or(Path::new(""));
        let dir = if matches!(stem, "lib" | "main" | "mod") {
            parent.to_path_buf()
        } else {
            parent.join(stem)
        };
        test_files.extend(scan.test_modules.iter().map(|name| dir.join(name)));
        scans.push((path, scan.counts));
    }
    let mut total = Counts::default();
    for (path, counts) in scans {
        let relative = path.strip_prefix(base).unwrap_or(path);
        let in_tests_folder = relative.parent().is_some_and(|p| p.iter().any(|c| c == "tests"));
        let named_test = test_files
            .iter()
            .any(|module| path.with_extension("") == *module || path.starts_with(module));
        if !split_tests {
            let mut counts = counts;
            counts.code += counts.test;
            counts.test = 0;
            total.add(&counts);
        } else if in_tests_folder || named_test {
            total.add(&counts.all_test());
        } else {
            total.add(&counts);
        }
    }
    (total, newest)
}

fn count_component(root: &Path, component: &Component) -> (Row, Option<SystemTime>) {
    let exclude: Vec<PathBuf> = component.exclude.iter().map(|e| root.join(e)).collect();
    let mut files = Vec::new();
    for path in component.paths {
        source_files(&root.join(path), &exclude, &mut files);
    }
    let (counts, newest) = count(root, &files, component.split_tests);
    let row = Row {
        name: component.name.to_string(),
        trust: component.trust,
        paths: component.paths.iter().map(|p| p.to_string()).collect(),
        counts,
    };
    (row, newest)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"))
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{command:?}: output is not UTF-8"))
}

/// What `cargo metadata` says about the packages.
#[derive(Debug, Default)]
struct Metadata {
    /// id -> (name, version, manifest directory, proc-macro?)
    packages: BTreeMap<String, (String, String, PathBuf, bool)>,
    /// id -> ids of its normal (not dev, not build) dependencies.
    normal_deps: BTreeMap<String, Vec<String>>,
    workspace: BTreeSet<String>,
}

fn metadata(root: &Path) -> Result<Metadata, String> {
    let text = output(Command::new(cargo()).current_dir(root).args([
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        TCC_TARGET,
    ]))?;
    let meta = json::parse(&text)?;
    let mut result = Metadata::default();
    for package in meta.get("packages").map(Json::items).unwrap_or_default() {
        let field = |key: &str| package.get(key).and_then(Json::as_str).unwrap_or("").to_string();
        let manifest = PathBuf::from(field("manifest_path"));
        let proc_macro =
            package.get("targets").map(Json::items).unwrap_or_default().iter().all(|target| {
                target
                    .get("kind")
                    .map(Json::items)
                    .unwrap_or_default()
                    .iter()
                    .any(|k| k.as_str() == Some("proc-macro"))
            });
        let dir = manifest.parent().unwrap_or(Path::new("")).to_path_buf();
        result.packages.insert(field("id"), (field("name"), field("version"), dir, proc_macro));
    }
    result.workspace = meta
        .get("workspace_members")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .filter_map(|id| id.as_str().map(String::from))
        .collect();
    let nodes =
        meta.get("resolve").and_then(|r| r.get("nodes")).map(Json::items).unwrap_or_default();
    for node in nodes {
        let Some(id) = node.get("id").and_then(Json::as_str) else { continue };
        let deps = node.get("deps").map(Json::items).unwrap_or_default();
        let normal = deps
            .iter()
            .filter(|dep| {
                dep.get("dep_kinds")
                    .map(Json::items)
                    .unwrap_or_default()
                    .iter()
                    .any(|kind| kind.get("kind") == Some(&Json::Null))
            })
            .filter_map(|dep| dep.get("pkg").and_then(Json::as_str).map(String::from))
            .collect();
        result.normal_deps.insert(id.to_string(), normal);
    }
    Ok(result)
}

impl Metadata {
    /// The packages reachable from `starts` over normal dependencies, proc-macros left out,
    /// restricted to `allowed` (name, version) pairs when given.
    fn closure(
        &self,
        starts: impl IntoIterator<Item = String>,
        allowed: Option<&BTreeSet<(String, String)>>,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = starts.into_iter().collect();
        while let Some(id) = stack.pop() {
            let Some((name, version, _, proc_macro)) = self.packages.get(&id) else { continue };
            let is_allowed = allowed.is_none_or(|a| a.contains(&(name.clone(), version.clone())));
            if *proc_macro || !is_allowed || !seen.insert(id.clone()) {
                continue;
            }
            stack.extend(self.normal_deps.get(&id).into_iter().flatten().cloned());
        }
        seen
    }

    fn ids_named(&self, names: &[&str]) -> Vec<String> {
        self.packages
            .iter()
            .filter(|(_, (name, ..))| names.contains(&name.as_str()))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The (name, version) of every package the trusted crates link on the TCC target with their
/// own features (`cargo tree`: unlike `cargo metadata`, it does not unify features with the
/// host's crates).
fn trusted_package_set(root: &Path) -> Result<BTreeSet<(String, String)>, String> {
    let mut command = Command::new(cargo());
    command.current_dir(root).arg("tree");
    for package in TRUSTED_PACKAGES {
        command.args(["-p", package]);
    }
    command.args(["-e", "normal,no-proc-macro", "--target", TCC_TARGET]);
    command.args(["--prefix", "none", "--format", "{p}"]);
    let text = output(&mut command)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_string(), version.to_string()))
        })
        .collect())
}

/// The third-party crates of the trusted crates: (crypto, others).
fn third_party(root: &Path, meta: &Metadata) -> (Vec<Crate>, Vec<Crate>, String) {
    let (allowed, note) = match trusted_package_set(root) {
        Ok(set) => {
            (Some(set), format!("resolved for {TCC_TARGET} with the trusted crates' own features"))
        }
        Err(e) => (None, format!("cargo tree failed ({e}); workspace-wide feature resolution")),
    };
    let trusted = meta.closure(meta.ids_named(TRUSTED_PACKAGES), allowed.as_ref());
    let proto_pal = meta.closure(meta.ids_named(&["vpr-pal", "vpr-proto"]), allowed.as_ref());
    let roots = meta.ids_named(CRYPTO_ROOTS).into_iter().filter(|id| proto_pal.contains(id));
    let crypto = meta.closure(roots, allowed.as_ref());
    let describe = |id: &String| {
        let (name, version, dir, _) = &meta.packages[id];
        let mut files = Vec::new();
        source_files(&dir.join("src"), &[], &mut files);
        files.retain(|f| lang(f) == Some(Lang::Rust));
        let (counts, _) = count(dir, &files, true);
        Crate { name: name.clone(), version: version.clone(), dir: dir.clone(), counts }
    };
    let crypto_crates: Vec<Crate> = crypto.iter().map(describe).collect();
    let others = trusted
        .iter()
        .filter(|id| !crypto.contains(*id) && !meta.workspace.contains(*id))
        .map(describe)
        .collect();
    (crypto_crates, others, note)
}

/// The amalgamation: as sqlite-shim/build.rs finds it (the override variable, the cargo
/// registry, then `cargo metadata`).
fn amalgamation(meta: Option<&Metadata>) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VPR_SQLITE_AMALGAMATION") {
        let file = PathBuf::from(dir).join("sqlite3.c");
        return file.is_file().then_some(file);
    }
    let (name, version) = AMALGAMATION_CRATE;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(registry) = cargo_home.map(|h| h.join("registry").join("src")) {
        let mut indexes: Vec<PathBuf> =
            fs::read_dir(&registry).into_iter().flatten().flatten().map(|e| e.path()).collect();
        indexes.sort();
        for index in indexes {
            let file = index.join(format!("{name}-{version}")).join("sqlite3/sqlite3.c");
            if file.is_file() {
                return Some(file);
            }
        }
    }
    meta?
        .packages
        .values()
        .find(|(n, v, ..)| n == name && v == version)
        .map(|(_, _, dir, _)| dir.join("sqlite3/sqlite3.c"))
        .filter(|file| file.is_file())
}

/// The sizes of an ELF64 little-endian file: (memory size, file size) summed over its PT_LOAD
/// segments.
pub fn elf_load_sizes(bytes: &[u8]) -> Result<(u64, u64), String> {
    let u16_at = |at: usize| -> Result<u64, String> {
        let b = bytes.get(at..at + 2).ok_or("ELF file too short")?;
        Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |at: usize| -> Result<u64, String> {
        let b = bytes.get(at..at + 4).ok_or("ELF file too short")?;
        Ok(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let u64_at = |at: usize| -> Result<u64, String> {
        let b: [u8; 8] =
            bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).ok_or("ELF file too short")?;
        Ok(u64::from_le_bytes(b))
    };
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(String::from("not an ELF file"));
    }
    if bytes.get(4..6) != Some(&[2, 1]) {
        return Err(String::from("not a little-endian ELF64 file"));
    }
    let index = |v: u64| usize::try_from(v).map_err(|_| String::from("ELF offset too large"));
    let phoff = index(u64_at(0x20)?)?;
    let phentsize = index(u16_at(0x36)?)?;
    let phnum = index(u16_at(0x38)?)?;
    if phnum > 0 && phentsize < 0x38 {
        return Err(String::from("ELF program header entries too small"));
    }
    let (mut memsz, mut filesz) = (0, 0);
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        const PT_LOAD: u64 = 1;
        if u32_at(at)? == PT_LOAD {
            filesz += u64_at(at + 0x20)?;
            memsz += u64_at(at + 0x28)?;
        }
    }
    Ok((memsz, filesz))
}

fn image(
    name: &'static str,
    path: PathBuf,
    note: &str,
    sources_newest: Option<SystemTime>,
    build: impl FnOnce() -> Result<PathBuf, String>,
    rebuild: bool,
) -> Image {
    let mut note = note.to_string();
    let path = if rebuild || !path.is_file() {
        match build() {
            Ok(built) => built,
            Err(e) => {
                let _ = write!(note, "; build failed: {e}");
                path
            }
        }
    } else {
        path
    };
    let sizes = fs::read(&path).ok().and_then(|bytes| {
        let file = u64::try_from(bytes.len()).ok()?;
        match elf_load_sizes(&bytes) {
            Ok((memsz, filesz)) => Some((file, memsz, filesz)),
            Err(e) => {
                let _ = write!(note, "; {e}");
                None
            }
        }
    });
    let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
    if sizes.is_some() && modified < sources_newest {
        note.push_str("; older than its sources: `cargo xtask tcb --build` rebuilds it");
    }
    Image { name, path, note, sizes }
}

/// The whole report.
#[derive(Debug)]
struct Report {
    rows: Vec<Row>,
    trusted_total: Counts,
    sqlite: Option<(PathBuf, Counts)>,
    crypto: Vec<Crate>,
    others: Vec<Crate>,
    deps_note: String,
    images: Vec<Image>,
}

fn collect(root: &Path, options: &TcbOptions) -> Report {
    let mut rows = Vec::new();
    let mut newest = BTreeMap::new();
    for component in COMPONENTS {
        let (row, time) = count_component(root, component);
        newest.insert(component.name, time);
        rows.push(row);
    }
    let mut trusted_total = Counts::default();
    for row in rows.iter().filter(|r| r.trust == Trust::Trusted) {
        trusted_total.add(&row.counts);
    }

    let meta = metadata(root);
    let sqlite = amalgamation(meta.as_ref().ok()).map(|file| {
        let text = fs::read(&file).unwrap_or_default();
        let mut counts = lines::scan(&String::from_utf8_lossy(&text), Lang::C).counts;
        counts.test = 0;
        (file, counts)
    });
    let (crypto, others, deps_note) = match &meta {
        Ok(meta) => third_party(root, meta),
        Err(e) => (Vec::new(), Vec::new(), format!("cargo metadata failed: {e}")),
    };

    let newest_of =
        |names: &[&str]| names.iter().filter_map(|n| newest.get(n).copied().flatten()).max();
    let hypervisor_sources = newest_of(&["hypervisor image", "hypervisor lib", "proto"]);
    let test_sources = newest_of(&["hypervisor image", "hypervisor test image", "hypervisor lib"]);
    let pal_sources = newest_of(&["pal", "proto", "sqlite-shim (own code)", "pal/image"]);
    let hypervisor = image(
        "hypervisor",
        qemu::image_path(root, qemu::Image::Production),
        "the production image: Linux and its PALs only (replica VMs and `cargo xtask \
         linux-test` boot it)",
        hypervisor_sources,
        || {
            install::rust_target()?;
            qemu::build_image(root, qemu::Image::Production)
        },
        options.build,
    );
    let test = image(
        "hypervisor (test)",
        qemu::image_path(root, qemu::Image::Test),
        "the test image, not in the TCB: the production code plus the boot self-test, its test \
         guests and benchmarks (`cargo xtask qemu-test` boots it)",
        test_sources.max(hypervisor_sources),
        || {
            install::rust_target()?;
            qemu::build_image(root, qemu::Image::Test)
        },
        options.build,
    );
    let pal = image(
        "pal",
        qemu::pal_image_path(root, qemu::Image::Production),
        "the production PAL image the replicas register (as `cargo xtask linux-test` and \
         `measure` build it): the Manager, SQLite, crypto and the freestanding C functions; its \
         zero-filled part is mostly its static heap",
        pal_sources,
        || qemu::build_pal_image(root, qemu::Image::Production),
        options.build,
    );
    Report {
        rows,
        trusted_total,
        sqlite,
        crypto,
        others,
        deps_note,
        images: vec![hypervisor, test, pal],
    }
}

fn sum(crates: &[Crate]) -> Counts {
    let mut total = Counts::default();
    for c in crates {
        total.add(&c.counts);
    }
    total
}

const HEADER: [&str; 9] =
    ["component", "trust", "files", "lines", "code", "comment", "blank", "test", "unsafe"];

fn table_row(name: &str, trust: &str, c: &Counts) -> [String; 9] {
    [
        name.to_string(),
        trust.to_string(),
        c.files.to_string(),
        c.total.to_string(),
        c.code.to_string(),
        c.comment.to_string(),
        c.blank.to_string(),
        c.test.to_string(),
        c.unsafe_lines.to_string(),
    ]
}

fn kib(bytes: u64) -> String {
    let tenths = (bytes * 10 + 512) / 1024;
    format!("{}.{} KiB", tenths / 10, tenths % 10)
}

/// The report as text.
fn render(report: &Report) -> String {
    let mut table: Vec<Option<[String; 9]>> = vec![Some(HEADER.map(String::from)), None];
    let mut hypervisor = Counts::default();
    for row in &report.rows {
        if row.trust != Trust::Trusted {
            continue;
        }
        table.push(Some(table_row(&row.name, row.trust.label(), &row.counts)));
        if row.name.starts_with("hypervisor") {
            hypervisor.add(&row.counts);
            if row.name == "hypervisor lib" {
                table.push(Some(table_row("  hypervisor (both)", "", &hypervisor)));
            }
        }
    }
    table.push(None);
    table.push(Some(table_row("trusted (ours)", "", &report.trusted_total)));
    table.push(None);
    match &report.sqlite {
        Some((_, counts)) => {
            table.push(Some(table_row("SQLite amalgamation", Trust::ThirdParty.label(), counts)));
        }
        None => {
            let mut row =
                table_row("SQLite amalgamation", Trust::ThirdParty.label(), &Counts::default());
            row[2] = String::from("not found");
            for cell in &mut row[3..] {
                cell.clear();
            }
            table.push(Some(row));
        }
    }
    let crypto_name = format!("crypto crates ({})", report.crypto.len());
    table.push(Some(table_row(&crypto_name, Trust::ThirdParty.label(), &sum(&report.crypto))));
    let others_name = format!("other crates ({})", report.others.len());
    table.push(Some(table_row(&others_name, Trust::ThirdParty.label(), &sum(&report.others))));
    table.push(None);
    for row in report.rows.iter().filter(|r| r.trust != Trust::Trusted) {
        table.push(Some(table_row(&row.name, row.trust.label(), &row.counts)));
    }

    let mut widths = [0; 9];
    for row in table.iter().flatten() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    let mut out = String::from("Trusted computing base (`cargo xtask tcb`)\n\n");
    for row in &table {
        match row {
            None => out.push_str(&"-".repeat(line_width)),
            Some(cells) => {
                let mut line = String::new();
                for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                    if i > 0 {
                        line.push_str("  ");
                    }
                    if i < 2 {
                        let _ = write!(line, "{cell:<w$}");
                    } else {
                        let _ = write!(line, "{cell:>w$}");
                    }
                }
                out.push_str(line.trim_end());
            }
        }
        out.push('\n');
    }
    out.push_str(
        "\ntrusted (ours) = hypervisor + pal + proto + sqlite-shim's own code (src, crt/src,\n\
         include). Not included: SQLite and the crates, listed apart.\n\
         code = non-blank lines that are not only comments; test = non-blank lines of\n\
         #[cfg(test)] modules and of files under tests/ (not code); unsafe = code lines with\n\
         the `unsafe` keyword outside comments and strings. Build scripts are not counted.\n",
    );
    if let Some((file, _)) = &report.sqlite {
        let _ = writeln!(out, "SQLite: {} (C; counted with the same rules)", file.display());
    }
    let _ = writeln!(out, "Crates, src/**/*.rs each ({}):", report.deps_note);
    for (title, crates) in [("crypto", &report.crypto), ("other", &report.others)] {
        let list: Vec<String> = crates
            .iter()
            .map(|c| format!("{} {} ({})", c.name, c.version, c.counts.code))
            .collect();
        let text = format!("{title} (name version (code lines)): {}", list.join(", "));
        out.push_str(&wrap(&text, "  ", "    ", 95));
    }
    out.push_str("\nImages (ELF; loaded = sum of PT_LOAD memory sizes, .bss included):\n");
    for image in &report.images {
        let _ = writeln!(out, "  {}: {}", image.name, image.path.display());
        match image.sizes {
            Some((file, memsz, filesz)) => {
                let _ = writeln!(out, "    file    {file:>10} bytes ({})", kib(file));
                let _ = writeln!(
                    out,
                    "    loaded  {memsz:>10} bytes ({}): {} from the file, {} zero-filled",
                    kib(memsz),
                    kib(filesz),
                    kib(memsz.saturating_sub(filesz))
                );
            }
            None => out.push_str("    not available\n"),
        }
        out.push_str(&wrap(&image.note, "    ", "    ", 95));
    }
    out
}

/// `text` broken into lines of at most `width` characters (longer words stay whole), the
/// first indented by `first`, the others by `rest`; ends with a newline.
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from(rest);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn counts_json(c: &Counts) -> Json {
    Json::obj([
        ("files", Json::num(c.files)),
        ("lines", Json::num(c.total)),
        ("code", Json::num(c.code)),
        ("comment", Json::num(c.comment)),
        ("blank", Json::num(c.blank)),
        ("test", Json::num(c.test)),
        ("unsafe", Json::num(c.unsafe_lines)),
    ])
}

fn crates_json(crates: &[Crate]) -> Json {
    Json::Arr(
        crates
            .iter()
            .map(|c| {
                Json::obj([
                    ("name", Json::str(&c.name)),
                    ("version", Json::str(&c.version)),
                    ("dir", Json::str(c.dir.display().to_string())),
                    ("counts", counts_json(&c.counts)),
                ])
            })
            .collect(),
    )
}

/// The report as JSON.
fn to_json(report: &Report) -> Json {
    let components = report
        .rows
        .iter()
        .map(|row| {
            Json::obj([
                ("name", Json::str(&row.name)),
                ("trust", Json::str(row.trust.label())),
                ("in_trusted_total", Json::Bool(row.trust == Trust::Trusted)),
                ("paths", Json::Arr(row.paths.iter().map(Json::str).collect())),
                ("counts", counts_json(&row.counts)),
            ])
        })
        .collect();
    let sqlite = match &report.sqlite {
        Some((file, counts)) => Json::obj([
            ("path", Json::str(file.display().to_string())),
            ("counts", counts_json(counts)),
        ]),
        None => Json::str("not found"),
    };
    let images = report
        .images
        .iter()
        .map(|image| {
            let (file, memsz, filesz) = match image.sizes {
                Some((f, m, l)) => (Json::num(f), Json::num(m), Json::num(l)),
                None => (Json::Null, Json::Null, Json::Null),
            };
            Json::obj([
                ("name", Json::str(image.name)),
                ("path", Json::str(image.path.display().to_string())),
                ("file_bytes", file),
                ("loaded_bytes", memsz),
                ("loaded_from_file_bytes", filesz),
                ("note", Json::str(&image.note)),
            ])
        })
        .collect();
    Json::obj([
        (
            "rules",
            Json::str(
                "code: non-blank lines that are not only comments; test: lines of #[cfg(test)] \
                 modules and of files under tests/ (not code); unsafe: code lines with the \
                 `unsafe` keyword outside comments and strings",
            ),
        ),
        ("components", Json::Arr(components)),
        ("trusted_ours", counts_json(&report.trusted_total)),
        (
            "third_party",
            Json::obj([
                ("sqlite", sqlite),
                ("crypto_total", counts_json(&sum(&report.crypto))),
                ("crypto_crates", crates_json(&report.crypto)),
                ("other_total", counts_json(&sum(&report.others))),
                ("other_crates", crates_json(&report.others)),
                ("resolution", Json::str(&report.deps_note)),
            ]),
        ),
        ("images", Json::Arr(images)),
    ])
}

/// The whole task.
pub fn run(root: &Path, options: &TcbOptions) -> Result<(), String> {
    let report = collect(root, options);
    print!("{}", render(&report));
    if let Some(path) = &options.json {
        fs::write(path, to_json(&report).pretty())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with two PT_LOAD segments and a PT_NOTE.
    fn elf() -> Vec<u8> {
        let mut bytes = vec![0u8; 0x40 + 3 * 0x38];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        for (i, (kind, filesz, memsz)) in
            [(1u32, 100u64, 300u64), (4, 7, 7), (1, 50, 50)].into_iter().enumerate()
        {
            let at = 0x40 + i * 0x38;
            bytes[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            bytes[at + 0x20..at + 0x28].copy_from_slice(&filesz.to_le_bytes());
            bytes[at + 0x28..at + 0x30].copy_from_slice(&memsz.to_le_bytes());
        }
        bytes
    }

    /// Each path counted as test image only is declared under `feature = "selftest"` (the
    /// library's also under `test`), so the production build cannot contain it, and is left
    /// out of the trusted rows.
    #[test]
    fn test_image_paths_are_not_in_the_production_build() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for path in TEST_IMAGE_ONLY {
            let name = Path::new(path).file_stem().unwrap().to_str().unwrap();
            let (file, cfg) = match path.strip_prefix("hypervisor/src/image/") {
                Some(_) => {
                    ("image/main.rs", r#"#[cfg(all(target_os = "none", feature = "selftest"))]"#)
                }
                None => ("lib.rs", r#"#[cfg(any(test, feature = "selftest"))]"#),
            };
            let text = fs::read_to_string(root.join("hypervisor/src").join(file)).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.trim_start_matches("pub ") == format!("mod {name};"))
                .unwrap_or_else(|| panic!("{path}: no `mod {name};` in {file}"));
            assert_eq!(lines[at - 1], cfg, "{path}");
            let trusted = COMPONENTS.iter().filter(|c| c.trust == Trust::Trusted);
            let counted = trusted.filter(|c| c.paths.iter().any(|p| path.starts_with(p)));
            assert!(counted.into_iter().all(|c| c.exclude.iter().any(|e| path.starts_with(e))));
        }
    }

    #[test]
    fn wrap_breaks_between_words() {
        assert_eq!(wrap("aa bb cc dd", "> ", "  ", 8), "> aa bb\n  cc dd\n");
        assert_eq!(wrap("averylongword x", "", "", 4), "averylongword\nx\n");
    }

    #[test]
    fn elf_load_sizes_sum_pt_load_only() {
        assert_eq!(elf_load_sizes(&elf()), Ok((350, 150)));
        assert!(elf_load_sizes(b"\x7fELF\x01\x01").is_err(), "ELF32");
        assert!(elf_load_sizes(&elf()[..0x50]).is_err(), "truncated");
        assert!(elf_load_sizes(b"#!/bin/sh").is_err());
    }

    #[test]
    fn out_of_line_test_modules_and_tests_folders_are_test_code() {
        let dir = std::env::temp_dir().join(format!("xtask-tcb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src/msg")).unwrap();
        fs::create_dir_all(dir.join("tests")).unwrap();
        fs::write(dir.join("src/lib.rs"), "mod msg;\n#[cfg(test)]\nmod tests;\n").unwrap();
        fs::write(dir.join("src/tests.rs"), "fn t() {}\n").unwrap();
        fs::write(dir.join("src/msg.rs"), "fn m() {}\n#[cfg(test)]\nmod tests;\n").unwrap();
        fs::write(dir.join("src/msg/tests.rs"), "fn t() {}\nfn u() {}\n").unwrap();
        fs::write(dir.join("tests/it.rs"), "fn t() {}\n").unwrap();
        let mut files = Vec::new();
        source_files(&dir.join("src"), &[], &mut files);
        source_files(&dir.join("tests"), &[], &mut files);
        let (counts, _) = count(&dir, &files, true);
        assert_eq!(counts.files, 5);
        assert_eq!(counts.code, 2, "`mod msg;` and m");
        assert_eq!(counts.test, 2 + 1 + 2 + 2 + 1);
        let (all, _) = count(&dir, &files, false);
        assert_eq!((all.code, all.test), (10, 0), "every line is code");
        let _ = fs::remove_dir_all(&dir);
    }
}
