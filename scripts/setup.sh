#!/usr/bin/env bash
# Installs what building and testing vpr needs on a fresh Debian/Ubuntu machine. Idempotent:
# on a machine that has everything it only checks.
set -euo pipefail

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
    echo "setup: vpr needs a Rust toolchain installed with rustup (https://rustup.rs)" >&2
    exit 1
fi

# gcc compiles SQLite and ZeroMQ's bindings; binutils (nm, objcopy, ar, readelf) rename its symbols and inspect the
# freestanding image.
packages=()
command -v gcc >/dev/null || packages+=(gcc)
for tool in nm objcopy ar readelf; do
    command -v "$tool" >/dev/null || { packages+=(binutils); break; }
done
# ZeroMQ, which the host runtime links (found through pkg-config).
command -v pkg-config >/dev/null || packages+=(pkg-config)
if ! pkg-config --exists libzmq 2>/dev/null; then
    packages+=(libzmq3-dev)
fi
# QEMU boots the hypervisor image for its self-test (`cargo xtask qemu-test`).
command -v qemu-system-x86_64 >/dev/null || packages+=(qemu-system-x86)
# The software TPM QEMU attaches to the hypervisor's machine, and its set-up tools.
command -v swtpm >/dev/null || packages+=(swtpm)
command -v swtpm_setup >/dev/null || packages+=(swtpm-tools)
# openssl checks that a TPM's EK certificate chains to the local CA; tpm2-tools'
# tpm2_checkquote checks the hypervisor's TPM quote.
command -v openssl >/dev/null || packages+=(openssl)
command -v tpm2_checkquote >/dev/null || packages+=(tpm2-tools)
# qemu-test plays a hostile TPM owner with tpm2-tools over swtpm's TCP interface.
[ -e /usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0 ] || packages+=(libtss2-tcti-swtpm0)
if ((${#packages[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${packages[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

installed=$(rustup component list --installed)
for component in rustfmt clippy; do
    grep -q "^$component" <<<"$installed" || rustup component add "$component"
done
# The hypervisor is a bare-metal image.
rustup target list --installed | grep -q '^x86_64-unknown-none$' ||
    rustup target add x86_64-unknown-none
