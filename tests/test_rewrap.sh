#!/usr/bin/env bash
# test_rewrap.sh - seal-key rotation end to end with bkvd and the bkv CLI: records
# registered under bkv-seal-1 still recover after `bkvd rotate-seal-key`; `bkvd rewrap`
# re-seals them (and the ristretto255 AKE key) under bkv-seal-2 and can be run again;
# `bkvd delete-seal-key 1` is refused while anything uses version 1 and works after; the
# newest version is never deleted; recovery works throughout.
#
#   tests/test_rewrap.sh BUILD_BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test_rewrap.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME COMMAND...
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

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf

start() {
  rm -f "$work/port"
  "$bin/bkvd" serve --config "$config" --listen 127.0.0.1:0 --workers 1 \
    --port-file "$work/port" 2>>"$work/bkvd.log" &
  pid=$!
  for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
  [ -s "$work/port" ] || { cat "$work/bkvd.log"; exit 1; }
  export BKV_VAULT=https://127.0.0.1:$(cat "$work/port")
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

printf 'rotation password' > "$work/password"
bkv() { "$bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem"; }
register() { # register ACCOUNT SUITE
  "$bin/bkvd" dev-token --config "$config" "$1" > "$work/token-$1"
  "$bin/bkv" keygen --out "$work/key-$1"
  bkv register --token-file "$work/token-$1" --key-file "$work/key-$1" \
    --password-file "$work/password" --suite "$2"
}
recovers() { # recovers ACCOUNT: the recovered key equals the registered one
  rm -f "$work/got-$1"
  bkv recover --token-file "$work/token-$1" --password-file "$work/password" --out "$work/got-$1"
  cmp "$work/key-$1" "$work/got-$1"
}
records_under() { # records_under VERSION COUNT
  "$bin/bkvd" status --config "$config" | grep -q "bkv-seal-$1.*: $2 record"
}

start
register alice ristretto255-sha512
register bob p256-sha256
register carol ristretto255-sha512
stop

check "three records sealed under bkv-seal-1" records_under 1 3
check "rotate-seal-key creates bkv-seal-2" "$bin/bkvd" rotate-seal-key --config "$config"
check "records still under bkv-seal-1 after rotation" records_under 1 3
start
check "a record sealed under version 1 recovers after rotation" recovers alice
register dave p256-sha256
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
start
for account in alice bob carol dave; do
  check "$account recovers after rewrap and deletion of version 1" recovers "$account"
done
stop

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
