"""The engine's loss windows, closed: each test here failed on the engine before the
reshape (reload during a Graph call, the round's work lost to a kill after the delta
link was stored, unsettled assignments given back on a guess, a refused manual change
leaving the user without a number, an unassign undone by the next sync, a hand-assigned
number replaced because Teams may replace rather than refuse)."""
import json
import signal
import subprocess
import threading
import time

import pytest

from conftest import IDS, UPN, Numprovd, add_user, binary, gtl, holder, user_json, wait_for


# ---- A1: a reload while a round or an administrator's change waits on Graph -------------

def test_sighup_while_full_sync_waits_for_subscribed_skus(sim, numprovd):
    sim.ctl.fault("latency", match="subscribedSkus", ms=2500)
    d = numprovd()
    # running: the signal handlers are in place (a SIGHUP before would end it)
    wait_for(lambda: any(" running: inventory " in l for l in d.lines), what="start")
    time.sleep(0.8)  # the first full sync is waiting for subscribedSkus now
    for _ in range(3):
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)
    d.wait_event("assign", user=UPN["alice"], timeout=30)
    sync = d.wait_syncs(1)[0]
    assert sync["result"] in ("success", "partial"), sync
    assert d.proc.poll() is None, "numprovd died on the reload"
    assert any("configuration reloaded" in l for l in d.lines)


def test_sighup_while_numprovctl_assign_changes_a_number(sim, numprovd):
    d = numprovd()
    d.wait_event("assign", user=UPN["alice"])
    d.wait_syncs(1)
    sim.ctl.fault("latency", match="/assignNumber", ms=2000)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=d.ctl("assign", UPN["alice"], "+442080000004")))
    t.start()
    time.sleep(0.7)
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGHUP)
    t.join(60)
    assert out["r"].returncode == 0, out["r"].stderr
    assert d.proc.poll() is None, "numprovd died on the reload"
    assert holder(sim, "+442080000004") == IDS["alice"]
    assert user_json(d, UPN["alice"])["number"] == "+442080000004"


# ---- A3: what a round must still do is durable with the page that brought it ------------

def test_kill_after_link_stored_restart_releases_leaver_and_assigns_joiner(sim, numprovd,
                                                                          tmp_path):
    d = numprovd()
    leaver_number = d.wait_event("assign", user=UPN["alice"])[0]["number"]
    d.wait_syncs(1)
    joiner = add_user(sim, "joiner", city="Leeds")
    sim.ctl.hard_delete(IDS["alice"])
    # the round's Teams calls hang: the delta link is stored, nothing is acted on yet
    sim.ctl.fault("latency", match="/unassignNumber", ms=20000)
    sim.ctl.fault("latency", match="assignmentTargetId", ms=20000)
    since = sim.ctl.log()["requests"][-1]["seq"]
    assert d.ctl("sync").returncode == 0
    wait_for(lambda: any("delta" in e["path"] and e["status"] == 200
                         for e in sim.ctl.log(since)["requests"]), what="the delta round")
    wait_for(lambda: sim.ctl.log(since)["in_flight"] >= 1, what="a Teams call in flight")
    d.stop(signal.SIGKILL)
    sim.ctl.clear_faults()
    d2 = Numprovd(sim, tmp_path).start()  # same config and inventory; interval 300 s
    try:
        rel = d2.wait_event("release", user=UPN["alice"], timeout=30)[0]
        assert rel["number"] == leaver_number and rel["reason"] == "deleted"
        d2.wait_event("assign", id=joiner, timeout=30)
        first = d2.wait_syncs(1)[0]
        assert first["full"] == "no", "the restart needed a full sync to act"
        assert holder(sim, leaver_number) is None
    finally:
        d2.stop(signal.SIGKILL)


# ---- A4: an unsettled assignment stays pending and is settled from Teams ---------------

@pytest.mark.parametrize("fault,teams_did_it", [("op_unsettled", True), ("op_lost", False)])
def test_unsettled_assignment_stays_pending_until_teams_says(sim, numprovd, tmp_path, fault,
                                                            teams_did_it):
    sim.ctl.fault(fault, match="/assignNumber", user=IDS["alice"])
    d = Numprovd(sim, tmp_path, interval=4)
    d.conf.write_text(d.conf.read_text().replace("sync: {", "sync: { operation_timeout = 2;"))
    d.start()
    try:
        first = d.wait_syncs(1, timeout=40)[0]
        assert first["result"] == "partial", first  # unsettled is not success
        # the number was not given back on a guess: still pending, held for alice
        pend = json.loads(d.ctl("--json", "users", "--pending").stdout)
        assert [u["upn"] for u in pend] == [UPN["alice"]], pend
        number = pend[0]["number"]
        assert d.ranges()["london"]["pending"] == 1
        # the next round settles it from numberAssignments
        if teams_did_it:
            ev = d.wait_event("assign", user=UPN["alice"], timeout=30)[0]
            assert ev["number"] == number and ev.get("reason") == "settled"
            assert len(sim.ctl.assign_requests(user=IDS["alice"])) == 1
        else:
            ev = d.wait_event("assign", user=UPN["alice"], timeout=40)[0]
            assert holder(sim, ev["number"]) == IDS["alice"]
            assert len(sim.ctl.assign_requests(user=IDS["alice"])) == 2
        wait_for(lambda: d.ranges()["london"]["pending"] == 0, what="nothing pending")
        assert holder(sim, number) == (IDS["alice"] if teams_did_it else holder(sim, number))
    finally:
        d.stop(signal.SIGKILL)


# ---- A6: a refused manual assign leaves the user as they were --------------------------

def test_assign_unsuitable_number_is_refused_before_anything_is_sent(sim, numprovd):
    d = numprovd()
    d.wait_event("assign", user=UPN["alice"])
    d.wait_syncs(1)
    before = holder(sim, "+442080000000")
    since = sim.ctl.log()["requests"][-1]["seq"]
    r = d.ctl("assign", UPN["alice"], "+442071230003")  # Calling Plan number, no Calling Plan
    assert r.returncode != 0
    assert "Calling Plan" in r.stderr and "--force" in r.stderr, r.stderr
    assert sim.ctl.change_requests("assignNumber", since=since) == []
    assert sim.ctl.change_requests("unassignNumber", since=since) == []
    assert before == IDS["alice"] == holder(sim, "+442080000000")


def test_forced_assign_refused_by_teams_keeps_the_old_number(sim, numprovd):
    d = numprovd()
    d.wait_event("assign", user=UPN["alice"])
    d.wait_syncs(1)
    r = d.ctl("assign", UPN["alice"], "+442071230003", "--force")
    assert r.returncode != 0
    assert "licen" in r.stderr.lower(), r.stderr  # Teams' reason, on one line
    assert len(r.stderr.strip().splitlines()) == 1
    assert holder(sim, "+442080000000") == IDS["alice"]
    assert holder(sim, "+442071230003") is None
    u = user_json(d, UPN["alice"])
    assert u["number"] == "+442080000000" and u["number_state"] == "assigned"
    assert d.proc.poll() is None


def test_a_refusal_on_the_last_poll_is_a_refusal_not_a_timeout(sim, tmp_path):
    """sync.operation_timeout 1 s allows two polls of an operation; Teams says no on the
    second: the administrator is told Teams' reason, not that the operation did not
    finish in time (the numberAssignments check after a refusal is not a poll)."""
    sim.ctl.settings(op_polls=1)  # one "running", then the final status
    d = Numprovd(sim, tmp_path)
    d.conf.write_text(d.conf.read_text().replace("retry_max = 4;",
                                                 "retry_max = 4; operation_timeout = 1;"))
    d.start()
    try:
        d.wait_event("assign", user=UPN["alice"])
        d.wait_syncs(1)
        r = d.ctl("assign", UPN["alice"], "+442071230003", "--force")
        assert r.returncode != 0
        assert "licen" in r.stderr.lower() and "in time" not in r.stderr, r.stderr
        assert holder(sim, "+442080000000") == IDS["alice"]
        assert user_json(d, UPN["alice"])["number"] == "+442080000000"
    finally:
        d.stop()


# ---- A7: an administrator's unassign holds -------------------------------------------

def test_unassign_holds_through_full_sync_until_auto(sim, numprovd):
    d = numprovd(interval=2)
    number = d.wait_event("assign", user=UPN["alice"])[0]["number"]
    r = d.ctl("unassign", UPN["alice"])
    assert r.returncode == 0, r.stderr
    assert holder(sim, number) is None
    n = d.syncs()
    assert d.ctl("sync", "--full").returncode == 0
    d.wait_syncs(n + 2, timeout=40)
    assert holder(sim, number) is None
    assert not any(v.get("target") == IDS["alice"] for v in sim.ctl.truth()["numbers"].values())
    u = user_json(d, UPN["alice"])
    assert u["state"] == "held-by-administrator" and "number" not in u
    users = json.loads(d.ctl("--json", "users").stdout)
    assert [x["state"] for x in users if x["upn"] == UPN["alice"]] == ["held-by-administrator"]
    r = d.ctl("auto", UPN["alice"])
    assert r.returncode == 0, r.stderr
    ev = d.wait_event("assign", count=2, user=UPN["alice"], timeout=30)[-1]
    assert holder(sim, ev["number"]) == IDS["alice"]


# ---- A8: never an assignNumber for a user Teams shows holding a number ------------------

@pytest.mark.parametrize("assign_existing", ["refuse", "replace"])
def test_number_given_by_hand_between_full_syncs_is_adopted_not_replaced(sim, numprovd,
                                                                         assign_existing):
    sim.ctl.settings(assign_existing=assign_existing)
    d = numprovd()
    d.wait_syncs(1)
    uid = add_user(sim, "handed", city="London")
    other = add_user(sim, "elsewhere", city="London")
    # an administrator gives them numbers in Teams before numprovd sees them
    sim.ctl.add_number({"telephoneNumber": "+442080000003", "numberType": "directRouting",
                        "assignmentTargetId": uid})
    sim.ctl.add_number({"telephoneNumber": "+15550000001", "numberType": "directRouting",
                        "assignmentTargetId": other})
    n = d.syncs()
    assert d.ctl("sync").returncode == 0
    d.wait_syncs(n + 1)
    ev = d.wait_event("adopt", id=uid)[0]
    assert ev["number"] == "+442080000003"
    d.wait_event("drift", teams_user=other)
    assert sim.ctl.assign_requests(user=uid) == []
    assert sim.ctl.assign_requests(user=other) == []
    assert holder(sim, "+442080000003") == uid
    assert holder(sim, "+15550000001") == other
    assert user_json(d, f"handed@{gtl.DOMAIN}")["number"] == "+442080000003"


# ---- found in review: holds outlast licence changes; unrecorded numbers are not replaced;
# ---- a change of number cut short by a kill is settled from Teams -----------------------

def test_hold_outlasts_disable_and_enable(sim, numprovd):
    d = numprovd(interval=2)
    number = d.wait_event("assign", user=UPN["alice"])[0]["number"]
    assert d.ctl("unassign", UPN["alice"]).returncode == 0
    sim.ctl.disable(IDS["alice"])
    n = d.syncs()
    d.wait_syncs(n + 2, timeout=30)
    sim.ctl.enable(IDS["alice"])
    n = d.syncs()
    d.wait_syncs(n + 3, timeout=30)
    assert sim.ctl.assign_requests(user=IDS["alice"])[-1]["number"] == number  # only the first
    assert len(sim.ctl.assign_requests(user=IDS["alice"])) == 1
    assert user_json(d, UPN["alice"])["state"] == "held-by-administrator"


def test_manual_assign_does_not_replace_an_unrecorded_number(sim, numprovd):
    d = numprovd(mode="off")
    d.wait_syncs(1)
    uid = add_user(sim, "handheld", city="London")
    n = d.syncs()
    assert d.ctl("sync").returncode == 0
    d.wait_syncs(n + 1)
    sim.ctl.add_number({"telephoneNumber": "+15550000002", "numberType": "directRouting",
                        "assignmentTargetId": uid})
    r = d.ctl("assign", f"handheld@{gtl.DOMAIN}", "+442080000002")
    assert r.returncode != 0 and "+15550000002" in r.stderr and "--force" in r.stderr, r.stderr
    assert sim.ctl.assign_requests(user=uid) == []
    # --force sends it: Teams decides (refuses here, replaces below)
    r = d.ctl("assign", f"handheld@{gtl.DOMAIN}", "+442080000002", "--force")
    assert r.returncode != 0 and "already has" in r.stderr, r.stderr
    assert holder(sim, "+15550000002") == uid
    sim.ctl.settings(assign_existing="replace")
    r = d.ctl("assign", f"handheld@{gtl.DOMAIN}", "+442080000002", "--force")
    assert r.returncode == 0, r.stderr
    assert holder(sim, "+442080000002") == uid


def test_change_of_number_cut_short_by_a_kill_is_settled(sim, numprovd, tmp_path):
    d = numprovd()
    old = d.wait_event("assign", user=UPN["alice"])[0]["number"]
    d.wait_syncs(1)
    sim.ctl.fault("latency", match="/assignNumber", ms=3000)
    t = threading.Thread(target=lambda: d.ctl("assign", UPN["alice"], "+442080000004"))
    t.start()
    wait_for(lambda: holder(sim, old) is None, what="the old number off in Teams")
    time.sleep(0.5)
    d.stop(signal.SIGKILL)
    t.join(30)
    time.sleep(3)  # whatever the simulator does with the assignment it was sent
    sim.ctl.clear_faults()
    d2 = Numprovd(sim, tmp_path).start()
    try:
        d2.wait_syncs(1, timeout=40)
        truth = {n: v.get("target") for n, v in sim.ctl.truth()["numbers"].items()}
        mine = sorted(n for n, who in truth.items() if who == IDS["alice"])
        u = user_json(d2, UPN["alice"])
        if not mine:  # the change went nowhere: decided afresh, a number in the next round
            d2.wait_event("assign", user=UPN["alice"], timeout=30)
            truth = {n: v.get("target") for n, v in sim.ctl.truth()["numbers"].items()}
            mine = sorted(n for n, who in truth.items() if who == IDS["alice"])
            u = user_json(d2, UPN["alice"])
        assert len(mine) == 1, mine
        assert u["number"] == mine[0] and u["number_state"] == "assigned", u
        assert "changing_to" not in u["record"], u
        for number, who in truth.items():  # nothing on two users, inventory = Teams
            if who and number.startswith("+44208"):
                r = d2.ctl("--json", "user", who)
                if r.returncode == 0:
                    assert json.loads(r.stdout).get("number") == number
    finally:
        d2.stop(signal.SIGKILL)


# ---- every component drains: while numprovd stops, questions are answered, changes refused --

def test_while_stopping_status_answers_and_changes_are_refused(sim, numprovd):
    d = numprovd()
    d.wait_syncs(1)
    add_user(sim, "latecomer", city="London")
    sim.ctl.fault("latency", match="assignmentTargetId", ms=4000)
    assert d.ctl("sync").returncode == 0
    wait_for(lambda: sim.ctl.log()["in_flight"] >= 1, what="a Teams read in flight")
    d.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any("finishing what is in flight" in l for l in d.lines), what="the drain")
    r = d.ctl("sync")
    assert r.returncode != 0 and "stopping" in r.stderr, (r.returncode, r.stderr)
    r = d.ctl("reserve", "+442080001099")
    assert r.returncode != 0 and "stopping" in r.stderr, r.stderr
    r = d.ctl("--json", "ranges")
    assert r.returncode == 0, r.stderr
    assert d.proc.wait(timeout=40) == 0


def test_a_move_while_the_number_is_pending_is_logged_once_it_settles(sim, tmp_path):
    sim.ctl.fault("op_unsettled", match="/assignNumber", user=IDS["alice"])
    d = Numprovd(sim, tmp_path, interval=3)
    d.conf.write_text(d.conf.read_text().replace("sync: {", "sync: { operation_timeout = 2;"))
    d.start()
    try:
        d.wait_syncs(1, timeout=40)
        assert json.loads(d.ctl("--json", "users", "--pending").stdout)[0]["upn"] == UPN["alice"]
        sim.ctl.update_user(IDS["alice"], {"officeLocation": "Mayfair"})
        ev = d.wait_event("retain", user=UPN["alice"], timeout=30)[0]
        assert ev["reason"] == "moved"
        assert d.wait_event("assign", user=UPN["alice"], timeout=30)[0]["reason"] == "settled"
        n = d.syncs()
        d.wait_syncs(n + 2, timeout=30)
        assert len(d.events("retain")) == 1
    finally:
        d.stop(signal.SIGKILL)


def test_dry_run_logs_an_unmatched_user_once(sim, numprovd):
    add_user(sim, "nowhere", city="Atlantis")
    d = numprovd(mode="dry-run", interval=2)
    d.wait_syncs(3, timeout=40)
    mine = [e for e in d.events("unmatched") if e.get("user", "").startswith("nowhere@")]
    assert len(mine) == 1, mine
    assert all(e.get("dry_run") == "yes" for e in d.events("assign"))


# ---- odd directory data: one user never stops the tenant, and views stay valid UTF-8 ------

def test_a_long_multibyte_name_is_cut_on_a_character(sim, numprovd):
    uid = add_user(sim, "kanji", city="London", displayName="\u00c4" * 200)  # 400 bytes
    d = numprovd()
    d.wait_syncs(1, timeout=60)
    r = subprocess.run([binary("numprovctl"), "-c", str(d.conf), "--json", "user", uid],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    name = json.loads(r.stdout.decode("utf-8"))["record"]["name"]
    assert name and set(name) == {"\u00c4"}


def test_a_lone_surrogate_in_one_name_does_not_stop_the_sync(sim, numprovd):
    add_user(sim, "weird", city="Nowhere", displayName="So\udc80ho")
    d = numprovd(interval=2)
    syncs = d.wait_syncs(2, timeout=60)
    assert all(s["result"] == "success" for s in syncs), syncs
    d.wait_event("assign", user=UPN["alice"])
    assert d.ctl("user", f"weird@{gtl.DOMAIN}").returncode == 0
