"""The Graph client (tokens, delta, licences, Teams numbers, retries, concurrency)
against the simulator over real TLS, through tests/graphcli."""
import base64
import json
import pathlib
import re
import subprocess
import time

import pytest

from conftest import binary, gtl, run, wait_for

MCOEV = gtl.MCOEV
IDS = gtl.IDS


def gcli(conf, *args, fast=True, warm=False):
    r = run(binary("tests/graphcli"), "-c", conf, *(["--fast"] if fast else []),
            *(["--warm"] if warm else []), *args)
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    assert lines and "stats" in lines[-1], (r.returncode, r.stdout, r.stderr)
    return r, lines[:-1], lines[-1]["stats"]


def graph_requests(sim, part=""):
    return [q for q in sim.ctl.log()["requests"] if part in q["path"]]


# ---- tokens --------------------------------------------------------------------------

def test_token_with_client_secret_is_cached(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "burst", "5")
    assert r.returncode == 0, r.stderr
    assert st["token_fetches"] == 1 and st["requests"] == 5
    tok = graph_requests(sim, "/oauth2/v2.0/token")
    assert len(tok) == 1 and tok[0]["status"] == 200
    assert all(q["auth"] == "Bearer" for q in graph_requests(sim, "/v1.0/subscribedSkus"))


def test_wrong_secret_is_a_clear_error(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf", secret="not-the-secret")
    r, out, st = gcli(conf, "skus")
    assert r.returncode != 0
    assert out[0]["ok"] is False and out[0]["error"] == "invalid_client"
    assert "AADSTS7000215" in out[0]["detail"]
    assert "not-the-secret" not in r.stderr + r.stdout


def test_secret_file_readable_by_others_is_refused(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf", mode=0o644)
    r = run(binary("tests/graphcli"), "-c", conf, "skus")
    assert r.returncode == 1
    assert "may be read by group or others (mode 0644)" in r.stderr
    assert graph_requests(sim) == []


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_token_with_certificate_assertion(sim, tmp_path, alg):
    conf = sim.config(tmp_path / "c.conf", cert=True, extra_tenant=f'assertion_alg = "{alg}";')
    r, out, st = gcli(conf, "skus")
    assert r.returncode == 0, r.stderr
    tok = graph_requests(sim, "/oauth2/v2.0/token")
    assert tok[0]["status"] == 200
    # the simulator verified the signature with the registered certificate
    assert tok[0]["client_auth"] == "assertion"


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
def test_a_token_answer_that_cannot_be_read_is_said_and_tried_again(sim, tmp_path, kind):
    """A 200 from the token endpoint whose body is cut short or not JSON carries no
    token: numprovd says so (not "users page is not a JSON object" further on), tries
    again, and the request it was for goes through."""
    sim.ctl.fault(kind, match="/oauth2/v2.0/token")
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "burst", "1")
    assert r.returncode == 0, r.stderr
    assert st["token_fetches"] == 2 and st["requests"] == 1, st
    assert "no usable access token" in r.stderr, r.stderr
    tok = graph_requests(sim, "/oauth2/v2.0/token")
    assert [q["status"] for q in tok] == [200, 200]


def test_401_renews_the_token_once_and_retries(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf", parallel=1)
    sim.ctl.fault("latency", match="/v1.0/subscribedSkus", ms=800)
    p = subprocess.Popen([binary("tests/graphcli"), "-c", str(conf), "--fast", "burst", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the token it got is revoked before its first request is answered (however long
    # the client took to start)
    wait_for(lambda: any(q["status"] == 200 for q in graph_requests(sim, "/oauth2/v2.0/token")),
             what="the token issued")
    sim.ctl.expire_tokens()
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0, stderr
    assert json.loads(stdout.splitlines()[-1])["stats"]["token_fetches"] == 2
    statuses = [q["status"] for q in graph_requests(sim, "/v1.0/subscribedSkus")]
    assert sorted(statuses) == [200, 200, 401]  # one refused, renewed, sent again


def test_short_lived_token_is_renewed_before_expiry(sim, tmp_path):
    sim.ctl.settings(token_lifetime=2)
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("latency", match="/v1.0/subscribedSkus", ms=1200)
    r, out, st = gcli(conf, "burst", "3")
    # with parallel 8 the three go together on one token; then serialised they renew
    assert r.returncode == 0, r.stderr
    conf2 = sim.config(tmp_path / "c.conf", parallel=1)
    r, out, st = gcli(conf2, "burst", "3")
    assert r.returncode == 0, r.stderr
    assert st["token_fetches"] >= 2
    # a request that reached the simulator after its token ran out was renewed and resent
    assert [q["status"] for q in graph_requests(sim, "/v1.0/subscribedSkus")].count(200) == 6


# ---- users delta and licences --------------------------------------------------------

def test_delta_selects_follows_pages_and_classifies(sim, tmp_path):
    sim.ctl.settings(page_size=2)
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "delta")
    assert r.returncode == 0, r.stderr
    users, done = {u["id"]: u for u in out[:-1]}, out[-1]
    assert done["ok"] and done["full"] and done["pages"] == 3 and done["users"] == 6
    assert done["delta_link"].startswith(sim.url) and "deltatoken" in done["delta_link"]
    first = graph_requests(sim, "/users/delta")[0]["path"]
    for attr in ["city", "officeLocation", "usageLocation", "country", "state", "department",
                 "companyName", "jobTitle", "employeeType", "userPrincipalName",
                 "onPremisesExtensionAttributes", "assignedPlans", "accountEnabled"]:
        assert attr in first
    alice, bob, carol, dave = (users[IDS[n]] for n in ["alice", "bob", "carol", "dave"])
    assert (alice["teams_phone"], alice["calling_plan"]) == (True, False)
    assert (bob["teams_phone"], bob["calling_plan"]) == (True, True)
    assert carol["teams_phone"] is False
    assert (dave["teams_phone"], dave["calling_plan"]) == (True, False)  # credits only
    assert alice["city"] == "London" and alice["office"] == "Soho" and alice["department"] == "Sales"
    assert users[IDS["frank"]]["usage_location"] == "FR"


def test_delta_link_tracks_changes_and_removals(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "delta")
    link = out[-1]["delta_link"]
    sim.ctl.update_user(IDS["alice"], {"city": "Leeds"})
    sim.ctl.soft_delete(IDS["carol"])
    sim.ctl.hard_delete(IDS["dave"])
    sim.ctl.unlicense(IDS["erin"], plans=["MCOEV"])
    r, out, st = gcli(conf, "delta", link)
    assert r.returncode == 0, r.stderr
    users, done = {u["id"]: u for u in out[:-1]}, out[-1]
    assert done["ok"] and not done["full"]
    assert set(users) == {IDS["alice"], IDS["carol"], IDS["dave"], IDS["erin"]}
    assert users[IDS["alice"]]["city"] == "Leeds"
    assert users[IDS["carol"]]["removed"] == "changed"
    assert users[IDS["dave"]]["removed"] == "deleted"
    assert users[IDS["erin"]]["teams_phone"] is False
    assert done["removed"] == 2
    # a restored user comes back as a normal object
    sim.ctl.restore(IDS["carol"])
    r, out, st = gcli(conf, "delta", done["delta_link"])
    assert [u["id"] for u in out[:-1]] == [IDS["carol"]] and out[0]["removed"] == ""


@pytest.mark.parametrize("kind", ["delta_410", "sync_state_not_found", "resync_required"])
def test_refused_delta_link_starts_a_full_sync(sim, tmp_path, kind):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "delta")
    sim.ctl.fault(kind)
    r, out, st = gcli(conf, "delta", out[-1]["delta_link"])
    assert r.returncode == 0, r.stderr
    assert out[-1]["ok"] and out[-1]["full"] and out[-1]["users"] == 6
    assert "full sync" in r.stderr


def test_expired_delta_link_410(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "delta")
    sim.ctl.advance_clock(8 * 86400)
    r, out, st = gcli(conf, "delta", out[-1]["delta_link"])
    assert out[-1]["ok"] and out[-1]["full"]
    assert [q["status"] for q in graph_requests(sim, "/users/delta")][-2:] == [410, 200]


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_broken_json_is_an_error_not_a_crash(sim, tmp_path, kind):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault(kind, match="/users/delta")
    r, out, st = gcli(conf, "delta")
    assert r.returncode == 1
    assert out[-1]["ok"] is False and out[-1]["delta_link"] == ""
    assert "users page" in out[-1]["error"]


def test_subscribed_skus_name_the_plans(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"], out
    classes = out[0]["classes"]
    assert classes[MCOEV] == 1 and classes["4ed3ff63-69d7-4fb7-b984-5aec7f605ca8"] == 2
    assert classes["505e180f-f7e0-4b65-91d4-00d670bbd18c"] == 0


# ---- Teams numbers -------------------------------------------------------------------

def test_numbers_are_listed_in_pages_of_1000(sim, tmp_path):
    for i in range(2100):
        sim.ctl.add_number({"telephoneNumber": f"+4420800{i:05d}", "numberType": "directRouting"})
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "numbers")
    assert r.returncode == 0, r.stderr
    assert out[-1] == {"ok": True, "total": 2109, "error": ""}
    paths = [q["path"] for q in graph_requests(sim, "numberAssignments")]
    assert [re.search(r"\$top=(\d+)&\$skip=(\d+)", p).groups() for p in paths] == \
        [("1000", "0"), ("1000", "1000"), ("1000", "2000")]
    erin = [n for n in out[:-1] if n["number"] == "+441235000001"][0]
    assert erin["target"] == IDS["erin"] and erin["type"] == "directRouting"


def test_numbers_follow_next_link_when_given(sim, tmp_path):
    for i in range(1500):
        sim.ctl.add_number({"telephoneNumber": f"+4420800{i:05d}", "numberType": "directRouting"})
    sim.ctl.settings(numbers_next_link=True)
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "numbers")
    assert out[-1]["total"] == 1509
    assert len(graph_requests(sim, "numberAssignments")) == 2


def test_assign_polls_the_operation_until_done(sim, tmp_path):
    sim.ctl.settings(op_polls=3)
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000050", "directRouting")
    assert r.returncode == 0, r.stderr
    assert out[0]["ok"] and out[0]["resent"] == 0
    assert sim.ctl.truth()["numbers"]["+441235000050"]["target"] == IDS["alice"]
    polls = graph_requests(sim, "/operations")
    assert len(polls) == 4  # running three times, then succeeded
    gaps = [b["time"] - a["time"] for a, b in zip(polls, polls[1:])]
    assert gaps == sorted(gaps)  # growing intervals
    post = graph_requests(sim, "assignNumber")[0]
    assert post["body"]["telephoneNumber"] == "+441235000050"
    assert post["body"]["assignmentTargetId"] == IDS["alice"]
    assert post["body"]["numberType"] == "directRouting"


@pytest.mark.parametrize("user,number,ntype,detail", [
    ("carol", "+441235000060", "directRouting", "is not licensed for Teams Phone"),
    ("alice", "+441235000001", "directRouting", "has already been assigned to another user"),
    ("alice", "+442071239999", "callingPlan", "is not found from tenant"),
    ("dave", "+442071230001", "callingPlan", "lacks appropriate licenses"),
])
def test_refused_assignment_carries_status_detail(sim, tmp_path, user, number, ntype, detail):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "assign", IDS[user], number, ntype)
    assert out[0]["ok"] is False and out[0]["error"] == "failed"
    assert detail in out[0]["detail"]
    assert detail in r.stderr and out[0]["client_request_id"] in r.stderr


def test_calling_plan_number_with_location(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "assign", IDS["bob"], "+442071230002", "callingPlan", "loc-parklane")
    assert out[0]["ok"], out
    n = sim.ctl.truth()["numbers"]["+442071230002"]
    assert (n["target"], n["locationId"]) == (IDS["bob"], "loc-parklane")


def test_licence_propagation_delay_then_success(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    # a delay longer than any client's start; then the simulator's clock moves past it
    sim.ctl.fault("licence_delay", seconds=600, users=[IDS["alice"]])
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000070", "directRouting")
    assert out[0]["ok"] is False and "not licensed" in out[0]["detail"]
    sim.ctl.advance_clock(601)
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000070", "directRouting")
    assert out[0]["ok"], out


def test_unassign(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "unassign", "+441235000001", "directRouting")
    assert out[0]["ok"], out
    assert sim.ctl.truth()["numbers"]["+441235000001"]["target"] in ("", None)
    r, out, st = gcli(conf, "unassign", "+441235000001", "directRouting")
    assert out[0]["ok"] is False


def test_user_configuration(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "userconfig", IDS["erin"])
    assert out[0]["ok"] and out[0]["numbers"] == ["+441235000001"]
    assert "PhoneSystem" in out[0]["features"]
    r, out, st = gcli(conf, "userconfig", "00000000-0000-0000-0000-00000000dead")
    assert out[0]["ok"] is False and out[0]["status"] == 404


def test_voice_routing_policy(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "policy", IDS["alice"], "OnlineVoiceRoutingPolicy", "UK-National")
    assert out[0]["ok"], out
    policy_id = sim.ctl.user(IDS["alice"])["policies"]["OnlineVoiceRoutingPolicy"]
    assert base64.b64decode(policy_id + "==").endswith(b"Tag:UK-National")
    r, out, st = gcli(conf, "policy", IDS["alice"], "OnlineVoiceRoutingPolicy", "Nowhere")
    assert out[0]["ok"] is False and out[0]["status"] == 404


# ---- a user's numbers, and Teams that replaces or never settles -----------------------

def test_user_numbers_of_a_user_holding_one(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "usernumbers", IDS["erin"])
    assert r.returncode == 0, r.stderr
    [res] = out
    assert res["ok"] and res["status"] == 200 and res["error"] == ""
    assert res["numbers"] == [{"number": "+441235000001", "type": "directRouting",
                               "target": IDS["erin"], "activation": "activated",
                               "status": "userAssigned"}]
    [q] = graph_requests(sim, "numberAssignments")
    assert q["path"] == ("/v1.0/admin/teams/telephoneNumberManagement/numberAssignments"
                         f"?$filter=assignmentTargetId%20eq%20'{IDS['erin']}'")


def test_user_numbers_of_a_user_holding_none(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "usernumbers", IDS["alice"])
    assert r.returncode == 0, r.stderr
    assert out[0]["ok"] and out[0]["numbers"] == []
    # nor somebody Teams has never heard of
    r, out, st = gcli(conf, "usernumbers", "0f0f0f0f-0000-4000-8000-000000000000")
    assert out[0]["ok"] and out[0]["numbers"] == []


def test_user_numbers_retries_a_503(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("503", match="assignmentTargetId")
    r, out, st = gcli(conf, "usernumbers", IDS["erin"])
    assert r.returncode == 0, r.stderr
    assert out[0]["ok"] and [n["number"] for n in out[0]["numbers"]] == ["+441235000001"]
    assert [q["status"] for q in graph_requests(sim, "assignmentTargetId")] == [503, 200]
    assert st["retries"] >= 1


def test_user_numbers_failures_are_not_an_empty_answer(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("503", match="assignmentTargetId", count=50)
    r, out, st = gcli(conf, "usernumbers", IDS["erin"])
    assert r.returncode == 1
    assert out[0]["ok"] is False and out[0]["status"] == 503 and out[0]["numbers"] == []
    assert out[0]["error"] == "serviceNotAvailable"
    assert out[0]["client_request_id"] in r.stderr
    sim.ctl.clear_faults()
    for kind in ("malformed", "truncated"):
        sim.ctl.fault(kind, match="assignmentTargetId")
        r, out, st = gcli(conf, "usernumbers", IDS["erin"])
        assert out[0]["ok"] is False and out[0]["error"] == "parse", (kind, out)


def test_user_numbers_follows_next_link(sim, tmp_path):
    # more than one default page ($top 500) on one user, so Graph has to page the filter
    for i in range(501):
        sim.ctl.add_number({"telephoneNumber": f"+4420800{i:05d}", "numberType": "directRouting",
                            "assignmentTargetId": IDS["alice"]})
    sim.ctl.settings(numbers_next_link=True)
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "usernumbers", IDS["alice"])
    assert out[0]["ok"] and len(out[0]["numbers"]) == 501
    assert len({n["number"] for n in out[0]["numbers"]}) == 501
    first, second = graph_requests(sim, "numberAssignments")
    assert "$skip=500" in second["path"] and "assignmentTargetId" in second["path"]


@pytest.mark.parametrize("bad", ["", "a'b", "x' or assignmentTargetId ne '1",
                                 "../../users", "a%27b", "a b", "caf\u00e9", "a" * 64])
def test_user_numbers_refuses_malformed_ids(sim, tmp_path, bad):
    conf = sim.config(tmp_path / "c.conf")
    r = run(binary("tests/graphcli"), "-c", conf, "--fast", "usernumbers", bad)
    assert r.returncode == 2 and "bad command" in r.stderr
    assert graph_requests(sim, "numberAssignments") == []


@pytest.mark.parametrize("mode", ["refuse", "replace"])
def test_assign_to_a_user_holding_a_number(sim, tmp_path, mode):
    """Teams' answer is undocumented: with replace, erin's number silently goes."""
    sim.ctl.settings(assign_existing=mode)
    conf = sim.config(tmp_path / "c.conf")
    r, out, st = gcli(conf, "assign", IDS["erin"], "+441235000090", "directRouting")
    r, held, st = gcli(conf, "usernumbers", IDS["erin"])
    numbers = [n["number"] for n in held[0]["numbers"]]
    if mode == "refuse":
        assert out[0]["ok"] is False and "already has a telephone number" in out[0]["detail"]
        assert numbers == ["+441235000001"]
    else:
        assert out[0]["ok"], out
        assert numbers == ["+441235000090"]
        assert sim.ctl.truth()["numbers"]["+441235000001"]["target"] is None
    assert len(sim.ctl.assign_requests(IDS["erin"])) == 1
    assert sim.ctl.assign_requests(IDS["alice"]) == []


def test_poll_gives_up_although_teams_assigned(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("op_unsettled", match="/assignNumber", user=IDS["alice"])
    r, out, st = gcli(conf, "--polls", "5", "assign", IDS["alice"], "+441235000091",
                      "directRouting")
    assert out[0]["ok"] is False and out[0]["error"] == "timeout", out
    assert len(graph_requests(sim, "/operations")) == 5
    assert sim.ctl.truth()["users"][IDS["alice"]] == ["+441235000091"]
    r, held, st = gcli(conf, "usernumbers", IDS["alice"])
    assert [n["number"] for n in held[0]["numbers"]] == ["+441235000091"]


def test_polls_fail_with_503_after_teams_assigned(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("op_unsettled", poll_fault="503")
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000092", "directRouting")
    assert out[0]["ok"] is False and out[0]["status"] == 503, out
    assert {q["status"] for q in graph_requests(sim, "/operations")} == {503}
    assert sim.ctl.truth()["numbers"]["+441235000092"]["target"] == IDS["alice"]


def test_poll_gives_up_and_teams_never_assigned(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("op_lost", match="/assignNumber")
    r, out, st = gcli(conf, "--polls", "5", "assign", IDS["alice"], "+441235000093",
                      "directRouting")
    assert out[0]["ok"] is False and out[0]["error"] == "timeout", out
    assert "+441235000093" not in sim.ctl.truth()["numbers"]
    r, held, st = gcli(conf, "usernumbers", IDS["alice"])
    assert held[0]["ok"] and held[0]["numbers"] == []


# ---- retries, timeouts, headers ------------------------------------------------------

def test_429_waits_for_retry_after(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("429", match="/v1.0/subscribedSkus", retry_after=2)
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] and st["throttled"] == 1
    q = graph_requests(sim, "/v1.0/subscribedSkus")
    assert [x["status"] for x in q] == [429, 200]
    assert q[1]["time"] - q[0]["time"] >= 1.9


@pytest.mark.parametrize("kind", ["500", "503", "504", "reset"])
def test_server_and_transport_errors_back_off_and_retry(sim, tmp_path, kind):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault(kind, match="/v1.0/subscribedSkus", count=2)
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"], (out, r.stderr)
    assert len(graph_requests(sim, "/v1.0/subscribedSkus")) == 3
    assert st["retries"] >= 1  # libcurl itself retries once on a reused connection that died


def test_retries_are_capped(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault("503", match="/v1.0/subscribedSkus", count=50)
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] is False and out[0]["status"] == 503
    assert len(graph_requests(sim, "/v1.0/subscribedSkus")) == 6  # --fast: 6 attempts


def test_timeout_on_every_request(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf", timeout=1)
    sim.ctl.fault("latency", match="/v1.0/subscribedSkus", ms=3000)
    t0 = time.time()
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] is False and out[0]["error"] == "transport"
    assert "timed out" in out[0]["detail"].lower() or "timeout" in out[0]["detail"].lower()
    assert time.time() - t0 < 15


@pytest.mark.parametrize("repeat", ["accept", "refuse", "reject"])
@pytest.mark.parametrize("kind", ["reset", "cut", "503"])
def test_assign_that_went_through_is_never_taken_for_refused(sim, tmp_path, kind, repeat):
    """The answer is lost after Teams did the work: the connection reset before any
    byte of the answer or in its middle, or a 503. A reset kept connection makes
    libcurl send the request again by itself; what Teams answers a copy of an
    assignment already made is not documented (setting assign_repeat: accepted, the
    operation fails, a 400). Whatever it answers, the result is the assignment made,
    never a refusal: a no is believed only once numberAssignments does not show it.
    Otherwise the number would go back to the pool while Alice holds it."""
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.settings(op_complete_seconds=1, assign_repeat=repeat)
    sim.ctl.fault(kind, match="assignNumber", apply=True)
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000080", "directRouting",
                      warm=True)
    assert out[-1]["ok"] and out[-1]["resent"] == 0, (out, r.stderr)
    posts = graph_requests(sim, "assignNumber")
    checks = graph_requests(sim, "numberAssignments?")
    # checked, unless a copy was sent and accepted
    assert (kind == "reset" and repeat == "accept") or \
        (checks and "%2B441235000080" in checks[0]["path"]), checks
    if kind == "reset":
        # it went on the connection the GET had used; libcurl sent the copy on a new one
        get = graph_requests(sim, "/v1.0/subscribedSkus")[0]
        assert [q["conn"] for q in posts][0] == get["conn"]
        assert len(posts) == 2 and posts[1]["conn"] != get["conn"], posts
    else:
        assert len(posts) == 1   # an answer was begun, or came: libcurl sends no copy
    assert sim.ctl.truth()["numbers"]["+441235000080"]["target"] == IDS["alice"]


@pytest.mark.parametrize("applied", [False, True])
def test_a_success_without_an_operation_is_checked_not_believed(sim, tmp_path, applied):
    """A 200 with a body that is not Teams' (no operation to follow) answers an
    assignNumber Teams did not carry out (or did): numprovd checks numberAssignments
    before it believes anything, and sends it again only when it was not done. Before,
    any 2xx was taken for done, and the inventory recorded an assignment Teams never
    made (found by tests/reliability/soak.py)."""
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.settings(op_complete_seconds=1)
    sim.ctl.fault("malformed", match="assignNumber", apply=applied)
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000082", "directRouting")
    assert out[0]["ok"], (out, r.stderr)
    checks = graph_requests(sim, "numberAssignments?")
    assert checks and "%2B441235000082" in checks[0]["path"]
    assert len(graph_requests(sim, "assignNumber")) == (1 if applied else 2)
    assert out[0]["resent"] == (0 if applied else 1)
    assert sim.ctl.truth()["numbers"]["+441235000082"]["target"] == IDS["alice"]


@pytest.mark.parametrize("kind", ["reset", "cut"])
def test_assign_that_was_lost_is_sent_again_after_checking(sim, tmp_path, kind):
    """Nothing happened in Teams. A reset kept connection (the token's): libcurl sends
    the copy by itself. Cut in the middle of the answer: numprovd checks, then sends
    it again."""
    conf = sim.config(tmp_path / "c.conf")
    sim.ctl.fault(kind, match="assignNumber")  # nothing happened in Teams
    r, out, st = gcli(conf, "assign", IDS["alice"], "+441235000081", "directRouting")
    assert out[0]["ok"] and out[0]["resent"] == (kind == "cut"), (out, r.stderr)
    assert len(graph_requests(sim, "assignNumber")) == 2
    assert bool(graph_requests(sim, "numberAssignments?")) == (kind == "cut")
    assert sim.ctl.truth()["numbers"]["+441235000081"]["target"] == IDS["alice"]


def test_a_server_that_never_answers_the_connect_engages_the_outage_gate(sim, tmp_path):
    """A Graph whose connects go unanswered (SYNs dropped: a full listen queue, as behind a
    firewall that drops) until the timeout: no request was sent, so it is an outage like a
    refused connection: one request at a time, then what waits fails, said once."""
    import socket
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    # fill the accept queue: further SYNs are dropped, never refused
    fillers = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    time.sleep(0.2)
    try:
        conf = sim.config(tmp_path / "c.conf", timeout=1)
        text = conf.read_text()
        # the sign-in endpoint there (Graph's scope stays the simulator's)
        assert f'login_url = "{sim.url}"' in text
        conf.write_text(text.replace(f'login_url = "{sim.url}"',
                                     f'login_url = "https://127.0.0.1:{port}"'))
        r, out, st = gcli(conf, "burst", "4")
        assert r.returncode != 0 and st["requests"] == 4, (r.returncode, st)
        # the gate: token attempts one after another (6 steps at most with --fast), and
        # what waited failed as an outage, said once
        assert st["attempts"] <= 6 and st["token_fetches"] <= 6, st
        assert "no answer from the sign-in endpoint" in r.stderr, r.stderr
        assert r.stderr.count("warning [graph] token request to") == 1, r.stderr
    finally:
        for c in fillers:
            c.close()
        lst.close()


def test_tls_verification_is_always_on(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf")
    text = conf.read_text().replace(f'ca_file = "{sim.certs}/ca.pem";', "")
    conf.write_text(text)
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] is False
    assert "certificate" in r.stderr.lower()
    assert graph_requests(sim) == []  # nothing was sent over the unverified connection


def test_an_unreadable_ca_file_fails_every_connection_and_says_so(sim, tmp_path):
    """The trust anchors are parsed once, at start: a ca_file that is not PEM leaves
    no store, and every connection is refused naming the file (nothing is sent)."""
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("this is not a certificate\n")
    conf = sim.config(tmp_path / "c.conf")
    conf.write_text(conf.read_text().replace(f'ca_file = "{sim.certs}/ca.pem";',
                                             f'ca_file = "{bad}";'))
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] is False
    assert f"cannot load the trust anchors in {bad}" in r.stderr
    assert graph_requests(sim) == []


def test_the_system_trust_anchors_stay_with_a_ca_file(sim, tmp_path):
    """ca_file adds to the system's anchors: the simulator's CA, added to a copy of the
    system bundle given as ca_file, is trusted as before."""
    both = tmp_path / "both.pem"
    both.write_text(pathlib.Path("/etc/ssl/certs/ca-certificates.crt").read_text()
                    + pathlib.Path(f"{sim.certs}/ca.pem").read_text())
    conf = sim.config(tmp_path / "c.conf")
    conf.write_text(conf.read_text().replace(f'ca_file = "{sim.certs}/ca.pem";',
                                             f'ca_file = "{both}";'))
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] is True, r.stderr


def test_proxy_is_used(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf", extra_tenant='proxy = "http://127.0.0.1:9";')
    r, out, st = gcli(conf, "skus")
    assert out[0]["ok"] is False
    assert "127.0.0.1 port 9" in r.stderr or "proxy" in r.stderr.lower()
    assert graph_requests(sim) == []


def test_request_ids_and_throttle_priority(sim, tmp_path):
    conf = sim.config(tmp_path / "c.conf", extra_tenant='throttle_priority = "low";')
    sim.ctl.fault("503", match="/v1.0/subscribedSkus", count=6)
    r, out, st = gcli(conf, "skus")
    q = graph_requests(sim, "/v1.0/subscribedSkus")
    ids = [x["headers"]["client-request-id"] for x in q]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    assert all(x["headers"]["x-ms-throttle-priority"] == "low" for x in q)
    # the error in the log names the request's id, so it can be traced at Microsoft
    assert ids[-1] in r.stderr


# ---- concurrency ---------------------------------------------------------------------

@pytest.mark.parametrize("parallel", [1, 4])
def test_at_most_parallel_requests_in_flight(sim, tmp_path, parallel):
    conf = sim.config(tmp_path / "c.conf", parallel=parallel)
    gcli(conf, "skus")  # the token first, so only the burst is measured
    sim.ctl.clear_log()
    sim.ctl.fault("latency", match="/v1.0/subscribedSkus", ms=150)
    t0 = time.time()
    r, out, st = gcli(conf, "burst", "16")
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    assert st["max_in_flight"] == parallel
    assert sim.ctl.log()["max_in_flight"] == parallel
    assert took >= 16 / parallel * 0.15
