#!/usr/bin/env bash
# test_migrate.sh - upgrading a vault from before state MACs, end to end with the bkv CLI.
#
# A development vault is made, and keys registered, by the bkvd and bkv of the last commit
# before state MACs (LEGACY_COMMIT): its token has no bkv-state-mac-1 and its database rows
# (schema 1) have neither a MAC nor a registration id. Then, with the bkvd and bkv under
# test:
#   - `bkvd serve` and `bkvd rewrap` refuse the old token (exit 2, "run `bkvd init`");
#     `bkvd init` creates bkv-state-mac-1 and keeps every other key;
#   - the rows are refused with data_loss (`bkv recover` and `bkv status` fail, nothing is
#     served, audit event record_refused);
#   - `bkvd rewrap` without --migrate-macs fails, saying how many records lack a MAC and to
#     run --migrate-macs, and changes nothing;
#   - `bkvd rewrap --migrate-macs` gives them a MAC, keeping the counters they hold (one
#     wrong password stays counted), and every account recovers its exact key;
#   - tamper checks with one SQL UPDATE each: a lowered attempts_used, and a MAC cleared
#     on a row of the new format (which --migrate-macs must not vouch for), are refused
#     with data_loss and nothing is served.
#
#   tests/test_migrate.sh BUILD_BIN_DIR [LEGACY_DIR]
#
# LEGACY_DIR (or $BKV_LEGACY_DIR) holds the old release: bin/bkvd, bin/bkv and src/ (its
# source tree, for scripts/dev-vault). Without it the old release is built once from
# `git archive LEGACY_COMMIT` into BUILD_BIN_DIR/../legacy-<its first 12 hex digits> (20 to
# 40 s on two cores) and reused. Exits 77 (skipped) when neither is possible (not a git checkout).
# Needs the sqlite3 CLI (scripts/deps).
set -euo pipefail

# The last commit before state MACs and registration ids (issue 9).
LEGACY_COMMIT=41cd0e09e91790ba94034400f31c7b15ef6c9033

bin=$(cd "${1:?usage: test_migrate.sh BUILD_BIN_DIR [LEGACY_DIR]}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
legacy=${2:-${BKV_LEGACY_DIR:-}}
command -v sqlite3 >/dev/null || { echo "test_migrate: sqlite3 not found (scripts/deps)" >&2; exit 1; }

if [ -z "$legacy" ]; then
  legacy=$(cd "$bin/.." && pwd)/legacy-${LEGACY_COMMIT:0:12}
  if [ ! -x "$legacy/bin/bkvd" ] || [ ! -x "$legacy/bin/bkv" ]; then
    if ! git -C "$root" cat-file -e "$LEGACY_COMMIT^{commit}" 2>/dev/null; then
      echo "SKIP: commit ${LEGACY_COMMIT:0:12} is not in $root (not a git checkout, or a shallow one);"
      echo "      pass LEGACY_DIR to run this test"
      exit 77
    fi
    echo "building bkvd and bkv of ${LEGACY_COMMIT:0:12} in $legacy"
    rm -rf "$legacy.tmp"
    mkdir -p "$legacy.tmp/src" "$legacy.tmp/bin"
    git -C "$root" archive "$LEGACY_COMMIT" | tar -x -C "$legacy.tmp/src"
    if ! { cmake -S "$legacy.tmp/src" -B "$legacy.tmp/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
      cmake --build "$legacy.tmp/build" -j2 --target bkvd bkv-cli; } >"$legacy.tmp/build.log" 2>&1; then
      tail -n 30 "$legacy.tmp/build.log" >&2
      echo "test_migrate: building ${LEGACY_COMMIT:0:12} failed" >&2
      exit 1
    fi
    cp "$legacy.tmp/build/bin/bkvd" "$legacy.tmp/build/bin/bkv" "$legacy.tmp/bin/"
    rm -rf "$legacy.tmp/build" "$legacy"
    mv "$legacy.tmp" "$legacy"
  fi
fi
legacy=$(cd "$legacy" && pwd)
if [ ! -x "$legacy/bin/bkvd" ] || [ ! -x "$legacy/bin/bkv" ] || [ ! -x "$legacy/src/scripts/dev-vault" ]; then
  echo "test_migrate: $legacy lacks bin/bkvd, bin/bkv or src/scripts/dev-vault" >&2
  exit 1
fi

# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"

# The old release's own dev-vault (and make-dev-token): the token and configuration as
# that release made them.
config=$(BKVD=$legacy/bin/bkvd "$legacy/src/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
db=$work/vault/bkv.db
sql() { sqlite3 -batch -bail -cmd ".timeout 5000" "$db" "$@"; }


printf 'migration password' > "$work/password"
printf 'not the password' > "$work/wrong"
bkv() { "$bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem"; }
# The rows are keyed by the account id, the token's sub (bkvd dev-token ACCOUNT).
old_bkv() { "$legacy/bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem"; }
register_old() { # register_old ACCOUNT SUITE
  "$legacy/bin/bkvd" dev-token --config "$config" "$1" > "$work/token-$1"
  "$legacy/bin/bkv" keygen --out "$work/key-$1" >/dev/null
  old_bkv register --token-file "$work/token-$1" --key-file "$work/key-$1" \
    --password-file "$work/password" --suite "$2"
}
recovers() { # recovers ACCOUNT: the recovered key equals the registered one
  rm -f "$work/got-$1"
  bkv recover --token-file "$work/token-$1" --password-file "$work/password" --out "$work/got-$1"
  cmp "$work/key-$1" "$work/got-$1"
}
# refused_data_loss ACCOUNT CMD...: the CLI command fails (not exit 0, not 3 or 4), names
# the integrity check, and writes no key
refused_data_loss() {
  local account=$1 rc=0
  shift
  rm -f "$work/got-$account"
  bkv "$@" --token-file "$work/token-$account" >"$work/cli.out" 2>&1 || rc=$?
  cat "$work/cli.out"
  echo "exit $rc"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] && [ "$rc" -ne 4 ] &&
    grep -Eqi "integrity check|data.loss" "$work/cli.out" && [ ! -e "$work/got-$account" ]
}
refused_recover() { refused_data_loss "$1" recover --password-file "$work/password" --out "$work/got-$1"; }
refused_status() { refused_data_loss "$1" status; }
audit_refused() { # audit_refused: an audit event record_refused with a reason
  grep '"record_refused"' "$work/vault/audit.log" | grep -q '"reason"'
}

# --- the old release: three accounts, one wrong password on bob
start "$legacy/bin/bkvd" "$config"
check "the old release registers alice (ristretto255)" register_old alice ristretto255-sha512
check "the old release registers bob (P-256)" register_old bob p256-sha256
check "the old release registers carol (ristretto255)" register_old carol ristretto255-sha512
rc=0
old_bkv recover --token-file "$work/token-bob" --password-file "$work/wrong" \
  --out "$work/got-bob" >/dev/null 2>&1 || rc=$?
stop
check "the old bkv counts bob's wrong password (exit 3)" test "$rc" -eq 3
check "the old release wrote schema 1 with three records" \
  test "$(sql 'PRAGMA user_version'):$(sql 'SELECT count(*) FROM records')" = "1:3"
check "bob's row holds the wrong password: attempts_used 1" \
  test "$(sql "SELECT attempts_used FROM records WHERE account_id = CAST('bob' AS BLOB)")" = 1

# --- the new bkvd on the old token
rc=0
timeout 30 "$bin/bkvd" serve --config "$config" --listen 127.0.0.1:0 >/dev/null 2>"$work/err" || rc=$?
check "bkvd serve refuses the token without bkv-state-mac-1: exit 2, one line, 'run \`bkvd init\`'" \
  bash -c "cat '$work/err'; [ $rc -eq 2 ] && [ \$(wc -l < '$work/err') -eq 1 ] &&
    grep -q 'run \`bkvd init\`' '$work/err'"
rc=0
"$bin/bkvd" rewrap --config "$config" >/dev/null 2>"$work/err" || rc=$?
check "bkvd rewrap refuses it too: exit 2, 'run \`bkvd init\`'" \
  bash -c "cat '$work/err'; [ $rc -eq 2 ] && grep -q 'run \`bkvd init\`' '$work/err'"
check "bkvd init creates bkv-state-mac-1 and nothing else" \
  bash -c "'$bin/bkvd' init --config '$config' > '$work/init.out' && cat '$work/init.out' &&
    grep -Eq '^ *bkv-state-mac-1 +created' '$work/init.out' &&
    [ \$(grep -c ' created' '$work/init.out') -eq 1 ]"

# --- the new bkvd serves the old database: every row is refused
start "$bin/bkvd" "$config"
check "the new bkvd migrated the schema to the current version (4)" test "$(sql 'PRAGMA user_version')" = 4
check "the three old rows carry no MAC and no registration id" \
  test "$(sql "SELECT count(*) FROM records WHERE mac = x'' AND registration_id = x''")" = 3
for account in alice bob carol; do
  check "before migration: bkv recover ($account) fails with data_loss, no key" refused_recover "$account"
done
check "before migration: bkv status fails with data_loss" refused_status alice
check "audit: record_refused with a reason" audit_refused
check "the refused calls changed no row" \
  test "$(sql "SELECT group_concat(attempts_used) FROM records WHERE mac = x''")" = "0,1,0"
stop

rc=0
"$bin/bkvd" rewrap --config "$config" >"$work/rewrap.out" 2>&1 || rc=$?
check "bkvd rewrap without --migrate-macs fails: 3 records carry no MAC, run --migrate-macs" \
  bash -c "cat '$work/rewrap.out'; [ $rc -ne 0 ] &&
    grep -q '3 records carry no state MAC' '$work/rewrap.out' &&
    grep -q -- 'bkvd rewrap --migrate-macs' '$work/rewrap.out'"
check "... and gave no row a MAC" test "$(sql "SELECT count(*) FROM records WHERE mac = x''")" = 3
check "bkvd rewrap --migrate-macs gives the 3 records a MAC" \
  bash -c "'$bin/bkvd' rewrap --config '$config' --migrate-macs > '$work/rewrap.out' 2>&1;
    rc=\$?; cat '$work/rewrap.out'; [ \$rc -eq 0 ] &&
    grep -q '3 records from before state MACs now carry one' '$work/rewrap.out'"
check "no row without a MAC is left; registration ids stay empty" \
  test "$(sql "SELECT count(*) FROM records WHERE mac = x''"):$(sql "SELECT count(*) FROM records WHERE registration_id = x''")" = "0:3"
check "bkvd rewrap (no flag) now succeeds" "$bin/bkvd" rewrap --config "$config"

start "$bin/bkvd" "$config"
check "bob's migrated counter is vouched for: 1 attempt used" \
  bash -c "'$bin/bkv' status --token-file '$work/token-bob' --ca-file '$work/vault/tls/cert.pem' |
    tee /dev/stderr | grep -q 'attempts used: 1 of 10'"
for account in alice bob carol; do
  check "after migration $account recovers its exact key" recovers "$account"
done

# --- tamper: one UPDATE lowers a counter the MAC vouches for
rc=0
bkv recover --token-file "$work/token-alice" --password-file "$work/wrong" \
  --out "$work/got-alice" >/dev/null 2>&1 || rc=$?
check "a wrong password for alice costs an attempt (exit 3)" test "$rc" -eq 3
check "alice's row: attempts_used 1" \
  test "$(sql "SELECT attempts_used FROM records WHERE account_id = CAST('alice' AS BLOB)")" = 1
audit_lines=$(wc -l < "$work/vault/audit.log")
check "one UPDATE lowers alice's attempts_used to 0" \
  test "$(sql "UPDATE records SET attempts_used = 0 WHERE account_id = CAST('alice' AS BLOB);
    SELECT changes();")" = 1
check "tampered: bkv recover (alice) fails with data_loss, no key" refused_recover alice
check "tampered: bkv status (alice) fails with data_loss" refused_status alice
check "tampered: a new audit event record_refused" \
  bash -c "tail -n +$((audit_lines + 1)) '$work/vault/audit.log' | grep '\"record_refused\"' | grep -q '\"reason\"'"
check "tampered: the row is left as the operator wrote it (nothing re-vouched)" \
  test "$(sql "SELECT attempts_used FROM records WHERE account_id = CAST('alice' AS BLOB)")" = 0
check "carol is not affected" recovers carol

# --- tamper: a MAC cleared on a row of the new format is not a row from before state MACs
"$bin/bkvd" dev-token --config "$config" dave > "$work/token-dave"
"$bin/bkv" keygen --out "$work/key-dave" >/dev/null
check "dave registers with the new release" \
  bkv register --token-file "$work/token-dave" --key-file "$work/key-dave" \
  --password-file "$work/password" --suite p256-sha256
check "dave's row has a registration id and a MAC" \
  test "$(sql "SELECT length(registration_id) >= 16 AND length(mac) > 0 FROM records WHERE account_id = CAST('dave' AS BLOB)")" = 1
check "dave recovers" recovers dave
check "one UPDATE clears dave's MAC" \
  test "$(sql "UPDATE records SET mac = x'' WHERE account_id = CAST('dave' AS BLOB);
    SELECT changes();")" = 1
check "MAC cleared: bkv recover (dave) fails with data_loss, no key" refused_recover dave
stop
rc=0
"$bin/bkvd" rewrap --config "$config" --migrate-macs >"$work/rewrap.out" 2>&1 || rc=$?
check "bkvd rewrap --migrate-macs refuses to vouch for it: fails, 1 record, invalid state" \
  bash -c "cat '$work/rewrap.out'; [ $rc -ne 0 ] &&
    grep -q '1 record carries no state MAC' '$work/rewrap.out' &&
    grep -q 'invalid' '$work/rewrap.out'"
check "dave's row still has no MAC" \
  test "$(sql "SELECT length(mac) FROM records WHERE account_id = CAST('dave' AS BLOB)")" = 0
start "$bin/bkvd" "$config"
check "dave is still refused with data_loss" refused_recover dave
check "bob still recovers" recovers bob
stop

summary
