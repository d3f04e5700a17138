#!/usr/bin/env bash
# test_http_edge.sh - bkvd's HTTP edge under attack, over raw sockets (tests/http_edge.py)
# against real bkvd processes on 127.0.0.1 (plain HTTP: the attacks are on HTTP, and TLS
# only adds the handshake, which the read deadline also covers):
#   - [limits] refuses bad values with the key, its range and exit 2;
#   - a head over max_header_bytes is answered 400 and closed, and four floods of 128 MiB
#     leave the worker's memory (VmRSS) small; over max_headers fields is 431;
#   - a trickling sender (a byte every 0.5 s), a silent one and a trickled TLS handshake
#     are closed at read_timeout, while whole requests paced over a longer time on one
#     connection are all answered;
#   - duplicate or conflicting Content-Length, codings but chunked, CL with TE, a GET body,
#     a space before the colon: 400 and the connection closed (nothing after it answered);
#   - unknown RPC methods: 404 with Connect code "unimplemented";
#   - over max_connections a new connection is closed at once, and served once others close;
#   - at the descriptor limit (ulimit -n) the worker neither spins (CPU time over 2 s) nor
#     floods its log, and serves again when the connections close;
#   - SIGTERM with no connection open stops bkvd at once (time printed; bound 1.5 s, the
#     old drain always took 2 s); a request in flight is still answered, an idle
#     keep-alive connection does not hold the shutdown, one that never completes holds it
#     for the drain limit (2 s) only;
#   - bkvd's log has no sanitizer report and no worker crash.
#
#   tests/test_http_edge.sh BUILD_BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test_http_edge.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"
probe() { timeout 60 python3 "$root/tests/http_edge.py" "$port" "$@"; }

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
# (a database of its own: one bkvd serves one SQLite database)
{ sed "s|^storage = .*|storage = sqlite:$work/tls.db|" "$config"
  printf '\n[limits]\nread_timeout = 2\n'; } >"$work/tls.conf"
# Plain HTTP on loopback; short timeouts so the slow-sender checks are quick.
sed -i 's/^tls_cert = .*//; s/^tls_key = .*//' "$config"
variant() { # variant NAME LIMITS-LINES: the config with a [limits] section
  { cat "$config"; printf '\n[limits]\n%s\n' "$2"; } >"$work/$1.conf"
  echo "$work/$1.conf"
}
# idle_timeout well above read_timeout: a silent connection closed at 2 s is the deadline's.
edge=$(variant edge "$(printf 'idle_timeout = 6\nread_timeout = 2\nmax_header_bytes = 8192\nmax_headers = 32')")

worker() { # the master's child called bkvd (not bkvd-committer)
  local c
  for c in $(cat "/proc/$pid/task/$pid/children"); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = bkvd ] && echo "$c"
  done
  return 0
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# ---- configuration ----
refused_config() { # refused_config VALUE-LINE EXPECTED-TEXT
  local rc=0
  timeout 30 "$bin/bkvd" serve --config "$(variant bad "$1")" --listen 127.0.0.1:0 \
    >/dev/null 2>"$work/err" || rc=$?
  cat "$work/err"
  [ "$rc" -eq 2 ] && grep -q -- "$2" "$work/err"
}
check "[limits] read_timeout = 0 is refused with its range" \
  refused_config "read_timeout = 0" "invalid value for \[limits\] read_timeout: want 1 to 600 (seconds)"
check "[limits] max_header_bytes = 100 is refused with its range" \
  refused_config "max_header_bytes = 100" "\[limits\] max_header_bytes: want 1024 to 1048576"
check "[limits] max_connections = -1 is refused" \
  refused_config "max_connections = -1" "\[limits\] max_connections: want 1 to"
check "an unknown [limits] key is refused" refused_config "max_conections = 5" "unknown key \[limits\] max_conections"

# counted OUTPUT-FILE: adds http_edge.py's "ok"/"FAIL" lines in OUTPUT-FILE to the counts
counted() {
  grep -v ' passed, .* failed$' "$1" || true
  passed=$((passed + $(grep -c '^ok ' "$1" || true)))
  failed=$((failed + $(grep -c '^FAIL ' "$1" || true)))
  grep -q ' passed, .* failed$' "$1" || { echo "FAIL http_edge.py did not finish"; failed=$((failed + 1)); }
}

# A TLS instance beside the plain one, for the handshake check. (testlib's start sets pid
# and port; the BKV_VAULT it exports is unused here.)
start "$bin/bkvd" "$work/tls.conf"
tls_pid=$pid
tls_port=$port
cleanup() {
  [ -n "$tls_pid" ] && kill "$tls_pid" 2>/dev/null && wait "$tls_pid" 2>/dev/null
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
start "$bin/bkvd" "$edge"

# ---- header size and count ----
w=$(worker)
rss_before=$(rss_kib "$w")
check "four header floods of 128 MiB at once: 400 and closed, each within 16 MiB" \
  probe header_floods 4 128
rss_after=$(rss_kib "$w")
echo "worker VmRSS: $rss_before KiB before the floods, $rss_after KiB after"
check "the worker's memory stays bounded (VmRSS under 100 MiB; 396 MB before [limits])" \
  test "$rss_after" -lt $((100 * 1024))

# ---- slow senders (in the background: they wait for timeouts) ----
probe each \
  "a byte every 0.5 s: closed at read_timeout (2 s)=trickle 2" \
  "whole requests a second apart for 3 s on one connection: all answered=keepalive_paced 3" \
  >"$work/slow.out" 2>&1 &
slow=$!
probe each "a connection that sends nothing: closed at read_timeout (2 s)=silent 2" \
  >"$work/silent.out" 2>&1 &
silent=$!
# the deadline runs from the accept, so it covers a TLS handshake too
(port=$tls_port && probe each \
  "TLS: a handshake trickled a byte every 0.5 s is closed at read_timeout (2 s)=tls_handshake_trickle 2" \
  >"$work/tls.out" 2>&1) &
tls_probe=$!

# ---- framing, header count, methods ----
probe each \
  "controls: POST, chunked POST and GET are served=served" \
  "33 header fields (max_headers 32): 431 and closed=too_many_headers 33" \
  "32 header fields: served=headers_at_limit 32" \
  "duplicate Content-Length: 400, closed=duplicate_content_length" \
  "conflicting Content-Length (0 and a smuggled request's length): 400, closed=conflicting_content_length" \
  "Content-Length with Transfer-Encoding: 400, closed=length_and_chunked" \
  "Transfer-Encoding other than chunked: 400, closed=other_transfer_coding" \
  "two Transfer-Encoding fields: 400, closed=duplicate_transfer_encoding" \
  "Content-Length +0: 400, closed=bad_content_length" \
  "a space before the colon: 400, closed=space_before_colon" \
  "a GET with a body (a smuggled request): 400, closed=get_with_body" \
  "unknown RPC methods: 404, Connect code unimplemented=unknown_method" \
  >"$work/framing.out" 2>&1 || true
counted "$work/framing.out"
wait "$slow" "$silent" "$tls_probe" || true
counted "$work/slow.out"
counted "$work/silent.out"
counted "$work/tls.out"
kill "$tls_pid"
wait "$tls_pid" || true
tls_pid=""

# ---- shutdown ----
sigterm_idle() {
  local start end
  start=$(date +%s%N)
  kill -TERM "$pid"
  wait "$pid" || true
  end=$(date +%s%N)
  pid=""
  echo "bkvd stopped $(((end - start) / 1000000)) ms after SIGTERM with no connection open" |
    tee "$work/stop-time"
  [ $((end - start)) -lt 1500000000 ]
}
check "SIGTERM with no connection open: bkvd exits at once (under 1.5 s)" sigterm_idle
cat "$work/stop-time"

start "$bin/bkvd" "$edge"
in_flight() {
  echo "$pid" >"$work/pid"
  probe in_flight "$work/pid" || return 1
  wait "$pid" || true
  pid=""
}
check "SIGTERM with a request in flight: it is answered, an idle connection closed" in_flight

# ---- connections ----
start "$bin/bkvd" "$(variant full "$(printf 'max_connections = 3\nread_timeout = 10')")"
cat "$work/bkvd.log" >>"$work/earlier.log"
: >"$work/bkvd.log"
check "over max_connections (3): closed at once; served again after" probe refused_when_full 3
check "the worker logs that it closes connections over max_connections" \
  grep -q "max_connections reached; closing new connections" "$work/bkvd.log"
# On the instance with read_timeout 10: the drain limit ends it, not the deadline.
drain_limit() {
  local start end
  probe half_request 8 >"$work/half.out" &
  local holder=$!
  for _ in $(seq 200); do grep -q sent "$work/half.out" && break; sleep 0.05; done
  grep -q sent "$work/half.out" || return 1
  sleep 0.2
  start=$(date +%s%N)
  kill -TERM "$pid"
  wait "$pid" || true
  end=$(date +%s%N)
  pid=""
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  echo "bkvd stopped $(((end - start) / 1000000)) ms after SIGTERM with a request that never completes" |
    tee "$work/stop-time"
  [ $((end - start)) -ge 1500000000 ] && [ $((end - start)) -lt 4000000000 ]
}
check "SIGTERM with a request that never completes: bkvd exits at the drain limit (2 s)" drain_limit
cat "$work/stop-time"


# At the descriptor limit: the worker accepts what it can, then pauses accepting.
cat "$work/bkvd.log" >>"$work/earlier.log"
: >"$work/bkvd.log"
rm -f "$work/pid"
fds=$(variant fds "$(printf 'read_timeout = 30\nidle_timeout = 30')")
(ulimit -n 96 && start "$bin/bkvd" "$fds" && echo "$pid" >"$work/pid" && wait "$pid") &
fd_shell=$!
for _ in $(seq 200); do [ -s "$work/pid" ] && break; sleep 0.05; done
pid=$(cat "$work/pid")
port=$(cat "$work/port")
w=$(worker)
probe hold 200 3.2 >"$work/hold.out" 2>&1 &
holder=$!
sleep 1
ticks_before=$(cpu_ticks "$w")
sleep 2
ticks_after=$(cpu_ticks "$w")
ticks=$((ticks_after - ticks_before))
echo "worker CPU time over 2 s at the descriptor limit: $ticks ticks ($(getconf CLK_TCK)/s)"
check "the worker has hit the descriptor limit (its log says so)" \
  grep -q "accept: Too many open files; pausing new connections" "$work/bkvd.log"
check "it does not spin: under 0.2 s of CPU in 2 s" test "$ticks" -lt $(($(getconf CLK_TCK) / 5))
# ours, or libevent's "Error from accept() call" when nothing handles the error
lines=$(grep -c "accept" "$work/bkvd.log" || true)
echo "accept error lines in the log: $lines"
sed 's/^/    /' "$work/bkvd.log"
check "its log has at most 3 lines about it" test "$lines" -le 3
wait "$holder" || true
check "after the connections close it serves again" probe healthz
kill "$pid" 2>/dev/null || true
wait "$fd_shell" || true
pid=""

# A -DBKV_SANITIZE=ON build reports into bkvd's log (a worker it aborts is restarted).
no_sanitizer_report() {
  # (the master logs every worker's exit: "exited with 0" at a stop is not a crash)
  ! grep -E -A20 "ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|worker [0-9]+ (killed|exited with [1-9])" \
    "$work/earlier.log" "$work/bkvd.log"
}
check "no sanitizer report and no worker crash in bkvd's log" no_sanitizer_report

summary
