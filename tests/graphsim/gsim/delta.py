"""GET /users/delta: paged rounds over a snapshot, change tracking by sequence number.

Tokens are opaque to the client but carry state here, signed so a forged or foreign
token is refused (syncStateNotFound):
  deltatoken = {g: tenant generation, s: sequence at snapshot, sel: $select, t: issued}
  skiptoken  = {g, r: round id, p: page index}; the round (snapshot) lives in memory."""
import collections
import hashlib
import hmac
import json
import secrets
from urllib.parse import quote

from .errors import GraphError, bad_request
from .tenant import ACTIVE, HARD_DELETED, USER_PROPERTIES
from .util import b64url, b64url_decode, json_response

DEFAULT_SELECT = ["businessPhones", "displayName", "givenName", "jobTitle", "mail",
                  "mobilePhone", "officeLocation", "preferredLanguage", "surname",
                  "userPrincipalName"]
UNSUPPORTED = ("$top", "$orderby", "$expand", "$filter", "$search", "$count")
MAX_ROUNDS = 500


class Delta:
    def __init__(self):
        self.key = secrets.token_bytes(32)
        self.rounds = collections.OrderedDict()

    # --- tokens -------------------------------------------------------------------------
    def seal(self, payload):
        blob = b64url(json.dumps(payload, separators=(",", ":")).encode())
        mac = b64url(hmac.new(self.key, blob.encode(), hashlib.sha256).digest()[:18])
        return f"{blob}.{mac}"

    def unseal(self, token, generation):
        try:
            blob, mac = token.split(".")
            good = b64url(hmac.new(self.key, blob.encode(), hashlib.sha256).digest()[:18])
            payload = json.loads(b64url_decode(blob)) if hmac.compare_digest(mac, good) else {}
        except ValueError:
            payload = {}
        if payload.get("g") != generation:
            raise sync_state_not_found()
        return payload


def sync_state_not_found():
    return GraphError(400, "syncStateNotFound", "The sync state generation is not found. "
                      "The delta token is expired and data must be synchronized again.")


def resync_required():
    return GraphError(400, "resyncRequired", "The delta token is no longer valid; "
                      "the application must resynchronize.")


def gone(location):
    return GraphError(410, "resyncRequired", "The delta token has expired; restart with "
                      "the query in the Location header.", {"Location": location})


def parse_select(text):
    if text is None or text.strip() == "":
        return list(DEFAULT_SELECT)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in USER_PROPERTIES:
            raise bad_request(f"Could not find a property named '{name}' on type "
                              "'microsoft.graph.user'.")
    return [n for n in dict.fromkeys(names) if n != "id"]


def render(user, select):
    """A user as delta returns it: id + the selected properties (deep-copied)."""
    if user.state != ACTIVE:
        reason = "deleted" if user.state == HARD_DELETED else "changed"
        return {"id": user.id, "@removed": {"reason": reason}}
    obj = {"id": user.id}
    for name in select:
        obj[name] = json.loads(json.dumps(user.props.get(name)))
    return obj


# --- the endpoint -------------------------------------------------------------------------
def users_delta(sim, req):
    for name in UNSUPPORTED:
        if name in req.query:
            raise bad_request(f"The query parameter '{name}' is not supported with delta.")
    if "$skiptoken" in req.query:
        return _next_page(sim, req, req.query["$skiptoken"])
    token = req.query.get("$deltatoken")
    if token and token != "latest":
        return _delta_round(sim, req, token)
    select = parse_select(req.query.get("$select"))
    _injected_fault(req, select)
    if token == "latest":      # "sync from now": no data, just a deltaLink
        return _page(sim, req, [], select, sim.tenant.seq, None)
    return _start_round(sim, req, select, None)


def _injected_fault(req, select):
    kind = req.note.get("delta_fault")
    if kind == "delta_410":
        raise gone(_initial_query(req, select))
    if kind == "sync_state_not_found":
        raise sync_state_not_found()
    if kind == "resync_required":
        raise resync_required()


def _initial_query(req, select):
    query = "" if select == DEFAULT_SELECT else "?$select=" + quote(",".join(select), safe=",")
    return f"{req.base_url}/{req.version}/users/delta{query}"


def _delta_round(sim, req, token):
    state = sim.delta.unseal(token, sim.tenant.generation)
    if "s" not in state:
        raise sync_state_not_found()
    _injected_fault(req, state["sel"])
    if sim.now() - state["t"] > sim.settings["delta_token_lifetime"]:
        raise gone(_initial_query(req, state["sel"]))
    return _start_round(sim, req, state["sel"], state["s"])


def _start_round(sim, req, select, since):
    tenant = sim.tenant
    if since is None:
        users = [u for u in tenant.users.values() if u.state != HARD_DELETED]
    else:
        users = [u for u in tenant.users.values() if u.changed_since(since, select)]
    items = [render(u, select) for u in users]
    round_id = b64url(secrets.token_bytes(9))
    sim.delta.rounds[round_id] = {"items": items, "select": select, "seq": tenant.seq,
                                  "created": sim.now()}
    while len(sim.delta.rounds) > MAX_ROUNDS:
        sim.delta.rounds.popitem(last=False)
    return _page(sim, req, items, select, tenant.seq, round_id)


def _next_page(sim, req, token):
    state = sim.delta.unseal(token, sim.tenant.generation)
    rnd = sim.delta.rounds.get(state.get("r"))
    if rnd is None:
        raise sync_state_not_found()
    _injected_fault(req, rnd["select"])
    if sim.now() - rnd["created"] > sim.settings["delta_token_lifetime"]:
        raise gone(_initial_query(req, rnd["select"]))
    return _page(sim, req, rnd["items"], rnd["select"], rnd["seq"], state["r"], state["p"])


def _page(sim, req, items, select, seq, round_id, page=0):
    size = max(1, int(sim.settings["page_size"]))
    body = {"@odata.context": f"{req.base_url}/{req.version}/$metadata#users"
                              f"({','.join(['id'] + select)})/$delta"}
    link = f"{req.base_url}/{req.version}/users/delta?"
    if (page + 1) * size < len(items):
        token = sim.delta.seal({"g": sim.tenant.generation, "r": round_id, "p": page + 1})
        body["@odata.nextLink"] = link + "$skiptoken=" + token
    else:
        token = sim.delta.seal({"g": sim.tenant.generation, "s": seq, "sel": select,
                                "t": sim.now()})
        body["@odata.deltaLink"] = link + "$deltatoken=" + token
    body["value"] = items[page * size:(page + 1) * size]
    return json_response(200, body)
