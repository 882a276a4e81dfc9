#!/usr/bin/env bash
# Runs the NAT lab's pair matrix (clean, then 5 % loss on both routers) and prints the
# tables that docs/nat-traversal.md shows. Needs root (network namespaces, nftables).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --workspace --bins --quiet
cargo test --quiet -p parley-e2e --test nat_traversal -- --test-threads 1 --nocapture 2>/dev/null \
  | grep -E '^\||loss on both routers|^\(' | sed -E 's/.*(loss on both routers)/\1/'
