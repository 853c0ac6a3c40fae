"""The wall clock stepped under a running numprovd: a day ahead, then an hour back.

numprovd runs with tests/clockshift.c preloaded, which moves its wall clock (time(),
gettimeofday(), CLOCK_REALTIME) by the number of seconds a file holds and leaves
CLOCK_MONOTONIC and CLOCK_BOOTTIME alone, as a step of the system clock does. The Graph
simulator keeps the real time. A quarantined number must not come back to the pool early,
and neither the rounds nor a user's retries may stall."""
import datetime
import json
import os
import subprocess
import time

import pytest

from conftest import TOP, Numprovd, add_user, gtl, stop_clean

DAY = 86400
RANGE = """
  { name = "clockton"; type = "direct-routing"; provider = "Gamma";
    first = "+441632960000"; last = "+441632960019";
    match = "city = 'Clockton'"; quarantine_days = 1; }
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = tmp_path_factory.mktemp("clockshift") / "clockshift.so"
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(out),
                        str(TOP / "tests" / "clockshift.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


class ShiftedNumprovd(Numprovd):
    def __init__(self, sim, tmp, shim, **kw):
        super().__init__(sim, tmp, ranges=RANGE, **kw)
        self.shift_file = tmp / "clock-offset"
        self.shift(0)
        self.env = dict(os.environ, LD_PRELOAD=str(shim),
                        NUMPROV_CLOCKSHIFT=str(self.shift_file))
        # a preloaded library comes before the ASan runtime: allowed here
        self.env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "")
                                    + ":verify_asan_link_order=0").lstrip(":")

    def shift(self, seconds):
        self.shift_file.write_text(f"{seconds}\n")
        time.sleep(0.3)  # the shim reads the file again every 100 ms

    def numbers(self):
        r = self.ctl("--json", "range", "clockton")
        assert r.returncode == 0, r.stderr
        return {n["number"]: n for n in json.loads(r.stdout)}

    def status(self):
        r = self.ctl("--json", "status")
        assert r.stdout, r.stderr
        return json.loads(r.stdout)


def holder(sim, uid):
    for num, v in sim.ctl.truth()["numbers"].items():
        if v.get("target") == uid:
            return num
    return None


def wait_for(what, pred, d, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        assert d.proc.poll() is None, "numprovd died:\n" + "\n".join(d.lines[-40:])
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s:\n" + "\n".join(d.lines[-40:]))


def rounds_go_on(d, n=3, timeout=20):
    """n more rounds end at the 2 s interval, none of them triggered."""
    start = d.syncs()
    wait_for(f"{n} more rounds", lambda: d.syncs() >= start + n, d, timeout)


def test_clock_steps_release_nothing_early_and_stall_nothing(sim, tmp_path, shim):
    d = ShiftedNumprovd(sim, tmp_path, shim, interval=2)
    try:
        d.start()
        d.wait_syncs(1)
        leaver = add_user(sim, "leaver", city="Clockton")
        stayer = add_user(sim, "stayer", city="Clockton")
        wait_for("both numbered", lambda: holder(sim, leaver) and holder(sim, stayer), d)
        kept = holder(sim, leaver)
        sim.ctl.hard_delete(leaver)
        wait_for("the leaver's number quarantined",
                 lambda: d.numbers().get(kept, {}).get("state", "free") == "quarantined", d)

        # a day and an hour ahead: the 1-day quarantine is not over, whatever the clock says
        d.shift(DAY + 3600)
        rounds_go_on(d)
        assert d.ctl("sync").returncode == 0
        rounds_go_on(d, 2)
        # every round starts with the quarantine sweep (as the timer does every minute)
        assert d.numbers().get(kept, {}).get("state", "free") == "quarantined", d.numbers().get(kept)
        joiner = add_user(sim, "joiner", city="Clockton")
        got = wait_for("the joiner numbered", lambda: holder(sim, joiner), d)
        assert got != kept
        # a number released while the clock is ahead: its quarantine is counted from the
        # later of the two clocks, so it ends early by neither (here: by the wall clock,
        # which a restart would follow)
        stayer_number = holder(sim, stayer)
        sim.ctl.hard_delete(stayer)
        wait_for("the stayer's number quarantined",
                 lambda: d.numbers().get(stayer_number, {}).get("state") == "quarantined", d)
        until = datetime.datetime.strptime(d.numbers()[stayer_number]["until"],
                                           "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        assert until >= time.time() + DAY + 3600 + DAY - 120, (until, time.time())
        st = d.status()
        assert abs(st["clock_skew"] - (DAY + 3600)) <= 5, st
        assert "clock: " in d.ctl("status").stdout
        steps = [l for l in d.lines if "wall clock was stepped by +" in l]
        assert len(steps) == 1, steps

        # the clock put right: followed again
        d.shift(0)
        rounds_go_on(d, 2)
        assert d.status()["clock_skew"] == 0
        assert d.numbers().get(kept, {}).get("state", "free") == "quarantined"

        # an hour back: a user waiting for Teams to see their licence is retried on time
        # (retry_min 1 s, retry_max 4 s), and the rounds go on
        sim.ctl.settings(licence_delay=6)
        late = add_user(sim, "late", city="Clockton")
        d.wait_event("waiting", user=f"late@{gtl.DOMAIN}", timeout=30)
        d.shift(-3600)
        rounds_go_on(d)
        got = wait_for("the waiting user numbered after the clock went back",
                       lambda: holder(sim, late), d, timeout=30)
        assert got != kept
        assert d.numbers().get(kept, {}).get("state", "free") == "quarantined"
        assert abs(d.status()["clock_skew"] + 3600) <= 5
        assert len([l for l in d.lines if "wall clock was stepped by -" in l]) == 1
    finally:
        stop_clean([d])


def test_the_shim_moves_the_wall_clock_only(shim, tmp_path):
    """The shim itself: a process under it sees the wall clock a day ahead and the
    monotonic clock where it is."""
    f = tmp_path / "off"
    f.write_text(f"{DAY}\n")
    env = dict(os.environ, LD_PRELOAD=str(shim), NUMPROV_CLOCKSHIFT=str(f))
    r = subprocess.run(["/usr/bin/python3", "-c",
                        "import time; print(time.time(), time.monotonic())"],
                       capture_output=True, text=True, env=env)
    wall, mono = map(float, r.stdout.split())
    assert abs(wall - time.time() - DAY) < 5
    assert abs(mono - time.monotonic()) < 5
    assert abs(int(subprocess.run(["date", "+%s"], capture_output=True, text=True,
                                  env=env).stdout) - time.time() - DAY) < 5
