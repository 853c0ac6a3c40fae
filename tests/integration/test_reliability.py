"""Short versions of the reliability runs of tests/reliability/ (their long runs and
figures: docs/reliability.md)."""
import json
import subprocess

from conftest import BUILD, TOP, binary


def test_crash_torture_short(tmp_path):
    """300 users onboarding with 100 ms a Graph request while numprovd is SIGKILLed 10
    times at random moments (Teams finishing operations meanwhile), then left to finish:
    no number on two users, no user with two, nothing pending, nothing leaked, the
    inventory equal to Teams for every number of the ranges."""
    out = tmp_path / "summary.json"
    r = subprocess.run(
        ["/usr/bin/python3", str(TOP / "tests" / "reliability" / "crash_torture.py"),
         "--build", str(BUILD), "--numprovd", binary("numprovd"),
         "--users", "300", "--kills", "10", "--seed", "5",
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


def test_fault_soak_short(tmp_path):
    """200 users, 20 cycles of churn (joiners, leavers, licences, moves, disables) under
    18 % faulted Graph requests (429 with Retry-After, 503, resets, a reset after an
    assignment took effect every third cycle, malformed and truncated bodies), expired
    tokens and a refused delta link; then the same churn without faults: the same users
    hold a number, the inventory equals Teams, nobody holds two, every retry after a 429
    waited its Retry-After."""
    out = tmp_path / "summary.json"
    r = subprocess.run(
        ["/usr/bin/python3", str(TOP / "tests" / "reliability" / "soak.py"),
         "--build", str(BUILD), "--numprovd", binary("numprovd"),
         "--users", "200", "--cycles", "20", "--faults", "--compare",
         "--seed", "8", "--json", str(out)],
        capture_output=True, text=True, timeout=900)
    assert out.exists(), (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    s = json.loads(out.read_text())
    assert r.returncode == 0 and s["result"] == "pass", s["failures"]
    run = s["run"]
    assert run["settled"] and run["mismatches"] == 0 and run["retry_after_violations"] == 0
    assert run["429_seen"] > 0 and sum(run["churn"].values()) == 200
    assert run["holders"] == s["reference"]["holders"] > 0


def test_outage_short(tmp_path):
    """Graph out of reach for about four minutes while onboarding is under way: the
    connection refused (130 s), then the name not resolving (60 s), then a TLS
    certificate nobody trusts (60 s), joiners and leavers made meanwhile; then back.
    Then Entra refusing the client secret until the new one is written to its file.
    numprovctl and SNMP answer throughout, status names the failure, numprovd backs off
    (at most 30 attempts in each of the first two minutes, 3 in any minute after), syslog and snmptrapd get one
    sync_failed / numprovSyncFailed and one recovery per outage, Entra's error is logged
    and no secret is; numprovd catches up by itself and the inventory equals Teams."""
    out = tmp_path / "summary.json"
    r = subprocess.run(
        ["/usr/bin/python3", str(TOP / "tests" / "reliability" / "outage.py"),
         "--build", str(BUILD), "--numprovd", binary("numprovd"),
         "--users", "60", "--joiners", "30",
         "--phases", "130,60,60", "--secret-phase", "40", "--interval", "10",
         "--catchup", "180", "--sample", "2", "--token-lifetime", "90",
         "--json", str(out)],
        capture_output=True, text=True, timeout=1200)
    assert out.exists(), (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    s = json.loads(out.read_text())
    assert r.returncode == 0 and s["result"] == "pass", s["failures"]
    assert s["outage_traps"] == {"numprovSyncFailed": 1, "numprovSyncRecovered": 1}
    assert s["secret_traps"] == {"numprovSyncFailed": 2, "numprovSyncRecovered": 2}
    assert s["outage_syslog"]["sync_failed"] == 1 == s["secret_syslog"]["sync_failed"]
    assert s["causes_seen"]["refused"] and s["causes_seen"]["secret"]
    assert s["outage_rates"]["per_minute_max_first_two"] <= 30
    assert s["outage_rates"]["per_minute_max_after_two"] <= 3
    assert s["joiners_unnumbered_at_cut"] > 0
    assert s["outage_catchup_s"] is not None and s["secret_catchup_s"] is not None
