#!/usr/bin/python3
"""bench/provision.py: numprovd's provisioning cycle against the Graph simulator.

  /usr/bin/python3 bench/provision.py [--build DIR] [--parallel 1,8,32] [--only a|b] ...

Measures (issue 4):

 (a) onboarding: a tenant of USERS licensed users (Teams Phone through SKU SPE_E5) spread
     over 20 city/office sites, one direct-routing range of 1,000 numbers per site matched
     by `city = ... AND office = ...`; simulator latency LATENCY ms on every Graph request
     (a `latency` fault matching "/v1.0/"; the token endpoint is not delayed), op_polls = 0
     (an operation is final at its first poll). For each sync.parallel: the wall time of
     numprovd's first (full) sync until every user holds a number, the Graph requests it
     took (simulator request log), the ideal time, numprovd's CPU seconds and peak RSS.
 (b) steady state: a tenant of BIG_USERS users, none with Teams Phone (SPE_E3 only) but
     all matched by a site's rule; one initial full sync, then delta rounds triggered by
     SIGUSR1: (b0) nothing changed, (b1) CHANGES users licensed with the MCOEV SKU (each
     gets a number), (b2) CHANGES of those users moved to another office (retained, no
     Graph writes). Per round: wall ms, CPU ms, peak RSS of the round.

Everything runs on 127.0.0.1: its own CA (tests/graphsim/mkcerts.sh), its own simulator
(tests/graphsim/graphsim.py --port 0) and its own numprovd (sync.interval 3600, so a round
is exactly one cycle; database.durable false unless --durable). Every process it starts is
stopped at the end, also on errors and Ctrl-C; --timeout bounds the whole run.
Standard library only. A benchmark: it reports, it never passes or fails."""
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

from benchlib import (sched_ns, status_kb, CLK, GRAPHSIM, MCOEV, TEAMS1, BenchError, LogTail, check_conf, cleanup,
                      cpu_s, note, numprovd_conf, plan, range_conf, sku_e5, start_graphsim,
                      start_numprovd, stop, sys_busy, tenant, user, user_ids)
sys.path.insert(0, str(GRAPHSIM))
from simctl import SimClient  # noqa: E402

TENANT_ID = "6e5c0b1a-0000-4000-8000-00000000b0b0"
DOMAIN = "bench.onmicrosoft.com"
CLIENT_ID = "b3c00000-1111-4222-8333-444455556666"
CITIES = ["London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Edinburgh", "Bristol",
          "Cardiff", "Belfast", "Liverpool", "Newcastle", "Sheffield", "Nottingham",
          "Southampton", "Oxford", "Cambridge", "Abingdon", "Reading", "Brighton", "York"]
RANGE_SIZE = 1000

DEADLINE = [0.0]


def left():
    return DEADLINE[0] - time.monotonic()


# ---- /proc ----------------------------------------------------------------------------------
def rss_parts(pid):
    """Where the resident memory is: heap and stacks (anon), mapped files (the Berkeley DB
    region files are mapped files), shared memory; kB."""
    return {k: status_kb(pid, k) for k in ("RssAnon", "RssFile", "RssShmem", "VmHWM")}


def smaps_top(pid, n=12):
    """The mappings holding the most resident memory: [(kB, name)], largest first."""
    by = {}
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not line.startswith(("Rss", "Pss")) and len(head) >= 5 \
                    and not head[0].endswith(":"):
                name = head[5] if len(head) > 5 else "[anon]"
            elif head[0] == "Rss:":
                by[name] = by.get(name, 0) + int(head[1])
    return sorted(((kb, nm) for nm, kb in by.items()), reverse=True)[:n]


def reset_hwm(pid):
    """VmHWM := VmRSS (Linux >= 4.0), so the next peak is the next phase's own."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Probe:
    """CPU of numprovd, the simulator, this script and the whole machine over a phase."""

    def __init__(self, daemon_pid, sim_pid):
        self.pids = {"numprovd": daemon_pid, "graphsim": sim_pid}

    def sample(self):
        s = {name: cpu_s(pid) for name, pid in self.pids.items()}
        s["numprovd_ns"] = sched_ns(self.pids["numprovd"])
        t = os.times()
        s["self"] = t.user + t.system + t.children_user + t.children_system
        s["busy"], s["total"] = sys_busy()
        s["t"] = time.monotonic()
        s["load"] = os.getloadavg()[0]
        return s

    @staticmethod
    def diff(a, b):
        ncpu = os.cpu_count() or 1
        busy = (b["busy"] - a["busy"]) / CLK
        d = {"numprovd_cpu_s": b["numprovd"] - a["numprovd"],
             "numprovd_sched_ms": (b["numprovd_ns"] - a["numprovd_ns"]) / 1e6,
             "graphsim_cpu_s": b["graphsim"] - a["graphsim"],
             "self_cpu_s": b["self"] - a["self"],
             "machine_busy_s": busy,
             "machine_busy_pct": 100.0 * (b["busy"] - a["busy"]) / max(1, b["total"] - a["total"]),
             "load_before": a["load"], "load_after": b["load"], "ncpu": ncpu}
        d["other_cpu_s"] = max(0.0, busy - d["numprovd_cpu_s"] - d["graphsim_cpu_s"] -
                               d["self_cpu_s"])
        return d


# ---- the tenant ----------------------------------------------------------------------------
def sites():
    """20 (range name, city, office, first number)."""
    out = []
    for i, city in enumerate(CITIES):
        out.append((f"{city.lower()}-office-{i + 1}", city, f"Office {i + 1}",
                    f"+44{1200 + i:04d}{500000:06d}"))
    return out


def fixture(n_users, licensed, seed):
    rng = random.Random(seed + 1)
    skus = [
        sku_e5(),
        {"skuId": "aaaaaaaa-0000-0000-0000-000000000003", "skuPartNumber": "SPE_E3",
         "servicePlans": [plan(TEAMS1, "TEAMS1")]},
        {"skuId": "aaaaaaaa-0000-0000-0000-0000000000ee", "skuPartNumber": "MCOEV",
         "servicePlans": [plan(MCOEV, "MCOEV")]},
    ]
    users = []
    where = sites()
    depts = ["Sales", "Support", "Engineering", "Finance", "Operations", "HR"]
    for i, uid in enumerate(user_ids(n_users, seed)):
        _, city, office, _ = where[i % len(where)]
        users.append(user(i, uid, DOMAIN, city, office, rng.choice(depts),
                          "SPE_E5" if licensed else "SPE_E3"))
    t = tenant(TENANT_ID, DOMAIN, CLIENT_ID, skus, users)
    t["policies"] = [{"type": "OnlineVoiceRoutingPolicy", "name": POLICY}]
    return t


POLICY = "UK-National"
WITH_POLICY = [False]       # --policy: every range gives its users a voice routing policy


def ranges_conf():
    out = []
    for name, city, office, first in sites():
        last = first[:-6] + f"{500000 + RANGE_SIZE - 1:06d}"
        conf = range_conf(name, first, last, f'city = "{city}" AND office = "{office}"')
        if WITH_POLICY[0]:
            conf = conf[:-2] + f' voice_routing_policy = "{POLICY}"; }}'
        out.append(conf)
    return out


# ---- the simulator -------------------------------------------------------------------------
class Sim:
    def __init__(self, work, certs, fixture_path, page_size, op_polls, latency_ms):
        self.work = work
        t0 = time.monotonic()
        self.proc, self.out, self.url = start_graphsim(work, certs, fixture_path, page_size,
                                                       op_polls, left(), step=0.05)
        self.load_s = time.monotonic() - t0
        self.ctl = SimClient(self.url, str(certs / "ca.pem"), timeout=300)
        self.ctl.settings(op_polls=op_polls, page_size=page_size)
        if latency_ms:
            self.ctl.fault("latency", match="/v1.0/", ms=latency_ms)

    def stop(self):
        stop(self.proc)
        self.out.close()


def classify(path, method):
    if "/oauth2/" in path:
        return "token"
    if "/users/delta" in path:
        return "delta"
    if "/subscribedSkus" in path:
        return "skus"
    if "/assignNumber" in path:
        return "assign"
    if "/unassignNumber" in path:
        return "unassign"
    if "/operations" in path:
        return "poll"
    if "numberAssignments" in path and method == "GET":
        # one user's numbers (B10: read before each assignment) or the inventory's pages
        return "check" if "filter=" in path.replace("%24", "$") and "assignmentTargetId" in path \
            else "numbers"
    if "/policy/" in path:
        return "policy"
    return "other"


SERIAL = ("delta", "skus", "numbers")     # one after another by design (paging)
PARALLEL = ("check", "assign", "unassign", "poll", "policy", "other")


def request_stats(sim, since=0):
    snap = sim.ctl.log(since)
    reqs = snap["requests"]
    if os.environ.get("PROVBENCH_LOG"):      # the raw request log, for timeline analysis
        with open(os.environ["PROVBENCH_LOG"] + f".{len(reqs)}.json", "w") as f:
            json.dump(reqs, f)
    kinds = {}
    bad = 0
    for r in reqs:
        k = classify(r["path"], r["method"])
        kinds[k] = kinds.get(k, 0) + 1
        if r["status"] is None or r["status"] >= 400 or r.get("fault") not in (None, "latency"):
            bad += 1
    graph = [r for r in reqs if classify(r["path"], r["method"]) != "token"]
    ms = sorted(r["ms"] for r in graph if r["ms"] is not None)
    return {"requests": len(reqs), "graph": len(graph), "kinds": kinds, "errors": bad,
            "serial": sum(kinds.get(k, 0) for k in SERIAL),
            "parallel": sum(kinds.get(k, 0) for k in PARALLEL),
            "server_ms_median": ms[len(ms) // 2] if ms else 0,
            "server_ms_p99": ms[int(len(ms) * 0.99)] if ms else 0,
            "server_ms_sum": sum(ms),
            "max_in_flight": snap["max_in_flight"],
            "last_seq": reqs[-1]["seq"] if reqs else since}


# ---- numprovd ------------------------------------------------------------------------------
class Numprovd:
    def __init__(self, build, work, sim, certs, parallel, durable):
        self.bin = pathlib.Path(build) / "numprovd"
        self.work = work
        self.conf = numprovd_conf(work, DOMAIN, CLIENT_ID, sim.url, certs, ranges_conf(),
                                  parallel, durable)
        check_conf(self.bin, self.conf)
        self.log_path = work / "numprovd.log"
        self.log = None
        self.proc = None
        self.tail = LogTail(self.log_path)
        self.syncs = self.tail.syncs     # (fields, stamp) of the event=sync lines read so far

    def start(self):
        self.proc, self.log, self.t_exec = start_numprovd(self.bin, self.conf, self.log_path)
        return self.proc.pid

    def wait(self, predicate, what, timeout, on_line=None, step=0.005):
        end = time.monotonic() + min(timeout, max(0, left()))
        while True:
            for line, stamp in self.tail.poll():
                if on_line:
                    on_line(line, stamp)
            if predicate():
                return
            if self.proc.poll() is not None:
                raise BenchError(f"numprovd exited {self.proc.returncode} waiting for {what}; "
                                 f"see {self.log_path}")
            if time.monotonic() > end:
                raise BenchError(f"timeout waiting for {what}; see {self.log_path}")
            time.sleep(step)

    def events(self, kind):
        return self.tail.events(kind)

    def stop(self):
        stop(self.proc, wait=60)
        if self.log:
            self.log.close()


# ---- (a) onboarding ------------------------------------------------------------------------
def run_onboarding(args, root, certs, parallel, tag=""):
    work = root / f"a-p{parallel}{tag}"
    work.mkdir()
    fx = work / "tenant.json"
    fx.write_text(json.dumps(fixture(args.users, True, args.seed)))
    sim = Sim(work, certs, fx, 100, args.op_polls, args.latency)
    d = None
    try:
        d = Numprovd(args.build, work, sim, certs, parallel, args.durable)
        probe = None
        marks = {}

        pid = d.start()
        probe = Probe(pid, sim.proc.pid)
        marks["exec"] = probe.sample()
        # the first (full) sync starts as soon as numprovd says it is running

        def on_line(line, stamp):
            if "running:" in line and "running" not in marks:
                marks["running"] = probe.sample()
                marks["running_stamp"] = stamp
        d.wait(lambda: "running" in marks, "numprovd to start", 60, on_line)
        d.wait(lambda: len(d.syncs) >= 1, "the first sync", args.phase_timeout)
        end = probe.sample()
        hwm = status_kb(pid, "VmHWM")
        rss = status_kb(pid, "VmRSS")
        ev, stamp = d.syncs[0]
        truth = sim.ctl.truth()
        holders = sum(1 for nums in truth["users"].values() if nums)
        reqs = request_stats(sim)
        cpu = Probe.diff(marks["running"], end)
        cpu_exec = end["numprovd"] - marks["exec"]["numprovd"]
        lat = args.latency / 1000.0
        ideal = reqs["graph"] * lat / parallel
        # a lower bound that respects the design: delta pages, subscribedSkus and the
        # numberAssignments pages are one after another; the last assignment needs its POST,
        # the 500 ms wait before the first operation poll, and the poll
        ideal2 = reqs["serial"] * lat + max(reqs["parallel"] * lat / parallel, 2 * lat + 0.5)
        res = {"point": f"a parallel={parallel}{tag}", "parallel": parallel, "users": args.users,
               "result": ev.get("result"), "assigned": int(ev.get("assigned", 0)),
               "holders": holders, "duration_ms": int(ev.get("duration_ms", 0)),
               "wall_from_exec_s": (stamp - d.t_exec) if stamp else None,
               "ideal_s": ideal, "ideal_serial_s": ideal2, "cpu_exec_s": cpu_exec,
               "hwm_kb": hwm, "rss_kb": rss, "rss_parts": rss_parts(pid),
               "smaps_top": smaps_top(pid), "reqs": reqs, **cpu,
               "unmatched": len(d.events("unmatched")), "waiting": len(d.events("waiting"))}
        return res
    finally:
        if d:
            d.stop()
        sim.stop()
        if not args.keep:
            shutil.rmtree(work / "db", ignore_errors=True)


# ---- (b) steady state ----------------------------------------------------------------------
def run_steady(args, root, certs, tag=""):
    work = root / f"b{tag}"
    work.mkdir()
    fx = work / "tenant.json"
    t0 = time.monotonic()
    fixture_data = fixture(args.big_users, False, args.seed)
    ids = [u["id"] for u in fixture_data["users"]]
    fx.write_text(json.dumps(fixture_data))
    del fixture_data
    note(f"(b) fixture of {args.big_users} users written in {time.monotonic() - t0:.1f} s; "
         "starting graphsim")
    sim = Sim(work, certs, fx, args.big_page_size, args.op_polls, args.latency)
    note(f"(b) graphsim up in {sim.load_s:.1f} s (pid {sim.proc.pid}, "
         f"{status_kb(sim.proc.pid, 'VmRSS') // 1024} MiB)")
    d = None
    out = {"tenant_users": args.big_users, "page_size": args.big_page_size,
           "parallel": args.big_parallel, "sim_load_s": sim.load_s, "rounds": []}
    try:
        d = Numprovd(args.build, work, sim, certs, args.big_parallel, args.durable)
        pid = d.start()
        probe = Probe(pid, sim.proc.pid)
        a = probe.sample()
        d.wait(lambda: len(d.syncs) >= 1, "the initial full sync", args.phase_timeout)
        b = probe.sample()
        ev, stamp = d.syncs[0]
        reqs = request_stats(sim)
        out["initial"] = {"result": ev.get("result"), "users": int(ev.get("users", 0)),
                          "assigned": int(ev.get("assigned", 0)),
                          "duration_ms": int(ev.get("duration_ms", 0)),
                          "wall_from_exec_s": (stamp - d.t_exec) if stamp else None,
                          "hwm_kb": status_kb(pid, "VmHWM"), "rss_kb": status_kb(pid, "VmRSS"),
                          "rss_parts": rss_parts(pid), "smaps_top": smaps_top(pid),
                          "reqs": reqs, **Probe.diff(a, b)}
        out["db_bytes"] = sum(p.stat().st_size for p in (work / "db").glob("*.db"))
        note(f"(b) initial full sync: {ev}")
        since = reqs["last_seq"]
        rng = random.Random(args.seed + 7)
        chosen = rng.sample(ids, args.changes)

        def license_them():
            for uid in chosen:
                sim.ctl.license(uid, skus=["MCOEV"])

        def move_them():
            for uid in chosen:
                sim.ctl.update_user(uid, {"officeLocation": "Office 1 Annex"})

        rounds = [("b0 nothing changed", None),
                  (f"b1 {args.changes} users licensed (MCOEV)", license_them),
                  (f"b2 {args.changes} of them moved office", move_them)]
        for name, change in rounds:
            if change:
                change()
            time.sleep(0.5)           # let the control calls' threads settle
            hwm_reset = reset_hwm(pid)
            rss_before = status_kb(pid, "VmRSS")
            n = len(d.syncs)
            a = probe.sample()
            t_sig = time.time()
            os.kill(pid, signal.SIGUSR1)
            d.wait(lambda: len(d.syncs) > n, name, args.phase_timeout)
            b = probe.sample()
            ev, stamp = d.syncs[n]
            reqs = request_stats(sim, since)
            since = reqs["last_seq"]
            lat = args.latency / 1000.0
            r = {"round": name, "result": ev.get("result"), "full": ev.get("full"),
                 "users": int(ev.get("users", 0)), "assigned": int(ev.get("assigned", 0)),
                 "duration_ms": int(ev.get("duration_ms", 0)),
                 "wall_from_signal_ms": (stamp - t_sig) * 1000 if stamp else None,
                 "hwm_kb": status_kb(pid, "VmHWM") if hwm_reset else None,
                 "rss_before_kb": rss_before, "rss_kb": status_kb(pid, "VmRSS"), "reqs": reqs,
                 "ideal_ms": 1000 * (reqs["serial"] * lat +
                                     (max(reqs["parallel"] * lat / args.big_parallel,
                                          2 * lat + 0.5) if reqs["parallel"] else 0)),
                 **Probe.diff(a, b)}
            out["rounds"].append(r)
            note(f"(b) {name}: {ev}; cpu {r['numprovd_cpu_s'] * 1000:.0f} ms "
                 f"(sched {r['numprovd_sched_ms']:.1f} ms)")
        truth = sim.ctl.truth()
        out["holders"] = sum(1 for nums in truth["users"].values() if nums)
        out["retained"] = len(d.events("retain"))
        return out
    finally:
        if d:
            d.stop()
        sim.stop()
        if not args.keep:
            shutil.rmtree(work / "db", ignore_errors=True)
            fx.unlink(missing_ok=True)


# ---- report --------------------------------------------------------------------------------
def mib(kb):
    return f"{kb / 1024:.1f}" if kb is not None else "-"


def report_a(rows):
    print("\n(a) onboarding: first full sync until every user holds a number")
    print("| sync.parallel | wall (sync duration_ms) | Graph requests | ideal = req x lat / par |"
          " ideal w/ serial paging | numprovd CPU | graphsim CPU | other CPU | peak RSS (VmHWM) |"
          " load before |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['parallel']} | {r['duration_ms'] / 1000:.2f} s | {r['reqs']['graph']} |"
              f" {r['ideal_s']:.2f} s | {r['ideal_serial_s']:.2f} s |"
              f" {r['numprovd_cpu_s']:.2f} s | {r['graphsim_cpu_s']:.2f} s |"
              f" {r['other_cpu_s']:.2f} s | {mib(r['hwm_kb'])} MiB | {r['load_before']:.2f} |")
    for r in rows:
        q = r["reqs"]
        print(f"  parallel={r['parallel']}: result={r['result']} assigned={r['assigned']} "
              f"holders={r['holders']}/{r['users']} kinds={q['kinds']} errors={q['errors']} "
              f"max_in_flight={q['max_in_flight']} server ms median={q['server_ms_median']} "
              f"p99={q['server_ms_p99']} wall_from_exec={r['wall_from_exec_s']:.2f}s "
              f"cpu_from_exec={r['cpu_exec_s']:.2f}s cpu/user={1000 * r['numprovd_cpu_s'] / r['users']:.2f}ms "
              f"rss at the end (kB) {r['rss_parts']} by mapping {r['smaps_top']} "
              f"machine busy={r['machine_busy_pct']:.0f}% of {r['ncpu']} cpus "
              f"efficiency={100 * r['ideal_s'] / max(1e-9, r['duration_ms'] / 1000):.0f}% of ideal")


def report_b(b):
    i = b["initial"]
    print(f"\n(b) steady state: {b['tenant_users']} users (none with Teams Phone), delta page "
          f"{b['page_size']}, sync.parallel {b['parallel']}")
    print(f"  initial full sync: result={i['result']} users={i['users']} duration "
          f"{i['duration_ms'] / 1000:.2f} s, numprovd CPU {i['numprovd_cpu_s']:.2f} s, graphsim CPU "
          f"{i['graphsim_cpu_s']:.2f} s, peak RSS {mib(i['hwm_kb'])} MiB (RSS after {mib(i['rss_kb'])} MiB), "
          f"requests {i['reqs']['kinds']}, inventory *.db {b['db_bytes'] / 1e6:.1f} MB, "
          f"load before {i['load_before']:.2f}; rss at the end (kB) {i['rss_parts']}; "
          f"numprovd CPU per user {1e6 * i['numprovd_cpu_s'] / i['users']:.1f} us")
    print(f"  resident by mapping at the end of the sync (kB): {i['smaps_top']}")
    print("| round | users in round | assigned | Graph requests | wall (duration_ms) |"
          " wall from SIGUSR1 | ideal | numprovd CPU (stat) | numprovd CPU (schedstat) |"
          " RSS before / peak in round | load before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in b["rounds"]:
        print(f"| {r['round']} | {r['users']} | {r['assigned']} | {r['reqs']['graph']} |"
              f" {r['duration_ms']} ms | {r['wall_from_signal_ms']:.0f} ms | {r['ideal_ms']:.0f} ms |"
              f" {r['numprovd_cpu_s'] * 1000:.0f} ms | {r['numprovd_sched_ms']:.0f} ms |"
              f" {mib(r['rss_before_kb'])} / {mib(r['hwm_kb'])} MiB | {r['load_before']:.2f} |")
    for r in b["rounds"]:
        print(f"  {r['round']}: full={r['full']} result={r['result']} kinds={r['reqs']['kinds']} "
              f"errors={r['reqs']['errors']} graphsim CPU {r['graphsim_cpu_s'] * 1000:.0f} ms, "
              f"other CPU {r['other_cpu_s'] * 1000:.0f} ms")
    print(f"  users holding a number at the end: {b['holders']}; event=retain lines: {b['retained']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.environ.get("NUMPROV_BUILD", "/tmp/bbench"),
                   help="build directory holding numprovd (default /tmp/bbench)")
    p.add_argument("--only", choices=["a", "b"], help="run only part (a) or (b)")
    p.add_argument("--parallel", default="1,8,32", help="sync.parallel values for (a)")
    p.add_argument("--users", type=int, default=5000, help="licensed users for (a)")
    p.add_argument("--latency", type=int, default=20, help="ms per Graph request")
    p.add_argument("--op-polls", type=int, default=0,
                   help="polls an operation answers 'running' (0 = final at the first poll)")
    p.add_argument("--big-users", type=int, default=100000, help="tenant size for (b)")
    p.add_argument("--big-page-size", type=int, default=1000, help="delta page size for (b)")
    p.add_argument("--big-parallel", type=int, default=8, help="sync.parallel for (b)")
    p.add_argument("--changes", type=int, default=100, help="directory changes per round (b)")
    p.add_argument("--durable", action="store_true", help="database.durable = true")
    p.add_argument("--policy", action="store_true",
                   help="every range also gives a voice routing policy (getPolicyId + assign)")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--timeout", type=float, default=3600, help="bound on the whole run, s")
    p.add_argument("--phase-timeout", type=float, default=1200, help="bound on one sync, s")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    WITH_POLICY[0] = args.policy
    DEADLINE[0] = time.monotonic() + args.timeout
    if not (pathlib.Path(args.build) / "numprovd").exists():
        p.error(f"{args.build}/numprovd is not built")

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    root = pathlib.Path(tempfile.mkdtemp(prefix="numprov-bench-"))
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "load": os.getloadavg(),
               "args": vars(args), "a": [], "b": None}
    try:
        certs = root / "certs"
        subprocess.run([GRAPHSIM / "mkcerts.sh", certs], check=True, capture_output=True,
                       timeout=60)
        if args.only in (None, "a"):
            for par in [int(x) for x in args.parallel.split(",")]:
                note(f"(a) {args.users} users, parallel={par}, load {os.getloadavg()[0]:.2f}")
                r = run_onboarding(args, root, certs, par)
                note(f"(a) parallel={par}: {r['duration_ms']} ms, {r['reqs']['graph']} requests, "
                     f"cpu {r['numprovd_cpu_s']:.2f} s, hwm {mib(r['hwm_kb'])} MiB, "
                     f"holders {r['holders']}")
                results["a"].append(r)
        if args.only in (None, "b"):
            note(f"(b) {args.big_users} users, load {os.getloadavg()[0]:.2f}")
            results["b"] = run_steady(args, root, certs)
    except (BenchError, KeyboardInterrupt) as err:
        note(f"stopped: {err!r}")
        results["error"] = repr(err)
    finally:
        cleanup()
        if args.keep:
            note(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    results["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    if results["a"]:
        report_a(results["a"])
    if results["b"]:
        report_b(results["b"])
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0 if "error" not in results else 1


if __name__ == "__main__":
    sys.exit(main())
