#!/usr/bin/python3
"""tests/reliability/outage.py: Graph out of reach for a long time, then back; then Entra
refusing the client secret until the administrator writes the new one.

  /usr/bin/python3 tests/reliability/outage.py --build DIR [--phase 1200] [--users 300]
      [--secret-phase 600] [--interval 60] [--json FILE]

Issue 11 point 3. Run as root: it re-runs itself in a private mount namespace under
tests/integration/syslog_ns.sh (a real rsyslogd on its own /dev/log), where /etc/hosts
and /etc/resolv.conf are files of its own. numprovd (the build's, durable commits, the
SNMP subagent on) reaches Graph and Entra (the simulator, real TLS, its certificate for
graph.outage.test from a CA of the run's own) by name, through a TCP relay of the script:

  up        the name resolves to 127.0.0.1, the relay passes bytes to the simulator;
            access tokens last TOKEN-LIFETIME s (renewed at half of it), so the
            sign-in endpoint is out of reach and probed during the outage too;
  refused   PHASE s: the relay closes its listening socket and cuts every connection
            (RST): connection refused;
  dns       PHASE s: the name is gone from /etc/hosts and resolv.conf names a server
            that does not answer (127.0.0.1:53, nothing there): the name cannot be
            resolved (libcurl's 60 s cache of the address meets a closed port);
  tls       PHASE s: the name resolves again, the relay answers TLS itself with a
            self-signed certificate for the same name: the peer is not trusted;
  back      the relay passes bytes again; nothing is triggered: numprovd must find its
            way back by itself within CATCHUP s.
  secret    SECRET-PHASE s: Entra (the simulator) takes a new client secret, access tokens
            are revoked; numprovd's secret is refused (invalid_client, AADSTS7000215).
            Then the new secret is written into numprovd's client_secret_file (no
            signal, no restart): numprovd must use it by itself.

Before the outage the tenant's USERS licensed users are onboarded; then JOINERS more are
added and a round started, so that the outage cuts onboarding in the middle; during each
phase more joiners and leavers (deleted, unlicensed) are made in the directory.

Checked:
  - numprovd never ends; `numprovctl --json status` and SNMP GETs (numprovSyncState,
    numprovSyncLastResult, numprovSyncLastError through snmpd) answer every
    SAMPLE s during the outage within 2 s; status exits 1 and names the failure
    (graph.failing, graph.last_error) and SNMP's numprovSyncLastResult shows failed;
  - Graph attempts per minute (numprovd's own count, `graph.attempts` in status,
    checked against the relay's count of TLS handshakes in the tls phase): stated, at
    most MAX_FIRST in each of an outage's first two minutes (the requests under way, then
    one probe a step of the backoff) and at most MAX_PER_MIN in every minute after;
  - syslog: exactly one event=sync_failed and one event=sync_recovered per outage; the
    warnings numprovd logged during an outage, counted (at most WARN_MAX in all);
    Entra's error (AADSTS7000215) in the log; no secret, old or new, anywhere in the
    syslog, numprovd's output, `numprovctl --json status` or the SNMP answers;
  - snmptrapd received exactly one numprovSyncFailed and one numprovSyncRecovered per
    outage;
  - after each outage, without a trigger: every licensed, enabled user of the directory
    holds exactly one number of the ranges, nobody else holds one, no number is on two
    users, and the inventory equals Teams for every number of the ranges.

Prints one summary (JSON with --json); exits 0 when every check holds, 1 when one does
not, 2 when it could not run."""
import argparse
import json
import os
import pathlib
import random
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(TOP / "bench"))
from benchlib import (AS_ROOT, MCOEV, BenchError, cleanup, note, range_conf,  # noqa: E402
                      sku_e5, start, start_graphsim, stop, tenant, user, user_ids)
sys.path.insert(0, str(TOP / "tests" / "graphsim"))
sys.path.insert(0, str(TOP / "tests" / "integration"))
sys.path.insert(0, str(HERE))
from rellib import SANITIZER, SITES, compare_inventory, holders, site_range  # noqa: E402
from simctl import SimClient  # noqa: E402
import snmpkit  # noqa: E402

NAME = "graph.outage.test"
TENANT_ID = "6e5c0b1a-0000-4000-8000-0000000044a9"
DOMAIN = "outage.onmicrosoft.com"
CLIENT_ID = "0a7a0000-1111-4222-8333-444455556666"
OLD_SECRET = "Old-Secret~0utage.Value_1"
NEW_SECRET = "New-Secret~0utage.Value_2"
MAX_FIRST = 30         # Graph attempts in each of an outage's first two minutes
MAX_PER_MIN = 3        # and in any minute after (one probe a step of 45-75 s, with a token)
WARN_MAX = 5           # numprovd's warning-or-worse syslog lines in a whole outage
FAILED, SUCCESS = 4, 2  # numprovSyncLastResult


# ---- certificates ------------------------------------------------------------------------------
def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"openssl {' '.join(args)}: {r.stderr.strip()}")


def make_certs(d):
    """ca.pem; server.pem/key for NAME and 127.0.0.1 signed by it; rogue.pem/key, a
    self-signed certificate for the same name (what the tls phase shows)."""
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=outage test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,"
        "keyEncipherment\nextendedKeyUsage=serverAuth\n"
        f"subjectAltName=DNS:{NAME},IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", "server.key",
            "-out", "server.csr", "-subj", f"/CN={NAME}", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-sha256", "-days", "30", "-set_serial", "0x1234", "-extfile", "server.ext",
            "-out", "server.pem", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
            "-keyout", "rogue.key", "-out", "rogue.pem", "-subj", f"/CN={NAME}",
            "-addext", f"subjectAltName=DNS:{NAME}", cwd=d)


# ---- the relay ---------------------------------------------------------------------------------
class Relay:
    """127.0.0.1:port -> the simulator, in one of the modes up / refused / tls."""

    def __init__(self, target_port, rogue_ctx):
        self.target = ("127.0.0.1", target_port)
        self.rogue = rogue_ctx
        self.lock = threading.Lock()
        self.conns = set()
        self.mode = "up"
        self.handshakes = []        # monotonic times of TLS handshakes in the tls mode
        self.accepted = 0
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.stopped = False
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.listener = s

    def _accept_loop(self):
        while not self.stopped:
            s = self.listener
            if s is None:
                time.sleep(0.05)
                continue
            try:
                c, _ = s.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            with self.lock:
                mode = self.mode
            if mode == "tls":
                threading.Thread(target=self._rogue, args=(c,), daemon=True).start()
            elif mode == "up":
                threading.Thread(target=self._pipe, args=(c,), daemon=True).start()
            else:
                self._rst(c)

    @staticmethod
    def _rst(c):
        try:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()
        except OSError:
            pass

    def _rogue(self, c):
        self.handshakes.append(time.monotonic())
        c.settimeout(10)
        try:
            t = self.rogue.wrap_socket(c, server_side=True)
            t.recv(1)
            t.close()
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    def _pipe(self, c):
        try:
            u = socket.create_connection(self.target, timeout=10)
        except OSError:
            self._rst(c)
            return
        pair = (c, u)
        with self.lock:
            cut = self.mode != "up"   # the mode changed while this one connected
            if not cut:
                self.conns.add(pair)
        if cut:
            for s in pair:
                self._rst(s)
            return
        try:
            while True:
                r, _, _ = select.select([c, u], [], [], 1.0)
                if self.stopped:
                    break
                done = False
                for s in r:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        done = True
                        break
                    (u if s is c else c).sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.discard(pair)
            for s in pair:
                self._rst(s)

    def set_mode(self, mode):
        """up | refused | tls; every open connection is cut when leaving up."""
        with self.lock:
            self.mode = mode
            conns = list(self.conns)
        if mode == "refused":
            if self.listener:
                self.listener.close()
                self.listener = None
        elif self.listener is None:
            self._listen()
        if mode != "up":
            for pair in conns:
                for s in pair:
                    self._rst(s)

    def close(self):
        self.stopped = True
        self.set_mode("refused")


# ---- helpers -------------------------------------------------------------------------------------
def write_in_place(path, text):
    """The bind-mounted file keeps its inode: rewritten, not replaced."""
    with open(path, "r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


def status(numprovctl, conf):
    t0 = time.monotonic()
    r = subprocess.run([numprovctl, "-c", str(conf), "--json", "status"], capture_output=True,
                       text=True, timeout=30)
    took = time.monotonic() - t0
    try:
        st = json.loads(r.stdout)
    except ValueError:
        st = None
    return r.returncode, st, took, r.stdout + r.stderr


SYSLOG = re.compile(r"(?P<fac>[a-z0-9]+)\.(?P<sev>[a-z]+) (?P<prog>[^\s\[]*)\[[^\]]*\]: ?"
                    r"(?P<msg>.*)")
WARN = {"emerg", "alert", "crit", "err", "warning"}


def syslog_lines(path):
    out = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for raw in text.splitlines():
        m = SYSLOG.fullmatch(raw)
        if m and m.group("prog") == "numprovd":
            out.append((m.group("sev"), m.group("msg")))
    return out


class Run:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.failures = []
        self.result = {"phases_s": args.phases, "secret_phase_s": args.secret_phase,
                       "users": args.users, "interval_s": args.interval, "work": str(work)}
        self.rng = random.Random(args.seed)
        self.size = max(200, 4 * args.users)
        self.next_user = args.users
        self.state = {}    # uid -> "active" | "gone" | "unlicensed"

    def fail(self, msg):
        note("FAIL: " + msg)
        self.failures.append(msg)

    # ---- set-up ----
    def setup(self):
        a, w = self.args, self.work
        make_certs(w / "certs")
        rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        rogue.load_cert_chain(w / "certs" / "rogue.pem", w / "certs" / "rogue.key")
        # the name, and a resolver that does not answer: files of the run's own
        self.hosts = w / "hosts"
        self.hosts_up = f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n"
        self.hosts.write_text(self.hosts_up)
        resolv = w / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        for src, dst in ((self.hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")):
            subprocess.run(["mount", "--bind", str(src), dst], check=True)
        ids = user_ids(a.users, a.seed)
        users = [self.new_user(i, uid) for i, uid in enumerate(ids)]
        fixture = w / "tenant.json"
        t = tenant(TENANT_ID, DOMAIN, CLIENT_ID, [sku_e5()], users)
        t["app"]["client_secret"] = OLD_SECRET
        fixture.write_text(json.dumps(t))
        self.sim_proc, _, url = start_graphsim(w, w / "certs", fixture, 100, 1, 60)
        self.ctl = SimClient(url, str(w / "certs" / "ca.pem"))
        # tokens renewed during the outage too: the sign-in endpoint is probed as well
        self.ctl.settings(token_lifetime=a.token_lifetime)
        self.relay = Relay(int(url.rsplit(":", 1)[1]), rogue)
        self.trapd = snmpkit.Snmptrapd(w / "snmptrapd").start()
        self.snmpd = snmpkit.Snmpd(w / "snmpd", trap_port=self.trapd.port)
        self.snmpd.start()
        self.secret = w / "client-secret"
        self.secret.write_text(OLD_SECRET + "\n")
        self.secret.chmod(0o600)
        base = f"https://{NAME}:{self.relay.port}"
        ranges = [range_conf(*site_range(i, self.size), f"city = '{SITES[i][0]}'")
                  for i in range(len(SITES))]
        self.conf = w / "numprovd.conf"
        self.conf.write_text(
            f'tenant: {{ id = "{DOMAIN}"; client_id = "{CLIENT_ID}";\n'
            f'  client_secret_file = "{self.secret}";\n'
            f'  login_url = "{base}"; graph_url = "{base}";\n'
            f'  ca_file = "{w}/certs/ca.pem"; timeout = 30; }};\n'
            f'sync: {{ mode = "enforce"; interval = {a.interval}; full_interval = 86400;\n'
            f'  parallel = 8; retry_min = 60; retry_max = 14400; }};\n'
            f'database: {{ path = "{w}/db"; durable = true; }};\n'
            f'control: {{ socket = "{w}/control.sock"; group = "root"; }};\n'
            f'snmp: {{ enabled = true; agentx_socket = "unix:{self.snmpd.agentx}"; '
            f'ping_interval = 5; traps = true; }};\n'
            'log: { level = "info"; };\n'
            'ranges = (\n' + ",\n".join(ranges) + '\n);\n')
        self.numprovd = a.numprovd or str(pathlib.Path(a.build) / "numprovd")
        self.numprovctl = str(pathlib.Path(a.build) / "numprovctl")
        self.out_path = w / "numprovd.out"
        self.out = open(self.out_path, "w")
        self.proc = start([self.numprovd, *AS_ROOT, "-f", "-c", self.conf],
                          stdout=self.out, stderr=subprocess.STDOUT)

    def new_user(self, i, uid):
        self.state[uid] = "active"
        return user(i, uid, DOMAIN, SITES[i % len(SITES)][0], "Office 1", "Staff", "SPE_E5")

    # ---- the directory ----
    def join(self, n):
        ids = user_ids(n, 1_000_000 + self.next_user)
        for uid in ids:
            self.ctl.add_user(self.new_user(self.next_user, uid))
            self.next_user += 1
        return ids

    def leave(self, n):
        live = sorted(u for u, s in self.state.items() if s == "active")
        for uid in self.rng.sample(live, min(n, len(live))):
            how = self.rng.choice(("soft", "hard", "unlicense"))
            if how == "soft":
                self.ctl.soft_delete(uid)
            elif how == "hard":
                self.ctl.hard_delete(uid)
            else:
                self.ctl.unlicense(uid, plans=[MCOEV], remove=True)
            self.state[uid] = "gone" if how != "unlicense" else "unlicensed"

    def settled(self):
        """None when the tenant is as the directory says, else what is not."""
        per_user, two = holders(self.ctl.truth(), self.size)
        if two:
            return f"users with two numbers: {list(two.items())[:3]}"
        missing = [u for u, s in self.state.items() if s == "active" and u not in per_user]
        extra = [u for u, s in self.state.items() if s != "active" and u in per_user]
        if missing or extra:
            return f"{len(missing)} licensed without a number, {len(extra)} leavers holding one"
        return None

    def alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"numprovd ended with {self.proc.returncode}")

    def wait_settled(self, limit, what):
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < limit:
            self.alive()
            last = self.settled()
            if last is None:
                rc, st, _, _ = status(self.numprovctl, self.conf)
                if rc == 0 and st and not st.get("running"):
                    return time.monotonic() - t0
            time.sleep(1)
        self.fail(f"{what}: not caught up within {limit} s: {last}")
        return None

    # ---- one outage ----
    def sample(self, phase, samples):
        rc, st, took, raw = status(self.numprovctl, self.conf)
        g = (st or {}).get("graph", {})
        snmp = self.snmpd.get(snmpkit.scalar("numprovSyncState"),
                              snmpkit.scalar("numprovSyncLastResult"),
                              snmpkit.scalar("numprovSyncLastError"), timeout=2)
        vals = snmp.dict() if snmp.rc == 0 else {}
        samples.append({"phase": phase, "t": time.monotonic(), "rc": rc, "took": took,
                        "failing": g.get("failing"), "error": g.get("last_error"),
                        "attempts": g.get("attempts"), "snmp_ok": snmp.rc == 0,
                        "snmp_took": snmp.elapsed,
                        "snmp_result": (vals.get(snmpkit.scalar("numprovSyncLastResult"))
                                        or snmpkit.Value("", "", None)).value,
                        "raw": raw})

    def outage(self, phases, samples):
        """Each (name, seconds, start, end) in turn, sampling; joiners and leavers in
        each phase."""
        for name, secs, begin, _ in phases:
            note(f"phase {name}: {secs} s")
            begin()
            t_end = time.monotonic() + secs
            self.join(max(1, self.args.users // 20))
            self.leave(max(1, self.args.users // 40))
            while time.monotonic() < t_end:
                self.alive()
                self.sample(name, samples)
                time.sleep(max(0.0, min(self.args.sample, t_end - time.monotonic())))
        for _, _, _, end in phases:
            end()

    def check_phase_samples(self, samples, causes, trip=150):
        """Every sample answered in time; each phase's late half names its cause in
        status; SNMP shows the round failed in the late half of each phase that ends
        TRIP s or more into the outage (a round fails once a request has used its
        attempts: about two minutes)."""
        t_out = samples[0]["t"] if samples else 0
        for s in samples:
            if s["took"] > 2 or not s["snmp_ok"] or s["snmp_took"] > 2:
                self.fail(f"{s['phase']}: numprovctl took {s['took']:.2f} s, SNMP "
                          f"{'answered' if s['snmp_ok'] else 'did not answer'} in "
                          f"{s['snmp_took']:.2f} s")
                break
        for phase, cause in causes.items():
            ps = [s for s in samples if s["phase"] == phase]
            late = ps[len(ps) // 2:]          # once the failure had time to show
            # numprovd tries at most once a minute (more or less a quarter): a phase
            # shorter than 150 s may pass without an attempt, or with the name still
            # in libcurl's cache (60 s); the first phase starts with cut connections
            seen = any(s["failing"] and s["rc"] == 1 and re.search(cause, s["error"] or "",
                                                                    re.I) for s in late)
            self.result.setdefault("causes_seen", {})[phase] = seen
            if phase != "refused" and ps and ps[-1]["t"] - ps[0]["t"] < 150:
                continue
            if not any(s["failing"] and s["rc"] == 1 and re.search(cause, s["error"] or "",
                                                                    re.I) for s in late):
                self.fail(f"{phase}: status never said /{cause}/: "
                          f"{[(s['rc'], s['error']) for s in late][-3:]}")
            if ps and ps[-1]["t"] - t_out >= trip \
                    and not any(s["snmp_result"] == FAILED for s in late):
                self.fail(f"{phase}: numprovSyncLastResult never showed failed(4)")

    def rates(self, samples, label):
        """Attempts per minute over the outage, from numprovd's count."""
        pts = [(s["t"], s["attempts"]) for s in samples if s["attempts"] is not None]
        if len(pts) < 2:
            return {}
        t0 = pts[0][0]
        per_min = []
        m = 0
        while t0 + 60 * (m + 1) <= pts[-1][0] + 1e-6:
            a = [c for t, c in pts if t <= t0 + 60 * m]
            b = [c for t, c in pts if t <= t0 + 60 * (m + 1)]
            per_min.append(b[-1] - a[-1])
            m += 1
        total = pts[-1][1] - pts[0][1]
        span = (pts[-1][0] - pts[0][0]) / 60
        out = {"attempts": total, "minutes": round(span, 1),
               "per_minute_mean": round(total / span, 2) if span else None,
               "per_minute_max_first_two": max(per_min[:2]) if per_min else None,
               "per_minute_max_after_two": max(per_min[2:]) if len(per_min) > 2 else None,
               "per_minute": per_min}
        if per_min and max(per_min[:2]) > MAX_FIRST:
            self.fail(f"{label}: {max(per_min[:2])} attempts in one of the first two "
                      f"minutes (bound {MAX_FIRST})")
        if len(per_min) > 2 and max(per_min[2:]) > MAX_PER_MIN:
            self.fail(f"{label}: {max(per_min[2:])} attempts in a minute after the first "
                      f"two (bound {MAX_PER_MIN}): {per_min}")
        return out

    def main(self):
        a = self.args
        self.setup()
        t0 = time.monotonic()
        took = self.wait_settled(a.catchup + a.users, "onboarding")
        self.result["onboarding_s"] = round(took or -1, 1)
        if took is None:
            return
        # onboarding cut in the middle: joiners, a round, Teams slowed down
        self.ctl.fault("latency", match="/v1.0/", ms=150)
        joiners = self.join(a.joiners)
        self.proc.send_signal(10)     # SIGUSR1
        time.sleep(1.5)
        self.ctl.clear_faults()
        per_user, _ = holders(self.ctl.truth(), self.size)
        # the outage must cut onboarding in the middle: joiners still without a number
        self.result["joiners_unnumbered_at_cut"] = sum(1 for u in joiners
                                                       if u not in per_user)
        if not self.result["joiners_unnumbered_at_cut"]:
            self.fail("every joiner was numbered before the outage began: nothing was cut")
        log_mark = len(syslog_lines(self.work / "syslog.log"))
        samples = []
        hosts_down = "127.0.0.1 localhost\n"
        secs = [int(x) for x in a.phases.split(",")]
        phases = [
            ("refused", secs[0], lambda: self.relay.set_mode("refused"), lambda: None),
            ("dns", secs[1], lambda: write_in_place(self.hosts, hosts_down), lambda: None),
            ("tls", secs[2], lambda: (write_in_place(self.hosts, self.hosts_up),
                                      self.relay.set_mode("tls")),
             lambda: self.relay.set_mode("up")),
        ]
        tls_before = len(self.relay.handshakes)
        t_out = time.monotonic()
        self.outage(phases, samples)
        back = time.monotonic()
        self.result["outage_s"] = round(back - t_out, 1)
        self.check_phase_samples(samples, {"refused": r"refused|connect",
                                           "dns": r"resolve",
                                           "tls": r"certificate|SSL|peer"})
        self.result["outage_rates"] = self.rates(samples, "outage")
        tls = [s for s in samples if s["phase"] == "tls" and s["attempts"] is not None]
        if len(tls) >= 2:
            mine = tls[-1]["attempts"] - tls[0]["attempts"]
            relay = sum(1 for t in self.relay.handshakes[tls_before:]
                        if tls[0]["t"] < t <= tls[-1]["t"])
            self.result["tls_phase_attempts"] = {"numprovd": mine, "relay_handshakes": relay}
            if abs(mine - relay) > 2:
                self.fail(f"tls phase: numprovd counted {mine} attempts, the relay saw "
                          f"{relay} handshakes")
        took = self.wait_settled(a.catchup, "after the outage")
        self.result["outage_catchup_s"] = round(took, 1) if took is not None else None
        self.check_inventory("after the outage")
        lines = syslog_lines(self.work / "syslog.log")[log_mark:]
        self.check_syslog(lines, "outage")
        self.check_traps(1, "outage")

        # ---- the secret ----
        log_mark = len(syslog_lines(self.work / "syslog.log"))
        samples2 = []
        note(f"secret: Entra takes a new one, {a.secret_phase} s")
        self.ctl.rotate_secret(NEW_SECRET)
        self.ctl.expire_tokens()
        self.join(max(1, a.users // 20))
        self.proc.send_signal(10)
        t_end = time.monotonic() + a.secret_phase
        self.leave(max(1, a.users // 40))
        while time.monotonic() < t_end:
            self.alive()
            self.sample("secret", samples2)
            time.sleep(max(0.0, min(a.sample, t_end - time.monotonic())))
        self.check_phase_samples(samples2, {"secret": r"invalid_client|AADSTS7000215"})
        self.result["secret_rates"] = self.rates(samples2, "secret")
        note("secret: the new one written to the file")
        tmp = self.secret.with_name("client-secret.new")
        tmp.write_text(NEW_SECRET + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.secret)
        took = self.wait_settled(a.catchup, "after the new secret")
        self.result["secret_catchup_s"] = round(took, 1) if took is not None else None
        self.check_inventory("after the new secret")
        lines = syslog_lines(self.work / "syslog.log")[log_mark:]
        self.check_syslog(lines, "secret")
        if not any("AADSTS7000215" in m for sev, m in lines if sev in WARN):
            self.fail("secret: Entra's error (AADSTS7000215) is not in the log as a warning")
        self.check_traps(2, "secret")
        self.check_secrets(samples + samples2)
        self.result["total_s"] = round(time.monotonic() - t0, 1)

    def check_syslog(self, lines, label):
        events = [m for _, m in lines if m.startswith("event=")]
        failed = [m for m in events if m.startswith("event=sync_failed ")]
        recovered = [m for m in events if m.startswith("event=sync_recovered ")]
        warns = [(sev, m) for sev, m in lines if sev in WARN]
        self.result[f"{label}_syslog"] = {"lines": len(lines), "warnings": len(warns),
                                          "sync_failed": len(failed),
                                          "sync_recovered": len(recovered),
                                          "warning_lines": [m[:160] for _, m in warns][:12]}
        if len(failed) != 1 or len(recovered) != 1:
            self.fail(f"{label}: {len(failed)} sync_failed and {len(recovered)} "
                      f"sync_recovered lines in syslog (one each expected)")
        if len(warns) > WARN_MAX:
            self.fail(f"{label}: {len(warns)} warning lines: {[m[:100] for _, m in warns]}")

    def check_traps(self, n, label):
        got = [x.trap for x in self.trapd.notifications()]
        f = got.count(snmpkit.NOTIFICATIONS["numprovSyncFailed"])
        r = got.count(snmpkit.NOTIFICATIONS["numprovSyncRecovered"])
        self.result[f"{label}_traps"] = {"numprovSyncFailed": f, "numprovSyncRecovered": r}
        if f != n or r != n:
            self.fail(f"{label}: {f} numprovSyncFailed and {r} numprovSyncRecovered "
                      f"received so far ({n} each expected)")

    def check_inventory(self, label):
        per_user, _ = holders(self.ctl.truth(), self.size)
        mismatch = compare_inventory(self.numprovctl, self.conf, self.ctl.truth(), self.size)
        self.result[f"holders_{label.replace(' ', '_')}"] = len(per_user)
        if mismatch:
            self.fail(f"{label}: inventory differs from Teams on {len(mismatch)}: "
                      f"{mismatch[:5]}")

    def check_secrets(self, samples):
        texts = {"syslog": (self.work / "syslog.log").read_text(errors="replace"),
                 "numprovd output": self.out_path.read_text(errors="replace"),
                 "status": "\n".join(s["raw"] for s in samples),
                 "snmp": self.snmpd.tool("snmpwalk", snmpkit.MIB).stdout}
        for where, text in texts.items():
            for s in (OLD_SECRET, NEW_SECRET):
                if s in text:
                    self.fail(f"a client secret appears in {where}")

    def finish(self):
        stop(self.proc, wait=60)
        self.out.close()
        rc = self.proc.returncode
        self.result["numprovd_exit"] = rc
        if rc != 0:
            self.fail(f"numprovd stopped with status {rc}")
        bad = [l for l in self.out_path.read_text(errors="replace").splitlines()
               if any(s in l for s in SANITIZER)]
        if bad:
            self.fail(f"sanitizer: {bad[:3]}")


def inner(args):
    work = pathlib.Path(args.inner)
    run = Run(args, work)
    code = 0
    try:
        run.main()
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        run.fail(f"could not run: {e}")
        code = 2
    finally:
        try:
            if hasattr(run, "proc"):
                run.finish()
        except Exception as e:  # noqa: BLE001 -- reported, never hidden
            run.fail(f"stopping numprovd: {e}")
        for name in ("relay", "snmpd", "trapd"):
            obj = getattr(run, name, None)
            if obj:
                (obj.close if name == "relay" else obj.stop)()
        cleanup()
    run.result["failures"] = run.failures
    run.result["result"] = "pass" if not run.failures else "fail"
    (work / "result.json").write_text(json.dumps(run.result, indent=1))
    return code or (1 if run.failures else 0)


def outer(args):
    if os.geteuid() != 0:
        print("outage.py: must run as root (mount namespace, /etc/hosts of its own)",
              file=sys.stderr)
        return 2
    for tool in ("unshare", "rsyslogd", "snmpd", "snmptrapd", "openssl"):
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            print(f"outage.py: {tool} is not installed", file=sys.stderr)
            return 2
    work = pathlib.Path(tempfile.mkdtemp(prefix="numprov-outage-"))
    budget = int(sum(int(x) for x in args.phases.split(",")) + args.secret_phase + 3 * args.catchup + args.users + 600)
    argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--inner", str(work)]
    for k, v in vars(args).items():
        if k in ("inner", "json", "keep") or v is None:
            continue
        argv += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--fork", "--",
                        "/bin/bash", str(TOP / "tests" / "integration" / "syslog_ns.sh"),
                        str(work), str(budget), *argv])
    try:
        result = json.loads((work / "result.json").read_text())
    except (FileNotFoundError, ValueError):
        print(f"outage.py: no result (exit {r.returncode}); see {work}", file=sys.stderr)
        return 2
    result["syslog_ns_exit"] = r.returncode
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text)
    if result["result"] == "pass" and r.returncode == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["result"] == "pass" and r.returncode == 0 else (
        2 if r.returncode == 2 else 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", required=True, help="directory with numprovd and numprovctl")
    p.add_argument("--numprovd", help="the numprovd to run (default: the build's), e.g. "
                   "the valgrind wrapper of tests/integration/conftest.py")
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--joiners", type=int, default=60, help="added just before the outage")
    p.add_argument("--phases", default="1200,1200,1200",
                   help="seconds of the refused, dns and tls phases")
    p.add_argument("--secret-phase", type=int, default=600)
    p.add_argument("--interval", type=int, default=60, help="numprovd's sync.interval")
    p.add_argument("--catchup", type=int, default=300,
                   help="seconds numprovd is given to catch up after an outage")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--token-lifetime", type=int, default=600,
                   help="the simulator's access-token lifetime (renewed at half of it)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="write the summary here too")
    p.add_argument("--inner", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.build = str(pathlib.Path(args.build).resolve())
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
