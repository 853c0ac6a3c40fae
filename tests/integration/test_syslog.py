"""numprovd's syslog output as a SIEM sees it (docs/interfaces.md, event lines), through a real rsyslogd.

Each daemon run happens inside a private mount namespace (syslog_ns.sh under
`unshare --mount --propagation private`): a tmpfs /dev with its own /dev/log, rsyslogd
listening there with imuxsock only and writing every message to a file as
`FACILITY.SEVERITY PROGRAMNAME[PID]: MESSAGE`. The host's /dev is never touched. The
Graph simulator runs outside on 127.0.0.1 (the network namespace is shared)."""
import datetime
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest

from conftest import AS_ROOT
from conftest import binary, gtl
from conftest import RANGES, UPN, add_user

IDS = gtl.IDS
HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / "syslog_ns.sh"


def _tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mount namespace, tmpfs /dev"),
    pytest.mark.skipif(not _tool("rsyslogd"), reason="rsyslogd is not installed (apt-get install rsyslog)"),
    pytest.mark.skipif(not _tool("unshare"), reason="unshare (util-linux) is not installed"),
]

# a range of one number, so that a second user fills it
RANGES_SYSLOG = RANGES + """,
  { name = "oxford"; type = "direct-routing"; provider = "BT";
    first = "+441865000000"; last = "+441865000000";
    match = "city = 'Oxford'"; }
"""
LOG_CONF = 'log: { facility = "local3"; level = "info"; };\n'
WRONG_SECRET = "Wr0ng+S3cret/Value="

SEVERITIES = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
LINE = re.compile(r"(?P<fac>[a-z0-9]+)\.(?P<sev>[a-z]+) (?P<prog>[^\s\[]*)\[(?P<pid>[^\]]*)\]: ?"
                  r"(?P<msg>.*)")
# docs/interfaces.md, event lines: event= first, then key=value pairs; values with spaces in double quotes
VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^\s"=\\]+)'
EVENT = re.compile(rf"event=[a-z_-]+(?: \w+={VALUE})*")
PAIR = re.compile(rf"(\w+)=({VALUE})")


def _unquote(v):
    if v.startswith('"'):
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


class SyslogRun:
    """numprovd -f -c CONF inside syslog_ns.sh; syslog.log is read while it runs."""

    def __init__(self, work, conf, seconds=40, args=()):
        self.work = work
        self.work.mkdir()
        self.log = work / "syslog.log"
        self.cmd = [_tool("unshare"), "--mount", "--propagation", "private", "--fork", "--",
                    "/bin/bash", str(SCRIPT), str(work), str(seconds),
                    binary("numprovd"), *AS_ROOT, "-f", "-c", str(conf), *args]
        self.seconds = seconds
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.output = None

    # ---- what arrived -----------------------------------------------------------------
    def text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self):
        out = []
        for raw in self.text().splitlines():
            m = LINE.fullmatch(raw)
            assert m, f"rsyslog line not in the template's shape: {raw!r}"
            out.append(dict(m.groupdict(), raw=raw))
        return out

    def numprovd(self):
        return [r for r in self.records() if r["prog"] == "numprovd"]

    def events(self, kind=None, **match):
        out = []
        for r in self.numprovd():
            if not r["msg"].startswith("event="):
                continue
            fields = {k: _unquote(v) for k, v in PAIR.findall(r["msg"])}
            if kind and fields.get("event") != kind:
                continue
            if all(fields.get(k) == v for k, v in match.items()):
                out.append(dict(fields, _rec=r))
        return out

    def pid(self):
        try:
            return int((self.work / "command.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def diagnostics(self):
        parts = [f"syslog_ns.sh exit: {self.proc.poll()}", "--- syslog.log (tail)",
                 *self.text().splitlines()[-40:]]
        for name in ("command.out", "rsyslogd.out"):
            p = self.work / name
            if p.exists():
                parts += [f"--- {name} (tail)", *p.read_text(errors="replace").splitlines()[-15:]]
        if self.output:
            parts += ["--- syslog_ns.sh output", self.output]
        return "\n".join(parts)

    def wait(self, what, pred, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        got = pred()
        if got:
            return got
        raise AssertionError(f"no {what} in syslog\n{self.diagnostics()}")

    def wait_event(self, kind, count=1, timeout=20, **match):
        return self.wait(f"{count} x event={kind} {match}",
                         lambda: (lambda e: e if len(e) >= count else None)(
                             self.events(kind, **match)), timeout)

    def wait_running(self):
        return self.wait("'running:' start line",
                         lambda: [r for r in self.numprovd() if "running:" in r["msg"]], 25)

    # ---- the end ------------------------------------------------------------------------
    def stop(self):
        """Ask the script to stop numprovd (SIGTERM) and rsyslogd; its exit status."""
        if self.proc.poll() is None:
            (self.work / "stop").touch()
        try:
            self.output, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.output, _ = self.proc.communicate()
            raise AssertionError(f"syslog_ns.sh did not finish\n{self.diagnostics()}")
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            (self.work / "stop").touch()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def syslog_run(tmp_path):
    made = []

    def make(conf, name="ns", **kw):
        r = SyslogRun(tmp_path / name, conf, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()


def daemon_conf(sim, tmp, **kw):
    sim.ctl.settings(op_polls=0)  # Teams finishes each change at the first poll (1 s)
    return sim.config(
        tmp / "numprovd.conf",
        sync='mode = "enforce"; interval = 1; full_interval = 86400; retry_min = 1; retry_max = 4;',
        extra=f'control: {{ socket = "{tmp}/control.sock"; group = "root"; }};\n'
              'snmp: { enabled = false; };\n' + LOG_CONF + f"ranges = ({RANGES_SYSLOG});\n",
        **kw)


# ---- what every run must satisfy ----------------------------------------------------------

def forbidden_strings(sim, secrets=(gtl.SECRET,)):
    """Things that must never reach a log line: secrets (raw and form-encoded), bearer
    tokens (the simulator's are gsim.*, Entra's are JWTs), client assertions, the key."""
    out = {"Bearer", "eyJ", "client_assertion", "access_token", "-----BEGIN", "PRIVATE KEY",
           "gsim."}
    for s in secrets:
        out |= {s, urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s)}
    key = (sim.certs / "app.key").read_text().splitlines()
    out |= {line for line in key[1:3] if len(line) > 20}  # the key's own base64 lines
    return out


def check_run(run, sim, secrets=(gtl.SECRET,), rc=0, levels=SEVERITIES - {"debug"}):
    """After stop(): the script and numprovd ended well, and every numprovd line is a
    local3 line with ident numprovd[PID], in the 2.5 format when it is an event."""
    assert run.proc.returncode == rc, run.diagnostics()
    assert (run.work / "command.rc").read_text().strip() == str(rc), run.diagnostics()
    text = run.text()
    mine = run.numprovd()
    assert mine, run.diagnostics()
    pid = str(run.pid())
    for r in mine:
        assert r["fac"] == "local3", r["raw"]
        assert r["sev"] in levels, r["raw"]
        assert r["pid"] == pid, f"ident is not numprovd[{pid}]: {r['raw']}"
        if "event=" in r["msg"]:
            assert r["msg"].startswith("event="), f"event= is not first: {r['raw']}"
            assert EVENT.fullmatch(r["msg"]), f"not key=value pairs: {r['raw']}"
    # nothing else claims to be numprovd, and no event line comes from anywhere else
    assert all(r["prog"] == "numprovd" for r in run.records() if "event=" in r["msg"])
    stderr = (run.work / "command.out").read_text(errors="replace")
    for bad in forbidden_strings(sim, secrets):
        assert bad not in text, f"{bad!r} appears in syslog:\n" + "\n".join(
            line for line in text.splitlines() if bad in line)
        assert bad not in stderr, f"{bad!r} appears on numprovd's stderr"


def ints(ev, *keys):
    for k in keys:
        assert re.fullmatch(r"\d+", ev[k]), f"{k}={ev[k]!r} is not a count in {ev['_rec']['raw']}"
    return [int(ev[k]) for k in keys]


# ---- the tests ----------------------------------------------------------------------------

def test_events_reach_rsyslog_in_the_siem_format(sim, tmp_path, syslog_run):
    """assign, exhausted, unmatched (a quoted city), release with quarantine, retain
    disabled/moved and sync lines, each on local3 with ident numprovd."""
    for i in (1, 2):
        add_user(sim, f"oxford{i}", id=f"00000000-0000-4000-8000-0000000000b{i}", city="Oxford")
    nt = add_user(sim, "newtown", id="00000000-0000-4000-8000-0000000000a1", city="New Town",
                  officeLocation="High Street", usageLocation="GB")
    run = syslog_run(daemon_conf(sim, tmp_path))
    run.wait_running()
    first = run.wait_event("sync", result="success")[0]

    # a new licensed user
    a = run.wait_event("assign", user=UPN["alice"])[0]
    assert a["id"] == IDS["alice"] and a["range"] == "london" and a["type"] == "direct-routing"
    assert re.fullmatch(r"\+44208000000\d", a["number"]), a
    assert a["_rec"]["sev"] in ("notice", "info"), a["_rec"]["raw"]
    assert run.wait_event("assign", user=UPN["frank"])[0]["type"] == "operator-connect"

    # the one-number range fills: exhausted, and the user left over says why
    ex = run.wait_event("exhausted", range="oxford")
    assert len(ex) == 1 and set(ex[0]) == {"event", "range", "_rec"}, ex
    got = run.events("assign", range="oxford")
    assert len(got) == 1 and got[0]["number"] == "+441865000000"
    left = run.events("unmatched", reason="ranges-full")
    assert [e["user"] for e in left] == [f"oxford{i}@{gtl.DOMAIN}" for i in (1, 2)
                                         if f"oxford{i}@{gtl.DOMAIN}" != got[0]["user"]]

    # no rule matches: city, office and usage location, values with a space in quotes
    un = run.wait_event("unmatched", user=f"newtown@{gtl.DOMAIN}")
    assert len(un) == 1, un
    un = un[0]
    assert un["id"] == nt and un["reason"] == "no-match"
    assert (un["city"], un["office"], un["usage_location"]) == ("New Town", "High Street", "GB")
    assert ' city="New Town" office="High Street" usage_location=GB' in un["_rec"]["msg"], un

    users, assigned, released, _ = ints(first, "users", "assigned", "released", "duration_ms")
    assert users >= 9 and assigned >= 5 and released == 0, first["_rec"]["raw"]

    # leaver, disabled, mover
    sim.ctl.soft_delete(IDS["alice"])
    sim.ctl.disable(IDS["dave"])
    dave = run.events("assign", user=UPN["dave"])[0]["number"]
    sim.ctl.update_user(IDS["frank"], {"city": "Lyon"})
    frank = run.events("assign", user=UPN["frank"])[0]["number"]

    rel = run.wait_event("release", user=UPN["alice"])[0]
    assert rel["id"] == IDS["alice"] and rel["number"] == a["number"], rel
    assert rel["range"] == "london" and rel["reason"] == "deleted", rel
    until = datetime.date.fromisoformat(rel["quarantine_until"])  # london: 30 days
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", rel["quarantine_until"])
    assert abs((until - datetime.date.today()).days - 30) <= 1, rel

    dis = run.wait_event("retain", user=UPN["dave"], reason="disabled")
    assert len(dis) == 1 and dis[0]["number"] == dave and dis[0]["id"] == IDS["dave"]
    mov = run.wait_event("retain", user=UPN["frank"], reason="moved")
    assert len(mov) == 1 and mov[0]["number"] == frank and mov[0]["id"] == IDS["frank"]

    # the cycle that released says so, then a quiet one
    run.wait("sync with released=1",
                    lambda: [e for e in run.events("sync", result="success")
                             if e["released"] == "1"])
    n = len(run.events("sync"))
    run.wait_event("sync", count=n + 1)
    syncs = run.events("sync")
    for ev in syncs:
        assert ev["result"] == "success", ev["_rec"]["raw"]
        ints(ev, "users", "assigned", "released", "duration_ms")
    assert sum(int(e["released"]) for e in syncs) == 1
    assert sum(int(e["assigned"]) for e in syncs) == len(run.events("assign"))

    assert run.stop() == 0, run.diagnostics()
    check_run(run, sim)
    # logged once per change, not every cycle
    assert len(run.events("exhausted")) == 1 and len(run.events("retain")) == 2
    assert len(run.events("unmatched", user=f"newtown@{gtl.DOMAIN}")) == 1


def test_wrong_secret_errors_are_logged_without_the_secret(sim, tmp_path, syslog_run):
    run = syslog_run(daemon_conf(sim, tmp_path, secret=WRONG_SECRET))
    run.wait_running()
    failed = run.wait_event("sync", count=2, result="failed")
    assert "error" in failed[0], failed[0]["_rec"]["raw"]
    # the token refusal itself is logged, at warning or worse
    errs = [r for r in run.numprovd()
            if "token" in r["msg"] and r["sev"] in ("emerg", "alert", "crit", "err", "warning")]
    assert errs, run.diagnostics()
    assert run.stop() == 0, run.diagnostics()
    check_run(run, sim, secrets=(WRONG_SECRET, gtl.SECRET))
    assert not run.events("assign")


def test_certificate_auth_debug_lines_carry_no_assertion_or_token(sim, tmp_path, syslog_run):
    """Certificate credentials and -d: even debug lines hold no client assertion (a JWT
    signed with app.key), no access token and nothing of the key."""
    run = syslog_run(daemon_conf(sim, tmp_path, cert=True), args=("-d",))
    run.wait_running()
    run.wait_event("sync", result="success")
    run.wait_event("assign", user=UPN["alice"])
    assert run.stop() == 0, run.diagnostics()
    check_run(run, sim, levels=SEVERITIES)
    assert [r for r in run.numprovd() if r["sev"] == "debug"], "-d logged nothing at debug"


def test_a_crafted_argument_cannot_forge_a_syslog_line(sim, tmp_path, syslog_run):
    """A newline in a numprovctl argument reaches syslog escaped by numprovd itself (not
    left to the syslog daemon's own escaping, #012 in rsyslog): no forged event line."""
    conf = daemon_conf(sim, tmp_path)
    run = syslog_run(conf)
    run.wait_running()
    forged = "nobody\nevent=assign user=mallory number=+441865000000 range=oxford\t"
    r = subprocess.run([binary("numprovctl"), "-c", str(conf), "assign", forged,
                        "+442080000005"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "unknown user" in r.stderr, (r.stdout, r.stderr)
    rec = run.wait("the logged assign request",
                   lambda: [x for x in run.numprovd() if "mallory" in x["msg"]])
    assert len(rec) == 1, run.diagnostics()
    assert rec[0]["msg"].startswith("control: uid "), rec[0]["raw"]
    assert ("assign nobody\\x0aevent=assign user=mallory number=+441865000000 "
            "range=oxford\\x09 +442080000005") in rec[0]["msg"], rec[0]["raw"]
    assert run.stop() == 0, run.diagnostics()
    # (check_run's "event= only first" rule would trip over the quoted text itself)
    for x in run.numprovd():
        assert x["fac"] == "local3" and x["pid"] == str(run.pid()), x["raw"]
        if x["msg"].startswith("event="):
            assert EVENT.fullmatch(x["msg"]), x["raw"]
    assert not run.events("assign", user="mallory")
    assert "#012" not in run.text() and "#011" not in run.text()
