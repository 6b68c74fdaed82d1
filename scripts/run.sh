#!/usr/bin/env bash
# The main job: a local 3-replica cluster on the simulation backend, a small SQL workload
# through verified replies, and each replica's database hash. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --locked --release --quiet -p vpr-host --bin vpr -- demo
