"""Telephone numbers as Teams keeps them: normalisation and numberAssignment records."""
import re

from .util import b64url

NUMBER_RE = re.compile(r"^\+?([1-9][0-9]{6,14})(?:;ext=([0-9]{1,10}))?$")
NUMBER_TYPES = ("directRouting", "callingPlan", "operatorConnect")
CATEGORIES = ("primary", "private", "alternate")
COUNTRY_CODES = (("44", "GB"), ("33", "FR"), ("49", "DE"), ("31", "NL"), ("353", "IE"),
                 ("61", "AU"), ("1", "US"))
DEFAULTS = {
    "operatorId": None, "activationState": "activated", "assignmentStatus": "unassigned",
    "assignmentTargetId": None, "assignmentCategory": None,
    "capabilities": ["userAssignment"], "city": None, "isoCountryCode": None,
    "civicAddressId": None, "locationId": None, "networkSiteId": None,
    "portInStatus": "completed", "numberSource": "online",
    "supportedCustomerActions": ["locationUpdate", "release"],
    "reverseNumberLookupOptions": [],
}


def normalize(text):
    """'+441235999000;ext=100', '44123...' -> '+E164[;ext=N]'; None if not a number."""
    if not isinstance(text, str):
        return None
    match = NUMBER_RE.match(text.strip())
    if not match:
        return None
    ext = f";ext={match.group(2)}" if match.group(2) else ""
    return f"+{match.group(1)}{ext}"


def country_of(tel):
    digits = tel.lstrip("+")
    for prefix, iso in COUNTRY_CODES:
        if digits.startswith(prefix):
            return iso
    return None


def number_id(tel):
    return b64url(f"TelephoneNumber|{tel}".encode())


def make_number(fields):
    """A numberAssignment record from (partial) fixture fields."""
    tel = normalize(fields.get("telephoneNumber"))
    if tel is None:
        raise ValueError(f"bad telephoneNumber {fields.get('telephoneNumber')!r}")
    if fields.get("numberType") not in NUMBER_TYPES:
        raise ValueError(f"{tel}: numberType must be one of {NUMBER_TYPES}")
    record = {"id": number_id(tel), "telephoneNumber": tel, "numberType": fields["numberType"]}
    for key, value in DEFAULTS.items():
        record[key] = fields.get(key, list(value) if isinstance(value, list) else value)
    record["isoCountryCode"] = record["isoCountryCode"] or country_of(tel)
    if record["assignmentTargetId"]:
        record["assignmentStatus"] = fields.get("assignmentStatus", "userAssigned")
        record["assignmentCategory"] = record["assignmentCategory"] or "primary"
    return record


def assign(record, target, category, location_id, pending):
    record.update(assignmentTargetId=target, assignmentStatus="userAssigned",
                  assignmentCategory=category,
                  activationState="assignmentPending" if pending else "activated")
    if location_id:
        record["locationId"] = location_id


def unassign(record):
    record.update(assignmentTargetId=None, assignmentStatus="unassigned",
                  assignmentCategory=None, activationState="activated")
