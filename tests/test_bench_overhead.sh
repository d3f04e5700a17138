#!/usr/bin/env bash
# test_bench_overhead.sh - scripts/bench-overhead still runs end to end and finds what it
# counts: a bkvd worker under callgrind, RPCs, recoveries, and a summary whose ratio is
# above 1 (something is always outside the handlers). Its figures are not checked against
# any target: speed is for the benchmark's reader, not for a test.
#
#   tests/test_bench_overhead.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(BKV_BUILD_DIR=$1 "$root/scripts/bench-overhead" --seconds 1 --connections 2 --accounts 4 2>&1) || {
  echo "FAIL: scripts/bench-overhead exited with $?" >&2
  echo "$out" >&2
  exit 1
}
line=$(grep '^summary: ' <<<"$out") || {
  echo "FAIL: no summary line in:" >&2
  echo "$out" >&2
  exit 1
}
read -r rpcs recoveries ratio < <(sed -E 's/.*rpcs=([0-9]+) recoveries=([0-9]+) .*instruction_ratio=([0-9.]+).*/\1 \2 \3/' <<<"$line")
if ! awk -v r="$rpcs" -v n="$recoveries" -v x="$ratio" 'BEGIN { exit !(n > 0 && r >= 2 * n && x > 1) }'; then
  echo "FAIL: implausible counts in: $line" >&2
  exit 1
fi
echo "ok: bench-overhead counted $rpcs RPCs and $recoveries recoveries (ratio $ratio)"
