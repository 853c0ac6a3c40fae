"""Short versions of the reliability runs of tests/reliability/ (their long runs and
figures: docs/reliability.md)."""
import json
import subprocess

from conftest import BUILD, TOP


def test_crash_torture_short(tmp_path):
    """300 users onboarding with 100 ms a Graph request while numprovd is SIGKILLed 10
    times at random moments (Teams finishing operations meanwhile), then left to finish:
    no number on two users, no user with two, nothing pending, nothing leaked, the
    inventory equal to Teams for every number of the ranges."""
    out = tmp_path / "summary.json"
    r = subprocess.run(
        ["/usr/bin/python3", str(TOP / "tests" / "reliability" / "crash_torture.py"),
         "--build", str(BUILD), "--users", "300", "--kills", "10", "--seed", "5",
         "--json", str(out)],
        capture_output=True, text=True, timeout=900)
    assert out.exists(), (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    s = json.loads(out.read_text())
    assert r.returncode == 0 and s["result"] == "pass", s["failures"]
    assert s["kills"] == 10 and not s["died"]
    # the kills landed while there was work: the test is about crashes mid-assignment
    assert s["kills_while_onboarding"] >= 5, s
    assert s["teams_holders"] == s["inventory_assigned"] == 300
    assert s["mismatches"] == 0 and s["pending"] == 0 and s["users_with_two"] == 0
