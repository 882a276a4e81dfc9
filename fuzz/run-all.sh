#!/usr/bin/env bash
# Runs every fuzz target in turn, one libFuzzer process at a time, each for RUNS
# executions (default 10 million, issue 11), and logs what each one reached.
#
# Usage (from the repository root, after building the targets once):
#   CARGO_INCREMENTAL=0 RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz build -s none -a
#   fuzz/run-all.sh [TARGET...]          # default: every target, in the order below
#
# Environment:
#   RUNS=10000000     executions per target (libFuzzer -runs)
#   MAX_TIME=0        seconds per target at most (libFuzzer -max_total_time; 0: no cap)
#   SCRATCH=/tmp/parley-fuzz   corpora, crash artifacts and logs, outside git
#   NICE=19           nice level of the fuzzer (19: idle CPU only)
#
# Each target starts from its committed seeds (fuzz/corpus/<target>, read only) and
# grows a scratch corpus in $SCRATCH/corpus/<target> (kept, so a later run continues
# from it). Its whole output goes to $SCRATCH/logs/<target>.log; one summary line per
# target is appended to $SCRATCH/run-all.log:
#   <UTC time> target=<t> runs=<N> exec_s=<N> cov=<edges> ft=<features> corpus=<N> result=<done|crash|interrupted|...>
# A crash input lands in $SCRATCH/artifacts/<target>/; copy it under
# fuzz/corpus/<target>/ and add a regression test (docs/fuzzing.md).
# Ctrl-C (or SIGINT/SIGTERM to this script) stops the running target, which still
# prints its final statistics, and logs it as "interrupted".
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10000000}
MAX_TIME=${MAX_TIME:-0}
SCRATCH=${SCRATCH:-/tmp/parley-fuzz}
NICE=${NICE:-19}
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
# The one target never measured before first, then roughly fastest first; the two
# file-transfer targets (issue 17, never measured) last.
all=(relay_channel parse_peer_id stun_answer tunnel_frames relay_messages media_frame
  decode_supernode_reply decode_supernode_to_client decode_client_to_supernode call_signal
  decode_supernode_to_supernode decode_presence relay_token transfer_manifest
  transfer_peer_messages reach_messages upload_messages)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
mkdir -p "$SCRATCH/logs"
summary="$SCRATCH/run-all.log"
child=
stopping=
on_signal() { stopping=1; [ -n "$child" ] && kill -INT "$child" 2>/dev/null; }
trap on_signal INT TERM

for t in "${targets[@]}"; do
  [ -n "$stopping" ] && break
  exe="$bin_dir/$t"
  if [ ! -x "$exe" ]; then
    echo "$exe missing: build with RUSTC_BOOTSTRAP=1 cargo fuzz build -s none -a" >&2
    exit 2
  fi
  mkdir -p "$SCRATCH/corpus/$t" "$SCRATCH/artifacts/$t"
  seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
  log="$SCRATCH/logs/$t.log"
  echo "$(date -u +%FT%TZ) start $t runs=$RUNS max_time=$MAX_TIME" | tee -a "$summary"
  nice -n "$NICE" "$exe" -runs="$RUNS" -max_total_time="$MAX_TIME" -print_final_stats=1 \
    -artifact_prefix="$SCRATCH/artifacts/$t/" "$SCRATCH/corpus/$t" "${seeds[@]}" >"$log" 2>&1 &
  child=$!
  wait "$child"; rc=$?
  # `wait` returns early when a trapped signal arrives: wait for the fuzzer itself.
  while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
  child=
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [ -n "$(ls -A "$SCRATCH/artifacts/$t")" ]; then
    result="crash($(ls "$SCRATCH/artifacts/$t" | tr '\n' ' ' | sed 's/ $//'))"
  elif grep -q '^Done [0-9]* runs' "$log"; then
    result=done
  elif grep -q 'run interrupted' "$log"; then
    result=interrupted
  else
    result="exit=$rc"
  fi
  echo "$(date -u +%FT%TZ) target=$t runs=${runs:-?} exec_s=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} result=$result" |
    tee -a "$summary"
done
