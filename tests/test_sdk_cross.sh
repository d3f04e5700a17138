#!/usr/bin/env bash
# test_sdk_cross.sh - the three SDKs share one vault and agree byte for byte: for each
# suite, a key registered with the C CLI (`bkv keygen` + `bkv register`) is recovered with
# Java; Java changes the password and Python recovers the key with the new one; Python
# registers a new key in place of it and the CLI recovers that; and the other way round,
# Java registers, Python changes the password, the CLI recovers. Each recovered key is
# compared with the registered one as 64 hex digits (the CLI's key files turned into hex
# here, the Java and Python helpers print the raw bytes in hex: no SDK's own key parser or
# formatter decides). A wrong password in one SDK is seen as a used attempt by the others
# (Python's by `bkv status` and Java, the CLI's by Python and Java), and each SDK reports
# the suite the other one registered. The passwords are non-ASCII text (a character outside
# the BMP too): Java encodes its char[] and Python its str as UTF-8 themselves, the CLI
# sends the file's bytes.
#
# All three set the same client Argon2id parameters (1,1024,1: light, as in the other
# tests) while the vault publishes its own defaults (3, 64 MiB, 4): a binding that ignored
# its parameters would stretch the password differently and its recovery would fail.
#
#   [tests/with-vault] tests/test_sdk_cross.sh BUILD_BIN_DIR LIBBKV JAVA LIBBKVJNI BKV_JAR CROSS_JAR
#
# LIBBKV is the build's libbkv.so.0 (for the Python binding, used from sdk/python/src),
# CROSS_JAR holds tests/sdk-cross/CrossSdk.java. BKV_SDK_PRELOAD (the sanitizer build's
# ASan runtime) is preloaded into the JVM and Python only, as sdk_java and sdk_python do.
# The work directory, its clean-up, check/summary and bkvd's start are tests/testlib.sh's:
# under tests/with-vault the directory is inside $BKV_TEST_DIR (with-vault removes it and
# any bkvd left from it); alone, a directory of its own that it removes. Fails if bkvd's
# log holds a sanitizer report.
set -euo pipefail

usage="usage: test_sdk_cross.sh BUILD_BIN_DIR LIBBKV JAVA LIBBKVJNI BKV_JAR CROSS_JAR"
bin=$(cd "${1:?$usage}" && pwd)
libbkv=$(realpath "${2:?$usage}")
java=${3:?$usage}
jni=$(realpath "${4:?$usage}")
bkv_jar=$(realpath "${5:?$usage}")
cross_jar=$(realpath "${6:?$usage}")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
start "$bin/bkvd" "$config"
url=$BKV_VAULT
ca=$work/vault/tls/cert.pem
argon2=1,1024,1

# The SDKs' runtimes. A sanitizer-built libbkv needs the ASan runtime loaded first, which
# java and python (not instrumented) do not do: preload it into them only, without leak
# detection (neither frees its own memory at exit), the JVM keeping its SIGSEGV handling
# and Python allocating with malloc so that ASan sees the buffers' bounds.
java_env=(env)
python_env=(env PYTHONPATH="$root/sdk/python/src" PYTHONDONTWRITEBYTECODE=1
  BKV_LIBRARY="$libbkv")
if [ -n "${BKV_SDK_PRELOAD:-}" ]; then
  asan=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
  java_env+=(LD_PRELOAD="$BKV_SDK_PRELOAD"
    ASAN_OPTIONS="$asan:handle_segv=0:allow_user_segv_handler=1")
  python_env+=(LD_PRELOAD="$BKV_SDK_PRELOAD" ASAN_OPTIONS="$asan" PYTHONMALLOC=malloc)
fi

# cli|java|python SUITE ACCOUNT COMMAND [ARGS]: one call through that SDK for ACCOUNT,
# registering under SUITE; recover prints the key's hex, status a line of key=value.
cli() {
  local suite=$1 account=$2 command=$3
  shift 3
  local common=(--token-file "$work/token-$account" --ca-file "$ca" --vault "$url")
  case "$command" in
    recover)
      rm -f "$work/cli-key"
      "$bin/bkv" recover "${common[@]}" --argon2 "$argon2" --password-file "$1" \
        --out "$work/cli-key" && hex "$work/cli-key" ;;
    register)
      "$bin/bkv" keygen --out "$2" >/dev/null &&
        "$bin/bkv" register "${common[@]}" --argon2 "$argon2" --suite "$suite" \
          --key-file "$2" --password-file "$1" ;;
    status) "$bin/bkv" status "${common[@]}" ;;
    *) echo "cli: $command?" >&2; return 2 ;;
  esac
}
java() {
  "${java_env[@]}" "$java" -Xcheck:jni -Dorg.bkv.library="$jni" -cp "$bkv_jar:$cross_jar" \
    CrossSdk "$url" "$ca" "$argon2" "$1" "$work/token-$2" "${@:3}"
}
python() {
  "${python_env[@]}" /usr/bin/python3 "$root/tests/sdk-cross/cross_sdk.py" \
    "$url" "$ca" "$argon2" "$1" "$work/token-$2" "${@:3}"
}
# hex FILE: a key file (the CLI's 16 groups of 4 hex digits, or a helper's 64) as 64
# lowercase hex digits; fails on anything else
hex() {
  local h
  h=$(tr -d ' \n' <"$1" | tr 'A-F' 'a-f')
  [[ "$h" =~ ^[0-9a-f]{64}$ ]] || { echo "not a key: $(cat "$1")" >&2; return 1; }
  echo "$h"
}
# same_key WANT GOT: both are 64 hex digits, the same ones
same_key() {
  echo "registered $1"
  echo "recovered  $2"
  [[ "$1" =~ ^[0-9a-f]{64}$ ]] && [ "$2" = "$1" ]
}
# recovers_same EXPECTED_HEX SDK SUITE ACCOUNT PASSWORD_FILE: SDK recovers exactly that key
recovers_same() {
  local want=$1 got
  shift
  got=$("$1" "$2" "$3" recover "$4") || return 1
  same_key "$want" "$got"
}
# wrong_password SDK SUITE ACCOUNT PASSWORD_FILE: SDK's recovery fails as a wrong password
# (exit 3 from all three)
wrong_password() {
  local rc=0
  "$1" "$2" "$3" recover "$4" || rc=$?
  [ "$rc" -eq 3 ]
}
# status_has SDK SUITE ACCOUNT FIELD...: SDK's status output holds every FIELD: a whole
# line of `bkv status` ("suite: p256-sha256", or "attempts used: 1 of" starting one), a
# whole key=value item of the helpers' line
status_has() {
  local out f
  out=$("$1" "$2" "$3" status) || return 1
  echo "$out"
  for f in "${@:4}"; do
    if [ "$1" = cli ]; then
      grep -qxF -- "$f" <<<"$out" || grep -q "^$f " <<<"$out" || return 1
    else
      tr ' ' '\n' <<<"$out" | grep -qxF -- "$f" || return 1
    fi
  done
}

# Three passwords, each with non-ASCII text; the CLI takes the file's bytes (no newline).
printf 'Grüße, Schlüssel 1 \xf0\x9f\x94\x91' >"$work/pw1"
printf 'пароль два \xe2\x82\xac 2' >"$work/pw2"
printf 'mot de passe trois \xc3\xa9\xf0\x9f\x97\x9d 3' >"$work/pw3"

not_same_key() { ! same_key "$@"; }
check "the comparison refuses a key that differs in its last digit" \
  not_same_key "$(printf '%064d' 0)" "$(printf '%063d1' 0)"
check "the comparison refuses an empty recovered key" not_same_key "$(printf '%064d' 0)" ""
check "the comparison refuses two empty keys" not_same_key "" ""

for suite in p256-sha256 ristretto255-sha512; do
  account=cross-$suite
  "$bin/bkvd" dev-token --config "$config" "$account" >"$work/token-$account"

  # 1. the C CLI registers, Java recovers
  check "$suite: bkv keygen + bkv register" cli "$suite" "$account" register "$work/pw1" \
    "$work/key1-$suite"
  key1=$(hex "$work/key1-$suite")
  check "$suite: Java recovers the key the CLI registered" \
    recovers_same "$key1" java "$suite" "$account" "$work/pw1"
  check "$suite: Java reports the CLI's suite and record version 1" \
    status_has java "$suite" "$account" "state=registered" "suite=$suite" "record_version=1"

  # 2. Java changes the password, Python recovers with the new one; Python's wrong
  # password (the old one) is an attempt the CLI and Java see
  check "$suite: Java changes the password" \
    java "$suite" "$account" change-password "$work/pw1" "$work/pw2"
  check "$suite: Python's recovery with the old password is a wrong password" \
    wrong_password python "$suite" "$account" "$work/pw1"
  check "$suite: bkv status shows Python's wrong password as 1 attempt used" \
    status_has cli "$suite" "$account" "suite: $suite" "attempts used: 1 of" \
    "record version: 2"
  check "$suite: Java shows Python's wrong password as 1 attempt used" \
    status_has java "$suite" "$account" "attempts_used=1" "record_version=2"
  check "$suite: Python recovers the CLI's key under the password Java set" \
    recovers_same "$key1" python "$suite" "$account" "$work/pw2"

  # 3. Python registers a new key in place of it, the CLI recovers that; the CLI's wrong
  # password (Java's, now replaced) is an attempt Python and Java see
  check "$suite: Python registers a new key in place of the CLI's" \
    python "$suite" "$account" register "$work/pw3" "$work/key3-$suite"
  key3=$(hex "$work/key3-$suite")
  check "$suite: Python's key is a new one" test "$key3" != "$key1"
  check "$suite: the CLI's recovery with Java's password is a wrong password" \
    wrong_password cli "$suite" "$account" "$work/pw2"
  check "$suite: Python shows the CLI's wrong password as 1 attempt used, its own suite" \
    status_has python "$suite" "$account" "suite=$suite" "attempts_used=1" "record_version=3"
  check "$suite: Java shows the CLI's wrong password as 1 attempt used" \
    status_has java "$suite" "$account" "attempts_used=1" "record_version=3"
  check "$suite: the CLI recovers the key Python registered" \
    recovers_same "$key3" cli "$suite" "$account" "$work/pw3"

  # 4. the other way round, on an account of its own: Java registers, Python changes the
  # password, the CLI recovers
  account=cross-back-$suite
  "$bin/bkvd" dev-token --config "$config" "$account" >"$work/token-$account"
  check "$suite: Java registers a key" \
    java "$suite" "$account" register "$work/pw1" "$work/key4-$suite"
  key4=$(hex "$work/key4-$suite")
  check "$suite: Python changes the password Java set" \
    python "$suite" "$account" change-password "$work/pw1" "$work/pw2"
  check "$suite: bkv status reports Java's suite, the version Python's change made" \
    status_has cli "$suite" "$account" "suite: $suite" "record version: 2"
  check "$suite: the CLI recovers Java's key under the password Python set" \
    recovers_same "$key4" cli "$suite" "$account" "$work/pw2"
done

stop
no_sanitizer_report() { ! grep -q Sanitizer "$work/bkvd.log"; }
check "bkvd reported no sanitizer error" no_sanitizer_report
summary
