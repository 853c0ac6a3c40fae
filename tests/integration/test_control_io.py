"""The control socket's flow control: a client that sends requests and never reads its
replies costs the daemon bounded memory, does not hold up other clients and is dropped
in the end; one that merely reads late still gets every reply."""
import json
import os
import socket
import threading
import time

from conftest import VALGRIND

STALL_TIMEOUT = 15  # src/daemon/control.c: a client that reads nothing for this long goes


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def gone(s):
    """Whether the daemon has closed this connection (probed without reading)."""
    try:
        s.send(b"\n")
    except BlockingIOError:
        return False
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


def test_a_client_that_never_reads_costs_bounded_memory_and_is_dropped(sim, ctld, monkeypatch):
    # In a sanitizer build ASan keeps freed memory in quarantine (up to 256 MiB), so RSS
    # would count every request ever answered rather than what the daemon still holds.
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "quarantine_size_mb=0")
    d = ctld()
    pid = d.proc.pid
    # warm up the paths the flood takes, so that what grows later is the backlog
    for _ in range(3):
        d.status()
        d.ranges()
    base = peak = rss_kib(pid)
    batch = b"".join(json.dumps({"command": c, "args": []}).encode() + b"\n"
                     for c in ("status", "ranges")) * 100
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    s.setblocking(False)
    start = time.time()
    sent, closed_early, slowest = 0, False, 0.0
    pending = memoryview(batch)
    next_probe = start + 0.5
    try:
        while time.time() - start < 10:
            try:
                n = s.send(pending)
                sent += n
                pending = pending[n:] if n < len(pending) else memoryview(batch)
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                closed_early = True
                break
            if time.time() >= next_probe:
                peak = max(peak, rss_kib(pid))
                t0 = time.time()
                r = d.ctl("--json", "status")
                slowest = max(slowest, time.time() - t0)
                assert r.returncode == 0, (r.stderr, d.log())
                assert json.loads(r.stdout)["pid"] == pid
                next_probe = time.time() + 1
        peak = max(peak, rss_kib(pid))
        growth_mib = (peak - base) / 1024
        # the daemon stopped reading long before the flood ended: the client was held back
        assert not closed_early, f"dropped after {time.time() - start:.1f} s, before the stall timeout"
        # (under valgrind, RSS holds memcheck's shadow of every byte: its leak check
        # stands in for this bound there)
        assert VALGRIND or growth_mib < 30, \
            f"RSS grew {growth_mib:.0f} MiB ({sent} bytes of requests sent)"
        assert slowest < 2, f"another client's status took {slowest:.1f} s"
        assert sent < 64 << 20, f"{sent} bytes accepted from a client that reads nothing"
        # it is dropped once it has read nothing for the stall timeout, and says so
        deadline = start + STALL_TIMEOUT + 15
        while not gone(s):
            assert time.time() < deadline, "the stalled client was never dropped\n" + d.log()
            time.sleep(0.2)
        assert any("read nothing" in line for line in d.lines), d.log()
    finally:
        s.close()
    # the daemon is as it was
    assert d.status()["pid"] == pid
    assert VALGRIND or (rss_kib(pid) - base) / 1024 < 30
    assert d.proc.poll() is None


def test_a_slow_reader_gets_every_reply_in_order(sim, ctld):
    """Reading pauses while a client's replies pile up, and resumes as it reads: a client
    that pipelines many requests and reads late still gets every answer, in order."""
    d = ctld()
    n = 20000  # about 17 MB of replies, 700 kB of requests
    reqs = b"".join(json.dumps({"command": "ranges" if i % 2 else "status",
                                "args": []}).encode() + b"\n" for i in range(n))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    s.settimeout(30)
    t = threading.Thread(target=s.sendall, args=(reqs,), daemon=True)
    t.start()
    time.sleep(3)
    # the replies queued for us passed the limit: the daemon stopped reading, we are held
    assert t.is_alive(), "all requests were taken although no reply was read"
    buf, got = b"", 0
    while got < n:
        chunk = s.recv(1 << 16)
        assert chunk, f"connection closed after {got} replies\n" + d.log()
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            rep = json.loads(line)
            assert rep["ok"], rep
            assert isinstance(rep["result"], list if got % 2 else dict), (got, rep)
            got += 1
    t.join(10)
    assert not t.is_alive()
    s.close()
    assert d.proc.poll() is None


def test_an_error_reply_is_strict_json_whatever_the_request_carries(sim, ctld):
    """A request's command or arguments may carry bytes that are not UTF-8 and control bytes
    (cJSON takes them raw inside a string). An error that echoes them is still one line of
    strict JSON: those bytes come back escaped as \\xNN, the echo cut at 64 bytes between two
    characters; and the daemon answers on as before."""
    d = ctld()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    s.settimeout(30)
    buf = b""

    def exchange(request):
        nonlocal buf
        s.sendall(request + b"\n")
        while b"\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"closed after {request!r}\n" + d.log()
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        return line, json.loads(line.decode("utf-8", errors="strict"))

    nasty = b"\xff\xfe\x1b[2J\x07\x7f\xc2\x9b\xe2\x80\xa8"
    shown = "\\xff\\xfe\\x1b[2J\\x07\\x7f\\xc2\\x9b\\xe2\\x80\\xa8"
    requests = [
        (b'{"command":"' + nasty + b'","args":[]}', f"unknown command '{shown}'"),
        (b'{"command":"user","args":["' + nasty + b'"]}', f"unknown user '{shown}'"),
        (b'{"command":"range","args":["' + nasty + b'"]}', f"no range named '{shown}'"),
        (b'{"command":"reserve","args":["\xff\xfe\x01"]}', "'\\xff\\xfe\\x01' is not a phone"),
        (b'{"command":"unassign","args":["\xc3' + nasty + b'"]}', "unknown user '\\xc3\\xff"),
        (b'{"command":"auto","args":["\xe2\x82"]}', "unknown user '\\xe2\\x82'"),
        (b'{"command":"assign","args":["\xff@x","+441235000050"]}', "unknown user '\\xff@x'"),
        # cut at 64 bytes: 21 characters of 3 bytes, never the first byte of the 22nd
        (b'{"command":"' + "\u20ac".encode() * 40 + b'\xff"}',
         "unknown command '" + "\u20ac" * 21 + "...'"),
        (b'{"command":"' + b"\xff" * 40 + b'"}', "unknown command '" + "\\xff" * 16 + "...'"),
    ]
    for request, want in requests:
        line, rep = exchange(request)
        assert len(line) < 200, line
        assert rep["ok"] is False, (request, rep)
        assert rep["error"].startswith(want), (request, rep)
        assert not [c for c in rep["error"] if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f
                    or c in "\u2028\u2029"], (request, rep)
    # the engine's own words echo the argument as the socket does: escaped, cut at 64 bytes
    line, rep = exchange(b'{"command":"unassign","args":["' + b"\xff\x1b" * 5000 + b'"]}')
    assert rep["error"].startswith("unknown user '\\xff\\x1b\\xff"), rep
    assert rep["error"].endswith("...'") and len(rep["error"]) < 100, rep
    assert len(line) < 200, line
    assert exchange(b'{"command":"status","args":[]}')[1]["result"]["pid"] == d.proc.pid
    s.close()
    assert d.status()["pid"] == d.proc.pid
    assert d.proc.poll() is None


def test_a_reply_is_utf8_whatever_the_configuration_holds(sim, ctld):
    """A configuration may hold text that is not UTF-8 (a provider's name saved in Latin-1),
    which cJSON would copy into a reply as it is: each such byte goes out as U+FFFD, and the
    reply stays strict JSON."""
    d = ctld()
    d.stop()
    text = d.conf.read_bytes()
    assert b'provider = "Microsoft"' in text
    d.conf.write_bytes(text.replace(b'provider = "Microsoft"', b'provider = "Telef\xf3nica"'))
    d.start()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    s.settimeout(30)
    s.sendall(b'{"command":"ranges","args":[]}\n')
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, d.log()
        buf += chunk
    s.close()
    rep = json.loads(buf.split(b"\n")[0].decode("utf-8", errors="strict"))
    assert {r["name"]: r["provider"] for r in rep["result"]}["park-lane"] == "Telef\ufffdnica"
    assert d.proc.poll() is None
