#!/usr/bin/env python3
"""http_edge.py - attacks on bkvd's HTTP edge over raw sockets (plain HTTP on loopback).

    tests/http_edge.py PORT CASE [ARG...]
    tests/http_edge.py PORT each "NAME=CASE [ARG...]"...

The first form prints what it saw and exits 0 when bkvd behaved as CASE says, 1 otherwise.
The second runs several cases in one process (Python starts slowly on a busy machine) and
prints "ok NAME" or "FAIL NAME" with what it saw, then "N passed, N failed". Used by
tests/test_http_edge.sh, which starts bkvd with short [limits] and reads the workers'
memory, CPU time and log itself.
"""
import contextlib
import io
import json
import select
import socket
import sys
import time

HOST = "127.0.0.1"
RPC = "/bkv.v1.BackupKeyVault/"


def connect(port):
    s = socket.create_connection((HOST, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s, limit_s):
    """Everything the server sends until it closes, and whether it closed within limit_s."""
    data = b""
    deadline = time.monotonic() + limit_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        ready, _, _ = select.select([s], [], [], left)
        if not ready:
            return data, False
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def responses(data):
    """(status, headers, body) of each response in data (Content-Length framed)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def expect(cond, what):
    print(("ok: " if cond else "FAILED: ") + what)
    return cond


def refused_and_closed(port, request, status, why=None):
    """request gets exactly one response, status, and the connection is closed after it
    (a request after it on the same connection is never answered)."""
    s = connect(port)
    s.sendall(request + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data, closed = read_until_closed(s, 5)
    s.close()
    got = responses(data)
    print("responses:", [(r[0], r[2][:80]) for r in got])
    ok = expect(len(got) == 1 and got[0][0] == status, "one response, %d" % status)
    if why is not None and got:
        ok &= expect(why.encode() in got[0][2], "its body names the reason %r" % why)
    return ok & expect(closed, "connection closed after it")


def post(path, body=b"", extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/proto\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def case_served(port):
    """Controls: a plain POST, a chunked POST, a GET: all answered on one connection."""
    s = connect(port)
    chunked = (b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/proto\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    s.sendall(post(RPC + "GetConfig") + chunked +
              b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    data = b""
    deadline = time.monotonic() + 5
    while len(responses(data)) < 3 and time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], 0.2)
        if ready:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    s.close()
    got = [r[0] for r in responses(data)]
    print("statuses:", got)
    return expect(got == [200, 200, 200], "GetConfig, chunked GetConfig and GET all 200")


def case_duplicate_content_length(port):
    return refused_and_closed(port, post(RPC + "GetConfig", extra=b"Content-Length: 0\r\n"),
                              400, "duplicate Content-Length")


def case_conflicting_content_length(port):
    # the first says no body, the second says 37: a proxy reading the second would pass
    # the smuggled GET as this request's body
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    req = (b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/proto\r\nContent-Length: 0\r\n"
           b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    return refused_and_closed(port, req, 400, "duplicate Content-Length")


def case_length_and_chunked(port):
    req = (b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/proto\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    return refused_and_closed(port, req, 400)  # libevent answers this one itself


def case_other_transfer_coding(port):
    ok = True
    # libevent refuses a list holding "chunked" itself; bkvd the codings libevent ignores
    for coding, why in ((b"gzip", "unsupported Transfer-Encoding"), (b"gzip, chunked", None),
                        (b"chunked, gzip", None), (b"identity", "unsupported Transfer-Encoding")):
        print("Transfer-Encoding:", coding.decode())
        req = (b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/proto\r\nTransfer-Encoding: " + coding +
               b"\r\n\r\n0\r\n\r\n")
        ok &= refused_and_closed(port, req, 400, why)
    return ok


def case_duplicate_transfer_encoding(port):
    req = (b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/proto\r\nTransfer-Encoding: chunked\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    return refused_and_closed(port, req, 400)  # libevent answers this one itself


def case_bad_content_length(port):
    return refused_and_closed(port, b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\n"
                              b"Host: x\r\nContent-Type: application/proto\r\n"
                              b"Content-Length: +0\r\n\r\n", 400, "invalid Content-Length")


def case_space_before_colon(port):
    return refused_and_closed(port, b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\n"
                              b"Host: x\r\nContent-Type: application/proto\r\n"
                              b"Content-Length : 0\r\n\r\n", 400, "invalid header field name")


def case_get_with_body(port):
    # evhttp reads no body for GET: these bytes would be the next request
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
    return refused_and_closed(port, req + smuggled, 400, "a GET request has no body")


def case_unknown_method(port):
    ok = True
    close = b"Connection: close\r\n"
    for req in (post(RPC + "Nope", extra=close), post(RPC + "delete", extra=close),
                post(RPC + "Delete/x", extra=close),
                b"GET " + RPC.encode() + b"Nope HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"):
        s = connect(port)
        s.sendall(req)
        data, _ = read_until_closed(s, 5)
        s.close()
        got = responses(data)
        print(req.split(b"\r\n")[0].decode(), "->", [(r[0], r[2]) for r in got])
        if not expect(len(got) == 1 and got[0][0] == 404, "404"):
            ok = False
            continue
        body = json.loads(got[0][2])
        ok &= expect(body.get("code") == "unimplemented", "Connect code unimplemented")
        ok &= expect(got[0][1].get("content-type") == "application/json", "JSON body")
    return ok


def case_header_flood(port, total_mib="128"):
    """Headers without end: bkvd answers 400 (evhttp's answer to a head over
    max_header_bytes) and closes long before total_mib; what it sent before the answer
    arrived sits in loopback's socket buffers, a few MiB at most."""
    s = connect(port)
    s.sendall(b"POST " + RPC.encode() + b"GetConfig HTTP/1.1\r\nHost: x\r\n")
    line = b"X-Flood: " + b"a" * 1013 + b"\r\n"
    sent = 0
    limit = int(total_mib) * 1024 * 1024
    closed = False
    while sent < limit:
        ready, _, _ = select.select([s], [], [], 0)
        if ready:
            break
        try:
            s.sendall(line * 64)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        sent += len(line) * 64
    data, closed_after = read_until_closed(s, 5)
    s.close()
    got = responses(data)
    print("sent %d KiB; responses %s" % (sent // 1024, [r[0] for r in got]))
    ok = expect(sent < 16 * 1024 * 1024, "answered within 16 MiB")
    ok &= expect(closed or closed_after, "connection closed")
    return ok & expect([r[0] for r in got] == [400], "400")


def case_header_floods(port, floods, total_mib="128"):
    """floods header floods at once, on as many connections: each as case_header_flood."""
    import threading
    results = []
    threads = [threading.Thread(target=lambda: results.append(case_header_flood(port, total_mib)))
               for _ in range(int(floods))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return expect(len(results) == int(floods) and all(results), "every flood refused")


def case_too_many_headers(port, count):
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(int(count)))
    return refused_and_closed(port, post(RPC + "GetConfig", extra=extra), 431,
                              "too many header fields")


def case_headers_at_limit(port, count):
    """Exactly max_headers fields (Host, Content-Type, Content-Length, Connection and the
    rest): served."""
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(int(count) - 4))
    s = connect(port)
    s.sendall(post(RPC + "GetConfig", extra=extra + b"Connection: close\r\n"))
    data, _ = read_until_closed(s, 5)
    s.close()
    got = [r[0] for r in responses(data)]
    print("statuses:", got)
    return expect(got == [200], "200")


def case_trickle(port, limit_s):
    """One byte every 0.5 s (each byte restarts evhttp's idle timer): closed within limit_s."""
    s = connect(port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    start = time.monotonic()
    closed = False
    for i in range(len(request)):
        if time.monotonic() - start > 3 * float(limit_s):
            break
        ready, _, _ = select.select([s], [], [], 0.5)
        if ready:
            try:
                closed = s.recv(4096) == b""
            except ConnectionResetError:
                closed = True
            if closed:
                break
        try:
            s.send(request[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    elapsed = time.monotonic() - start
    s.close()
    print("closed after %.1f s" % elapsed)
    return expect(closed and elapsed <= float(limit_s) + 1.5,
                  "closed within read_timeout (%s s) and a margin" % limit_s)


def case_tls_handshake_trickle(port, limit_s):
    """On a TLS port: a ClientHello record header promising 512 bytes, then a byte every
    0.5 s (no plaintext ever reaches evhttp): closed within limit_s of the accept."""
    s = connect(port)
    start = time.monotonic()
    s.sendall(b"\x16\x03\x01\x02\x00")
    closed = False
    while time.monotonic() - start < 3 * float(limit_s):
        ready, _, _ = select.select([s], [], [], 0.5)
        if ready:
            try:
                closed = s.recv(4096) == b""
            except ConnectionResetError:
                closed = True
            if closed:
                break
        try:
            s.send(b"\x00")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    elapsed = time.monotonic() - start
    s.close()
    print("closed after %.1f s" % elapsed)
    return expect(closed and elapsed <= float(limit_s) + 1.5,
                  "closed within read_timeout (%s s) and a margin" % limit_s)


def case_silent(port, limit_s):
    """Connects and sends nothing: closed within limit_s."""
    s = connect(port)
    start = time.monotonic()
    _, closed = read_until_closed(s, 3 * float(limit_s))
    elapsed = time.monotonic() - start
    s.close()
    print("closed after %.1f s" % elapsed)
    return expect(closed and elapsed <= float(limit_s) + 1.5, "closed within %s s" % limit_s)


def case_keepalive_paced(port, seconds):
    """Whole requests one second apart on one connection, for longer than read_timeout:
    every one is answered (the deadline is per request, not per connection)."""
    s = connect(port)
    statuses = []
    for _ in range(int(seconds)):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 2
        while not responses(data) and time.monotonic() < deadline:
            ready, _, _ = select.select([s], [], [], 0.1)
            if ready:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        statuses += [r[0] for r in responses(data)]
        time.sleep(1)
    s.close()
    print("statuses:", statuses)
    return expect(statuses == [200] * int(seconds), "all answered")


def case_refused_when_full(port, hold):
    """With hold connections open (max_connections), another is closed at once; after
    they close, a new one is served."""
    held = [connect(port) for _ in range(int(hold))]
    time.sleep(0.3)
    s = connect(port)
    start = time.monotonic()
    _, closed = read_until_closed(s, 3)
    elapsed = time.monotonic() - start
    s.close()
    print("the connection over the limit closed after %.2f s" % elapsed)
    ok = expect(closed and elapsed < 1.0, "closed within 1 s")
    for h in held:
        h.close()
    time.sleep(0.3)
    s = connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, _ = read_until_closed(s, 3)
    s.close()
    got = [r[0] for r in responses(data)]
    print("after closing them:", got)
    return ok & expect(got == [200], "served again")


def case_hold(port, count, seconds):
    """Opens count connections (accepted or left in the backlog), holds them seconds."""
    held = []
    for _ in range(int(count)):
        try:
            held.append(connect(port))
        except OSError as e:
            print("connect:", e)
            break
    print("holding %d connections" % len(held))
    sys.stdout.flush()
    time.sleep(float(seconds))
    for h in held:
        h.close()
    return True


def case_half_request(port, seconds):
    """Sends half a request, prints "sent", and holds the connection for seconds."""
    s = connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    print("sent")
    sys.stdout.flush()
    time.sleep(float(seconds))
    s.close()
    return True


def case_healthz(port):
    s = connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, _ = read_until_closed(s, 5)
    s.close()
    got = [r[0] for r in responses(data)]
    print("statuses:", got)
    return expect(got == [200], "200")


def case_in_flight(port, pid_file):
    """Half a request, then SIGTERM to bkvd, then the rest: answered (Connection: close)."""
    import os
    import signal
    idle = connect(port)  # an idle keep-alive connection must not hold the shutdown
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    read_until_closed(idle, 0.3)
    s = connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.2)
    os.kill(int(open(pid_file).read()), signal.SIGTERM)
    time.sleep(0.3)
    s.sendall(b"\r\n")
    data, closed = read_until_closed(s, 3)
    s.close()
    _, idle_closed = read_until_closed(idle, 3)
    idle.close()
    got = responses(data)
    print("in flight:", [(r[0], r[1].get("connection")) for r in got])
    ok = expect([r[0] for r in got] == [200], "the request in flight is answered")
    ok &= expect(closed, "and its connection closed")
    return ok & expect(idle_closed, "the idle connection is closed")


def run(port, words):
    return globals()["case_" + words[0]](port, *words[1:])


def each(port, specs):
    passed = failed = 0
    for spec in specs:
        name, _, words = spec.partition("=")
        seen = io.StringIO()
        with contextlib.redirect_stdout(seen):
            try:
                ok = run(port, words.split())
            except Exception as e:  # a crash of the probe is a failure, with its reason
                print("exception:", repr(e))
                ok = False
        if ok:
            passed += 1
            print("ok " + name)
        else:
            failed += 1
            print("FAIL " + name)
            print("".join("    " + line + "\n" for line in seen.getvalue().splitlines()), end="")
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return failed == 0


def main():
    port = int(sys.argv[1])
    if sys.argv[2] == "each":
        return 0 if each(port, sys.argv[3:]) else 1
    return 0 if run(port, sys.argv[2:]) else 1


if __name__ == "__main__":
    sys.exit(main())
