#!/usr/bin/env bash
# test_bkvd_startup.sh - bkvd refuses to start with exit code 2 and a one-line reason
# (never the PIN) when its setup is wrong: missing configuration, wrong module path (with
# the loader's reason), a module wanting [token] init_args without them (and serving with them),
# unknown token label, wrong PIN, keys not created, plaintext on a public address, a bad
# listen address, a token initialized before state MACs (bkv-state-mac-1 missing: `bkvd
# serve` and `bkvd rewrap` say to run `bkvd init`, which creates it and only it); and `bkvd
# dev-token` is refused unless the dev issuer is enabled.
#
#   tests/test_bkvd_startup.sh BUILD_BIN_DIR
#
# Needs pkcs11-tool (Debian package opensc, in scripts/deps) to delete one key from the token.
set -euo pipefail

bin=$(cd "${1:?usage: test_bkvd_startup.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
# refuses NAME EXPECTED-TEXT CONFIG [ARGS...]: exit 2, one line, naming EXPECTED-TEXT
refuses() {
  local name=$1 expected=$2 config=$3
  shift 3
  local rc=0
  timeout 30 "$bin/bkvd" serve --config "$config" --listen 127.0.0.1:0 "$@" \
    >"$work/out" 2>"$work/err" || rc=$?
  local lines
  lines=$(wc -l < "$work/err")
  if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q -- "$expected" "$work/err" &&
    ! grep -qF "$(cat "$work/vault/hsm/user.pin")" "$work/err"; then
    echo "ok $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name (exit $rc, $lines lines):"
    sed 's/^/    /' "$work/err"
    failed=$((failed + 1))
  fi
}

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
variant() { # variant NAME SED-EXPRESSION: a copy of the config with one change
  sed "$2" "$config" > "$work/$1.conf"
  echo "$work/$1.conf"
}

refuses "missing configuration" "cannot read configuration" "$work/nope.conf"
refuses "wrong module path, with the loader's reason" \
  "cannot load PKCS#11 module /nonexistent/libpkcs11.so: .*No such file or directory" \
  "$(variant module 's|^module = .*|module = /nonexistent/libpkcs11.so|')"
refuses "unknown token label" "no token labelled" "$(variant label 's|^label = .*|label = no-such-token|')"
cp "$work/vault/hsm/user.pin" "$work/good.pin"
printf 'not-the-pin' > "$work/wrong.pin"
chmod 600 "$work/wrong.pin"
refuses "wrong PIN" "rejected the user PIN" "$(variant pin "s|^pin_file = .*|pin_file = $work/wrong.pin|")"
chmod 644 "$work/wrong.pin"
refuses "a PIN file others can read" "readable by group or others" \
  "$(variant pin2 "s|^pin_file = .*|pin_file = $work/wrong.pin|")"
refuses "unknown configuration key" "unknown key" "$(variant typo 's|^\[vault\]|[vault]\nlistne = 1|')"
refuses "a committer setting other than auto, on or off" "invalid value for \[vault\] committer" \
  "$(variant committer 's|^\[vault\]|[vault]\ncommitter = yes|')"
refuses "plaintext on a public address" "TLS is required" \
  "$(variant plain 's|^tls_cert = .*||')" --listen 0.0.0.0:0
refuses "plaintext on a name that starts with 127." "TLS is required" \
  "$(variant plain 's|^tls_cert = .*||')" --listen 127.0.0.1.evil.example:0
refuses "plaintext on an IPv4-mapped public address" "TLS is required" \
  "$(variant plain 's|^tls_cert = .*||')" --listen '[::ffff:8.8.8.8]:0'
refuses "a bad listen address" "invalid listen address" "$config" --listen nonsense

ok() { echo "ok $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# serves NAME CONFIG: bkvd serve CONFIG starts (writes its port) and is stopped again
serves() {
  rm -f "$work/port"
  "$bin/bkvd" serve --config "$2" --listen 127.0.0.1:0 --workers 1 \
    --port-file "$work/port" 2>"$work/err" &
  serve_pid=$!
  for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
  if [ -s "$work/port" ]; then
    ok "$1"
  else
    fail "$1"
    sed 's/^/    /' "$work/err"
  fi
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
}
module=$(sed -n 's/^module = //p' "$config")
serves "plaintext on a loopback address" "$(variant plain 's|^tls_cert = .*||')"

# A module that wants a C_Initialize string in pReserved, as NSS softoken does: the quirks
# module's need-init-args, in front of the same SoftHSM2 token.
quirks_lib=$bin/../lib/libbkv-pkcs11-quirks.so
init_args="configdir='sql:/var/lib/bkv-startup' certPrefix='' keyPrefix='' secmod='secmod.db' flags="
export BKV_QUIRKS_MODULE=$module BKV_QUIRKS=need-init-args BKV_QUIRKS_INIT_ARGS=$init_args
refuses "a module wanting init_args, without them: C_Initialize's CKR name" \
  "C_Initialize .*failed: CKR_ARGUMENTS_BAD" \
  "$(variant noargs "s|^module = .*|module = $quirks_lib|")"
serves "the same module with [token] init_args" \
  "$(variant initargs "s|^module = .*|module = $quirks_lib\ninit_args = $init_args|")"
unset BKV_QUIRKS_MODULE BKV_QUIRKS BKV_QUIRKS_INIT_ARGS

# A fresh token without keys: the ceremony has not run.
"$root/hsm-config/make-dev-token" "$work/vault/hsm" bkv-empty >/dev/null
refuses "keys not created" "run \`bkvd init\`" "$(variant empty 's|^label = .*|label = bkv-empty|')"

# A token initialized before state MACs: the same token with bkv-state-mac-1 deleted.
p11() {
  pkcs11-tool --module "$module" --token-label bkv-dev --login \
    --pin "$(cat "$work/vault/hsm/user.pin")" "$@"
}
state_mac_key() { p11 --list-objects --type secrkey 2>/dev/null | grep -q 'label: *bkv-state-mac-1$'; }
if ! command -v pkcs11-tool >/dev/null; then
  fail "a token from before state MACs: pkcs11-tool not found (scripts/deps must install opensc)"
elif ! state_mac_key; then
  fail "a token from before state MACs: bkvd init did not create bkv-state-mac-1"
elif ! p11 --delete-object --type secrkey --label bkv-state-mac-1 >"$work/out" 2>&1 || state_mac_key; then
  fail "a token from before state MACs: pkcs11-tool could not delete bkv-state-mac-1"
  sed 's/^/    /' "$work/out"
else
  refuses "a token without bkv-state-mac-1 (initialized before state MACs)" "run \`bkvd init\`" \
    "$config"
  rc=0
  "$bin/bkvd" rewrap --config "$config" >"$work/out" 2>"$work/err" || rc=$?
  if [ "$rc" -eq 2 ] && grep -q 'run `bkvd init`' "$work/err"; then
    ok "bkvd rewrap refuses it too (exit 2, run \`bkvd init\`)"
  else
    fail "bkvd rewrap on a token without bkv-state-mac-1 (exit $rc)"
    sed 's/^/    /' "$work/err"
  fi
  rc=0
  "$bin/bkvd" init --config "$config" >"$work/out" 2>"$work/err" || rc=$?
  if [ "$rc" -eq 0 ] && grep -Eq '^ *bkv-state-mac-1 +created' "$work/out" &&
    [ "$(grep -c ' created' "$work/out")" -eq 1 ] && state_mac_key; then
    ok "bkvd init creates bkv-state-mac-1, and only it"
  else
    fail "bkvd init on a token without bkv-state-mac-1 (exit $rc)"
    sed 's/^/    /' "$work/out" "$work/err"
  fi
  serves "bkvd serve starts once bkvd init has run" "$config"
fi

rc=0
"$bin/bkvd" dev-token --config "$(variant nodev 's|^dev_issuer = .*|dev_issuer = false|')" alice \
  >/dev/null 2>"$work/err" || rc=$?
if [ "$rc" -eq 2 ] && grep -q "refused" "$work/err"; then
  echo "ok dev-token is refused without the dev issuer"
  passed=$((passed + 1))
else
  echo "FAIL dev-token without the dev issuer (exit $rc)"
  failed=$((failed + 1))
fi

# bkvd --version prints the project's version (from the top-level CMakeLists.txt).
want=$(sed -n 's/^project(bkv VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
got=$("$bin/bkvd" --version 2>&1) || got="exit $?: $got"
if [ -n "$want" ] && [ "$got" = "bkvd $want" ]; then
  echo "ok bkvd --version says bkvd $want"
  passed=$((passed + 1))
else
  echo "FAIL bkvd --version: \"$got\", want \"bkvd $want\""
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
