#!/usr/bin/env bash
# test_systemd_unit.sh - vault/bkvd.service passes `systemd-analyze verify` without a
# single complaint.
#
#   tests/test_systemd_unit.sh UNIT BKVD
#
# The unit's ExecStart names the installed bkvd (/usr/local/bin/bkvd), which a build tree
# does not have, and verify checks that the command exists: the test verifies a copy in a
# temp directory whose ExecStart names BKVD instead, and nothing else changed. verify does
# not resolve User=/Group=/SupplementaryGroups= (the bkv user need not exist) nor create
# the State/Logs directories, so no --root is needed.
#
# systemd-analyze exits 0 after warnings such as "Unknown key 'ProtectHom' in section
# [Service], ignoring": the test fails on a non-zero exit or on any output at all. To show
# that it can fail, the same check must reject a copy with one directive misspelt.
#
# Needs systemd-analyze (the Debian package systemd, scripts/deps).
set -euo pipefail

unit=${1:?usage: test_systemd_unit.sh UNIT BKVD}
bkvd=${2:?usage: test_systemd_unit.sh UNIT BKVD}
command -v systemd-analyze >/dev/null ||
  { echo "test_systemd_unit: systemd-analyze not found (scripts/deps: systemd)" >&2; exit 1; }
[ -x "$bkvd" ] || { echo "test_systemd_unit: $bkvd is not an executable" >&2; exit 1; }
bkvd=$(realpath "$bkvd") # systemd wants an absolute path

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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

# verify_quiet FILE: systemd-analyze verify exits 0 and says nothing
verify_quiet() {
  local rc=0
  systemd-analyze verify --man=no --recursive-errors=no "$1" >"$work/verify.out" 2>&1 || rc=$?
  echo "systemd-analyze verify $(basename "$1"): exit $rc"
  cat "$work/verify.out"
  [ "$rc" -eq 0 ] && [ ! -s "$work/verify.out" ]
}

mkdir "$work/ok" "$work/typo"
# ExecStart=ANY/bkvd serve ... -> ExecStart=BKVD serve ...; exactly one line changes.
sed -E "s|^ExecStart=[^ ]*/bkvd |ExecStart=$bkvd |" "$unit" > "$work/ok/bkvd.service"
rewritten() {
  diff "$unit" "$work/ok/bkvd.service" | tee "$work/diff"
  [ "$(grep -c '^>' "$work/diff")" -eq 1 ] && grep -q "^> ExecStart=$bkvd serve " "$work/diff"
}
check "the copy differs from the unit only in ExecStart, which names the built bkvd" rewritten
check "systemd-analyze verify: no error, no warning" verify_quiet "$work/ok/bkvd.service"

sed 's/^ProtectHome=/ProtectHom=/' "$work/ok/bkvd.service" > "$work/typo/bkvd.service"
typo_refused() {
  cmp -s "$work/ok/bkvd.service" "$work/typo/bkvd.service" && { echo "no ProtectHome= line"; return 1; }
  ! verify_quiet "$work/typo/bkvd.service" && grep -q "ProtectHom" "$work/verify.out"
}
check "... and the same check rejects a copy with ProtectHome= misspelt" typo_refused

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
