#!/usr/bin/env bash
# run-with-vault.sh - the Java binding's JUnit 5 tests against a real bkvd: a development
# vault (scripts/dev-vault: SoftHSM2 token, self-signed TLS certificate, HS256 dev JWT key)
# served on 127.0.0.1, then the JUnit console launcher running every test class in
# bkv-tests.jar with the vault's URL, its certificate as CA file, a certificate that did not
# sign it, and bkvd + its configuration for `bkvd dev-token`. Fails if bkvd's log holds a
# sanitizer report (a -DBKV_SANITIZE=ON build).
#
#   [tests/with-vault] run-with-vault.sh BUILD_BIN_DIR JAVA JUNIT_CONSOLE_JAR LIBBKVJNI BKV_JAR TESTS_JAR
#
# BKV_JAVA_PRELOAD (the sanitizer build's ASan runtime) is preloaded into the JVM only, with
# the ASan options a JVM needs: its own SIGSEGV handling, and no leak check (the JVM does
# not free its memory at exit). Without it, java runs with -Xcheck:jni alone.
#
# The work directory, its clean-up and bkvd's start are tests/testlib.sh's: under
# tests/with-vault it is inside $BKV_TEST_DIR (with-vault removes it and any bkvd left from
# it); alone, a directory of its own that it removes.
set -euo pipefail

usage="usage: run-with-vault.sh BUILD_BIN_DIR JAVA JUNIT_CONSOLE_JAR LIBBKVJNI BKV_JAR TESTS_JAR"
bin=$(cd "${1:?$usage}" && pwd)
java=${2:?$usage}
junit=${3:?$usage}
jni=$(realpath "${4:?$usage}")
bkv_jar=$(realpath "${5:?$usage}")
tests_jar=$(realpath "${6:?$usage}")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)
# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
start "$bin/bkvd" "$config"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=other -keyout "$work/other-key.pem" -out "$work/other-cert.pem" 2>/dev/null

launch=("$java")
if [ -n "${BKV_JAVA_PRELOAD:-}" ]; then
  launch=(env LD_PRELOAD="$BKV_JAVA_PRELOAD"
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:handle_segv=0:allow_user_segv_handler=1"
    "$java")
fi

rc=0
"${launch[@]}" -Xcheck:jni -Dorg.bkv.library="$jni" \
  -Dbkv.test.url="$BKV_VAULT" \
  -Dbkv.test.caFile="$work/vault/tls/cert.pem" \
  -Dbkv.test.otherCaFile="$work/other-cert.pem" \
  -Dbkv.test.bkvd="$bin/bkvd" -Dbkv.test.config="$config" \
  -Dbkv.test.vectors="$root/docs/vectors/bkv-v1.json" \
  -jar "$junit" --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
  --class-path "$bkv_jar:$tests_jar" --scan-class-path "$tests_jar" || rc=$?
if grep -q 'Sanitizer' "$work/bkvd.log"; then
  echo "bkvd reported a sanitizer error" >&2
  rc=1
fi
if [ "$rc" -ne 0 ]; then
  echo "--- bkvd.log" >&2
  tail -n 50 "$work/bkvd.log" >&2
fi
exit "$rc"
