#!/usr/bin/env bash
# run-matrix.sh - the whole round trip through bkvd and the bkv CLI on tokens that behave as
# real HSMs do: bkvd init, bkvd status, bkvd serve on 127.0.0.1 (and /healthz), then for each
# suite register, recover, a wrong password, the attempts it used, and the attempt limit.
#
#   tests/pkcs11-quirks/run-matrix.sh BUILD_BIN_DIR [QUIRK...]
#       each QUIRK (default: none and every quirk of quirks.c) on fresh SoftHSM2 tokens
#       behind BUILD_BIN_DIR/../lib/libbkv-pkcs11-quirks.so ($BKV_QUIRKS_LIB); QUIRK@sealed
#       runs with [token] p256_ake = sealed (suite settings with P-256 only); QUIRK@adopt
#       has the keys made first by a stand-in for the vendor's tool (vendor-keygen, on
#       SoftHSM2 directly) and runs `bkvd init --adopt`; QUIRK@database runs with [token]
#       sealed_keys = database. QUIRK may be several quirks joined by commas, and modes are
#       joined by "+" (no-ecdh,no-data-objects@sealed+database): a vendor's profile
#   tests/pkcs11-quirks/run-matrix.sh BUILD_BIN_DIR --direct
#       on the token that tests/with-softhsm or tests/pkcs11-quirks/with-opencryptoki
#       describes (BKV_TEST_PKCS11_MODULE, BKV_TEST_TOKEN_LABEL, BKV_TEST_PIN_FILE), the
#       module loaded by bkvd itself, with [token] p256_ake = $BKV_MATRIX_P256_AKE (default
#       token)
#
# Each is run with three [opaque] suites settings: both suites, and each alone
# ($BKV_MATRIX_SUITES: space-separated settings). One line per run:
#   quirk NAME [SUITES]: ok
#   quirk NAME [SUITES]: refused at start: MESSAGE       bkvd init, status, serve or /healthz
#                                                        refused, and said MESSAGE
#   quirk NAME [SUITES]: SILENT FAILURE at STEP: OUTPUT  bkvd started and said it was ready,
#                                                        and a later step failed
# ("token MODULE" in place of "quirk NAME" with --direct.) Exits 1 if any silent failure
# happened, or if a run that must work is not ok: `none` (the module with no quirk), and
# every run with --direct (a real implementation bkv supports), or a quirk bkv works around
# ($must_work). Everything lives in one
# temporary directory; bkvd is stopped and the directory removed on exit, however it comes.
set -euo pipefail

bin=$(cd "${1:?usage: run-matrix.sh BUILD_BIN_DIR [QUIRK... | --direct]}" && pwd)
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
quirks_lib=${BKV_QUIRKS_LIB:-$bin/../lib/libbkv-pkcs11-quirks.so}
softhsm=${BKV_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
# Vendors' documented behaviours together (docs/TOKEN.md, "Per implementation").
profiles=(
  no-gcm,no-copy,no-data-objects@database                        # YubiHSM 2
  gcm-token-iv,no-ecdh,no-copy,no-data-objects@sealed+database   # AWS CloudHSM, worst case
  no-ecdh,no-copy,no-data-objects@sealed+database                # Google Cloud KMS library
  gcm-token-iv16,sensitive-derive@sealed                         # Thales Luna Cloud HSM
  no-generate-key,no-gcm,no-copy@adopt                           # tpm2-pkcs11
  no-gcm,no-allowed-mechanisms,no-ecdh@sealed                    # openCryptoki before 3.17
)
all_quirks=(none gcm-token-iv gcm-token-iv16 no-gcm sensitive-derive no-ecdh no-copy
  no-allowed-mechanisms no-data-objects no-generate-key none@sealed sensitive-derive@sealed
  no-ecdh@sealed no-gcm@sealed none@adopt no-generate-key@adopt none@database
  no-data-objects@database "${profiles[@]}")
# What bkv supports: these runs must be ok, not merely refused with a reason.
must_work=" none gcm-token-iv gcm-token-iv16 no-gcm no-copy no-allowed-mechanisms none@sealed
  sensitive-derive@sealed no-ecdh@sealed no-gcm@sealed none@adopt no-generate-key@adopt
  none@database no-data-objects@database ${profiles[*]} "
# With P-256 alone nothing is sealed at `bkvd init`, so a sealing fault can only show later.
read -r -a suite_configs <<<"${BKV_MATRIX_SUITES:-ristretto255-sha512,p256-sha256 p256-sha256 ristretto255-sha512}"

work=$(mktemp -d "${TMPDIR:-/tmp}/bkv-quirks-matrix.XXXXXXXX")
serve_pid=""
stop_serve() {
  if [ -n "$serve_pid" ]; then
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=""
  fi
}
trap 'stop_serve; rm -rf "$work"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# The lines of the files given, as one line ("a / b"); "(nothing)" if all are empty.
one_line() {
  local text
  text=$(cat "$@" 2>/dev/null | awk 'NF { printf "%s%s", (n++ ? " / " : ""), $0 }')
  echo "${text:-(nothing)}"
}

# write_config DIR SUITES MODULE LABEL PIN_FILE [P256_AKE [SEALED_KEYS]]: a TLS certificate
# and a bkvd.conf as scripts/dev-vault writes them, with the given [opaque] suites and
# [token].
write_config() {
  local dir=$1
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days 2 -subj "/CN=bkv quirks matrix" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$dir/tls-key.pem" -out "$dir/tls-cert.pem" 2>/dev/null)
  cat >"$dir/bkvd.conf" <<CONF
[vault]
listen = 127.0.0.1:0
storage = sqlite:$dir/bkv.db
tls_cert = $dir/tls-cert.pem
tls_key = $dir/tls-key.pem
log_key_file = $dir/log.key
audit_log = $dir/audit.log
request_log = $dir/requests.log

[auth]
algorithm = HS256
key_file = $dir/dev-jwt.key
issuer = bkv-dev
audience = bkv
dev_issuer = true

[opaque]
suites = $2
context = bkv-v1

[token]
module = $3
label = $4
pin_file = $5
p256_ake = ${6:-token}
sealed_keys = ${7:-token}
CONF
}

# Each step writes its output to $dir/out and $dir/err and leaves its exit status in $rc.
step() {
  rc=0
  timeout 60 "$@" >"$dir/out" 2>"$dir/err" </dev/null || rc=$?
}

# start_serve: bkvd serve in the background; false (bkvd's words in $dir/err) if it stops.
start_serve() {
  rm -f "$dir/port"
  "$bin/bkvd" serve --config "$dir/bkvd.conf" --listen 127.0.0.1:0 --workers 1 \
    --port-file "$dir/port" </dev/null >"$dir/serve.out" 2>"$dir/serve.err" &
  serve_pid=$!
  for _ in $(seq 200); do
    if [ -s "$dir/port" ]; then
      BKV_VAULT="https://127.0.0.1:$(cat "$dir/port")"
      export BKV_VAULT
      return 0
    fi
    if ! kill -0 "$serve_pid" 2>/dev/null; then
      wait "$serve_pid" 2>/dev/null || true
      serve_pid=""
      cp "$dir/serve.err" "$dir/err"
      return 1
    fi
    sleep 0.05
  done
  echo "bkvd serve wrote no port file in 10 s" >"$dir/err"
  return 1
}

# round_trip SUITE: prints the failing step and leaves its output in $dir/out, $dir/err.
round_trip() {
  local suite=$1 account="matrix-$1"
  step "$bin/bkvd" dev-token --config "$dir/bkvd.conf" "$account"
  [ "$rc" -eq 0 ] || { echo "dev-token ($suite)"; return 1; }
  mv "$dir/out" "$dir/token"
  rm -f "$dir/key"
  step "$bin/bkv" keygen --out "$dir/key"
  [ "$rc" -eq 0 ] || { echo "keygen ($suite)"; return 1; }
  local common=(--ca-file "$dir/tls-cert.pem" --token-file "$dir/token")
  step "$bin/bkv" register "${common[@]}" --key-file "$dir/key" --password-file "$dir/password" \
    --suite "$suite" --attempt-limit 2
  [ "$rc" -eq 0 ] || { echo "register ($suite)"; return 1; }
  rm -f "$dir/got"
  step "$bin/bkv" recover "${common[@]}" --password-file "$dir/password" --out "$dir/got"
  [ "$rc" -eq 0 ] || { echo "recover ($suite)"; return 1; }
  cmp -s "$dir/key" "$dir/got" || { echo "recover ($suite): a different key came back"; return 1; }
  step "$bin/bkv" recover "${common[@]}" --password-file "$dir/wrong"
  if ! { [ "$rc" -eq 3 ] && grep -q "1 attempt left" "$dir/err"; }; then
    echo "wrong password ($suite): exit $rc, want 3 and \"1 attempt left\""
    return 1
  fi
  step "$bin/bkv" status "${common[@]}"
  if ! { [ "$rc" -eq 0 ] && grep -q "attempts used: 1 of 2" "$dir/out"; }; then
    echo "status after a wrong password ($suite): exit $rc, want \"attempts used: 1 of 2\""
    return 1
  fi
  step "$bin/bkv" recover "${common[@]}" --password-file "$dir/wrong"
  [ "$rc" -eq 4 ] || { echo "the last wrong password ($suite): exit $rc, want 4"; return 1; }
  # The key is gone: exit 4, or (bkv before the destroyed state was reported) "holds no key".
  step "$bin/bkv" recover "${common[@]}" --password-file "$dir/password"
  if ! { [ "$rc" -eq 4 ] || { [ "$rc" -eq 1 ] && grep -q "holds no key" "$dir/err"; }; }; then
    echo "the right password after the limit ($suite): exit $rc, want 4"
    return 1
  fi
}

# run NAME SUITES: one whole run on the vault in $dir; its line in $result.
run() {
  local name="$1 [$2]" failed_at suite
  step "$bin/bkvd" init --dev ${adopt:+--adopt} --config "$dir/bkvd.conf"
  if [ "$rc" -ne 0 ]; then
    result="$name: refused at start: bkvd init (exit $rc): $(one_line "$dir/err")"
    return
  fi
  step "$bin/bkvd" status --config "$dir/bkvd.conf"
  if [ "$rc" -ne 0 ]; then
    result="$name: refused at start: bkvd status (exit $rc): $(one_line "$dir/err" "$dir/out")"
    return
  fi
  if ! start_serve; then
    result="$name: refused at start: bkvd serve: $(one_line "$dir/err")"
    return
  fi
  step curl -sS --cacert "$dir/tls-cert.pem" "$BKV_VAULT/healthz"
  if [ "$rc" -ne 0 ] || [ "$(cat "$dir/out")" != ok ]; then
    stop_serve
    result="$name: refused at start: /healthz: $(one_line "$dir/out" "$dir/err")"
    return
  fi
  printf 'the right password' >"$dir/password"
  printf 'a wrong password' >"$dir/wrong"
  for suite in ${2//,/ }; do
    if ! failed_at=$(round_trip "$suite"); then
      stop_serve
      result="$name: SILENT FAILURE at $failed_at: $(one_line "$dir/err" "$dir/out")"
      result+=" [bkvd said: $(one_line "$dir/serve.err")]"
      return
    fi
  done
  stop_serve
  result="$name: ok"
}

status=0
report() { # report: prints $result; a silent failure fails the script
  echo "$result"
  case $result in *"SILENT FAILURE"*) status=1 ;; esac
}
if [ "${1:-}" = --direct ]; then
  : "${BKV_TEST_PKCS11_MODULE:?--direct needs BKV_TEST_PKCS11_MODULE (run it under with-softhsm or with-opencryptoki)}"
  : "${BKV_TEST_TOKEN_LABEL:?--direct needs BKV_TEST_TOKEN_LABEL}"
  : "${BKV_TEST_PIN_FILE:?--direct needs BKV_TEST_PIN_FILE}"
  # The runs share the one token: a later `bkvd init` keeps the keys an earlier one made.
  for suites in "${suite_configs[@]}"; do
    dir=$work/direct-$suites
    mkdir -p "$dir"
    write_config "$dir" "$suites" "$BKV_TEST_PKCS11_MODULE" "$BKV_TEST_TOKEN_LABEL" \
      "$BKV_TEST_PIN_FILE" "${BKV_MATRIX_P256_AKE:-token}"
    run "token $(basename "$BKV_TEST_PKCS11_MODULE")" "$suites"
    report
    case $result in *": ok") ;; *) status=1 ;; esac
  done
  exit "$status"
fi

[ -f "$quirks_lib" ] || { echo "run-matrix: no quirks module at $quirks_lib" >&2; exit 2; }
[ "$#" -gt 0 ] || set -- "${all_quirks[@]}"
export BKV_QUIRKS_MODULE=$softhsm
for quirk in "$@"; do
  p256_ake=token adopt="" sealed_keys=token modes=""
  [[ $quirk != *@* ]] || modes=${quirk#*@}
  for mode in ${modes//+/ }; do
    case $mode in
      sealed) p256_ake=sealed ;;
      adopt) adopt=1 ;;
      database) sealed_keys=database ;;
      *) echo "run-matrix: unknown mode $mode in $quirk" >&2; exit 2 ;;
    esac
  done
  export BKV_QUIRKS=${quirk%%@*}
  [ "$BKV_QUIRKS" != none ] || BKV_QUIRKS=""
  for suites in "${suite_configs[@]}"; do
    [ "$p256_ake" = token ] || [[ $suites == *p256* ]] || continue
    dir=$work/$quirk-$suites
    mkdir -p "$dir"
    "$root/hsm-config/make-dev-token" "$dir/hsm" bkv-matrix >/dev/null
    export SOFTHSM2_CONF=$dir/hsm/softhsm2.conf
    write_config "$dir" "$suites" "$quirks_lib" bkv-matrix "$dir/hsm/user.pin" "$p256_ake" \
      "$sealed_keys"
    cbc=gcm
    [[ ",$BKV_QUIRKS," != *,no-gcm,* ]] || cbc=cbc
    if [ -n "$adopt" ] && ! "$here/vendor-keygen" "$softhsm" bkv-matrix "$dir/hsm/user.pin" \
      "$suites" "$p256_ake" "$cbc" >"$dir/keygen.out" 2>&1; then
      echo "quirk $quirk [$suites]: the stand-in vendor tool failed: $(one_line "$dir/keygen.out")"
      status=1
      continue
    fi
    run "quirk $quirk" "$suites"
    report
    if [[ $must_work == *" $quirk "* ]] && [ "$result" != "quirk $quirk [$suites]: ok" ]; then
      status=1
    fi
  done
done
exit "$status"
