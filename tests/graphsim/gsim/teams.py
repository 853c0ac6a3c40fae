"""Teams user configuration and policy endpoints."""
import re

from . import licensing
from .errors import bad_request, not_found
from .numbers import json_body
from .tenant import ACTIVE
from .util import empty_response, json_response

POLICY_ID_RE = re.compile(r"getPolicyId\(type='((?:[^']|'')*)',name='((?:[^']|'')*)'\)$")
USER_ASSIGNMENT_TYPE = "#microsoft.graph.teamsAdministration.teamsPolicyUserAssignment"


def _user(sim, uid):
    user = sim.tenant.users.get(uid)
    if user is None or user.state != ACTIVE:
        raise not_found(f"User '{uid}' was not found.")
    return user


def user_configuration(sim, req, uid):
    user = _user(sim, uid)
    tenant = sim.tenant
    numbers = [{"telephoneNumber": n["telephoneNumber"],
                "assignmentCategory": n["assignmentCategory"] or "primary"}
               for n in tenant.held_by(uid) if n["activationState"] == "activated"]
    policies = []
    for ptype, pid in sorted(user.policies.items()):
        pol = tenant.policy_by_id(pid)
        policies.append({"policyType": ptype, "policyAssignment": {
            "displayName": pol["name"] if pol else pid, "assignmentType": "direct",
            "policyId": pid, "groupId": None}})
    return json_response(200, {
        "@odata.context": f"{req.base_url}/{req.version}/$metadata#admin/teams/"
                          "userConfigurations/$entity",
        "id": uid, "userPrincipalName": user.props.get("userPrincipalName"),
        "tenantId": tenant.tenant_id, "accountType": "user",
        "isEnterpriseVoiceEnabled": user.ev_enabled,
        "featureTypes": licensing.feature_types(sim.visible_plans(user)),
        "telephoneNumbers": numbers, "effectivePolicyAssignments": policies,
        "createdDateTime": user.props.get("createdDateTime"),
        "modifiedDateTime": user.props.get("createdDateTime")})


def get_policy_id(sim, req, segment):
    match = POLICY_ID_RE.match(segment)
    if not match:
        raise bad_request("Expected getPolicyId(type='...',name='...').")
    ptype, name = (g.replace("''", "'") for g in match.groups())
    for pol in sim.tenant.policies:
        if pol["type"].lower() == ptype.lower() and pol["name"].lower() == name.lower():
            return json_response(200, {"value": [{"name": f"Tag:{pol['name']}",
                                                  "policyId": pol["policyId"]}]})
    raise not_found(f"Policy '{name}' of type '{ptype}' was not found.")


def _assignments(req):
    items = json_body(req).get("value")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise bad_request("The request body must carry a non-empty 'value' array.")
    return items


def assign_policies(sim, req):
    """All-or-nothing: every item is checked before any is applied."""
    plans = []
    for item in _assignments(req):
        uid, ptype, pid = item.get("userId"), item.get("policyType"), item.get("policyId")
        if item.get("@odata.type", USER_ASSIGNMENT_TYPE) != USER_ASSIGNMENT_TYPE:
            raise bad_request(f"Unexpected @odata.type '{item['@odata.type']}'.")
        if not all(isinstance(v, str) and v for v in (uid, ptype, pid)):
            raise bad_request("Each assignment needs userId, policyType and policyId.")
        user = _user(sim, uid)
        pol = sim.tenant.policy_by_id(pid)
        if pol is None or pol["type"].lower() != ptype.lower():
            raise bad_request(f"Policy '{pid}' of type '{ptype}' does not exist.")
        plans.append((user, pol["type"], pid))
    for user, ptype, pid in plans:
        user.policies[ptype] = pid
    return empty_response(204)


def unassign_policies(sim, req):
    plans = []
    for item in _assignments(req):
        uid, ptype = item.get("userId"), item.get("policyType")
        if not all(isinstance(v, str) and v for v in (uid, ptype)):
            raise bad_request("Each unassignment needs userId and policyType.")
        plans.append((_user(sim, uid), ptype))
    for user, ptype in plans:
        for key in [k for k in user.policies if k.lower() == ptype.lower()]:
            del user.policies[key]
    return empty_response(204)
