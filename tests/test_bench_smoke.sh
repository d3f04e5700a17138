#!/usr/bin/env bash
# test_bench_smoke.sh - bkv-bench-vault's modes still run end to end: closed loop, --paced
# and --half-peak, each for half a second on a throw-away development vault. It checks
# that every mode prints its summary line with no failed recovery; it never looks at a
# speed (speed is for the benchmark's reader, not for a test).
#
#   tests/test_bench_smoke.sh BIN_DIR
set -euo pipefail
bin=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/bkv-bench-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT

run() { # NAME ARGS...: the bench's --quiet output in $work/NAME.out
  local name=$1
  shift
  BKVD="$bin/bkvd" "$bin/bkv-bench-vault" --vault-dir "${vault_dir:-$work/vault}" --seconds 0.5 \
    --connections 2 --accounts 4 --quiet "$@" >"$work/$name.out" 2>&1 || {
    echo "FAIL: bkv-bench-vault $* exited with $?" >&2
    cat "$work/$name.out" >&2
    exit 1
  }
}

expect() { # NAME MODE: a summary line of MODE with errors=0
  if ! grep -q "^summary: mode=$2 .*errors=0 " "$work/$1.out" &&
    ! { [ "$2" = half-peak ] && grep -q "^summary: mode=half-peak .*p99_p50=" "$work/$1.out"; }; then
    echo "FAIL: no 'summary: mode=$2' line without errors in:" >&2
    cat "$work/$1.out" >&2
    exit 1
  fi
  echo "ok: $1 prints its mode=$2 summary"
}

run closed
expect closed closed
# An ES256 vault, as deployments run: the bench signs its tokens (low S) and checks each
# one against the vault's rules before the run.
BKV_DEV_VAULT_AUTH=ES256 BKVD="$bin/bkvd" "$(dirname "$0")/../scripts/dev-vault" "$work/es256" >/dev/null
vault_dir=$work/es256 run es256
expect es256 closed
# Rate limits on, every rule far above the load: every request takes, none is refused.
BKV_DEV_VAULT_RATE_LIMITS=on BKVD="$bin/bkvd" "$(dirname "$0")/../scripts/dev-vault" "$work/limits" >/dev/null
grep -qx 'per_account.RecoverStart = 100000/s burst 100000' "$work/limits/bkvd.conf"
vault_dir=$work/limits run limits
expect limits closed
run paced --paced 20
expect paced paced
run half --half-peak
expect half closed
expect half paced
expect half half-peak
