#!/usr/bin/env bash
# test_rotation.sh - seal-key rotation while bkvd serves (three workers) loses no record.
# Two client loops keep registering new accounts and recovering earlier ones with the bkv
# CLI while the operator rotates twice (bkv-seal-1 -> 2 -> 3): rotate-seal-key, rewrap,
# delete-seal-key of the old version (rewrap again and retry while it is refused). No
# client sees an error; after a restart (no session copy of a deleted key left) every
# account registered during the run recovers its key, nothing is sealed under a deleted
# version, and rewrap finds nothing it cannot open.
#
#   tests/test_rotation.sh BUILD_BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test_rotation.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
# A light KSF: the clients' Argon2id is not what this test is about. libbkv refuses to
# register under a vault's parameters below its floor, so the clients set it themselves.
sed -i '/^\[opaque\]/a argon2_iterations = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1' \
  "$config"

printf 'rotation password' >"$work/password"
bkv() { "$bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem" --argon2 1,1024,1; }
register() { # register ACCOUNT
  "$bin/bkvd" dev-token --config "$config" --lifetime 3600 "$1" >"$work/token-$1" &&
    "$bin/bkv" keygen --out "$work/key-$1" >/dev/null &&
    bkv register --token-file "$work/token-$1" --key-file "$work/key-$1" \
      --password-file "$work/password"
}
recovers() { # recovers ACCOUNT: the recovered key equals the registered one
  rm -f "$work/got-$1"
  bkv recover --token-file "$work/token-$1" --password-file "$work/password" \
    --out "$work/got-$1" && cmp "$work/key-$1" "$work/got-$1"
}

# client_loop NAME: registers NAME-1, NAME-2, ... and after every third recovers an account
# it registered earlier, until $work/stop exists. Registered accounts are appended to
# $work/registered, every failed call to $work/client-errors.
client_loop() {
  local name=$1 i=0 account earlier
  while [ ! -e "$work/stop" ]; do
    i=$((i + 1))
    account=$name-$i
    if register "$account" >>"$work/client.log" 2>&1; then
      echo "$account" >>"$work/registered"
    else
      echo "register $account failed" >>"$work/client-errors"
    fi
    [ $((i % 3)) -eq 0 ] || continue
    earlier=$(grep "^$name-" "$work/registered" 2>/dev/null | shuf -n 1 || true)
    if [ -n "$earlier" ] && ! recovers "$earlier" >>"$work/client.log" 2>&1; then
      echo "recover $earlier failed" >>"$work/client-errors"
    fi
  done
}
registered() { if [ -e "$work/registered" ]; then wc -l <"$work/registered"; else echo 0; fi; }
# more_registrations N: waits (at most 20 s) until N more accounts are registered
more_registrations() {
  local want=$(($(registered) + $1))
  for _ in $(seq 200); do
    [ "$(registered)" -ge "$want" ] && return 0
    sleep 0.1
  done
  echo "fewer than $1 registrations in 20 s"
  return 1
}
# retire VERSION: rewrap and delete-seal-key VERSION, again while it is refused (at most
# 10 times): a worker may seal under the old version for up to 250 ms after the rotation,
# and a recovery that read a row before rewrap re-sealed it writes the old blob back
retire() {
  for _ in $(seq 10); do
    "$bin/bkvd" rewrap --config "$config" || true
    if "$bin/bkvd" delete-seal-key --config "$config" "$1"; then return 0; fi
    sleep 0.2
  done
  return 1
}
sealed_below() { # sealed_below VERSION COUNT: COUNT rows hold a blob sealed under an older version
  [ "$(sqlite3 -batch "$work/vault/bkv.db" \
    "SELECT count(*) FROM records WHERE seal_key_version BETWEEN 1 AND $1 - 1")" = "$2" ]
}

start "$bin/bkvd" "$config" 3
client_loop a &
loop_a=$!
client_loop b &
loop_b=$!
trap 'touch "$work/stop"; wait "$loop_a" "$loop_b" 2>/dev/null; cleanup' EXIT
check "clients register accounts while bkvd serves" more_registrations 6
for version in 1 2; do
  check "rotate-seal-key creates bkv-seal-$((version + 1)) while serving" \
    "$bin/bkvd" rotate-seal-key --config "$config"
  check "registrations go on after rotating to bkv-seal-$((version + 1))" more_registrations 4
  check "rewrap, then delete-seal-key $version while serving" retire "$version"
  check "registrations go on after deleting bkv-seal-$version" more_registrations 6
done
touch "$work/stop"
wait "$loop_a" "$loop_b"
check "no client saw an error during rotation" test ! -s "$work/client-errors"
[ -s "$work/client-errors" ] && sed 's/^/    /' "$work/client-errors"
stop

check "nothing is sealed under a deleted version" sealed_below 3 0
check "rewrap finds nothing it cannot open" "$bin/bkvd" rewrap --config "$config"
start "$bin/bkvd" "$config" 2
lost=0
while read -r account; do
  recovers "$account" >"$work/last-recover.out" 2>&1 || {
    lost=$((lost + 1))
    echo "    $account: $(tail -n 1 "$work/last-recover.out")"
  }
done <"$work/registered"
check "every one of the $(registered) accounts registered during the run recovers after a restart ($lost lost)" \
  test "$lost" -eq 0
stop

status_says() { # status_says EXIT TEXT: bkvd status exits EXIT and prints TEXT
  local rc=0
  "$bin/bkvd" status --config "$config" >"$work/status.out" 2>&1 || rc=$?
  cat "$work/status.out"
  [ "$rc" -eq "$1" ] && grep -qF "$2" "$work/status.out"
}
check "bkvd status shows the seal floor delete-seal-key 2 raised" status_says 0 "seal floor: 3"
# A token older than the database (restored from a backup taken before a rotation):
# every registration would be refused, so status says not ready.
sqlite3 -batch "$work/vault/bkv.db" "UPDATE seal_floor SET min_version = 4"
check "bkvd status is not ready when the token's newest seal key is below the floor" \
  status_says 1 "is below the database's seal floor 4"

summary
