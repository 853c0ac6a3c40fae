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
        self.conf.write_text(
            TENANT + f'database: {{ path = "{self.db}"; durable = false; }};\n'
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
