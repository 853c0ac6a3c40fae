"""Teams telephone number management: list/filter numberAssignments, assignNumber and
unassignNumber (asynchronous, 202 + operation), and operation polling.

Teams decides an assignment when it is accepted: a refused one becomes a failed
operation that changes nothing; an accepted one holds the number at once
(activationState assignmentPending) and activates it when the operation completes,
i.e. at the poll that first reports the final status (or op_complete_seconds after
creation, so an unpolled operation does not stay pending forever).

Setting assign_existing decides what assignNumber does for a user who already holds
another number: "refuse" (the operation fails) or "replace" (the user's number of the
same assignmentCategory is unassigned when the new one is accepted).

Setting assign_repeat decides what a second assignNumber of the number a user already
holds (pending or activated) gets; Microsoft does not document it: "accept" (default,
a 202 whose operation succeeds, nothing changes), "refuse" (the operation fails) or
"reject" (a synchronous 400). A client whose first copy went through must not take
either no for "not assigned".

The operation faults op_unsettled and op_lost (faults.py) make an operation that never
completes: the change is carried out at once, or never."""
import json
import re
from urllib.parse import quote

from . import faults, inventory, licensing
from .errors import bad_request, not_found
from .tenant import ACTIVE
from .util import b64url, empty_response, iso, json_response, new_id

ROOT = "admin/teams/telephoneNumberManagement"
MAX_TOP, DEFAULT_TOP = 1000, 500
ENUM_FIELDS = {"numberType", "activationState", "assignmentStatus", "assignmentCategory",
               "numberSource", "portInStatus"}
TEXT_FIELDS = {"telephoneNumber", "assignmentTargetId", "isoCountryCode", "locationId",
               "operatorId", "civicAddressId", "networkSiteId"}
COND_RE = re.compile(r"\s*(?:(\w+)\s+eq\s+(?:'((?:[^']|'')*)'|(null))"
                     r"|capabilities/any\(\s*(\w+)\s*:\s*\4\s+eq\s+'([^']*)'\s*\))\s*", re.I)
AND_RE = re.compile(r"and\b", re.I)


# --- list -------------------------------------------------------------------------------
def parse_filter(text):
    """"a eq 'x' and b eq 'y'" -> [(field, value)]; BadRequest if anything else."""
    conds, pos = [], 0
    while True:
        match = COND_RE.match(text, pos)
        if not match:
            raise bad_request(f"Invalid $filter: cannot parse '{text[pos:]}'.")
        conds.append(_condition(match))
        pos = match.end()
        if pos == len(text):
            return conds
        more = AND_RE.match(text, pos)
        if not more:
            raise bad_request(f"Invalid $filter: only 'and' is supported near '{text[pos:]}'.")
        pos = more.end()


def _condition(match):
    if match.group(5) is not None:
        return ("capabilities", match.group(5))
    field = match.group(1)
    value = None if match.group(3) else match.group(2).replace("''", "'")
    if field not in ENUM_FIELDS | TEXT_FIELDS:
        raise bad_request(f"Filtering on '{field}' is not supported.")
    if field == "telephoneNumber" and value and value[:1].isdigit():
        value = "+" + value
    return (field, value)


def _matches(record, conds):
    for field, value in conds:
        if field == "capabilities":
            ok = value.lower() in [c.lower() for c in record["capabilities"]]
        elif value is None or record[field] is None:
            ok = value is None and record[field] is None
        elif field in ENUM_FIELDS or field in ("assignmentTargetId", "isoCountryCode"):
            ok = record[field].lower() == value.lower()
        else:
            ok = record[field] == value
        if not ok:
            return False
    return True


def int_param(req, name, default, low, high):
    text = req.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"Invalid value '{text}' for query parameter '{name}' "
                          f"(allowed {low}..{high}).")
    return int(text)


def _sort_key(tel):
    base, _, ext = tel.partition(";ext=")
    return (int(base[1:]), int(ext or -1))


def list_numbers(sim, req):
    top = int_param(req, "$top", DEFAULT_TOP, 1, MAX_TOP)
    skip = int_param(req, "$skip", 0, 0, 10 ** 9)
    text = req.query.get("$filter")
    conds = parse_filter(text) if text else []
    hits = _select(sim.tenant, conds)
    body = {"@odata.context": f"{req.base_url}/{req.version}/$metadata#{ROOT}/numberAssignments",
            "value": [dict(r) for r in hits[skip:skip + top]]}
    if sim.settings["numbers_next_link"] and skip + top < len(hits):
        link = f"{req.base_url}/{req.version}/{ROOT}/numberAssignments?$top={top}&$skip={skip + top}"
        if text:
            link += "&$filter=" + quote(text, safe="")
        body["@odata.nextLink"] = link
    return json_response(200, body)


def _select(tenant, conds):
    """The records that match, in number order. One equality on the number or on the
    user (the reads numprovd makes before each assignment) is answered without trying
    every record, so the simulator's time per request does not grow with the tenant."""
    numbers = tenant.numbers
    if len(conds) == 1 and conds[0][1] is not None:
        field, value = conds[0]
        if field == "telephoneNumber":
            hit = numbers.get(value)
            return [hit] if hit is not None and hit["telephoneNumber"] == value else []
        if field == "assignmentTargetId":
            return sorted(tenant.targeted(value), key=lambda r: _sort_key(r["telephoneNumber"]))
    return [numbers[t] for t in sorted(numbers, key=_sort_key) if _matches(numbers[t], conds)]


def get_number(sim, req, number_id):
    for record in sim.tenant.numbers.values():
        if record["id"] == number_id:
            return json_response(200, dict(record))
    raise not_found(f"Number assignment '{number_id}' was not found.")


# --- request bodies ------------------------------------------------------------------------
def json_body(req):
    try:
        body = json.loads(req.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad_request("The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _required(body, name):
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"The required parameter '{name}' is missing or empty.")
    return value.strip()


def _number_args(body):
    raw = _required(body, "telephoneNumber")
    tel = inventory.normalize(raw)
    if tel is None:
        raise bad_request(f"Telephone Number '{raw}' is not a valid telephone number.")
    ntype = _required(body, "numberType")
    if ntype not in inventory.NUMBER_TYPES:
        raise bad_request(f"The value '{ntype}' is not valid for numberType "
                          f"(one of {', '.join(inventory.NUMBER_TYPES)}).")
    return tel, ntype


# --- assignNumber ------------------------------------------------------------------------
def assign_number(sim, req):
    body = json_body(req)
    tel, ntype = _number_args(body)
    target = _required(body, "assignmentTargetId")
    category = body.get("assignmentCategory") or "primary"
    if category not in ("primary", "private"):
        raise bad_request(f"The value '{category}' is not valid for assignmentCategory.")
    location = body.get("locationId") or None
    fault = req.op_fault
    record = sim.tenant.numbers.get(tel)
    repeat = record is not None and record["assignmentTargetId"] == target
    if repeat and sim.settings["assign_repeat"] == "reject":
        raise bad_request(f"Telephone Number '{tel}' is already assigned to user '{target}'")
    refusal = _assign_refusal(sim, tel, target, ntype, location)
    if refusal is None and repeat and sim.settings["assign_repeat"] == "refuse":
        refusal = f"Telephone Number '{tel}' is already assigned to user '{target}'"
    op = _new_operation(sim, "assign", tel, refusal, fault, req)
    if refusal is None and not _lost(fault):
        if sim.settings["assign_existing"] == "replace":
            op["replaced"] = _release_held(sim, tel, target, category)
        _hold(sim, tel, target, ntype, category, location)
        if fault:                  # Teams finished it; only the operation never says so
            _activate(sim, op)
    return _accepted(req, op)


def _lost(fault):
    return fault is not None and fault["kind"] == "op_lost"


def _release_held(sim, tel, target, category):
    """assign_existing = replace: the target's other numbers of this category go."""
    replaced = []
    for record in sim.tenant.held_by(target):
        if record["telephoneNumber"] != tel and \
                (record["assignmentCategory"] or "primary") == category:
            inventory.unassign(record)
            replaced.append(record["telephoneNumber"])
    return replaced


def _assign_refusal(sim, tel, target, ntype, location):
    """The reason Teams refuses this assignment, or None."""
    tenant = sim.tenant
    record = tenant.numbers.get(tel)
    reason = _number_refusal(tel, ntype, record)
    if reason:
        return reason
    if record and record["assignmentTargetId"] and record["assignmentTargetId"] != target:
        return f"Telephone Number '{tel}' has already been assigned to another user"
    user = tenant.users.get(target)
    plans = sim.visible_plans(user) if user and user.state == ACTIVE else set()
    if not licensing.has_teams_phone(plans):
        return f"User '{target}' is not licensed for Teams Phone"
    if sim.settings["assign_existing"] == "refuse" and \
            any(n["telephoneNumber"] != tel for n in tenant.held_by(target)):
        return f"User '{target}' already has a telephone number assigned"
    if ntype == "callingPlan" and not licensing.has_calling_plan(plans):
        return f"User '{target}' lacks appropriate licenses to assign a 'CallingPlan' number"
    if location and tenant.locations and location not in tenant.locations:
        return f"Location '{location}' not found"
    return None


def _number_refusal(tel, ntype, record):
    if ntype != "directRouting":
        if record is None or record["numberType"] != ntype:
            return f"Telephone Number '{tel}' is not found from tenant"
        return None
    if record is not None and record["numberType"] != "directRouting":
        return (f"Telephone Number '{tel}' is a '{record['numberType']}' number and cannot "
                "be assigned as 'DirectRouting'")
    if record is not None and record["numberSource"] == "onPremises":
        return f"Telephone Number '{tel}' is synced from on-premises and cannot be managed online"
    return None


def _hold(sim, tel, target, ntype, category, location):
    record = sim.tenant.numbers.get(tel)
    if record is None:   # a Direct Routing number enters the inventory on assignment
        record = sim.tenant.add_number({"telephoneNumber": tel, "numberType": ntype})
    if record["assignmentTargetId"] == target and record["activationState"] == "activated":
        return           # the same assignment again: nothing to do
    inventory.assign(record, target, category, location, pending=True)
    sim.tenant.index_target(record)


# --- unassignNumber ----------------------------------------------------------------------
def unassign_number(sim, req):
    tel, ntype = _number_args(json_body(req))
    record = sim.tenant.numbers.get(tel)
    refusal = None
    if record is None:
        refusal = f"Telephone Number '{tel}' is not found from tenant"
    elif record["numberType"] != ntype:
        refusal = (f"Telephone Number '{tel}' is a '{record['numberType']}' number, "
                   f"not a '{ntype}' number")
    elif not record["assignmentTargetId"]:
        refusal = f"Telephone Number '{tel}' is not assigned"
    op = _new_operation(sim, "unassign", tel, refusal, req.op_fault, req)
    if refusal is None and not _lost(req.op_fault):
        target = record["assignmentTargetId"]
        inventory.unassign(record)
        if target in sim.tenant.users and not sim.tenant.held_by(target):
            sim.tenant.users[target].ev_enabled = False
    return _accepted(req, op)


# --- updateNumber (synchronous) ----------------------------------------------------------
def update_number(sim, req):
    body = json_body(req)
    raw = _required(body, "telephoneNumber")
    record = sim.tenant.numbers.get(inventory.normalize(raw) or "")
    if record is None:
        raise not_found(f"Telephone Number '{raw}' is not found from tenant")
    location = body.get("locationId")
    if location and sim.tenant.locations and location not in sim.tenant.locations:
        raise bad_request(f"Location '{location}' not found")
    if location is not None:
        record["locationId"] = location or None
    if body.get("networkSiteId") is not None:
        record["networkSiteId"] = body["networkSiteId"] or None
    if isinstance(body.get("reverseNumberLookupOptions"), list):
        record["reverseNumberLookupOptions"] = body["reverseNumberLookupOptions"]
    return empty_response(200)


# --- operations ----------------------------------------------------------------------------
def _new_operation(sim, kind, tel, refusal, fault=None, req=None):
    """fault: an op_unsettled/op_lost spec; such an operation never completes."""
    op_id = b64url(f"{kind.capitalize()}ment|{new_id()}".encode())
    op = {"id": op_id, "kind": kind, "tel": tel, "created": sim.now(),
          "final": "failed" if refusal else "succeeded", "detail": refusal or "",
          "polls_left": int(sim.settings["op_polls"]), "done": False, "replaced": [],
          "fault": fault["kind"] if fault else None,
          "op_status": fault["op_status"] if fault else None,
          "poll_fault": fault.get("poll_fault") if fault else None,
          "retry_after": fault.get("retry_after") if fault else None}
    sim.tenant.operations[op_id] = op
    if not fault:
        sim.tenant.open_operations[op_id] = op
    if req is not None:
        req.note["operation"] = op_id
    return op


def _accepted(req, op):
    location = f"{req.base_url}/{req.version}/{ROOT}/operations('{op['id']}')"
    return empty_response(202, {"Location": location})


def complete(sim, op):
    """Bring an operation to its final state; an assignment is activated."""
    if op["done"]:
        return
    op["done"] = True
    sim.tenant.open_operations.pop(op["id"], None)
    if op["kind"] == "assign" and op["final"] == "succeeded":
        _activate(sim, op)


def _activate(sim, op):
    record = sim.tenant.numbers.get(op["tel"])
    if record is None:
        return
    if record["activationState"] == "assignmentPending":
        record["activationState"] = "activated"
        target = record["assignmentTargetId"]
        if target in sim.tenant.users:
            sim.tenant.users[target].ev_enabled = True


def settle(sim):
    """Complete operations older than op_complete_seconds (0 = only by polling)."""
    limit = sim.settings["op_complete_seconds"]
    if not limit:
        return
    for op in list(sim.tenant.open_operations.values()):   # never a faulted one
        if sim.now() - op["created"] >= limit:
            complete(sim, op)


def get_operation(sim, req, op_id):
    op = sim.tenant.operations.get(op_id)
    if op is None:
        raise not_found(f"Operation '{op_id}' was not found.")
    if op["fault"]:                      # op_unsettled / op_lost: never completes
        req.note["op_fault"] = op["fault"]
        if op["poll_fault"] == "reset":
            return faults.body_fault({"kind": "reset"}, None)
        if op["poll_fault"]:
            raise faults.status_error({"kind": op["poll_fault"],
                                       "retry_after": op["retry_after"]})
        status, detail = op["op_status"], ""
    elif op["polls_left"] > 0 and not op["done"]:
        op["polls_left"] -= 1
        status, detail = "running", ""
    else:
        complete(sim, op)
        status, detail = op["final"], op["detail"]
    number = {"resourceLocation": f"{req.base_url}/{req.version}/{ROOT}/numberAssignments/"
                                  f"{inventory.number_id(op['tel'])}",
              "status": status, "statusDetail": detail}
    return json_response(200, {
        "@odata.context": f"{req.base_url}/{req.version}/$metadata#{ROOT}/operations/$entity",
        "id": op["id"], "createdDateTime": iso(op["created"]), "status": status,
        "numbers": [number]})
