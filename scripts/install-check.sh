#!/usr/bin/env bash
# Issue 15, point 5: `cargo install --locked --path client|supernode|relay` installs exactly
# the three binaries `parley`, `supernode` and `relay` (no benchmark, no helper), and each
# `--version` names itself. Installs into a temporary root and removes it afterwards.
#
# Usage: scripts/install-check.sh            debug profile (`--debug`), sharing ./target with
#                                            the test build, so it costs little (CI runs this)
#        scripts/install-check.sh --release  exactly what an operator runs (a release build)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=(--debug)
case "${1:-}" in
  "") ;;
  --release) profile=() ;;
  *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# Share the workspace's target directory: `cargo install` would otherwise build everything
# again in a temporary one.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for package in client supernode relay; do
  echo "cargo install --locked ${profile[*]} --path $package --root $root"
  cargo install --quiet --locked "${profile[@]}" --path "$package" --root "$root"
done

installed=$(cd "$root/bin" && ls | sort | tr '\n' ' ')
if [ "$installed" != "parley relay supernode " ]; then
  echo "install-check: expected exactly 'parley relay supernode' in $root/bin, got '$installed'" >&2
  exit 1
fi
for bin in parley supernode relay; do
  version=$("$root/bin/$bin" --version)
  case "$version" in
    "$bin "[0-9]*) echo "  $bin --version: $version" ;;
    *) echo "install-check: '$bin --version' printed '$version', not '$bin <version>'" >&2; exit 1 ;;
  esac
done
echo "install-check: cargo install installs exactly parley, supernode and relay"
