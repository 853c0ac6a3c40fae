#!/usr/bin/python3
"""simctl: drive a running graphsim through its /_sim/ control interface.

As a library:   from simctl import SimClient
                sim = SimClient("https://127.0.0.1:8443", "ca.pem"); sim.add_user({...})
From a shell:   simctl.py --url https://127.0.0.1:8443 --ca ca.pem add-user '{"id": ...}'
                (--url/--ca default to $GRAPHSIM_URL/$GRAPHSIM_CA; --port-file works too)
Run `simctl.py --help` for the commands. Output is JSON on stdout; errors go to
stderr with exit status 1."""
import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from urllib.parse import quote


class SimError(Exception):
    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class SimClient:
    """One method per control call; each returns the decoded JSON answer."""

    def __init__(self, base_url, cafile=None, timeout=30):
        self.base = base_url.rstrip("/")
        self.context = ssl.create_default_context(cafile=cafile)
        self.timeout = timeout

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/_sim" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=self.timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except ValueError:
                pass
            raise SimError(err.code, text) from None

    # --- tenant fixture ---
    def health(self):
        return self.call("GET", "/health")

    def load(self, path=None, fixture=None, cert=None, base_dir="."):
        body = {"path": os.path.abspath(path)} if path else {"fixture": fixture,
                                                              "base_dir": base_dir}
        if cert:
            body["cert"] = os.path.abspath(cert)
        return self.call("POST", "/load", body)

    def reset(self):
        return self.call("POST", "/reset", {})

    # --- users ---
    def add_user(self, user):
        return self.call("POST", "/users", user)

    def user(self, uid):
        return self.call("GET", "/users/" + quote(uid))

    def _user_action(self, uid, action, body=None):
        return self.call("POST", f"/users/{quote(uid)}/{action}", body or {})

    def update_user(self, uid, changes):
        return self._user_action(uid, "update", changes)

    def license(self, uid, skus=(), plans=(), status="Enabled", age=None, at=None):
        body = {"skus": list(skus), "plans": list(plans), "status": status}
        if age is not None:
            body["age"] = age
        if at is not None:
            body["at"] = at
        return self._user_action(uid, "license", body)

    def unlicense(self, uid, skus=(), plans=(), status="Deleted", remove=False):
        return self._user_action(uid, "unlicense", {"skus": list(skus), "plans": list(plans),
                                                    "status": status, "remove": remove})

    def disable(self, uid):
        return self._user_action(uid, "disable")

    def enable(self, uid):
        return self._user_action(uid, "enable")

    def soft_delete(self, uid):
        return self._user_action(uid, "soft-delete")

    def hard_delete(self, uid):
        return self._user_action(uid, "hard-delete")

    def restore(self, uid):
        return self._user_action(uid, "restore")

    # --- numbers ---
    def add_number(self, number):
        return self.call("POST", "/numbers", number)

    def delete_number(self, telephone_number):
        return self.call("POST", "/numbers/delete", {"telephoneNumber": telephone_number})

    def recreate_policy(self, ptype, name, policy_id=None):
        """The policy made again under its name: a new policyId, the old one unknown."""
        return self.call("POST", "/policies/recreate",
                         {"type": ptype, "name": name, **({"policyId": policy_id}
                                                         if policy_id else {})})

    # --- settings, truth, log ---
    def settings(self, **changes):
        return self.call("POST", "/settings", changes) if changes else self.call("GET", "/settings")

    def truth(self):
        return self.call("GET", "/truth")

    def log(self, since=0):
        return self.call("GET", f"/log?since={int(since)}")

    def clear_log(self):
        return self.call("POST", "/log/clear", {})

    def change_requests(self, action="assignNumber", user=None, number=None, since=0):
        """Logged assignNumber (or unassignNumber) POSTs, whatever their answer or fault,
        optionally only those naming assignmentTargetId `user` / telephone number
        `number` (compared as the simulator normalises it: "44..." == "+44...")."""
        want = _normalize_number(number) if number is not None else None
        return [e for e in self.log(since)["requests"]
                if e.get("action") == action
                and (user is None or (e.get("target") or "").lower() == user.lower())
                and (want is None or e.get("number") == want)]

    def assign_requests(self, user=None, number=None, since=0):
        """assignNumber requests sent for `user` (all when None): [] means none was sent."""
        return self.change_requests("assignNumber", user, number, since)

    def operations(self):
        return self.call("GET", "/operations")

    # --- faults, tokens, clock ---
    def fault(self, kind, **params):
        return self.call("POST", "/faults", {"kind": kind, **params})

    def faults(self):
        return self.call("GET", "/faults")

    def clear_faults(self):
        return self.call("POST", "/faults/clear", {})

    def random_faults(self, p, kinds=None, **params):
        return self.call("POST", "/faults/random", {"p": p, "kinds": kinds, **params})

    def seed(self, seed):
        return self.call("POST", "/seed", {"seed": seed})

    def expire_tokens(self):
        return self.call("POST", "/tokens/expire", {})

    def rotate_secret(self, secret):
        return self.call("POST", "/app/secret", {"client_secret": secret})

    def advance_clock(self, seconds):
        return self.call("POST", "/clock", {"advance": seconds})


def _normalize_number(text):
    """'+441235000001', '441235000001;ext=5' -> '+E164[;ext=N]' (as the simulator does)."""
    base, sep, ext = str(text).strip().partition(";ext=")
    return "+" + base.lstrip("+") + (sep + ext if sep else "")


# --- command line ------------------------------------------------------------------------
def _json(text):
    return json.loads(text)


COMMANDS = {
    # name: (argument names, function(client, *args))
    "health": ([], lambda c: c.health()),
    "reset": ([], lambda c: c.reset()),
    "load": (["PATH", "[CERT]"], lambda c, path, cert=None: c.load(path=path, cert=cert)),
    "add-user": (["JSON"], lambda c, j: c.add_user(_json(j))),
    "user": (["ID"], lambda c, uid: c.user(uid)),
    "update-user": (["ID", "JSON"], lambda c, uid, j: c.update_user(uid, _json(j))),
    "license": (["ID", "JSON"], lambda c, uid, j: c._user_action(uid, "license", _json(j))),
    "unlicense": (["ID", "JSON"], lambda c, uid, j: c._user_action(uid, "unlicense", _json(j))),
    "disable": (["ID"], lambda c, uid: c.disable(uid)),
    "enable": (["ID"], lambda c, uid: c.enable(uid)),
    "soft-delete": (["ID"], lambda c, uid: c.soft_delete(uid)),
    "hard-delete": (["ID"], lambda c, uid: c.hard_delete(uid)),
    "restore": (["ID"], lambda c, uid: c.restore(uid)),
    "add-number": (["JSON"], lambda c, j: c.add_number(_json(j))),
    "delete-number": (["NUMBER"], lambda c, tel: c.delete_number(tel)),
    "settings": (["[JSON]"], lambda c, j="{}": c.settings(**_json(j))),
    "truth": ([], lambda c: c.truth()),
    "log": (["[SINCE]"], lambda c, since=0: c.log(int(since))),
    "clear-log": ([], lambda c: c.clear_log()),
    "assign-requests": (["[USER]"], lambda c, user=None: c.assign_requests(user)),
    "operations": ([], lambda c: c.operations()),
    "fault": (["JSON"], lambda c, j: c.call("POST", "/faults", _json(j))),
    "faults": ([], lambda c: c.faults()),
    "clear-faults": ([], lambda c: c.clear_faults()),
    "random-faults": (["JSON"], lambda c, j: c.call("POST", "/faults/random", _json(j))),
    "seed": (["N"], lambda c, n: c.seed(int(n))),
    "expire-tokens": ([], lambda c: c.expire_tokens()),
    "advance-clock": (["SECONDS"], lambda c, s: c.advance_clock(float(s))),
}


def _usage():
    lines = [f"  {name} {' '.join(args)}" for name, (args, _) in COMMANDS.items()]
    return "commands:\n" + "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="Control a running graphsim.", epilog=_usage(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("GRAPHSIM_URL"))
    p.add_argument("--port-file", help="read the port from graphsim's --port-file")
    p.add_argument("--ca", default=os.environ.get("GRAPHSIM_CA"), help="CA file (PEM)")
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    p.add_argument("args", nargs="*")
    opts = p.parse_args(argv)
    url = opts.url
    if opts.port_file:
        with open(opts.port_file) as f:
            url = f"https://127.0.0.1:{f.read().strip()}"
    if not url:
        p.error("--url (or --port-file, or $GRAPHSIM_URL) is required")
    names, func = COMMANDS[opts.command]
    required = [n for n in names if not n.startswith("[")]
    if not len(required) <= len(opts.args) <= len(names):
        p.error(f"{opts.command} takes {' '.join(names) or 'no arguments'}")
    try:
        result = func(SimClient(url, opts.ca), *opts.args)
    except (SimError, ValueError, OSError) as err:
        print(f"simctl: {err}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
