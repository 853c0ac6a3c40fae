"""Tests of the Graph simulator itself, over real TLS against a graphsim subprocess.

Run: /usr/bin/python3 -m pytest tests/graphsim -q"""
import base64
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from graphsim_testlib import (CLIENT_ID, DOMAIN, GRAPH, HERE, IDS, MCOEV, SECRET,  # noqa: E402
                              TENANT_ID, Graph, Running, get_token, make_assertion, request,
                              tenant_fixture, token_form)
from simctl import SimError  # noqa: E402

TNM = "/v1.0/admin/teams/telephoneNumberManagement"
DEMO = HERE / "fixtures" / "demo-tenant.json"
DEMO_CLIENT = "0d3c1a8e-6b2f-4e57-9a41-5c2d7e8f9a10"
TOKEN = f"/{DOMAIN}/oauth2/v2.0/token"


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(HERE / "mkcerts.sh"), str(d)], check=True, timeout=60)
    return d


@pytest.fixture(scope="session")
def server(certs, tmp_path_factory):
    port_file = tmp_path_factory.mktemp("run") / "port"
    proc = subprocess.Popen(["/usr/bin/python3", str(HERE / "graphsim.py"),
                             "--cert", str(certs / "server.pem"),
                             "--key", str(certs / "server.key"), "--port", "0",
                             "--port-file", str(port_file), "--seed", "7"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("graphsim listening on https://127.0.0.1:"), line
    port = int(port_file.read_text())
    assert line.strip().endswith(f":{port}")
    yield Running(certs, proc, port)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def sim(server):
    """A freshly loaded test tenant, default settings, no faults."""
    server.ctl.load(fixture=tenant_fixture(server.certs / "app.pem"))
    return server


@pytest.fixture
def graph(sim):
    return Graph(sim)


def token_request(sim, **form):
    return request(sim, "POST", TOKEN, form=token_form(**form))


def assertion_request(sim, assertion):
    return token_request(sim, client_assertion=assertion,
                         client_assertion_type="urn:ietf:params:oauth:client-assertion-type:"
                                               "jwt-bearer")


def aad_code(reply):
    body = reply.json()
    assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}:")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)
    return body["error"], body["error_codes"][0]


def graph_error(reply):
    err = reply.json()["error"]
    assert {"request-id", "client-request-id", "date"} <= set(err["innerError"])
    return err["code"]


def delta_round(graph, url):
    """Follow nextLinks to the deltaLink: (items, deltaLink, pages)."""
    items, pages = [], 0
    while True:
        reply = graph.get(url)
        assert reply.status == 200, reply.raw
        body = reply.json()
        items += body["value"]
        pages += 1
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return items, body["@odata.deltaLink"], pages
        url = body["@odata.nextLink"]
        assert "$skiptoken=" in url


def by_id(items):
    return {item["id"]: item for item in items}


def numbers(graph, query=""):
    reply = graph.get(f"{TNM}/numberAssignments{query}")
    assert reply.status == 200, reply.raw
    return reply.json()["value"]


def lookup(graph, tel):
    hits = numbers(graph, "?$filter=" + quote(f"telephoneNumber eq '{tel}'"))
    return hits[0] if hits else None


def assign(graph, tel, uid, ntype="directRouting", **extra):
    return graph.post(f"{TNM}/numberAssignments/assignNumber",
                      {"telephoneNumber": tel, "assignmentTargetId": uid, "numberType": ntype,
                       **extra})


def finish(graph, reply):
    """Poll an accepted operation to its end: (final operation, number of running polls)."""
    assert reply.status == 202, reply.raw
    assert reply.raw == b""
    location = reply.headers["location"]
    assert re.search(r"/v1\.0/admin/teams/telephoneNumberManagement/operations\('[^']+'\)$",
                     location)
    running = 0
    while True:
        op = graph.get(location).json()
        if op["status"] != "running":
            return op, running
        running += 1
        assert running < 20


def outcome(graph, reply):
    op, _ = finish(graph, reply)
    return op["status"], op["numbers"][0]["statusDetail"]


# --- transport --------------------------------------------------------------------------------
def test_keepalive_and_request_ids(graph, sim):
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=sim.ssl, timeout=10)
    sockets = []
    for i in range(3):
        conn.request("GET", "/v1.0/subscribedSkus",
                     headers={"Authorization": f"Bearer {graph.token}",
                              "client-request-id": f"crid-{i}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert resp.getheader("client-request-id") == f"crid-{i}"
        assert resp.getheader("request-id")
        sockets.append(conn.sock)
    assert sockets[0] is sockets[1] is sockets[2]   # one connection, kept alive
    conn.close()


def test_tls_is_verified_against_the_test_ca(sim):
    with pytest.raises(ssl.SSLError):
        conn = http.client.HTTPSConnection("127.0.0.1", sim.port,
                                           context=ssl.create_default_context(), timeout=10)
        conn.request("GET", "/_sim/health")


# --- token endpoint ---------------------------------------------------------------------------
def test_token_with_client_secret(sim):
    for tenant in (DOMAIN, TENANT_ID):
        reply = request(sim, "POST", f"/{tenant}/oauth2/v2.0/token",
                        form=token_form(client_secret=SECRET))
        assert reply.status == 200, reply.raw
        body = reply.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
        assert body["access_token"]
    reply = token_request(sim, client_secret=SECRET, scope=f"{sim.url}/.default")
    assert reply.status == 200


def test_token_wrong_secret_and_other_refusals(sim):
    reply = token_request(sim, client_secret="wrong")
    assert reply.status == 401
    assert aad_code(reply) == ("invalid_client", 7000215)
    cases = [({"client_secret": None}, 400, ("invalid_client", 7000218)),
             ({"client_secret": SECRET, "client_id": "nobody"}, 400,
              ("unauthorized_client", 700016)),
             ({"client_secret": SECRET, "scope": "https://graph.microsoft.com/User.Read"}, 400,
              ("invalid_scope", 70011)),
             ({"client_secret": SECRET, "grant_type": "password"}, 400,
              ("unsupported_grant_type", 70003))]
    for form, status, expected in cases:
        reply = token_request(sim, **form)
        assert reply.status == status and aad_code(reply) == expected, form
    reply = request(sim, "POST", "/other.onmicrosoft.com/oauth2/v2.0/token",
                    form=token_form(client_secret=SECRET))
    assert reply.status == 400 and aad_code(reply)[1] == 90002


def test_token_with_http_basic_secret(sim):
    basic = base64.b64encode(f"{CLIENT_ID}:{quote(SECRET, safe='')}".encode()).decode()
    reply = request(sim, "POST", TOKEN, form={"grant_type": "client_credentials",
                                              "scope": GRAPH},
                    headers={"Authorization": f"Basic {basic}"})
    assert reply.status == 200, reply.raw


def test_token_lifetime_setting_and_expiry(sim):
    sim.ctl.settings(token_lifetime=60)
    reply = token_request(sim, client_secret=SECRET)
    assert reply.json()["expires_in"] == 60
    token = reply.json()["access_token"]
    assert request(sim, "GET", "/v1.0/subscribedSkus", token=token).status == 200
    sim.ctl.advance_clock(61)
    reply = request(sim, "GET", "/v1.0/subscribedSkus", token=token)
    assert reply.status == 401 and graph_error(reply) == "InvalidAuthenticationToken"
    assert "expired" in reply.json()["error"]["message"]


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_jwt_assertion_accepted(sim, alg):
    reply = assertion_request(sim, make_assertion(sim, alg))
    assert reply.status == 200, reply.raw
    token = reply.json()["access_token"]
    assert request(sim, "GET", "/v1.0/subscribedSkus", token=token).status == 200
    log = sim.ctl.log()["requests"]
    assert log[0]["client_auth"] == "assertion"


def test_jwt_audience_forms(sim):
    localhost = f"https://localhost:{sim.port}"
    for tenant, base in ((TENANT_ID, None), (DOMAIN, localhost)):
        reply = assertion_request(sim, make_assertion(sim, aud_tenant=tenant, base=base))
        assert reply.status == 200, (tenant, base, reply.raw)
    for tenant, base in (("contoso.com", None), (DOMAIN, "https://login.microsoftonline.com")):
        reply = assertion_request(sim, make_assertion(sim, aud_tenant=tenant, base=base))
        assert reply.status == 401 and aad_code(reply) == ("invalid_client", 700023)


def test_jwt_tampered_refused(sim):
    good = make_assertion(sim)
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] += 1
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig_bytes = bytearray(base64.urlsafe_b64decode(sig + "=="))
    sig_bytes[10] ^= 1
    bad_sig = base64.urlsafe_b64encode(bytes(sig_bytes)).rstrip(b"=").decode()
    for forged in (f"{head}.{forged_payload}.{sig}", f"{head}.{payload}.{bad_sig}"):
        reply = assertion_request(sim, forged)
        assert reply.status == 401 and aad_code(reply) == ("invalid_client", 700027)
    wrong_cert = make_assertion(sim, header={"x5t#S256": "A" * 43})
    assert aad_code(assertion_request(sim, wrong_cert))[1] == 700027
    not_jwt = assertion_request(sim, "abc.def")
    assert not_jwt.status == 400 and aad_code(not_jwt)[1] == 50027


def test_jwt_time_and_claim_checks(sim):
    now = int(time.time())
    cases = [({"nbf": now - 1200, "exp": now - 10}, 700024),      # expired
             ({"nbf": now + 3600, "exp": now + 3900}, 700024),    # not yet valid
             ({"nbf": now, "exp": now + 7200}, 700024),           # lifetime > 1 h
             ({"iss": "someone-else"}, 700021),
             ({"jti": None}, 50027)]
    for claims, number in cases:
        reply = assertion_request(sim, make_assertion(sim, claims=claims))
        assert reply.status in (400, 401) and aad_code(reply)[1] == number, claims
    reply = assertion_request(sim, make_assertion(sim, header={"alg": "HS256"}))
    assert reply.status == 401


def test_graph_requires_a_valid_bearer_token(sim):
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": "Basic eDp5"}):
        reply = request(sim, "GET", "/v1.0/subscribedSkus",
                        headers={"client-request-id": "echo-me", **headers})
        assert reply.status == 401
        assert graph_error(reply) == "InvalidAuthenticationToken"
        assert reply.json()["error"]["innerError"]["client-request-id"] == "echo-me"
        assert reply.headers["client-request-id"] == "echo-me"
    assert request(sim, "GET", "/v1.0/subscribedSkus", token=get_token(sim)).status == 200


# --- users delta ----------------------------------------------------------------------------
SELECT = "/v1.0/users/delta?$select=displayName,city,officeLocation,assignedPlans"


def test_delta_paging_and_select(graph, sim):
    sim.ctl.settings(page_size=4)
    items, link, pages = delta_round(
        graph, "/v1.0/users/delta?$select=displayName,city,onPremisesExtensionAttributes")
    assert pages == 2 and len(items) == 6
    assert "$deltatoken=" in link
    for item in items:
        assert set(item) == {"id", "displayName", "city", "onPremisesExtensionAttributes"}
        assert len(item["onPremisesExtensionAttributes"]) == 15
    reply = graph.get("/v1.0/users/delta?$select=city,shoeSize")
    assert reply.status == 400 and graph_error(reply) == "BadRequest"


def test_delta_reports_changes_of_selected_properties_only(graph, sim):
    _, link, _ = delta_round(graph, SELECT)
    sim.ctl.update_user(IDS["alice"], {"city": "Abingdon"})
    sim.ctl.update_user(IDS["carol"], {"jobTitle": "Boss"})           # not selected
    items, link, _ = delta_round(graph, link)
    assert [i["id"] for i in items] == [IDS["alice"]]
    assert items[0]["city"] == "Abingdon" and items[0]["displayName"] == "Alice"
    sim.ctl.license(IDS["carol"], skus=["SPE_E5"])
    items, link, _ = delta_round(graph, link)
    assert [i["id"] for i in items] == [IDS["carol"]]
    assert any(p["servicePlanId"] == MCOEV for p in items[0]["assignedPlans"])
    items, _, _ = delta_round(graph, link)
    assert items == []


def test_delta_removed_reasons_and_restore(graph, sim):
    _, link, _ = delta_round(graph, SELECT)
    sim.ctl.soft_delete(IDS["alice"])
    sim.ctl.hard_delete(IDS["bob"])
    items, link, _ = delta_round(graph, link)
    got = by_id(items)
    assert got[IDS["alice"]] == {"id": IDS["alice"], "@removed": {"reason": "changed"}}
    assert got[IDS["bob"]] == {"id": IDS["bob"], "@removed": {"reason": "deleted"}}
    sim.ctl.restore(IDS["alice"])
    items, link, _ = delta_round(graph, link)
    assert [i["id"] for i in items] == [IDS["alice"]] and "@removed" not in items[0]
    assert items[0]["city"] == "London"
    with pytest.raises(SimError):
        sim.ctl.restore(IDS["bob"])                 # permanently gone
    initial = by_id(delta_round(graph, SELECT)[0])
    assert IDS["bob"] not in initial and "@removed" not in initial[IDS["alice"]]


def test_delta_round_is_a_snapshot(graph, sim):
    sim.ctl.settings(page_size=2)
    first = graph.get(SELECT).json()
    assert len(first["value"]) == 2
    sim.ctl.update_user(IDS["frank"], {"city": "Lyon"})
    new = sim.ctl.add_user({"displayName": "Newbie", "city": "London"})
    rest, link, _ = delta_round(graph, first["@odata.nextLink"])
    seen = by_id(first["value"] + rest)
    assert seen[IDS["frank"]]["city"] == "Paris" and new["id"] not in seen
    items, _, _ = delta_round(graph, link)
    got = by_id(items)
    assert got[IDS["frank"]]["city"] == "Lyon" and new["id"] in got


def test_delta_latest_and_bad_tokens(graph, sim):
    reply = graph.get("/v1.0/users/delta?$select=city&$deltatoken=latest")
    body = reply.json()
    assert body["value"] == [] and "@odata.deltaLink" in body
    sim.ctl.update_user(IDS["dave"], {"city": "Paris"})
    items, link, _ = delta_round(graph, body["@odata.deltaLink"])
    assert items == [{"id": IDS["dave"], "city": "Paris"}]
    token = link.split("$deltatoken=")[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for url in ("/v1.0/users/delta?$deltatoken=abc", f"/v1.0/users/delta?$deltatoken={forged}",
                "/v1.0/users/delta?$skiptoken=xyz"):
        reply = graph.get(url)
        assert reply.status == 400 and graph_error(reply) == "syncStateNotFound", url
    sim.ctl.reset()                                   # a new tenant generation
    graph.token = get_token(sim)
    assert graph_error(graph.get(link)) == "syncStateNotFound"


def test_delta_token_expires_with_410(graph, sim):
    sim.ctl.settings(delta_token_lifetime=100)
    _, link, _ = delta_round(graph, SELECT)
    sim.ctl.advance_clock(101)
    reply = graph.get(link)
    assert reply.status == 410
    location = reply.headers["location"]
    assert location == sim.url + SELECT
    items, _, _ = delta_round(graph, location)
    assert len(items) == 6


# --- directory ------------------------------------------------------------------------------
def test_subscribed_skus(graph):
    skus = {s["skuPartNumber"]: s for s in graph.get("/v1.0/subscribedSkus").json()["value"]}
    assert set(skus) == {"SPE_E5", "SPE_E3", "MCOPSTN1", "MCOPSTNC"}
    plan = next(p for p in skus["SPE_E5"]["servicePlans"] if p["servicePlanName"] == "MCOEV")
    assert plan == {"servicePlanId": MCOEV, "servicePlanName": "MCOEV",
                    "provisioningStatus": "Success", "appliesTo": "User"}
    assert skus["SPE_E5"]["skuId"] and skus["SPE_E5"]["consumedUnits"] == 5


def test_users_get_and_advanced_filter(graph, sim):
    user = graph.get(f"/v1.0/users/{IDS['bob']}?$select=city,officeLocation").json()
    assert user == {"id": IDS["bob"], "city": "LONDON", "officeLocation": "Park Lane"}
    assert graph.get(f"/v1.0/users/{IDS['alice'][:-1]}9").status == 404
    url = ("/v1.0/users?$count=true&$select=displayName&$filter=" +
           quote(f"assignedPlans/any(a:a/servicePlanId eq {MCOEV} and "
                 "a/capabilityStatus eq 'Enabled')"))
    assert graph.get(url).status == 400                 # advanced query needs ConsistencyLevel
    body = graph.get(url, headers={"ConsistencyLevel": "eventual"}).json()
    assert body["@odata.count"] == 5 and len(body["value"]) == 5


# --- numberAssignments -----------------------------------------------------------------------
def test_numbers_list_filter_top_skip(graph):
    everything = numbers(graph)
    assert len(everything) == 9
    tels = [n["telephoneNumber"] for n in everything]
    assert tels == sorted(tels, key=lambda t: int(t[1:]))
    for field in ("id", "telephoneNumber", "operatorId", "numberType", "activationState",
                  "assignmentStatus", "assignmentTargetId", "assignmentCategory",
                  "capabilities", "city", "isoCountryCode", "locationId", "numberSource"):
        assert field in everything[0]
    erin = lookup(graph, "+441235000001")
    assert erin["assignmentTargetId"] == IDS["erin"] and erin["activationState"] == "activated"
    assert lookup(graph, "441235000001")["telephoneNumber"] == "+441235000001"
    unencoded_plus = "?$filter=" + quote("telephoneNumber eq ") + "'+441235000001'"
    assert numbers(graph, unencoded_plus) == []          # '+' in a query is a space
    assert len(numbers(graph, "?$filter=" + quote(f"assignmentTargetId eq '{IDS['erin']}'"))) == 1
    free_cp = numbers(graph, "?$filter=" + quote("numberType eq 'CallingPlan' and "
                                                 "assignmentStatus EQ 'UNASSIGNED'"))
    assert len(free_cp) == 5
    page = numbers(graph, "?$top=2&$skip=3")
    assert [n["telephoneNumber"] for n in page] == tels[3:5]
    assert len(numbers(graph, "?$top=1000")) == 9
    for bad in ("?$top=1001", "?$top=0", "?$filter=" + quote("city eq 'London'"),
                "?$filter=" + quote("numberType eq 'callingPlan' or numberType eq 'x'")):
        reply = graph.get(f"{TNM}/numberAssignments{bad}")
        assert reply.status == 400 and graph_error(reply) == "BadRequest", bad


def test_numbers_filter_by_assignment_target(graph, sim):
    def held(uid, quoted=True):
        text = f"assignmentTargetId eq '{uid}'"
        return numbers(graph, "?$filter=" + (quote(text) if quoted else text.replace(" ", "+")))
    [erin] = held(IDS["erin"])
    assert erin["telephoneNumber"] == "+441235000001" and erin["assignmentTargetId"] == IDS["erin"]
    assert held(IDS["erin"].upper()) == [erin]              # object ids compare as GUIDs
    assert held(IDS["erin"], quoted=False) == [erin]        # '+' for a space, as forms do
    assert held(IDS["alice"]) == []                         # holds nothing
    assert held("0f0f0f0f-0000-4000-8000-000000000000") == []   # nobody at all
    # a pending assignment is the user's already
    assign(graph, "+442080000005", IDS["alice"])
    [pending] = held(IDS["alice"])
    assert (pending["telephoneNumber"], pending["activationState"]) == \
        ("+442080000005", "assignmentPending")
    combined = numbers(graph, "?$filter=" + quote(f"assignmentTargetId eq '{IDS['alice']}' "
                                                  "and numberType eq 'directRouting'"))
    assert combined == [pending]
    for bad in (f"assignmentTargetId eq {IDS['erin']}", f"assignmentTargetId eq \"{IDS['erin']}\"",
                f"assignmentTargetId ne '{IDS['erin']}'", f"id eq '{erin['id']}'"):
        reply = graph.get(f"{TNM}/numberAssignments?$filter=" + quote(bad))
        assert reply.status == 400 and graph_error(reply) == "BadRequest", bad


def test_get_and_update_one_number(graph, sim):
    erin = lookup(graph, "+441235000001")
    assert graph.get(f"{TNM}/numberAssignments/{erin['id']}").json() == erin
    assert graph.get(f"{TNM}/numberAssignments/bm9wZQ").status == 404
    url = f"{TNM}/numberAssignments/updateNumber"
    reply = graph.post(url, {"telephoneNumber": "+441235000001", "locationId": "loc-parklane"})
    assert reply.status == 200
    assert lookup(graph, "+441235000001")["locationId"] == "loc-parklane"
    assert graph.post(url, {"telephoneNumber": "+441235000001", "locationId": "x"}).status == 400
    assert graph.post(url, {"telephoneNumber": "+449999999999"}).status == 404


def test_numbers_next_link_is_a_setting(graph, sim):
    assert "@odata.nextLink" not in graph.get(f"{TNM}/numberAssignments?$top=4").json()
    sim.ctl.settings(numbers_next_link=True)
    url, seen = f"{TNM}/numberAssignments?$top=4", []
    while url:
        body = graph.get(url).json()
        seen += [n["telephoneNumber"] for n in body["value"]]
        url = body.get("@odata.nextLink")
    assert len(seen) == len(set(seen)) == 9


# --- assignNumber ----------------------------------------------------------------------------
def test_assign_direct_routing_number_created_on_the_fly(graph, sim):
    assert lookup(graph, "+442080000005") is None
    reply = assign(graph, "442080000005", IDS["alice"])
    pending = lookup(graph, "+442080000005")
    assert pending["assignmentTargetId"] == IDS["alice"]
    assert pending["activationState"] == "assignmentPending"
    op, running = finish(graph, reply)
    assert running == 2 and op["status"] == "succeeded"
    assert op["numbers"][0]["status"] == "succeeded"
    assert op["numbers"][0]["resourceLocation"].endswith(pending["id"])
    done = lookup(graph, "+442080000005")
    assert (done["activationState"], done["assignmentStatus"], done["numberType"],
            done["numberSource"]) == ("activated", "userAssigned", "directRouting", "online")
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['alice']}").json()
    assert conf["isEnterpriseVoiceEnabled"] is True
    assert conf["telephoneNumbers"] == [{"telephoneNumber": "+442080000005",
                                         "assignmentCategory": "primary"}]
    assert sim.ctl.truth()["users"][IDS["alice"]] == ["+442080000005"]


def test_assign_extension_number(graph):
    assert outcome(graph, assign(graph, "+441235999000;ext=100", IDS["alice"])) == \
        ("succeeded", "")
    assert lookup(graph, "+441235999000;ext=100")["assignmentTargetId"] == IDS["alice"]
    assert lookup(graph, "+441235999000;ext=101") is None


def test_assign_malformed_requests_are_synchronous_400(graph):
    url = f"{TNM}/numberAssignments/assignNumber"
    bodies = [b"{not json", b"[]",
              {"telephoneNumber": "+442080000005", "numberType": "directRouting"},
              {"telephoneNumber": "+442080000005", "assignmentTargetId": IDS["alice"]},
              {"telephoneNumber": "+442080000005", "assignmentTargetId": IDS["alice"],
               "numberType": "DirectRouting"},
              {"telephoneNumber": "call me", "assignmentTargetId": IDS["alice"],
               "numberType": "directRouting"},
              {"telephoneNumber": "+442080000005", "assignmentTargetId": IDS["alice"],
               "numberType": "directRouting", "assignmentCategory": "shared"}]
    for body in bodies:
        headers = {"Content-Type": "application/json"} if isinstance(body, bytes) else None
        reply = graph.post(url, body, headers)
        assert reply.status == 400 and graph_error(reply) == "BadRequest", body


def test_calling_plan_rules(graph):
    assert outcome(graph, assign(graph, "+442071239999", IDS["bob"], "callingPlan")) == \
        ("failed", "Telephone Number '+442071239999' is not found from tenant")
    assert outcome(graph, assign(graph, "+441235000001", IDS["bob"], "callingPlan"))[0] == \
        "failed"                                                  # a DR number
    for who in ("dave", "alice"):                                 # credits only / no plan
        assert outcome(graph, assign(graph, "+442071230002", IDS[who], "callingPlan")) == \
            ("failed", f"User '{IDS[who]}' lacks appropriate licenses to assign a "
                       "'CallingPlan' number")
    assert lookup(graph, "+442071230002")["assignmentStatus"] == "unassigned"
    assert outcome(graph, assign(graph, "+442071230001", IDS["bob"], "callingPlan")) == \
        ("succeeded", "")
    assert lookup(graph, "+442071230001")["assignmentTargetId"] == IDS["bob"]


def test_operator_connect_rules(graph):
    assert outcome(graph, assign(graph, "+33149999999", IDS["frank"], "operatorConnect")) == \
        ("failed", "Telephone Number '+33149999999' is not found from tenant")
    status, detail = outcome(graph, assign(graph, "+33140000001", IDS["frank"]))
    assert status == "failed" and "operatorConnect" in detail     # typed as direct routing
    assert outcome(graph, assign(graph, "+33140000001", IDS["frank"], "operatorConnect"))[0] \
        == "succeeded"


def test_assignment_refusals_leave_nothing_behind(graph, sim):
    cases = [
        ("+441235000001", "alice", "Telephone Number '+441235000001' has already been "
                                   "assigned to another user"),
        ("+442080000007", "carol", f"User '{IDS['carol']}' is not licensed for Teams Phone"),
        ("+442080000008", "erin", f"User '{IDS['erin']}' already has a telephone number "
                                  "assigned"),
    ]
    for tel, who, detail in cases:
        assert outcome(graph, assign(graph, tel, IDS[who])) == ("failed", detail)
    ghost = "0f0f0f0f-0000-4000-8000-000000000000"
    assert outcome(graph, assign(graph, "+442080000009", ghost)) == \
        ("failed", f"User '{ghost}' is not licensed for Teams Phone")
    sim.ctl.soft_delete(IDS["alice"])
    assert outcome(graph, assign(graph, "+442080000009", IDS["alice"]))[0] == "failed"
    truth = sim.ctl.truth()
    assert set(truth["numbers"]) == {n["telephoneNumber"] for n in numbers(graph)}
    assert not any(t.startswith("+44208000000") for t in truth["numbers"])
    assert truth["users"] == {IDS["erin"]: ["+441235000001"]}
    # the same assignment again is not a conflict
    assert outcome(graph, assign(graph, "+441235000001", IDS["erin"]))[0] == "succeeded"


# --- assignNumber for a user who already holds a number (assign_existing) --------------------
def test_assign_existing_refuse_is_the_default(graph, sim):
    assert sim.ctl.settings()["assign_existing"] == "refuse"
    assert outcome(graph, assign(graph, "+442080000008", IDS["erin"])) == \
        ("failed", f"User '{IDS['erin']}' already has a telephone number assigned")
    truth = sim.ctl.truth()
    assert truth["users"] == {IDS["erin"]: ["+441235000001"]}
    assert "+442080000008" not in truth["numbers"]
    # a private number is refused as well: numprov never wants two
    assert outcome(graph, assign(graph, "+442080000008", IDS["erin"],
                                 assignmentCategory="private"))[0] == "failed"


def test_assign_existing_replace(graph, sim):
    assert sim.ctl.settings(assign_existing="replace")["assign_existing"] == "replace"
    reply = assign(graph, "+442080000008", IDS["erin"])
    # the replacement happens when Teams accepts the request, before any poll
    truth = sim.ctl.truth()
    assert truth["users"] == {IDS["erin"]: ["+442080000008"]}
    assert truth["numbers"]["+441235000001"] == {
        "target": None, "type": "directRouting", "state": "activated", "status": "unassigned",
        "category": None, "locationId": None}
    assert truth["numbers"]["+442080000008"]["state"] == "assignmentPending"
    assert outcome(graph, reply) == ("succeeded", "")       # nothing says a number went
    assert lookup(graph, "+441235000001")["assignmentTargetId"] is None
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['erin']}").json()
    assert conf["telephoneNumbers"] == [{"telephoneNumber": "+442080000008",
                                         "assignmentCategory": "primary"}]
    assert conf["isEnterpriseVoiceEnabled"] is True
    [op] = [o for o in sim.ctl.operations()["operations"] if o["tel"] == "+442080000008"]
    assert op["replaced"] == ["+441235000001"]
    # the same number again replaces nothing
    assert outcome(graph, assign(graph, "+442080000008", IDS["erin"]))[0] == "succeeded"
    assert sim.ctl.truth()["users"][IDS["erin"]] == ["+442080000008"]


def test_assign_existing_replace_only_when_accepted_and_of_the_category(graph, sim):
    sim.ctl.settings(assign_existing="replace")
    # refused for another reason: erin keeps her number
    assert outcome(graph, assign(graph, "+442071230001", IDS["erin"], "callingPlan"))[0] == \
        "failed"
    assert sim.ctl.truth()["users"][IDS["erin"]] == ["+441235000001"]
    # a private number sits beside the primary one (Teams allows both)
    assert outcome(graph, assign(graph, "+442080000009", IDS["erin"],
                                 assignmentCategory="private"))[0] == "succeeded"
    assert sorted(sim.ctl.truth()["users"][IDS["erin"]]) == ["+441235000001", "+442080000009"]
    # a calling plan user moves from one calling plan number to another
    assert outcome(graph, assign(graph, "+442071230001", IDS["bob"], "callingPlan"))[0] == \
        "succeeded"
    assert outcome(graph, assign(graph, "+442071230002", IDS["bob"], "callingPlan"))[0] == \
        "succeeded"
    assert sim.ctl.truth()["users"][IDS["bob"]] == ["+442071230002"]
    assert lookup(graph, "+442071230001")["assignmentStatus"] == "unassigned"


# --- assignNumber of the number the user already holds (assign_repeat) --------------------
@pytest.mark.parametrize("pending", [False, True])
def test_assign_repeat_accept_refuse_reject(graph, sim, pending):
    """Erin holds +441235000001 (activated), or a number still assignmentPending: a
    second assignNumber of it is accepted (default), fails, or is answered 400; it
    never changes what she holds."""
    tel = "+441235000001"
    if pending:
        tel = "+442080000008"
        sim.ctl.settings(assign_existing="replace")
        assert assign(graph, tel, IDS["erin"]).status == 202  # not polled: pending
    before = sim.ctl.truth()
    assert sim.ctl.settings()["assign_repeat"] == "accept"
    assert outcome(graph, assign(graph, tel, IDS["erin"]))[0] == "succeeded"
    sim.ctl.settings(assign_repeat="refuse")
    assert outcome(graph, assign(graph, tel, IDS["erin"])) == \
        ("failed", f"Telephone Number '{tel}' is already assigned to user '{IDS['erin']}'")
    sim.ctl.settings(assign_repeat="reject")
    reply = assign(graph, tel, IDS["erin"])
    assert reply.status == 400
    assert reply.json()["error"]["message"] == \
        f"Telephone Number '{tel}' is already assigned to user '{IDS['erin']}'"
    assert sim.ctl.truth()["users"] == before["users"]
    assert sim.ctl.truth()["numbers"][tel]["target"] == IDS["erin"]
    # another user's number is refused as before, whatever the setting
    assert outcome(graph, assign(graph, tel, IDS["alice"]))[0] == "failed"


def test_assign_repeat_setting_checks_and_reset(sim):
    for bad in ("Refuse", "", 1, None):
        with pytest.raises(SimError) as err:
            sim.ctl.settings(assign_repeat=bad)
        assert err.value.status == 400
    sim.ctl.settings(assign_repeat="reject")
    sim.ctl.reset()
    assert sim.ctl.settings()["assign_repeat"] == "accept"


def test_assign_existing_setting_checks_and_reset(sim):
    for bad in ("Replace", "", 1, True, None):
        with pytest.raises(SimError) as err:
            sim.ctl.settings(assign_existing=bad)
        assert err.value.status == 400
    sim.ctl.settings(assign_existing="replace")
    sim.ctl.reset()
    assert sim.ctl.settings()["assign_existing"] == "refuse"


def test_concurrent_assignments_of_one_number(graph, sim):
    replies = {}
    who = ["alice", "bob", "dave", "frank"]

    def go(name):
        replies[name] = assign(graph, "+442080000077", IDS[name])
    threads = [threading.Thread(target=go, args=(name,)) for name in who]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = {name: outcome(graph, replies[name])[0] for name in who}
    assert sorted(results.values()) == ["failed"] * 3 + ["succeeded"]
    winner = next(n for n, r in results.items() if r == "succeeded")
    assert sim.ctl.truth()["numbers"]["+442080000077"]["target"] == IDS[winner]


def test_licence_propagation_delay(graph, sim):
    sim.ctl.settings(licence_delay=3600)
    sim.ctl.license(IDS["carol"], skus=["SPE_E5"])
    assert outcome(graph, assign(graph, "+442080000005", IDS["carol"]))[0] == "failed"
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['carol']}").json()
    assert "PhoneSystem" not in conf["featureTypes"]
    sim.ctl.advance_clock(3601)
    graph.token = get_token(sim)                      # the old one expired meanwhile
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['carol']}").json()
    assert "PhoneSystem" in conf["featureTypes"]
    assert outcome(graph, assign(graph, "+442080000005", IDS["carol"]))[0] == "succeeded"
    # a licence given with an age is past the delay already
    new = sim.ctl.add_user({"displayName": "Late", "city": "London"})
    sim.ctl.license(new["id"], plans=["MCOEV"], age=7200)
    assert outcome(graph, assign(graph, "+442080000006", new["id"]))[0] == "succeeded"


def test_lost_licence_is_not_licensed(graph, sim):
    sim.ctl.unlicense(IDS["alice"], plans=["MCOEV"])
    plans = sim.ctl.user(IDS["alice"])["properties"]["assignedPlans"]
    assert {p["capabilityStatus"] for p in plans if p["servicePlanId"] == MCOEV} == {"Deleted"}
    assert outcome(graph, assign(graph, "+442080000005", IDS["alice"]))[0] == "failed"
    sim.ctl.license(IDS["alice"], plans=["MCOEV"], status="Warning")
    assert outcome(graph, assign(graph, "+442080000005", IDS["alice"]))[0] == "succeeded"


def test_emergency_location(graph, sim):
    status, detail = outcome(graph, assign(graph, "+442080000005", IDS["alice"],
                                           locationId="loc-nowhere"))
    assert (status, detail) == ("failed", "Location 'loc-nowhere' not found")
    assert outcome(graph, assign(graph, "+442080000005", IDS["alice"],
                                 locationId="loc-parklane"))[0] == "succeeded"
    assert lookup(graph, "+442080000005")["locationId"] == "loc-parklane"


def test_operation_polling(graph, sim):
    sim.ctl.settings(op_polls=3)
    reply = assign(graph, "+442080000005", IDS["alice"])
    location = reply.headers["location"]
    op_id = re.search(r"operations\('([^']+)'\)", location).group(1)
    statuses = [graph.get(location).json()["status"] for _ in range(3)]
    assert statuses == ["running"] * 3
    op = graph.get(f"{TNM}/operations/{op_id}").json()     # the path form works too
    assert op["status"] == "succeeded" and op["id"] == op_id and op["createdDateTime"]
    assert graph.get(location).json()["status"] == "succeeded"
    reply = graph.get(f"{TNM}/operations('nope')")
    assert reply.status == 404 and graph_error(reply) == "itemNotFound"
    sim.ctl.settings(op_polls=0)
    _, running = finish(graph, assign(graph, "+442080000006", IDS["frank"]))
    assert running == 0


def test_unpolled_operation_completes_by_itself(graph, sim):
    sim.ctl.settings(op_complete_seconds=5)
    assign(graph, "+442080000005", IDS["alice"])
    assert lookup(graph, "+442080000005")["activationState"] == "assignmentPending"
    sim.ctl.advance_clock(6)
    assert lookup(graph, "+442080000005")["activationState"] == "activated"


# --- unassignNumber --------------------------------------------------------------------------
def unassign(graph, tel, ntype="directRouting"):
    return graph.post(f"{TNM}/numberAssignments/unassignNumber",
                      {"telephoneNumber": tel, "numberType": ntype})


def test_unassign(graph, sim):
    assert outcome(graph, unassign(graph, "+441235000001", "callingPlan"))[0] == "failed"
    assert outcome(graph, unassign(graph, "441235000001")) == ("succeeded", "")
    number = lookup(graph, "+441235000001")
    assert number["assignmentStatus"] == "unassigned" and number["assignmentTargetId"] is None
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['erin']}").json()
    assert conf["telephoneNumbers"] == [] and conf["isEnterpriseVoiceEnabled"] is False
    assert outcome(graph, unassign(graph, "+441235000001")) == \
        ("failed", "Telephone Number '+441235000001' is not assigned")
    assert outcome(graph, unassign(graph, "+442080009999"))[0] == "failed"
    reply = graph.post(f"{TNM}/numberAssignments/unassignNumber",
                       {"telephoneNumber": "+441235000001"})
    assert reply.status == 400
    assert outcome(graph, assign(graph, "+441235000001", IDS["alice"]))[0] == "succeeded"


# --- operations that never settle --------------------------------------------------------------
def poll(graph, reply, times):
    """`times` polls of an accepted operation: the replies."""
    assert reply.status == 202, reply.raw
    return [graph.get(reply.headers["location"]) for _ in range(times)]


def test_op_unsettled_assignment_done_but_never_reported(graph, sim):
    sim.ctl.fault("op_unsettled", match="/assignNumber")
    reply = assign(graph, "+442080000005", IDS["alice"])
    # Teams carried it out at once: the number is the user's, activated
    truth = sim.ctl.truth()
    assert truth["numbers"]["+442080000005"]["target"] == IDS["alice"]
    assert truth["numbers"]["+442080000005"]["state"] == "activated"
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['alice']}").json()
    assert conf["telephoneNumbers"][0]["telephoneNumber"] == "+442080000005"
    replies = poll(graph, reply, 70)                      # more than any client polls
    assert {r.status for r in replies} == {200}
    assert {r.json()["status"] for r in replies} == {"running"}
    assert {r.json()["numbers"][0]["status"] for r in replies} == {"running"}
    sim.ctl.advance_clock(3600)                           # op_complete_seconds does not help
    graph.token = get_token(sim)
    assert poll(graph, reply, 1)[0].json()["status"] == "running"
    assert sim.ctl.truth()["numbers"]["+442080000005"]["target"] == IDS["alice"]
    polls = [e for e in sim.ctl.log()["requests"] if "/operations" in e["path"]]
    assert polls and all(e["op_fault"] == "op_unsettled" for e in polls)
    [post] = sim.ctl.assign_requests(IDS["alice"])
    assert post["fault"] == "op_unsettled" and post["status"] == 202
    # the fault was taken: the next assignment completes normally
    assert outcome(graph, assign(graph, "+442080000006", IDS["frank"]))[0] == "succeeded"


@pytest.mark.parametrize("poll_fault,status", [("503", 503), ("504", 504)])
def test_op_unsettled_polls_fail(graph, sim, poll_fault, status):
    sim.ctl.fault("op_unsettled", poll_fault=poll_fault, retry_after=1)
    reply = assign(graph, "+442080000005", IDS["alice"])
    replies = poll(graph, reply, 10)
    assert {r.status for r in replies} == {status}
    assert replies[0].headers["retry-after"] == "1"
    assert sim.ctl.truth()["numbers"]["+442080000005"]["state"] == "activated"


def test_op_unsettled_not_started_and_poll_reset(graph, sim):
    sim.ctl.fault("op_unsettled", op_status="notStarted")
    reply = assign(graph, "+442080000005", IDS["alice"])
    assert {r.json()["status"] for r in poll(graph, reply, 5)} == {"notStarted"}
    sim.ctl.fault("op_unsettled", poll_fault="reset")
    reply = assign(graph, "+442080000006", IDS["frank"])
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError, OSError)):
        poll(graph, reply, 1)
    assert sim.ctl.truth()["users"][IDS["frank"]] == ["+442080000006"]


def test_op_unsettled_unassign(graph, sim):
    sim.ctl.fault("op_unsettled", match="/unassignNumber")
    reply = unassign(graph, "+441235000001")
    assert {r.json()["status"] for r in poll(graph, reply, 5)} == {"running"}
    assert sim.ctl.truth()["numbers"]["+441235000001"]["target"] is None


def test_op_unsettled_refused_change_stays_refused(graph, sim):
    sim.ctl.fault("op_unsettled")
    reply = assign(graph, "+442080000005", IDS["carol"])     # not licensed
    assert {r.json()["status"] for r in poll(graph, reply, 5)} == {"running"}
    assert "+442080000005" not in sim.ctl.truth()["numbers"]


def test_op_lost_assignment_never_applied(graph, sim):
    sim.ctl.fault("op_lost", match="/assignNumber", count=2)
    reply = assign(graph, "+442080000005", IDS["alice"])
    assert reply.status == 202
    assert {r.json()["status"] for r in poll(graph, reply, 70)} == {"running"}
    assert lookup(graph, "+442080000005") is None
    reply = assign(graph, "+442071230001", IDS["bob"], "callingPlan")
    assert {r.json()["status"] for r in poll(graph, reply, 3)} == {"running"}
    sim.ctl.advance_clock(3600)
    truth = sim.ctl.truth()
    assert truth["users"] == {IDS["erin"]: ["+441235000001"]}
    assert truth["numbers"]["+442071230001"]["status"] == "unassigned"
    ops = {o["tel"]: o for o in sim.ctl.operations()["operations"]}
    assert ops["+442080000005"]["fault"] == "op_lost" and not ops["+442080000005"]["done"]


def test_op_lost_unassign(graph, sim):
    sim.ctl.fault("op_lost", match="/unassignNumber", op_status="notStarted")
    reply = unassign(graph, "+441235000001")
    assert {r.json()["status"] for r in poll(graph, reply, 5)} == {"notStarted"}
    assert sim.ctl.truth()["users"] == {IDS["erin"]: ["+441235000001"]}


def test_op_faults_match_only_changes_of_the_named_user_or_number(graph, sim):
    sim.ctl.fault("op_lost", user=IDS["frank"].upper())
    sim.ctl.fault("op_unsettled", number="442080000009")
    assert numbers(graph)                                     # a GET takes neither
    assert outcome(graph, assign(graph, "+442080000005", IDS["alice"]))[0] == "succeeded"
    assert outcome(graph, unassign(graph, "+442080000005"))[0] == "succeeded"
    assert len(sim.ctl.faults()["queue"]) == 2
    lost = assign(graph, "+442080000006", IDS["frank"])
    unsettled = assign(graph, "+442080000009", IDS["bob"])
    assert poll(graph, lost, 3)[-1].json()["status"] == "running"
    assert poll(graph, unsettled, 3)[-1].json()["status"] == "running"
    truth = sim.ctl.truth()
    assert IDS["frank"] not in truth["users"] and truth["users"][IDS["bob"]] == ["+442080000009"]
    assert sim.ctl.faults()["queue"] == []


def test_op_fault_options_are_checked(sim):
    for params in ({"op_status": "succeeded"}, {"poll_fault": "404"},
                   {"poll_fault": "malformed"}):
        with pytest.raises(SimError) as err:
            sim.ctl.fault("op_unsettled", **params)
        assert err.value.status == 400


# --- userConfigurations and policies ----------------------------------------------------------
def test_user_configuration(graph, sim):
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['erin']}").json()
    assert conf["id"] == IDS["erin"] and conf["userPrincipalName"] == f"erin@{DOMAIN}"
    assert conf["tenantId"] == TENANT_ID and conf["accountType"] == "user"
    assert conf["isEnterpriseVoiceEnabled"] is True
    assert conf["featureTypes"] == ["Teams", "PhoneSystem"]
    assert conf["telephoneNumbers"] == [{"telephoneNumber": "+441235000001",
                                         "assignmentCategory": "primary"}]
    [pol] = conf["effectivePolicyAssignments"]
    assert pol["policyType"] == "OnlineVoiceRoutingPolicy"
    assert pol["policyAssignment"]["displayName"] == "UK-National"
    assert pol["policyAssignment"]["assignmentType"] == "direct"
    bob = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['bob']}").json()
    assert bob["featureTypes"] == ["Teams", "PhoneSystem", "CallingPlan"]
    assert bob["isEnterpriseVoiceEnabled"] is False
    carol = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['carol']}").json()
    assert carol["featureTypes"] == ["Teams"]
    sim.ctl.soft_delete(IDS["carol"])
    for uid in (IDS["carol"], "0f0f0f0f-0000-4000-8000-000000000000"):
        reply = graph.get(f"/v1.0/admin/teams/userConfigurations/{uid}")
        assert reply.status == 404 and graph_error(reply) == "itemNotFound"


def test_policies(graph):
    base = "/v1.0/admin/teams/policy"
    body = graph.get(f"{base}/getPolicyId(type='OnlineVoiceRoutingPolicy',"
                     "name='UK-International')").json()
    [entry] = body["value"]
    assert entry["name"] == "Tag:UK-International" and entry["policyId"]
    encoded = graph.get(f"{base}/getPolicyId(type=%27OnlineVoiceRoutingPolicy%27,"
                        "name=%27UK-International%27)").json()
    assert encoded == body
    reply = graph.get(f"{base}/getPolicyId(type='OnlineVoiceRoutingPolicy',name='Mars')")
    assert reply.status == 404 and graph_error(reply) == "itemNotFound"

    def item(uid, pid):
        return {"value": [{"@odata.type": "#microsoft.graph.teamsAdministration."
                                          "teamsPolicyUserAssignment", "userId": uid,
                           "policyType": "OnlineVoiceRoutingPolicy", "policyId": pid}]}
    reply = graph.post(f"{base}/userAssignments/assign", item(IDS["alice"], entry["policyId"]))
    assert reply.status == 204 and reply.raw == b""
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['alice']}").json()
    assert conf["effectivePolicyAssignments"][0]["policyAssignment"]["policyId"] == \
        entry["policyId"]
    reply = graph.post(f"{base}/userAssignments/assign",
                       item("0f0f0f0f-0000-4000-8000-000000000000", entry["policyId"]))
    assert reply.status == 404
    reply = graph.post(f"{base}/userAssignments/assign", item(IDS["alice"], "no-such-policy"))
    assert reply.status == 400
    assert graph.post(f"{base}/userAssignments/assign", {"value": []}).status == 400
    reply = graph.post(f"{base}/userAssignments/unassign",
                       {"value": [{"userId": IDS["alice"],
                                   "policyType": "OnlineVoiceRoutingPolicy"}]})
    assert reply.status == 204
    conf = graph.get(f"/v1.0/admin/teams/userConfigurations/{IDS['alice']}").json()
    assert conf["effectivePolicyAssignments"] == []


# --- faults ------------------------------------------------------------------------------------
SKUS = "/v1.0/subscribedSkus"


def test_fault_429_with_retry_after_and_count(graph, sim):
    sim.ctl.fault("429", match="/subscribedSkus", count=2, retry_after=7)
    for _ in range(2):
        reply = graph.get(SKUS)
        assert reply.status == 429 and reply.headers["retry-after"] == "7"
        assert graph_error(reply) == "TooManyRequests"
    assert graph.get(SKUS).status == 200
    assert numbers(graph)                       # other paths never matched
    faults = [e["fault"] for e in sim.ctl.log()["requests"]]
    assert faults.count("429") == 2


def test_fault_5xx(graph, sim):
    sim.ctl.fault("503", match=SKUS)
    sim.ctl.fault("503", match=SKUS, retry_after=3)
    sim.ctl.fault("500", match=SKUS)
    first, second, third = graph.get(SKUS), graph.get(SKUS), graph.get(SKUS)
    assert first.status == 503 and "retry-after" not in first.headers
    assert graph_error(first) == "serviceNotAvailable"
    assert second.status == 503 and second.headers["retry-after"] == "3"
    assert third.status == 500 and graph_error(third) == "generalException"


def test_fault_prefix_method_and_apply(graph, sim):
    sim.ctl.fault("500", match="/v1.0/admin/teams/telephoneNumberManagement", mode="prefix",
                  method="POST", apply=True)
    assert numbers(graph)                                     # GET: not matched
    reply = assign(graph, "+442080000005", IDS["alice"])
    assert reply.status == 500                                # ... but the POST happened
    assert sim.ctl.truth()["numbers"]["+442080000005"]["target"] == IDS["alice"]
    with pytest.raises(SimError):
        sim.ctl.fault("teapot")


def test_fault_latency_and_max_in_flight(graph, sim):
    sim.ctl.fault("latency", match=SKUS, ms=400)
    sim.ctl.clear_log()
    results = []

    def call():
        start = time.time()
        results.append((graph.get(SKUS).status, time.time() - start))
    threads = [threading.Thread(target=call) for _ in range(6)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 and took >= 0.39 for status, took in results)
    assert time.time() - start < 2.0                          # served concurrently
    assert sim.ctl.log()["max_in_flight"] >= 6
    assert graph.get(SKUS).status == 200                      # latency stays until cleared
    sim.ctl.clear_faults()
    start = time.time()
    graph.get(SKUS)
    assert time.time() - start < 0.3


def test_fault_connection_reset(graph, sim):
    sim.ctl.fault("reset", match=SKUS)
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError, OSError)):
        graph.get(SKUS)
    assert graph.get(SKUS).status == 200
    assert sim.ctl.log()["requests"][-2]["status"] is None


def test_fault_malformed_and_truncated_json(graph, sim):
    normal = graph.get(f"{TNM}/numberAssignments").raw
    sim.ctl.fault("malformed", match="numberAssignments")
    reply = graph.get(f"{TNM}/numberAssignments")
    assert reply.status == 200
    with pytest.raises(ValueError):
        reply.json()
    sim.ctl.fault("truncated", match="numberAssignments")
    reply = graph.get(f"{TNM}/numberAssignments")
    assert reply.status == 200 and int(reply.headers["content-length"]) == len(reply.raw)
    assert 0 < len(reply.raw) < len(normal) and normal.startswith(reply.raw[:40])
    with pytest.raises(ValueError):
        reply.json()
    assert numbers(graph)


def test_fault_token_expiry(graph, sim):
    assert graph.get(SKUS).status == 200
    sim.ctl.fault("token_expiry")
    reply = graph.get(SKUS)
    assert reply.status == 401 and graph_error(reply) == "InvalidAuthenticationToken"
    graph.token = get_token(sim)
    assert graph.get(SKUS).status == 200


@pytest.mark.parametrize("kind,status,code", [("delta_410", 410, "resyncRequired"),
                                              ("sync_state_not_found", 400, "syncStateNotFound"),
                                              ("resync_required", 400, "resyncRequired")])
def test_fault_on_next_delta(graph, sim, kind, status, code):
    _, link, _ = delta_round(graph, SELECT)
    sim.ctl.fault(kind)
    assert graph.get(SKUS).status == 200                       # only delta requests match
    reply = graph.get(link)
    assert reply.status == status and graph_error(reply) == code
    if status == 410:
        assert reply.headers["location"] == sim.url + SELECT
    assert graph.get(link).status == 200


def test_fault_licence_delay(graph, sim):
    sim.ctl.fault("licence_delay", seconds=600, users=[IDS["alice"]])
    assert outcome(graph, assign(graph, "+442080000005", IDS["alice"]))[0] == "failed"
    assert outcome(graph, assign(graph, "+442080000006", IDS["frank"]))[0] == "succeeded"
    sim.ctl.advance_clock(601)
    assert outcome(graph, assign(graph, "+442080000005", IDS["alice"]))[0] == "succeeded"


def test_random_faults_repeat_with_the_seed(graph, sim):
    def run():
        sim.ctl.seed(42)
        sim.ctl.random_faults(0.5, ["429", "503"], match=SKUS)
        out = [graph.get(SKUS).status for _ in range(16)]
        sim.ctl.random_faults(0)
        return out
    first, second = run(), run()
    assert first == second
    assert {200, 429, 503} == set(first)


# --- control interface -----------------------------------------------------------------------
def test_request_log_and_truth(graph, sim):
    sim.ctl.clear_log()
    graph.get(SKUS, headers={"client-request-id": "abc", "x-ms-throttle-priority": "Low"})
    token_request(sim, client_secret=SECRET)
    truth = sim.ctl.truth()
    assert truth["numbers"]["+441235000001"] == {
        "target": IDS["erin"], "type": "directRouting", "state": "activated",
        "status": "userAssigned", "category": "primary", "locationId": None}
    assert truth["numbers"]["+442071230000"]["target"] is None
    assert truth["users"] == {IDS["erin"]: ["+441235000001"]}
    unassign(graph, "+441235000001")
    log = sim.ctl.log()
    assert [e["path"] for e in log["requests"]] == [
        SKUS, TOKEN, f"{TNM}/numberAssignments/unassignNumber"]       # /_sim not logged
    first, second, third = log["requests"]
    assert third["body"] == {"telephoneNumber": "+441235000001", "numberType": "directRouting"}
    assert [e["seq"] for e in sim.ctl.log(since=2)["requests"]] == [3]
    assert first["headers"]["client-request-id"] == "abc"
    assert first["headers"]["x-ms-throttle-priority"] == "Low"
    assert first["auth"] == "Bearer" and first["status"] == 200
    assert graph.token not in json.dumps(log) and SECRET not in json.dumps(log)
    assert second["auth"] is None and second["client_auth"] == "secret"
    assert log["max_in_flight"] == 1


def test_request_log_tells_which_assignments_were_sent(graph, sim):
    sim.ctl.clear_log()
    sim.ctl.fault("reset", match="/assignNumber")            # lost on the way back
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError, OSError)):
        assign(graph, "442080000005", IDS["alice"])
    assign(graph, "+442080000006", IDS["frank"].upper())
    unassign(graph, "+441235000001")
    graph.post(f"{TNM}/numberAssignments/assignNumber", b"{broken",
               {"Content-Type": "application/json"})
    [alice] = sim.ctl.assign_requests(IDS["alice"])
    assert alice["status"] is None and alice["fault"] == "reset"     # sent, never answered
    assert (alice["action"], alice["number"], alice["target"]) == \
        ("assignNumber", "+442080000005", IDS["alice"])
    assert alice["body"]["assignmentTargetId"] == IDS["alice"]
    assert sim.ctl.assign_requests(number="+442080000005") == [alice]
    [frank] = sim.ctl.assign_requests(IDS["frank"])          # ids compare case-insensitively
    assert frank["status"] == 202 and frank["operation"]
    assert any(o["id"] == frank["operation"] for o in sim.ctl.operations()["operations"])
    assert sim.ctl.assign_requests(IDS["erin"]) == []        # only an unassignNumber for her number
    [erin] = sim.ctl.change_requests("unassignNumber", number="441235000001")
    assert erin["target"] is None and erin["status"] == 202
    assert len(sim.ctl.assign_requests()) == 3                # the broken one counts too
    broken = sim.ctl.assign_requests()[-1]
    assert broken["status"] == 400 and broken["target"] is None and broken["body"] == "{broken"
    assert sim.ctl.assign_requests(IDS["bob"]) == []


def test_request_log_shows_an_assignment_still_in_flight(graph, sim):
    sim.ctl.fault("latency", match="/assignNumber", ms=800)
    worker = threading.Thread(target=assign, args=(graph, "+442080000005", IDS["bob"]))
    worker.start()
    try:
        deadline = time.time() + 5
        while not sim.ctl.assign_requests(IDS["bob"]) and time.time() < deadline:
            time.sleep(0.02)
        [entry] = sim.ctl.assign_requests(IDS["bob"])
        assert entry["status"] is None and entry["number"] == "+442080000005"
    finally:
        worker.join()
    assert sim.ctl.assign_requests(IDS["bob"])[0]["status"] == 202


def test_control_errors(sim):
    for call in (lambda: sim.ctl.settings(page_sizes=3), lambda: sim.ctl.settings(page_size=-1),
                 lambda: sim.ctl.user("nobody"), lambda: sim.ctl.license(IDS["alice"], ["X"]),
                 lambda: sim.ctl.add_user({"id": IDS["alice"]}),
                 lambda: sim.ctl.call("POST", "/nothing", {})):
        with pytest.raises(SimError) as err:
            call()
        assert err.value.status in (400, 404)


def test_simctl_command_line(sim):
    base = ["/usr/bin/python3", str(HERE / "simctl.py"), "--url", sim.url,
            "--ca", str(sim.certs / "ca.pem")]
    out = subprocess.run(base + ["add-user", '{"displayName": "Shell", "city": "Paris"}'],
                         capture_output=True, text=True, check=True).stdout
    uid = json.loads(out)["id"]
    subprocess.run(base + ["license", uid, '{"skus": ["SPE_E5"]}'], check=True,
                   capture_output=True)
    assert sim.ctl.user(uid)["properties"]["city"] == "Paris"
    out = subprocess.run(base + ["settings", '{"page_size": 3}'], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["page_size"] == 3
    assert json.loads(subprocess.run(base + ["assign-requests", uid], capture_output=True,
                                     text=True, check=True).stdout) == []
    bad = subprocess.run(base + ["user", "nobody"], capture_output=True, text=True)
    assert bad.returncode == 1 and "404" in bad.stderr


def test_command_line_options(certs, tmp_path):
    port_file, log = tmp_path / "port", tmp_path / "requests.log"
    proc = subprocess.Popen(["/usr/bin/python3", str(HERE / "graphsim.py"),
                             "--cert", str(certs / "server.pem"), "--key", str(certs / "server.key"),
                             "--port-file", str(port_file), "--fixture", str(DEMO),
                             "--app-cert", str(certs / "app.pem"), "--page-size", "250",
                             "--op-polls", "1", "--token-lifetime", "120", "--log", str(log),
                             "--assign-existing", "replace"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("graphsim listening on https://127.0.0.1:")
        server = Running(certs, proc, int(port_file.read_text()))
        health = server.ctl.health()
        assert health["users"] == 300 and health["certificate"]["bits"] == 2048
        settings = server.ctl.settings()
        assert (settings["page_size"], settings["op_polls"], settings["token_lifetime"],
                settings["assign_existing"]) == (250, 1, 120, "replace")
        server.ctl.settings(assign_existing="refuse")
        server.ctl.reset()                      # back to the command line's choice
        assert server.ctl.settings()["assign_existing"] == "replace"
        reply = request(server, "POST", "/demo.onmicrosoft.com/oauth2/v2.0/token",
                        form={"grant_type": "client_credentials", "scope": GRAPH,
                              "client_id": DEMO_CLIENT, "client_secret": "demo-secret"})
        assert reply.json()["expires_in"] == 120
        assert json.loads(log.read_text().splitlines()[0])["status"] == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_mkcerts_is_idempotent(certs):
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    subprocess.run([str(HERE / "mkcerts.sh"), str(certs)], check=True)
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before
    assert set(before) >= {"ca.pem", "ca.key", "server.pem", "server.key", "app.pem", "app.key"}
    san = subprocess.run(["openssl", "x509", "-in", str(certs / "server.pem"), "-noout",
                          "-ext", "subjectAltName"], capture_output=True, text=True).stdout
    assert "IP Address:127.0.0.1" in san and "DNS:localhost" in san


# --- the demo tenant ---------------------------------------------------------------------------


def test_demo_fixture_is_generated_deterministically(tmp_path):
    out = tmp_path / "demo.json"
    subprocess.run([sys.executable, str(HERE / "make_demo_tenant.py"), str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == DEMO.read_bytes()


def test_demo_fixture_mix(sim):
    demo = json.loads(DEMO.read_text())
    users = demo["users"]

    def plans(user, status=("Enabled", "Warning")):
        return {p["servicePlanId"] for p in user["assignedPlans"]
                if p["capabilityStatus"] in status}
    cp_ids = {"4ed3ff63-69d7-4fb7-b984-5aec7f605ca8", "5a10155d-f5c1-411a-a8ec-e99aae125390"}
    credits = "505e180f-f7e0-4b65-91d4-00d670bbd18c"
    phone = [u for u in users if MCOEV in plans(u)]
    assert len(users) == 300 and len(phone) > 200
    assert sum(MCOEV in plans(u, ("Warning",)) for u in users) >= 3
    assert sum(MCOEV in plans(u, ("Deleted",)) for u in users) >= 2
    assert sum(bool(plans(u) & cp_ids) for u in users) >= 25
    assert sum(credits in plans(u) and not plans(u) & cp_ids for u in users) >= 5
    assert sum(not u["assignedPlans"] for u in users) >= 5
    assert sum(not u["accountEnabled"] for u in users) >= 10
    assert sum(u["city"] is None for u in users) >= 5
    park_lane = [u for u in users if u["officeLocation"] == "Park Lane"]
    assert len(park_lane) >= 30 and {u["city"] for u in park_lane} == {"LONDON"}
    assert {"London", "Abingdon", "Paris", "Milton Park"} <= {u["city"] for u in users}
    assert {"Office 1", "Office 2"} <= {u["officeLocation"] for u in users}
    assert {"Support", "Sales"} <= {u["department"] for u in users}
    assert {u["usageLocation"] for u in users if u["city"] == "Paris"} == {"FR"}

    nums = {n["telephoneNumber"]: n for n in demo["numbers"]}
    cp = [nums[f"+44207123{i:04d}"] for i in range(300)]
    oc = [nums[f"+331400{i:05d}"] for i in range(300)]
    assert {n["numberType"] for n in cp} == {"callingPlan"}
    assert {n["numberType"] for n in oc} == {"operatorConnect"}
    assert 1 <= sum(bool(n.get("assignmentTargetId")) for n in cp) <= 10
    held = [t for t, n in nums.items() if n.get("assignmentTargetId")]
    assert 15 <= len(held) <= 30
    assert any(t.startswith("+4420800001") or t.startswith("+4420800000") for t in held)
    assert "+441235999000;ext=100" in held and "+12065550100" in held

    summary = sim.ctl.load(path=str(DEMO), cert=str(sim.certs / "app.pem"))
    assert summary["users"] == 300 and summary["certificate"]
    reply = request(sim, "POST", "/demo.onmicrosoft.com/oauth2/v2.0/token",
                    form={"grant_type": "client_credentials", "scope": GRAPH,
                          "client_id": DEMO_CLIENT,
                          "client_secret": "demo-secret"})
    assert reply.status == 200
    token = reply.json()["access_token"]
    body = request(sim, "GET", "/v1.0/admin/teams/policy/getPolicyId(type="
                               "'OnlineVoiceRoutingPolicy',name='UK-National')",
                   token=token).json()
    assert body["value"][0]["name"] == "Tag:UK-National"
    truth = sim.ctl.truth()
    assert len(truth["users"]) == len(held)


def test_demo_tenant_full_delta_round(sim):
    """The demo tenant answers a full delta round at the default page size."""
    sim.ctl.load(path=str(DEMO))
    reply = request(sim, "POST", "/demo.onmicrosoft.com/oauth2/v2.0/token",
                    form={"grant_type": "client_credentials", "scope": f"{sim.url}/.default",
                          "client_id": DEMO_CLIENT,
                          "client_secret": "demo-secret"})
    graph = Graph(sim, reply.json()["access_token"])
    items, _, pages = delta_round(graph, SELECT)
    assert len(items) == 300 and pages == 3
