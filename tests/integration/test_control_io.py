"""The control socket's flow control: a client that sends requests and never reads its
replies costs the daemon bounded memory, does not hold up other clients and is dropped
in the end; one that merely reads late still gets every reply."""
import json
import os
import socket
import threading
import time


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
        assert growth_mib < 30, f"RSS grew {growth_mib:.0f} MiB ({sent} bytes of requests sent)"
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
    assert (rss_kib(pid) - base) / 1024 < 30
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
