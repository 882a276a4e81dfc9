#!/usr/bin/env bash
# File transfer on loopback (issue 17), a benchmark, not a test: one supernode, a sender
# and N receiving clients (`parley online --accept-files`), a random file of SIZE_MIB MiB
# sent with `parley send`, for each N in RECIPIENTS. Prints one line per run:
#   RESULT recipients=N size_mib=S seconds=T mb_per_s=R upload_ratio=U
# (mb_per_s: the file's size in 10^6 bytes over the time `send` took from the offer to
# every recipient holding the verified file; upload_ratio: what the sender uploaded over
# the file's size). Figures: docs/performance.md.
#
#   cargo build --release -p parley-client -p parley-supernode
#   scripts/transfer-bench.sh                      # 64 MiB to 1, 2 and 4 recipients
#   SIZE_MIB=256 RECIPIENTS=4 scripts/transfer-bench.sh
set -euo pipefail
BIN=${BIN:-target/release}
SIZE_MIB=${SIZE_MIB:-64}
RECIPIENTS=${RECIPIENTS:-"1 2 4"}
PORT=${PORT:-47433}
D=$(mktemp -d)
cleanup() {
    local pids
    pids=$(jobs -p)
    [ -n "$pids" ] && kill $pids 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT

# Waits until FILE has a line matching PATTERN (up to 30 s).
wait_line() {
    for _ in $(seq 300); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}

SN=127.0.0.1:$PORT
"$BIN/supernode" id --create --key "$D/sn.key" >/dev/null
"$BIN/supernode" --listen "$SN" --stun-listen 127.0.0.1:$((PORT + 1)) --key "$D/sn.key" \
    >"$D/sn.log" 2>&1 &
head -c $((SIZE_MIB << 20)) /dev/urandom >"$D/file.bin"
"$BIN/parley" --home "$D/sender" id new --name sender >/dev/null 2>&1

for n in $RECIPIENTS; do
    ids=()
    for i in $(seq "$n"); do
        h="$D/r$n-$i"
        "$BIN/parley" --home "$h" id new --name "r$i" >/dev/null 2>&1
        # Files are accepted only from contacts.
        "$BIN/parley" --home "$h" contact add sender "$("$BIN/parley" --home "$D/sender" id show)" >/dev/null
        mkdir -p "$h/inbox"
        "$BIN/parley" --home "$h" online --json --supernode "$SN" --accept-files "$h/inbox" \
            >"$h.log" 2>&1 &
        ids+=("$("$BIN/parley" --home "$h" id show)")
    done
    for i in $(seq "$n"); do wait_line "$D/r$n-$i.log" '"published"'; done
    "$BIN/parley" --home "$D/sender" --json send "$D/file.bin" "${ids[@]}" --supernode "$SN" \
        >"$D/send$n.log" 2>&1 || { cat "$D/send$n.log" >&2; exit 1; }
    done_line=$(grep '"transfer_done"' "$D/send$n.log")
    python3 - "$n" "$SIZE_MIB" "$done_line" <<'PY'
import json, sys
n, size, line = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"RESULT recipients={n} size_mib={size} seconds={line['seconds']:.2f} "
      f"mb_per_s={line['mb_per_s']:.1f} upload_ratio={line['upload_ratio']:.2f}")
PY
    # Those clients go offline before the next run.
    for pid in $(jobs -p | tail -n "$n"); do kill "$pid"; done
    sleep 1
done
