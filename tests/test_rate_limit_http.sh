#!/usr/bin/env bash
# test_rate_limit_http.sh - rate limits against a real bkvd (docs/DEPLOYMENT.md, "Rate
# limits"): with per_account.RecoverStart = 1/h burst 3, the fourth RecoverStart of one
# account is refused with HTTP 429 resource_exhausted, a bkv.v1.RetryInfo detail and
# Retry-After; the refused requests use no attempt and no token operation; another account
# is unaffected; a per-address limit refuses before the bearer token is verified; a bad
# [rate_limit] line stops bkvd at start. With SQLite: one bkvd with 2 workers (the workers
# share the buckets). With BKV_TEST_PG_URL (tests/with-postgres): two bkvd replicas on one
# database, 1 worker each, share the per-account budget (the requests alternate between
# them, so neither replica's own table alone would refuse the fourth); the first runs its
# commits in a committer ([vault] committer = auto), the second with committer = off, each
# worker committing its own, and each says so at start.
#
#   tests/with-vault tests/test_rate_limit_http.sh BUILD_BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test_rate_limit_http.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${BKV_TEST_DIR:?run under tests/with-vault}/rate
mkdir -p "$work"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1 ($2)"; fi; }

if [ -n "${BKV_TEST_PG_URL:-}" ]; then
  export BKV_DEV_VAULT_STORAGE=$BKV_TEST_PG_URL
  replicas=2 workers=1
else
  replicas=1 workers=2
fi
config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
# the development vault turns rate limits off; this test turns them on
grep -q '^enabled = false$' "$config"
sed -i 's|^enabled = false$|enabled = true\
per_account.RecoverStart = 1/h burst 3\
per_account.GetStatus = off\
per_address.RecoverStart = off\
per_address.GetStatus = off\
per_address.Delete = 1/h burst 1|' "$config"

# a rule bkvd cannot read, or a method it does not know, stops it at start with exit 2
bad_config() {
  local name=$1 line=$2 want=$3 rc=0
  sed "s|^per_account.GetStatus = off$|$line|" "$config" >"$work/bad.conf"
  "$bin/bkvd" serve --config "$work/bad.conf" --listen 127.0.0.1:0 >/dev/null \
    2>"$work/bad.err" || rc=$?
  check "$name: exit 2" "[ $rc -eq 2 ]"
  check "$name: says $want" "grep -qF -- '$want' '$work/bad.err'"
}
bad_config "a rule without a period" "per_account.GetStatus = 10" \
  "invalid value for [rate_limit] per_account.GetStatus"
bad_config "a burst of 0" "per_account.GetStatus = 10/min burst 0" \
  "invalid value for [rate_limit] per_account.GetStatus"
bad_config "an unknown method" "per_account.GetConfig = 10/min" \
  "unknown key [rate_limit] per_account.GetConfig"
bad_config "an unknown scope" "per_host.GetStatus = 10/min" \
  "unknown key [rate_limit] per_host.GetStatus"

# replica 2 (PostgreSQL): the same vault without a committer
sed 's|^\(storage = .*\)$|\1\ncommitter = off|' "$config" >"$work/no-committer.conf"
urls=() metrics_urls=()
for r in $(seq "$replicas"); do
  conf=$config
  [ "$r" -eq 2 ] && conf=$work/no-committer.conf
  "$bin/bkvd" serve --config "$conf" --listen 127.0.0.1:0 --workers "$workers" \
    --port-file "$work/port$r" --metrics-listen 127.0.0.1:0 \
    --metrics-port-file "$work/metrics-port$r" 2>>"$work/bkvd$r.log" &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$work/port$r" ] && [ -s "$work/metrics-port$r" ] && break; sleep 0.05; done
  [ -s "$work/port$r" ] && [ -s "$work/metrics-port$r" ] || { cat "$work/bkvd$r.log"; exit 1; }
  urls+=("https://127.0.0.1:$(cat "$work/port$r")")
  metrics_urls+=("http://127.0.0.1:$(cat "$work/metrics-port$r")/metrics")
done
# metrics N: replica N's metrics text; fails (and so fails the test) if it cannot be read
metrics() { curl -sSf "${metrics_urls[$(($1 - 1))]}"; }
if [ "$replicas" -eq 2 ]; then
  check "replica 1 runs a committer" \
    "grep -qxF 'bkvd: commits run in a committer process ([vault] committer = auto, PostgreSQL)' '$work/bkvd1.log'"
  check "replica 2 commits in its workers" \
    "grep -qxF 'bkvd: each worker runs its own commits, one request at a time ([vault] committer = off, PostgreSQL)' '$work/bkvd2.log'"
  m1=$(metrics 1) m2=$(metrics 2)
  check "replica 1 counts its commits, replica 2 has no commit group" \
    "grep -q '^bkv_commits_total ' <<<\"\$m1\" && ! grep -q '^bkv_commits_total ' <<<\"\$m2\""
fi
# url N: replica N (1-based), round robin
url() { echo "${urls[$((($1 - 1) % replicas))]}"; }

bkv() { "$bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem"; }
printf 'the password' >"$work/pw"
printf 'not the password' >"$work/wrong"
"$bin/bkv" keygen --out "$work/key"
for a in alice bob; do "$bin/bkvd" dev-token --config "$config" "$a" >"$work/token-$a"; done
for a in alice bob; do
  BKV_VAULT=$(url 1) bkv register --token-file "$work/token-$a" --key-file "$work/key" \
    --password-file "$work/pw" >/dev/null
done

# token operations done by all replicas: the sum of every op's histogram count
token_ops() {
  local n=0 i
  for i in $(seq "$replicas"); do
    n=$((n + $(metrics "$i" |
      awk '/^bkv_token_operation_duration_seconds_count/ { s += $2 } END { print s + 0 }')))
  done
  echo "$n"
}
rate_limited() {
  local n=0 i
  for i in $(seq "$replicas"); do
    n=$((n + $(metrics "$i" |
      awk '/^bkv_rate_limited_total\{method="RecoverStart"\}/ { print $2 }')))
  done
  echo "$n"
}
attempts_used() {
  BKV_VAULT=$(url 1) bkv status --token-file "$work/token-$1" |
    sed -n 's/^attempts used: \([0-9]*\) of.*/\1/p'
}

# three wrong passwords (spread over the replicas) use the burst
for i in 1 2 3; do
  rc=0
  BKV_VAULT=$(url "$i") bkv recover --token-file "$work/token-alice" \
    --password-file "$work/wrong" >/dev/null 2>&1 || rc=$?
  check "wrong password $i is answered (exit 3)" "[ $rc -eq 3 ]"
done
check "three attempts used" "[ \"$(attempts_used alice)\" = 3 ]"

ops_before=$(token_ops)
check "the metrics count the token operations done so far" "[ $ops_before -gt 0 ]"
# the fourth RecoverStart, on the other replica where there is one: raw Connect over curl
rs_url=$(url 2)/bkv.v1.BackupKeyVault/RecoverStart
curl -sS --cacert "$work/vault/tls/cert.pem" -D "$work/headers" -o "$work/body" \
  -H "Authorization: Bearer $(cat "$work/token-alice")" \
  -H "Content-Type: application/proto" -H "Connect-Protocol-Version: 1" \
  --data-binary "" "$rs_url"
check "the fourth RecoverStart is HTTP 429" "head -1 '$work/headers' | grep -q ' 429'"
# the body is compact JSON: {"code":...,"message":...,"details":[{"type":...,"value":...}]}
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$work/body"; }
check "its code is resource_exhausted" "[ \"\$(field code)\" = resource_exhausted ]"
check "it carries a bkv.v1.RetryInfo detail" "[ \"\$(field type)\" = bkv.v1.RetryInfo ]"
# RetryInfo is one varint field (tag 0x08); the value is base64 without padding
value=$(field value)
while [ $((${#value} % 4)) -ne 0 ]; do value="$value="; done
retry_ms=$(printf '%s' "$value" | base64 -d | od -An -tu1 -v |
  awk '{ for (i = 1; i <= NF; i++) b[n++] = $i }
       END { if (b[0] != 8) { print -1; exit } v = 0; m = 1
             for (i = 1; i < n; i++) { v += (b[i] % 128) * m; m *= 128; if (b[i] < 128) break }
             print v }')
retry_s=$(sed -n 's/^Retry-After: \([0-9]*\).*/\1/pI' "$work/headers")
# 1/h: the next token is at most an hour away, and more than 59 minutes
check "retry_after_ms is within the refill period ($retry_ms)" \
  "[ $retry_ms -gt 3540000 ] && [ $retry_ms -le 3600000 ]"
check "Retry-After is retry_after_ms in seconds, rounded up ($retry_s)" \
  "[ \"$retry_s\" = $(((retry_ms + 999) / 1000)) ]"
check "no token operation served the refused request" "[ $(token_ops) -eq $ops_before ]"
# bkv recover asks GetStatus (not limited here) and then RecoverStart, which is refused
rc=0
BKV_VAULT=$(url 1) bkv recover --token-file "$work/token-alice" --password-file "$work/pw" \
  --out "$work/got" >/dev/null 2>"$work/err" || rc=$?
check "even the right password waits: bkv recover fails" "[ $rc -ne 0 ] && [ $rc -ne 3 ]"
check "the refused requests used no attempt" "[ \"$(attempts_used alice)\" = 3 ]"
check "bkv_rate_limited_total counts both refusals" "[ $(rate_limited) -eq 2 ]"

rc=0
BKV_VAULT=$(url 2) bkv recover --token-file "$work/token-bob" --password-file "$work/pw" \
  --out "$work/got" >/dev/null 2>&1 || rc=$?
check "another account is unaffected: bob recovers" "[ $rc -eq 0 ] && cmp -s '$work/got' '$work/key'"

# per address: the second Delete from 127.0.0.1 is refused before its token is even read
connect() { # connect METHOD TOKEN-or-empty: status line to $work/headers, body to $work/body
  local auth=()
  [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
  curl -sS --cacert "$work/vault/tls/cert.pem" -D "$work/headers" -o "$work/body" \
    "${auth[@]}" -H "Content-Type: application/proto" --data-binary "" \
    "$(url 1)/bkv.v1.BackupKeyVault/$1"
}
"$bin/bkvd" dev-token --config "$config" carol >"$work/token-carol"
connect Delete "$(cat "$work/token-carol")"
check "the first Delete from the address is served" "! head -1 '$work/headers' | grep -q ' 429'"
connect Delete ""
check "the second, without a token, is 429 (the address check comes before auth)" \
  "head -1 '$work/headers' | grep -q ' 429'"
check "it names the address" "grep -q 'from this address' '$work/body'"
connect GetStatus ""
check "another method from the address is not limited (401 without a token)" \
  "head -1 '$work/headers' | grep -q ' 401'"

for r in $(seq "$replicas"); do
  if grep -q "Sanitizer" "$work/bkvd$r.log"; then bad "bkvd $r log has a sanitizer report"; fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
