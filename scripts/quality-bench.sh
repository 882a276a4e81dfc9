#!/usr/bin/env bash
# The objective audio-quality benchmark: wideband PESQ (ITU-T P.862.2) and mouth-to-ear
# delay of a Parley call over a grid of simulated loss and jitter, as a markdown table.
# See the "Audio quality" section of docs/performance.md.
# Usage: scripts/quality-bench.sh [quality options...]   (e.g. --reps 1, --loss 0,10;
#        target/release/quality --help lists them). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages, and Python's pesq, numpy and soundfile (the PESQ scorer).
scripts/install-deps.sh

python=${PYTHON:-python3}

voices=audio/fixtures/voices
if ! ls "$voices"/*.wav >/dev/null 2>&1; then
  # The voices are committed; this only runs if they were deleted.
  if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq espeak-ng sox >/dev/null
  fi
  "$voices/make.sh"
fi

cargo build --release --quiet -p parley-bench
exec target/release/quality --python "$python" "$@"
