"""Security checks (issue 11, point 7). One line per clause: the tests that prove it
(S:: = this file; "xfail" = the clause does not hold yet, the test shows how).

1. untrusted certificate refused: test_graph.py::test_tls_verification_is_always_on
2. certificate for another name refused: S::test_tls_to_a_name_the_certificate_does_not_carry_is_refused
3. secret or key file readable by others refused: test_preflight.py::test_a_secret_others_may_read, test_graph.py::test_secret_file_readable_by_others_is_refused, S::test_a_credential_file_others_may_read_is_refused
4. no secret, token or assertion in logs, numprovctl --json, SNMP, core files: S::test_no_secret_token_or_assertion_in_any_output, S::test_core_dumps_are_off, test_syslog.py::test_certificate_auth_debug_lines_carry_no_assertion_or_token, test_syslog.py::test_wrong_secret_errors_are_logged_without_the_secret, test_privs.py::test_started_as_root_it_becomes_daemon_user_before_the_inventory_and_graph (RLIMIT_CORE 0, not dumpable)
5. control socket refuses a user outside its group, each refusal logged with the uid: test_ctl.py::test_permission_denied (the mode refuses; nothing logged), S::test_a_user_outside_the_control_group_is_refused_and_logged_with_the_uid, S::test_a_client_refused_as_one_too_many_is_logged_with_the_uid
6. started as root, drops to its user before touching the network: S::test_started_as_root_no_network_before_the_switch_to_the_daemon_user (test_privs.py's test sees the end state and the log's order only)
7. SNMP SET on anything but numprovSyncTrigger fails through the example snmpd.conf: S::test_every_set_but_the_trigger_is_refused_by_the_example_vacm (test_snmp.py::test_example_vacm_lets_the_write_community_set_the_trigger_alone samples a few objects and also accepts the subagent's notWritable)
8. every log line one line whatever attributes or requests carry: S::test_every_log_line_stays_one_line_whatever_attributes_and_requests_carry, S::test_no_c1_control_or_unicode_line_separator_reaches_a_log_line, test_ctl.py::test_crafted_arguments_cannot_forge_log_lines, test_syslog.py::test_a_crafted_argument_cannot_forge_a_syslog_line
"""
import base64
import grp
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unicodedata
import urllib.parse

import pytest

from conftest import (AS_ROOT, CTL_RANGES, UPN, Ctld, Numprovd, Sim, SimClient, add_user,
                      binary, gtl, running_numprovd, stop_clean, wait_for)
from snmpkit import ERROR_STATUS, MIB, ber, ber_oid, raw_set, scalar
from test_graph import gcli
from test_privs import NOBODY, world  # noqa: F401  (world: the fixture)
from test_snmp import snmp, start as snmp_start, status as ctl_status  # noqa: F401

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (other users, strace, /proc)")

# a log line numprovd writes on stderr: src/common/log.c, log_stderr
STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "
                   rb"(emerg|alert|crit|error|warning|notice|info|debug) ")
TOKEN = re.compile(rb"gsim\.[A-Za-z0-9_-]{20,}")          # graphsim's access tokens
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16,}")


# ---- helpers ----------------------------------------------------------------------------

class Probe(Numprovd):
    """numprovd -f on the simulator whose output is kept as bytes, line by line: what it
    printed is judged as written, invalid UTF-8 included."""

    def __init__(self, sim, tmp, cert=False, **kw):
        super().__init__(sim, tmp, **kw)
        if cert:
            text = self.conf.read_text()
            text = re.sub(r'client_secret_file = "[^"]*";',
                          f'certificate_file = "{sim.certs}/app.pem"; '
                          f'private_key_file = "{sim.certs}/app.key";', text)
            self.conf.write_text(text)
        self.raw = []

    def start(self, *args, cwd=None):
        self.proc = subprocess.Popen(
            [binary("numprovd"), *AS_ROOT, "-f", *args, "-c", str(self.conf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.append(line.decode("utf-8", "backslashreplace").rstrip("\n"))

    def output(self):
        return b"".join(self.raw)

    def idle_after(self, n, timeout=40):
        """Wait until n rounds have finished and none runs."""
        def done():
            r = self.ctl("--json", "status")
            st = json.loads(r.stdout) if r.stdout else {}
            return st.get("syncs", 0) >= n and not st.get("running") and st
        return wait_for(done, timeout, f"{n} finished rounds")

    def sync_now(self):
        n = json.loads(self.ctl("--json", "status").stdout)["syncs"]
        assert self.ctl("sync").returncode == 0
        return self.idle_after(n + 1)


@pytest.fixture
def probes(sim, tmp_path):
    made = []

    def make(*args, cwd=None, **kw):
        d = Probe(sim, tmp_path, **kw)
        made.append(d)
        return d.start(*args, cwd=cwd)

    yield make
    stop_clean(made)


@pytest.fixture
def public_dir():
    """A directory other users may enter (pytest's tmp_path is 0700 root)."""
    d = tempfile.mkdtemp(prefix="numprov-sec-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def requests(sim):
    return sim.ctl.log()["requests"]


def process_memory(pid):
    """The process's writable memory (heap, stacks, anonymous maps; AddressSanitizer's
    shadow on x86-64, 0x7fff8000-0x10007fff8000, and regions over 1 GiB left out), as
    one bytes object per region."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if "rw" not in parts[1] or hi - lo > 1 << 30 or 0x7fff7000 <= lo < 0x10007fff8000:
                continue
            chunks = []
            for at in range(lo, hi, 1 << 22):
                try:
                    mem.seek(at)
                    chunks.append(mem.read(min(1 << 22, hi - at)))
                except OSError:
                    break
            yield b"".join(chunks)


# ---- 2. TLS to a name the certificate does not carry ------------------------------------

def mismatched_certs(certs, where):
    """A copy of the test certificates whose server certificate, issued by the same trusted
    CA, names localhost only (SAN DNS:localhost) and says 127.0.0.1 only in its CN, which
    a client must not use when there are SANs."""
    where.mkdir()
    for name in ("ca.pem", "app.pem", "app.key"):
        shutil.copy(certs / name, where / name)
    (where / "app.key").chmod(0o600)
    ext = where / "server.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=where)  # noqa: E731
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", str(certs / "ca.pem"), "-CAkey",
        str(certs / "ca.key"), "-sha256", "-days", "30", "-set_serial", "0x5ec0ded",
        "-extfile", "server.ext", "-out", "server.pem")
    run("openssl", "verify", "-CAfile", "ca.pem", "server.pem")
    return where


def test_tls_to_a_name_the_certificate_does_not_carry_is_refused(certs, tmp_path):
    other = Sim(mismatched_certs(certs, tmp_path / "certs"), tmp_path)
    try:
        # the control interface as a client that checks the name would reach it
        other.ctl = SimClient(f"https://localhost:{other.port}", str(other.certs / "ca.pem"))
        other.ctl.reset()
        conf = other.config(tmp_path / "mismatch.conf")
        assert f'graph_url = "https://127.0.0.1:{other.port}"' in conf.read_text()
        r, out, st = gcli(conf, "skus")
        assert out[0]["ok"] is False and out[0]["error"] in ("token", "transport"), out
        said = (out[0].get("detail", "") + r.stderr).lower()
        assert re.search(r"subject name matches|does not match|host ?name", said), said
        assert requests(other) == []  # nothing was sent over it, not even the token request
        # the same server by the name it carries: trusted, answered
        good = tmp_path / "match.conf"
        good.write_text(conf.read_text().replace("https://127.0.0.1:", "https://localhost:"))
        r, out, st = gcli(good, "skus")
        assert out[0]["ok"] is True, (out, r.stderr)
        assert requests(other)
    finally:
        other.stop()


# ---- 3. a secret or key file others may read ----------------------------------------------

@pytest.mark.parametrize("mode", [0o640, 0o604])
@pytest.mark.parametrize("what", ["client_secret_file", "private_key_file"])
def test_a_credential_file_others_may_read_is_refused(sim, tmp_path, what, mode):
    """numprovd -t names the file and its line; numprovd itself does not start on it, and
    nothing reaches Graph."""
    conf = sim.config(tmp_path / "numprovd.conf", cert=what == "private_key_file",
                      extra=f'control: {{ socket = "{tmp_path}/control.sock"; group = "root"; }};\n'
                            f'snmp: {{ enabled = false; }};\nranges = ({CTL_RANGES});\n')
    if what == "private_key_file":
        key = tmp_path / "app.key"
        shutil.copy(sim.certs / "app.key", key)
        conf.write_text(conf.read_text().replace(f'"{sim.certs}/app.key"', f'"{key}"'))
        secret = key
    else:
        secret = tmp_path / "client-secret"
    secret.chmod(mode)
    line = 1 + next(i for i, l in enumerate(conf.read_text().splitlines()) if what in l)
    want = (f"{conf}:{line}: tenant.{what}: {secret} may be read by group or others "
            f"(mode {mode:04o}); it holds the tenant's credentials: chmod 600 it")
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and want in r.stderr.splitlines(), r
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-f", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    # a configuration error, said with its place, before the inventory is opened
    assert r.returncode == 78, r
    assert want in r.stdout + r.stderr, r
    assert not (tmp_path / "db").exists()
    assert "running:" not in r.stdout + r.stderr
    assert requests(sim) == []


@pytest.mark.parametrize("what", ["ca_file", "certificate_file", "private_key_file",
                                  "client_secret_file"])
def test_a_fifo_in_place_of_a_trust_or_credential_file_is_refused_at_once(
        sim, tmp_path, what):
    """A FIFO where a trust or credential file should be (nobody writing to it): numprovd
    -t and numprovd itself say it is not a regular file at once, instead of waiting for
    a writer for ever; nothing reaches Graph."""
    conf = sim.config(tmp_path / "numprovd.conf", cert=what in ("certificate_file",
                                                                 "private_key_file"),
                      extra=f'control: {{ socket = "{tmp_path}/control.sock"; group = "root"; }};\n'
                            f'snmp: {{ enabled = false; }};\nranges = ({CTL_RANGES});\n')
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    text = conf.read_text()
    old = {"ca_file": f'"{sim.certs}/ca.pem"', "certificate_file": f'"{sim.certs}/app.pem"',
           "private_key_file": f'"{sim.certs}/app.key"',
           "client_secret_file": f'"{tmp_path}/client-secret"'}[what]
    assert old in text
    conf.write_text(text.replace(old, f'"{fifo}"'))
    if what == "ca_file":
        # numprovd runs on without Graph until the file can be read and it reloads, as
        # with any ca_file it cannot read; it must not hang on the FIFO
        d = subprocess.Popen([binary("numprovd"), *AS_ROOT, "-f", "-c", str(conf)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines, deadline = [], time.monotonic() + 10
            while time.monotonic() < deadline and not any("running:" in l for l in lines):
                line = d.stdout.readline()
                if not line:
                    break
                lines.append(line)
            assert any("running:" in l for l in lines), lines
            assert any(f"{fifo} is not a regular file" in l for l in lines), lines
        finally:
            d.send_signal(signal.SIGTERM)
            d.wait(timeout=30)
    for args in (("-t",), ("-f",)) if what != "ca_file" else (("-t",),):
        t0 = time.monotonic()
        r = subprocess.run([binary("numprovd"), *AS_ROOT, *args, "-c", str(conf)],
                           capture_output=True, text=True, timeout=30)
        assert time.monotonic() - t0 < 10, r
        assert r.returncode == 78, r
        assert f"tenant.{what}: {fifo} is not a regular file" in r.stdout + r.stderr, r
        assert "running:" not in r.stdout + r.stderr
    assert requests(sim) == []


# ---- 4. no secret, token or assertion in any output; no core ---------------------------

def forbidden(sim, tokens=(), assertions=()):
    """What must appear nowhere: the secret (raw, form-encoded, in HTTP Basic), every
    access token the daemon held (and the simulator's token prefix), client assertions
    (JWTs), the private key's PEM lines."""
    s = gtl.SECRET
    out = {s.encode(), urllib.parse.quote(s, safe="").encode(),
           urllib.parse.quote_plus(s).encode(), b"client_secret=", b"client_assertion=",
           base64.b64encode(f"{gtl.CLIENT_ID}:{s}".encode()), b"gsim.", b"eyJ",
           b"-----BEGIN", b"PRIVATE KEY", b"access_token", b"Bearer "}
    out |= {t for t in tokens} | {t[len(b"gsim."):] for t in tokens}
    out |= set(assertions)
    key = (sim.certs / "app.key").read_bytes().splitlines()
    out |= {line for line in key if len(line) >= 40 and b"-----" not in line}
    return out


def files_under(path):
    return {p: p.read_bytes() for p in pathlib.Path(path).rglob("*") if p.is_file()}


@needs_root
@pytest.mark.parametrize("cred", ["secret", "certificate"])
def test_no_secret_token_or_assertion_in_any_output(sim, probes, snmp, cred):
    """At debug level, through token renewals, token answers cut short, Graph errors and a
    failed round: nothing secret in numprovd's output, numprovctl's answers (--json and
    text), the MIB's walk, the notifications, or the inventory's files."""
    sim.ctl.settings(op_polls=0)
    d = probes("-d", cert=cred == "certificate", interval=300, ranges=CTL_RANGES,
               snmp=f'enabled = true; agentx_socket = "unix:{snmp.agentx}"; '
                    'ping_interval = 2; traps = true;')
    d.idle_after(1)
    wait_for(lambda: snmp.get(scalar("numprovSyncState")).rc == 0, 10, "the subagent")
    held, jwts = set(), set()

    def read_memory():
        """The tokens (and any JWT) the daemon holds, read from its memory: real values
        to look for."""
        for region in process_memory(d.proc.pid):
            held.update(TOKEN.findall(region))
            jwts.update(JWT.findall(region))

    read_memory()
    # a token revoked under it (a 401, then a new token), then answers to the token
    # request cut short in the middle of the token, then a Graph answering garbage
    sim.ctl.expire_tokens()
    assert d.sync_now()["last_result"] == "success"
    sim.ctl.expire_tokens()
    sim.ctl.fault("truncated", match="/oauth2/v2.0/token", count=2)
    d.sync_now()  # may fail: a token answer it cannot read is not retried within the round
    d.sync_now()
    assert d.sync_now()["last_result"] == "success"
    read_memory()
    assert held, "no token in numprovd's memory: the search below would look for none"
    sim.ctl.fault("malformed", match="/users/delta", count=1000)
    st = d.sync_now()
    assert st["last_result"] == "failed" and st["last_error"], st
    snmp.trapd.wait(1)
    auth = [q for q in requests(sim) if "/oauth2/v2.0/token" in q["path"]]
    assert len(auth) >= 4, auth
    assert {q.get("client_auth") for q in auth if q["status"] == 200} == \
        {"assertion" if cred == "certificate" else "secret"}, auth
    outputs = {"numprovd's output (-d)": d.output()}
    for args in (("status",), ("--json", "status"), ("--json", "ranges"), ("--json", "users"),
                 ("--json", "plan"), ("--json", "range", "london"),
                 ("--json", "user", UPN["alice"]), ("user", UPN["alice"]), ("users",)):
        r = d.ctl(*args)
        assert r.stdout, (args, r)
        outputs["numprovctl " + " ".join(args)] = (r.stdout + r.stderr).encode()
    walk = snmp.walk()
    assert walk.rc == 0 and len(walk.varbinds) > 20, walk
    outputs["snmpwalk"] = walk.stdout.encode()
    outputs["snmptrapd"] = snmp.trapd.log.read_bytes()
    for path, data in files_under(d.tmp / "db").items():
        outputs[f"inventory file {path.name}"] = data
    # what the failure says is there to be searched (the output is not empty of errors)
    assert st["last_error"].encode() in outputs["numprovctl --json status"]
    needles = forbidden(sim, held, jwts)
    leaks = [(what, needle) for what, data in outputs.items() for needle in needles
             # the inventory keeps the delta link, whose state token is base64 JSON too
             if needle in data and not (needle == b"eyJ" and what.startswith("inventory"))]
    leaks += [(what, jwt) for what, data in outputs.items() for jwt in JWT.findall(data)]
    assert not leaks, leaks


def ended_with_core(pid):
    """Reap pid, which a SIGQUIT ended; whether the kernel wrote a core of it."""
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGQUIT, status
    return os.WCOREDUMP(status)


@needs_root
def test_core_dumps_are_off(sim, probes, tmp_path):
    """The running daemon (holding the secret and a token) has RLIMIT_CORE 0, and SIGQUIT,
    whose default action is a core dump, leaves none: the kernel reports no core
    (WCOREDUMP), no core file appears. A process that allows cores does leave one here
    (when core_pattern names a file in the working directory), so the check could fail."""
    pattern = pathlib.Path("/proc/sys/kernel/core_pattern").read_text().strip()
    in_cwd = bool(pattern) and not pattern.startswith("|") and "/" not in pattern
    where = tmp_path / "cwd"
    where.mkdir()
    d = probes(cwd=where, interval=300, ranges=CTL_RANGES)
    d.idle_after(1)
    pid = d.proc.pid
    limits = pathlib.Path(f"/proc/{pid}/limits").read_text()
    assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits
    cwd = pathlib.Path(os.readlink(f"/proc/{pid}/cwd"))
    before = set(cwd.iterdir())
    os.kill(pid, signal.SIGQUIT)
    dumped = ended_with_core(pid)
    d.proc.returncode = -signal.SIGQUIT  # reaped here: the fixture sees it ended
    d.reader.join(timeout=5)
    assert not dumped, "the kernel wrote a core of numprovd"
    assert set(cwd.iterdir()) == before, sorted(set(cwd.iterdir()) - before)
    if in_cwd:
        control = subprocess.Popen(["/bin/sh", "-c", "ulimit -c unlimited; kill -QUIT $$"],
                                   cwd=where)
        assert ended_with_core(control.pid), f"no core of a shell (core_pattern {pattern!r})"
        control.returncode = -signal.SIGQUIT
        cores = [p for p in where.iterdir() if p.name.startswith("core")]
        assert cores, sorted(where.iterdir())
        for p in cores:
            p.unlink()


# ---- 5. the control socket: refusals, logged with the peer's uid -----------------------

def as_nobody(ctl, *args):
    return subprocess.run(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                           "--clear-groups", str(ctl), *args],
                          capture_output=True, text=True, timeout=60)


@needs_root
def test_a_user_outside_the_control_group_is_refused_and_logged_with_the_uid(sim, tmp_path,
                                                                            public_dir):
    """The socket's mode (0660 root:control.group) keeps others out, but the kernel's
    refusal leaves no trace in numprovd's log. Here the socket's mode is wider than it
    should be (a umask, an ACL, a chmod by hand): numprovd itself must refuse a peer
    that is neither root nor in control.group, and log the refusal with its uid."""
    d = Ctld(sim, tmp_path, sock=public_dir / "control.sock")
    try:
        d.start()
        assert grp.getgrgid(d.sock.stat().st_gid).gr_name == "root"
        os.chmod(d.sock, 0o666)
        ctl = public_dir / "numprovctl"
        shutil.copy(binary("numprovctl"), ctl)
        r = as_nobody(ctl, "-s", str(d.sock), "--json", "status")
        assert r.returncode != 0 and '"pid"' not in r.stdout, (r.stdout[:200], r.stderr)
        wait_for(lambda: any(re.search(rf"\buid {NOBODY.pw_uid}\b.*refus|refus.*\buid "
                                       rf"{NOBODY.pw_uid}\b", l) for l in d.lines), 5,
                 "the refusal logged with uid 65534:\n" + d.log())
        assert d.status()["pid"] == d.proc.pid  # root still may
    finally:
        stop_clean([d])


@needs_root
def test_a_client_refused_as_one_too_many_is_logged_with_the_uid(sim, ctld):
    """The 65th client at once is refused (control.c MAX_CLIENTS): a refusal like any
    other, so it is logged with the peer's uid (0 here)."""
    d = ctld()
    held = []
    try:
        for _ in range(64):  # control.c MAX_CLIENTS
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(d.sock))
            held.append(s)
        # connected blocking, as the others: a full listen backlog (numprovd still
        # accepting the 64) makes the connection wait, not fail with EAGAIN
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(d.sock))
        s.settimeout(10)
        held.append(s)
        reply = s.recv(4096)
        assert b"too many numprovctl clients" in reply, reply
        wait_for(lambda: any(re.search(r"\buid 0\b.*(refus|too many)", l) for l in d.lines), 5,
                 "the refusal logged with the peer's uid:\n" + d.log())
    finally:
        for s in held:
            s.close()


# ---- 6. root gives up root before the network -------------------------------------------

INET = re.compile(r"\b(?:socket|socketpair)\((?:AF_INET|AF_INET6|AF_PACKET)\b"
                  r"|\b(?:connect|sendto|sendmsg|bind)\(\d+, .*sa_family=(?:AF_INET|AF_INET6)\b")
SWITCH = re.compile(r"\b(setuid|setresuid)\((\d+)(?:, (\d+), (\d+))?\)\s+= 0\b")


@needs_root
@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_started_as_root_no_network_before_the_switch_to_the_daemon_user(world, monkeypatch,
                                                                        tmp_path):
    """The system calls of numprovd started as root (no --allow-root), traced: the first
    AF_INET socket, connect or send comes after setuid(nobody) succeeded, and one of them
    reaches the simulator (the trace saw the network)."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    # LeakSanitizer cannot run under ptrace: it would fail the exit, not the test's point
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "detect_leaks=0")
    trace = tmp_path / "strace.out"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", str(trace), "-e",
         "trace=setuid,setresuid,setgid,setresgid,setgroups,socket,socketpair,connect,sendto,"
         "sendmsg,bind", binary("numprovd"), "-f", "-c", str(world.conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=pump, args=(tracer, lines), daemon=True)
    reader.start()

    def numprovd_pid():
        """strace's child that runs numprovd (not one strace forked for itself)."""
        kids = pathlib.Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
        for pid in (kids.read_text().split() if kids.exists() else []):
            if running_numprovd(int(pid)):
                return int(pid)
        return None

    child = None
    try:
        wait_for(lambda: any("event=sync " in l for l in lines) or tracer.poll() is not None,
                 60, "the first round")
        child = numprovd_pid()
        assert child and any("event=sync " in l for l in lines), "\n".join(lines[-30:])
    finally:
        child = child or numprovd_pid()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                if child:
                    os.kill(child, sig)
                tracer.wait(timeout=40)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
        reader.join(timeout=5)
    calls = trace.read_text().splitlines()
    switch = next((i for i, c in enumerate(calls) if (m := SWITCH.search(c))
                   and int(m.group(2)) == NOBODY.pw_uid), None)
    assert switch is not None, "no setuid to nobody in the trace:\n" + "\n".join(calls[:40])
    network = [i for i, c in enumerate(calls) if INET.search(c)]
    early = [calls[i] for i in network if i < switch]
    assert not early, "network before giving up root:\n" + "\n".join(early)
    port = f"htons({world.sim.port})"
    assert any(port in calls[i] and "connect(" in calls[i] for i in network), \
        "the trace shows no connection to the simulator: it would have seen none before"
    assert not [l for l in lines if "Sanitizer" in l or "runtime error:" in l], lines[-40:]


def pump(proc, lines):
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))


# ---- 7. SNMP SETs: the example's VACM lets the trigger alone be written --------------------

def ber_value(v):
    """The BER encoding of a walked value, with its own type: a SET of what is there."""
    def unsigned(n):
        b = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")
        return b
    if v.type == "INTEGER":
        n = v.value
        return ber(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))
    if v.type in ("Counter32", "Gauge32", "Timeticks", "Counter64"):
        tag = {"Counter32": 0x41, "Gauge32": 0x42, "Timeticks": 0x43, "Counter64": 0x46}[v.type]
        return ber(tag, unsigned(v.value))
    if v.type == "STRING":
        return ber(0x04, v.value.encode())
    if v.type == "Hex-STRING":
        return ber(0x04, v.value)
    if v.type == "OID":
        return ber_oid(v.value)
    raise AssertionError(f"no encoding for {v}")


# Writable objects of other MIBs in the same snmpd: a write community that reached them
# could give itself more (VACM, targets) or change what the box says of itself.
OTHER_WRITABLE = [
    ("1.3.6.1.2.1.1.4.0", "s", "mallory"),                       # sysContact
    ("1.3.6.1.2.1.1.5.0", "s", "mallory"),                       # sysName
    ("1.3.6.1.2.1.1.6.0", "s", "mallory"),                       # sysLocation
    ("1.3.6.1.6.3.16.1.2.1.5.2.4.116.101.115.116", "i", "4"),    # vacmSecurityToGroupStatus
    ("1.3.6.1.6.3.16.1.4.1.9.3.102.111.111.0.2.1", "i", "4"),    # vacmAccessStatus
    ("1.3.6.1.6.3.12.1.2.1.9.3.102.111.111", "i", "4"),          # snmpTargetAddrRowStatus
    ("1.3.6.1.4.1.2021.100.1.0", "i", "1"),                      # UCD versionTag area
]


def test_every_set_but_the_trigger_is_refused_by_the_example_vacm(sim, numprovd, snmp):
    """Every object the write community can read, set to the value and type it has, and
    writable objects of other MIBs: noAccess, the answer of snmpd's VACM (the subagent's
    own refusal would be notWritable), so the documented configuration is what refuses.
    Nothing starts; the trigger alone is accepted, not even together with another object."""
    d = snmp_start(sim, numprovd, snmp, interval=300)
    trigger = scalar("numprovSyncTrigger")
    walked = snmp.walk(community=snmp.rw).varbinds + \
        snmp.walk("1.3.6.1.2.1.1", community=snmp.rw).varbinds
    objects = [v for v in walked if v.oid != trigger]
    assert len(objects) > 60 and any(v.oid.startswith(MIB) for v in objects), walked
    n = ctl_status(d)["syncs"]
    t0 = time.time()
    refused = {v.oid: ERROR_STATUS.get(s, s) for v in objects
               if (s := raw_set(snmp, snmp.rw, v.oid, ber_value(v))) != 6}
    assert not refused, f"not refused with noAccess: {refused}"
    for oid, type_, value in OTHER_WRITABLE:
        r = snmp.set(oid, type_, value)
        assert r.rc != 0 and r.error == "noAccess", (oid, r)
    # the read-only community may not start a sync; the trigger in one PDU with another
    # object is refused whole
    assert raw_set(snmp, snmp.ro, trigger, ber(0x02, b"\x01")) == 6
    r = snmp.tool("snmpset", trigger, "i", 1, "1.3.6.1.2.1.1.4.0", "s", "mallory",
                  community=snmp.rw)
    assert r.rc != 0 and r.error == "noAccess", r
    time.sleep(1.5)
    assert [q for q in requests(sim) if q["time"] >= t0] == []
    assert ctl_status(d)["syncs"] == n
    assert snmp.get("1.3.6.1.2.1.1.4.0").value != "mallory"
    assert not [l for l in d.lines if "numprovSyncTrigger set" in l]
    # and the trigger alone is written
    assert raw_set(snmp, snmp.rw, trigger, ber(0x02, b"\x01")) == 0
    wait_for(lambda: ctl_status(d)["syncs"] > n, 30, "the triggered round")


# ---- 8. one line per log line ------------------------------------------------------------

C0 = "".join(chr(c) for c in range(1, 0x20)) + "\x7f"
NASTY = {  # attribute: value, as the directory holds it (no NUL: Graph strings carry none)
    "city": "Lon\ndon\r\nevent=assign user=mallory@x number=+442080000009 range=london" + C0,
    # lone surrogates: JSON's way to carry text that is not UTF-8; then 10 kB
    "officeLocation": "\ud800 \udc85 \x1b[2J\x1b[31mred\x1b]0;title\x07" + "\u00e9" * 5000,
    "department": "x" * 10000,
    "jobTitle": "tab\there\vvt\fff\x1c\x1d\x1e",
    "companyName": "\r",
}
# a request's bytes: raw control bytes are not JSON, so they come escaped as JSON asks,
# and bytes that are not UTF-8 come raw (JSON strings are not checked for it)
REQUEST_ARGS = [b"mal\\nlory\\r\\u001b[31m\\u0007\\u007f" + b"\xff\xfe\xed\xa0\x80\xc3(",
                b"\\n" * 3000, b"y" * 60000]


def nasty_run(sim, probes, attributes, args):
    """A round over a user with these attributes, then each argument in assign, unassign,
    auto, user, reserve and range requests, then another round; the daemon."""
    uid = add_user(sim, "nasty", id="00000000-0000-4000-8000-00000000bad1",
                   usageLocation="GB", **attributes)
    sim.ctl.settings(op_polls=0)
    d = probes("-d", interval=300, ranges=CTL_RANGES)
    d.idle_after(1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(d.sock))
    f = s.makefile("rb")
    for arg in args:
        for command, extra in (("assign", b', "+442080000005"'), ("unassign", b""),
                               ("auto", b""), ("user", b""), ("reserve", b""),
                               ("range", b"")):
            s.sendall(b'{"command": "' + command.encode() + b'", "args": ["' + arg + b'"'
                      + extra + b"]}\n")
            reply = json.loads(f.readline().decode("utf-8", "replace"))  # echoes bytes
            assert reply["ok"] is False, (command, reply)
    s.close()
    d.sync_now()  # the user decided again (a full round is not needed: the log is)
    d.ctl("user", uid)
    time.sleep(0.5)
    return d, uid


def lines_of(d):
    data = d.output()
    assert data.endswith(b"\n"), data[-200:]
    return data[:-1].split(b"\n")


def test_every_log_line_stays_one_line_whatever_attributes_and_requests_carry(sim, probes):
    """A user whose attributes carry every control byte, a forged event line, terminal
    escapes and 10 kB values, and control requests carrying escaped control bytes,
    invalid UTF-8 and 60 kB arguments: every line numprovd printed (debug included) starts
    with its time stamp and holds no control byte; the forged event is inside the user's
    line; the long values are clipped."""
    d, uid = nasty_run(sim, probes, NASTY, REQUEST_ARGS)
    lines = lines_of(d)
    bad = [l[:200] for l in lines if not STAMP.match(l) or re.search(rb"[\x00-\x1f\x7f]", l)]
    assert not bad, bad
    assert not [l for l in lines if re.search(rb"^\S+ \S+ (\[\w+\] )?event=assign user=mallory", l)]
    mine = [l for l in lines if uid.encode() in l and b"event=unmatched" in l]
    assert mine, lines[-20:]
    assert b'city="Lon\\x0adon\\x0d\\x0aevent=assign user=mallory@x' in mine[0], mine[0][:300]
    assert b"\\x1b[2J\\x1b[31mred\\x1b]0;title\\x07" in mine[0], mine[0][:400]
    assert max(len(l) for l in lines) < 4 * 2048 + 100  # src/common/log.h LOG_MSG_MAX, escaped
    logged = [l for l in lines if b"[control] uid 0: assign mal" in l]
    assert logged and b"mal\\x0alory\\x0d\\x1b[31m\\x07\\x7f" in logged[0], logged
    assert d.proc.poll() is None


def is_line_break_or_control(ch):
    """A character a Unicode-aware reader takes for a line break or a control: C0, DEL,
    C1 (U+0080-U+009F: NEL, CSI, ...), U+2028 and U+2029; and raw bytes 0x80-0x9f that
    are not part of a UTF-8 character (the 8-bit C1 controls)."""
    o = ord(ch)
    return (unicodedata.category(ch) in ("Cc", "Zl", "Zp")
            or 0xdc80 <= o <= 0xdc9f)  # surrogateescape of a lone 0x80-0x9f byte


def test_no_c1_control_or_unicode_line_separator_reaches_a_log_line(sim, probes):
    """NEL (U+0085), LS (U+2028) and PS (U+2029) end a line for Unicode-aware readers
    (str.splitlines, SIEM parsers), and CSI (U+009B, or the byte 0x9b) starts a terminal
    escape in xterm and VTE: from a user's attribute or a request, numprovd must escape
    them as it does C0 controls."""
    attributes = {"city": "Lon\u0085event=assign user=mallory@x\u2028b\u2029c\u009b31mred",
                  "officeLocation": "\u0080\u009f"}
    args = [b"mal\xc2\x85lory\x85\x9b31m\xe2\x80\xa8"]
    d, uid = nasty_run(sim, probes, attributes, args)
    text = [l.decode("utf-8", "surrogateescape") for l in lines_of(d)]
    assert [l for l in text if uid in l and "event=unmatched" in l], text[-20:]
    assert [l for l in text if "uid 0: assign mal" in l], text[-20:]
    bad = [ascii(l[:200]) for l in text if any(is_line_break_or_control(c) for c in l)]
    assert not bad, bad
    assert all(len(l.splitlines()) == 1 for l in text)
