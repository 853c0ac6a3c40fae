"""What numprovd puts on the wire to Graph: connections kept open and reused, TLS
sessions resumed, the trust anchors read once per configuration load (not per
connection). Measured from the simulator's request log, which numbers the TLS
connection of every request, and from strace."""
import json
import os
import pathlib
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


def test_connections_are_reused_and_tls_sessions_resumed(sim, numprovd):
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
    # every request reuses connections, assignNumber too (a no Teams gives a copy
    # libcurl sent again by itself is checked: test_graph.py): at most sync.parallel
    # (8) and the token's are opened, for over a hundred requests
    assert len(conns) <= 8 + 1, {c: len(conns[c]) for c in conns}
    assert len(reqs) > 2 * len(assigns)
    assert len({q["conn"] for q in assigns}) < len(assigns) / 4
    assert any(conns[q["conn"]][0] is not q for q in assigns)
    # new connections resume the TLS session kept in the share (without the share none
    # can: each request has a new easy handle). How many do varies with timing (tickets
    # arrive after the handshake), so the test asks for resumption, not a share of it.
    later = [c for c in conns if c != min(conns)]
    assert any(conns[c][0]["tls_resumed"] for c in later), [
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
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # strace and numprovd in a group of their own
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
        # numprovd (strace's child) stops as it does for an operator; strace follows it
        kids = pathlib.Path(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children")
        for pid in (kids.read_text().split() if kids.exists() else []):
            os.kill(int(pid), signal.SIGTERM)
        try:
            d.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(timeout=10)


POLICY_RANGES = """
  { name = "abingdon"; type = "direct-routing"; provider = "Gamma";
    first = "+441235000000"; last = "+441235000099"; match = "city = 'Abingdon'";
    voice_routing_policy = "UK-National"; }
"""


def policy_requests(sim, since=0):
    reqs = sim.ctl.log(since)["requests"]
    return ([q for q in reqs if "getPolicyId" in q["path"]],
            [q for q in reqs if q["path"].endswith("/policy/userAssignments/assign")])


def test_policy_id_is_looked_up_once_per_configuration_load(sim, numprovd):
    """Before: one getPolicyId per user given a number in a range with a voice routing
    policy (two Graph requests per user for the policy). Now: one per configuration load,
    and again only when Teams refuses the kept id."""
    for i in range(10):
        add_user(sim, f"abpol{i:02d}", city="Abingdon")
    sim.ctl.clear_log()
    d = numprovd(ranges=POLICY_RANGES)
    d.wait_syncs(1, timeout=60)
    lookups, assigns = policy_requests(sim)
    assert len(assigns) == 10 and all(q["status"] == 204 for q in assigns), assigns
    assert len(lookups) == 1, [q["path"] for q in lookups]
    # a reload forgets the id: the next policy looks it up once more
    mark = sim.ctl.log()["requests"][-1]["seq"]
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("configuration reloaded" in l for l in d.lines), timeout=30)
    for i in range(3):
        add_user(sim, f"abpol-r{i}", city="Abingdon")
    d.ctl("sync")
    d.wait_syncs(2, timeout=60)
    lookups, assigns = policy_requests(sim, mark)
    assert len(lookups) == 1 and len(assigns) == 3, (lookups, assigns)
    # the policy made again under its name: the kept id is refused, looked up, and used
    mark = sim.ctl.log()["requests"][-1]["seq"]
    new = sim.ctl.recreate_policy("OnlineVoiceRoutingPolicy", "UK-National")["policyId"]
    for i in range(2):
        add_user(sim, f"abpol-n{i}", city="Abingdon")
    d.ctl("sync")
    d.wait_syncs(3, timeout=60)
    lookups, assigns = policy_requests(sim, mark)
    assert len(lookups) == 1, [q["path"] for q in lookups]
    assert [q["status"] for q in assigns].count(204) == 2, assigns
    assert all(q["body"]["value"][0]["policyId"] == new
               for q in assigns if q["status"] == 204)
    assert any("the kept id was refused" in l for l in d.lines)
    assert not d.events("sync") or d.events("sync")[-1]["result"] == "success", d.events("sync")


THROTTLE_RANGES = RANGES


def test_a_429_holds_every_teams_request_for_retry_after(sim, numprovd):
    """One throttle for the tenant: after a 429 with Retry-After 2 on one assignNumber, no
    Teams admin request arrives until the 2 s have passed, other than those already on
    the wire when the 429 came back; then the onboarding goes on and completes."""
    onboard(sim, 30)
    sim.ctl.fault("429", match="/assignNumber", count=1, retry_after=2)
    sim.ctl.clear_log()
    d = numprovd(ranges=THROTTLE_RANGES)
    d.wait_syncs(1, timeout=90)
    reqs = sim.ctl.log()["requests"]
    throttled = [q for q in reqs if q["status"] == 429]
    assert len(throttled) == 1, throttled
    answered = throttled[0]["time"] + throttled[0]["ms"] / 1000
    teams = [q for q in reqs if "/admin/teams/" in q["path"]]
    # 0.25 s for requests numprovd had sent before the 429 reached it
    inside = [q for q in teams if answered + 0.25 < q["time"] < answered + 2 - 0.05]
    assert not inside, [(q["path"][-40:], round(q["time"] - answered, 3)) for q in inside]
    after = [q for q in teams if q["time"] >= answered + 2 - 0.05]
    assert len(after) >= 10, "the onboarding did not go on after the hold"
    assigned = [e for e in d.events("assign") if e["user"].startswith("wire")]
    assert len(assigned) == 30
    assert any("Teams throttles the tenant: no Teams request for 2000 ms" in l for l in d.lines)
