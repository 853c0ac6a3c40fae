"""What the reliability runs share: the sites and their ranges, the sanitizer markers,
numprovctl's JSON, and the comparison of the inventory with Teams."""
import json
import subprocess

SITES = [("London", "+442080"), ("Leeds", "+441130"), ("York", "+441904"),
         ("Bristol", "+441170")]
SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
             "SUMMARY: UndefinedBehaviorSanitizer")


class CtlError(Exception):
    pass


def site_range(i, size):
    """Site i's range: (name, first, last), SIZE numbers."""
    city, prefix = SITES[i]
    return city.lower(), f"{prefix}{0:07d}", f"{prefix}{size - 1:07d}"


def in_ranges(number, size):
    return any(len(number) == len(first) and first <= number <= last
               for first, last in (site_range(i, size)[1:] for i in range(len(SITES))))


def ctl_json(ctl, conf, *args):
    """numprovctl -c CONF --json ARGS, parsed; CtlError when it exits non-zero."""
    r = subprocess.run([str(ctl), "-c", str(conf), "--json", *args], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise CtlError(f"numprovctl {' '.join(args)}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def holders(truth, size):
    """From the simulator's truth: ({user: [numbers of the ranges]}, {user: [2+ numbers]})."""
    per_user = {}
    for num, v in truth["numbers"].items():
        if v.get("target") and in_ranges(num, size):
            per_user.setdefault(v["target"], []).append(num)
    return per_user, {u: n for u, n in per_user.items() if len(n) > 1}


def compare_inventory(ctl, conf, truth, size):
    """Where the inventory (`numprovctl --json range`) differs from Teams, for every number
    of the ranges: [(number, inventory state, inventory user, Teams holder)]. An assigned
    number must be held in Teams by that user; a number Teams shows held must be assigned
    to its holder in the inventory."""
    held = {num: v["target"] for num, v in truth["numbers"].items()
            if v.get("target") and in_ranges(num, size)}
    inv = {}
    for i in range(len(SITES)):
        for n in ctl_json(ctl, conf, "range", site_range(i, size)[0]):
            inv[n["number"]] = n
    mismatch = []
    for num, rec in inv.items():
        if rec["state"] == "assigned" and held.get(num) != rec["user_id"]:
            mismatch.append((num, "assigned", rec["user_id"], held.get(num)))
        elif rec["state"] != "assigned" and num in held:
            mismatch.append((num, rec["state"], rec["user_id"], held[num]))
    for num, who in held.items():
        if num not in inv:
            mismatch.append((num, "free", None, who))
    return mismatch
