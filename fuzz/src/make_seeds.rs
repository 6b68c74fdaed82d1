//! Checks each target's seeds (`vpr_proto_fuzz::seeds`) and writes them into
//! `<dir>/<target>/`, the corpus `cargo fuzz run` reads and grows: `make_seeds fuzz/corpus`.

// The fuzzers' coverage hooks, which every instrumented crate calls.
use libfuzzer_sys as _;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make_seeds <corpus directory>");
        return ExitCode::FAILURE;
    };
    if let Err(e) = vpr_proto_fuzz::seeds::check() {
        eprintln!("make_seeds: the hypervisor refuses a seed: {e}");
        return ExitCode::FAILURE;
    }
    for (target, seeds) in vpr_proto_fuzz::seeds::all() {
        let dir = root.join(target);
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            seeds
                .iter()
                .enumerate()
                .try_for_each(|(i, seed)| std::fs::write(dir.join(format!("seed-{i}")), seed))
        });
        if let Err(e) = written {
            eprintln!("make_seeds: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
