"""A full disk under numprovd: an error it survives and recovers from, never a crash.

Berkeley DB keeps its regions in files mapped into memory; if they had holes, a full
filesystem would turn a store into one of them into SIGBUS inside the library. Here the
database lives on a small tmpfs in a private mount namespace (diskfull_ns.sh under
`unshare --mount --propagation private`; numprovd, dd and invcheck join it with nsenter),
the tmpfs is filled up while users are being onboarded, then emptied again. The Graph
simulator and the control socket stay outside, on 127.0.0.1 and the host filesystem."""
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import AS_ROOT
from conftest import BUILD, binary
from conftest import Numprovd, add_user, gtl

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / "diskfull_ns.sh"
SIZE = "128m"  # the region files take ~45 MB of it, allocated when numprovd opens them
JOINERS = [f"joiner{i}" for i in range(6)]


def _tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mount namespace, tmpfs"),
    pytest.mark.skipif(not _tool("unshare") or not _tool("nsenter"),
                       reason="unshare and nsenter (util-linux) are not installed"),
]


class Namespace:
    """diskfull_ns.sh: a tmpfs on WORK/mnt that only processes entered with nsenter see."""

    def __init__(self, work, size=SIZE, seconds=600):
        self.work = work
        self.mnt = work / "mnt"
        self.proc = subprocess.Popen(
            [_tool("unshare"), "--mount", "--propagation", "private", "--fork", "--",
             "/bin/bash", str(SCRIPT), str(work), size, str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        pid_file = work / "ns.pid"
        deadline = time.time() + 20
        while not pid_file.exists() or not pid_file.read_text().strip():
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"diskfull_ns.sh did not start: {self.proc.communicate()}")
            time.sleep(0.05)
        self.pid = pid_file.read_text().strip()

    def cmd(self, *args):
        return [_tool("nsenter"), "--target", self.pid, "--mount", "--", *map(str, args)]

    def sh(self, script, check=True):
        r = subprocess.run(self.cmd("/bin/sh", "-c", script), capture_output=True, text=True,
                           timeout=120)
        assert not check or r.returncode == 0, f"{script}: {r.stdout}{r.stderr}"
        return r

    def fill(self):
        """Fill the tmpfs to the last page; return the bytes written."""
        f = self.mnt / "filler"
        self.sh(f"dd if=/dev/zero of={f} bs=1M 2>/dev/null; "
                f"dd if=/dev/zero of={f} bs=4k oflag=append conv=notrunc 2>/dev/null; "
                f"dd if=/dev/zero of={f} bs=512 oflag=append conv=notrunc 2>/dev/null; true")
        avail = self.sh(f"df -P -k {self.mnt} | awk 'NR == 2 {{ print $4 }}'").stdout.strip()
        assert avail == "0", f"{self.mnt} still has {avail} kB free"
        return int(self.sh(f"stat -c %s {f}").stdout)

    def unfill(self):
        self.sh(f"rm -f {self.mnt}/filler")

    def stop(self):
        (self.work / "stop").touch()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class NsNumprovd(Numprovd):
    """numprovd -f with its database on the namespace's tmpfs."""

    def __init__(self, ns, sim, tmp, **kw):
        super().__init__(sim, tmp, **kw)
        self.ns = ns
        self.db = ns.mnt / "db"
        text = self.conf.read_text()
        assert f'path = "{tmp}/db"' in text
        self.conf.write_text(text.replace(f'path = "{tmp}/db"', f'path = "{self.db}"'))

    def start(self):
        # nsenter joins the mount namespace and execs: the child is numprovd itself
        self.proc = subprocess.Popen(self.ns.cmd(binary("numprovd"), *AS_ROOT, "-f", "-c", self.conf),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def alive(self):
        assert self.proc.poll() is None, (
            f"numprovd died (status {self.proc.returncode}: -7 is SIGBUS, which an ASan "
            "build reports as \"BUS\" and exit 1):\n" + "\n".join(self.lines[-40:]))


@pytest.fixture
def ns(tmp_path):
    n = Namespace(tmp_path)
    yield n
    n.stop()


@pytest.fixture
def nsd(sim, ns, tmp_path):
    made = []

    def make(**kw):
        d = NsNumprovd(ns, sim, tmp_path, **kw)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop(signal.SIGKILL)


def assert_inventory_is(ns, d, got):
    """The inventory as the next start finds it (invcheck, numprovd stopped): consistent,
    and every number assigned to the user Teams shows holding it (got: user -> number)."""
    r = subprocess.run(ns.cmd(BUILD / "tests" / "invcheck", "-u", d.db), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "consistent"
    held = {}
    for line in r.stdout.splitlines()[1:]:
        _, uid, number, state = line.split()
        held[uid] = (number, state)
    assert held == {uid: (number, "assigned") for uid, number in got.items()}, (held, got)


def numbers_in_teams(sim):
    """user id -> number, as Teams has them."""
    return {v["target"]: n for n, v in sim.ctl.truth()["numbers"].items()
            if v.get("target")}


def wait_for(what, pred, d, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        d.alive()
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s:\n" + "\n".join(d.lines[-60:]))


def test_full_disk_fails_the_round_cleanly_and_recovers(sim, ns, nsd):
    d = nsd(interval=2)
    d.wait_syncs(1)
    before = numbers_in_teams(sim)
    assert before, "the tenant's users got no numbers before the disk filled"

    # the disk fills up, then joiners arrive
    ns.fill()
    first_full = d.syncs()
    ids = {name: add_user(sim, name, city="London") for name in JOINERS}
    assert d.ctl("sync").returncode == 0

    def busy_rounds():
        # rounds with users to decide: each of them needs the disk
        rounds = [e for e in d.events("sync")[first_full:]
                  if e.get("users") != "0" or e.get("decided", "0") != "0"]
        return rounds if len(rounds) >= 2 else None

    rounds = wait_for("2 sync rounds with work on the full disk", busy_rounds, d, timeout=60)
    d.alive()
    nospace = [line for line in d.lines if "no space left on device" in line]
    assert nospace, "no log line says the disk is full:\n" + "\n".join(d.lines[-40:])
    assert str(d.db) in nospace[0], nospace[0]
    for ev in rounds:
        assert ev["result"] in ("failed", "partial", "failure"), f"a round on the full disk: {ev}"
        assert ev.get("error"), f"a round that failed for lack of space gives no reason: {ev}"

    # space comes back: within a few intervals every joiner has a number
    ns.unfill()
    assert d.ctl("sync").returncode == 0

    def all_numbered():
        got = numbers_in_teams(sim)
        return got if all(uid in got for uid in ids.values()) else None

    got = wait_for("every joiner numbered after the disk emptied", all_numbered, d, timeout=60)
    d.wait_syncs(len(d.events("sync")) + 1, timeout=30)
    # the link never moved past changes it could not record: no full sync was needed
    assert all(e["full"] == "no" for e in d.events("sync")[first_full:]), d.events("sync")
    d.alive()
    assert any("can be written again" in line for line in d.lines)
    for uid, number in before.items():
        assert got.get(uid) == number, f"{uid} had {number} before the disk filled"
    assert len(set(got.values())) == len(got), f"a number on two users: {got}"
    assert d.stop() == 0

    # the inventory, as the next start finds it: consistent, and it agrees with Teams
    assert_inventory_is(ns, d, got)


def test_a_page_that_cannot_be_recorded_fails_the_round_and_keeps_the_link(sim, ns, nsd):
    """40 joiners arrive on a full disk: their page cannot be recorded, so the round fails,
    the delta link stays, and once space is back the next delta round (not a full sync)
    reads the same changes again and numbers them."""
    d = nsd(interval=2)
    d.wait_syncs(1)
    ns.fill()
    first = d.syncs()
    ids = [add_user(sim, f"pager{i}", city="Leeds" if i % 2 else "York") for i in range(10)]
    ids += [add_user(sim, f"pagel{i}", city="London") for i in range(30)]
    assert d.ctl("sync").returncode == 0

    def page_failed():
        return [e for e in d.events("sync")[first:]
                if "cannot record a page" in e.get("error", "")]

    failed = wait_for("a round that could not record its page", page_failed, d, timeout=60)
    assert failed[0]["result"] == "failed", failed[0]
    d.alive()
    # not recorded: numprovd does not know them yet
    assert d.ctl("user", f"pagel0@{gtl.DOMAIN}").returncode != 0

    ns.unfill()
    assert d.ctl("sync").returncode == 0

    def numbered():
        got = numbers_in_teams(sim)
        return got if all(uid in got for uid in ids) else None

    wait_for("the joiners numbered once space is back", numbered, d, timeout=90)
    assert all(e["full"] == "no" for e in d.events("sync")[first:]), d.events("sync")[first:]
    d.alive()


def test_disk_full_in_the_middle_of_onboarding(sim, ns, nsd):
    """The disk fills while a round is assigning numbers: some assignments are on the
    wire, some finished in Teams and cannot be recorded, some not sent yet. numprovd
    lives on; once space is back every joiner ends with exactly one number, no number is
    on two users, and the inventory agrees with Teams."""
    d = nsd(interval=2)
    d.wait_syncs(1)
    before = numbers_in_teams(sim)
    # Teams slow: 0.3 s a request, each operation running for two polls
    sim.ctl.settings(op_polls=2)
    sim.ctl.fault("latency", match="/v1.0/", ms=300)
    ids = [add_user(sim, f"mid{i}", city="Abingdon", officeLocation="Office 1")
           for i in range(24)]
    assert d.ctl("sync").returncode == 0

    def some_numbered():
        got = numbers_in_teams(sim)
        n = sum(1 for uid in ids if uid in got)
        return n if 3 <= n < len(ids) else None

    wait_for("a few joiners numbered, not all", some_numbered, d, timeout=60)
    ns.fill()
    first_full = d.syncs()
    # the round goes on against the full disk, and the rounds after it
    wait_for("two rounds ended on the full disk",
             lambda: d.syncs() >= first_full + 2, d, timeout=120)
    d.alive()
    assert any("no space left on device" in line for line in d.lines), "\n".join(d.lines[-40:])
    # mid-onboarding: assignments Teams made while the disk was full, not recorded yet
    assert any("in Teams but the inventory cannot record it" in line for line in d.lines), \
        "\n".join(d.lines[-60:])
    held_on_full = numbers_in_teams(sim)
    ns.unfill()
    sim.ctl.clear_faults()
    assert d.ctl("sync").returncode == 0

    def all_numbered():
        got = numbers_in_teams(sim)
        return got if all(uid in got for uid in ids) else None

    got = wait_for("every joiner numbered once space is back", all_numbered, d, timeout=120)
    # settled: nothing pending in the inventory any more
    wait_for("nothing pending", lambda: all(r["pending"] == 0 for r in d.ranges().values()),
             d, timeout=60)
    got = numbers_in_teams(sim)
    d.alive()
    assert len(set(got.values())) == len(got), f"a number on two users: {got}"
    per_user = {}
    for num, v in sim.ctl.truth()["numbers"].items():
        if v.get("target"):
            per_user.setdefault(v["target"], []).append(num)
    assert all(len(n) == 1 for n in per_user.values()), per_user
    for uid, number in before.items():
        assert got.get(uid) == number, f"{uid} had {number} before the disk filled"
    for uid, number in held_on_full.items():
        assert got.get(uid) == number, f"{uid} held {number} on the full disk, then not"
    assert d.stop() == 0
    assert_inventory_is(ns, d, got)
