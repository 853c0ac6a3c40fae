"""Service plans: what a user's assignedPlans mean to Teams, and when Teams sees them.

A plan counts when its capabilityStatus is Enabled or Warning AND it is older than the
licence propagation delay (and the user is not held back by a licence_delay fault)."""
from .util import iso, parse_iso

MCOEV = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"
MCOEV_GOV = "db23fce2-a974-42ef-9002-d78dd42a0f22"
TEAMS1 = "57ff2da0-773e-42df-b2af-ffb7a2317929"
MCOMEETADV = "3e26ee1f-8a5f-4d52-aee2-b81ce45c8f40"

# Plans we know without a /subscribedSkus entry (fixtures normally list them anyway).
KNOWN_PLANS = {
    MCOEV: "MCOEV",
    MCOEV_GOV: "MCOEV_GOV",
    "4ed3ff63-69d7-4fb7-b984-5aec7f605ca8": "MCOPSTN1",
    "5a10155d-f5c1-411a-a8ec-e99aae125390": "MCOPSTN2",
    "54a152dc-90de-4996-93d2-bc47e670fc06": "MCOPSTN5",
    "3c8a8792-7866-409b-bb61-1b20ace0368b": "MCOPSTN1_GOV",
    "505e180f-f7e0-4b65-91d4-00d670bbd18c": "MCOPSTNC",
    TEAMS1: "TEAMS1",
    MCOMEETADV: "MCOMEETADV",
}
PHONE_SYSTEM_NAMES = {"MCOEV", "MCOEV_GOV"}
NOT_CALLING_PLANS = {"MCOPSTNC", "MCOPSTNPP"}   # communications credits
USABLE = {"Enabled", "Warning"}
SERVICE_BY_PREFIX = (("MCO", "MicrosoftCommunicationsOnline"), ("TEAMS", "TeamspaceAPI"),
                     ("EXCHANGE", "exchange"), ("SHAREPOINT", "SharePoint"))


def plan_names(skus):
    """servicePlanId -> servicePlanName from the fixture SKUs plus the built-in table."""
    names = dict(KNOWN_PLANS)
    for sku in skus:
        for plan in sku.get("servicePlans", []):
            names[plan["servicePlanId"].lower()] = plan["servicePlanName"]
    return names


def is_calling_plan(name):
    return name.startswith("MCOPSTN") and name not in NOT_CALLING_PLANS


def service_for(name):
    for prefix, service in SERVICE_BY_PREFIX:
        if name.startswith(prefix):
            return service
    return "Unknown"


def visible_plans(user, names, now, delay):
    """Names of the plans Teams can use for this user right now."""
    if user.teams_visible_at > now:
        return set()
    out = set()
    for plan in user.props.get("assignedPlans") or []:
        if plan.get("capabilityStatus") not in USABLE:
            continue
        when = plan.get("assignedDateTime")
        if delay and when and parse_iso(when) + delay > now:
            continue
        out.add(names.get(str(plan.get("servicePlanId", "")).lower(), "?"))
    return out


def has_teams_phone(plans):
    return bool(plans & PHONE_SYSTEM_NAMES)


def has_calling_plan(plans):
    return any(is_calling_plan(name) for name in plans)


def feature_types(plans):
    """userConfigurations.featureTypes as derived from the visible plans."""
    features = []
    if "TEAMS1" in plans or plans & PHONE_SYSTEM_NAMES:
        features.append("Teams")
    if has_teams_phone(plans):
        features.append("PhoneSystem")
    if has_calling_plan(plans):
        features.append("CallingPlan")
    if "MCOMEETADV" in plans:
        features.append("AudioConferencing")
    return features


def find_sku(skus, ref):
    """A fixture SKU by skuId or skuPartNumber (case-insensitive)."""
    for sku in skus:
        if ref.lower() in (sku["skuId"].lower(), sku["skuPartNumber"].lower()):
            return sku
    return None


def plan_id(skus, ref):
    """A servicePlanId from an id or a plan name."""
    names = plan_names(skus)
    if ref.lower() in names:
        return ref.lower()
    for pid, name in names.items():
        if name.lower() == ref.lower():
            return pid
    return None


def make_plan(pid, names, status, when):
    return {"assignedDateTime": iso(when), "capabilityStatus": status,
            "service": service_for(names.get(pid, "")), "servicePlanId": pid}


def add_license(props, skus, sku_refs, plan_refs, status, when):
    """Add SKUs (assignedLicenses + all their plans) and single plans to a user."""
    names = plan_names(skus)
    licenses = list(props.get("assignedLicenses") or [])
    plans = [p for p in props.get("assignedPlans") or []]
    pids = list(plan_refs)
    for ref in sku_refs:
        sku = find_sku(skus, ref)
        if sku is None:
            raise KeyError(f"unknown SKU '{ref}'")
        if all(lic["skuId"] != sku["skuId"] for lic in licenses):
            licenses.append({"disabledPlans": [], "skuId": sku["skuId"]})
        pids += [p["servicePlanId"] for p in sku.get("servicePlans", [])]
    for ref in pids:
        pid = plan_id(skus, ref)
        if pid is None:
            raise KeyError(f"unknown service plan '{ref}'")
        plans = [p for p in plans if p["servicePlanId"].lower() != pid]
        plans.append(make_plan(pid, names, status, when))
    return {"assignedLicenses": licenses, "assignedPlans": plans}


def remove_license(props, skus, sku_refs, plan_refs, status, remove):
    """Take SKUs/plans away: each plan goes to `status` (default Deleted) or is removed."""
    licenses = list(props.get("assignedLicenses") or [])
    pids = set()
    for ref in sku_refs:
        sku = find_sku(skus, ref)
        if sku is None:
            raise KeyError(f"unknown SKU '{ref}'")
        licenses = [lic for lic in licenses if lic["skuId"] != sku["skuId"]]
        pids |= {p["servicePlanId"].lower() for p in sku.get("servicePlans", [])}
    for ref in plan_refs:
        pid = plan_id(skus, ref)
        if pid is None:
            raise KeyError(f"unknown service plan '{ref}'")
        pids.add(pid)
    plans = []
    for plan in props.get("assignedPlans") or []:
        if plan["servicePlanId"].lower() not in pids:
            plans.append(plan)
        elif not remove:
            plans.append({**plan, "capabilityStatus": status})
    return {"assignedLicenses": licenses, "assignedPlans": plans}
