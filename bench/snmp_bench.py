#!/usr/bin/python3
"""bench/snmp_bench.py: NUMPROV-MIB through a private snmpd, numprovd as its AgentX subagent.

  /usr/bin/python3 bench/snmp_bench.py [--build DIR] [--only a|b] [--json FILE] ...

Measures:

 (a) the range table: numprovd configured with RANGES direct-routing ranges of RANGE_SIZE
     numbers each (distinct prefixes, each matched by its own city), a tenant of a few
     licensed users (each gets a number); once the first sync has finished, WALKS timed runs
     of `snmpbulkwalk -v2c -c public -Cr50 -On 127.0.0.1:PORT numprovRangeTable` (median,
     and the number of varbinds, which must be 14 columns x RANGES rows), WALKS runs of a
     plain `snmpwalk` (GETNEXT) of the same table, and the start-up cost of a net-snmp tool
     (`snmpget` of sysUpTime.0, answered by snmpd itself), which every walk includes.
 (b) GET latency during a busy sync: a tenant of USERS licensed users all matched by one
     range of BIG_RANGE numbers, simulator with --op-polls OP_POLLS; from the moment the
     subagent is connected until the first (full) sync has ended, SNMPv2c GETs of
     numprovSyncState.0, one after another, each on a UDP socket with a hand-made BER
     request (no process per request), timed send -> matching response. Latency figures
     count only the GETs sent while the sync ran (from its start to the event=sync line).
     Also: the sync's duration and how many assignments it made (event=sync assigned=,
     and `numprovctl status`).

Everything runs on 127.0.0.1 in a temporary directory: its own CA (tests/graphsim/
mkcerts.sh), its own simulator (tests/graphsim/graphsim.py --port 0), its own snmpd master
(`snmpd -f -Lo -C -c CONF`, AgentX on a unix socket in the directory, no system
configuration read: SNMPCONFPATH and SNMP_PERSISTENT_DIR point into the directory, MIBS
is empty, every tool prints numeric OIDs) and its own numprovd. Nothing is built: --build
names an existing build directory (an optimised one, not a sanitizer build). Every
process it starts is stopped at the end, also on errors and Ctrl-C. Standard library only.
A benchmark: it reports, it never passes or fails (the exit status is 0 unless it could
not measure)."""
import argparse
import bisect
import json
import math
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import (GRAPHSIM, TOP, BenchError, LogTail, check_conf, cleanup, cpu_s, note,
                      numprovd_conf, range_conf, sku_e5, start, start_graphsim, start_numprovd,
                      stop, sys_busy_s, tenant, user, user_ids, wait_for)
sys.path.insert(0, str(TOP / "tests" / "integration"))
from snmpkit import _env as snmp_env, ber as tlv, ber_oid, free_udp_port  # noqa: E402

TENANT_ID = "6e5c0b1a-0000-4000-8000-00000000511b"
DOMAIN = "snmpbench.onmicrosoft.com"
CLIENT_ID = "b3c00000-1111-4222-8333-444455550511"

MIB = "1.3.6.1.4.1.8072.9999.9999.6867"
SYNC_STATE = MIB + ".1.1.1.0"              # numprovSyncState.0: idle(1) running(2)
RANGE_TABLE = MIB + ".1.3"                 # numprovRangeTable
RANGE_NAME_COL = MIB + ".1.3.1.2"          # numprovRangeName
RANGE_COLUMNS = 14                         # accessible columns 2..15 (index not-accessible)
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


# ---- the tenant and the configuration ------------------------------------------------------
def fixture(users):
    """users: [(city, office)]; every user licensed for Teams Phone (SPE_E5)."""
    out = [user(i, uid, DOMAIN, city, office, "Sales", "SPE_E5")
           for i, ((city, office), uid) in enumerate(zip(users, user_ids(len(users), 6867)))]
    return tenant(TENANT_ID, DOMAIN, CLIENT_ID, [sku_e5()], out)


def small_ranges(n, size):
    """n ranges of `size` numbers, +4412IIII0000.., range i matched by city "CityI"."""
    if size > 10000 or n > 10000:
        raise BenchError("--ranges and --range-size are at most 10000")
    out = []
    for i in range(n):
        base = f"+4412{i:04d}"
        out.append(range_conf(f"r{i:04d}", f"{base}0000", f"{base}{size - 1:04d}",
                              f'city = "City{i}"'))
    return out


def big_range(size):
    if size > 10000000:
        raise BenchError("--big-range is at most 10,000,000")
    return [range_conf("big", "+442070000000", f"+44207{size - 1:07d}", 'city = "London"')]


# ---- the world: simulator, snmpd, numprovd -------------------------------------------------
class World:
    def __init__(self, args, work, certs, ranges, users, parallel):
        self.args, self.work = args, work
        self.files = []
        # the simulator
        fx = work / "tenant.json"
        fx.write_text(json.dumps(fixture(users)))
        self.sim, out, self.sim_url = start_graphsim(work, certs, fx, 100, args.op_polls, 120)
        self.files.append(out)
        # snmpd
        home = work / "snmp"
        (home / "persist").mkdir(parents=True)
        self.env = snmp_env(home)
        self.udp = free_udp_port()
        snmpd_conf = home / "snmpd.conf"
        snmpd_conf.write_text(f"master agentx\nagentXSocket unix:{work}/agentx\n"
                              "rocommunity public 127.0.0.1\n")
        out = open(work / "snmpd.out", "w")
        self.files.append(out)
        self.snmpd = start(["snmpd", "-f", "-Lo", "-C", "-c", snmpd_conf, "-p",
                            home / "snmpd.pid", f"udp:127.0.0.1:{self.udp}"],
                           stdout=out, stderr=subprocess.STDOUT, env=self.env)
        wait_for(lambda: (work / "agentx").exists(), "snmpd's AgentX socket", 30, [self.snmpd])
        # numprovd
        self.conf = numprovd_conf(
            work, DOMAIN, CLIENT_ID, self.sim_url, certs, ranges, parallel,
            snmp=f'snmp: {{ enabled = true; agentx_socket = "unix:{work}/agentx"; '
                 f'ping_interval = {args.ping}; traps = false; }};\n')
        build = pathlib.Path(args.build)
        self.bin, self.ctl = build / "numprovd", build / "numprovctl"
        check_conf(self.bin, self.conf)
        self.log_path = work / "numprovd.log"
        self.log = LogTail(self.log_path)
        self.daemon = None

    def start_daemon(self):
        self.daemon, out, self.t_exec = start_numprovd(self.bin, self.conf, self.log_path)
        self.files.append(out)

    def wait_log(self, pred, what, timeout):
        def check():
            self.log.poll()
            return pred()
        wait_for(check, f"{what} (see {self.log_path})", timeout, [self.daemon, self.snmpd],
                 step=0.01)

    def connected(self):
        return bool(self.log.find("connected to the SNMP master agent"))

    def status(self):
        r = subprocess.run([self.ctl, "-c", self.conf, "status"], capture_output=True,
                           text=True, timeout=30)
        return r.stdout + r.stderr

    def close(self):
        stop(self.daemon, wait=60)
        stop(self.snmpd)
        stop(self.sim)
        for f in self.files:
            f.close()


# ---- SNMPv2c GET by hand (BER) -------------------------------------------------------------
# (tlv and ber_oid: tests/integration/snmpkit.py's ber and ber_oid)
def ber_int(v):
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def get_request(community, reqid, oid):
    varbind = tlv(0x30, ber_oid(oid) + b"\x05\x00")
    pdu = tlv(0xA0, ber_int(reqid) + ber_int(0) + ber_int(0) + tlv(0x30, varbind))
    return tlv(0x30, ber_int(1) + tlv(0x04, community.encode()) + pdu)


def ber_read(buf, pos):
    """(tag, body start, body end) of the TLV at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n


class BadResponse(Exception):
    pass


def parse_response(buf):
    """(request-id, error-status, value type tag, integer value or None) of a GetResponse."""
    tag, p, end = ber_read(buf, 0)
    if tag != 0x30:
        raise BadResponse("not a SEQUENCE")
    tag, s, e = ber_read(buf, p)                   # version
    tag, s, p = ber_read(buf, e)                   # community
    tag, p, end = ber_read(buf, p)                 # the PDU
    if tag != 0xA2:
        raise BadResponse(f"PDU tag 0x{tag:02x}, not GetResponse")
    tag, s, e = ber_read(buf, p)
    reqid = int.from_bytes(buf[s:e], "big", signed=True)
    tag, s, e2 = ber_read(buf, e)
    status = int.from_bytes(buf[s:e2], "big", signed=True)
    tag, s, e3 = ber_read(buf, e2)                 # error-index
    tag, s, _ = ber_read(buf, e3)                  # varbind list
    tag, s, _ = ber_read(buf, s)                   # first varbind
    tag, s, e = ber_read(buf, s)                   # its name
    vtag, vs, ve = ber_read(buf, e)                # its value
    value = int.from_bytes(buf[vs:ve], "big", signed=True) if vtag == 0x02 else None
    return reqid, status, vtag, value


class Getter:
    def __init__(self, port, oid, community="public", timeout=2.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(timeout)
        self.oid, self.community = oid, community
        self.reqid = random.Random(1).randrange(1, 1 << 30)

    def get(self):
        """(t_send wall clock, seconds, value tag, value) or raises socket.timeout."""
        self.reqid = (self.reqid + 1) & 0x7FFFFFFF
        req = get_request(self.community, self.reqid, self.oid)
        wall = time.time()
        t0 = time.perf_counter()
        self.sock.send(req)
        while True:
            data = self.sock.recv(65535)
            t1 = time.perf_counter()
            reqid, status, vtag, value = parse_response(data)
            if reqid != self.reqid:
                continue                       # a late answer to a timed-out request
            if status != 0:
                raise BadResponse(f"error-status {status}")
            return wall, t1 - t0, vtag, value

    def close(self):
        self.sock.close()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


# ---- (a) the range table -------------------------------------------------------------------
def timed(argv, env):
    t0 = time.perf_counter()
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                       timeout=120)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{argv[0]} exited {r.returncode}: {r.stderr.strip()[:300]}")
    return dt, r.stdout


def count_varbinds(text, prefix):
    lines = [ln for ln in text.splitlines() if re.match(r"^\.?\d+(\.\d+)+ = ", ln)]
    inside = [ln for ln in lines if ln.lstrip(".").startswith(prefix + ".")]
    return len(lines), len(inside)


def run_table(args, root, certs):
    work = root / "a"
    work.mkdir()
    users = [(f"City{i}", "Office") for i in range(args.table_users)]
    note(f"(a) {args.ranges} ranges of {args.range_size} numbers, {len(users)} users")
    w = World(args, work, certs, small_ranges(args.ranges, args.range_size), users, 8)
    res = {"ranges": args.ranges, "range_size": args.range_size, "users": len(users)}
    try:
        w.start_daemon()
        w.wait_log(lambda: w.connected() and w.log.syncs, "the subagent and the first sync",
                   args.phase_timeout)
        ev, stamp = w.log.syncs[0]
        res["first_sync"] = ev
        res["first_sync_from_exec_s"] = stamp - w.t_exec if stamp else None
        note(f"(a) first sync: {ev.get('result')} assigned={ev.get('assigned')} "
             f"duration_ms={ev.get('duration_ms')}")
        time.sleep(0.5)
        env = w.env
        target = f"127.0.0.1:{w.udp}"
        common = ["-v2c", "-c", "public", "-On", "-t", "5", "-r", "0"]
        # start-up of a net-snmp tool, against snmpd's own sysUpTime.0
        base = [timed(["snmpget", *common, target, SYS_UPTIME], env)[0]
                for _ in range(args.walks)]
        res["snmpget_sysuptime_s"] = base
        pid = w.daemon.pid
        for name, argv in [("bulkwalk", ["snmpbulkwalk", *common, "-Cr50", target,
                                         RANGE_TABLE]),
                           ("walk", ["snmpwalk", *common, target, RANGE_TABLE])]:
            times, counts = [], set()
            cpu_d0, cpu_s0, busy0 = (cpu_s(pid, or_nan=True), cpu_s(w.snmpd.pid, or_nan=True),
                                     sys_busy_s())
            kids0 = os.times()
            for _ in range(args.walks):
                dt, out = timed(argv, env)
                times.append(dt)
                counts.add(count_varbinds(out, RANGE_TABLE))
            cpu_d1, cpu_s1, busy1 = (cpu_s(pid, or_nan=True), cpu_s(w.snmpd.pid, or_nan=True),
                                     sys_busy_s())
            kids1 = os.times()
            tools = (kids1.children_user + kids1.children_system
                     - kids0.children_user - kids0.children_system)
            res[name] = {"times_s": times, "median_s": statistics.median(times),
                         "varbinds": sorted(counts),
                         "numprovd_cpu_s_per_walk": (cpu_d1 - cpu_d0) / args.walks,
                         "snmpd_cpu_s_per_walk": (cpu_s1 - cpu_s0) / args.walks,
                         "tool_cpu_s_per_walk": tools / args.walks,
                         "others_cpu_s_per_walk": max(0.0, busy1 - busy0 - tools - cpu_d1 + cpu_d0
                                                      - cpu_s1 + cpu_s0) / args.walks,
                         "load_before": os.getloadavg()[0]}
            note(f"(a) {name}: median {statistics.median(times):.3f} s, varbinds {counts}")
        res["expected_varbinds"] = RANGE_COLUMNS * args.ranges
        return res
    finally:
        w.close()
        if not args.keep:
            shutil.rmtree(work / "db", ignore_errors=True)


# ---- (b) GET latency during a sync ---------------------------------------------------------
def run_gets(args, root, certs):
    work = root / "b"
    work.mkdir()
    users = [("London", "Office 1")] * args.users
    note(f"(b) {args.users} licensed users, one range of {args.big_range} numbers, "
         f"op_polls {args.op_polls}, sync.parallel {args.parallel}")
    w = World(args, work, certs, big_range(args.big_range), users, args.parallel)
    res = {"users": args.users, "big_range": args.big_range, "op_polls": args.op_polls,
           "parallel": args.parallel}
    getter = None
    try:
        w.start_daemon()
        w.wait_log(w.connected, "the subagent to connect", 60)
        getter = Getter(w.udp, SYNC_STATE, timeout=args.get_timeout)
        samples = []            # (wall at send, seconds, value tag, value)
        timeouts = []           # wall at send
        bad = []
        next_poll = 0.0
        cpu0 = {n: cpu_s(p.pid, or_nan=True)
                for n, p in (("numprovd", w.daemon), ("snmpd", w.snmpd), ("graphsim", w.sim))}
        me0 = os.times()
        busy0 = sys_busy_s()
        res["load_before"] = os.getloadavg()[0]
        t_loop = time.time()
        deadline = time.monotonic() + args.phase_timeout
        while True:
            try:
                samples.append(getter.get())
            except socket.timeout:
                timeouts.append(time.time())
            except BadResponse as e:
                bad.append(str(e))
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + 0.2
                w.log.poll()
                if w.log.syncs:
                    break
                if w.daemon.poll() is not None:
                    raise BenchError(f"numprovd exited {w.daemon.returncode}")
                if now > deadline:
                    raise BenchError("timeout waiting for the first sync")
        # a second more of GETs after the sync, idle ones
        tail_end = time.monotonic() + 1.0
        while time.monotonic() < tail_end:
            try:
                samples.append(getter.get())
            except socket.timeout:
                timeouts.append(time.time())
        cpu1 = {n: cpu_s(p.pid, or_nan=True)
                for n, p in (("numprovd", w.daemon), ("snmpd", w.snmpd), ("graphsim", w.sim))}
        me1 = os.times()
        busy1 = sys_busy_s()
        ev, end_stamp = w.log.syncs[0]
        res["sync"] = ev
        res["status"] = w.status()
        running_sends = [s[0] for s in samples if s[2] == 0x02 and s[3] == 2]
        t_start = running_sends[0] if running_sends else t_loop
        dur = int(ev.get("duration_ms", 0)) / 1000.0
        # the sync started duration_ms before its end line; GETs began after the subagent
        # connected, which may be a little later
        sync_start = end_stamp - dur if end_stamp else t_start
        res["sync_start_to_first_get_s"] = t_loop - sync_start
        res["first_running_answer_after_loop_s"] = t_start - t_loop
        win_lo, win_hi = max(sync_start, t_loop), end_stamp or running_sends[-1]
        inside = [s for s in samples if win_lo <= s[0] <= win_hi]
        lat = sorted(s[1] * 1000 for s in inside)
        vals = {}
        for s in inside:
            key = {1: "idle(1)", 2: "running(2)"}.get(s[3], f"tag0x{s[2]:02x}/{s[3]}") \
                if s[2] == 0x02 else f"exception tag 0x{s[2]:02x}"
            vals[key] = vals.get(key, 0) + 1
        out_vals = {}
        for s in samples:
            if not (win_lo <= s[0] <= win_hi):
                key = f"{s[2]:#04x}:{s[3]}"
                out_vals[key] = out_vals.get(key, 0) + 1
        in_timeouts = [t for t in timeouts if win_lo <= t <= win_hi]
        # where the slow ones are: the slowest ten, with their time into the sync
        slow = sorted(inside, key=lambda s: -s[1])[:10]
        # gaps: GETs over 50 ms, by second of the sync
        over = [s for s in inside if s[1] > 0.050]
        # A poller that does not wait for the previous answer (an NMS polling every N s)
        # sends at a random moment: its GET waits for the rest of the stall it lands in.
        # Estimated from the back-to-back GETs, which tile the sync's timeline: a moment t
        # inside GET i waits send_i + latency_i - t, plus the median fast round trip.
        sends = [s[0] for s in inside]
        fast = pct(lat, 50) / 1000.0
        grid = []
        if inside and win_hi > win_lo:
            steps = 100000
            for k in range(steps):
                t = win_lo + (k + 0.5) * (win_hi - win_lo) / steps
                i = bisect.bisect_right(sends, t) - 1
                wait = inside[i][0] + inside[i][1] - t if i >= 0 else 0.0
                grid.append(1000 * (max(0.0, wait) + fast))
            grid.sort()
        res["random_moment_ms"] = {"p50": pct(grid, 50), "p90": pct(grid, 90),
                                   "p99": pct(grid, 99), "max": grid[-1] if grid else 0,
                                   "over_50ms_share": sum(1 for v in grid if v > 50) /
                                   max(1, len(grid))}
        if args.samples:
            with open(args.samples, "w") as f:
                f.write("# wall_at_send seconds_into_sync latency_ms value_tag value\n")
                for s in samples:
                    f.write(f"{s[0]:.6f} {s[0] - sync_start:.6f} {s[1] * 1000:.3f} "
                            f"{s[2]:#04x} {s[3]}\n")
        res.update({
            "window_s": win_hi - win_lo, "n": len(lat), "timeouts": len(in_timeouts),
            "bad": bad[:5], "n_bad": len(bad),
            "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99),
            "p999_ms": pct(lat, 99.9), "max_ms": lat[-1] if lat else float("nan"),
            "mean_ms": statistics.fmean(lat) if lat else float("nan"),
            "over_50ms": len(over),
            "stalled_share": sum(s[1] for s in over) / max(1e-9, win_hi - win_lo),
            "over_10ms": sum(1 for v in lat if v > 10),
            "values_in_window": vals, "values_outside_window": out_vals,
            "gets_per_s": len(lat) / (win_hi - win_lo) if win_hi > win_lo else 0,
            "slowest": [(round(s[0] - sync_start, 3), round(s[1] * 1000, 1)) for s in slow],
            "cpu_s": {n: cpu1[n] - cpu0[n] for n in cpu0},
            "bench_cpu_s": (me1.user + me1.system) - (me0.user + me0.system),
            "machine_busy_s": busy1 - busy0,
            "loop_wall_s": time.time() - t_loop,
        })
        # a histogram of latencies
        edges = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
        hist, lo = [], 0.0
        for e in edges:
            hist.append((f"<={e}", sum(1 for v in lat if lo < v <= e)))
            lo = e
        hist.append((f">{edges[-1]}", sum(1 for v in lat if v > edges[-1])))
        res["histogram_ms"] = hist
        return res
    finally:
        if getter:
            getter.close()
        w.close()
        if not args.keep:
            shutil.rmtree(work / "db", ignore_errors=True)


# ---- main ----------------------------------------------------------------------------------
def report(res, args):
    print("numprov SNMP benchmark (NUMPROV-MIB through snmpd, numprovd as AgentX subagent)")
    print(f"build {args.build}; {os.cpu_count()} CPUs; load before "
          f"{res.get('load_before', 0):.2f}")
    a = res.get("a")
    if a:
        print(f"\n(a) numprovRangeTable, {a['ranges']} ranges of {a['range_size']} numbers "
              f"({a['users']} users; first sync {a['first_sync'].get('result')}, "
              f"assigned={a['first_sync'].get('assigned')})")
        exp = a["expected_varbinds"]
        for name, label in (("bulkwalk", "snmpbulkwalk -Cr50"), ("walk", "snmpwalk (GETNEXT)")):
            r = a[name]
            vb = ", ".join(f"{inside} in table / {total} printed"
                           for total, inside in r["varbinds"])
            ok = "ok" if all(i == exp for _, i in r["varbinds"]) else f"EXPECTED {exp}"
            print(f"  {label:<22} median {r['median_s'] * 1000:8.1f} ms of "
                  f"{len(r['times_s'])} (min {min(r['times_s']) * 1000:.1f}, max "
                  f"{max(r['times_s']) * 1000:.1f}); varbinds {vb} ({ok}); CPU per walk: "
                  f"numprovd {r['numprovd_cpu_s_per_walk'] * 1000:.0f} ms, snmpd "
                  f"{r['snmpd_cpu_s_per_walk'] * 1000:.0f} ms, the tool "
                  f"{r['tool_cpu_s_per_walk'] * 1000:.0f} ms, other processes "
                  f"{r['others_cpu_s_per_walk'] * 1000:.0f} ms")
        b = a["snmpget_sysuptime_s"]
        print(f"  {'tool start-up':<22} median {statistics.median(b) * 1000:8.1f} ms "
              f"(snmpget of snmpd's own sysUpTime.0, included in every walk above)")
        print(f"  goal <= 1 s for the bulk walk: "
              f"{'met' if a['bulkwalk']['median_s'] <= 1.0 else 'MISSED'}")
    b = res.get("b")
    if b:
        ev = b["sync"]
        print(f"\n(b) GET numprovSyncState.0 during the first sync: {b['users']} licensed users, "
              f"one range of {b['big_range']}, op_polls {b['op_polls']}, sync.parallel "
              f"{b['parallel']}")
        print(f"  sync: result={ev.get('result')} assigned={ev.get('assigned')} "
              f"duration_ms={ev.get('duration_ms')} (GETs began "
              f"{b['sync_start_to_first_get_s']:.2f} s after the sync started)")
        print(f"  GETs sent while it ran: n={b['n']} over {b['window_s']:.1f} s "
              f"({b['gets_per_s']:.0f}/s), timeouts {b['timeouts']}, bad answers {b['n_bad']}")
        print(f"  latency ms: p50 {b['p50_ms']:.2f}  p90 {b['p90_ms']:.2f}  p99 {b['p99_ms']:.2f}"
              f"  p99.9 {b['p999_ms']:.2f}  max {b['max_ms']:.1f}  mean {b['mean_ms']:.2f}; "
              f"> 10 ms: {b['over_10ms']}, > 50 ms: {b['over_50ms']}")
        print(f"  share of the sync spent waiting in GETs over 50 ms: "
              f"{100 * b['stalled_share']:.0f} %")
        rm = b["random_moment_ms"]
        print(f"  a GET sent at a random moment of the sync (estimated from the above): "
              f"p50 {rm['p50']:.1f}  p90 {rm['p90']:.1f}  p99 {rm['p99']:.1f}  max "
              f"{rm['max']:.1f} ms; {100 * rm['over_50ms_share']:.0f} % over 50 ms")
        print(f"  answers in that window: {b['values_in_window']}; outside it: "
              f"{b['values_outside_window']}")
        print("  histogram ms: " + ", ".join(f"{k}: {v}" for k, v in b["histogram_ms"] if v))
        print(f"  slowest (s into the sync, ms): {b['slowest']}")
        print(f"  CPU over the loop ({b['loop_wall_s']:.1f} s): " +
              ", ".join(f"{k} {v:.1f} s" for k, v in b["cpu_s"].items()) +
              f", this script {b['bench_cpu_s']:.1f} s; other processes "
              f"{max(0.0, b['machine_busy_s'] - sum(b['cpu_s'].values()) - b['bench_cpu_s']):.1f} s"
              f" (load average before {b['load_before']:.2f})")
        print(f"  goal p99 <= 50 ms: {'met' if b['p99_ms'] <= 50 else 'MISSED'}")
        for line in b["status"].splitlines():
            if re.search(r"assign|users|last", line, re.I):
                print(f"  numprovctl status: {line.strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(TOP / "build" / "bench"),
                    help="build directory holding numprovd and numprovctl")
    ap.add_argument("--only", choices=["a", "b"])
    ap.add_argument("--ranges", type=int, default=1000)
    ap.add_argument("--range-size", type=int, default=100)
    ap.add_argument("--table-users", type=int, default=5)
    ap.add_argument("--walks", type=int, default=5)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--big-range", type=int, default=10000)
    ap.add_argument("--op-polls", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ping", type=int, default=5, help="snmp.ping_interval")
    ap.add_argument("--get-timeout", type=float, default=2.0)
    ap.add_argument("--phase-timeout", type=float, default=1200)
    ap.add_argument("--samples", help="(b): write every GET (send time, latency, value) here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    for tool in ("snmpd", "snmpbulkwalk", "snmpwalk", "snmpget"):
        if not shutil.which(tool):
            raise SystemExit(f"snmp_bench: {tool} not found (apt-get install snmpd snmp)")
    for prog in ("numprovd", "numprovctl"):
        if not (pathlib.Path(args.build) / prog).is_file():
            raise SystemExit(f"snmp_bench: no {prog} in {args.build}: build it first")
    root = pathlib.Path(tempfile.mkdtemp(prefix="snmpbench."))
    res = {"load_before": os.getloadavg()[0]}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    try:
        certs = root / "certs"
        subprocess.run([GRAPHSIM / "mkcerts.sh", certs], check=True, stdout=subprocess.DEVNULL)
        if args.only in (None, "a"):
            res["a"] = run_table(args, root, certs)
        if args.only in (None, "b"):
            res["b"] = run_gets(args, root, certs)
    except BenchError as e:
        print(f"snmp_bench: {e}", file=sys.stderr)
        return 1
    finally:
        cleanup(wait=15)
        if args.keep:
            note(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(res, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
