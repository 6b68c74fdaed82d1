#!/usr/bin/env bash
# Fuzzes the parsers and checks that take untrusted bytes (fuzz/, a cargo-fuzz workspace of its
# own): builds every target, then runs each for VPR_FUZZ_SECONDS seconds (default 30), two at a
# time (VPR_FUZZ_JOBS), and prints each run's executions and coverage. A crash fails the run
# and names its reproducer, fuzz/artifacts/<target>/crash-*; replay it with
# `fuzz/target/<host>/release/<target> <file>`.
#
#   scripts/fuzz.sh                                   # every target (scripts/test.sh runs this)
#   VPR_FUZZ_SECONDS=3600 scripts/fuzz.sh linux_boot  # an hour on one target
#
# The corpora grow in fuzz/corpus/<target>/ (not in git); make_seeds adds the seeds of
# fuzz/src/seeds.rs to them first.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${VPR_FUZZ_SECONDS:-30}
jobs=${VPR_FUZZ_JOBS:-2}
cargo_fuzz=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz" ]; then
    cargo install cargo-fuzz --version "$cargo_fuzz" --locked
fi

# The targets' crates forbid unsafe code, so AddressSanitizer would find nothing that Rust's
# own bounds checks do not; without a sanitizer cargo-fuzz needs no -Z flag, so the stable
# toolchain builds the targets (with libFuzzer's coverage instrumentation, optimized, with
# debug assertions and overflow checks).
build=(--sanitizer none --release --debug-assertions)
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
cargo fuzz build "${build[@]}"
bin=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list | grep -vx make_seeds)
fi
"$bin/make_seeds" fuzz/corpus

logs=fuzz/target/logs
mkdir -p "$logs"
run() {
    local target=$1
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    # -timeout: an input that takes 10 s is a hang, and fails the run like a crash.
    "$bin/$target" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" "fuzz/corpus/$target" >"$logs/$target.log" 2>&1
}

echo "fuzzing ${targets[*]} for ${seconds}s each, $jobs at a time"
pids=()
for target in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do
        wait -n || true
    done
    run "$target" &
    pids+=($!)
done
failed=()
for i in "${!targets[@]}"; do
    target=${targets[$i]}
    log=$logs/$target.log
    if wait "${pids[$i]}"; then
        # libFuzzer's last line: "#<runs> DONE cov: <edges> ft: <features> corp: <n>/<size> ...".
        summary=$(sed -nE 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+cov: ([0-9]+) ft: ([0-9]+) corp: ([^ ]+).*/\1 runs, cov \2, ft \3, corpus \4/p' "$log" | tail -1)
        speed=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log")
        echo "$target: $summary, $speed exec/s, no crash"
    else
        failed+=("$target")
        echo "$target: FAILED; the end of its log ($log):"
        tail -n 40 "$log"
        grep -h 'Test unit written to' "$log" || true
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
