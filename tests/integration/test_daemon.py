"""numprovd as a process: signals, reload, systemd notification, daemon mode."""
import json
import os
import signal
import socket
import subprocess
import time

from conftest import binary, gtl
from test_provision import RANGES, UPN, Numprovd, add_user, holder, numprovd  # noqa: F401


def test_sighup_refuses_a_bad_config_and_keeps_the_old(sim, numprovd):
    d = numprovd()
    d.wait_syncs(1)
    good = d.conf.read_text()
    d.conf.write_text(good.replace('mode = "enforce"', 'mode = "sometimes"'))
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and not any("reload refused" in l for l in d.lines):
        time.sleep(0.1)
    refused = [l for l in d.lines if "reload refused" in l]
    assert refused and 'sync.mode is "sometimes"' in refused[0]
    assert d.proc.poll() is None
    # numprovctl cannot read the broken file: it is given the socket
    r = subprocess.run([binary("numprovctl"), "-s", str(d.sock), "--json", "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"enforce"' in r.stdout  # the old mode is in force
    # a good new config with one more range is taken
    d.conf.write_text(good.replace("ranges = (", 'ranges = (\n  { name = "extra"; '
                                   'type = "direct-routing"; first = "+441910000000"; '
                                   'last = "+441910000099"; match = "city = \'Newcastle\'"; },'))
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and "extra" not in d.ranges():
        time.sleep(0.2)
    assert d.ranges()["extra"]["size"] == 100
    assert d.ranges()["london"]["assigned"] >= 1  # counts survive the reload


def test_sigterm_finishes_what_is_in_flight(sim, numprovd):
    sim.ctl.settings(op_polls=2)
    d = numprovd()
    # wait until assignNumber went out, then stop at once
    deadline = time.time() + 20
    while time.time() < deadline and not [
            q for q in sim.ctl.log()["requests"] if "assignNumber" in q["path"]]:
        time.sleep(0.05)
    assert d.stop() == 0
    assert any("stopped" in l for l in d.lines)
    truth = sim.ctl.truth()["numbers"]
    d2 = numprovd()
    d2.wait_syncs(1)
    ranges = d2.ranges()
    assert all(r["pending"] == 0 for r in ranges.values())
    for name in ["alice", "dave"]:
        nums = sim.ctl.truth()["users"].get(gtl.IDS[name], [])
        assert len(nums) == 1


def test_systemd_notification(sim, tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(20)
    d = Numprovd(sim, tmp_path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    log = open(tmp_path / "numprovd.log", "w")
    d.proc = subprocess.Popen([binary("numprovd"), "-f", "-c", str(d.conf)], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        assert rx.recv(256) == b"READY=1"
        d.proc.send_signal(signal.SIGHUP)
        assert rx.recv(256) == b"RELOADING=1"
        assert rx.recv(256) == b"READY=1"
        d.proc.send_signal(signal.SIGTERM)
        assert rx.recv(256) == b"STOPPING=1"
        assert d.proc.wait(timeout=40) == 0, (tmp_path / "numprovd.log").read_text()[-3000:]
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        rx.close()


def test_daemon_mode_writes_a_pidfile(sim, tmp_path):
    d = Numprovd(sim, tmp_path)
    pidfile = tmp_path / "numprovd.pid"
    r = subprocess.run([binary("numprovd"), "-c", str(d.conf), "-p", str(pidfile)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    while time.time() < deadline and not pidfile.exists():
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)  # running, detached from us
        assert d.ctl("status").returncode == 0
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 40
    while time.time() < deadline and pidfile.exists():
        time.sleep(0.1)
    assert not pidfile.exists()
