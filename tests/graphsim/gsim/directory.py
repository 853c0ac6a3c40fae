"""Directory reads besides delta: GET /users, /users/{id}, /subscribedSkus.

GET /users supports $select, $top (max 999), $count and one advanced filter,
assignedPlans/any(a:a/servicePlanId eq GUID and a/capabilityStatus eq 'Enabled'),
which (as in Graph) needs ConsistencyLevel: eventual and $count=true."""
import re

from .delta import parse_select, render, sync_state_not_found
from .errors import GraphError
from .numbers import int_param
from .tenant import ACTIVE
from .util import json_response

PLAN_FILTER_RE = re.compile(
    r"^\s*assignedPlans/any\((\w+):\1/servicePlanId eq ([0-9a-fA-F-]{36})"
    r"(?: and \1/capabilityStatus eq '(\w+)')?\)\s*$")


def _unsupported(text):
    return GraphError(400, "Request_UnsupportedQuery",
                      f"Unsupported or invalid query filter clause specified: '{text}'.")


def _plan_filter(req, text):
    match = PLAN_FILTER_RE.match(text)
    if not match:
        raise _unsupported(text)
    if (req.headers.get("ConsistencyLevel", "").lower() != "eventual"
            or req.query.get("$count", "").lower() != "true"):
        raise _unsupported(text + " (advanced query: needs ConsistencyLevel: eventual "
                           "and $count=true)")
    _, plan, status = match.groups()

    def keep(user):
        return any(p.get("servicePlanId", "").lower() == plan.lower()
                   and (status is None or p.get("capabilityStatus") == status)
                   for p in user.props.get("assignedPlans") or [])
    return keep


def list_users(sim, req):
    state = {}
    if "$skiptoken" in req.query:
        state = sim.delta.unseal(req.query["$skiptoken"], sim.tenant.generation)
        if "o" not in state:
            raise sync_state_not_found()
    select = state.get("sel") or parse_select(req.query.get("$select"))
    text = state.get("f", req.query.get("$filter"))
    top = state.get("top") or int_param(req, "$top", 100, 1, 999)
    keep = _plan_filter(req, text) if text else (lambda user: True)
    users = [u for u in sim.tenant.active_users() if keep(u)]
    offset = state.get("o", 0)
    body = {"@odata.context": f"{req.base_url}/{req.version}/$metadata#users"}
    if req.query.get("$count", "").lower() == "true" or state.get("c"):
        body["@odata.count"] = len(users)
    if offset + top < len(users):
        token = sim.delta.seal({"g": sim.tenant.generation, "o": offset + top, "sel": select,
                                "f": text, "top": top, "c": "@odata.count" in body})
        body["@odata.nextLink"] = f"{req.base_url}/{req.version}/users?$skiptoken={token}"
    body["value"] = [render(u, select) for u in users[offset:offset + top]]
    return json_response(200, body)


def get_user(sim, req, ref):
    select = parse_select(req.query.get("$select"))
    for user in sim.tenant.users.values():
        upn = (user.props.get("userPrincipalName") or "").lower()
        if user.state == ACTIVE and ref.lower() in (user.id.lower(), upn):
            return json_response(200, render(user, select))
    raise GraphError(404, "Request_ResourceNotFound",
                     f"Resource '{ref}' does not exist or one of its queried reference-property "
                     "objects are not present.")


def subscribed_skus(sim, req):
    tenant = sim.tenant
    value = []
    for sku in tenant.skus:
        consumed = sum(1 for u in tenant.active_users()
                       for lic in u.props.get("assignedLicenses") or []
                       if lic.get("skuId") == sku["skuId"])
        plans = [{"servicePlanId": p["servicePlanId"], "servicePlanName": p["servicePlanName"],
                  "provisioningStatus": p.get("provisioningStatus", "Success"),
                  "appliesTo": p.get("appliesTo", "User")} for p in sku.get("servicePlans", [])]
        value.append({"capabilityStatus": "Enabled", "consumedUnits": consumed,
                      "id": f"{tenant.tenant_id}_{sku['skuId']}", "skuId": sku["skuId"],
                      "skuPartNumber": sku["skuPartNumber"], "appliesTo": "User",
                      "prepaidUnits": {"enabled": sku.get("units", 1000), "suspended": 0,
                                       "warning": 0, "lockedOut": 0},
                      "servicePlans": plans})
    return json_response(200, {"@odata.context": f"{req.base_url}/{req.version}/$metadata#"
                                                 "subscribedSkus", "value": value})
