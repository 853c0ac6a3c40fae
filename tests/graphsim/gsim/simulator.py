"""The simulator: tenant state, settings, tokens, faults and the request log behind
one lock, and the per-request pipeline (log -> latency -> fault -> handler)."""
import copy
import json
import os
import threading
import time

from . import control, faults, licensing, routes
from .auth import GRAPH_RESOURCE, Auth
from .delta import Delta
from .errors import AadError, GraphError
from .inventory import normalize
from .reqlog import RequestLog
from .tenant import Tenant

DEFAULT_SETTINGS = {
    "page_size": 100,                   # users per /users/delta page
    "op_polls": 2,                      # polls answered "running" before the final status
    "op_complete_seconds": 60,          # an unpolled operation completes by itself (0: never)
    "token_lifetime": 3599,             # access token expires_in, seconds
    "delta_token_lifetime": 7 * 86400,  # older delta/skip tokens get 410 Gone
    "licence_delay": 0,                 # seconds before Teams sees a newly assigned plan
    "numbers_next_link": False,         # numberAssignments emits @odata.nextLink
    "assign_existing": "refuse",        # assignNumber to a user holding a number: refuse|replace
    "assign_repeat": "accept",          # assignNumber of the number the user holds: accept|refuse|reject
}
EMPTY_FIXTURE = {"tenant": {"id": "00000000-0000-0000-0000-000000000000",
                            "domain": "empty.onmicrosoft.com"}, "app": {}}


def _loggable(body):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def _change_fields(req, body):
    """assignNumber/unassignNumber: the number (normalised) and target, for log queries."""
    action = req.path.rstrip("/").rsplit("/", 1)[-1]
    if action not in ("assignNumber", "unassignNumber"):
        return {}
    body = body if isinstance(body, dict) else {}
    target = body.get("assignmentTargetId")
    return {"action": action, "number": normalize(body.get("telephoneNumber")),
            "target": target if isinstance(target, str) else None}


class Simulator:
    def __init__(self, settings=None, seed=0, log_path=None, app_cert=None):
        self.lock = threading.RLock()
        self.defaults = {**DEFAULT_SETTINGS, **(settings or {})}
        self.settings = dict(self.defaults)
        self.clock_offset = 0.0
        self.seed = seed
        self.app_cert = app_cert
        self.fixture, self.fixture_dir, self.fixture_cert = EMPTY_FIXTURE, ".", None
        self.auth = Auth()
        self.delta = Delta()
        self.faults = faults.Faults(seed)
        self.log = RequestLog(log_path)
        self.port = 0
        self.tenant = Tenant(EMPTY_FIXTURE)

    # --- clock, tenant lifecycle -------------------------------------------------------
    def now(self):
        return time.time() + self.clock_offset

    def load_fixture_file(self, path, cert=None):
        with open(path) as f:
            fixture = json.load(f)
        self.load(fixture, os.path.dirname(os.path.abspath(path)), cert)

    def load(self, fixture, base_dir=".", cert=None):
        """Start afresh on a fixture (kept for reset): default settings, no faults,
        no tokens, real clock, empty log."""
        tenant = Tenant(copy.deepcopy(fixture), base_dir, cert or self.app_cert, time.time())
        self.fixture, self.fixture_dir, self.fixture_cert = fixture, base_dir, cert
        self.tenant = tenant
        self.settings = dict(self.defaults)
        self.clock_offset = 0.0
        self.faults.clear()
        self.faults.reseed(self.seed)
        self.log.reset()
        self.auth.expire_all()
        self.delta = Delta()

    def reset(self):
        """Back to the last loaded fixture (see load)."""
        self.load(self.fixture, self.fixture_dir, self.fixture_cert)

    # --- what other modules ask ----------------------------------------------------------
    def visible_plans(self, user):
        names = licensing.plan_names(self.tenant.skus)
        return licensing.visible_plans(user, names, self.now(), self.settings["licence_delay"])

    def own_bases(self, req):
        return {req.base_url, f"https://127.0.0.1:{self.port}", f"https://localhost:{self.port}"}

    def graph_bases(self, req):
        return self.own_bases(req) | {GRAPH_RESOURCE}

    def assertion_audiences(self, req):
        """{login_url}/{tenant id or domain}/oauth2/v2.0/token, login_url being us."""
        names = {self.tenant.tenant_id, self.tenant.domain}
        return {f"{base}/{name}/oauth2/v2.0/token" for base in self.own_bases(req)
                for name in names}

    # --- request pipeline ------------------------------------------------------------------
    def handle(self, req):
        if req.path.startswith("/_sim/"):
            with self.lock:
                return control.handle(self, req)
        if req.method != "GET" and req.path.startswith(("/v1.0/", "/beta/")):
            req.note["body"] = _loggable(req.body)   # never the token endpoint's secrets
            req.note.update(_change_fields(req, req.note["body"]))
        entry = self.log.start(req)                  # with body/action/target: seen at once
        resp, kind = self._serve(req)
        self.log.finish(entry, None if resp.reset else resp.status, kind, req.note)
        return resp

    def _serve(self, req):
        with self.lock:
            delay = self.faults.delay_ms(req)
            fault = self.faults.take(req)
        if delay:
            time.sleep(delay / 1000.0)
        kind = fault["kind"] if fault else None
        if kind in faults.OP_FAULTS:
            req.op_fault = fault                 # the assign/unassign handler applies it
        if kind in faults.DELTA_FAULTS:
            req.note["delta_fault"] = kind
        if kind in faults.STATUS_FAULTS or kind in ("reset", "cut", "malformed"):
            real = self._dispatch(req) if fault.get("apply") else None
            if kind in faults.STATUS_FAULTS:
                return self._render(req, faults.status_error(fault)), kind
            return faults.body_fault(fault, real), kind
        resp = self._dispatch(req)
        if kind == "truncated":
            resp = faults.body_fault(fault, resp)
        return resp, kind

    def _dispatch(self, req):
        with self.lock:
            try:
                return routes.route(self, req)
            except (GraphError, AadError) as err:
                return self._render(req, err)

    @staticmethod
    def _render(req, err):
        return err.response(req.request_id, req.client_request_id)

    # --- faults that act at once ---------------------------------------------------------
    def add_fault(self, spec):
        spec = faults.normalize(spec)
        if spec["kind"] == "token_expiry":
            self.auth.expire_all()
        elif spec["kind"] == "licence_delay":
            until = self.now() + float(spec.get("seconds", 60))
            users = ([self.tenant.user(uid) for uid in spec["users"]] if spec.get("users")
                     else self.tenant.users.values())
            for user in users:
                user.teams_visible_at = until
        return self.faults.add(spec)
