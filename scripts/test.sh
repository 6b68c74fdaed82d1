#!/usr/bin/env bash
# Runs every check and test of vpr: formatting, lints (host crates and the freestanding PAL
# image), the freestanding image build, and all tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The freestanding images build in their own target directory with their own profile
# (panic = abort, no libc): the self-test (the test `freestanding` checks and runs it) and the
# PAL image the hypervisor registers (`cargo xtask qemu-test` builds and boots it).
image=(-p vpr-pal-selftest --profile freestanding --target-dir target/image)
pal=(-p vpr-pal-image --profile freestanding --target-dir target/image)
# The test PAL image (the bare service too), in a target directory of its own.
pal_test=(-p vpr-pal-image --features bare --profile freestanding --target-dir target/image-test)
not_host=(--exclude vpr-pal-selftest --exclude vpr-pal-image)
# The hypervisor: a bare-metal image for x86_64-unknown-none, in its own target directory.
hv=(-p vpr-hypervisor --target x86_64-unknown-none --profile freestanding --target-dir target/hypervisor)
# The test image (the boot self-test compiled in), in a target directory of its own.
hv_test=(-p vpr-hypervisor --features selftest --target x86_64-unknown-none --profile freestanding
  --target-dir target/hypervisor-test)

echo "== rustfmt"
cargo fmt --all -- --check
cargo fmt --all --manifest-path fuzz/Cargo.toml -- --check
echo "== clippy"
cargo clippy --locked --workspace "${not_host[@]}" --all-targets -- -D warnings
cargo clippy --locked "${image[@]}" -- -D warnings
cargo clippy --locked "${pal[@]}" -- -D warnings
cargo clippy --locked "${pal_test[@]}" -- -D warnings
cargo clippy --locked "${hv[@]}" -- -D warnings
cargo clippy --locked "${hv_test[@]}" -- -D warnings
echo "== freestanding PAL self-test image"
cargo build --locked "${image[@]}"
echo "== tests"
# --show-output: the simulation prints its run and scenario counts, the drills their failover
# times. VPR_SIM_SEEDS=<n> runs n seeds per simulated scenario (16 scenarios; default 125).
cargo test --locked --workspace "${not_host[@]}" -- --show-output
echo "== fuzzing"
# Every fuzz target for 30 s, two at a time (VPR_FUZZ_SECONDS=3600 for a longer sweep).
VPR_FUZZ_SECONDS=${VPR_FUZZ_SECONDS:-30} scripts/fuzz.sh
echo "== hypervisor boot self-test (QEMU)"
cargo xtask qemu-test
echo "== Linux as the hypervisor's guest (QEMU)"
# Builds the guest image (qemu/guest-image.sh: Debian's kernel and busybox, downloaded once
# into target/guest/cache) and boots it on the hypervisor.
cargo xtask linux-test
echo "== reproducible images"
# The production images built once more in a fresh clone elsewhere: byte-identical, or fail.
cargo xtask measure --again
