#!/usr/bin/python3
"""bench/latency.py: how long a joiner waits for a phone number (issue 10 point 9).

  /usr/bin/python3 bench/latency.py --build DIR [--interval S] [--joiners N]
      [--duration S] [--users N] [--json FILE] ...

Runs numprovd with its default sync.interval (60 s; the configuration then names no
interval at all, so the daemon's built-in default is what is measured) or with
--interval S, against its own Graph simulator on 127.0.0.1 (its own CA from
tests/graphsim/mkcerts.sh, tests/graphsim/graphsim.py --port 0):

  tenant   USERS existing users over 4 city/office sites, one direct-routing range of
           1,000 numbers per site (matched by `city = ... AND office = ...`); about 70 %
           are licensed (SPE_E5, Teams Phone) and already hold a number of their site's
           range, the rest have SPE_E3 only (no Teams Phone), so numprovd has nothing to
           do after its initial full sync;
  Graph    LATENCY ms on every Graph request (a `latency` fault on "/v1.0/"; the token
           endpoint is not delayed); operations answer `running` to OP_POLLS polls first;
  joiners  after numprovd's initial sync, JOINERS users get Teams Phone at moments drawn
           uniformly at random over DURATION seconds: half of them new users created with
           SPE_E5, half existing SPE_E3 users who get the MCOEV licence added.

For every joiner it measures, on the simulator's clock, the time from the licence
appearing in Graph to the number being assigned in Teams:

  start  the moment the simulator's state changed: the control call that made the change
         is bracketed by time.time() before it was sent and after its answer came back
         (same host, same clock as the simulator's; the bracket is 4-30 ms wide, up to
         0.1 s on a loaded machine, and its midpoint is used; the simulator's own
         assignedDateTime / createdDateTime, to the second, is checked against it);
  end    the end of the operation poll that completed the joiner's assignNumber
         operation: the OP_POLLS+1-th poll of the operation named in the 202 of the
         joiner's POST whose operation succeeded (/_sim/operations), from the
         simulator's request log (`time` + `ms`); that poll is when Teams activated
         the number. /_sim/truth confirms each joiner holds an activated number of its
         site's range at the end.

It splits each latency into the wait for the round (licence -> the start of the
users/delta request of the round that sent the successful assignNumber) and the work
(that request -> operation completed). It reports n, p50, p95, max and the goal check
"p95 <= interval + 10 s" (a figure, not a verdict). The run stops by itself once every
joiner holds its number, at the latest DURATION + interval + GRACE (+ 4 x licence delay)
seconds after the joiners' clock started, plus the cost measurement below.

With --licence-delay S the simulator's Teams sees a licence only S seconds after it was
assigned (setting licence_delay), as real Teams does after minutes to hours: numprovd's
first assignNumber for a joiner is then refused and retried (sync.retry_min, doubling),
and the latency shows what the retry ladder adds to the interval.

Then, with nothing left to do, it measures the cost of polling: numprovd's CPU (schedstat
of its threads, and /proc/PID/stat) over a quiet window with no round, and over
IDLE_ROUNDS delta rounds with nothing changed (each started by SIGUSR1, ended by its
event=sync line), with the Graph requests each round sent. From those it derives the
cost per day at the measured interval.

Every process it starts is stopped at the end, also on errors and Ctrl-C. Standard
library only. A benchmark: it reports, it never passes or fails (exit status 0 unless it
could not run)."""
import argparse
import datetime
import json
import math
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import (sched_ns, status_kb, GRAPHSIM, MCOEV, SECRET, TEAMS1, BenchError, LogTail, check_conf,
                      cleanup, cpu_s, note, plan, range_conf, sku_e5, start_graphsim,
                      start_numprovd, stop, tenant, user, user_ids)
sys.path.insert(0, str(GRAPHSIM))
from simctl import SimClient  # noqa: E402

TENANT_ID = "6e5c0b1a-0000-4000-8000-00000000c0c0"
DOMAIN = "latency.onmicrosoft.com"
CLIENT_ID = "b3c00000-1111-4222-8333-4444555577aa"
SITES = [("London", "Office 1", "+441200"), ("Manchester", "Office 2", "+441201"),
         ("Leeds", "Office 3", "+441202"), ("Bristol", "Office 4", "+441203")]
RANGE_FIRST, RANGE_SIZE = 500000, 1000
DEFAULT_INTERVAL = 60           # numprovd's built-in sync.interval (config.c; 300 before a0fc770)
START_TIMEOUT = 300             # simulator start + numprovd's initial full sync


# ---- the tenant ----------------------------------------------------------------------------
def site_number(site, k):
    return f"{SITES[site][2]}{RANGE_FIRST + k:06d}"


def fixture(n_users, seed):
    """(fixture, ids of the users without Teams Phone with their site, next free index per
    site): users i % 4 at site i % 4; 70 % licensed and holding their site's numbers."""
    rng = random.Random(seed + 1)
    skus = [sku_e5(),
            {"skuId": "aaaaaaaa-0000-0000-0000-000000000003", "skuPartNumber": "SPE_E3",
             "servicePlans": [plan(TEAMS1, "TEAMS1")]},
            {"skuId": "aaaaaaaa-0000-0000-0000-0000000000ee", "skuPartNumber": "MCOEV",
             "servicePlans": [plan(MCOEV, "MCOEV")]}]
    depts = ["Sales", "Support", "Engineering", "Finance", "Operations", "HR"]
    users, numbers, unlicensed = [], [], []
    used = [0] * len(SITES)
    for i, uid in enumerate(user_ids(n_users, seed)):
        s = i % len(SITES)
        city, office, _ = SITES[s]
        licensed = rng.random() < 0.7
        users.append(user(i, uid, DOMAIN, city, office, rng.choice(depts),
                          "SPE_E5" if licensed else "SPE_E3"))
        if licensed:
            numbers.append({"telephoneNumber": site_number(s, used[s]),
                            "numberType": "directRouting", "assignmentTargetId": uid,
                            "city": city})
            used[s] += 1
        else:
            unlicensed.append((uid, s))
    fx = tenant(TENANT_ID, DOMAIN, CLIENT_ID, skus, users)
    fx["numbers"] = numbers
    return fx, unlicensed, used


def ranges_conf():
    out = []
    for s, (city, office, _) in enumerate(SITES):
        out.append(range_conf(f"{city.lower()}-{s + 1}", site_number(s, 0),
                              site_number(s, RANGE_SIZE - 1),
                              f'city = "{city}" AND office = "{office}"'))
    return out


def write_conf(work, sim_url, certs, interval, durable):
    """numprovd.conf with the daemon's defaults for everything in sync: except the mode
    (and sync.interval when --interval was given)."""
    secret = work / "client-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    conf = work / "numprovd.conf"
    sync = 'mode = "enforce";' + (f" interval = {interval};" if interval is not None else "")
    conf.write_text(
        f'tenant: {{ id = "{DOMAIN}"; client_id = "{CLIENT_ID}";\n'
        f'  client_secret_file = "{secret}";\n'
        f'  login_url = "{sim_url}"; graph_url = "{sim_url}";\n'
        f'  ca_file = "{certs}/ca.pem"; timeout = 60; }};\n'
        f'sync: {{ {sync} }};\n'
        f'database: {{ path = "{work}/db"; durable = {"true" if durable else "false"}; }};\n'
        f'control: {{ socket = "{work}/control.sock"; group = "root"; }};\n'
        'snmp: { enabled = false; };\n'
        'log: { level = "info"; };\n'
        'ranges = (\n' + ",\n".join(ranges_conf()) + '\n);\n')
    return conf


# ---- the simulator's request log, kept as it grows -----------------------------------------
class ReqLog:
    """Every entry of the simulator's request log, fetched incrementally (the simulator
    keeps only the last 50,000); entries still in flight are fetched again later."""

    def __init__(self, ctl):
        self.ctl, self.since, self.by_seq = ctl, 0, {}

    def refresh(self):
        reqs = self.ctl.log(self.since)["requests"]
        pending = None
        for e in reqs:
            self.by_seq[e["seq"]] = e
            if e["ms"] is None and pending is None:
                pending = e["seq"]
        if pending is not None:
            self.since = pending - 1
        elif reqs:
            self.since = reqs[-1]["seq"]
        return self

    def entries(self, since_seq=0):
        return [self.by_seq[s] for s in sorted(self.by_seq) if s > since_seq]

    def last_seq(self):
        return max(self.by_seq) if self.by_seq else 0


def kind_of(e):
    p = e["path"]
    if "/oauth2/" in p:
        return "token"
    if "/users/delta" in p:
        return "delta"
    if "/subscribedSkus" in p:
        return "skus"
    if e.get("action"):
        return e["action"]
    if "/operations" in p:
        return "poll"
    if "numberAssignments" in p:
        return "numbers"
    return "other"


def kinds(entries):
    out = {}
    for e in entries:
        k = kind_of(e)
        out[k] = out.get(k, 0) + 1
    return out


# ---- joiners -------------------------------------------------------------------------------
class Joiner:
    def __init__(self, idx, uid, site, new, at):
        self.idx, self.uid, self.site, self.new, self.at = idx, uid, site, new, at
        self.t0 = self.t1 = None          # the control call's bracket (wall clock)
        self.sim_stamp = None             # the simulator's createdDateTime/assignedDateTime
        self.post = None                  # the assignNumber POST that succeeded
        self.done = None                  # the completing poll's end (simulator clock)
        self.delta = None                 # start of the delta request that reported it
        self.posts = 0
        self.refused = 0
        self.number = None

    @property
    def t_lic(self):
        return (self.t0 + self.t1) / 2

    def row(self):
        return {"idx": self.idx, "user": self.uid, "new_user": self.new,
                "site": SITES[self.site][0], "planned_s": self.at, "t_licence": self.t_lic,
                "bracket_ms": (self.t1 - self.t0) * 1000, "sim_stamp": self.sim_stamp,
                "delta_start": self.delta, "assign_post": self.post["time"] if self.post else None,
                "assign_posts": self.posts, "refused": self.refused, "done": self.done,
                "number": self.number,
                "latency_s": self.done - self.t_lic if self.done else None,
                "wait_s": self.delta - self.t_lic if self.delta and self.done else None,
                "work_s": self.done - self.delta if self.delta and self.done else None}


def iso_to_epoch(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def make_joiner_live(ctl, j, domain):
    """Give joiner j Teams Phone in the simulator; the call bracketed by the wall clock."""
    city, office, _ = SITES[j.site]
    if j.new:
        body = {"id": j.uid, "userPrincipalName": f"joiner{j.idx:04d}@{domain}",
                "displayName": f"Joiner {j.idx:04d}", "givenName": "Joiner",
                "surname": f"{j.idx:04d}", "accountEnabled": True, "city": city,
                "officeLocation": office, "usageLocation": "GB", "country": "United Kingdom",
                "department": "Sales", "companyName": "Bench Ltd", "jobTitle": "Staff",
                "licenses": ["SPE_E5"]}
        j.t0 = time.time()
        rec = ctl.add_user(body)
        j.t1 = time.time()
        j.sim_stamp = iso_to_epoch(rec["properties"]["createdDateTime"])
    else:
        j.t0 = time.time()
        rec = ctl.license(j.uid, skus=["MCOEV"])
        j.t1 = time.time()
        when = [p["assignedDateTime"] for p in rec["properties"]["assignedPlans"]
                if p["servicePlanId"].lower() == MCOEV]
        j.sim_stamp = iso_to_epoch(max(when))
    if not (math.floor(j.t0) <= j.sim_stamp <= j.t1 + 1e-6):
        raise BenchError(f"joiner {j.idx}: simulator stamp {j.sim_stamp} outside "
                         f"[{j.t0}, {j.t1}]: clocks differ?")


def match_joiners(joiners, log, op_polls, ctl):
    """Fill in post/done/delta from the request log (and the operations' outcome from
    /_sim/operations: a refused assignment, e.g. a licence Teams does not see yet, is a
    failed operation polled just as often); the joiners still waiting."""
    entries = log.entries()
    outcome = {op["id"]: op["final"] for op in ctl.operations()["operations"]}
    deltas = [e for e in entries if kind_of(e) == "delta"]
    posts = {}
    polls = {}
    for e in entries:
        if e.get("action") == "assignNumber" and e.get("target"):
            posts.setdefault(e["target"].lower(), []).append(e)
        elif kind_of(e) == "poll":
            polls.setdefault(e["path"], []).append(e)
    waiting = []
    for j in joiners:
        if j.t0 is None:
            continue
        if j.done is None:
            mine = [e for e in posts.get(j.uid.lower(), []) if e["time"] >= j.t0]
            j.posts = len(mine)
            j.refused = 0
            for p in mine:
                op = p.get("operation")
                if p["status"] != 202 or not op:
                    continue
                if outcome.get(op) != "succeeded":
                    j.refused += outcome.get(op) == "failed"
                    continue
                ok = [e for path, es in polls.items() if op in path for e in es
                      if e["status"] == 200 and e["ms"] is not None
                      and e.get("fault") in (None, "latency")]
                ok.sort(key=lambda e: e["seq"])
                if len(ok) > op_polls:
                    fin = ok[op_polls]
                    j.post, j.done, j.number = p, fin["time"] + fin["ms"] / 1000, p.get("number")
                    break
        if j.post is not None:
            # the delta request of the round that sent the assignment: the last one that
            # started before the POST (rounds do not overlap)
            before = [e["time"] for e in deltas if e["time"] <= j.post["time"]]
            j.delta = max(before) if before else None
        if j.done is None:
            waiting.append(j)
    return waiting


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return None
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


# ---- numprovd ------------------------------------------------------------------------------
class Daemon:
    def __init__(self, build, work, conf):
        self.bin = pathlib.Path(build) / "numprovd"
        self.conf, self.log_path = conf, work / "numprovd.log"
        check_conf(self.bin, conf)
        self.tail = LogTail(self.log_path)
        self.proc, self.log = None, None

    def start(self):
        self.proc, self.log, self.t_exec = start_numprovd(self.bin, self.conf, self.log_path)
        return self.proc.pid

    def poll(self):
        self.tail.poll()
        if self.proc.poll() is not None:
            raise BenchError(f"numprovd exited {self.proc.returncode}; see {self.log_path}")

    def wait_syncs(self, n, what, timeout):
        end = time.monotonic() + timeout
        while len(self.tail.syncs) < n:
            self.poll()
            if time.monotonic() > end:
                raise BenchError(f"timeout waiting for {what}; see {self.log_path}")
            time.sleep(0.005)

    def stop(self):
        stop(self.proc, wait=60)
        if self.log:
            self.log.close()


# ---- the run -------------------------------------------------------------------------------
def run(args, root, res):
    certs = root / "certs"
    subprocess.run([GRAPHSIM / "mkcerts.sh", certs], check=True, capture_output=True,
                   timeout=60)
    work = root / "run"
    work.mkdir()
    fx, unlicensed, _ = fixture(args.users, args.seed)
    fx_path = work / "tenant.json"
    fx_path.write_text(json.dumps(fx))
    res["tenant"] = {"users": args.users, "holders": len(fx["numbers"]),
                     "without_teams_phone": len(unlicensed), "ranges": len(SITES),
                     "range_size": RANGE_SIZE}
    sim, sim_out, url = start_graphsim(work, certs, fx_path, 100, args.op_polls, 60)
    ctl = SimClient(url, str(certs / "ca.pem"), timeout=60)
    ctl.settings(op_polls=args.op_polls, page_size=100)
    if args.latency:
        ctl.fault("latency", match="/v1.0/", ms=args.latency)
    if args.licence_delay:
        ctl.settings(licence_delay=args.licence_delay)
    res["simulator_settings"] = ctl.settings()
    log = ReqLog(ctl)

    conf = write_conf(work, url, certs, args.interval, not args.no_durable)
    res["numprovd_conf"] = conf.read_text()
    d = Daemon(args.build, work, conf)
    pid = d.start()
    try:
        return measure(args, res, ctl, log, d, pid, sim, unlicensed)
    finally:
        d.stop()
        stop(sim)
        sim_out.close()
        if args.keep:
            note(f"work directory kept: {work}")


def measure(args, res, ctl, log, d, pid, sim, unlicensed):
    interval = args.interval if args.interval is not None else DEFAULT_INTERVAL
    d.wait_syncs(1, "numprovd's initial full sync", START_TIMEOUT)
    ev, _ = d.tail.syncs[0]
    res["initial_sync"] = ev
    note(f"initial sync: {ev}")
    if ev.get("result") != "success" and ev.get("result") != "ok":
        note(f"note: initial sync result {ev.get('result')!r}")
    running = [ln for ln, _ in d.tail.find("running:")]
    res["running_line"] = running[0] if running else None
    log.refresh()
    seq0 = log.last_seq()
    res["initial_requests"] = kinds(log.entries())

    # ---- joiners at uniformly random moments over DURATION ----
    rng = random.Random(args.seed + 17)
    n_new = args.joiners // 2
    n_old = args.joiners - n_new
    if n_old > len(unlicensed):
        raise BenchError(f"only {len(unlicensed)} users without Teams Phone for "
                         f"{n_old} licence joiners; raise --users")
    olds = rng.sample(unlicensed, n_old)
    new_ids = user_ids(n_new, args.seed + 99)
    kinds_list = [True] * n_new + [False] * n_old
    rng.shuffle(kinds_list)
    times = sorted(rng.uniform(0, args.duration) for _ in range(args.joiners))
    joiners = []
    for idx, (is_new, at) in enumerate(zip(kinds_list, times)):
        if is_new:
            uid, site = new_ids.pop(), rng.randrange(len(SITES))
        else:
            uid, site = olds.pop()
        joiners.append(Joiner(idx, uid, site, is_new, at))

    res["_joiners"] = joiners            # for a partial report if the run stops early
    cpu0, sched0, t_mono0 = cpu_s(pid), sched_ns(pid), time.monotonic()
    t_wall0 = time.time()
    syncs0 = len(d.tail.syncs)
    res["joiners_clock_start"] = t_wall0
    hard_end = t_mono0 + args.duration + interval + args.grace + 4 * args.licence_delay
    note(f"joiners: {args.joiners} over {args.duration:.0f} s (sync.interval "
         f"{interval} s{' default' if args.interval is None else ''}); stop at the latest "
         f"in {args.duration + interval + args.grace:.0f} s")
    next_refresh = 0.0
    waiting = joiners
    i = 0
    while True:
        now = time.monotonic()
        while i < len(joiners) and now - t_mono0 >= joiners[i].at:
            make_joiner_live(ctl, joiners[i], DOMAIN)
            j = joiners[i]
            note(f"joiner {j.idx} ({'new user' if j.new else 'licence added'}, "
                 f"{SITES[j.site][0]}) at +{j.t_lic - t_wall0:.1f} s")
            i += 1
            now = time.monotonic()
        d.poll()
        if now >= next_refresh or i == len(joiners):
            log.refresh()
            waiting = match_joiners(joiners, log, args.op_polls, ctl)
            next_refresh = now + 2.0
            if i == len(joiners) and not waiting:
                break
        if now > hard_end:
            note(f"stopping: {len(waiting)} joiners still without a number")
            break
        nxt = joiners[i].at + t_mono0 if i < len(joiners) else now + 0.5
        time.sleep(max(0.01, min(0.5, nxt - time.monotonic(), next_refresh - now)))
    # let the round that did the last assignment end
    deadline = time.monotonic() + 120
    while d.tail.syncs and d.tail.syncs[-1][1] and d.tail.syncs[-1][1] < max(
            (j.done or 0) for j in joiners) and time.monotonic() < deadline:
        d.poll()
        time.sleep(0.05)
    t_mono1 = time.monotonic()
    cpu1, sched1 = cpu_s(pid), sched_ns(pid)
    log.refresh()
    match_joiners(joiners, log, args.op_polls, ctl)
    run_entries = log.entries(seq0)
    rounds = [(f, s) for f, s in d.tail.syncs[syncs0:]]
    res["run"] = {"wall_s": t_mono1 - t_mono0, "numprovd_cpu_s": cpu1 - cpu0,
                  "numprovd_sched_ms": (sched1 - sched0) / 1e6,
                  "rounds": [{**f, "stamp": s} for f, s in rounds],
                  "requests": kinds(run_entries), "graph_requests": sum(
                      1 for e in run_entries if kind_of(e) != "token"),
                  "errors": sum(1 for e in run_entries if e["status"] is None or
                                e["status"] >= 400)}
    truth = ctl.truth()
    for j in joiners:
        held = truth["users"].get(j.uid) or []
        states = [truth["numbers"][n]["state"] for n in held]
        lo, hi = site_number(j.site, 0), site_number(j.site, RANGE_SIZE - 1)
        j.truth = {"numbers": held, "states": states,
                   "in_range": all(lo <= n <= hi for n in held)}
    res["joiners"] = [{**j.row(), "truth": getattr(j, "truth", None)} for j in joiners]

    # ---- the cost of polling: quiet window, then idle rounds ----
    if args.idle_rounds:
        res["idle"] = idle_cost(args, d, pid, log)
    res["rss_kb"] = status_kb(pid, "VmRSS")
    res["hwm_kb"] = status_kb(pid, "VmHWM")
    return res


def idle_cost(args, d, pid, log):
    out = {"quiet": None, "rounds": []}
    # a quiet window: no round runs (the next timer is at least min(interval) away after
    # the round that just ended or the round we start now)
    n = len(d.tail.syncs)
    os.kill(pid, signal.SIGUSR1)
    d.wait_syncs(n + 1, "an idle round", 120)
    quiet = min(args.quiet, max(0, (args.interval or DEFAULT_INTERVAL) - 5))
    if quiet > 0:
        time.sleep(0.5)
        n = len(d.tail.syncs)
        a, sa, ta = cpu_s(pid), sched_ns(pid), time.monotonic()
        time.sleep(quiet)
        b, sb, tb = cpu_s(pid), sched_ns(pid), time.monotonic()
        d.poll()
        out["quiet"] = {"seconds": tb - ta, "cpu_s": b - a, "sched_ms": (sb - sa) / 1e6,
                        "rounds_during": len(d.tail.syncs) - n}
    for k in range(args.idle_rounds):
        time.sleep(0.3)
        d.poll()
        log.refresh()
        seq = log.last_seq()
        n = len(d.tail.syncs)
        n_lines = len(d.tail.lines)
        a, sa = cpu_s(pid), sched_ns(pid)
        t_sig = time.time()
        os.kill(pid, signal.SIGUSR1)
        d.wait_syncs(n + 1, "an idle round", 120)
        b, sb = cpu_s(pid), sched_ns(pid)
        ev, stamp = d.tail.syncs[n]
        time.sleep(0.05)
        d.poll()
        log.refresh()
        reqs = log.entries(seq)
        out["rounds"].append({"sched_ms": (sb - sa) / 1e6, "stat_cpu_ms": (b - a) * 1000,
                              "duration_ms": int(ev.get("duration_ms", 0)),
                              "wall_from_signal_ms": (stamp - t_sig) * 1000 if stamp else None,
                              "users": ev.get("users"), "assigned": ev.get("assigned"),
                              "result": ev.get("result"), "full": ev.get("full"),
                              "requests": kinds(reqs),
                              "log_lines": [ln for ln, _ in d.tail.lines[n_lines:]],
                              "server_ms": [e["ms"] for e in reqs]})
    return out


# ---- report --------------------------------------------------------------------------------
def fmt_s(v):
    return "-" if v is None else f"{v:.1f} s"


def summarise(res):
    interval = res["interval"]
    rows = res.get("joiners", [])
    lat = [r["latency_s"] for r in rows if r["latency_s"] is not None]
    wait = [r["wait_s"] for r in rows if r["wait_s"] is not None]
    work = [r["work_s"] for r in rows if r["work_s"] is not None]
    s = {"joiners": len(rows), "n": len(lat), "missing": len(rows) - len(lat)}
    for name, v in (("latency", lat), ("wait", wait), ("work", work)):
        s[name] = {"p50": pct(v, 50), "p95": pct(v, 95), "max": max(v) if v else None,
                   "min": min(v) if v else None, "mean": sum(v) / len(v) if v else None}
    p95 = s["latency"]["p95"]
    s["goal"] = {"bound_s": interval + 10, "p95_s": p95,
                 "met": p95 is not None and p95 <= interval + 10 and not s["missing"]}
    idle = res.get("idle")
    if idle and idle["rounds"]:
        r = idle["rounds"]
        sched = sorted(x["sched_ms"] for x in r)
        reqs = [sum(v for k, v in x["requests"].items()) for x in r]
        dur = sorted(x["duration_ms"] for x in r)
        s["idle_round"] = {"rounds": len(r), "sched_ms_median": pct(sched, 50),
                           "sched_ms_mean": sum(sched) / len(sched), "sched_ms_max": sched[-1],
                           "stat_cpu_ms_mean": sum(x["stat_cpu_ms"] for x in r) / len(r),
                           "requests_per_round": sum(reqs) / len(reqs),
                           "duration_ms_median": pct(dur, 50)}
        q = idle.get("quiet")
        base = q["sched_ms"] / q["seconds"] if q and q["seconds"] else 0.0
        s["idle_round"]["quiet_sched_ms_per_s"] = base
        per_day = 86400 / (interval + pct(dur, 50) / 1000)
        s["per_day"] = {"rounds": per_day,
                        "cpu_s": per_day * s["idle_round"]["sched_ms_mean"] / 1000,
                        "delta_requests": per_day * s["idle_round"]["requests_per_round"],
                        "quiet_cpu_s": base * 86400 / 1000}
    return s


def report(res):
    s = res["summary"]
    interval = res["interval"]
    default = " (numprovd default, not set in the configuration)"
    print(f"\nbench/latency.py: sync.interval {interval} s"
          f"{default if res['interval_default'] else ''}, "
          f"{res['args']['joiners']} joiners over {res['args']['duration']:.0f} s, "
          f"{res['tenant']['users']} users ({res['tenant']['holders']} holding numbers, "
          f"{res['tenant']['without_teams_phone']} without Teams Phone), "
          f"{res['tenant']['ranges']} ranges; Graph latency {res['args']['latency']} ms, "
          f"op_polls {res['args']['op_polls']}, "
          f"licence_delay {res['args'].get('licence_delay', 0):g} s")
    print(f"  started {res['started']}, load {res['load_start'][0]:.2f} / "
          f"{res['load_start'][1]:.2f} / {res['load_start'][2]:.2f}; ended {res.get('ended')}, "
          f"load {res['load_end'][0]:.2f} / {res['load_end'][1]:.2f} / {res['load_end'][2]:.2f}")
    if "initial_sync" in res:
        print(f"  initial sync: {res['initial_sync']}  requests {res.get('initial_requests')}")
    if "run" in res:
        r = res["run"]
        stamps = [x["stamp"] for x in r["rounds"] if x.get("stamp")]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        print(f"  joiner phase: {r['wall_s']:.0f} s, {len(r['rounds'])} rounds"
              f"{f' (period {min(gaps):.1f}-{max(gaps):.1f} s)' if gaps else ''}, "
              f"requests {r['requests']} ({r['errors']} errors), numprovd CPU "
              f"{r['numprovd_sched_ms'] / 1000:.2f} s")
        for x in r["rounds"]:
            at = time.strftime('%H:%M:%S', time.localtime(x['stamp'])) if x.get('stamp') else '?'
            print(f"    round at {at}:"
                  f" result={x.get('result')} full={x.get('full')} users={x.get('users')} "
                  f"assigned={x.get('assigned')} duration_ms={x.get('duration_ms')}")
    rows = res.get("joiners", [])
    if rows:
        print("\n| # | joiner | site | licence at | wait for delta | work | latency |"
              " number (truth) |")
        print("|---:|---|---|---:|---:|---:|---:|---|")
        t0 = res["joiners_clock_start"]
        for r in rows:
            if r["t_licence"] is None:
                continue
            tr = r.get("truth") or {"states": ["truth not read"]}
            how = "new user" if r["new_user"] else "licence added"
            print(f"| {r['idx']} | {how} | {r['site']} |"
                  f" +{r['t_licence'] - t0:.1f} s | {fmt_s(r['wait_s'])} | {fmt_s(r['work_s'])} |"
                  f" {fmt_s(r['latency_s'])} | {r['number']} "
                  f"({','.join(tr.get('states', [])) or 'none'}"
                  f"{'' if tr.get('in_range', True) else ', OUT OF RANGE'}) |")
        br = [r["bracket_ms"] for r in rows if r["t_licence"] is not None]
        print(f"  licence moment: control call bracket {min(br):.1f}-{max(br):.1f} ms wide; "
              f"assignNumber POSTs per joiner: {sorted({r['assign_posts'] for r in rows})}; "
              f"refused (failed operations) per joiner: {sorted({r['refused'] for r in rows})}")
    print(f"\nlatency licence -> number (n = {s['n']} of {s['joiners']} joiners"
          f"{', ' + str(s['missing']) + ' without a number' if s['missing'] else ''}):")
    print("| | p50 | p95 | max | min | mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, label in (("latency", "licence -> number assigned"),
                        ("wait", "licence -> delta request of the assigning round"),
                        ("work", "delta request -> operation completed")):
        v = s[name]
        print(f"| {label} | {fmt_s(v['p50'])} | {fmt_s(v['p95'])} | {fmt_s(v['max'])} |"
              f" {fmt_s(v['min'])} | {fmt_s(v['mean'])} |")
    g = s["goal"]
    verdict = ("no data" if g["p95_s"] is None else "met" if g["met"] else
               "not met" + (" (joiners without a number)" if s["missing"] else ""))
    print(f"goal p95 <= interval + 10 s = {g['bound_s']} s: p95 {fmt_s(g['p95_s'])} -> "
          f"{verdict}")
    if "idle_round" in s:
        i = s["idle_round"]
        q = res["idle"].get("quiet")
        print(f"\ncost of polling: {i['rounds']} delta rounds with nothing changed (SIGUSR1):"
              f" numprovd CPU per round median {i['sched_ms_median']:.2f} ms, mean "
              f"{i['sched_ms_mean']:.2f} ms, max {i['sched_ms_max']:.2f} ms (schedstat; "
              f"stat ticks mean {i['stat_cpu_ms_mean']:.1f} ms); Graph requests per round "
              f"{i['requests_per_round']:.2f} {res['idle']['rounds'][0]['requests']}; round wall "
              f"median {i['duration_ms_median']} ms")
        print("  numprovd's log lines of one such round (SIGUSR1 adds the first):")
        for ln in res["idle"]["rounds"][-1]["log_lines"]:
            print(f"    {ln}")
        if q:
            print(f"  between rounds: {q['sched_ms']:.2f} ms CPU in {q['seconds']:.1f} s "
                  f"({i['quiet_sched_ms_per_s']:.3f} ms/s), {q['rounds_during']} rounds")
        p = s["per_day"]
        print(f"  per day at interval {interval} s: {p['rounds']:.0f} rounds, "
              f"{p['delta_requests']:.0f} delta requests, {p['cpu_s']:.2f} s numprovd CPU "
              f"for the rounds (+ {p['quiet_cpu_s']:.2f} s between rounds)")
    if res.get("error"):
        print(f"\nrun stopped early: {res['error']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.environ.get("NUMPROV_BUILD", "/tmp/bbench"),
                   help="build directory holding numprovd")
    p.add_argument("--interval", type=int,
                   help="sync.interval, s (default: not set, numprovd's own default 60)")
    p.add_argument("--joiners", type=int, default=60, help="users who get Teams Phone")
    p.add_argument("--duration", type=float, default=1800,
                   help="joiners arrive uniformly over this many seconds")
    p.add_argument("--users", type=int, default=1000, help="existing users in the tenant")
    p.add_argument("--latency", type=int, default=20, help="ms per Graph request")
    p.add_argument("--op-polls", type=int, default=2,
                   help="polls an operation answers 'running' before its final status")
    p.add_argument("--licence-delay", type=float, default=0,
                   help="Teams sees a new licence this many seconds after it was assigned "
                        "(simulator setting licence_delay; default 0)")
    p.add_argument("--grace", type=float, default=120,
                   help="after DURATION + interval, stop waiting for numbers, s")
    p.add_argument("--idle-rounds", type=int, default=20,
                   help="delta rounds with nothing changed to measure at the end (0: none)")
    p.add_argument("--quiet", type=float, default=20,
                   help="seconds of no round over which numprovd's idle CPU is measured")
    p.add_argument("--no-durable", action="store_true",
                   help="database.durable = false (default: numprovd's default, true)")
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--json", help="also write the figures and every joiner here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if not (pathlib.Path(args.build) / "numprovd").exists():
        p.error(f"{args.build}/numprovd is not built")
    if args.joiners < 1 or args.duration <= 0:
        p.error("--joiners and --duration must be positive")

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    interval = args.interval if args.interval is not None else DEFAULT_INTERVAL
    res = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "load_start": os.getloadavg(),
           "args": vars(args), "interval": interval,
           "interval_default": args.interval is None}
    try:
        res["commit"] = subprocess.run(["git", "-C", str(GRAPHSIM.parents[1]), "rev-parse",
                                        "--short", "HEAD"], capture_output=True, text=True,
                                       timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        res["commit"] = None
    root = pathlib.Path(tempfile.mkdtemp(prefix="numprov-latency-"))
    try:
        run(args, root, res)
    except (BenchError, KeyboardInterrupt, OSError, subprocess.SubprocessError) as err:
        note(f"stopped: {err!r}")
        res["error"] = repr(err)
    finally:
        cleanup()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    joiners = res.pop("_joiners", None)
    if "joiners" not in res and joiners:
        res["joiners"] = [j.row() for j in joiners if j.t0 is not None]
    res["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    res["load_end"] = os.getloadavg()
    res["summary"] = summarise(res)
    report(res)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0 if "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
