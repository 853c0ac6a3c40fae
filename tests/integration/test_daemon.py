"""numprovd as a process: signals, reload, systemd notification, daemon mode."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

from conftest import AS_ROOT
from conftest import binary, gtl, running_numprovd, wait_for
from conftest import Numprovd


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
    at_stop = sim.ctl.truth()["users"]
    d2 = numprovd()
    d2.wait_syncs(1)
    ranges = d2.ranges()
    assert all(r["pending"] == 0 for r in ranges.values())
    for name in ["alice", "dave"]:
        nums = sim.ctl.truth()["users"].get(gtl.IDS[name], [])
        assert len(nums) == 1
        # what went out before the stop is kept, not replaced by a second assignment
        assert at_stop.get(gtl.IDS[name]) in (None, [], nums), (name, at_stop, nums)


def test_systemd_notification(sim, tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(20)
    d = Numprovd(sim, tmp_path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    log = open(tmp_path / "numprovd.log", "w")
    d.proc = subprocess.Popen([binary("numprovd"), *AS_ROOT, "-f", "-c", str(d.conf)], env=env,
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
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(d.conf), "-p", str(pidfile)],
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


def test_daemon_mode_lock_file_and_pidfile_name_the_daemon(sim, tmp_path):
    """Without -f numprovd forks after it has locked the database: the lock file must
    then name the process that holds the lock and runs, not the parent that exited."""
    d = Numprovd(sim, tmp_path)
    pidfile = tmp_path / "numprovd.pid"
    lockfile = tmp_path / "db" / "numprovd.lock"
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(d.conf), "-p", str(pidfile)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    while time.time() < deadline and not (pidfile.exists() and pidfile.read_text().strip()):
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    try:
        assert running_numprovd(pid), f"pid {pid} from the pidfile is not a running numprovd"
        assert d.ctl("--json", "status").returncode == 0
        # the control socket's own answer says which process it is
        assert json.loads(d.ctl("--json", "status").stdout)["pid"] == pid
        assert int(lockfile.read_text()) == pid, (lockfile.read_text(), pid)
        # a second numprovd on the same database is refused, naming the running one
        r2 = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(d.conf)],
                            capture_output=True, text=True, timeout=30)
        assert r2.returncode != 0
        assert f"in use by another numprovd (pid {pid})" in r2.stderr, r2.stderr
        r3 = subprocess.run([binary("numprovd"), *AS_ROOT, "-f", "-c", str(d.conf)],
                            capture_output=True, text=True, timeout=30)
        assert r3.returncode != 0
        assert f"(pid {pid})" in r3.stdout + r3.stderr, r3.stdout + r3.stderr
        assert running_numprovd(pid)
        assert int(lockfile.read_text()) == pid  # the refused ones left it alone
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 40
    while time.time() < deadline and (pidfile.exists() or running_numprovd(pid)):
        time.sleep(0.1)
    assert not pidfile.exists() and not running_numprovd(pid)


def test_sighup_reads_the_trust_anchors_again(sim, tmp_path):
    """The trust anchors are parsed once, not per connection: a ca_file that was not
    readable when numprovd started (deployed after it) is taken at the next SIGHUP,
    with no restart, and the rounds succeed from then on."""
    ca = tmp_path / "late-ca.pem"
    ca.write_text("not yet\n")
    d = Numprovd(sim, tmp_path, interval=300)
    d.conf.write_text(d.conf.read_text().replace(f'ca_file = "{sim.certs}/ca.pem";',
                                                 f'ca_file = "{ca}";'))
    d.start()
    try:
        deadline = time.time() + 15  # a token request refused for want of anchors
        while time.time() < deadline and not any("token request" in l and "failed" in l
                                                 for l in d.lines):
            time.sleep(0.1)
        assert any(f"cannot load the trust anchors in {ca}" in l for l in d.lines)
        assert d.syncs() == 0  # the first round waits for a token it cannot get
        ca.write_text(pathlib.Path(f"{sim.certs}/ca.pem").read_text())
        d.proc.send_signal(signal.SIGHUP)
        # the token request's next attempt uses the new anchors: the round succeeds
        d.wait_event("sync", timeout=40)
        assert d.events("sync")[0]["result"] == "success", d.lines[-20:]
        assert d.events("sync")[0]["full"] == "yes"
    finally:
        d.stop()


def test_a_reload_during_an_outage_lets_the_waiting_request_go_at_once(sim, tmp_path):
    """A reload that takes the simulator's CA out of the trust anchors is obeyed at once:
    no connection or TLS session from before is used again (libcurl's cache of the first
    store, its kept connections and resumable sessions would each have kept trusting
    it). Graph is then out of reach, and the round's request waits a growing step
    between attempts; a reload that puts the anchors right lets it go at once, not at
    the end of its step; an answer, even a 503, ends the outage and says so once."""
    d = Numprovd(sim, tmp_path, interval=300)
    good = f'ca_file = "{sim.certs}/ca.pem";'
    # a certificate, but not the one that issued the simulator's: every handshake fails
    bad = f'ca_file = "{sim.certs}/app.pem";'
    d.start()

    def graph():
        return json.loads(d.ctl("--json", "status").stdout)["graph"]
    try:
        d.wait_syncs(1)
        start = graph()["attempts"]  # nothing on the wire now
        d.conf.write_text(d.conf.read_text().replace(good, bad))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("configuration reloaded" in l for l in d.lines), what="reload")
        # past the first seconds after the reload: the connections of the first round,
        # idle and kept, are refused by their age, not merely passed over for a new one
        time.sleep(3)
        assert d.ctl("sync").returncode == 0
        # six attempts without an answer: the next waits a step of 32 s (+-25 %)
        g = wait_for(lambda: (g := graph())["attempts"] - start >= 6 and g, timeout=90,
                     what="six attempts without an answer")
        assert g["attempts"] - start < 8, g  # seen before the client gives up
        assert "certificate" in g["last_error"], g
        assert g["failing"] and g["next_try_in"] >= 15, g
        assert d.syncs() == 1  # the round still waits on its request
        told = [l for l in d.lines if "warning [graph]" in l]
        sim.ctl.fault("503", match="/users/delta", count=1)
        d.conf.write_text(d.conf.read_text().replace(bad, good))
        t0 = time.time()
        d.proc.send_signal(signal.SIGHUP)
        sync = d.wait_syncs(2, timeout=60)[-1]
        took = time.time() - t0
        assert sync["result"] == "success", sync
        # went before its step would have ended (its own retry after the 503 is 1 s)
        assert took < g["next_try_in"] - 5, (took, g)
        # the 503 was an answer: the outage is over, said once
        assert sum("Graph answers again" in l for l in d.lines) == 1, d.lines[-30:]
        assert len(told) <= 3, told  # the outage itself: said once, not per attempt
    finally:
        d.stop()


def test_without_f_a_start_up_failure_reaches_the_terminal(sim, tmp_path):
    """numprovd without -f waits until it runs: a control socket it cannot open is one
    line on stderr and exit status 1, not a silent 0 from a parent long gone."""
    d = Numprovd(sim, tmp_path)
    (tmp_path / "a-file").write_text("")  # the socket's directory cannot be made here
    d.conf.write_text(d.conf.read_text().replace(
        f'socket = "{tmp_path}/control.sock"', f'socket = "{tmp_path}/a-file/control.sock"'))
    pidfile = tmp_path / "numprovd.pid"
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(d.conf), "-p", str(pidfile)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numprovd: cannot open the control socket"), lines
    assert "a-file" in lines[0]
    try:
        assert not pidfile.exists()  # a pid file only once it runs
        # the parent returned once the child had closed the inventory and gone
        assert not subprocess.run(["pgrep", "-f", str(d.conf)], capture_output=True).stdout
    finally:  # a regression that starts it anyway leaves nothing running
        subprocess.run(["pkill", "-KILL", "-f", str(d.conf)])


def test_status_shows_graph_failing_at_once_and_exits_1(sim, numprovd):
    """While Graph answers 503s, a round sits in its retries for minutes before it
    fails; numprovctl status says so at once: since when, the error in one line, the
    next try, and exit status 1. Once Graph answers, it is healthy again (0)."""
    sim.ctl.settings(op_polls=0)
    d = numprovd(interval=300)
    deadline = time.time() + 30
    while time.time() < deadline and d.syncs() < 1:
        time.sleep(0.1)
    r = d.ctl("status")
    assert r.returncode == 0, r.stdout
    assert re.search(r"^graph:\s+ok$", r.stdout, re.M), r.stdout
    sim.ctl.fault("503", match="/users/delta", count=1000)
    t0 = time.time()
    assert d.ctl("sync").returncode == 0
    deadline = time.time() + 10
    while time.time() < deadline:
        st = json.loads(d.ctl("--json", "status").stdout)
        if st["graph"]["failing"]:
            break
        time.sleep(0.1)
    assert st["graph"]["failing"], st
    assert time.time() - t0 < 5  # at once, not when the round gives up
    assert st["running"] and st["last_result"] == "success"  # the round is still trying
    g = st["graph"]
    assert g["last_error"].startswith("GET /v1.0/users/delta: HTTP 503"), g
    assert "\n" not in g["last_error"] and len(g["last_error"]) < 256
    assert g["failing_since"] and g["failing_for"] >= 0
    assert g["next_try_in"] is not None and 0 <= g["next_try_in"] <= 60
    r = d.ctl("status")
    assert r.returncode == 1
    assert re.search(r"^graph:\s+failing since ", r.stdout, re.M), r.stdout
    assert re.search(r"^graph error:\s+GET /v1.0/users/delta: HTTP 503", r.stdout, re.M)
    sim.ctl.clear_faults()
    deadline = time.time() + 90
    while time.time() < deadline and d.ctl("status").returncode != 0:
        time.sleep(0.5)
    r = d.ctl("status")
    assert r.returncode == 0 and re.search(r"^graph:\s+ok$", r.stdout, re.M), r.stdout


def test_under_systemd_f_does_not_write_the_journal_twice(sim, tmp_path):
    """systemd names the journal stream in JOURNAL_STREAM; there numprovd -f leaves its
    lines to syslog (which the journal has) instead of writing each one twice."""
    d = Numprovd(sim, tmp_path)
    rd, wr = os.pipe()
    st = os.fstat(wr)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    proc = subprocess.Popen([binary("numprovd"), *AS_ROOT, "-f", "-c", str(d.conf)], stdout=wr,
                            stderr=wr, env=env)
    os.close(wr)
    try:
        deadline = time.time() + 15
        while time.time() < deadline and not d.ctl("--json", "status").stdout:
            time.sleep(0.1)
        assert d.ctl("--json", "status").stdout  # it runs and answers
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
    out = os.read(rd, 65536).decode(errors="replace")
    os.close(rd)
    assert "running:" not in out and "event=" not in out, out[:2000]
    assert proc.returncode == 0


def test_a_failed_start_leaves_another_instances_pid_file(sim, tmp_path):
    """B fails to start (A answers on the control socket): B's parent returns once B has
    cleaned up, and A's pid file is still there: a pid file is removed only by its
    writer."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Numprovd(sim, tmp_path / "a")
    b = Numprovd(sim, tmp_path / "b")
    b.conf.write_text(b.conf.read_text().replace(f'socket = "{b.sock}"', f'socket = "{a.sock}"'))
    pidfile = tmp_path / "shared.pid"
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(a.conf), "-p", str(pidfile)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        r = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(b.conf), "-p", str(pidfile)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "control socket" in r.stderr, r
        # B has exited by now (its parent waited for it), and left A's pid file alone
        assert not subprocess.run(["pgrep", "-f", str(b.conf)], capture_output=True).stdout
        assert pidfile.exists() and int(pidfile.read_text()) == pid
        assert running_numprovd(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 40
        while time.time() < deadline and running_numprovd(pid):
            time.sleep(0.1)


def test_a_pid_file_that_cannot_be_written_is_a_failed_start(sim, tmp_path):
    d = Numprovd(sim, tmp_path)
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-c", str(d.conf), "-p",
                        str(tmp_path / "no-such-dir" / "numprovd.pid")],
                       capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 1, r
        assert r.stderr.startswith("numprovd: cannot write the pid file "), r.stderr
        assert not subprocess.run(["pgrep", "-f", str(d.conf)], capture_output=True).stdout
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(d.conf)])
