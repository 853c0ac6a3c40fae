#!/usr/bin/python3
"""Generate fixtures/demo-tenant.json, the demo tenant (deterministic: same output every run).

300 users in London, Park Lane (calling plan), Abingdon Office 1/2, Paris (operator
connect), the HQ Support/Sales extension range, and places no range matches; mixed
licences; ~20 users already holding numbers, inside and outside the ranges of
etc/demo/numprovd.conf. Usage: make_demo_tenant.py [OUTPUT] (prints a summary)."""
import collections
import json
import os
import random
import sys
import uuid

SEED = 20261127
TENANT = {"id": "7a3f5c2e-9b41-4d8e-a6f0-3c2b1d0e9f84", "domain": "demo.onmicrosoft.com"}
APP = {"client_id": "0d3c1a8e-6b2f-4e57-9a41-5c2d7e8f9a10", "client_secret": "demo-secret",
       "certificate": "app.pem"}
PLANS = {   # servicePlanName -> servicePlanId
    "TEAMS1": "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "MCOEV": "4828c8ec-dc2e-4779-b502-87ac9ce28ab7",
    "MCOMEETADV": "3e26ee1f-8a5f-4d52-aee2-b81ce45c8f40",
    "EXCHANGE_S_ENTERPRISE": "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "MCOPSTN1": "4ed3ff63-69d7-4fb7-b984-5aec7f605ca8",
    "MCOPSTN2": "5a10155d-f5c1-411a-a8ec-e99aae125390",
    "MCOPSTNC": "505e180f-f7e0-4b65-91d4-00d670bbd18c",
}
SKUS = [   # (skuPartNumber, skuId, plans)
    ("SPE_E5", "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
     ["TEAMS1", "MCOEV", "MCOMEETADV", "EXCHANGE_S_ENTERPRISE"]),
    ("SPE_E3", "05e9a617-0261-4cee-bb44-138d3ef5d965", ["TEAMS1", "EXCHANGE_S_ENTERPRISE"]),
    ("MCOEV", "e43b5b99-8dfb-405f-9987-dc307f34bcbd", ["MCOEV"]),
    ("MCOPSTN1", "0dab259f-bf13-4952-b7f8-7db8f131b28d", ["MCOPSTN1"]),
    ("MCOPSTN2", "d3b4fe1f-9992-4930-8acb-ca6ec609365e", ["MCOPSTN2"]),
    ("MCOPSTNC", "47794cd0-f0e5-45c5-9033-2eb6b5fc84e0", ["MCOPSTNC"]),
]
# licence profiles: (SKUs, {plan: capabilityStatus override})
PROFILES = {
    "e5": (["SPE_E5"], {}),
    "e3+phone": (["SPE_E3", "MCOEV"], {}),
    "e3": (["SPE_E3"], {}),
    "none": ([], {}),
    "e5-warning": (["SPE_E5"], {"MCOEV": "Warning"}),
    "e5-phone-deleted": (["SPE_E5"], {"MCOEV": "Deleted"}),
    "e5+cp1": (["SPE_E5", "MCOPSTN1"], {}),
    "e5+cp2": (["SPE_E5", "MCOPSTN2"], {}),
    "e5+credits": (["SPE_E5", "MCOPSTNC"], {}),
}
STANDARD_MIX = {"e5": 64, "e3+phone": 12, "e3": 8, "none": 6, "e5-warning": 4,
                "e5-phone-deleted": 2, "e5+credits": 2, "e5+cp1": 2}
PARK_LANE_MIX = {"e5+cp1": 18, "e5+cp2": 10, "e5+credits": 6, "e5": 4, "e3": 2}
# group: (count, cities, office, usageLocation, country, state, departments, mix)
DEPARTMENTS = ["Engineering", "Finance", "HR", "Marketing", "Legal", "Operations"]
GROUPS = {
    "london": (110, ["London"], ["Canary Wharf", "Soho", "King's Cross"], "GB",
               "United Kingdom", "England", DEPARTMENTS, STANDARD_MIX),
    "park-lane": (40, ["LONDON"], ["Park Lane"], "GB", "United Kingdom", "England",
                  DEPARTMENTS, PARK_LANE_MIX),
    "abingdon-1": (35, ["Abingdon"], ["Office 1"], "GB", "United Kingdom", "Oxfordshire",
                   DEPARTMENTS, STANDARD_MIX),
    "abingdon-2": (30, ["ABINGDON", "Abingdon", " abingdon "], ["Office 2"], "GB",
                   "United Kingdom", "Oxfordshire", DEPARTMENTS, STANDARD_MIX),
    "paris": (35, ["Paris"], ["La Défense"], "FR", "France", "Île-de-France",
              DEPARTMENTS, STANDARD_MIX),
    "hq-ext": (25, ["Milton Park"], ["HQ"], "GB", "United Kingdom", "Oxfordshire",
               ["Support", "Sales"], STANDARD_MIX),
    "unmatched": (15, ["Manchester", "Edinburgh"], ["North"], "GB", "United Kingdom",
                  None, DEPARTMENTS, STANDARD_MIX),
    "no-city": (10, [None], [None], "GB", None, None, DEPARTMENTS, STANDARD_MIX),
}
FIRST = ["Alice", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Isla", "Jack",
         "Kemi", "Liam", "Maya", "Noah", "Olivia", "Priya", "Quentin", "Rosa", "Sam", "Tom",
         "Uma", "Victor", "Wen", "Xavier", "Yara", "Zoe", "Amélie", "Louis", "Camille", "Jules"]
LAST = ["Smith", "Jones", "Patel", "Brown", "Taylor", "Wilson", "Evans", "Khan", "Martin",
        "Dubois", "Moreau", "Laurent", "Clarke", "Hughes", "Wright", "Walker", "Green", "Hall",
        "Wood", "Lewis", "Young", "King", "Scott", "Baker", "Adams", "Nguyen", "Okafor"]
TITLES = ["Engineer", "Analyst", "Manager", "Consultant", "Advisor", "Coordinator"]
OPERATOR_ORANGE = "6b1f2c9e-0d4a-4e7b-9c3f-2a8d5e7f1b60"


class Gen:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.upns = set()

    def guid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def when(self):
        return f"2025-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}T09:00:00Z"

    def upn(self, first, last):
        base = f"{first}.{last}".lower().replace("é", "e").replace("'", "")
        name, n = base, 1
        while name in self.upns:
            n += 1
            name = f"{base}{n}"
        self.upns.add(name)
        return f"{name}@{TENANT['domain']}"


def skus():
    return [{"skuId": sid, "skuPartNumber": part, "units": 500,
             "servicePlans": [{"servicePlanId": PLANS[p], "servicePlanName": p,
                               "provisioningStatus": "Success", "appliesTo": "User"}
                              for p in plans]} for part, sid, plans in SKUS]


def licences(gen, profile):
    sku_parts, status = PROFILES[profile]
    when = gen.when()
    assigned, plans = [], []
    for part, sid, sku_plans in SKUS:
        if part not in sku_parts:
            continue
        assigned.append({"disabledPlans": [], "skuId": sid})
        for name in sku_plans:
            plans.append({"assignedDateTime": when, "capabilityStatus": status.get(name, "Enabled"),
                          "service": "TeamspaceAPI" if name == "TEAMS1" else
                          "exchange" if name.startswith("EXCHANGE") else
                          "MicrosoftCommunicationsOnline",
                          "servicePlanId": PLANS[name]})
    return assigned, plans


def profile_list(gen, count, mix):
    """`count` profiles in proportion to `mix`, shuffled deterministically."""
    total = sum(mix.values())
    out = []
    for name, weight in mix.items():
        out += [name] * max(1, round(count * weight / total))
    out = (out + ["e5"] * count)[:count]
    gen.rng.shuffle(out)
    return out


def make_user(gen, group, spec, profile):
    _, cities, offices, usage, country, state, departments, _ = spec
    first, last = gen.rng.choice(FIRST), gen.rng.choice(LAST)
    assigned, plans = licences(gen, profile)
    ext = {"extensionAttribute1": f"CC-{gen.rng.randint(1000, 9999)}"}  # others null
    upn = gen.upn(first, last)
    return {
        "id": gen.guid(), "userPrincipalName": upn, "mail": upn,
        "displayName": f"{first} {last}", "givenName": first, "surname": last,
        "accountEnabled": True, "city": gen.rng.choice(cities),
        "officeLocation": gen.rng.choice(offices), "usageLocation": usage,
        "country": country, "state": state, "department": gen.rng.choice(departments),
        "companyName": "Demo SAS" if usage == "FR" else "Demo Ltd",
        "jobTitle": gen.rng.choice(TITLES),
        "employeeType": gen.rng.choice(["Employee"] * 4 + ["Contractor"]),
        "onPremisesExtensionAttributes": ext, "assignedLicenses": assigned,
        "assignedPlans": plans, "createdDateTime": gen.when(),
        "_group": group, "_profile": profile,
    }


def users(gen):
    out = []
    for group, spec in GROUPS.items():
        for profile in profile_list(gen, spec[0], spec[7]):
            out.append(make_user(gen, group, spec, profile))
    disabled = gen.rng.sample(out, 11)
    disabled.append(next(u for u in out if u["_group"] == "london" and u["_profile"] == "e5"
                         and u not in disabled))   # one who holds a number (HOLDINGS)
    for user in disabled:
        user["accountEnabled"] = False
    return out


def inventory():
    """The numbers Teams already has: the calling-plan and operator-connect stock."""
    cp = [{"telephoneNumber": f"+44207123{i:04d}",
           "numberType": "callingPlan", "city": "London", "isoCountryCode": "GB",
           "capabilities": ["userAssignment", "conferenceAssignment"]} for i in range(300)]
    oc = [{"telephoneNumber": f"+331400{i:05d}", "numberType": "operatorConnect",
           "city": "Paris", "isoCountryCode": "FR", "operatorId": OPERATOR_ORANGE,
           "supportedCustomerActions": ["locationUpdate"]} for i in range(300)]
    return {n["telephoneNumber"]: n for n in cp + oc}


# (group, profile filter, number, numberType, extra fields)
HOLDINGS = [
    ("park-lane", "cp", "+442071230001", "callingPlan", {}),
    ("park-lane", "cp", "+442071230002", "callingPlan", {}),
    ("park-lane", "cp", "+442071230003", "callingPlan", {}),
    ("park-lane", "cp", "+442071230010", "callingPlan", {}),
    ("paris", "phone", "+33140000001", "operatorConnect", {}),
    ("paris", "phone", "+33140000002", "operatorConnect", {}),
    ("paris", "phone", "+33140000050", "operatorConnect", {}),
    ("london", "phone", "+442080000005", "directRouting", {}),
    ("london", "phone", "+442080000010", "directRouting", {}),
    ("london", "phone", "+442080000011", "directRouting", {}),
    ("london", "disabled", "+442080000150", "directRouting", {}),
    ("london", "phone-deleted", "+442080000020", "directRouting", {}),
    ("london", "phone", "+442080001000", "directRouting", {}),
    ("london", "phone", "+442080009999", "directRouting", {}),   # outside every range
    ("abingdon-1", "phone", "+441235000001", "directRouting", {}),
    ("abingdon-1", "phone", "+441235000002", "directRouting", {}),
    ("abingdon-1", "phone", "+441235000500", "directRouting", {}),  # outside office 1 range
    ("abingdon-1", "phone", "+441235000050", "directRouting", {"numberSource": "onPremises"}),
    ("abingdon-2", "phone", "+441235001005", "directRouting", {}),
    ("hq-ext", "phone", "+441235999000;ext=100", "directRouting", {}),
    ("hq-ext", "phone", "+441235999000;ext=150", "directRouting", {}),
    ("unmatched", "phone", "+441632960001", "directRouting", {}),
    ("no-city", "phone", "+12065550100", "directRouting", {}),
]


def _fits(user, kind):
    phone = user["_profile"] in ("e5", "e3+phone", "e5-warning", "e5+credits")
    return {"cp": user["_profile"] in ("e5+cp1", "e5+cp2"),
            "phone": phone and user["accountEnabled"],
            "disabled": phone and not user["accountEnabled"],
            "phone-deleted": user["_profile"] == "e5-phone-deleted"}[kind]


def give_numbers(all_users, numbers, policies):
    taken = set()
    for group, kind, tel, ntype, extra in HOLDINGS:
        user = next(u for u in all_users if u["_group"] == group and u["id"] not in taken
                    and _fits(u, kind))
        taken.add(user["id"])
        record = numbers.setdefault(tel, {"telephoneNumber": tel, "numberType": ntype,
                                          "city": user["city"]})
        record.update(assignmentTargetId=user["id"], assignmentCategory="primary", **extra)
        if ntype == "directRouting":
            user["policies"] = {"OnlineVoiceRoutingPolicy": policies["UK-National"]}
    numbers["+442071230299"].update(assignmentTargetId="3f0c9d2a-5b7e-4c1a-8e6d-0a9b8c7d6e5f",
                                    assignmentStatus="conferenceAssigned",
                                    capabilities=["conferenceAssignment"])


def build():
    gen = Gen()
    all_users = users(gen)
    policies = {"UK-National": gen.guid(), "UK-International": gen.guid()}
    numbers = inventory()
    give_numbers(all_users, numbers, policies)
    locations = [{"id": gen.guid(), "description": d, "countryOrRegion": c} for d, c in
                 [("Park Lane, London", "GB"), ("Canary Wharf, London", "GB"),
                  ("Office 1, Abingdon", "GB"), ("Office 2, Abingdon", "GB"),
                  ("La Défense, Paris", "FR")]]
    for user in all_users:
        user.pop("_group"), user.pop("_profile")
    return {"tenant": TENANT, "app": APP, "skus": skus(), "users": all_users,
            "numbers": list(numbers.values()),
            "policies": [{"type": "OnlineVoiceRoutingPolicy", "name": name, "policyId": pid}
                         for name, pid in policies.items()],
            "locations": locations}


def dump(fixture):
    """JSON with one list item per line: readable and diff-friendly."""
    parts = []
    for key, value in fixture.items():
        if isinstance(value, list):
            items = ",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f'"{key}": [\n{items}\n]')
        else:
            parts.append(f'"{key}": {json.dumps(value, ensure_ascii=False)}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def summary(fixture):
    counts = collections.Counter()
    for user in fixture["users"]:
        counts[f"city {str(user['city']).strip().lower()}"] += 1
        counts["disabled"] += not user["accountEnabled"]
    counts["numbers held"] = sum(1 for n in fixture["numbers"] if n.get("assignmentTargetId"))
    return dict(sorted(counts.items()))


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    out = argv[1] if len(argv) > 1 else os.path.join(here, "fixtures", "demo-tenant.json")
    fixture = build()
    with open(out, "w", encoding="utf-8") as f:
        f.write(dump(fixture))
    print(f"{out}: {len(fixture['users'])} users, {len(fixture['numbers'])} numbers")
    for name, count in summary(fixture).items():
        print(f"  {name}: {count}")


if __name__ == "__main__":
    main(sys.argv)
