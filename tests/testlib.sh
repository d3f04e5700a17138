# tests/testlib.sh - sourced by the shell tests that drive bkvd and the bkv CLI: a work
# directory removed on exit (a signal too) together with any bkvd started here,
# check/summary counting, and `bkvd serve` on 127.0.0.1 with a port the kernel picks.
# Under tests/with-vault the work directory is inside $BKV_TEST_DIR, so with-vault's
# clean-up also finds any bkvd left from it.
#
#   work, pid                  the work directory; the running bkvd's pid ("" if none)
#   check NAME COMMAND...      "ok NAME", or "FAIL NAME" and COMMAND's output indented
#   start BKVD CONFIG [N]      serve CONFIG with BKVD (N workers, default 1); sets port,
#                              exports BKV_VAULT
#   stop                       stop it
#   summary                    "N passed, N failed"; fails if any check failed

work=$(mktemp -d -p "${BKV_TEST_DIR:-${TMPDIR:-/tmp}}")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@" >"$work/last.out" 2>&1; then
    echo "ok $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    sed 's/^/    /' "$work/last.out"
    failed=$((failed + 1))
  fi
}

start() {
  rm -f "$work/port"
  "$1" serve --config "$2" --listen 127.0.0.1:0 --workers "${3:-1}" \
    --port-file "$work/port" 2>>"$work/bkvd.log" &
  pid=$!
  for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
  [ -s "$work/port" ] || { cat "$work/bkvd.log"; exit 1; }
  port=$(cat "$work/port")
  export BKV_VAULT=https://127.0.0.1:$port
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
