"""Small helpers shared by every module: time, ids, base64url, JSON, HTTP response."""
import base64
import datetime
import json
import os
import random
import re
import uuid

JSON_GRAPH = ("application/json;odata.metadata=minimal;odata.streaming=true;"
              "IEEE754Compatible=false;charset=utf-8")
JSON_PLAIN = "application/json; charset=utf-8"


def iso(ts):
    """Epoch seconds -> '2025-02-03T22:03:26Z' (Graph's DateTimeOffset form)."""
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text):
    """'2025-02-03T22:03:26Z' (or with offset / fraction) -> epoch seconds."""
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


_IDS = random.Random(os.urandom(16))   # ids only, never secrets (tokens use secrets)


def new_id():
    """A random version-4 GUID. From a PRNG seeded once: uuid4's read of the kernel's
    random source gives up the interpreter lock, and with 8 connection threads every
    such handoff adds its wait to the latency a client sees."""
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    if re.search(rb"[^A-Za-z0-9_-]", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class Response:
    """What a handler returns; the server turns it into bytes on the wire.

    reset=True means: close the connection without answering (a fault)."""

    def __init__(self, status, body=b"", headers=None, content_type=None, reset=False):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        if content_type and body:
            self.headers.setdefault("Content-Type", content_type)
        self.reset = reset
        self.cut = False   # with reset: the status line is sent before the RST
        self.fault = None


def json_response(status, obj, headers=None, graph=True):
    return Response(status, dumps(obj), headers, JSON_GRAPH if graph else JSON_PLAIN)


def empty_response(status, headers=None):
    return Response(status, b"", headers)
