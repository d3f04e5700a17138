#!/usr/bin/env bash
# test_bkvd_ops.sh - what an operator relies on when running bkvd, on a development vault
# (scripts/dev-vault) served on 127.0.0.1:
#   - a second `bkvd serve` on a port the first one serves exits 2 with the reason, and the
#     first still answers; so does one on the same SQLite database, or on a metrics port
#     in use; a new master on the port of a SIGKILLed one starts once its workers drained;
#   - the database, its -wal and -shm, the logs and the lock file are created 0600 under
#     umask 022 and under umask 000 (and any directory bkvd creates 0700); a database
#     others can read is served with a one-line warning; a log that cannot be opened is
#     refused (exit 2);
#   - the master logs each signal and each child's exit on one line: a worker or the
#     committer ([vault] committer = on) killed by SIGKILL (its pid, signal 9, restarted),
#     SIGTERM (the sender's pid, each child's exit
#     status, then "stopped"); with a worker that does not stop (SIGSTOPped): SIGINT,
#     SIGTERM and SIGHUP while stopping, and the SIGKILL after the stop timeout (10 s);
#   - SIGHUP: after `mv requests.log requests.log.1`, new requests go to a new
#     requests.log and the old file holds every earlier line, complete; a log that cannot
#     be reopened leaves the worker running and writing to the old file;
#   - each request log line has an RFC 3339 UTC time with milliseconds, a request id equal
#     to the X-Request-Id response header, the peer address and port (as curl saw its own
#     end), the HTTP status and Connect code the client got, the method, a latency, the
#     keyed account hash (BLAKE2b-128 keyed with log.key, computed here with python3) and,
#     for unauthenticated, the reason the client was told, never the token;
#   - /metrics answers 404 on the public port and 200 on --metrics-listen only;
#   - a failed fork() (a pids cgroup that allows no more processes) leaves the master able
#     to stop on SIGTERM, and a fork failing at start-up is exit 2;
#   - hsm-config/make-dev-token puts no PIN on any command line (every execve traced with
#     strace), and the token it makes opens with the PIN in user.pin.
#
#   tests/test_bkvd_ops.sh BUILD_BIN_DIR
#
# Needs curl, jq, python3, strace and pkcs11-tool (scripts/deps). The fork() checks need a
# writable pids cgroup (v1 /sys/fs/cgroup/pids, or v2 with the pids controller); without
# one they are reported as skipped.
set -euo pipefail

bin=$(cd "${1:?usage: test_bkvd_ops.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for tool in curl jq python3 strace pkcs11-tool; do
  command -v "$tool" >/dev/null || { echo "test_bkvd_ops: $tool not found (scripts/deps)" >&2; exit 1; }
done

# shellcheck source=tests/testlib.sh
. "$root/tests/testlib.sh"
cgroup=""
other_pids=()
ops_cleanup() {
  local p
  for p in "${other_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
    for p in $(cat "$cgroup/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do rmdir "$cgroup" 2>/dev/null && break; sleep 0.1; done
  fi
  cleanup
}
trap ops_cleanup EXIT

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
# a committer process whatever the disk's fsync costs, so the children are known
sed -i 's|^\[vault\]|[vault]\ncommitter = on|' "$config"
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
vault=$work/vault
ca=$vault/tls/cert.pem

# serve_ops NAME CONFIG [ARGS...]: `bkvd serve` with one worker and a metrics listener, both
# on ports the kernel picks; sets pid, port and mport (stderr in $work/NAME.err)
serve_ops() {
  local name=$1 conf=$2
  shift 2
  rm -f "$work/$name.port" "$work/$name.mport"
  "$bin/bkvd" serve --config "$conf" --listen 127.0.0.1:0 --workers 1 \
    --port-file "$work/$name.port" --metrics-listen 127.0.0.1:0 \
    --metrics-port-file "$work/$name.mport" "$@" 2>"$work/$name.err" &
  pid=$!
  for _ in $(seq 200); do [ -s "$work/$name.mport" ] && break; sleep 0.05; done
  [ -s "$work/$name.mport" ] || { cat "$work/$name.err"; exit 1; }
  port=$(cat "$work/$name.port")
  mport=$(cat "$work/$name.mport")
}
# rpc METHOD [AUTHORIZATION]: an empty Connect request; headers in $work/h, body in $work/b,
# "HTTP-STATUS LOCAL-PORT" on stdout
rpc() {
  local auth=()
  [ -n "${2:-}" ] && auth=(-H "Authorization: $2")
  curl -s --cacert "$ca" -D "$work/h" -o "$work/b" -w '%{http_code} %{local_port}' \
    -X POST -H 'Content-Type: application/proto' "${auth[@]}" \
    "https://127.0.0.1:$port/bkv.v1.BackupKeyVault/$1"
}
header() { tr -d '\r' < "$work/h" | sed -n "s/^$1: //Ip"; }
# refused NAME CONF EXPECTED [ARGS...]: bkvd serve exits 2 with one line naming EXPECTED
refused() {
  local rc=0
  timeout 30 "$bin/bkvd" serve --config "$2" --workers 1 "${@:4}" >/dev/null 2>"$work/refused.err" || rc=$?
  echo "exit $rc: $(cat "$work/refused.err")"
  [ "$rc" -eq 2 ] && [ "$(wc -l < "$work/refused.err")" -eq 1 ] && grep -q -- "$3" "$work/refused.err"
}
variant() { # variant NAME SED-EXPRESSION: a copy of the config with one change
  sed "$2" "$config" > "$work/$1.conf"
  echo "$work/$1.conf"
}

# ---- files created 0600 ---------------------------------------------------------------

umask 022
serve_ops first "$config"
first_pid=$pid
rpc GetConfig >/dev/null
modes_are_0600() {
  local f ok=0
  for f in bkv.db bkv.db-wal bkv.db-shm bkv.db.bkvd.lock audit.log requests.log; do
    echo "$f $(stat -c %a "$vault/$f")"
    [ "$(stat -c %a "$vault/$f")" = 600 ] || ok=1
  done
  return "$ok"
}
check "database, -wal, -shm, lock file and logs are 0600 under umask 022" modes_are_0600

# ---- one vault per port, per database, per metrics port --------------------------------

other=$(variant other "s|^storage = .*|storage = sqlite:$work/other.db|")
check "a second serve on the same port exits 2 with the reason" \
  refused second "$other" "the listen address 127.0.0.1:$port is already in use" --listen "127.0.0.1:$port"
check "... and on the same port on every address (0.0.0.0)" \
  refused second "$other" "already in use" --listen "0.0.0.0:$port"
first_still_serves() {
  local i
  for i in $(seq 20); do [ "$(rpc GetConfig | cut -d' ' -f1)" = 200 ] || return 1; done
  kill -0 "$first_pid"
}
check "the first vault still serves every request" first_still_serves
check "a second serve on the same SQLite database exits 2" \
  refused second "$config" "already served by another bkvd" --listen 127.0.0.1:0
check "a second serve on the same metrics port exits 2" \
  refused second "$other" "metrics_listen 127.0.0.1:$mport is already in use" \
  --listen 127.0.0.1:0 --metrics-listen "127.0.0.1:$mport"
check "a request log that cannot be opened is refused" \
  refused second "$(variant nolog "s|^request_log = .*|request_log = $work/no/such/dir/requests.log|;s|^storage = .*|storage = sqlite:$work/other.db|")" \
  "cannot open \[vault\] request_log" --listen 127.0.0.1:0

# ---- metrics ----------------------------------------------------------------------------

metrics_only_on_their_port() {
  local public metrics other_path
  public=$(curl -s --cacert "$ca" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/metrics")
  metrics=$(curl -s -o "$work/metrics" -w '%{http_code}' "http://127.0.0.1:$mport/metrics")
  other_path=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/healthz")
  echo "public /metrics $public, metrics port /metrics $metrics, metrics port /healthz $other_path"
  [ "$public" = 404 ] && [ "$metrics" = 200 ] && [ "$other_path" = 404 ] &&
    grep -q '^bkv_requests_total{method="GetConfig",code="ok"} [1-9]' "$work/metrics"
}
check "/metrics: 404 on the public port, 200 on metrics_listen" metrics_only_on_their_port

# ---- the request log --------------------------------------------------------------------

token=$("$bin/bkvd" dev-token --config "$config" ops-alice)
log_line_for() { # log_line_for REQUEST-ID: the request log line with that id
  jq -c --arg id "$1" 'select(.request_id == $id)' "$vault/requests.log"
}
request_log_fields() {
  local out status local_port id line hash code=ok
  out=$(rpc GetStatus "Bearer $token")
  status=${out% *}
  local_port=${out#* }
  [ "$status" = 200 ] || code=$(jq -r .code "$work/b") # else the body is a protobuf message
  id=$(header X-Request-Id)
  line=$(log_line_for "$id")
  echo "HTTP $status from local port $local_port, X-Request-Id $id"
  echo "log: $line"
  hash=$(python3 -c 'import hashlib,sys
print(hashlib.blake2b(sys.argv[1].encode(), digest_size=16, key=open(sys.argv[2],"rb").read()).hexdigest())' \
    ops-alice "$vault/log.key")
  [[ "$id" =~ ^[0-9a-f]{16}$ ]] && [ -n "$line" ] &&
    jq -e --arg peer "127.0.0.1:$local_port" --argjson status "$status" \
      --arg code "$code" --arg hash "$hash" --argjson now "$(date +%s)" '
      (.ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")) and
      ((.ts | sub("\\.[0-9]{3}Z$"; "Z") | fromdateiso8601) - $now | fabs < 5) and
      .peer == $peer and .status == $status and .code == $code and
      .method == "GetStatus" and (.latency_ms | type == "number" and . >= 0) and
      .account == $hash and (has("reason") | not)' <<<"$line"
}
check "a request log line: time, request id = X-Request-Id, peer, status, code, method, latency, account hash" \
  request_log_fields
unauthenticated_reason() {
  local out id line forged=${token%?}x
  out=$(rpc GetStatus "Bearer $forged")
  id=$(header X-Request-Id)
  line=$(log_line_for "$id")
  echo "HTTP $out; log: $line"
  [ "${out% *}" = 401 ] && [ -n "$line" ] &&
    jq -e --arg reason "$(jq -r .message "$work/b")" \
      '.code == "unauthenticated" and .status == 401 and .account == "" and .reason == $reason' \
      <<<"$line" && ! grep -qF -e "$token" -e "$forged" "$vault/requests.log"
}
check "an unauthenticated request is logged with the reason the client got, never the token" \
  unauthenticated_reason
request_ids_differ() {
  local a b
  rpc GetConfig >/dev/null; a=$(header X-Request-Id)
  rpc GetConfig >/dev/null; b=$(header X-Request-Id)
  echo "$a $b"
  [ -n "$a" ] && [ "$a" != "$b" ]
}
check "each request gets its own id" request_ids_differ

# ---- SIGHUP reopens the logs -----------------------------------------------------------

sighup_reopens() {
  local i before after
  for i in 1 2 3; do rpc GetConfig >/dev/null; done
  before=$(wc -l < "$vault/requests.log")
  mv "$vault/requests.log" "$vault/requests.log.1"
  mv "$vault/audit.log" "$vault/audit.log.1"
  kill -HUP "$first_pid"
  for _ in $(seq 100); do [ -e "$vault/requests.log" ] && [ -e "$vault/audit.log" ] && break; sleep 0.05; done
  sleep 0.1
  for i in 1 2 3 4 5; do rpc GetConfig >/dev/null; done
  after=$(wc -l < "$vault/requests.log")
  echo "old file: $before lines before, $(wc -l < "$vault/requests.log.1") now; new file: $after lines"
  grep -c 'SIGHUP' "$work/first.err"
  [ "$(wc -l < "$vault/requests.log.1")" -eq "$before" ] && [ "$after" -eq 5 ] &&
    jq -e . "$vault/requests.log.1" >/dev/null && jq -e . "$vault/requests.log" >/dev/null &&
    [ "$(stat -c %a "$vault/requests.log")" = 600 ] && [ "$(stat -c %a "$vault/audit.log")" = 600 ] &&
    [ "$(grep -c 'SIGHUP: the workers reopen their logs' "$work/first.err")" -eq 1 ] &&
    ! grep -q 'restarting' "$work/first.err" && kill -0 "$first_pid"
}
check "SIGHUP: new requests go to a new requests.log, the old one is complete" sighup_reopens
sighup_reopen_fails() {
  mv "$vault/requests.log" "$vault/requests.log.2"
  mkdir "$vault/requests.log"
  kill -HUP "$first_pid"
  for _ in $(seq 100); do grep -q 'cannot reopen' "$work/first.err" && break; sleep 0.05; done
  rpc GetConfig >/dev/null
  rmdir "$vault/requests.log"
  cat "$work/first.err"
  wc -l "$vault/requests.log.2"
  grep -q 'SIGHUP: cannot reopen a log file; still writing to the old one' "$work/first.err" &&
    [ "$(wc -l < "$vault/requests.log.2")" -eq 6 ] && ! grep -q 'restarting' "$work/first.err" &&
    [ "$(rpc GetConfig | cut -d' ' -f1)" = 200 ]
}
check "SIGHUP with a log that cannot be reopened: the worker goes on with the old file" \
  sighup_reopen_fails

# ---- the master logs every signal and every child's exit --------------------------------

children_named() { # children_named MASTER NAME: the pids of MASTER's children called NAME
  local s
  for s in /proc/[0-9]*/status; do
    grep -q "^PPid:[[:space:]]*$1\$" "$s" 2>/dev/null &&
      grep -q "^Name:[[:space:]]*$2\$" "$s" 2>/dev/null && basename "$(dirname "$s")"
  done
  return 0
}
worker_kill_is_logged() {
  local worker new=""
  worker=$(children_named "$first_pid" bkvd)
  echo "master $first_pid, worker $worker"
  [ -n "$worker" ] || return 1
  kill -KILL "$worker"
  for _ in $(seq 100); do
    new=$(children_named "$first_pid" bkvd)
    [ -n "$new" ] && [ "$new" != "$worker" ] && break
    sleep 0.05
  done
  cat "$work/first.err"
  [ "$(grep -c "worker $worker " "$work/first.err")" -eq 1 ] &&
    grep -qx "bkvd: worker $worker killed by signal 9; restarting it" "$work/first.err" &&
    [ "$(rpc GetConfig | cut -d' ' -f1)" = 200 ]
}
check "a worker killed by SIGKILL: one line naming its pid and the signal, and a new worker" \
  worker_kill_is_logged
committer_kill_is_logged() {
  local committer new=""
  committer=$(children_named "$first_pid" bkvd-committer)
  echo "master $first_pid, committer $committer"
  grep -qx "bkvd: commits run in a committer process (\[vault\] committer = on)" \
    "$work/first.err" && [ -n "$committer" ] || return 1
  kill -KILL "$committer"
  for _ in $(seq 100); do
    new=$(children_named "$first_pid" bkvd-committer)
    [ -n "$new" ] && [ "$new" != "$committer" ] && break
    sleep 0.05
  done
  echo "new committer $new"
  grep -qx "bkvd: committer $committer killed by signal 9; restarting it" "$work/first.err" &&
    [ -n "$new" ] && [ "$new" != "$committer" ]
}
check "the committer killed by SIGKILL: one line naming it, and a new committer" \
  committer_kill_is_logged
sigterm_is_logged() {
  local worker metrics committer
  worker=$(children_named "$first_pid" bkvd)
  metrics=$(children_named "$first_pid" bkvd-metrics)
  committer=$(children_named "$first_pid" bkvd-committer)
  echo "master $first_pid (SIGTERM from $$), worker $worker, metrics process $metrics," \
    "committer $committer"
  [ -n "$worker" ] && [ -n "$metrics" ] && [ -n "$committer" ] || return 1
  local before
  before=$(wc -l < "$work/first.err")
  kill -TERM "$first_pid"
  wait "$first_pid" 2>/dev/null || true
  pid=""
  tail -n +"$((before + 1))" "$work/first.err" > "$work/first.stop"
  cat "$work/first.stop"
  # exactly these lines, the three exits in any order
  [ "$(wc -l < "$work/first.stop")" -eq 5 ] &&
    [ "$(head -1 "$work/first.stop")" = "bkvd: SIGTERM from pid $$: stopping the workers" ] &&
    grep -qx "bkvd: worker $worker exited with 0" "$work/first.stop" &&
    grep -qx "bkvd: metrics process $metrics exited with 0" "$work/first.stop" &&
    grep -qx "bkvd: committer $committer exited with 0" "$work/first.stop" &&
    [ "$(tail -1 "$work/first.stop")" = "bkvd: stopped" ]
}
check "SIGTERM: one line naming the sender, one line per child's exit, then stopped" \
  sigterm_is_logged

# ---- a database others can read ---------------------------------------------------------

chmod 644 "$vault/bkv.db"
serve_ops lax "$config"
check "a database others can read is served, with a one-line warning" \
  grep -q "warning: the database $vault/bkv.db (mode 0644) is readable by group or others" "$work/lax.err"
chmod 600 "$vault/bkv.db"

# ---- a restart after the master was SIGKILLed -------------------------------------------

restart_after_sigkill() {
  local fixed=$port rc=0
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  "$bin/bkvd" serve --config "$config" --listen "127.0.0.1:$fixed" --workers 1 \
    --port-file "$work/again.port" 2>"$work/again.err" &
  pid=$!
  for _ in $(seq 100); do [ -s "$work/again.port" ] && break; sleep 0.05; done
  cat "$work/again.err"
  [ -s "$work/again.port" ] && [ "$(rpc GetConfig | cut -d' ' -f1)" = 200 ] || rc=1
  return "$rc"
}
check "a new master on the port of a SIGKILLed one starts once its workers drained" \
  restart_after_sigkill
stop

# ---- file modes under umask 000 ----------------------------------------------------------

# A new database and new logs in a directory anyone may write, bkvd started with umask 000:
# every file it creates is 0600 and every directory (it creates none today) 0700.
mkdir "$work/u0"
chmod 777 "$work/u0"
# (the workers lead their own commits from here on: one child less to tell apart)
u0=$(variant u0 "s|^committer = on|committer = off|;s|^storage = .*|storage = sqlite:$work/u0/bkv.db|;s|^audit_log = .*|audit_log = $work/u0/audit.log|;s|^request_log = .*|request_log = $work/u0/requests.log|")
umask 000
serve_ops u0 "$u0"
umask 022
modes_under_umask_000() {
  local f ok=0
  [ "$(rpc GetConfig | cut -d' ' -f1)" = 200 ] || ok=1
  echo "bkvd's umask: $(sed -n 's/^Umask:[[:space:]]*//p' "/proc/$pid/status")"
  for f in bkv.db bkv.db-wal bkv.db-shm bkv.db.bkvd.lock audit.log requests.log; do
    echo "$f $(stat -c %a "$work/u0/$f")"
    [ "$(stat -c %a "$work/u0/$f")" = 600 ] || ok=1
  done
  while IFS= read -r f; do
    echo "$f $(stat -c %a "$f")"
    [ "$(stat -c %a "$f")" = 700 ] || ok=1
  done < <(find "$work/u0" -mindepth 1 -type d)
  [ "$(find "$work/u0" -mindepth 1 ! -type d ! -perm 0600 | wc -l)" -eq 0 ] || ok=1
  return "$ok"
}
check "under umask 000: database, -wal, -shm, lock file and logs 0600, directories 0700" \
  modes_under_umask_000

# A worker that does not stop (SIGSTOPped here): SIGINT, then SIGTERM and SIGHUP while
# the master waits for it, then SIGKILL after the stop timeout (10 s), each on one line.
stop_escalation_is_logged() {
  local worker metrics before
  worker=$(children_named "$pid" bkvd)
  metrics=$(children_named "$pid" bkvd-metrics)
  echo "master $pid (signals from $$), worker $worker (stopped), metrics process $metrics"
  [ -n "$worker" ] && [ -n "$metrics" ] || return 1
  before=$(wc -l < "$work/u0.err")
  kill -STOP "$worker"
  kill -INT "$pid"
  for _ in $(seq 100); do grep -q "exited with" "$work/u0.err" && break; sleep 0.05; done
  kill -TERM "$pid"
  sleep 0.2
  kill -HUP "$pid"
  local stopped=1
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || { stopped=0; break; }; sleep 0.1; done
  wait "$pid" 2>/dev/null || true
  [ "$stopped" -eq 0 ] && pid=""
  tail -n +"$((before + 1))" "$work/u0.err" > "$work/u0.stop"
  cat "$work/u0.stop"
  printf '%s\n' "bkvd: SIGINT from pid $$: stopping the workers" \
    "bkvd: metrics process $metrics exited with 0" \
    "bkvd: SIGTERM from pid $$: already stopping" \
    "bkvd: SIGHUP while stopping: ignored" \
    "bkvd: children still running 10 s after SIGTERM: sending SIGKILL" \
    "bkvd: worker $worker killed by signal 9" \
    "bkvd: stopped" > "$work/u0.want"
  [ "$stopped" -eq 0 ] && diff "$work/u0.want" "$work/u0.stop"
}
check "a worker that does not stop: SIGINT, SIGTERM and SIGHUP while stopping, then SIGKILL, one line each" \
  stop_escalation_is_logged
[ -z "$pid" ] || stop

# ---- fork() failing ----------------------------------------------------------------------

pids_root=""
for d in /sys/fs/cgroup/pids /sys/fs/cgroup; do
  [ -w "$d" ] && [ -e "$d/cgroup.procs" ] && { pids_root=$d; break; }
done
if [ -n "$pids_root" ] && mkdir "$pids_root/bkv-ops-$$" 2>/dev/null; then
  cgroup=$pids_root/bkv-ops-$$
fi
if [ -n "$cgroup" ] && [ -e "$cgroup/pids.max" ]; then
  config=$(variant no-committer 's|^committer = on|committer = off|')
  # in_cgroup CMD...: CMD runs in the cgroup (sh moves itself there, then execs CMD, so CMD
  # keeps sh's pid). LeakSanitizer needs a task of its own at exit, which the cgroup does
  # not allow: these two runs of the sanitizer build go without leak detection.
  in_cgroup=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cgroup")
  master_stops_after_failed_fork() {
    echo max > "$cgroup/pids.max"
    rm -f "$work/fork.port"
    "${in_cgroup[@]}" "$bin/bkvd" serve --config "$config" --listen 127.0.0.1:0 --workers 1 \
      --port-file "$work/fork.port" 2>"$work/fork.err" &
    pid=$!
    for _ in $(seq 100); do [ -s "$work/fork.port" ] && break; sleep 0.05; done
    [ -s "$work/fork.port" ] || return 1
    local worker
    worker=$(grep -l "^PPid:[[:space:]]*$pid\$" /proc/[0-9]*/status | cut -d/ -f3)
    echo "master $pid, worker $worker"
    echo 1 > "$cgroup/pids.max" # the master and nothing more
    kill -KILL "$worker"
    for _ in $(seq 100); do grep -q 'cannot fork a worker' "$work/fork.err" && break; sleep 0.05; done
    kill -TERM "$pid"
    local stopped=1
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { stopped=0; break; }; sleep 0.1; done
    wait "$pid" 2>/dev/null || true
    [ "$stopped" -eq 0 ] && pid=""
    cat "$work/fork.err"
    grep -q 'cannot fork a worker: Resource temporarily unavailable; retrying every second' \
      "$work/fork.err" && [ "$stopped" -eq 0 ]
  }
  check "a failed fork() leaves the master able to stop on SIGTERM" master_stops_after_failed_fork
  echo max > "$cgroup/pids.max"
  fork_fails_at_start() {
    echo 2 > "$cgroup/pids.max" # timeout and the master, and nothing more
    local rc=0
    "${in_cgroup[@]}" timeout 30 "$bin/bkvd" serve --config "$config" --listen 127.0.0.1:0 \
      --workers 1 2>"$work/fork0.err" || rc=$?
    echo max > "$cgroup/pids.max"
    echo "exit $rc"
    cat "$work/fork0.err"
    [ "$rc" -eq 2 ] && grep -q 'cannot fork a worker' "$work/fork0.err"
  }
  check "a fork failing at start-up: exit 2" fork_fails_at_start
else
  echo "skip the fork() failure checks: no writable pids cgroup (/sys/fs/cgroup/pids)"
fi

# ---- make-dev-token keeps PINs off command lines ---------------------------------------

dev_token_pins_stay_off_cmdlines() {
  local dir=$work/pins user so
  mkdir -p "$dir"
  user=user-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  so=so-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s' "$user" > "$dir/user.pin" && printf '%s' "$so" > "$dir/so.pin")
  strace -f -qq -s 4096 -e trace=execve -o "$work/execve.trace" \
    "$root/hsm-config/make-dev-token" "$dir" bkv-pins >/dev/null
  echo "$(grep -c 'execve(' "$work/execve.trace") execve calls traced"
  grep 'execve(' "$work/execve.trace" | grep -F -e "$user" -e "$so" && return 1
  grep -q 'execve("[^"]*pkcs11-tool", .*"--init-token"' "$work/execve.trace" &&
    SOFTHSM2_CONF=$dir/softhsm2.conf BKV_PIN=$user pkcs11-tool \
      --module /usr/lib/softhsm/libsofthsm2.so --token-label bkv-pins --login \
      --pin env:BKV_PIN --list-objects >/dev/null
}
check "make-dev-token: no PIN in any execve argument; the token opens with user.pin" \
  dev_token_pins_stay_off_cmdlines

# In the sanitizer build: nothing bkvd wrote to stderr in this test is a sanitizer report.
check "no sanitizer report from any bkvd run here" \
  bash -c '! grep -l "Sanitizer" "$1"/*.err' sh "$work"

summary
