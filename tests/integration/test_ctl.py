"""numprovctl against a running numprovd (the control socket), as an operator sees it."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import AS_ROOT
from conftest import CTL_RANGES, IDS, UPN, binary, gtl  # noqa: F401

@pytest.fixture
def public_dir():
    """A directory others may enter (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="numprov-ctl-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def table(text):
    """Columns are separated by two spaces or more."""
    lines = text.strip().splitlines()
    head = re.split(r"\s{2,}", lines[0].strip())
    return head, [re.split(r"\s{2,}", row.strip()) for row in lines[1:]]


def keyvalues(text):
    return dict(re.match(r"([^:]+):\s+(.*)$", l).groups() for l in text.strip().splitlines()
                if re.match(r"[^ ][^:]*:\s", l))


def holds(sim, name):
    return sim.ctl.truth()["users"].get(IDS[name], [])


class Raw:
    """A client speaking the protocol directly."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(str(path))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def request(self, command, *args):
        self.send(json.dumps({"command": command, "args": list(args)}).encode() + b"\n")
        return self.reply()

    def reply(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


# ---- status, ranges, range ------------------------------------------------------------

def test_status_human_and_json(sim, ctld):
    d = ctld()
    st = d.status()
    assert st["version"] and st["sync_mode"] == "enforce"
    assert st["pid"] == d.proc.pid
    assert st["last_result"] == "success" and st["last_full"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", st["last_end"])
    assert st["users_tracked"] == 6
    assert st["assignments"] >= 3  # alice, bob, dave (erin's number is adopted)
    assert 0 < st["next_sync_in"] <= 300
    for key in ("users_pending", "users_unmatched", "releases", "assign_failures", "drift",
                "last_duration_ms", "last_start", "last_error", "sync_failures"):
        assert key in st

    r = d.ctl("status")
    assert r.returncode == 0 and r.stderr == ""
    kv = keyvalues(r.stdout)
    assert kv["sync mode"] == "enforce"
    assert kv["sync"] == "idle"
    assert kv["last sync"] == "success (full)"
    assert kv["users tracked"] == "6"
    assert kv["assignments"] == str(st["assignments"])
    assert re.fullmatch(r"\d+ s", kv["next sync in"])
    # --json anywhere on the line
    assert d.ctl("status", "--json").returncode == 0


def test_ranges_come_from_the_daemon(sim, ctld):
    d = ctld()
    r = d.ctl("ranges")
    assert r.returncode == 0, r.stderr
    head, rows = table(r.stdout)
    assert head[:3] == ["RANGE", "TYPE", "PROVIDER"] and head[-1] == "STATUS"
    rows = {row[0]: dict(zip(head, row)) for row in rows}
    assert list(rows) == ["london", "park-lane", "abingdon"]
    assert rows["abingdon"]["ASSIGNED"] == "1"  # erin's number, adopted from Teams
    assert rows["abingdon"]["RESERVED"] == "1"
    data = d.ranges()
    assert data["london"]["assigned"] == 2  # alice and dave
    assert data["london"]["available"] == 8 and data["london"]["size"] == 10
    assert data["park-lane"]["type"] == "calling-plan" and data["park-lane"]["assigned"] == 1
    assert set(data["london"]) == {"name", "index", "type", "provider", "first", "last", "size",
                                   "assigned", "pending", "available", "reserved",
                                   "quarantined", "utilisation", "warn_percent", "status"}
    # the daemon is the one answering: it works with the socket alone, no config
    s = subprocess.run([binary("numprovctl"), "-s", str(d.sock), "--json", "ranges"],
                       capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stderr
    assert {x["name"]: x for x in json.loads(s.stdout)} == data


def test_range_lists_numbers_with_state_and_user(sim, ctld):
    d = ctld()
    r = d.ctl("range", "abingdon")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\+441235000000\s+reserved\s", r.stdout, re.M)
    assert re.search(rf"^\+441235000001\s+assigned\s+{re.escape(UPN['erin'])}\s+\d{{4}}-",
                     r.stdout, re.M)
    j = d.json("range", "london")
    assert sorted(x["user"] for x in j) == [UPN["alice"], UPN["dave"]]
    assert all(x["state"] == "assigned" and x["user_id"] in IDS.values() for x in j)
    bad = d.ctl("range", "nowhere")
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, "", "numprovctl: no range named 'nowhere'\n")


# ---- reserve, unreserve --------------------------------------------------------------

def test_reserve_and_unreserve(sim, ctld):
    d = ctld()
    r = d.ctl("reserve", "+44 20 8000 0009")
    assert (r.returncode, r.stdout, r.stderr) == (0, "reserved +442080000009\n", "")
    assert d.ranges()["london"]["reserved"] == 1
    assert re.search(r"^\+442080000009\s+reserved", d.ctl("range", "london").stdout, re.M)

    r = d.ctl("unreserve", "+442080000009")
    assert r.returncode == 0 and r.stdout.startswith("unreserved +442080000009")
    assert d.ranges()["london"]["reserved"] == 0
    r = d.ctl("unreserve", "+442080000009")
    assert (r.returncode, r.stderr) == (1, "numprovctl: +442080000009 is not reserved\n")
    # a reservation the config file makes is lifted only there
    r = d.ctl("unreserve", "+441235000000")
    assert r.returncode == 1 and "config file" in r.stderr
    assert d.ranges()["abingdon"]["reserved"] == 1


def test_reserve_refuses_a_number_a_user_holds(sim, ctld):
    d = ctld()
    alice = holds(sim, "alice")[0]
    r = d.ctl("reserve", alice)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == f"numprovctl: {alice} is already taken: it is assigned to {UPN['alice']}\n"
    assert d.ranges()["london"]["reserved"] == 0
    r = d.ctl("reserve", "+15555550100")
    assert r.stderr == "numprovctl: +15555550100 is in no configured range\n"
    r = d.ctl("reserve", "call me")
    assert r.returncode == 1 and r.stderr.startswith("numprovctl: 'call me' is not a phone number")


# ---- assign, unassign ------------------------------------------------------------------

def test_assign_a_number_by_hand(sim, ctld):
    d = ctld()
    assert holds(sim, "frank") == []  # Paris: no range matches him
    before = d.ranges()["london"]["assigned"]
    r = d.ctl("assign", UPN["frank"], "+44 20 8000 0007")
    assert r.returncode == 0, (r.stderr, d.log())
    assert r.stdout == f"assigned +442080000007 to {UPN['frank']}\n"
    assert holds(sim, "frank") == ["+442080000007"]  # Teams' truth
    assert d.ranges()["london"]["assigned"] == before + 1
    u = d.json("user", UPN["frank"])
    assert (u["number"], u["number_state"]) == ("+442080000007", "assigned")


def test_assign_replaces_the_users_number(sim, ctld):
    d = ctld()
    old = holds(sim, "alice")[0]
    r = d.json("assign", UPN["alice"], "+442080000008")
    assert r == {"user": UPN["alice"], "number": "+442080000008"}
    assert holds(sim, "alice") == ["+442080000008"]  # never two numbers
    states = {x["number"]: x["state"] for x in d.json("range", "london")}
    assert states.get(old, "available") != "assigned"


def test_unassign(sim, ctld):
    d = ctld()
    number = holds(sim, "alice")[0]
    before = d.ranges()["london"]["assigned"]
    r = d.ctl("unassign", UPN["alice"])
    assert (r.returncode, r.stdout) == (0, f"unassigned {number} from {UPN['alice']}; they are "
                                        "held without a number until numprovctl assign or "
                                        "auto\n"), r.stderr
    assert holds(sim, "alice") == []
    assert d.ranges()["london"]["assigned"] == before - 1
    r = d.ctl("unassign", UPN["alice"])
    assert (r.returncode, r.stderr) == (1, f"numprovctl: {UPN['alice']} holds no number\n")
    r = d.ctl("unassign", "nobody@" + gtl.DOMAIN)
    assert r.stderr == f"numprovctl: unknown user 'nobody@{gtl.DOMAIN}'\n"


def test_assign_errors(sim, ctld):
    d = ctld()
    alice = holds(sim, "alice")[0]
    cases = [
        (("nobody@" + gtl.DOMAIN, "+442080000007"), f"unknown user 'nobody@{gtl.DOMAIN}'"),
        ((UPN["frank"], "+15555550100"), "+15555550100 is in no configured range"),
        ((UPN["frank"], alice), f"{alice} is already taken: it is assigned to {UPN['alice']}"),
    ]
    for args, error in cases:
        r = d.ctl("assign", *args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"numprovctl: {error}\n"), args
    r = d.ctl("assign", UPN["frank"], "not-a-number")
    assert r.returncode == 1 and "is not a phone number" in r.stderr
    assert r.stderr.count("\n") == 1
    assert holds(sim, "frank") == [] and holds(sim, "alice") == [alice]  # nothing half-done
    r = d.ctl("assign", UPN["frank"])
    assert r.returncode == 2 and "usage: numprovctl" in r.stderr


# ---- users, user, plan, sync -----------------------------------------------------------

def test_user_explains_the_ranges(sim, ctld):
    d = ctld()
    u = d.json("user", UPN["alice"])
    assert u["id"] == IDS["alice"]
    verdicts = {r["name"]: (r["type_ok"], r["match"]) for r in u["ranges"]}
    assert verdicts == {"london": (True, True), "park-lane": (False, False),
                        "abingdon": (True, False)}
    assert "london" in [r["name"] for r in u["ranges"] if "=> match" in r["why"]]

    r = d.ctl("user", IDS["frank"])  # by id works too
    assert r.returncode == 0, r.stderr
    kv = keyvalues(r.stdout)
    assert kv["user"] == UPN["frank"]
    assert kv["licence"].startswith("Teams Phone without a Calling Plan")
    assert kv["would get"].startswith("nothing")
    # the directory's attributes apart and indented; the UPN only once, as "user:"
    assert re.search(r"^attributes:$", r.stdout, re.M)
    assert re.search(r"^  usage_location:\s+FR$", r.stdout, re.M)
    assert re.search(r"^  city:\s+Paris$", r.stdout, re.M)
    assert r.stdout.count(UPN["frank"]) == 1, r.stdout
    assert re.search(r"^  london\s+no match\s+city = ", r.stdout, re.M)
    assert re.search(r"^  park-lane\s+wrong type\s", r.stdout, re.M)

    bob = keyvalues(d.ctl("user", UPN["bob"]).stdout)
    assert bob["licence"].startswith("Teams Phone with a Calling Plan")
    assert re.fullmatch(r"\+44207123000\d \(assigned\)", bob["number"])
    r = d.ctl("user", "ghost@" + gtl.DOMAIN)
    assert (r.returncode, r.stderr) == (1, f"numprovctl: unknown user 'ghost@{gtl.DOMAIN}'\n")


def test_text_output_shows_the_directorys_control_characters_escaped(sim, ctld):
    """Attributes carrying terminal escapes (OSC, CSI, the 8-bit CSI U+009B), DEL or a line
    separator reach numprovctl's text output as \\xNN, byte by byte: nothing the directory
    holds drives the operator's terminal. Letters beyond ASCII stay as they are, and --json
    gives back the exact strings."""
    from conftest import add_user
    city = "Par\u00eds\x1b]0;pwned\x07\x1b[2J\x7f\u009b31m\u2028end"
    name = "M\u00e4llory\x1b[31m\r\nevent=x\u0085"
    uid = add_user(sim, "mallory", city=city, displayName=name)
    d = ctld()
    r = subprocess.run([binary("numprovctl"), "-c", str(d.conf), "user", uid],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", r.stdout), r.stdout
    text = r.stdout.decode("utf-8")  # strict: no byte that is not UTF-8 either
    assert not re.search("[\x80-\x9f\u2028\u2029]", text), ascii(text)
    assert re.search(r"^  city:\s+Par\u00eds\\x1b\]0;pwned\\x07\\x1b\[2J\\x7f\\xc2\\x9b31m"
                     r"\\xe2\\x80\\xa8end$", text, re.M), text
    assert keyvalues(text)["name"] == "M\u00e4llory\\x1b[31m\\x0d\\x0aevent=x\\xc2\\x85", text
    u = d.json("user", uid)
    assert u["record"]["name"] == name
    assert u["record"]["attributes"]["city"] == city
    # the daemon's word in an error too: a C1 control of the request comes back escaped
    r = subprocess.run([binary("numprovctl"), "-c", str(d.conf), "user",
                        "ghost\u009b2J\x1b]0;x\x07"], capture_output=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr == b"numprovctl: unknown user 'ghost\\xc2\\x9b2J\\x1b]0;x\\x07'\n", r.stderr


def test_users_and_filters(sim, ctld):
    d = ctld()
    everyone = {u["upn"]: u for u in d.json("users")}
    assert set(everyone) == set(UPN.values())
    assert everyone[UPN["erin"]]["number"] == "+441235000001"
    unmatched = d.json("users", "--unmatched")
    assert [u["upn"] for u in unmatched] == [UPN["frank"]]
    r = d.ctl("users", "--unmatched")
    head, rows = table(r.stdout)
    assert head == ["USER", "STATE", "NUMBER", "REASON", "ID"]
    assert rows == [[UPN["frank"], "no-match", "-", unmatched[0]["reason"], IDS["frank"]]]
    assert unmatched[0]["reason"] == "no-match", unmatched  # the reason, per user
    # sorted by UPN, case aside
    upns = [u["upn"] for u in d.json("users")]
    assert upns == sorted(upns, key=str.lower)
    assert d.json("users", "--pending") == []
    assert d.ctl("users", "--everyone").returncode == 2


def test_plan_shows_the_next_cycle_and_changes_nothing(sim, ctld):
    d = ctld()
    head, rows = table(d.ctl("plan").stdout)
    assert head == ["ACTION", "USER", "NUMBER", "RANGE", "REASON"]
    # everyone else has a number; the reason is given per user
    assert rows == [["unmatched", UPN["frank"], "-", "-", "no-match"]]
    assert d.ctl("unassign", UPN["alice"]).returncode == 0
    # held by the administrator: the next cycle gives her nothing
    assert [p for p in d.json("plan") if p.get("user") == UPN["alice"]] == []
    assert d.ctl("auto", UPN["alice"]).returncode == 0
    before = d.ranges()
    plan = d.json("plan")
    mine = [p for p in plan if p.get("user") == UPN["alice"]]
    assert mine and mine[0]["action"] == "assign" and mine[0]["range"] == "london"
    r = d.ctl("plan")
    assert re.search(rf"^assign\s+{re.escape(UPN['alice'])}\s+\+44208\d+\s+london\s+\S+$",
                     r.stdout, re.M), r.stdout
    assert d.ranges() == before and holds(sim, "alice") == []


def test_sync_returns_at_once(sim, ctld):
    d = ctld()
    done = d.status()["syncs"]
    sim.ctl.fault("latency", match="/users/delta", ms=3000)
    t0 = time.time()
    r = d.ctl("sync", "--full")
    assert (r.returncode, r.stdout) == (0, "full sync started\n"), r.stderr
    assert time.time() - t0 < 2
    deadline = time.time() + 5
    while not d.status()["running"]:  # started within a second or so, still waiting on Graph
        assert time.time() < deadline
        time.sleep(0.1)
    assert d.json("sync") == {"full": False, "queued": True}
    deadline = time.time() + 40
    while d.status()["syncs"] < done + 2:
        assert time.time() < deadline, d.log()
        time.sleep(0.2)
    assert d.ctl("sync", "--later").returncode == 2


# ---- errors the operator meets ---------------------------------------------------------

def test_daemon_not_running(sim, tmp_path):
    sock = tmp_path / "control.sock"
    conf = sim.config(tmp_path / "numprovd.conf",
                      extra=f'control: {{ socket = "{sock}"; }};\nranges = ({CTL_RANGES});\n')
    for args in (("status",), ("assign", UPN["alice"], "+442080000001"), ("sync",)):
        r = subprocess.run([binary("numprovctl"), "-c", str(conf), *args], capture_output=True,
                           text=True, timeout=60)
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == f"numprovctl: numprovd is not running (no socket at {sock})\n"
    # a socket file left behind by a daemon that died: the same
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()
    r = subprocess.run([binary("numprovctl"), "-s", str(sock), "status"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stderr) == (1, f"numprovctl: numprovd is not running (no socket at {sock})\n")


def test_permission_denied(sim, ctld, public_dir):
    sock = os.path.join(public_dir, "control.sock")
    d = ctld(sock=sock)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 0
    ctl = os.path.join(public_dir, "numprovctl")  # wherever the build is, nobody may run this
    shutil.copy(binary("numprovctl"), ctl)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        ctl, "-s", sock, "status"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"numprovctl: permission denied on {sock}: run as root or as a member "
                        "of group root\n")
    assert d.ctl("status").returncode == 0  # root may


def test_socket_of_a_live_daemon_is_not_taken_over(sim, ctld, tmp_path):
    d = ctld()
    other = tmp_path / "other"
    other.mkdir()
    conf = sim.config(other / "numprovd.conf",
                      extra=f'control: {{ socket = "{d.sock}"; group = "root"; }};\n'
                            f'snmp: {{ enabled = false; }};\nranges = ({CTL_RANGES});\n')
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-f", "-c", str(conf)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert f"another process is answering on {d.sock}" in r.stdout + r.stderr
    assert d.status()["pid"] == d.proc.pid  # the first one still answers


def test_stale_socket_is_replaced(sim, ctld, tmp_path):
    sock = tmp_path / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()
    d = ctld(sock=sock)
    assert d.status()["pid"] == d.proc.pid
    assert d.stop() == 0
    assert not sock.exists()  # a clean stop takes the socket away


# ---- the protocol itself ---------------------------------------------------------------

def test_bad_requests_get_error_replies(sim, ctld):
    d = ctld()
    c = Raw(d.sock)
    for line, error in [
            (b"garbage\n", "not a JSON object"),
            (b"[1,2]\n", "not a JSON object"),
            (b'{"args":[]}\n', 'no "command"'),
            (b'{"command":"frobnicate"}\n', "unknown command 'frobnicate'"),
            (b'{"command":"range"}\n', "usage: range NAME"),
            (b'{"command":"range","args":[1]}\n', '"args" must be'),
            (b'{"command":"users","args":["--all"]}\n', "usage: users"),
    ]:
        c.send(line)
        rep = c.reply()
        assert rep["ok"] is False and error in rep["error"], (line, rep)
    # the same connection still answers, requests may be pipelined, CRLF is fine
    c.send(b'{"command":"status"}\r\n{"command":"ranges","args":[]}\n')
    assert c.reply()["ok"] and len(c.reply()["result"]) == 3
    # a line over 64 KiB: an error, then the connection is closed
    c.send(b'{"command":"status","args":["' + b"x" * 70000)
    rep = c.reply()
    assert rep["ok"] is False and "longer than 65536" in rep["error"]
    assert c.closed()
    c.close()
    # and the daemon keeps answering
    assert d.status()["pid"] == d.proc.pid
    assert d.proc.poll() is None


def test_several_clients_at_once(sim, ctld):
    d = ctld()
    clients = [Raw(d.sock) for _ in range(5)]
    for i, c in enumerate(clients):
        c.send(json.dumps({"command": "range" if i % 2 else "status",
                           "args": ["london"] if i % 2 else []}).encode())
    for i, c in enumerate(clients):
        c.send(b"\n")
    for i, c in enumerate(clients):
        rep = c.reply()
        assert rep["ok"], rep
        assert isinstance(rep["result"], list if i % 2 else dict)
        c.close()
    # a last request without a newline still counts once the client has finished sending
    c = Raw(d.sock)
    c.send(b'{"command":"status"}')
    c.s.shutdown(socket.SHUT_WR)
    assert c.reply()["ok"]
    assert c.closed()


def test_client_gone_while_assign_in_flight(sim, ctld):
    d = ctld()
    sim.ctl.fault("latency", match="assignNumber", ms=1500)
    c = Raw(d.sock)
    c.send(b'{"command":"status"}\n' + json.dumps(
        {"command": "assign", "args": [UPN["frank"], "+442080000006"]}).encode() + b"\n")
    time.sleep(0.3)
    c.close()  # with the status reply unread: the daemon sees the connection reset
    # a second client waits behind nobody and the daemon lives on
    assert d.status()["pid"] == d.proc.pid
    deadline = time.time() + 30
    while holds(sim, "frank") != ["+442080000006"]:
        assert time.time() < deadline, d.log()
        time.sleep(0.2)
    deadline = time.time() + 10
    while d.json("user", UPN["frank"]).get("number_state") != "assigned":
        assert time.time() < deadline, d.log()
        time.sleep(0.2)
    assert any("its answer is dropped" in line for line in d.lines), d.log()
    assert d.proc.poll() is None
    assert d.ranges()["london"]["assigned"] == 3  # alice, dave and now frank


def test_crafted_arguments_cannot_forge_log_lines(sim, ctld):
    """A request argument with a newline in it is logged inside its own line, escaped:
    no forged event=assign line appears in the daemon's log."""
    d = ctld()
    forged = "nobody\nevent=assign user=mallory number=+442080000001 range=london\r"
    for args in (("user", forged), ("assign", forged, "+442080000005"), ("unassign", forged)):
        r = d.ctl(*args)
        assert r.returncode != 0, r.stdout
        assert "unknown user" in r.stderr, r.stderr
    deadline = time.time() + 10
    while time.time() < deadline and sum("mallory" in l for l in d.lines) < 2:
        time.sleep(0.1)
    mine = [l for l in d.lines if "mallory" in l]
    # assign and unassign are logged (user is not): each one line, the bytes escaped
    assert len(mine) == 2, d.log()
    for line in mine:
        assert "[control] uid " in line, line
        assert "nobody\\x0aevent=assign user=mallory number=+442080000001 range=london\\x0d" \
            in line, line
    for line in d.lines:
        assert not re.match(r"\s*event=", line), f"a log line starts with event=: {line!r}"
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line), repr(line)
    assert d.proc.poll() is None


def test_plan_gives_each_user_of_a_range_a_number_of_their_own(sim, ctld):
    """The plan numbers users as assignments one after another would: each range's next
    free number to its next user (in the order a round decides them), never one number
    twice."""
    from conftest import add_user
    for i in (2, 0, 1):
        add_user(sim, f"planned{i}", city="Bulk")
    d = ctld(mode="dry-run", ranges=CTL_RANGES + """,
  { name = "bulk"; type = "direct-routing"; provider = "Gamma";
    first = "+441134960000"; last = "+441134960999"; match = "city = 'Bulk'"; }""")
    plan = [p for p in d.json("plan") if p.get("range") == "bulk"]
    assert sorted(p["user"] for p in plan) == [f"planned{i}@{gtl.DOMAIN}" for i in range(3)]
    assert sorted(p["number"] for p in plan) == [f"+44113496000{i}" for i in range(3)], plan
    numbers = [p["number"] for p in d.json("plan") if p.get("number")]
    assert len(numbers) == len(set(numbers)), numbers
