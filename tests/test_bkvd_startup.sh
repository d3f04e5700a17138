#!/usr/bin/env bash
# test_bkvd_startup.sh - bkvd refuses to start with exit code 2 and a one-line reason
# (never the PIN) when its setup is wrong: missing configuration, wrong module path,
# unknown token label, wrong PIN, keys not created, plaintext on a public address, a bad
# listen address; and `bkvd dev-token` is refused unless the dev issuer is enabled.
#
#   tests/test_bkvd_startup.sh BUILD_BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test_bkvd_startup.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
refuses "wrong module path" "cannot load PKCS#11 module" \
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
refuses "plaintext on a public address" "TLS is required" \
  "$(variant plain 's|^tls_cert = .*||')" --listen 0.0.0.0:0
refuses "a bad listen address" "invalid listen address" "$config" --listen nonsense

# A fresh token without keys: the ceremony has not run.
"$root/hsm-config/make-dev-token" "$work/vault/hsm" bkv-empty >/dev/null
refuses "keys not created" "run \`bkvd init\`" "$(variant empty 's|^label = .*|label = bkv-empty|')"

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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
