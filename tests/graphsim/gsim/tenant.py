"""The tenant's state: users (with change sequence numbers), the number inventory,
SKUs, policies, emergency locations and the application registration.

Every change to a user takes a new value of the tenant-wide sequence and records it
per property, so a delta round can tell which users changed in the properties it
selected. Hard-deleted users stay as tombstones so delta can report them."""
import os
import secrets

from . import inventory, licensing
from .certs import load_certificate
from .util import b64url, iso, new_id

USER_DEFAULTS = {
    "userPrincipalName": None, "displayName": None, "givenName": None, "surname": None,
    "mail": None, "mailNickname": None, "accountEnabled": True, "city": None,
    "country": None, "state": None, "streetAddress": None, "postalCode": None,
    "officeLocation": None, "usageLocation": None, "department": None,
    "companyName": None, "jobTitle": None, "employeeId": None, "employeeType": None,
    "businessPhones": [], "mobilePhone": None, "preferredLanguage": None,
    "userType": "Member", "createdDateTime": None, "onPremisesSyncEnabled": None,
    "onPremisesExtensionAttributes": None, "assignedLicenses": [], "assignedPlans": [],
}
USER_PROPERTIES = {"id", *USER_DEFAULTS}
EXTENSION_ATTRIBUTES = [f"extensionAttribute{i}" for i in range(1, 16)]
ACTIVE, SOFT_DELETED, HARD_DELETED = "active", "softDeleted", "hardDeleted"


class TenantError(ValueError):
    """A control request that makes no sense for the current state (-> HTTP 400/404)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class User:
    def __init__(self, uid, props, seq):
        self.id = uid
        self.props = {}
        self.prop_seq = {}
        self.state = ACTIVE
        self.state_seq = seq
        self.policies = {}            # policyType -> policyId
        self.ev_enabled = False
        self.teams_visible_at = 0.0   # licence_delay fault: Teams blind until then
        self.set(props, seq)

    def set(self, changes, seq):
        """Apply property changes; return the names that really changed."""
        changed = []
        for key, value in changes.items():
            if key == "onPremisesExtensionAttributes":
                value = _extension_attributes(self.props.get(key), value)
            if key not in self.props or self.props[key] != value:
                self.props[key] = value
                self.prop_seq[key] = seq
                changed.append(key)
        return changed

    def changed_since(self, seq, select):
        return self.state_seq > seq or any(self.prop_seq.get(p, 0) > seq for p in select)

    def record(self):
        return {"id": self.id, "state": self.state, "properties": self.props,
                "policies": self.policies, "isEnterpriseVoiceEnabled": self.ev_enabled}


def _extension_attributes(old, new):
    merged = {name: None for name in EXTENSION_ATTRIBUTES}
    merged.update(old or {})
    merged.update(new or {})
    return merged


def check_user_props(props, extra=()):
    unknown = set(props) - USER_PROPERTIES - set(extra)
    if unknown:
        raise TenantError(f"unknown user properties: {', '.join(sorted(unknown))}")


class Tenant:
    def __init__(self, fixture, base_dir=".", cert_path=None, now=0.0):
        self.generation = b64url(secrets.token_bytes(6))
        self.seq = 0
        self.tenant_id = fixture["tenant"]["id"]
        self.domain = fixture["tenant"].get("domain", "")
        self.skus = fixture.get("skus", [])
        self.users = {}
        self.numbers = {}
        self.by_target = {}           # lower-cased target -> numbers it was given (a hint)
        self.operations = {}
        self.open_operations = {}     # not yet completed
        self.locations = {loc["id"]: loc for loc in fixture.get("locations", [])}
        self.policies = [_policy(p) for p in fixture.get("policies", [])]
        self._load_app(fixture.get("app", {}), base_dir, cert_path)
        seq = self.next_seq()
        for props in fixture.get("users", []):
            self.add_user(dict(props), now, seq)
        for fields in fixture.get("numbers", []):
            self.add_number(fields)

    # --- application registration -------------------------------------------------
    def _load_app(self, app, base_dir, cert_path):
        self.client_id = app.get("client_id", "")
        self.client_secret = app.get("client_secret")
        self.cert, self.cert_error = None, None
        path = cert_path or app.get("certificate")
        if not path:
            return
        if not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        try:
            self.cert = load_certificate(path)
        except (OSError, ValueError) as err:
            self.cert_error = str(err)   # certificate auth off, secrets still work

    def names_tenant(self, name):
        return name.lower() in (self.tenant_id.lower(), self.domain.lower())

    # --- users ------------------------------------------------------------------------
    def next_seq(self):
        self.seq += 1
        return self.seq

    def add_user(self, props, now, seq=None):
        """props: Graph user properties, plus the shorthands "licenses" (SKU part
        numbers or ids) and "policies" ({policyType: name or id})."""
        check_user_props(props, ("licenses", "policies"))
        uid = props.pop("id", None) or new_id()
        if uid in self.users:
            raise TenantError(f"user {uid} exists")
        policies = props.pop("policies", {})
        licenses = props.pop("licenses", None)
        full = {**{k: (list(v) if isinstance(v, list) else v) for k, v in USER_DEFAULTS.items()},
                **props}
        full["createdDateTime"] = full["createdDateTime"] or iso(now)
        full["onPremisesExtensionAttributes"] = _extension_attributes(
            None, full["onPremisesExtensionAttributes"])
        if licenses:
            full.update(licensing.add_license(full, self.skus, licenses, [], "Enabled", now))
        user = User(uid, full, seq or self.next_seq())
        for ptype, ref in policies.items():
            user.policies[ptype] = self.policy(ptype, ref)["policyId"]
        self.users[uid] = user
        return user

    def user(self, uid, states=(ACTIVE,)):
        user = self.users.get(uid)
        if user is None or user.state not in states:
            raise TenantError(f"no user {uid}" if user is None
                              else f"user {uid} is {user.state}", 404)
        return user

    def change_user(self, uid, changes, states=(ACTIVE, SOFT_DELETED)):
        check_user_props(changes)
        user = self.user(uid, states)
        seq = self.next_seq()
        changed = user.set(changes, seq)
        if not changed:
            self.seq -= 1   # nothing happened: no new sequence number
        return user

    def set_state(self, uid, new_state):
        allowed = {SOFT_DELETED: (ACTIVE,), HARD_DELETED: (ACTIVE, SOFT_DELETED),
                   ACTIVE: (SOFT_DELETED,)}[new_state]
        user = self.user(uid, allowed)
        user.state = new_state
        user.state_seq = self.next_seq()
        if new_state == HARD_DELETED:
            user.props = {}
        return user

    def active_users(self):
        return [u for u in self.users.values() if u.state == ACTIVE]

    # --- numbers, policies, locations --------------------------------------------------
    def add_number(self, fields):
        record = inventory.make_number(fields)
        self.numbers[record["telephoneNumber"]] = record
        target = record["assignmentTargetId"]
        self.index_target(record)
        if target in self.users:
            self.users[target].ev_enabled = True
        return record

    def index_target(self, record):
        """Remember that record's number went to its target. Every place that gives a
        number a target calls this (add_number, numbers._hold); taking it away or deleting
        the number leaves a stale entry, which the look-ups below check and skip."""
        if isinstance(record["assignmentTargetId"], str) and record["assignmentTargetId"]:
            self.by_target.setdefault(record["assignmentTargetId"].lower(), set()).add(
                record["telephoneNumber"])

    def targeted(self, uid):
        """The numbers whose target is uid, ignoring case (not in any order)."""
        key = uid.lower()
        tels = self.by_target.get(key, ())
        hits = [self.numbers[t] for t in tels if t in self.numbers
                and (self.numbers[t]["assignmentTargetId"] or "").lower() == key]
        if len(hits) != len(tels):
            if hits:
                self.by_target[key] = {n["telephoneNumber"] for n in hits}
            else:
                self.by_target.pop(key, None)
        return hits

    def held_by(self, uid):
        hits = [n for n in self.targeted(uid) if n["assignmentTargetId"] == uid]
        if len(hits) > 1:   # in the order of the inventory, as a scan gives them
            hits = [n for n in self.numbers.values() if n["assignmentTargetId"] == uid]
        return hits

    def policy(self, ptype, ref):
        """A policy by name or id; TenantError(404) if the fixture has none."""
        for pol in self.policies:
            if pol["type"].lower() == ptype.lower() and ref in (pol["name"], pol["policyId"]):
                return pol
        raise TenantError(f"no {ptype} policy '{ref}'", 404)

    def policy_by_id(self, policy_id):
        return next((p for p in self.policies if p["policyId"] == policy_id), None)

    def truth(self):
        numbers = {tel: {"target": n["assignmentTargetId"], "type": n["numberType"],
                         "state": n["activationState"], "status": n["assignmentStatus"],
                         "category": n["assignmentCategory"], "locationId": n["locationId"]}
                   for tel, n in sorted(self.numbers.items())}
        users = {}
        for tel, info in numbers.items():
            if info["target"]:
                users.setdefault(info["target"], []).append(tel)
        return {"numbers": numbers, "users": users}


def _policy(fields):
    pid = fields.get("policyId") or b64url(
        f"{fields['type']}|Tag:{fields['name']}".encode())
    return {"type": fields["type"], "name": fields["name"], "policyId": pid}
