"""Shared fixtures: the built programs and a scratch configuration."""
import os
import pathlib
import signal
import subprocess
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("NUMPROV_BUILD", TOP / "build" / "test"))

TENANT = """tenant: { id = "contoso.onmicrosoft.com";
  client_id = "11111111-2222-3333-4444-555555555555";
  client_secret_file = "/etc/numprov/client-secret"; };
"""


def binary(name):
    path = BUILD / name
    if not path.exists():
        pytest.fail(f"{path} is not built (set NUMPROV_BUILD)")
    return str(path)


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
        self.proc = subprocess.Popen([binary("numprovd"), "-f", "-c", str(self.conf)],
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
