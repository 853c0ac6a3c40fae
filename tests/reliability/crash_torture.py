#!/usr/bin/python3
"""tests/reliability/crash_torture.py: numprovd killed at random moments while it onboards.

  /usr/bin/python3 tests/reliability/crash_torture.py --build DIR [--users 2000]
      [--kills 100] [--seed N] [--json FILE] ...

Issue 11 point 1. Against its own Graph simulator on 127.0.0.1 (its own CA from
tests/graphsim/mkcerts.sh, tests/graphsim/graphsim.py --port 0, real TLS):

  tenant   USERS licensed users (SPE_E5: Teams Phone) over 4 city sites, one
           direct-routing range per site with room for all of them; nobody holds a number.
  Teams    LATENCY ms on every Graph request; an operation answers `running` to its first
           poll; an operation nobody polls completes by itself after OP_COMPLETE seconds,
           so assignments go on in Teams while numprovd is dead. What Teams answers a
           second copy of an assignment it already made alternates between the run's
           kills (setting assign_repeat: accept, refuse, reject), so every answer is met.
  numprovd the build's numprovd with durable commits (the product's default), a round
           every second, sync.parallel 8.

Then KILLS times: numprovd is started, runs for a time drawn uniformly from [MIN_UP,
MAX_UP] seconds (seeded), and is killed with SIGKILL. After the last kill it is started
once more and left to finish: until every user holds a number in Teams, no number is
pending and a round has ended with nothing to do, then it is stopped with SIGTERM.

Checked at the end, from the simulator's truth (/_sim/truth) and the inventory as
numprovctl reads it with the daemon stopped (`numprovctl --json range NAME`):

  - no number on two users and no user with two numbers, in Teams and in the inventory;
  - nothing left pending or reserved;
  - no number leaked out of the pool: every number the inventory holds as assigned is
    held in Teams by that very user, and every number Teams shows held in our ranges is
    recorded as assigned to its holder (the inventory equals Teams for every number);
  - every licensed user holds a number;
  - no numprovd run ended by itself (other than by our kills) or tripped a sanitizer.

Prints one summary (and writes it as JSON with --json) and exits 0 when every check holds,
1 when one does not, 2 when it could not run. Every process it starts is stopped at the
end, also on errors and Ctrl-C. Standard library only."""
import argparse
import json
import os
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
from benchlib import (AS_ROOT, GRAPHSIM, BenchError, LogTail, check_conf, cleanup,  # noqa: E402
                      note, numprovd_conf, range_conf, sku_e5, start, start_graphsim, stop,
                      tenant, user, user_ids)
sys.path.insert(0, str(GRAPHSIM))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from rellib import SANITIZER, SITES, CtlError, ctl_json, in_ranges, site_range  # noqa: E402
from simctl import SimClient  # noqa: E402

TENANT_ID = "6e5c0b1a-0000-4000-8000-00000000c0a5"
DOMAIN = "torture.onmicrosoft.com"
CLIENT_ID = "c7a50000-1111-4222-8333-444455556666"
REPEATS = ("accept", "refuse", "reject")


def bad_lines(path):
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [l for l in text.splitlines() if any(s in l for s in SANITIZER)]


def run(args):
    rng = random.Random(args.seed)
    work = pathlib.Path(tempfile.mkdtemp(prefix="numprov-torture-"))
    summary = {"users": args.users, "kills_asked": args.kills, "seed": args.seed,
               "latency_ms": args.latency, "op_complete_s": args.op_complete,
               "up_s": [args.min_up, args.max_up], "work": str(work)}
    certs = work / "certs"
    certs.mkdir()
    subprocess.run([str(GRAPHSIM / "mkcerts.sh"), str(certs)], check=True,
                   capture_output=True)
    size = max(100, args.users)            # one range per site, room for everyone
    ids = user_ids(args.users, args.seed)
    users = [user(i, uid, DOMAIN, SITES[i % len(SITES)][0], "Office 1", "Staff", "SPE_E5")
             for i, uid in enumerate(ids)]
    fixture = work / "tenant.json"
    fixture.write_text(json.dumps(tenant(TENANT_ID, DOMAIN, CLIENT_ID, [sku_e5()], users)))
    sim_proc, sim_out, url = start_graphsim(work, certs, fixture, 200, 1, 60)
    ctl = SimClient(url, str(certs / "ca.pem"))
    ctl.settings(op_complete_seconds=args.op_complete)
    if args.latency:
        ctl.fault("latency", match="/v1.0/", ms=args.latency)
    ranges = [range_conf(*site_range(i, size), f"city = '{SITES[i][0]}'")
              for i in range(len(SITES))]
    conf = numprovd_conf(work, DOMAIN, CLIENT_ID, url, certs, ranges, 8, durable=True)
    text = conf.read_text().replace("interval = 3600;", "interval = 1;")
    text = text.replace("retry_min = 60; retry_max = 14400;", "retry_min = 1; retry_max = 4;")
    conf.write_text(text)
    numprovd = args.numprovd or str(pathlib.Path(args.build) / "numprovd")
    numprovctl = str(pathlib.Path(args.build) / "numprovctl")
    check_conf(numprovd, conf)
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "")
               + ":detect_leaks=0")  # a SIGKILLed process never reaches its leak check

    kills, died, ups, assigns_seen, due_at_start, mid_work = 0, [], [], 0, 0, 0
    for k in range(args.kills):
        ctl.settings(assign_repeat=REPEATS[k % len(REPEATS)])
        log = work / f"numprovd.{k:03d}.log"
        with open(log, "w") as out:
            proc = start([numprovd, *AS_ROOT, "-f", "-c", conf], stdout=out,
                         stderr=subprocess.STDOUT, env=env)
            up = rng.uniform(args.min_up, args.max_up)
            t0 = time.monotonic()
            while time.monotonic() - t0 < up and proc.poll() is None:
                time.sleep(0.01)
            if proc.poll() is not None:
                died.append((k, proc.returncode, str(log)))
            else:
                # onboarding still going on in Teams at this kill?
                mid_work += sum(1 for v in ctl.truth()["users"].values() if v) < args.users
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
                ups.append(up)
        tail = LogTail(log)
        tail.poll()
        assigns_seen += len(tail.events("assign")) + len(tail.events("adopt"))
        for line, _ in tail.find("have something left to do from before the start"):
            due_at_start += int(line.split("[provision] ")[1].split()[0])
        if bad_lines(log):
            died.append((k, "sanitizer", str(log)))
        if (k + 1) % 10 == 0:
            truth = ctl.truth()
            held = sum(1 for v in truth["users"].values() if v)
            note(f"{k + 1} kills: {held}/{args.users} users hold a number in Teams")
    summary.update(kills=kills, kills_while_onboarding=mid_work,
                   up_mean_s=round(sum(ups) / max(1, len(ups)), 2),
                   events_assign_or_adopt=assigns_seen, users_due_at_restarts=due_at_start)

    # the last run, left to finish
    ctl.settings(assign_repeat="accept")
    log = work / "numprovd.final.log"
    out = open(log, "w")
    t_final = time.monotonic()
    proc = start([numprovd, *AS_ROOT, "-f", "-c", conf], stdout=out, stderr=subprocess.STDOUT,
                 env=env)
    tail = LogTail(log)
    done = False
    while time.monotonic() - t_final < args.final_timeout:
        time.sleep(0.5)
        tail.poll()
        if proc.poll() is not None:
            died.append(("final", proc.returncode, str(log)))
            break
        truth = ctl.truth()
        if sum(1 for v in truth["users"].values() if v) < args.users:
            continue
        try:
            rs = ctl_json(numprovctl, str(conf), "ranges")
        except CtlError:
            continue
        if any(r["pending"] or r.get("reserved") for r in rs):
            continue
        # a round that ended after this point, with nothing to do
        n = len(tail.syncs)
        end = time.monotonic() + 10
        while time.monotonic() < end and len(tail.syncs) <= n:
            time.sleep(0.1)
            tail.poll()
        if len(tail.syncs) > n and tail.syncs[-1][0].get("result") == "success":
            done = True
            break
    summary["final_s"] = round(time.monotonic() - t_final, 1)
    stop(proc, signal.SIGTERM, wait=40)
    out.close()
    if proc.returncode not in (0, None):
        died.append(("final-stop", proc.returncode, str(log)))
    if bad_lines(log):
        died.append(("final", "sanitizer", str(log)))

    # ---- the checks ----
    truth = ctl.truth()
    failures = []
    if not done:
        failures.append(f"the last run did not settle within {args.final_timeout} s")
    if died:
        failures.append(f"numprovd runs that ended by themselves or tripped a sanitizer: {died}")
    two = {u: n for u, n in truth["users"].items() if len(n) > 1}
    if two:
        failures.append(f"users with two numbers in Teams: {len(two)} e.g. {list(two.items())[:3]}")
    teams_held = {num: v["target"] for num, v in truth["numbers"].items()
                  if v.get("target") and in_ranges(num, size)}
    without = [u for u in ids if not truth["users"].get(u)]
    if without:
        failures.append(f"licensed users holding no number: {len(without)} e.g. {without[:3]}")
    inv = {}
    pending = 0
    for i in range(len(SITES)):
        name = site_range(i, size)[0]
        for n in ctl_json(numprovctl, str(conf), "range", name):
            inv[n["number"]] = n
            pending += n["state"] in ("pending", "reserved")
    if pending:
        failures.append(f"numbers left pending or reserved: {pending}")
    by_user = {}
    mismatch = []
    for num, rec in inv.items():
        who = rec.get("user_id")
        if rec["state"] == "assigned":
            by_user.setdefault(who, []).append(num)
            if teams_held.get(num) != who:
                mismatch.append((num, "inventory", who, "teams", teams_held.get(num)))
        elif rec["state"] != "quarantined" or num in teams_held:
            mismatch.append((num, rec["state"], who, "teams", teams_held.get(num)))
    for num, who in teams_held.items():
        if num not in inv:
            mismatch.append((num, "inventory: free", None, "teams", who))
    doubled = {u: n for u, n in by_user.items() if len(n) > 1}
    if doubled:
        failures.append(f"users with two numbers in the inventory: {list(doubled.items())[:3]}")
    if mismatch:
        failures.append(f"inventory differs from Teams on {len(mismatch)} numbers, e.g. "
                        f"{mismatch[:5]}")
    summary.update(teams_holders=len(teams_held), inventory_assigned=sum(
        1 for r in inv.values() if r["state"] == "assigned"),
        inventory_quarantined=sum(1 for r in inv.values() if r["state"] == "quarantined"),
        mismatches=len(mismatch), users_with_two=len(two) + len(doubled),
        users_without=len(without), pending=pending, died=died, settled=done,
        failures=failures, result="pass" if not failures else "FAIL")
    return summary, work


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True, help="a build directory (numprovd, numprovctl)")
    p.add_argument("--numprovd", help="the numprovd to run (default: the build's), e.g. "
                   "the valgrind wrapper of tests/integration/conftest.py")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--latency", type=int, default=100, help="ms per Graph request")
    p.add_argument("--op-complete", type=float, default=1.5,
                   help="s after which an unpolled operation completes in Teams")
    p.add_argument("--min-up", type=float, default=0.3, help="shortest run before a kill, s")
    p.add_argument("--max-up", type=float, default=2.5, help="longest run before a kill, s")
    p.add_argument("--final-timeout", type=float, default=600)
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    work = None
    try:
        t0 = time.monotonic()
        summary, work = run(args)
        summary["wall_s"] = round(time.monotonic() - t0, 1)
    except (BenchError, CtlError, subprocess.CalledProcessError, OSError) as e:
        print(f"crash_torture: could not run: {e}", file=sys.stderr)
        cleanup()
        return 2
    except KeyboardInterrupt:
        cleanup()
        return 2
    finally:
        cleanup()
    print(json.dumps(summary, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    if work and not args.keep and summary["result"] == "pass":
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
