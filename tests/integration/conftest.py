"""Shared fixtures: the built programs and a scratch configuration."""
import json
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("NUMPROV_BUILD", TOP / "build" / "test"))
# The tests run as root (CI does) in scratch directories only root may enter: their
# numprovd stays root, which it refuses without --allow-root (test_privs.py tests the
# switch to daemon.user itself).
AS_ROOT = ("--allow-root",) if os.geteuid() == 0 else ()

TENANT = """tenant: { id = "contoso.onmicrosoft.com";
  client_id = "11111111-2222-3333-4444-555555555555";
  client_secret_file = "/etc/numprov/client-secret"; };
"""


# NUMPROV_VALGRIND=DIR: every numprovd a test starts, and the Graph client's test driver
# tests/graphcli, runs under valgrind memcheck, its report in DIR/NAME.PID.vg
# (tests/run.sh --valgrind; the build must be one without ASan). Each report is checked
# when the session ends: no error, no definite leak.
VALGRIND = os.environ.get("NUMPROV_VALGRIND")
UNDER_VALGRIND = ("numprovd", "tests/graphcli")
# what a test waits for numprovd to do takes longer under memcheck (about ten times the
# CPU): waits on numprovd's log and rounds are stretched by this factor there
SLOW = 4 if VALGRIND else 1


def _valgrind_checks(build):
    """Whether the build checks the bytes it gives Berkeley DB (--enable-valgrind-checks):
    only then may tests/valgrind.supp silence libdb's own uninitialised padding."""
    h = build / "build-config.h"
    return h.exists() and "#define NP_VALGRIND_CHECKS 1" in h.read_text()


def _valgrind_wrapper(path):
    if not _valgrind_checks(BUILD):
        pytest.exit(f"NUMPROV_VALGRIND: {BUILD} is not configured with "
                    "--enable-valgrind-checks (tests/run.sh --valgrind builds one)", 2)
    d = pathlib.Path(VALGRIND)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o1777)  # a numprovd a test runs as another user writes its report here too
    w = d / path.name
    if not w.exists():
        w.write_text("#!/bin/sh\n"
                     "exec valgrind --quiet --tool=memcheck --vgdb=no --leak-check=full "
                     "--show-leak-kinds=definite --errors-for-leak-kinds=definite "
                     "--track-fds=no --child-silent-after-fork=yes "
                     f"--suppressions={TOP}/tests/valgrind.supp "
                     f"--log-file={d}/{path.name}.%p.vg {path} \"$@\"\n")
        w.chmod(0o755)
    return str(w)


def binary(name):
    path = BUILD / name
    if not path.exists():
        pytest.fail(f"{path} is not built (set NUMPROV_BUILD)")
    if VALGRIND and name in UNDER_VALGRIND:
        return _valgrind_wrapper(path)
    return str(path)


def running_numprovd(pid):
    """True when pid is a live numprovd process (not a zombie, not something else);
    under NUMPROV_VALGRIND, valgrind running numprovd."""
    try:
        status = open(f"/proc/{pid}/status").read()
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except FileNotFoundError:
        return False
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    if fields.get("State", "").startswith(("Z", "X")):
        return False
    name = fields.get("Name", "").strip()
    if VALGRIND and name.startswith("memcheck"):
        return any(a.endswith(b"/numprovd") for a in argv)
    return name == "numprovd"


def pytest_sessionfinish(session, exitstatus):
    """Under NUMPROV_VALGRIND: the memcheck reports, summed; any error fails the run."""
    if not VALGRIND:
        return
    reports = sorted(pathlib.Path(VALGRIND).glob("*.vg"))
    bad = [r for r in reports if r.read_text(errors="replace").strip()]
    runs = ", ".join(f"{n} {sum(r.name.startswith(n + '.') for r in reports)}"
                     for n in sorted({r.name.split(".")[0] for r in reports}))
    summary = pathlib.Path(VALGRIND) / "summary.txt"
    summary.write_text(f"{len(reports)} runs under memcheck ({runs}), {len(bad)} with "
                       "errors or definite leaks\n" + "".join(f"{r}\n" for r in bad))
    print(f"\nvalgrind: {len(reports)} runs ({runs}), {len(bad)} reports with errors or "
          f"definite leaks (see {summary})")
    if bad and session.exitstatus == 0:
        session.exitstatus = 1


def run(*args, check=False, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=60, check=check, **kw)


class Daemon:
    """numprovd -f on a config in a scratch directory."""

    def __init__(self, tmp, ranges):
        self.tmp = tmp
        self.db = tmp / "db"
        self.conf = tmp / "numprovd.conf"
        self.proc = None
        self.write(ranges)

    def write(self, ranges, extra=""):
        # a tenant nobody answers for: the inventory side works, syncs fail and say so
        secret = self.tmp / "client-secret"
        secret.write_text("secret\n")
        secret.chmod(0o600)
        self.conf.write_text(
            'tenant: { id = "contoso.onmicrosoft.com";\n'
            '  client_id = "11111111-2222-3333-4444-555555555555";\n'
            f'  client_secret_file = "{secret}";\n'
            '  login_url = "https://127.0.0.1:9"; graph_url = "https://127.0.0.1:9"; };\n'
            f'database: {{ path = "{self.db}"; durable = false; }};\n'
            f'control: {{ socket = "{self.tmp}/control.sock"; group = "root"; }};\n'
            'snmp: { enabled = false; };\n'
            + extra + f"ranges = (\n{ranges}\n);\n")

    def start(self):
        self.proc = subprocess.Popen([binary("numprovd"), *AS_ROOT, "-f", "-c", str(self.conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if "running:" in line:
                return self
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"numprovd did not start (exit {self.proc.poll()})")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def ctl(self, *args):
        return run(binary("numprovctl"), "-c", self.conf, *args)


@pytest.fixture
def daemon(tmp_path):
    made = []

    def make(ranges):
        d = Daemon(tmp_path, ranges)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop(signal.SIGKILL)


# ---- the Graph simulator ---------------------------------------------------------------
import json as _json
import sys as _sys

GRAPHSIM = TOP / "tests" / "graphsim"
_sys.path.insert(0, str(GRAPHSIM))
import graphsim_testlib as gtl  # noqa: E402
from simctl import SimClient  # noqa: E402


class Sim:
    """A running graphsim on 127.0.0.1 with real TLS and the test tenant loaded."""

    def __init__(self, certs, workdir):
        self.certs = certs
        self.workdir = workdir
        self.fixture = workdir / "tenant.json"
        self.fixture.write_text(_json.dumps(gtl.tenant_fixture(certs / "app.pem")))
        port_file = workdir / "port"
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(GRAPHSIM / "graphsim.py"), "--port", "0",
             "--port-file", str(port_file), "--cert", str(certs / "server.pem"),
             "--key", str(certs / "server.key"), "--fixture", str(self.fixture),
             "--app-cert", str(certs / "app.pem"), "--seed", "7"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        assert "listening on" in line, line
        self.port = int(port_file.read_text())
        self.url = f"https://127.0.0.1:{self.port}"
        self.ctl = SimClient(self.url, str(certs / "ca.pem"))

    def config(self, path, secret=gtl.SECRET, extra_tenant="", extra="", cert=False,
               parallel=8, mode=0o600, timeout=5, sync=""):
        """A numprovd config pointing at this simulator."""
        secret_file = path.parent / "client-secret"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(mode)
        cred = (f'certificate_file = "{self.certs}/app.pem"; '
                f'private_key_file = "{self.certs}/app.key";' if cert
                else f'client_secret_file = "{secret_file}";')
        path.write_text(
            f'tenant: {{ id = "{gtl.DOMAIN}"; client_id = "{gtl.CLIENT_ID}";\n  {cred}\n'
            f'  login_url = "{self.url}"; graph_url = "{self.url}";\n'
            f'  ca_file = "{self.certs}/ca.pem"; timeout = {timeout}; {extra_tenant} }};\n'
            f'sync: {{ parallel = {parallel}; {sync} }};\n'
            f'database: {{ path = "{path.parent}/db"; durable = false; }};\n' + extra)
        return path

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(GRAPHSIM / "mkcerts.sh"), str(d)], check=True,
                   capture_output=True)
    (d / "app.key").chmod(0o600)
    return d


@pytest.fixture(scope="module")
def graphsim(certs, tmp_path_factory):
    s = Sim(certs, tmp_path_factory.mktemp("graphsim"))
    yield s
    s.stop()


@pytest.fixture
def sim(graphsim):
    """The module's simulator, reset to the test tenant for each test."""
    graphsim.ctl.reset()
    return graphsim


# ---- the shared numprovd fixture --------------------------------------------------------

IDS = gtl.IDS
UPN = {n: f"{n}@{gtl.DOMAIN}" for n in IDS}

# The two range sets of the integration tests, each defined once here. RANGES: six ranges
# over every number type, with priority, overflow, quarantine, a policy and a
# reservation (the behaviour tests); CTL_RANGES: three ranges for the numprovctl tests.
RANGES = """
  { name = "london"; type = "direct-routing"; provider = "Gamma";
    first = "+442080000000"; last = "+442080000004";
    match = "city = 'London'"; priority = 10; quarantine_days = 30; },
  { name = "london-overflow"; type = "direct-routing"; provider = "Gamma";
    first = "+442080001000"; last = "+442080001099";
    match = "city = 'London'"; priority = 20; },
  { name = "park-lane"; type = "calling-plan"; provider = "Microsoft";
    first = "+442071230000"; last = "+442071230004";
    match = "Office = \\"Park Lane\\" AND City = \\"LONDON\\""; },
  { name = "abingdon"; type = "direct-routing"; provider = "Gamma";
    first = "+441235000000"; last = "+441235000099";
    match = "city = 'Abingdon' AND office = 'Office 1'";
    voice_routing_policy = "UK-National"; reserved = [ "+441235000000" ]; },
  { name = "north"; type = "direct-routing"; provider = "BT";
    first = "+441130000000"; last = "+441130000009";
    match = "city = 'Leeds' OR city = 'York'"; },
  { name = "paris"; type = "operator-connect"; provider = "Orange";
    first = "+33140000000"; last = "+33140000002";
    match = "usage_location = 'FR'"; }
"""


CTL_RANGES = """
  { name = "london"; type = "direct-routing"; provider = "Gamma";
    first = "+442080000000"; last = "+442080000009";
    match = "city = 'London'"; },
  { name = "park-lane"; type = "calling-plan"; provider = "Microsoft";
    first = "+442071230000"; last = "+442071230004";
    match = "Office = \\"Park Lane\\" AND City = \\"LONDON\\""; },
  { name = "abingdon"; type = "direct-routing"; provider = "Gamma";
    first = "+441235000000"; last = "+441235000099";
    match = "city = 'Abingdon' AND office = 'Office 1'";
    reserved = [ "+441235000000" ]; }
"""


class Numprovd:
    """numprovd -f on the simulator's tenant; its log lines are collected."""

    def __init__(self, sim, tmp, mode="enforce", interval=300, ranges=RANGES, policy="",
                 snmp="enabled = false;"):
        self.sim, self.tmp = sim, tmp
        self.sock = tmp / "control.sock"
        self.conf = sim.config(
            tmp / "numprovd.conf",
            sync=f'mode = "{mode}"; interval = {interval}; full_interval = 86400; '
                 f'retry_min = 1; retry_max = 4;',
            extra=f'control: {{ socket = "{self.sock}"; group = "root"; }};\n'
                  f'snmp: {{ {snmp} }};\n{policy}'
                  f'ranges = ({ranges});\n')
        self.lines = []
        self.proc = None
        self.env = None  # numprovd's environment (None: the tests')

    def start(self):
        self.proc = subprocess.Popen([binary("numprovd"), *AS_ROOT, "-f", "-c", str(self.conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self, kind=None):
        out = []
        for line in list(self.lines):
            m = re.search(r"\] ?(event=.*)$|\s(event=.*)$", line)
            if not m:
                continue
            fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', m.group(1) or m.group(2)))
            fields = {k: v.strip('"') for k, v in fields.items()}
            if kind is None or fields.get("event") == kind:
                out.append(fields)
        return out

    def wait_event(self, kind, count=1, timeout=30, **match):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            found = [e for e in self.events(kind)
                     if all(e.get(k) == v for k, v in match.items())]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {count} x event={kind} {match} in:\n" + "\n".join(self.lines[-40:]))

    def syncs(self):
        return len(self.events("sync"))

    def wait_syncs(self, n, timeout=30):
        return self.wait_event("sync", count=n, timeout=timeout)

    def ctl(self, *args):
        r = subprocess.run([binary("numprovctl"), "-c", str(self.conf), *args],
                           capture_output=True, text=True, timeout=60)
        return r

    def ranges(self):
        r = self.ctl("--json", "ranges")
        assert r.returncode == 0, r.stderr
        return {x["name"]: x for x in json.loads(r.stdout)}

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=40)
            if sig != signal.SIGKILL and hasattr(self, "reader"):
                self.reader.join(timeout=5)
                bad = sanitizer_lines(self.lines)
                assert not bad, "numprovd's stop tripped a sanitizer:\n" + "\n".join(bad[-40:])
        return self.proc.returncode if self.proc else None


@pytest.fixture
def numprovd(sim, tmp_path):
    made = []

    def make(**kw):
        d = Numprovd(sim, tmp_path, **kw)
        made.append(d)
        return d.start()

    yield make
    stop_clean(made)


def sanitizer_lines(lines):
    return [l for l in lines if "Sanitizer" in l or "runtime error:" in l]


def stop_clean(daemons):
    """Stop every numprovd a test started the way an operator does (SIGTERM), and fail
    the test when the shutdown path trips a sanitizer (use after free, leak) or the
    exit status is not 0. A daemon a test killed or stopped itself is left as it is."""
    reports = []
    for d in daemons:
        if not d.proc:
            continue
        if d.proc.poll() is not None:  # stopped by the test, or died by itself
            if hasattr(d, "reader"):
                d.reader.join(timeout=5)
            bad = sanitizer_lines(d.lines)
            if bad or d.proc.returncode in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
                reports.append(f"numprovd ended with {d.proc.returncode}:\n"
                               + "\n".join((bad or d.lines)[-40:]))
            continue
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
            reports.append("numprovd did not stop within 45 s of SIGTERM")
            continue
        if hasattr(d, "reader"):
            d.reader.join(timeout=5)
        bad = sanitizer_lines(d.lines)
        if bad or d.proc.returncode != 0:  # the report's stack is the end of the output
            reports.append(f"numprovd exited {d.proc.returncode} on SIGTERM:\n"
                           + "\n".join(d.lines[-60:]))
    assert not reports, "\n\n".join(reports)


def holder(sim, number):
    return (sim.ctl.truth()["numbers"].get(number) or {}).get("target")


def add_user(sim, name, **props):
    uid = props.pop("id", None) or f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}"
    sim.ctl.add_user({"id": uid, "userPrincipalName": f"{name}@{gtl.DOMAIN}",
                      "displayName": name, "accountEnabled": True, "licenses": ["SPE_E5"],
                      **props})
    return uid


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def user_json(d, who):
    r = d.ctl("--json", "user", who)
    assert r.returncode == 0, r.stderr
    return _json.loads(r.stdout)


class Ctld(Numprovd):
    """The shared numprovd on CTL_RANGES, Teams finishing each change at the first poll."""

    def __init__(self, sim, tmp, sock=None, **kw):
        sim.ctl.settings(op_polls=0)
        super().__init__(sim, tmp, **{"ranges": CTL_RANGES, **kw})
        if sock:
            self.sock = sock
            self.conf.write_text(self.conf.read_text().replace(f'socket = "{tmp}/control.sock"',
                                                               f'socket = "{sock}"'))

    def start(self, wait=True):
        super().start()
        if wait:
            self.wait_first_sync()
        return self

    def log(self):
        return "\n".join(self.lines[-30:])

    def json(self, *args):
        r = self.ctl("--json", *args)
        assert r.returncode == 0, (r.stderr, self.log())
        return json.loads(r.stdout)

    def status(self):
        """numprovctl --json status: exit 1 while syncs fail or Graph does not answer."""
        r = self.ctl("--json", "status")
        st = json.loads(r.stdout)
        failing = st["last_result"] == "failed" or st.get("graph", {}).get("failing")
        assert r.returncode == (1 if failing else 0), (r.returncode, st, self.log())
        return st

    def ranges(self):
        return {x["name"]: x for x in self.json("ranges")}

    def wait_first_sync(self, timeout=30):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log()
            r = self.ctl("--json", "status")
            if r.returncode in (0, 1) and r.stdout:  # 1: the first sync failed
                st = json.loads(r.stdout)
                if st["syncs"] >= 1 and not st["running"]:
                    return st
            time.sleep(0.2)
        raise AssertionError("no first sync:\n" + self.log())


@pytest.fixture
def ctld(sim, tmp_path):
    made = []

    def make(wait=True, **kw):
        d = Ctld(sim, tmp_path, **kw)
        made.append(d)
        return d.start(wait)

    yield make
    stop_clean(made)
