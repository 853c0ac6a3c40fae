"""What numprovd puts on the wire to Graph: connections kept open and reused, TLS
sessions resumed, the trust anchors read once per configuration load (not per
connection). Measured from the simulator's request log, which numbers the TLS
connection of every request, and from strace."""
import json
import os
import shutil
import signal
import subprocess
import threading

import pytest

from conftest import AS_ROOT, Numprovd, add_user, binary, wait_for

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RANGES = """
  { name = "london"; type = "direct-routing"; provider = "Gamma";
    first = "+442080000000"; last = "+442080000199"; match = "city = 'London'"; }
"""


def onboard(sim, n, city="London"):
    for i in range(n):
        add_user(sim, f"wire{i:03d}", city=city)


def test_assignments_reuse_connections_and_resume_tls_sessions(sim, numprovd):
    onboard(sim, 40)
    sim.ctl.clear_log()
    d = numprovd(ranges=RANGES)
    d.wait_syncs(1, timeout=60)
    reqs = [q for q in sim.ctl.log()["requests"] if not q["path"].startswith("/_sim")]
    assigns = [q for q in reqs if q["path"].endswith("/assignNumber")]
    assert len(assigns) >= 40, len(assigns)
    conns = {}
    for q in reqs:
        conns.setdefault(q["conn"], []).append(q)
    # sync.parallel is 8: never more connections than that, plus the token's
    assert len(conns) <= 8 + 1, {c: len(v) for c, v in conns.items()}
    assert len(reqs) >= 3 * len(conns)
    # connections opened after the first resume its TLS session from the share (without
    # the share none can: each request has a new easy handle). A few opened in the same
    # moment may miss it, so most, not all.
    first = min(conns)
    later = [c for c in conns if c != first]
    assert later, "everything went over one connection"
    resumed = [c for c in later if conns[c][0]["tls_resumed"]]
    assert resumed and len(resumed) * 2 >= len(later), [
        (c, conns[c][0]["path"][:40], conns[c][0]["tls_resumed"]) for c in sorted(conns)]


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_trust_anchors_are_read_once_per_configuration_load(sim, tmp_path):
    """strace counts the opens of the system CA bundle and of tenant.ca_file: one each
    at start and one each per SIGHUP, however many connections the rounds open."""
    onboard(sim, 20)
    d = Numprovd(sim, tmp_path, ranges=RANGES)
    trace = tmp_path / "strace.out"
    d.proc = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=openat,open", "-o", str(trace),
         str(binary("numprovd")), *AS_ROOT, "-f", "-c", str(d.conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    d.reader = threading.Thread(target=d._read, daemon=True)
    d.reader.start()
    try:
        d.wait_syncs(1, timeout=90)
        ca_file = str(sim.certs / "ca.pem")

        def opens(path):
            return sum(1 for l in trace.read_text().splitlines()
                       if f'"{path}"' in l and "= -1" not in l)
        conns = {q["conn"] for q in sim.ctl.log()["requests"]}
        assert len(conns) >= 2
        assert opens(CA_BUNDLE) == 1 and opens(ca_file) == 1, trace.read_text()[-3000:]
        pid = json.loads(d.ctl("--json", "status").stdout)["pid"]  # strace's child
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: any("configuration reloaded" in l for l in d.lines), timeout=30)
        d.ctl("sync")
        d.wait_syncs(2, timeout=60)
        assert opens(CA_BUNDLE) == 2 and opens(ca_file) == 2
    finally:
        r = d.ctl("--json", "status")
        if r.returncode in (0, 1):
            os.kill(json.loads(r.stdout)["pid"], signal.SIGTERM)
        d.proc.wait(timeout=60)
