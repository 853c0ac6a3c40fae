"""The request log (what the client sent, what it got) and the in-flight high-water mark.

It has its own small lock: entries are opened before the tenant lock is taken, so a
request sleeping in a latency fault still counts as in flight. Entries are numbered
from 1 (`seq`); the log keeps the last MAX_ENTRIES."""
import collections
import json
import threading
import time

MAX_ENTRIES = 50000
LOGGED_HEADERS = ("client-request-id", "x-ms-throttle-priority", "prefer", "consistencylevel",
                  "content-type", "user-agent", "return-client-request-id", "accept")


class RequestLog:
    def __init__(self, path=None):
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1) if path else None
        self.entries = collections.deque(maxlen=MAX_ENTRIES)
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def reset(self):
        """Forget the entries; requests still running keep counting as in flight."""
        with self.lock:
            self.entries.clear()
            self.count = 0
            self.max_in_flight = self.in_flight

    def start(self, req):
        entry = {"seq": 0, "time": time.time(), "method": req.method, "path": req.raw_path,
                 "headers": {h: req.headers[h] for h in LOGGED_HEADERS if h in req.headers},
                 "auth": _auth_scheme(req.headers.get("Authorization")),
                 "status": None, "fault": None, "ms": None}
        entry.update(req.note)   # what is known before the answer (a POST's body)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.count += 1
            entry["seq"] = self.count
            self.entries.append(entry)
        return entry

    def finish(self, entry, status, fault=None, note=None):
        with self.lock:
            self.in_flight -= 1
            entry.update(status=status, fault=fault,
                         ms=round((time.time() - entry["time"]) * 1000, 1))
            entry.update({k: v for k, v in (note or {}).items() if k != "delta_fault"})
        if self.file:
            self.file.write(json.dumps(entry) + "\n")

    def snapshot(self, since=0):
        """Entries with seq > since, the high-water mark of requests in flight."""
        with self.lock:
            return {"requests": [dict(e) for e in self.entries if e["seq"] > since],
                    "max_in_flight": self.max_in_flight, "in_flight": self.in_flight}


def _auth_scheme(header):
    if not header:
        return None
    return header.split(" ", 1)[0]
