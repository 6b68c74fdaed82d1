#!/usr/bin/env bash
# What vpr runs today: the PAL's service and SQLite, built freestanding (no libc), running a
# primary and a backup in one image: every request's state update is encoded, verified and
# applied at the backup, whose database file must stay byte-identical.
# (The replicated cluster over ZeroMQ replaces this with the protocol's main job.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked -p vpr-pal-selftest --profile freestanding --target-dir target/image
exec target/image/freestanding/pal-selftest
