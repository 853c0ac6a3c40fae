#!/usr/bin/python3
"""tests/reliability/soak.py: numprovd through many cycles of churn, with faults or without.

  /usr/bin/python3 tests/reliability/soak.py --build DIR [--users 10000] [--cycles 200]
      [--faults] [--compare] [--seed N] [--json FILE] ...

Issue 11 points 2 (fault soak with churn) and 5 (memory flat). Against its own Graph
simulator on 127.0.0.1 (its own CA, real TLS):

  tenant   USERS users over 4 city sites, one direct-routing range per site with room for
           everyone; about 70 % licensed for Teams Phone (SPE_E5), the rest SPE_E3 only.
  numprovd the build's numprovd, durable commits, sync.parallel 8, retries after 1-4 s;
           each cycle is one round started by SIGUSR1 and ended by its event=sync line.
  churn    before each cycle, CHANGES changes drawn at random (seeded): a joiner (a new
           licensed user), a leaver (soft or hard deleted), a licence taken away, Teams
           Phone given to an SPE_E3 user (the MCOEV add-on), a move to another site's
           city, a disable or an enable.
  faults   (--faults) on every Graph request the simulator draws (FAULT_P = 0.2): 10 %
           429 with Retry-After 1, 5 % 503, 2 % a connection reset before the request is
           handled, 1 % a malformed body (a 200 whose handler did not run), 1 % a body
           cut in half, 1 % an answer cut after its first line; before every third cycle
           the next assignNumber or unassignNumber is reset after it took effect; every
           50 cycles the access tokens expire; every 70 cycles the delta link is refused
           with a 410.

After the last cycle the faults stop and clean cycles run until one has nothing to do
(at most --settle-cycles), then numprovd is stopped with SIGTERM. Checked:

  - no number on two users and no user with two numbers;
  - the inventory equals Teams for every number of the ranges (`numprovctl --json range`
    with the daemon stopped): assigned to the user Teams shows, and nothing held in
    Teams that the inventory calls free, pending or reserved;
  - every user who is active (not deleted), enabled and has Teams Phone holds a number of
    the ranges; nobody deleted or without Teams Phone holds one (a disabled user keeps a
    number it holds and is given none);
  - numprovd never ended by itself, never tripped a sanitizer, and stopped cleanly;
  - (--faults) every request sent again after a 429 waited its Retry-After: from the
    simulator's request log, the next request of the same method and path started no
    earlier than the 429's answer plus Retry-After (50 ms of slack for clocks);
  - (--compare) the same seeded churn without faults, in a second run: the same users hold
    a number at the end.

Memory: numprovd's VmRSS after every cycle; reported at cycle 100 (or the first tenth) and
at the end, with the growth per 1,000 cycles over the second half, and VmHWM.

Prints one summary (JSON with --json); exits 0 when every check holds, 1 when one does
not, 2 when it could not run. Every process it starts is stopped at the end."""
import argparse
import json
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "bench"))
from benchlib import (AS_ROOT, GRAPHSIM, MCOEV, BenchError, LogTail, check_conf,  # noqa: E402
                      cleanup, note, numprovd_conf, plan, range_conf, sku_e5, start,
                      start_graphsim, status_kb, stop, tenant, user, user_ids, TEAMS1)
sys.path.insert(0, str(GRAPHSIM))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from rellib import (SANITIZER, SITES, CtlError, compare_inventory,  # noqa: E402
                    ctl_json, holders, site_range)
from simctl import SimClient, SimError  # noqa: E402

TENANT_ID = "6e5c0b1a-0000-4000-8000-00000000504b"
DOMAIN = "soak.onmicrosoft.com"
CLIENT_ID = "50a50000-1111-4222-8333-444455556666"
E3 = {"skuId": "aaaaaaaa-0000-0000-0000-000000000003", "skuPartNumber": "SPE_E3",
      "servicePlans": [plan(TEAMS1, "TEAMS1")]}
ADDON = {"skuId": "aaaaaaaa-0000-0000-0000-0000000000ee", "skuPartNumber": "MCOEV",
         "servicePlans": [plan(MCOEV, "MCOEV")]}
ACTIONS = ("join", "leave", "unlicense", "license", "move", "disable", "enable")


class Churn:
    """The seeded changes, and what the tenant should look like (the model)."""

    def __init__(self, rng, ids, licensed, start_index):
        self.rng = rng
        self.state = {u: {"active": True, "phone": lic, "enabled": True}
                      for u, lic in zip(ids, licensed)}
        self.next_index = start_index
        self.counts = {a: 0 for a in ACTIONS}
        self.history = {}

    def draw(self):
        """One change: (action, user id or None, argument)."""
        action = self.rng.choice(ACTIONS)
        live = [u for u, s in self.state.items() if s["active"]]
        if action == "join" or not live:
            i = self.next_index
            self.next_index += 1
            return "join", None, i
        uid = self.rng.choice(live)
        if action == "license" and self.state[uid]["phone"]:
            action = "unlicense"
        elif action == "unlicense" and not self.state[uid]["phone"]:
            action = "license"
        if action == "move":
            return action, uid, self.rng.randrange(len(SITES))
        return action, uid, None

    def apply(self, ctl, change, cycle=0):
        action, uid, arg = change
        self.counts[action] += 1
        self.history.setdefault(uid, []).append((cycle, action))
        if action == "join":
            new = user_ids(1, 10_000_000 + arg)[0]
            ctl.add_user(user(arg, new, DOMAIN, SITES[arg % len(SITES)][0], "Office 1",
                              "Staff", "SPE_E5"))
            self.state[new] = {"active": True, "phone": True, "enabled": True}
        elif action == "leave":
            (ctl.soft_delete if self.rng.random() < 0.5 else ctl.hard_delete)(uid)
            self.state[uid]["active"] = False
        elif action == "unlicense":
            ctl.unlicense(uid, plans=[MCOEV], remove=True)
            self.state[uid]["phone"] = False
        elif action == "license":
            ctl.license(uid, plans=[MCOEV])
            self.state[uid]["phone"] = True
        elif action == "move":
            ctl.update_user(uid, {"city": SITES[arg][0]})
        elif action == "disable":
            ctl.disable(uid)
            self.state[uid]["enabled"] = False
        elif action == "enable":
            ctl.enable(uid)
            self.state[uid]["enabled"] = True


def retry_after_violations(log):
    """[(path, 429 end, Retry-After, next start)] where the next request of the same method
    and path came before the 429's answer plus its Retry-After."""
    bad, by_key = [], {}
    for q in sorted(log, key=lambda q: q["time"]):
        by_key.setdefault((q["method"], q["path"]), []).append(q)
    for key, qs in by_key.items():
        for a, b in zip(qs, qs[1:]):
            if a.get("status") != 429 or a.get("fault") in ("reset", "cut"):
                continue
            ra = float(a.get("retry_after") or 1)
            end = a["time"] + a.get("ms", 0) / 1000
            # one that started before the answer could reach numprovd was on its way
            if end + 0.05 <= b["time"] < end + ra - 0.05:
                bad.append((key[1][:80], round(end, 3), ra, round(b["time"], 3)))
    return bad


def run_once(args, faults):
    rng = random.Random(args.seed)    # the same churn with or without faults
    work = pathlib.Path(tempfile.mkdtemp(prefix="numprov-soak-"))
    certs = work / "certs"
    certs.mkdir()
    subprocess.run([str(GRAPHSIM / "mkcerts.sh"), str(certs)], check=True, capture_output=True)
    size = max(1000, 2 * args.users)
    ids = user_ids(args.users, args.seed)
    licensed = [rng.random() < 0.7 for _ in ids]
    users = [user(i, uid, DOMAIN, SITES[i % len(SITES)][0], "Office 1", "Staff",
                  "SPE_E5" if lic else "SPE_E3") for i, (uid, lic) in enumerate(zip(ids, licensed))]
    fixture = work / "tenant.json"
    fixture.write_text(json.dumps(tenant(TENANT_ID, DOMAIN, CLIENT_ID, [sku_e5(), E3, ADDON],
                                         users)))
    sim_proc, sim_out, url = start_graphsim(work, certs, fixture, 200, 0, 60)
    ctl = SimClient(url, str(certs / "ca.pem"))
    if args.latency:
        ctl.fault("latency", match="/v1.0/", ms=args.latency)
    ranges = [range_conf(*site_range(i, size), f"city = '{SITES[i][0]}'")
              for i in range(len(SITES))]
    conf = numprovd_conf(work, DOMAIN, CLIENT_ID, url, certs, ranges, 8, durable=True)
    conf.write_text(conf.read_text().replace("retry_min = 60; retry_max = 14400;",
                                             "retry_min = 1; retry_max = 4;"))
    numprovd = args.numprovd or str(pathlib.Path(args.build) / "numprovd")
    numprovctl = str(pathlib.Path(args.build) / "numprovctl")
    check_conf(numprovd, conf)
    log = work / "numprovd.log"
    out = open(log, "w")
    proc = start([numprovd, *AS_ROOT, "-f", "-c", conf], stdout=out, stderr=subprocess.STDOUT)
    tail = LogTail(log)
    result = {"faults": faults, "work": str(work)}
    failures = []

    def wait_sync(n, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            tail.poll()
            if len(tail.syncs) >= n:
                return True
            if proc.poll() is not None:
                raise BenchError(f"numprovd exited {proc.returncode} (see {log})")
            time.sleep(0.02)
        return False

    if not wait_sync(1, 600):
        raise BenchError("no first sync")
    churn = Churn(rng, ids, licensed, args.users)
    if faults:
        ctl.random_faults(args.fault_p, kinds=["429", "429", "429", "429", "429", "429",
                                               "429", "429", "429", "429", "503", "503",
                                               "503", "503", "503", "reset", "reset",
                                               "malformed", "truncated", "cut"],
                          match="/v1.0/", retry_after=1)
    rss, t0, sync_fail, log_pos, ra_bad, n429 = [], time.monotonic(), 0, 0, [], 0
    for cycle in range(1, args.cycles + 1):
        for _ in range(args.changes):
            churn.apply(ctl, churn.draw(), cycle)
        if faults and cycle % 50 == 0:
            ctl.expire_tokens()
        if faults and cycle % 70 == 0:
            ctl.fault("delta_410")
        if faults and cycle % 3 == 0:   # a change Teams made, whose answer is lost
            ctl.fault("reset", match="ssignNumber", apply=True)
        n = len(tail.syncs)
        proc.send_signal(signal.SIGUSR1)
        if not wait_sync(n + 1, 300):
            failures.append(f"cycle {cycle}: no event=sync within 300 s")
            break
        sync_fail += tail.syncs[-1][0].get("result") != "success"
        rss.append(status_kb(proc.pid, "VmRSS"))
        if faults and (cycle % 20 == 0 or cycle == args.cycles):
            entries = ctl.log(log_pos)["requests"]
            if entries:
                log_pos = max(q["seq"] for q in entries)
                ra_bad += retry_after_violations(entries)
                n429 += sum(1 for q in entries if q.get("status") == 429)
            ctl.clear_log()
            log_pos = 0
        if cycle % max(1, args.cycles // 10) == 0:
            note(f"{'faults' if faults else 'clean'}: cycle {cycle}, RSS {rss[-1]} kB, "
                 f"{sum(1 for s in churn.state.values() if s['active'])} users")
    result["churn"] = churn.counts
    result["cycles_s"] = round(time.monotonic() - t0, 1)
    result["rounds_failed_under_faults"] = sync_fail
    ctl.random_faults(0)
    ctl.clear_faults()
    if args.latency:
        ctl.fault("latency", match="/v1.0/", ms=args.latency)
    settled = False
    for _ in range(args.settle_cycles):
        n = len(tail.syncs)
        proc.send_signal(signal.SIGUSR1)
        if not wait_sync(n + 1, 300):
            break
        time.sleep(args.settle_pause)
        ev = tail.syncs[-1][0]
        try:
            pend = sum(r["pending"] + r.get("reserved", 0)
                       for r in ctl_json(numprovctl, conf, "ranges"))
        except CtlError:
            pend = -1
        if ev.get("result") == "success" and ev.get("assigned") == "0" and \
                ev.get("released") == "0" and pend == 0:
            settled = True
            break
    result["settled"] = settled
    result["rss_kb"] = {"after_cycle_1": rss[0] if rss else None,
                        "at_cycle_100": rss[min(99, len(rss) - 1)] if rss else None,
                        "at_end": rss[-1] if rss else None,
                        "max": max(rss) if rss else None,
                        "VmHWM": status_kb(proc.pid, "VmHWM")}
    if len(rss) >= 20:
        half = rss[len(rss) // 2:]
        growth = (half[-1] - half[0]) / max(1, len(half) - 1) * 1000
        result["rss_kb"]["growth_per_1000_cycles_second_half"] = round(growth, 1)
    stop(proc, signal.SIGTERM, wait=60)
    out.close()
    if proc.returncode != 0:
        failures.append(f"numprovd stopped with status {proc.returncode} (see {log})")
    text = log.read_text(errors="replace")
    bad = [l for l in text.splitlines() if any(s in l for s in SANITIZER)]
    if bad:
        failures.append(f"sanitizer: {bad[:3]}")

    truth = ctl.truth()
    per_user, two = holders(truth, size)
    if two:
        failures.append(f"users with two numbers: {list(two.items())[:3]}")
    inv = {}
    for i in range(len(SITES)):
        for n in ctl_json(numprovctl, conf, "range", site_range(i, size)[0]):
            inv[n["number"]] = n
    mismatch = compare_inventory(numprovctl, conf, truth, size)
    if mismatch:
        failures.append(f"inventory differs from Teams on {len(mismatch)}: {mismatch[:5]}")
    should, wrong = set(), []
    for uid, s in churn.state.items():
        if s["active"] and s["phone"] and not s["enabled"]:
            continue     # disabled: keeps a number it holds (B6), gets none it does not
        if s["active"] and s["phone"]:
            should.add(uid)
            if uid not in per_user:
                wrong.append((uid, "holds none"))
        elif uid in per_user:
            wrong.append((uid, "holds " + ",".join(per_user[uid])))
    if wrong:
        detail = []
        for uid, what in wrong[:5]:
            try:
                u = ctl.user(uid)
                plans = [(p.get("servicePlanId", "")[:8], p.get("capabilityStatus"))
                         for p in u.get("assignedPlans", [])]
                detail.append((uid, what, churn.state[uid], u.get("accountEnabled"), plans,
                               churn.history.get(uid, [])[-6:]))
            except SimError as e:
                detail.append((uid, what, churn.state[uid], str(e)))
        failures.append(f"{len(wrong)} users not as the directory says: {detail}")
    if faults:
        result["429_seen"] = n429
        result["retry_after_violations"] = len(ra_bad)
        if ra_bad:
            failures.append(f"requests sent again before Retry-After: {ra_bad[:5]}")
    result.update(holders=len(per_user), should_hold=len(should), mismatches=len(mismatch),
                  inventory_quarantined=sum(1 for r in inv.values()
                                            if r["state"] == "quarantined"),
                  failures=failures)
    stop(sim_proc)
    sim_out.close()
    return result, set(per_user), work


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True)
    p.add_argument("--numprovd", help="the numprovd to run (default: the build's), e.g. "
                   "the valgrind wrapper of tests/integration/conftest.py")
    p.add_argument("--users", type=int, default=10000)
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--changes", type=int, default=10, help="changes before each cycle")
    p.add_argument("--faults", action="store_true")
    p.add_argument("--fault-p", type=float, default=0.2,
                   help="share of Graph requests that get a fault: 429, 503, reset, malformed, truncated, cut drawn 10:5:2:1:1:1")
    p.add_argument("--compare", action="store_true",
                   help="also run the same churn without faults and compare who holds a number")
    p.add_argument("--latency", type=int, default=2, help="ms per Graph request")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--settle-cycles", type=int, default=20)
    p.add_argument("--settle-pause", type=float, default=1.5,
                   help="s after each settling cycle (retries wait 1-4 s)")
    p.add_argument("--json")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    works = []
    summary = {"users": args.users, "cycles": args.cycles, "changes_per_cycle": args.changes,
               "seed": args.seed, "latency_ms": args.latency}
    try:
        t0 = time.monotonic()
        res, holders, work = run_once(args, args.faults)
        works.append(work)
        summary["run"] = res
        failures = list(res["failures"])
        if not res["settled"]:
            failures.append("did not settle after the faults stopped")
        if args.compare:
            cleanup()
            ref, ref_holders, work2 = run_once(args, False)
            works.append(work2)
            summary["reference"] = ref
            failures += [f"reference run: {f}" for f in ref["failures"]]
            if holders != ref_holders:
                failures.append(f"who holds a number differs from the run without faults: "
                                f"{len(holders ^ ref_holders)} users, e.g. "
                                f"{sorted(holders ^ ref_holders)[:5]}")
        summary["wall_s"] = round(time.monotonic() - t0, 1)
    except (BenchError, CtlError, SimError, subprocess.CalledProcessError, OSError) as e:
        print(f"soak: could not run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 2
    finally:
        cleanup()
    summary["failures"] = failures
    summary["result"] = "pass" if not failures else "FAIL"
    print(json.dumps(summary, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    if not args.keep and summary["result"] == "pass":
        for w in works:
            shutil.rmtree(w, ignore_errors=True)
    return 0 if summary["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
