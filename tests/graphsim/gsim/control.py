"""The control interface under /_sim/ (no auth, JSON in and out). See README.md.

Runs under the simulator lock. Errors: {"error": "..."} with 400 or 404."""
import json
import re

from . import licensing, numbers
from .faults import FaultError
from .inventory import normalize
from .tenant import ACTIVE, HARD_DELETED, SOFT_DELETED
from .util import json_response, new_id, parse_iso

SETTING_TYPES = {"page_size": int, "op_polls": int, "op_complete_seconds": float,
                 "token_lifetime": int, "delta_token_lifetime": float,
                 "licence_delay": float, "numbers_next_link": bool,
                 "assign_existing": ("refuse", "replace"),
                 "assign_repeat": ("accept", "refuse", "reject")}
USER_ACTIONS = {
    "disable": lambda sim, uid, body: sim.tenant.change_user(uid, {"accountEnabled": False}),
    "enable": lambda sim, uid, body: sim.tenant.change_user(uid, {"accountEnabled": True}),
    "soft-delete": lambda sim, uid, body: sim.tenant.set_state(uid, SOFT_DELETED),
    "hard-delete": lambda sim, uid, body: sim.tenant.set_state(uid, HARD_DELETED),
    "restore": lambda sim, uid, body: sim.tenant.set_state(uid, ACTIVE),
    "update": lambda sim, uid, body: sim.tenant.change_user(uid, body),
    "license": lambda sim, uid, body: _license(sim, uid, body),
    "unlicense": lambda sim, uid, body: _unlicense(sim, uid, body),
}


class ControlError(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def handle(sim, req):
    try:
        body = json.loads(req.body or b"{}") if req.method != "GET" else {}
        result = _dispatch(sim, req, body if body is not None else {})
        return json_response(200, result, graph=False)
    except (ValueError, KeyError, TypeError, FaultError) as err:   # incl. JSON errors
        status = getattr(err, "status", 400)
        return json_response(status, {"error": str(err).strip('"')}, graph=False)
    except ControlError as err:
        return json_response(err.status, {"error": str(err)}, graph=False)


def _dispatch(sim, req, body):
    path = req.path[len("/_sim"):].rstrip("/")
    key = f"{req.method} {path}"
    if key in SIMPLE:
        return SIMPLE[key](sim, req, body)
    match = re.match(r"^/users/([^/]+)(?:/([a-z-]+))?$", path)
    if match:
        return _user_route(sim, req, body, *match.groups())
    raise ControlError(f"no control endpoint {key}", 404)


def _user_route(sim, req, body, uid, action):
    if req.method == "GET" and action is None:
        return sim.tenant.user(uid, (ACTIVE, SOFT_DELETED, HARD_DELETED)).record()
    if req.method == "PATCH" and action is None:
        action = "update"
    if req.method not in ("POST", "PATCH") or action not in USER_ACTIONS:
        raise ControlError(f"no user action {req.method} {action}", 404)
    return USER_ACTIONS[action](sim, uid, body).record()


# --- users -------------------------------------------------------------------------------
def _when(sim, body):
    if "at" in body:
        return parse_iso(body["at"])
    return sim.now() - float(body.get("age", 0))


def _license(sim, uid, body):
    user = sim.tenant.user(uid, (ACTIVE, SOFT_DELETED))
    change = licensing.add_license(user.props, sim.tenant.skus, body.get("skus", []),
                                   body.get("plans", []), body.get("status", "Enabled"),
                                   _when(sim, body))
    return sim.tenant.change_user(uid, change)


def _unlicense(sim, uid, body):
    user = sim.tenant.user(uid, (ACTIVE, SOFT_DELETED))
    change = licensing.remove_license(user.props, sim.tenant.skus, body.get("skus", []),
                                      body.get("plans", []), body.get("status", "Deleted"),
                                      bool(body.get("remove")))
    return sim.tenant.change_user(uid, change)


def _add_user(sim, req, body):
    return sim.tenant.add_user(dict(body), sim.now()).record()


# --- fixture, settings, truth, log, faults, clock -------------------------------------------
def _load(sim, req, body):
    if "path" in body:
        sim.load_fixture_file(body["path"], body.get("cert"))
    elif "fixture" in body:
        sim.load(body["fixture"], body.get("base_dir", "."), body.get("cert"))
    else:
        raise ControlError("load needs 'path' or 'fixture'")
    return _summary(sim)


def _summary(sim):
    tenant = sim.tenant
    return {"tenant": tenant.tenant_id, "domain": tenant.domain, "client_id": tenant.client_id,
            "users": len(tenant.users), "numbers": len(tenant.numbers),
            "certificate": tenant.cert.describe() if tenant.cert else None,
            "certificate_error": tenant.cert_error, "seq": tenant.seq}


def _reset(sim, req, body):
    sim.reset()
    return _summary(sim)


def _setting(name, value):
    kind = SETTING_TYPES.get(name)
    if kind is None:
        raise ControlError(f"unknown setting '{name}' (one of {', '.join(SETTING_TYPES)})")
    if isinstance(kind, tuple):          # one of a few words
        if value not in kind:
            raise ControlError(f"bad value {value!r} for '{name}' (one of {', '.join(kind)})")
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is bool or isinstance(value, bool) or not isinstance(value, (int, float)) \
            or value < 0:
        raise ControlError(f"bad value {value!r} for '{name}'")
    return kind(value)


def _settings(sim, req, body):
    checked = {name: _setting(name, value) for name, value in body.items()}
    sim.settings.update(checked)
    return dict(sim.settings)


def _add_number(sim, req, body):
    return sim.tenant.add_number(body)


def _delete_number(sim, req, body):
    if sim.tenant.numbers.pop(normalize(body.get("telephoneNumber")) or "", None) is None:
        raise ControlError("no such number", 404)
    return {"deleted": body["telephoneNumber"]}


def _add_faults(sim, req, body):
    specs = body.get("faults", [body]) if isinstance(body, dict) else body
    return {"added": [sim.add_fault(spec) for spec in specs], **sim.faults.describe()}


def _clear_faults(sim, req, body):
    sim.faults.clear()
    return sim.faults.describe()


def _random_faults(sim, req, body):
    sim.faults.set_random(body)
    return sim.faults.describe()


def _seed(sim, req, body):
    sim.seed = int(body["seed"])
    sim.faults.reseed(sim.seed)
    return sim.faults.describe()


def _client_secret(sim, req, body):
    """The secret Entra accepts from now on (a rotation; the old one stops working)."""
    secret = body.get("client_secret") if isinstance(body, dict) else None
    if not isinstance(secret, str) or not secret:
        raise ControlError("client_secret: a non-empty string is needed")
    sim.tenant.client_secret = secret
    return {"rotated": True}


def _expire_tokens(sim, req, body):
    sim.auth.expire_all()
    return {"expired": True}


def _clock(sim, req, body):
    sim.clock_offset += float(body.get("advance", 0))
    return {"now": sim.now(), "offset": sim.clock_offset}


def _log(sim, req, body):
    return sim.log.snapshot(int(req.query.get("since", "0") or 0))


def _clear_log(sim, req, body):
    sim.log.reset()
    return sim.log.snapshot()


def _truth(sim, req, body):
    numbers.settle(sim)
    return sim.tenant.truth()


def _operations(sim, req, body):
    return {"operations": list(sim.tenant.operations.values())}


def _recreate_policy(sim, req, body):
    """A policy deleted and made again under the same type and name: a new policyId, the
    old one unknown from now on (what a client keeping ids must notice)."""
    for pol in sim.tenant.policies:
        if pol["type"].lower() == str(body["type"]).lower() and pol["name"] == body["name"]:
            pol["policyId"] = body.get("policyId") or new_id()
            return dict(pol)
    raise ControlError(f"no policy {body['type']} {body['name']}", 404)


SIMPLE = {
    "GET /health": lambda sim, req, body: {"ok": True, "port": sim.port, **_summary(sim)},
    "POST /load": _load,
    "POST /reset": _reset,
    "POST /users": _add_user,
    "GET /settings": lambda sim, req, body: dict(sim.settings),
    "POST /settings": _settings,
    "GET /truth": _truth,
    "POST /numbers": _add_number,
    "POST /numbers/delete": _delete_number,
    "POST /policies/recreate": _recreate_policy,
    "GET /log": _log,
    "POST /log/clear": _clear_log,
    "GET /faults": lambda sim, req, body: sim.faults.describe(),
    "POST /faults": _add_faults,
    "POST /faults/clear": _clear_faults,
    "POST /faults/random": _random_faults,
    "POST /seed": _seed,
    "POST /tokens/expire": _expire_tokens,
    "POST /app/secret": _client_secret,
    "GET /clock": _clock,
    "POST /clock": _clock,
    "GET /operations": _operations,
}
