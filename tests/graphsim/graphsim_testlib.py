"""Helpers for the simulator's own tests: the test tenant, a running-server handle, a
small Graph client over real TLS, and JWT client assertions signed with the openssl CLI.

Not a conftest.py on purpose: tests/integration has one whose names its tests import
with `from conftest import ...`, and two conftest modules in one pytest run collide."""
import base64
import hashlib
import http.client
import json
import pathlib
import ssl
import subprocess
import sys
import time
import uuid
from urllib.parse import urlencode

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from simctl import SimClient  # noqa: E402

TENANT_ID = "11111111-aaaa-4bbb-8ccc-000000000001"
DOMAIN = "test.onmicrosoft.com"
CLIENT_ID = "c0ffee00-1111-4222-8333-444455556666"
SECRET = "s3cret+/="
GRAPH = "https://graph.microsoft.com/.default"
MCOEV = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"
IDS = {name: str(uuid.UUID(int=i + 1)) for i, name in
       enumerate(["alice", "bob", "carol", "dave", "erin", "frank"])}


def plan(pid, name):
    return {"servicePlanId": pid, "servicePlanName": name,
            "provisioningStatus": "Success", "appliesTo": "User"}


def user(name, licenses, **props):
    return {"id": IDS[name], "userPrincipalName": f"{name}@{DOMAIN}",
            "displayName": name.title(), "licenses": licenses, **props}


def tenant_fixture(cert):
    """Six users (alice..frank), CP/OC stock, erin holding a DR number, two policies."""
    teams1 = plan("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1")
    return {
        "tenant": {"id": TENANT_ID, "domain": DOMAIN},
        "app": {"client_id": CLIENT_ID, "client_secret": SECRET, "certificate": str(cert)},
        "skus": [
            {"skuId": "aaaaaaaa-0000-0000-0000-000000000005", "skuPartNumber": "SPE_E5",
             "servicePlans": [teams1, plan(MCOEV, "MCOEV")]},
            {"skuId": "aaaaaaaa-0000-0000-0000-000000000003", "skuPartNumber": "SPE_E3",
             "servicePlans": [teams1]},
            {"skuId": "aaaaaaaa-0000-0000-0000-0000000000c1", "skuPartNumber": "MCOPSTN1",
             "servicePlans": [plan("4ed3ff63-69d7-4fb7-b984-5aec7f605ca8", "MCOPSTN1")]},
            {"skuId": "aaaaaaaa-0000-0000-0000-0000000000cc", "skuPartNumber": "MCOPSTNC",
             "servicePlans": [plan("505e180f-f7e0-4b65-91d4-00d670bbd18c", "MCOPSTNC")]},
        ],
        "users": [
            user("alice", ["SPE_E5"], city="London", officeLocation="Soho",
                 department="Sales"),
            user("bob", ["SPE_E5", "MCOPSTN1"], city="LONDON", officeLocation="Park Lane"),
            user("carol", ["SPE_E3"], city="London"),
            user("dave", ["SPE_E5", "MCOPSTNC"], city="LONDON", officeLocation="Park Lane"),
            user("erin", ["SPE_E5"], city="Abingdon", officeLocation="Office 1",
                 policies={"OnlineVoiceRoutingPolicy": "UK-National"}),
            user("frank", ["SPE_E5"], city="Paris", usageLocation="FR"),
        ],
        "numbers": [
            *({"telephoneNumber": f"+44207123000{i}", "numberType": "callingPlan",
               "city": "London"} for i in range(5)),
            *({"telephoneNumber": f"+3314000000{i}", "numberType": "operatorConnect",
               "city": "Paris"} for i in range(3)),
            {"telephoneNumber": "+441235000001", "numberType": "directRouting",
             "assignmentTargetId": IDS["erin"]},
        ],
        "policies": [{"type": "OnlineVoiceRoutingPolicy", "name": "UK-National"},
                     {"type": "OnlineVoiceRoutingPolicy", "name": "UK-International"}],
        "locations": [{"id": "loc-parklane", "description": "Park Lane"}],
    }


class Running:
    def __init__(self, certs, proc, port):
        self.certs, self.proc, self.port = certs, proc, port
        self.url = f"https://127.0.0.1:{port}"
        self.ssl = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        self.ctl = SimClient(self.url, str(certs / "ca.pem"))


# --- a small Graph client --------------------------------------------------------------------
class Reply:
    def __init__(self, resp):
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        self.raw = resp.read()

    def json(self):
        return json.loads(self.raw)


def request(server, method, path, body=None, headers=None, form=None, token=None):
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if form is not None:
        body = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    path = path.replace(server.url, "")
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ssl, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers)
        return Reply(conn.getresponse())
    finally:
        conn.close()


def token_form(**extra):
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "scope": GRAPH}
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


def get_token(server):
    reply = request(server, "POST", f"/{DOMAIN}/oauth2/v2.0/token",
                    form=token_form(client_secret=SECRET))
    assert reply.status == 200, reply.raw
    return reply.json()["access_token"]


class Graph:
    """Authenticated calls for the tests: g.get(path) -> Reply."""

    def __init__(self, server, token=None):
        self.server = server
        self.token = token or get_token(server)

    def call(self, method, path, body=None, headers=None):
        return request(self.server, method, path, body, headers, token=self.token)

    def get(self, path, headers=None):
        return self.call("GET", path, headers=headers)

    def post(self, path, body, headers=None):
        return self.call("POST", path, body, headers)


# --- JWT client assertions signed with the openssl CLI -------------------------------------
def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(cert, digest):
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return b64url(hashlib.new(digest, der).digest())


def make_assertion(server, alg="PS256", claims=None, header=None, aud_tenant=DOMAIN,
                   base=None):
    """A client assertion for `server`; aud = {base or server.url}/{aud_tenant}/..."""
    certs, base = server.certs, base or server.url
    now = int(time.time())
    head = {"alg": alg, "typ": "JWT"}
    if alg == "PS256":
        head["x5t#S256"] = thumbprint(certs / "app.pem", "sha256")
    else:
        head["x5t"] = thumbprint(certs / "app.pem", "sha1")
    head.update(header or {})
    body = {"aud": f"{base}/{aud_tenant}/oauth2/v2.0/token",
            "iss": CLIENT_ID, "sub": CLIENT_ID, "jti": str(uuid.uuid4()),
            "nbf": now, "iat": now, "exp": now + 600}
    body.update(claims or {})
    signing_input = (b64url(json.dumps(head).encode()) + "." +
                     b64url(json.dumps(body).encode())).encode()
    pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(certs / "app.key"),
                          *(pss if alg == "PS256" else [])],
                         input=signing_input, capture_output=True, check=True).stdout
    return signing_input.decode() + "." + b64url(sig)
