"""URL routing: the Entra token endpoint and the Graph paths (v1.0, and beta as a mirror)."""
import re

from . import auth, delta, directory, numbers, teams
from .errors import GraphError, bad_request

TOKEN_RE = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
GRAPH_RE = re.compile(r"^/(v1\.0|beta)(/.*)$")
TNM = "/admin/teams/telephoneNumberManagement"

GRAPH_ROUTES = [(method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in [
    ("GET", r"/users/delta(?:\(\))?", delta.users_delta),
    ("GET", r"/users", directory.list_users),
    ("GET", r"/users/([^/]+)", directory.get_user),
    ("GET", r"/subscribedSkus", directory.subscribed_skus),
    ("GET", TNM + r"/numberAssignments", numbers.list_numbers),
    ("POST", TNM + r"/numberAssignments/assignNumber", numbers.assign_number),
    ("POST", TNM + r"/numberAssignments/unassignNumber", numbers.unassign_number),
    ("POST", TNM + r"/numberAssignments/updateNumber", numbers.update_number),
    ("GET", TNM + r"/numberAssignments/([^/]+)", numbers.get_number),
    ("GET", TNM + r"/operations\('([^'/]*)'\)", numbers.get_operation),
    ("GET", TNM + r"/operations/([^/]+)", numbers.get_operation),
    ("GET", r"/admin/teams/userConfigurations/([^/]+)", teams.user_configuration),
    ("GET", r"/admin/teams/policy/(getPolicyId\(.*\))", teams.get_policy_id),
    ("POST", r"/admin/teams/policy/userAssignments/assign", teams.assign_policies),
    ("POST", r"/admin/teams/policy/userAssignments/unassign", teams.unassign_policies),
]]


def route(sim, req):
    match = TOKEN_RE.match(req.path)
    if match:
        return auth.token_endpoint(sim, req, match.group(1))
    match = GRAPH_RE.match(req.path)
    if not match:
        raise GraphError(404, "itemNotFound", f"No such endpoint: {req.path}")
    req.version, rest = match.groups()
    sim.auth.check_bearer(req.headers.get("Authorization"), sim.now())
    numbers.settle(sim)
    return _graph(sim, req, rest.rstrip("/") or "/")


def _graph(sim, req, rest):
    allowed = False
    for method, pattern, handler in GRAPH_ROUTES:
        match = pattern.match(rest)
        if match and method == req.method:
            return handler(sim, req, *match.groups())
        allowed = allowed or bool(match)
    if allowed:
        raise GraphError(405, "BadRequest", f"The HTTP method '{req.method}' is not allowed "
                         f"for '{rest}'.")
    segment = rest.rsplit("/", 1)[-1]
    raise bad_request(f"Resource not found for the segment '{segment}'.")
