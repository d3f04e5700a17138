#!/usr/bin/env bash
# test_cli.sh - the bkv CLI's record lifecycle against a development vault (bkvd on
# 127.0.0.1, SQLite, SoftHSM2): `bkv register` refuses to replace a key without --replace
# (exit 6, saying what is there and what would be lost) and replaces exactly it with
# --replace; change-password; a destroyed key is "destroyed" in status and recover (exit 4)
# and can be replaced or deleted; nothing registered is "registered: no" / exit 1; an empty
# token file is named; a CA file or pin the vault does not match is exit 7 (TLS), a
# rejected token exit 10, a path where no vault answers exit 8 (HTTP).
#
#   [tests/with-vault] tests/test_cli.sh BUILD_BIN_DIR
#
# Under tests/with-vault it works in $BKV_TEST_DIR (with-vault removes it and any bkvd left
# from it); alone, in a directory of its own that it removes. Fails if bkvd's log holds a
# sanitizer report (a -DBKV_SANITIZE=ON build).
set -euo pipefail

bin=$(cd "${1:?usage: test_cli.sh BUILD_BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${BKV_TEST_DIR:-}" ]; then
  work=$BKV_TEST_DIR/cli
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/bkv-cli-test.XXXXXXXX")
fi
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() {
  echo "FAIL $1"
  for f in "$work/out" "$work/err"; do [ -s "$f" ] && sed 's/^/    /' "$f"; done
  failed=$((failed + 1))
}
# expect NAME CODE CMD...: CMD exits with CODE; its stdout and stderr go to out and err.
expect() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >"$work/out" 2>"$work/err" || rc=$?
  if [ "$rc" -eq "$want" ]; then ok "$name (exit $rc)"; else bad "$name: exit $rc, want $want"; fi
}
# says NAME FILE TEXT: FILE (out or err of the last expect) contains TEXT.
says() {
  if grep -qF -- "$3" "$work/$2"; then ok "$1"; else bad "$1: $2 lacks \"$3\""; fi
}

# on_tty NAME CODE [EXPECT=>SEND]... -- CMD...: runs CMD with a pseudo-terminal as its
# controlling terminal and standard input/output/error; each time its output shows EXPECT
# (in order) it types SEND and Enter (^D is end of input, ^C an interrupt). CMD exits with
# CODE within 20 s (128+N for signal N); what it showed goes to out, then "(echo on)" or
# "(echo off)": the terminal's echo setting it left behind (err is emptied).
on_tty() {
  local name=$1 want=$2 rc=0
  shift 2
  /usr/bin/python3 - "$@" >"$work/out" 2>"$work/err" <<'PY' || rc=$?
import os, pty, select, sys, termios, time
args = sys.argv[1:]
cut = args.index("--")
steps, cmd = [a.split("=>", 1) for a in args[:cut]], args[cut + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(cmd[0], cmd)
seen, deadline, shown = b"", time.monotonic() + 20, 0
def pump():
    global seen
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            return False
        seen += data
    return True
alive = True
for expect, send in steps:
    while expect.encode() not in seen[shown:] and alive and time.monotonic() < deadline:
        alive = pump()
    if expect.encode() not in seen[shown:]:
        break
    shown = seen.index(expect.encode(), shown) + len(expect)
    time.sleep(0.05)
    os.write(fd, {"^D": b"\x04", "^C": b"\x03"}.get(send, send.encode() + b"\n"))
while alive and time.monotonic() < deadline:
    alive = pump()
sys.stdout.write(seen.decode(errors="replace"))
if alive:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("\n(timed out)")
    sys.exit(124)
_, status = os.waitpid(pid, 0)
print("\n(echo %s)" % ("on" if termios.tcgetattr(fd)[3] & termios.ECHO else "off"))
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
PY
  if [ "$rc" -eq "$want" ]; then ok "$name (exit $rc)"; else bad "$name: exit $rc, want $want"; fi
}

config=$(BKVD=$bin/bkvd "$root/scripts/dev-vault" "$work/vault")
export SOFTHSM2_CONF=$work/vault/hsm/softhsm2.conf
"$bin/bkvd" serve --config "$config" --listen 127.0.0.1:0 --workers 1 \
  --port-file "$work/port" 2>>"$work/bkvd.log" &
pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || { cat "$work/bkvd.log"; exit 1; }
export BKV_VAULT=https://127.0.0.1:$(cat "$work/port")

bkv() { "$bin/bkv" "$@" --ca-file "$work/vault/tls/cert.pem"; }
printf 'first password' >"$work/pw1"
printf 'second password' >"$work/pw2"
printf 'not the password' >"$work/wrong"
for a in alice bob carol dave erin; do "$bin/bkvd" dev-token --config "$config" "$a" >"$work/token-$a"; done
for k in 1 2 3; do "$bin/bkv" keygen --out "$work/key$k"; done
# recovers ACCOUNT PASSWORD KEY: the recovered key is KEY
recovers() {
  rm -f "$work/got"
  bkv recover --token-file "$work/token-$1" --password-file "$work/$2" --out "$work/got" \
    >/dev/null 2>&1 && cmp -s "$work/got" "$work/$3"
}
check_recovers() { if recovers "$2" "$3" "$4"; then ok "$1"; else bad "$1"; fi; }

# --help documents the exit codes.
expect "bkv --help" 0 "$bin/bkv" --help
says "--help lists exit code 6" out "6 a key is already registered"
expect "bkv register --help" 0 "$bin/bkv" register --help
says "register --help explains --replace" out "--replace"
expect "bkv status --help" 0 "$bin/bkv" status --help
says "status --help lists the exit codes" out "4 no attempts left / key destroyed"

says "--help lists exit code 7 (TLS)" out "7 TLS failed"
says "--help lists exit code 8 (HTTP)" out "8 an HTTP error that is not the vault's answer"
says "--help lists exit code 9 (rate limited)" out "9 rate limited"
says "--help lists exit code 10 (token rejected)" out "10 the vault rejected the account token"

# --version is the project's version; every --help fits in 80 columns.
want=$(sed -n 's/^project(bkv VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
expect "bkv --version" 0 "$bin/bkv" --version
if [ -n "$want" ] && [ "$(head -1 "$work/out")" = "bkv $want" ]; then ok "bkv --version says bkv $want"; else bad "bkv --version is not bkv $want"; fi
for c in "" keygen register recover change-password status delete encrypt decrypt; do
  "$bin/bkv" $c --help >"$work/out" 2>&1 || true
  wide=$(awk 'length > 79' "$work/out")
  if [ -s "$work/out" ] && [ -z "$wide" ]; then ok "bkv $c --help fits in 80 columns"; else bad "bkv $c --help: lines over 79 columns: $wide"; fi
done
expect "bkvd init --help" 0 "$bin/bkvd" init --help
says "bkvd init --help lists --dev" out "--dev "
says "bkvd init --help lists --adopt" out "--adopt "

# Before any call: an empty token file is named; TLS failures are exit 7, not 5.
: >"$work/empty-token"
expect "an empty token file" 2 bkv status --token-file "$work/empty-token"
says "the empty token file is named" err "the token file $work/empty-token is empty"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=other -keyout "$work/other-key.pem" -out "$work/other-cert.pem" 2>/dev/null
expect "a CA file that does not sign the vault's certificate" 7 "$bin/bkv" status \
  --token-file "$work/token-carol" --ca-file "$work/other-cert.pem"
says "the TLS failure says TLS" err "TLS with"
expect "a CA file that does not exist" 7 "$bin/bkv" status --token-file "$work/token-carol" \
  --ca-file "$work/missing.pem"
expect "a pinned certificate the vault does not present" 7 bkv status \
  --token-file "$work/token-carol" --pin-cert "$work/other-cert.pem"
# --pin-cert alone: the pin is the trust (the dev vault's certificate is self-signed): its
# own certificate works, another one is refused (exit 7) though no chain is verified.
expect "--pin-cert alone with the vault's certificate" 0 "$bin/bkv" status \
  --token-file "$work/token-carol" --pin-cert "$work/vault/tls/cert.pem"
says "--pin-cert alone: the status is read" out "registered: no"
expect "--pin-cert alone with another certificate" 7 "$bin/bkv" status \
  --token-file "$work/token-carol" --pin-cert "$work/other-cert.pem"
says "--pin-cert alone with another certificate: TLS" err "TLS with"
expect "no --ca-file and no pin: the self-signed vault is not trusted" 7 "$bin/bkv" status \
  --token-file "$work/token-carol"
expect "a token the vault rejects" 10 bkv status --token-file "$work/pw1"
expect "a path where no vault answers" 8 "$bin/bkv" status --token-file "$work/token-carol" \
  --ca-file "$work/vault/tls/cert.pem" --vault "$BKV_VAULT/not/the/vault"
says "the wrong path's status is named" err "answered HTTP 404"

for bad_argon2 in 1,-5,1 1,2 0,1024,1 1,1024,1x; do
  expect "--argon2 $bad_argon2 is refused" 2 bkv recover --token-file "$work/token-carol" \
    --password-file "$work/pw1" --argon2 "$bad_argon2"
  says "--argon2 $bad_argon2: the refusal says the form" err "--argon2 is ITERATIONS,MEMORY_KIB,PARALLELISM"
done

# On a terminal: the key and the passwords are asked (the key with its format), only after
# every other check passed; the two passwords must agree (three tries).
key1=$(cat "$work/key1")
B=$bin/bkv
C=(--ca-file "$work/vault/tls/cert.pem")
on_tty "register on a terminal: key and password asked" 0 \
  "64 hex digits=>${key1^^}" "New vault password:=>tty password" \
  "Repeat the password:=>tty password" -- "$B" register --token-file "$work/token-dave" "${C[@]}"
says "the key prompt shows the format" out "Backup key (64 hex digits; spaces, dashes and upper case are fine)"
if grep -qF "${key1^^}" "$work/out"; then bad "the key was echoed"; else ok "the key is not echoed"; fi
if grep -qF "tty password" "$work/out"; then bad "the password was echoed"; else ok "the password is not echoed"; fi
printf 'tty password' >"$work/pw-tty"
check_recovers "the key typed on the terminal recovers with the password typed there" dave pw-tty key1
on_tty "recover on a terminal: the password is asked" 0 "Vault password:=>tty password" -- \
  "$B" recover --token-file "$work/token-dave" "${C[@]}"
says "the recovered key is shown" out "$key1"
on_tty "register: differing passwords, then the same" 0 "64 hex digits=>$key1" \
  "New vault password:=>one" "Repeat the password:=>two" \
  "New vault password:=>three" "Repeat the password:=>three" -- \
  "$B" register --token-file "$work/token-erin" "${C[@]}"
says "the passwords differ is said" out "the passwords differ; try again"
printf 'three' >"$work/pw-three"
check_recovers "the password given twice the same is the one kept" erin pw-three key1
on_tty "register: the passwords differ three times" 2 "64 hex digits=>$key1" \
  "New vault password:=>a" "Repeat the password:=>b" "New vault password:=>a" \
  "Repeat the password:=>b" "New vault password:=>a" "Repeat the password:=>b" -- \
  "$B" register --token-file "$work/token-carol" "${C[@]}"
says "the last difference ends it" out "bkv: the passwords differ"
on_tty "register: a wrong key, then a good one" 6 "64 hex digits=>0123xyz" \
  "64 hex digits=>$key1" "New vault password:=>p" "Repeat the password:=>p" -- \
  "$B" register --token-file "$work/token-erin" "${C[@]}"
says "the wrong key's fault is named" out "invalid character 'x' at position 5; try again"
on_tty "register: end of input at the key prompt" 2 "64 hex digits=>^D" -- \
  "$B" register --token-file "$work/token-carol" "${C[@]}"
says "end of input: no key given" out "no backup key given"
on_tty "register with an empty token file: nothing asked" 2 -- \
  "$B" register --token-file "$work/empty-token" "${C[@]}"
if grep -qiE "password|backup key \(" "$work/out"; then bad "asked before the token check"; else ok "the empty token file is refused before any prompt"; fi
on_tty "register with a bad vault URL: nothing asked" 2 -- \
  "$B" register --token-file "$work/token-carol" --vault ftp://x "${C[@]}"
if grep -qiE "password|backup key \(" "$work/out"; then bad "asked before the URL check"; else ok "the bad URL is refused before any prompt"; fi
printf 'not a key' >"$work/bad-key"
on_tty "register with a bad key file: no password asked" 2 -- \
  "$B" register --token-file "$work/token-carol" --key-file "$work/bad-key" "${C[@]}"
if grep -qi "password:" "$work/out"; then bad "the password was asked before the key check"; else ok "the bad key file is refused before the password is asked"; fi
on_tty "change-password with a missing token file: nothing asked" 2 -- \
  "$B" change-password --token-file "$work/missing" "${C[@]}"
if grep -qi "password:" "$work/out"; then bad "asked before the token check"; else ok "the missing token file is refused before any prompt"; fi
on_tty "Ctrl-C at the password prompt" 130 "Vault password:=>^C" -- \
  "$B" recover --token-file "$work/token-dave" "${C[@]}"
says "Ctrl-C at the password prompt leaves the echo on" out "(echo on)"
# - is standard input for one file option, standard output for --out.
expect "recover --password-file - (the password on standard input)" 0 sh -c \
  "printf 'tty password' | '$B' recover --token-file '$work/token-dave' --password-file - --ca-file '$work/vault/tls/cert.pem'"
says "the password from standard input recovers the key" out "$key1"
expect "--token-file - and --key-file - together" 2 "$B" register --token-file - --key-file - \
  --password-file "$work/pw1" "${C[@]}"
says "two options on standard input are refused" err "only one of --token-file"
expect "keygen --out - (standard output)" 0 sh -c "cd '$work' && '$B' keygen --out -"
if grep -qE '^([0-9a-f]{4} ){15}[0-9a-f]{4}$' "$work/out" && [ ! -e "$work/-" ]; then ok "keygen --out - prints the key and makes no file named -"; else bad "keygen --out -"; fi
expect "encrypt - with --key-file -" 2 "$B" encrypt --key-file - - "$work/enc6" </dev/null
says "INPUT and --key-file both - are refused" err "cannot both be -"
# Without a terminal nothing waits: no --password-file is a clear error.
expect "recover without a terminal or --password-file" 2 timeout 20 setsid -w \
  "$B" recover --token-file "$work/token-dave" "${C[@]}" </dev/null
says "no terminal: says --password-file" err "no terminal to ask for the password on; use --password-file"
expect "register: the key from standard input without a terminal" 2 timeout 20 setsid -w \
  "$B" register --token-file "$work/token-carol" "${C[@]}" <"$work/key1"
says "the key from stdin, the password needs a file" err "use --password-file"

# encrypt/decrypt: - is standard input / output; standard output on a terminal is refused.
head -c 200000 /dev/urandom >"$work/plain"
expect "encrypt - - (a pipe in, a pipe out)" 0 sh -c \
  "cat '$work/plain' | '$B' encrypt --key-file '$work/key1' - - | cat >'$work/enc'"
expect "decrypt - OUTPUT from a pipe" 0 sh -c \
  "cat '$work/enc' | '$B' decrypt --key-file '$work/key1' - '$work/dec1'"
if cmp -s "$work/plain" "$work/dec1"; then ok "the piped round trip gives the plaintext back"; else bad "piped round trip differs"; fi
expect "decrypt FILE - to a pipe" 0 sh -c "'$B' decrypt --key-file '$work/key1' '$work/enc' - >'$work/dec2'"
if cmp -s "$work/plain" "$work/dec2"; then ok "decrypt to standard output gives the plaintext"; else bad "decrypt to stdout differs"; fi
if [ ! -e "$work/-" ]; then ok "no file named - was made"; else bad "a file named - was made"; fi
head -c 1000 "$work/enc" >"$work/enc-cut"
expect "decrypt of a truncated file to standard output fails" 1 sh -c \
  "'$B' decrypt --key-file '$work/key1' '$work/enc-cut' - >'$work/dec3'"
on_tty "encrypt to standard output on a terminal is refused" 2 -- \
  "$B" encrypt --key-file "$work/key1" "$work/plain" -
says "the refusal says terminal" out "standard output is a terminal"
expect "encrypt - without --key-file and no terminal" 2 timeout 20 setsid -w \
  "$B" encrypt - "$work/enc4" <"$work/plain"
says "the key is asked for --key-file" err "no terminal to ask for the backup key on; use --key-file"
on_tty "encrypt FILE FILE: the key asked on the terminal" 0 "64 hex digits=>$key1" -- \
  "$B" encrypt "$work/plain" "$work/enc5"
expect "decrypt what the typed key encrypted" 0 "$B" decrypt --key-file "$work/key1" \
  "$work/enc5" "$work/dec5"
if cmp -s "$work/plain" "$work/dec5"; then ok "the typed key is the key"; else bad "typed key round trip differs"; fi

# Nothing registered.
expect "status of a new account" 0 bkv status --token-file "$work/token-carol"
says "status: registered: no" out "registered: no"
expect "recover with nothing registered" 1 bkv recover --token-file "$work/token-carol" \
  --password-file "$work/pw1"
says "recover: no key" err "holds no key"

# A first registration; a second one without --replace is refused and changes nothing.
expect "register alice" 0 bkv register --token-file "$work/token-alice" \
  --key-file "$work/key1" --password-file "$work/pw1"
says "register's result is on standard output" out "registered: the vault keeps the key"
if [ -s "$work/err" ]; then bad "register wrote to standard error"; else ok "register's standard error is empty"; fi
expect "register alice again without --replace" 6 bkv register \
  --token-file "$work/token-alice" --key-file "$work/key2" --password-file "$work/pw2"
says "the refusal names the version" err "record version 1, registered at"
says "the refusal says what replacing loses" err "can then only be opened with that key written down"
check_recovers "after the refusal the first key still recovers" alice pw1 key1

# --replace replaces exactly the version there is.
expect "register alice --replace" 0 bkv register --token-file "$work/token-alice" \
  --key-file "$work/key2" --password-file "$work/pw2" --replace
says "--replace says which version it replaced" out "record version 2 replaces version 1"
check_recovers "the new key recovers with the new password" alice pw2 key2
expect "the old password fails" 3 bkv recover --token-file "$work/token-alice" \
  --password-file "$work/pw1"
says "wrong password: attempts left" err "attempts left"
expect "status after --replace" 0 bkv status --token-file "$work/token-alice"
says "status: record version 2" out "record version: 2"

# change-password replaces the version it recovered.
expect "change-password" 0 bkv change-password --token-file "$work/token-alice" \
  --password-file "$work/pw2" --new-password-file "$work/pw1"
says "change-password's result is on standard output" out "password changed"
if [ -s "$work/err" ]; then bad "change-password wrote to standard error"; else ok "change-password's standard error is empty"; fi
check_recovers "after change-password the key recovers with the new password" alice pw1 key2
expect "status after change-password" 0 bkv status --token-file "$work/token-alice"
says "status: record version 3" out "record version: 3"
expect "change-password with a wrong password" 3 bkv change-password \
  --token-file "$work/token-alice" --password-file "$work/wrong" \
  --new-password-file "$work/pw2"
check_recovers "a failed change-password changed nothing" alice pw1 key2

# Destroyed: bob's limit is 2.
expect "register bob (limit 2)" 0 bkv register --token-file "$work/token-bob" \
  --key-file "$work/key1" --password-file "$work/pw1" --attempt-limit 2
expect "bob: a wrong password" 3 bkv recover --token-file "$work/token-bob" \
  --password-file "$work/wrong"
says "1 attempt left" err "1 attempt left"
expect "bob: the last wrong password destroys the key" 4 bkv recover \
  --token-file "$work/token-bob" --password-file "$work/wrong"
says "the last wrong password says destroyed" err "destroyed the backup key, and it cannot be recovered"
expect "status of a destroyed key" 4 bkv status --token-file "$work/token-bob"
says "status says destroyed with the time" out "state: destroyed at 20"
says "status of a destroyed key: registered: no" out "registered: no"
expect "recover with the right password after destruction" 4 bkv recover \
  --token-file "$work/token-bob" --password-file "$work/pw1"
says "recover says destroyed" err "destroyed the backup key"
if grep -q "holds no key" "$work/err"; then bad "recover of a destroyed key says not registered"; else ok "recover of a destroyed key does not say not registered"; fi
expect "change-password on a destroyed key" 4 bkv change-password \
  --token-file "$work/token-bob" --password-file "$work/pw1" --new-password-file "$work/pw2"
expect "register over the tombstone without --replace" 6 bkv register \
  --token-file "$work/token-bob" --key-file "$work/key3" --password-file "$work/pw2"
says "the refusal says destroyed at" err "key was destroyed at 20"
expect "register over the tombstone with --replace" 0 bkv register \
  --token-file "$work/token-bob" --key-file "$work/key3" --password-file "$work/pw2" --replace
says "--replace names the tombstone" out "replaces the destroyed key's tombstone (version 1)"
check_recovers "the key registered over the tombstone recovers" bob pw2 key3
expect "status after replacing the tombstone" 0 bkv status --token-file "$work/token-bob"
says "status: registered: yes" out "registered: yes"
says "status: version 2" out "record version: 2"

# Destroyed again, then deleted: a plain register starts at version 1.
expect "register carol (limit 1)" 0 bkv register --token-file "$work/token-carol" \
  --key-file "$work/key1" --password-file "$work/pw1" --attempt-limit 1
expect "carol: the only wrong password destroys the key" 4 bkv recover \
  --token-file "$work/token-carol" --password-file "$work/wrong"
expect "delete without --yes and no terminal" 2 bkv delete --token-file "$work/token-carol" </dev/null
says "delete without a terminal asks for --yes" err "pass --yes"
on_tty "delete on a terminal, answered no" 1 "Type yes to delete:=>no" -- \
  "$B" delete --token-file "$work/token-carol" "${C[@]}"
says "the question names the tombstone" out "The vault would delete the tombstone of the key destroyed at 20"
says "answered no: nothing deleted" out "not confirmed; nothing deleted"
expect "the tombstone is still there" 4 bkv status --token-file "$work/token-carol"
on_tty "delete on a terminal, answered yes" 0 "Type yes to delete:=>yes" -- \
  "$B" delete --token-file "$work/token-carol" "${C[@]}"
says "answered yes: deleted" out "deleted"
on_tty "delete on a terminal with nothing there" 0 -- \
  "$B" delete --token-file "$work/token-carol" "${C[@]}"
says "nothing there: nothing to delete" out "nothing to delete"
if grep -q "Type yes" "$work/out"; then bad "asked with nothing to delete"; else ok "nothing to delete: not asked"; fi
expect "status after deleting the tombstone on a terminal" 0 bkv status --token-file "$work/token-carol"
says "status: registered: no" out "registered: no"
expect "delete --yes with nothing there" 0 bkv delete --yes --token-file "$work/token-carol"
says "delete says nothing to delete" out "nothing to delete"
expect "register after delete" 0 bkv register --token-file "$work/token-carol" \
  --key-file "$work/key2" --password-file "$work/pw2"
expect "status after register" 0 bkv status --token-file "$work/token-carol"
says "versions restart at 1" out "record version: 1"
check_recovers "carol's new key recovers" carol pw2 key2
# --replace with nothing to replace creates.
on_tty "delete carol's key on a terminal" 0 "Type yes to delete:=>yes" -- \
  "$B" delete --token-file "$work/token-carol" "${C[@]}"
says "the question names the key and what is lost" out "The vault would delete the backup key registered at 20"
expect "register --replace with nothing there" 0 bkv register --token-file "$work/token-carol" \
  --key-file "$work/key3" --password-file "$work/pw1" --replace
says "--replace with nothing there says so" out "nothing to replace"

# bkvd stops cleanly, and reported nothing under a sanitizer.
kill "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
if [ "$rc" -eq 0 ]; then ok "bkvd stopped cleanly"; else bad "bkvd exited with $rc"; fi
if grep -qE "Sanitizer|runtime error:" "$work/bkvd.log"; then
  cp "$work/bkvd.log" "$work/err"
  bad "bkvd reported sanitizer findings"
else
  ok "no sanitizer report from bkvd"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
