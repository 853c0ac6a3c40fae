"""Fault injection: a queue of one-shot faults, persistent latency, and a seeded random
mode. A fault spec is a dict:

  {"kind": K, "match": "/users/delta", "mode": "substring"|"prefix", "method": "GET",
   "count": 1, "retry_after": 5, "ms": 200, "apply": false}

Per-request kinds (consumed, `count` times): 429, 500, 502, 503, 504, reset, cut, malformed,
truncated, delta_410, sync_state_not_found, resync_required.
latency: sleeps `ms` before every matching request until cleared.
token_expiry and licence_delay act at once when added (see Simulator.add_fault).
`apply`: run the real handler first (its side effects happen), then fail anyway.

Operation faults (consumed by the next `count` matching assignNumber/unassignNumber POSTs,
which are answered 202 as usual; the handler in numbers.py applies them):
  op_unsettled  Teams carries the change out (an accepted assignment is activated at once)
                but the operation never reports completion;
  op_lost       Teams accepts the request and never carries it out; the operation never
                completes either.
Options: "op_status": "running" (default) | "notStarted", what every poll answers;
"poll_fault": "503" (or another status kind, or "reset"), every poll fails so instead;
"user" / "number": only requests whose body names this assignmentTargetId / number."""
import json
import random

from .errors import GraphError
from .inventory import normalize as normalize_number
from .util import JSON_GRAPH, Response

STATUS_FAULTS = {
    "429": (429, "TooManyRequests", "Too many requests. Please retry later.", "throttledRequest"),
    "500": (500, "generalException", "An internal server error occurred.", None),
    "502": (502, "badGateway", "The server received an invalid response.", None),
    "503": (503, "serviceNotAvailable", "Service is unavailable. Please try again.", None),
    "504": (504, "gatewayTimeout", "The gateway timed out.", None),
}
DELTA_FAULTS = ("delta_410", "sync_state_not_found", "resync_required")
BODY_FAULTS = ("reset", "cut", "malformed", "truncated")
QUEUED = (*STATUS_FAULTS, *BODY_FAULTS, *DELTA_FAULTS)   # and OP_FAULTS
OP_FAULTS = ("op_unsettled", "op_lost")
OP_STATUSES = ("running", "notStarted")
OP_ACTIONS = ("assignNumber", "unassignNumber")
IMMEDIATE = ("token_expiry", "licence_delay")
KINDS = (*QUEUED, *OP_FAULTS, "latency", *IMMEDIATE)
MALFORMED_BODY = b'{"value":[{"id":"5c2d7e8f",,"displayName":}'


class FaultError(ValueError):
    pass


def normalize(spec):
    if not isinstance(spec, dict) or spec.get("kind") is None:
        raise FaultError("a fault needs a 'kind'")
    spec = dict(spec, kind=str(spec["kind"]))
    if spec["kind"] not in KINDS:
        raise FaultError(f"unknown fault kind '{spec['kind']}' (one of {', '.join(KINDS)})")
    default_match = "/users/delta" if spec["kind"] in DELTA_FAULTS else ""
    spec.setdefault("match", default_match)
    spec.setdefault("mode", "substring")
    spec.setdefault("count", 1)
    if spec["mode"] not in ("substring", "prefix"):
        raise FaultError("mode must be 'substring' or 'prefix'")
    if spec["kind"] in OP_FAULTS:
        spec.setdefault("op_status", "running")
        spec.setdefault("poll_fault", None)
        if spec["op_status"] not in OP_STATUSES:
            raise FaultError(f"op_status must be one of {', '.join(OP_STATUSES)}")
        if spec["poll_fault"] not in (None, *STATUS_FAULTS, "reset"):
            raise FaultError(f"poll_fault must be one of {', '.join(STATUS_FAULTS)}, reset")
    return spec


def matches(spec, req):
    if spec.get("method") and spec["method"].upper() != req.method:
        return False
    if spec["kind"] in OP_FAULTS and not _op_request(spec, req):
        return False
    if spec["mode"] == "prefix":
        return req.raw_path.startswith(spec["match"])
    return spec["match"] in req.raw_path


def _op_request(spec, req):
    """An operation fault only takes an assign/unassign POST (naming its user/number)."""
    if req.method != "POST" or req.path.rstrip("/").rsplit("/", 1)[-1] not in OP_ACTIONS:
        return False
    if spec.get("user") is None and spec.get("number") is None:
        return True
    try:
        body = json.loads(req.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    if not isinstance(body, dict):
        return False
    if spec.get("user") is not None and \
            str(body.get("assignmentTargetId", "")).lower() != spec["user"].lower():
        return False
    return spec.get("number") is None or \
        normalize_number(body.get("telephoneNumber")) == normalize_number(spec["number"])


class Faults:
    def __init__(self, seed=0):
        self.queue = []
        self.latency = []
        self.random_mode = None
        self.reseed(seed)

    def reseed(self, seed):
        self.seed = seed
        self.rng = random.Random(seed)

    def clear(self):
        self.queue, self.latency, self.random_mode = [], [], None

    def add(self, spec):
        spec = normalize(spec)
        if spec["kind"] == "latency":
            self.latency.append(spec)
        elif spec["kind"] in QUEUED or spec["kind"] in OP_FAULTS:
            self.queue.append(spec)
        return spec

    def set_random(self, spec):
        """{"p": 0.2, "kinds": [...], "match": ...}; p = 0 (or no spec) turns it off."""
        if not spec or not spec.get("p"):
            self.random_mode = None
            return None
        kinds = list(spec.get("kinds") or ["429", "503", "reset"])
        bad = [k for k in kinds if k not in (*STATUS_FAULTS, *BODY_FAULTS)]
        if bad:
            raise FaultError(f"random mode cannot draw {bad}")
        mode = normalize({**spec, "kind": kinds[0]})
        mode.update(kind="random", kinds=kinds, p=float(spec["p"]))
        self.random_mode = mode
        return mode

    def describe(self):
        return {"queue": self.queue, "latency": self.latency, "random": self.random_mode,
                "seed": self.seed}

    def delay_ms(self, req):
        return sum(int(s.get("ms", 0)) for s in self.latency if matches(s, req))

    def take(self, req):
        """The fault for this request (consumed from the queue), or None."""
        for spec in self.queue:
            if matches(spec, req):
                spec["count"] -= 1
                if spec["count"] <= 0:
                    self.queue.remove(spec)
                return spec
        rnd = self.random_mode
        if rnd and matches(rnd, req) and self.rng.random() < rnd["p"]:
            return {**rnd, "kind": self.rng.choice(rnd["kinds"])}
        return None


def status_error(spec):
    status, code, message, inner = STATUS_FAULTS[spec["kind"]]
    headers = {}
    if spec.get("retry_after") is not None:
        headers["Retry-After"] = str(spec["retry_after"])
    elif spec["kind"] == "429":
        headers["Retry-After"] = "1"
    if spec["kind"] == "429":
        headers["x-ms-throttle-information"] = "ResourceUnitLimitExceeded"
    return GraphError(status, code, message, headers, inner)


def body_fault(spec, real):
    """reset / malformed / truncated; `real` is the handler's response (or None)."""
    if spec["kind"] == "reset":
        return Response(0, reset=True)
    if spec["kind"] == "cut":   # the answer's first line goes out, then the RST
        resp = Response(0, reset=True)
        resp.cut = True
        return resp
    if spec["kind"] == "malformed":
        return Response(200, MALFORMED_BODY, {}, JSON_GRAPH)
    body = real.body if real is not None and real.body else b'{"value":[{"id":"x"}]}'
    cut = body[:max(1, len(body) // 2)]
    status = real.status if real is not None and real.body else 200
    headers = {k: v for k, v in (real.headers if real else {}).items()
               if k.lower() != "content-type"}
    return Response(status, cut, headers, JSON_GRAPH)
