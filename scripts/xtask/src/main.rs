//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `qemu-test [--kvm | --tcg] [--timeout SECS]`: builds the hypervisor image, boots it under
//!   QEMU, streams its serial log, and succeeds only if the image's self-test reported
//!   `N passed, 0 failed` and ended QEMU with the agreed success status.
//! - `tcb [--json FILE] [--build]`: the trusted computing base in lines of code per component,
//!   and the sizes of the images (see `tcb.rs`).
//! - `measure [--again]`: builds the production images and prints their measurements;
//!   `--again` builds them once more in a fresh clone elsewhere and checks the files are
//!   byte-identical (see `measure.rs`).
//!
//! Installs what it needs when missing: the `x86_64-unknown-none` target (rustup) and QEMU
//! (`apt-get install qemu-system-x86`, through sudo when not root).

mod checkquote;
mod ek;
mod evidence;
mod install;
mod json;
mod lines;
mod linux;
mod measure;
mod qemu;
mod tcb;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  qemu-test [--kvm | --tcg] [--timeout SECS]
      Build the hypervisor image and run its boot self-test under QEMU. KVM is used when
      /dev/kvm is usable and the host CPU has SVM, TCG otherwise; --kvm or --tcg forces one.
      The run is killed after SECS seconds (default 120).
  linux-test [--kvm | --tcg] [--timeout SECS]
      Build the hypervisor, the vpr binary and the Linux guest image (qemu/guest-image.sh:
      Debian's kernel, a busybox initramfs), boot Linux as the hypervisor's guest, and check
      that it reaches user space, runs vpr, cannot read or write the hypervisor's memory and
      keeps running (default timeout 300 s).
  tcb [--json FILE] [--build]
      Print the trusted computing base: files, lines, code, comment, blank, test and unsafe
      lines per component, third-party code apart, and the image sizes. --json FILE writes
      the same data as JSON; --build rebuilds the images (they are built only if missing).
  measure [--again]
      Build the production hypervisor and PAL images and print what a verifier expects of
      them: the hypervisor's measurement (the PCR 17 launch) and the PAL's identity.
      --again also builds both in a fresh clone of HEAD in another folder and fails unless
      the two builds are byte-identical.";

/// The accelerator QEMU runs the image with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Pick KVM if it can run SVM guests, else TCG.
    Auto,
    /// Hardware virtualization: needs SVM exposed by the host (nested virtualization).
    Kvm,
    /// QEMU's emulator, which emulates SVM and nested paging.
    Tcg,
}

/// The options of `qemu-test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuTestOptions {
    /// Which accelerator.
    pub accel: Accel,
    /// How long QEMU may run.
    pub timeout: Duration,
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    QemuTest(QemuTestOptions),
    LinuxTest(QemuTestOptions),
    Tcb(tcb::TcbOptions),
    Measure { again: bool },
    Help,
}

fn parse(args: &[String]) -> Result<Task, String> {
    let Some((task, rest)) = args.split_first() else {
        return Ok(Task::Help);
    };
    match task.as_str() {
        "qemu-test" => Ok(Task::QemuTest(qemu_options("qemu-test", rest, 120)?)),
        "linux-test" => Ok(Task::LinuxTest(qemu_options("linux-test", rest, 300)?)),
        "tcb" => {
            let mut options = tcb::TcbOptions::default();
            let mut rest = rest.iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--json" => {
                        let file = rest.next().ok_or("--json needs a file name")?;
                        options.json = Some(PathBuf::from(file));
                    }
                    "--build" => options.build = true,
                    other => return Err(format!("tcb: unknown argument {other:?}")),
                }
            }
            Ok(Task::Tcb(options))
        }
        "measure" => match rest {
            [] => Ok(Task::Measure { again: false }),
            [again] if again == "--again" => Ok(Task::Measure { again: true }),
            _ => Err(format!("measure: unknown arguments {rest:?}")),
        },
        "help" | "--help" | "-h" => Ok(Task::Help),
        other => Err(format!("unknown task {other:?}")),
    }
}

/// The options of a task that boots QEMU: `--kvm`, `--tcg`, `--timeout SECS` (default
/// `default_timeout` seconds).
fn qemu_options(
    task: &str,
    rest: &[String],
    default_timeout: u64,
) -> Result<QemuTestOptions, String> {
    let mut options =
        QemuTestOptions { accel: Accel::Auto, timeout: Duration::from_secs(default_timeout) };
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--kvm" => options.accel = Accel::Kvm,
            "--tcg" => options.accel = Accel::Tcg,
            "--timeout" => {
                let value = rest.next().ok_or("--timeout needs a number of seconds")?;
                let secs: u64 =
                    value.parse().map_err(|_| format!("bad --timeout value {value:?}"))?;
                options.timeout = Duration::from_secs(secs);
            }
            other => return Err(format!("{task}: unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// The workspace root: two levels above this crate (`scripts/xtask`).
fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    root.canonicalize().unwrap_or(root)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Task::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Task::QemuTest(options)) => match qemu::test(&workspace_root(), &options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qemu-test: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Task::LinuxTest(options)) => match linux::test(&workspace_root(), &options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("linux-test: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Task::Tcb(options)) => match tcb::run(&workspace_root(), &options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tcb: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Task::Measure { again }) => match measure::run(&workspace_root(), again) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("measure: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("xtask: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_qemu_test_options() {
        assert_eq!(
            parse(&args("qemu-test")),
            Ok(Task::QemuTest(QemuTestOptions {
                accel: Accel::Auto,
                timeout: Duration::from_secs(120)
            }))
        );
        assert_eq!(
            parse(&args("qemu-test --tcg --timeout 7")),
            Ok(Task::QemuTest(QemuTestOptions {
                accel: Accel::Tcg,
                timeout: Duration::from_secs(7)
            }))
        );
        let Ok(Task::QemuTest(o)) = parse(&args("qemu-test --kvm")) else { panic!() };
        assert_eq!(o.accel, Accel::Kvm);
        let Ok(Task::LinuxTest(o)) = parse(&args("linux-test --tcg")) else { panic!() };
        assert_eq!((o.accel, o.timeout), (Accel::Tcg, Duration::from_secs(300)));
        assert!(parse(&args("linux-test --fast")).is_err());
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(parse(&args("qemu-test --timeout")).is_err());
        assert!(parse(&args("qemu-test --timeout soon")).is_err());
        assert!(parse(&args("qemu-test --fast")).is_err());
        assert!(parse(&args("tcb --json")).is_err());
        assert!(parse(&args("tcb --fast")).is_err());
        assert!(parse(&args("lines")).is_err());
        assert_eq!(parse(&args("")), Ok(Task::Help));
    }

    #[test]
    fn parses_measure_options() {
        assert_eq!(parse(&args("measure")), Ok(Task::Measure { again: false }));
        assert_eq!(parse(&args("measure --again")), Ok(Task::Measure { again: true }));
        assert!(parse(&args("measure --twice")).is_err());
        assert!(parse(&args("measure --again --again")).is_err());
    }

    #[test]
    fn parses_tcb_options() {
        assert_eq!(parse(&args("tcb")), Ok(Task::Tcb(tcb::TcbOptions::default())));
        assert_eq!(
            parse(&args("tcb --json out.json --build")),
            Ok(Task::Tcb(tcb::TcbOptions { json: Some(PathBuf::from("out.json")), build: true }))
        );
    }
}
