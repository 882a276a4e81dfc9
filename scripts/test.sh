#!/usr/bin/env bash
# Runs every test: unit, property, simulation and end-to-end (real processes).
# Usage: scripts/test.sh   (from a fresh clone; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# End-to-end tests start the real binaries, so build them first.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
# `cargo install --locked --path` installs exactly parley, supernode and relay (issue 15).
scripts/install-check.sh
