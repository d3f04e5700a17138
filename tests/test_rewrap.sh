#!/usr/bin/env bash
# test_rewrap.sh - seal-key rotation end to end with bkvd and the bkv CLI: records
# registered under bkv-seal-1 still recover after `bkvd rotate-seal-key`; `bkvd rewrap`
# re-seals them (and the ristretto255 AKE key) under bkv-seal-2 and can be run again;
# `bkvd delete-seal-key 1` is refused while anything uses version 1 and works after; the
# newest version is never deleted; recovery works throughout. Re-sealing keeps each
# record's state MAC valid: a counted wrong password is still counted after it, and a
# tombstone (a key destroyed at its attempt limit) stays a tombstone, holding nothing to
# re-seal and not holding back the deletion of version 1. A record that does not open is
# listed (by account hash) and skipped; rewrap re-seals the others and exits 1.
#
#   tests/test_rewrap.sh BUILD_BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test_rewrap.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf


printf 'rotation password' > "$work/password"
bkv() { "$bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem"; }
register() { # register ACCOUNT SUITE [OPTIONS...]
  local account=$1 suite=$2
  shift 2
  "$bin/bkvd" dev-token --config "$config" "$account" > "$work/token-$account"
  "$bin/bkv" keygen --out "$work/key-$account"
  bkv register --token-file "$work/token-$account" --key-file "$work/key-$account" \
    --password-file "$work/password" --suite "$suite" "$@"
}
printf 'not the password' > "$work/wrong"
wrong_password() { # wrong_password ACCOUNT EXIT: one wrong password, the CLI exits with EXIT
  local rc=0
  bkv recover --token-file "$work/token-$1" --password-file "$work/wrong" --out "$work/got-$1" || rc=$?
  echo "exit $rc"
  [ "$rc" -eq "$2" ]
}
attempts_used() { # attempts_used ACCOUNT N: bkv status shows N attempts used
  bkv status --token-file "$work/token-$1" | tee /dev/stderr | grep -q "attempts used: $2 of"
}
# erin's row: a tombstone (state 2), no sealed bytes, seal_key_version 0
tombstone() {
  [ "$(sqlite3 -batch "$work/vault/bkv.db" "SELECT state, length(sealed), seal_key_version
    FROM records WHERE account_id = CAST('erin' AS BLOB)")" = "2|0|0" ]
}
recovers() { # recovers ACCOUNT: the recovered key equals the registered one
  rm -f "$work/got-$1"
  bkv recover --token-file "$work/token-$1" --password-file "$work/password" --out "$work/got-$1"
  cmp "$work/key-$1" "$work/got-$1"
}
records_under() { # records_under VERSION COUNT
  "$bin/bkvd" status --config "$config" | grep -q "bkv-seal-$1.*: $2 record"
}

start "$bin/bkvd" "$config"
register alice ristretto255-sha512
register bob p256-sha256
register carol ristretto255-sha512
stop

check "three records sealed under bkv-seal-1" records_under 1 3
check "rotate-seal-key creates bkv-seal-2" "$bin/bkvd" rotate-seal-key --config "$config"
check "records still under bkv-seal-1 after rotation" records_under 1 3
start "$bin/bkvd" "$config"
check "a record sealed under version 1 recovers after rotation" recovers alice
register dave p256-sha256
check "a wrong password for bob (exit 3)" wrong_password bob 3
check "bob: 1 attempt used" attempts_used bob 1
check "erin registers with an attempt limit of 1" register erin ristretto255-sha512 --attempt-limit 1
check "erin's one wrong password destroys the key (exit 4)" wrong_password erin 4
check "erin's row is a tombstone" tombstone
stop
check "a new registration is sealed under bkv-seal-2" records_under 2 1
check "delete-seal-key 1 is refused while records use it" \
  bash -c "! '$bin/bkvd' delete-seal-key --config '$config' 1"
check "rewrap re-seals everything" "$bin/bkvd" rewrap --config "$config"
check "nothing left under bkv-seal-1" records_under 1 0
check "all four records under bkv-seal-2" records_under 2 4
check "rewrap again is a no-op" "$bin/bkvd" rewrap --config "$config"
check "the newest version cannot be deleted" \
  bash -c "! '$bin/bkvd' delete-seal-key --config '$config' 2"
check "delete-seal-key 1 works once nothing uses it" \
  "$bin/bkvd" delete-seal-key --config "$config" 1
check "erin's row is still a tombstone" tombstone
start "$bin/bkvd" "$config"
check "bob's wrong password is still counted after rewrap (the state MAC holds)" attempts_used bob 1
for account in alice bob carol dave; do
  check "$account recovers after rewrap and deletion of version 1" recovers "$account"
done
check "erin's key stays destroyed (exit 4)" wrong_password erin 4
stop

# A record that does not open (its tag damaged in the database) is listed and left as it
# is; the others are re-sealed all the same, and rewrap exits 1 saying how many. The list
# names the account as the audit log does (a keyed hash), never by its id.
check "rotate-seal-key creates bkv-seal-3" "$bin/bkvd" rotate-seal-key --config "$config"
sqlite3 -batch "$work/vault/bkv.db" "UPDATE records SET sealed = CAST(substr(sealed, 1,
  length(sealed) - 16) || zeroblob(16) AS BLOB) WHERE account_id = CAST('carol' AS BLOB)"
rc=0
"$bin/bkvd" rewrap --config "$config" >"$work/rewrap.out" 2>"$work/rewrap.err" || rc=$?
cat "$work/rewrap.out" "$work/rewrap.err"
check "rewrap over a damaged record exits 1" test "$rc" -eq 1
# carol's was the third registration: her hash is the third "registered" event's
carol_hash=$(grep '"event":"registered"' "$work/vault/audit.log" | sed -n 3p |
  sed 's/.*"account":"\([0-9a-f]*\)".*/\1/')
check "it lists the record: account hash, record version, key version, reason" \
  grep -qF "skipped account $carol_hash (record_version 1, bkv-seal-2): sealed data failed authentication" \
  "$work/rewrap.err"
check "it lists no account id" bash -c "! grep -q carol '$work/rewrap.out' '$work/rewrap.err'"
check "it says how many records it skipped" grep -q "^bkvd rewrap: 1 record cannot be opened" \
  "$work/rewrap.err"
check "the three other records are re-sealed under bkv-seal-3" records_under 3 3
check "the damaged record stays under bkv-seal-2" records_under 2 1
refused_for_remaining() {
  ! "$bin/bkvd" delete-seal-key --config "$config" 2 2>"$work/delete.err"
  cat "$work/delete.err"
  grep -q "1 record is still sealed under bkv-seal-2 or older" "$work/delete.err"
}
check "delete-seal-key 2 is refused while it remains, saying why" refused_for_remaining

summary
