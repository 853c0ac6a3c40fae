"""numprovd started as root without systemd: it becomes daemon.user/daemon.group before
it opens the inventory or talks to Graph, refuses to stay root unless told, keeps no
core and no secret lying in memory; numprovctl as root leaves no root-owned files in the
inventory. Real processes, a real unprivileged user (nobody:nogroup), real files."""
import grp
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

from conftest import CTL_RANGES, binary, gtl, running_numprovd, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start numprovd as root")

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


class World:
    """A directory nobody may enter (0755), outside pytest's root-only tmp: the config
    (0640 root:nogroup), a 0600 secret of nobody's, the simulator's CA, and paths for the
    database and the control socket that do not exist yet."""

    def __init__(self, sim):
        self.sim = sim
        self.top = pathlib.Path(tempfile.mkdtemp(prefix="np-privs-"))
        self.top.chmod(0o755)
        self.ca = self.top / "ca.pem"
        shutil.copy(sim.certs / "ca.pem", self.ca)
        self.ca.chmod(0o644)
        self.secret = self.top / "client-secret"
        self.secret.write_text(gtl.SECRET + "\n")
        self.secret.chmod(0o600)
        os.chown(self.secret, NOBODY.pw_uid, NOBODY.pw_gid)
        self.db = self.top / "db"
        self.run = self.top / "run"
        self.sock = self.run / "control.sock"
        self.conf = self.top / "numprovd.conf"
        self.write()
        self.proc, self.lines = None, []

    def write(self, user="nobody", group=None):
        group = group or NOGROUP.gr_name
        self.conf.write_text(
            f'tenant: {{ id = "{gtl.DOMAIN}"; client_id = "{gtl.CLIENT_ID}";\n'
            f'  client_secret_file = "{self.secret}";\n'
            f'  login_url = "{self.sim.url}"; graph_url = "{self.sim.url}";\n'
            f'  ca_file = "{self.ca}"; timeout = 5; }};\n'
            'sync: { interval = 300; retry_min = 1; retry_max = 4; };\n'
            f'database: {{ path = "{self.db}"; durable = false; }};\n'
            f'control: {{ socket = "{self.sock}"; group = "{NOGROUP.gr_name}"; }};\n'
            f'daemon: {{ user = "{user}"; group = "{group}"; }};\n'
            'snmp: { enabled = false; };\n'
            f'ranges = ({CTL_RANGES});\n')
        self.conf.chmod(0o640)
        os.chown(self.conf, 0, NOGROUP.gr_gid)

    def start(self, *args):
        self.lines = []
        self.proc = subprocess.Popen([binary("numprovd"), "-f", "-c", str(self.conf), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.reader = threading.Thread(target=self._pump, args=(self.proc, self.lines),
                                       daemon=True)
        self.reader.start()
        return self.proc

    @staticmethod
    def _pump(proc, lines):
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    def read(self):
        return list(self.lines)

    def wait_line(self, pattern, timeout=30):
        def seen():
            return any(re.search(pattern, l) for l in self.read())
        wait_for(seen, timeout=timeout, what=f"a line matching {pattern!r}:\n"
                 + "\n".join(self.lines[-30:]))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=40)
        if self.proc:
            self.reader.join(timeout=5)
        bad = [l for l in self.lines if "Sanitizer" in l or "runtime error:" in l]
        assert not bad, "\n".join(bad)

    def ctl(self, *args):
        return subprocess.run([binary("numprovctl"), "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=60)

    def foreign_files(self, directory):
        """Paths under directory not owned by nobody."""
        return sorted(str(p) for p in [directory, *directory.rglob("*")]
                      if p.lstat().st_uid != NOBODY.pw_uid)

    def remove(self):
        self.stop()
        shutil.rmtree(self.top, ignore_errors=True)


@pytest.fixture
def world(sim):
    w = World(sim)
    yield w
    w.remove()


def status_ids(pid):
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def test_started_as_root_it_becomes_daemon_user_before_the_inventory_and_graph(world):
    world.start()
    world.wait_line(r"event=sync ")
    pid = world.proc.pid
    ids = status_ids(pid)
    assert ids["Uid"] == [str(NOBODY.pw_uid)] * 4, ids["Uid"]
    assert ids["Gid"] == [str(NOGROUP.gr_gid)] * 4, ids["Gid"]
    assert set(ids["Groups"]) <= {str(g) for g in os.getgrouplist("nobody", NOGROUP.gr_gid)}
    assert ids["CapEff"] == ["0000000000000000"] and ids["CapPrm"] == ["0000000000000000"]
    # no core: RLIMIT_CORE 0, and not dumpable (the kernel then gives /proc/PID to root)
    limits = pathlib.Path(f"/proc/{pid}/limits").read_text()
    assert re.search(r"Max core file size\s+0\s+0\s", limits), limits
    assert os.stat(f"/proc/{pid}/status").st_uid == 0
    # what root made for it, and everything numprovd wrote since, is nobody's
    st = world.db.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (NOBODY.pw_uid, NOGROUP.gr_gid, 0o750)
    st = world.run.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (NOBODY.pw_uid, 0o755)
    st = world.sock.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY.pw_uid, NOGROUP.gr_gid, 0o660)
    assert world.foreign_files(world.db) == []
    # the switch is logged before the first Graph request of the first round
    lines = world.read()
    switched = next(i for i, l in enumerate(lines) if "running as nobody:" in l)
    first_sync = next(i for i, l in enumerate(lines) if "event=sync " in l)
    assert switched < first_sync
    assert not any("Graph" in l or "graph" in l for l in lines[:switched]), lines[:switched]
    # numbers were given: the service user can do the daemon's whole job
    r = world.ctl("--json", "status")
    assert r.returncode == 0, r.stderr
    r = world.ctl("users")
    assert r.returncode == 0 and "+4420800000" in r.stdout, r.stdout


def test_numprovctl_as_root_with_the_daemon_stopped_leaves_no_root_files(world):
    world.start()
    world.wait_line(r"event=sync ")
    world.stop()
    for p in world.db.glob("__db.*"):  # let numprovctl make the regions anew
        p.unlink()
    r = world.ctl("ranges")
    assert r.returncode == 0, r.stderr
    assert "london" in r.stdout
    assert list(world.db.glob("__db.*")), "numprovctl did not open the environment"
    assert world.foreign_files(world.db) == []
    # and the daemon starts again on that inventory
    world.start()
    world.wait_line(r"event=sync ")
    world.stop()
    assert world.foreign_files(world.db) == []


def test_daemon_user_root_is_refused_without_allow_root(world):
    world.write(user="root", group="root")
    r = subprocess.run([binary("numprovd"), "-f", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78, r
    assert "daemon.user 'root' is root: numprovd does not run as root" in r.stderr
    assert not world.db.exists()
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and "daemon.user 'root' is root" in r.stderr, r


def test_a_missing_user_or_group_is_a_configuration_error(world):
    for user, group, what in (("no-such-user-np", None, "there is no user 'no-such-user-np'"),
                              ("nobody", "no-such-group-np",
                               "there is no group 'no-such-group-np'")):
        world.write(user=user, group=group)
        for mode in ("-f", "-t"):
            r = subprocess.run([binary("numprovd"), mode, "-c", str(world.conf)],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 78 and what in r.stderr, (mode, r)
        # detached, the reason reaches the terminal too
        r = subprocess.run([binary("numprovd"), "-c", str(world.conf)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 78 and what in r.stderr, r


def test_allow_root_stays_root_and_says_so(world):
    world.start("--allow-root")
    world.wait_line(r"event=sync ")
    assert status_ids(world.proc.pid)["Uid"] == ["0"] * 4
    assert any("running as root (--allow-root)" in l for l in world.read())
    world.stop()


def test_check_as_root_reads_the_files_as_daemon_user(world):
    """numprovd -t run by root checks what nobody can read, as the daemon will be nobody;
    the directories root makes at start need only their parents."""
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    os.chown(world.secret, 0, 0)  # root's 0600 secret: the daemon could not read it
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78
    assert re.search(rf"{world.conf}:\d+: tenant.client_secret_file: cannot open "
                     rf"{world.secret}: Permission denied", r.stderr), r.stderr
    r = subprocess.run([binary("numprovd"), "--allow-root", "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_pid_file_is_roots_and_appears_only_once_the_daemon_runs(world):
    """Started as root without -f: the pid file is written by root (daemon.user cannot
    forge a pid root would signal), under its name only once the daemon runs, with the
    daemon's pid; the daemon holds it read-only and locked, so `pkill -L -F` trusts it
    while the daemon runs and refuses it once it has stopped. A failed start leaves no
    file, not even a temporary one."""
    pidfile = world.top / "numprovd.pid"  # a directory only root may write
    # -c relative to the directory it was started in, which the daemon leaves
    r = subprocess.run([os.path.abspath(binary("numprovd")), "-c", world.conf.name, "-p", str(pidfile)],
                       capture_output=True, text=True, timeout=60, cwd=world.top)
    assert r.returncode == 0, r.stderr
    st = pidfile.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644)
    pid = int(pidfile.read_text())
    try:
        assert running_numprovd(pid)
        assert status_ids(pid)["Uid"] == [str(NOBODY.pw_uid)] * 4
        assert int((world.db / "numprovd.lock").read_text()) == pid
        held = []
        for n in os.listdir(f"/proc/{pid}/fd"):
            try:  # descriptors come and go while it syncs
                if "numprovd.pid" in os.readlink(f"/proc/{pid}/fd/{n}"):
                    flags = int(re.search(r"flags:\s+(\d+)", pathlib.Path(
                        f"/proc/{pid}/fdinfo/{n}").read_text()).group(1), 8)
                    held.append(flags & 0o3)
            except (FileNotFoundError, AttributeError):
                continue
        assert held == [os.O_RDONLY], held  # one descriptor, read-only
        assert subprocess.run(["pkill", "-0", "-L", "-F", str(pidfile)]).returncode == 0
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not running_numprovd(pid), timeout=40, what="numprovd to stop")
    assert int(pidfile.read_text()) == pid  # root's, left as it was; a start replaces it
    # no longer locked: not trusted, even when its pid is now another live process's
    other = subprocess.Popen(["sleep", "30"])
    try:
        pidfile.write_text(f"{other.pid}\n")
        assert subprocess.run(["pkill", "-0", "-F", str(pidfile)]).returncode == 0
        assert subprocess.run(["pkill", "-0", "-L", "-F", str(pidfile)],
                              capture_output=True).returncode != 0
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in world.top.iterdir() if p.name.startswith("numprovd.pid")) \
        == ["numprovd.pid"]
    pidfile.unlink()
    # a start that fails after the fork (the configuration nobody cannot read) leaves nothing
    world.conf.chmod(0o600)
    r = subprocess.run([binary("numprovd"), "-c", str(world.conf), "-p", str(pidfile)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78  # a configuration problem, found after the fork
    assert "not readable by user nobody" in r.stderr, r.stderr
    assert [p.name for p in world.top.iterdir() if p.name.startswith("numprovd.pid")] == []


def test_no_directory_is_made_as_root_where_others_could_move_it(world):
    """Root makes the inventory's directory only below directories no other user can
    change. Below a third user's directory it refuses, in -t and at start, and makes
    nothing; below the daemon user's own directory numprovd makes it itself, as that user."""
    other = pwd.getpwnam("daemon")
    shared = world.top / "shared"
    shared.mkdir()
    os.chown(shared, other.pw_uid, other.pw_gid)
    world.db = shared / "db"
    world.write()
    want = f"will not create {world.db} as root: {shared} may be changed by users other " \
        "than root"
    for mode in ("-t", "-f"):
        r = subprocess.run([binary("numprovd"), mode, "-c", str(world.conf)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode in (1, 78) and want in r.stderr, (mode, r.stderr)
    assert not world.db.exists()
    own = world.top / "own"
    own.mkdir(mode=0o755)
    os.chown(own, NOBODY.pw_uid, NOGROUP.gr_gid)
    world.db = own / "db"
    world.write()
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    world.start()
    world.wait_line(r"event=sync ")
    world.stop()
    assert world.db.stat().st_uid == NOBODY.pw_uid and world.foreign_files(world.db) == []


def test_check_names_the_line_of_a_bad_daemon_user_and_a_foreign_control_group(world):
    world.write(user="no-such-user-np")
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    line = 1 + next(i for i, l in enumerate(world.conf.read_text().splitlines())
                    if l.startswith("daemon:"))
    assert r.returncode == 78
    assert r.stderr.startswith(f"{world.conf}:{line}: daemon.user: there is no user"), r.stderr
    # numprovd, once nobody, can give the socket only to a group of nobody's
    world.write()
    world.conf.write_text(world.conf.read_text().replace(
        f'group = "{NOGROUP.gr_name}"; }};\ndaemon', 'group = "adm"; };\ndaemon'))
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78
    assert "control.group 'adm': user nobody is not a member" in r.stderr, r.stderr


def memory_holds(pid, needles):
    """Which of needles occur in the process's writable memory (heap, stacks, anonymous
    maps; regions over 1 GiB, the sanitizers' shadow, are left out). Read in 1 MiB
    pieces that overlap by the longest needle."""
    found, keep = set(), max(len(n) for n in needles)
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if "rw" not in parts[1] or hi - lo > 1 << 30:
                continue
            tail = b""
            for at in range(lo, hi, 1 << 20):
                try:
                    mem.seek(at)
                    piece = tail + mem.read(min(1 << 20, hi - at))
                except OSError:
                    break
                found.update(n for n in needles if n in piece)
                tail = piece[-keep:]
    return found


def test_the_token_request_body_is_wiped_after_use(world):
    """The form numprovd posts to the token endpoint (client_secret=...) is gone from its
    memory once the token is in; only the secret itself is kept, for the next renewal."""
    world.start()
    world.wait_line(r"event=sync ")
    time.sleep(0.5)
    form = ("client_secret=" + urllib.parse.quote(gtl.SECRET, safe="")).encode()
    found = memory_holds(world.proc.pid, [gtl.SECRET.encode(), form])
    assert gtl.SECRET.encode() in found  # the secret is there (kept for renewals) ...
    assert form not in found  # ... the request that carried it is not


def test_a_configuration_daemon_user_cannot_read_is_refused(world):
    """The daemon reads numprovd.conf again at each SIGHUP as daemon.user: a file only root
    can read would break the first reload, so -t and the start refuse it now."""
    os.chown(world.conf, 0, 0)
    world.conf.chmod(0o600)
    r = subprocess.run([binary("numprovd"), "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78
    assert f"{world.conf}: not readable by user nobody: Permission denied" in r.stderr, r.stderr
    r = subprocess.run([binary("numprovd"), "-f", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78
    assert f"{world.conf}: not readable by user nobody: Permission denied" in r.stderr, r.stderr
    assert not world.db.exists() or world.foreign_files(world.db) == []
    r = subprocess.run([binary("numprovd"), "--allow-root", "-t", "-c", str(world.conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
