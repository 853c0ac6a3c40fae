"""numprovd's AgentX subagent as an operator's NMS sees it: a private snmpd master
agent configured from etc/snmpd-numprov.conf, net-snmp's own tools, snmptrapd for the
notifications (design.md 2.4, the object plan of NUMPROV-MIB)."""
import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import CTL_RANGES, Numprovd, add_user, wait_for
from snmpkit import (COLUMNS, MIB, MIB_FILE, NET_SNMP_MIB, NOTIFICATION_OBJECTS,
                     NOTIFICATIONS, STATS, SYNC, SYNC_SCALARS, STATS_SCALARS, SYS_UPTIME,
                     ERROR_STATUS, Snmpd, Snmptrapd, ber, column, date_and_time,
                     mib_definitions, mib_notification_objects, raw_set, scalar, table_rows)

PING = 2  # snmp.ping_interval: also how soon numprovd reconnects to a new snmpd
TYPES = {"calling-plan": 1, "operator-connect": 2, "direct-routing": 3}
STATUS = {"ok": 1, "warning": 2, "exhausted": 3, "removed": 4}
RESULTS = {"never": 1, "success": 2, "partial": 3, "failed": 4}
GAUGE_MAX = 2**32 - 1


@pytest.fixture
def snmp(tmp_path):
    """snmptrapd, and snmpd from etc/snmpd-numprov.conf sending traps to it."""
    trapd = Snmptrapd(tmp_path / "snmptrapd").start()
    agent = Snmpd(tmp_path / "snmpd", trap_port=trapd.port)
    agent.trapd = trapd
    agent.start()
    yield agent
    agent.stop()
    trapd.stop()


def snmp_conf(agent, traps=True, ping=PING):
    return (f'enabled = true; agentx_socket = "unix:{agent.agentx}"; '
            f'ping_interval = {ping}; traps = {"true" if traps else "false"};')


def start(sim, numprovd, agent, traps=True, wait=True, **kw):
    """numprovd with the subagent on; Teams finishes each assignment at the first poll."""
    sim.ctl.settings(op_polls=0)
    d = numprovd(snmp=snmp_conf(agent, traps), **kw)
    if wait:
        first_sync(d)
        registered(agent)
    return d


def status(d):
    """numprovctl --json status (exit 1 while syncs fail, still with the status)."""
    r = d.ctl("--json", "status")
    assert r.returncode in (0, 1) and r.stdout, (r.returncode, r.stderr)
    return json.loads(r.stdout)


def first_sync(d, timeout=30):
    wait_for(lambda: any("running:" in l for l in d.lines) or d.proc.poll() is not None,
             timeout, "numprovd to start")
    assert d.proc.poll() is None, "\n".join(d.lines[-20:])
    return wait_for(lambda: (lambda st: st["syncs"] >= 1 and not st["running"] and st)(
        status(d)), timeout, "numprovd's first sync")


def idle_after(d, n, timeout=30):
    """Wait for the n-th finished round and no round running."""
    d.wait_syncs(n, timeout=timeout)
    return wait_for(lambda: (lambda st: st["syncs"] >= n and not st["running"] and st)(
        status(d)), timeout, f"{n} rounds finished")


def registered(agent, timeout=10):
    def answers():
        r = agent.get(scalar("numprovSyncState"))
        return r.rc == 0 and r.varbinds[0].type == "INTEGER"
    wait_for(answers, timeout, "numprovd's subagent to answer through snmpd")


def snmp_lines(d, since=0):
    """numprovd's log lines of the SNMP subsystem (its own and net-snmp's tokens)."""
    return [l for l in d.lines[since:]
            if re.search(r"\s\[[\w-]*(snmp|agentx)[\w-]*\]\s", l, re.I)]


# ---- what the MIB must say, from numprovctl ----------------------------------------------

def expected_row(r):
    size, available = r["size"], r["available"]
    util = (size - available) * 100 // size if size else 0
    # the MIB: whole percent not available, rounded down; numprovctl: one decimal, rounded
    assert -0.05 <= r["utilisation"] - util < 1.05, r
    return {
        COLUMNS["numprovRangeName"]: ("STRING", r["name"]),
        COLUMNS["numprovRangeType"]: ("INTEGER", TYPES[r["type"]]),
        COLUMNS["numprovRangeProvider"]: ("STRING", r["provider"]),
        COLUMNS["numprovRangeFirst"]: ("STRING", r["first"]),
        COLUMNS["numprovRangeLast"]: ("STRING", r["last"]),
        COLUMNS["numprovRangeSize"]: ("Gauge32", min(size, GAUGE_MAX)),
        COLUMNS["numprovRangeAssigned"]: ("Gauge32", r["assigned"]),
        COLUMNS["numprovRangePending"]: ("Gauge32", r["pending"]),
        COLUMNS["numprovRangeAvailable"]: ("Gauge32", r["available"]),
        COLUMNS["numprovRangeReserved"]: ("Gauge32", r["reserved"]),
        COLUMNS["numprovRangeQuarantined"]: ("Gauge32", r["quarantined"]),
        COLUMNS["numprovRangeUtilisation"]: ("Gauge32", util),
        COLUMNS["numprovRangeWarnPercent"]: ("Gauge32", r["warn_percent"]),
        COLUMNS["numprovRangeStatus"]: ("INTEGER", STATUS[r["status"]]),
    }


def seen_rows(varbinds):
    return {i: {c: (v.type, v.value) for c, v in cols.items()}
            for i, cols in table_rows(varbinds).items()}


def ctl_ranges(d):
    r = d.ctl("--json", "ranges")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def table_matches(d, agent, timeout=5):
    """Walk until every row equals numprovctl's ranges (the agent's snapshot may lag
    ~1 s); returns (ranges by name, walk)."""
    deadline = time.time() + timeout
    while True:
        ranges = ctl_ranges(d)
        walk = agent.walk()
        assert walk.rc == 0, walk
        want = {r["index"]: expected_row(r) for r in ranges}
        got = seen_rows(walk.varbinds)
        if got == want:
            return {r["name"]: r for r in ranges}, walk
        if time.time() > deadline:
            diff = {i: {c: (got.get(i, {}).get(c), w) for c, w in want.get(i, {}).items()
                        if got.get(i, {}).get(c) != w}
                    for i in set(want) | set(got)}
            raise AssertionError(f"numprovRangeTable (got, want) differs: {diff}")
        time.sleep(0.2)


def ctl_time(text):
    return (datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=datetime.timezone.utc) if text else None)


def expected_scalars(st):
    """The scalars numprovctl --json status also shows: {name: (type, value)}."""
    return {
        "numprovSyncState": ("INTEGER", 2 if st["running"] else 1),
        "numprovSyncLastResult": ("INTEGER", RESULTS[st["last_result"]]),
        "numprovSyncLastDuration": ("Gauge32", st["last_duration_ms"]),
        "numprovSyncLastError": ("STRING", st["last_error"]),
        "numprovSyncCount": ("Counter32", st["syncs"]),
        "numprovSyncFailures": ("Counter32", st["sync_failures"]),
        "numprovSyncTrigger": ("INTEGER", 0),
        "numprovSyncLastFull": ("INTEGER", 1 if st["last_full"] else 2),
        "numprovUsersTracked": ("Gauge32", st["users_tracked"]),
        "numprovUsersPending": ("Gauge32", st["users_pending"]),
        "numprovUsersUnmatched": ("Gauge32", st["users_unmatched"]),
        "numprovAssignments": ("Counter32", st["assignments"]),
        "numprovReleases": ("Counter32", st["releases"]),
        "numprovAssignFailures": ("Counter32", st["assign_failures"]),
        "numprovDrift": ("Counter32", st["drift"]),
    }


# ---- the numbers these tests use are the MIB's -------------------------------------------

def test_the_tests_oids_are_the_mib_texts():
    oid = mib_definitions(NET_SNMP_MIB, MIB_FILE)
    assert oid["numprovMIB"] == MIB
    for name in SYNC_SCALARS:
        assert f"{oid[name]}.0" == scalar(name) and oid[name].startswith(SYNC + "."), name
    for name in STATS_SCALARS:
        assert f"{oid[name]}.0" == scalar(name) and oid[name].startswith(STATS + "."), name
    for name in COLUMNS:
        assert f"{oid[name]}.7" == column(name, 7), name
    for name, trap in NOTIFICATIONS.items():
        assert oid[name] == trap, name
    assert mib_notification_objects() == NOTIFICATION_OBJECTS
    # the example snmpd.conf's views are the MIB's
    example = (MIB_FILE.parents[1] / "etc" / "snmpd-numprov.conf").read_text()
    assert re.search(rf"^view\s+numprovRead\s+included\s+\.{re.escape(MIB)}\s*$", example, re.M)
    assert re.search(rf"^view\s+numprovTrigger\s+included\s+"
                     rf"\.{re.escape(scalar('numprovSyncTrigger'))}\s*$", example, re.M)


# ---- (a) the walk ----------------------------------------------------------------------

def test_walk_shows_every_scalar_and_one_row_per_range(sim, numprovd, snmp):
    started = datetime.datetime.now(datetime.timezone.utc)
    d = start(sim, numprovd, snmp)
    ranges, walk = table_matches(d, snmp)
    assert len(ranges) == 6
    oids = [v.oid for v in walk.varbinds]
    # nothing but the plan's objects: 11 + 8 scalars, 14 readable columns per row (the
    # index is not-accessible), in column-major order
    want = ([scalar(n) for n in sorted(SYNC_SCALARS, key=SYNC_SCALARS.get)]
            + [scalar(n) for n in sorted(STATS_SCALARS, key=STATS_SCALARS.get)]
            + [column(c, r["index"]) for c in sorted(COLUMNS, key=COLUMNS.get)
               for r in sorted(ranges.values(), key=lambda r: r["index"])])
    assert oids == want
    assert {r["index"] for r in ranges.values()} == set(range(1, 7))

    # the scalars say what numprovctl status says (retried: the snapshot may lag)
    deadline = time.time() + 5
    while True:
        want = expected_scalars(status(d))
        got = snmp.get(*[scalar(n) for n in want]).dict()
        seen = {n: (got[scalar(n)].type, got[scalar(n)].value) for n in want}
        if seen == want:
            break
        assert time.time() < deadline, {n: (seen[n], want[n]) for n in want
                                        if seen[n] != want[n]}
        time.sleep(0.2)

    st = status(d)
    v = walk.dict()
    assert st["last_result"] == "success" and st["last_full"] is True
    for name in ("numprovSyncLastStart", "numprovSyncLastEnd"):
        assert v[scalar(name)].type in ("STRING", "Hex-STRING")
    assert date_and_time(v[scalar("numprovSyncLastStart")]).replace(microsecond=0) \
        == ctl_time(st["last_start"])
    assert date_and_time(v[scalar("numprovSyncLastEnd")]).replace(microsecond=0) \
        == ctl_time(st["last_end"])
    start_time = date_and_time(v[scalar("numprovStartTime")])
    assert started - datetime.timedelta(seconds=2) <= start_time <= started + \
        datetime.timedelta(seconds=10)
    next_in = snmp.get(scalar("numprovSyncNextIn"))
    assert next_in.varbinds[0].type == "Gauge32"
    assert abs(next_in.value - status(d)["next_sync_in"]) <= 1
    # what an operator reads in the rows of RANGES: paris is operator-connect (2), and
    # abingdon's reserved number counts as not available
    paris, abingdon = ranges["paris"]["index"], ranges["abingdon"]["index"]
    assert v[column("numprovRangeType", paris)].value == 2
    assert v[column("numprovRangeReserved", abingdon)].value == 1
    assert v[column("numprovRangeFirst", abingdon)].value == "+441235000000"
    # no row 99, no readable index column
    missing = snmp.get(column("numprovRangeName", 99), f"{MIB}.1.3.1.1.{paris}")
    assert len(missing.varbinds) == 2, missing
    assert all(x.type in ("noSuchInstance", "noSuchObject") for x in missing.varbinds), missing


def test_an_empty_string_and_a_walk_of_one_column(sim, numprovd, snmp):
    """A range without provider shows "" (not a missing object); a walk rooted at a
    column gives exactly that column of every row, as an NMS polls it."""
    ranges = CTL_RANGES.replace('provider = "Microsoft";', "")
    assert "Microsoft" not in ranges
    d = start(sim, numprovd, snmp, ranges=ranges)
    byname, _ = table_matches(d, snmp)
    park = byname["park-lane"]["index"]
    assert snmp.get(column("numprovRangeProvider", park)).varbinds[0].value == ""
    col = snmp.walk(f"{MIB}.1.3.1.{COLUMNS['numprovRangeAvailable']}")
    assert [(v.oid, v.value) for v in col.varbinds] == [
        (column("numprovRangeAvailable", r["index"]), r["available"])
        for r in sorted(byname.values(), key=lambda r: r["index"])]


def test_sysortable_lists_numprov_mib_while_numprovd_is_connected(sim, numprovd, snmp):
    sysor_id = "1.3.6.1.2.1.1.9.1.2"
    listed = lambda: [v for v in snmp.walk(sysor_id).varbinds if v.value == MIB]  # noqa: E731
    assert listed() == []
    d = start(sim, numprovd, snmp)
    assert len(listed()) == 1, snmp.walk(sysor_id)
    d.stop()
    wait_for(lambda: listed() == [], 5, "numprovd's sysORTable entry to go with it")
    # and so do its objects
    assert snmp.get(scalar("numprovSyncState")).varbinds[0].type.startswith("noSuch")


# ---- (b) GETBULK -----------------------------------------------------------------------

def same_walk(a, b):
    """Equal, but for numprovSyncNextIn, which may tick a second between two walks."""
    if [v.oid for v in a] != [v.oid for v in b]:
        return False
    for x, y in zip(a, b):
        if x.oid == scalar("numprovSyncNextIn"):
            if x.type != y.type or abs(x.value - y.value) > 1:
                return False
        elif x != y:
            return False
    return True


def test_bulkwalk_gives_the_same_as_walk(sim, numprovd, snmp):
    d = start(sim, numprovd, snmp)
    _, walk = table_matches(d, snmp)
    for reps in (1, 3, 10, 100):
        bulk = snmp.bulkwalk(repetitions=reps)
        assert bulk.rc == 0, bulk
        assert same_walk(walk.varbinds, bulk.varbinds), (reps, walk.varbinds, bulk.varbinds)
    # a bulk request starting inside the table
    sub = snmp.bulkwalk(f"{MIB}.1.3", repetitions=5)
    assert same_walk([v for v in walk.varbinds if v.oid.startswith(f"{MIB}.1.3.")],
                     sub.varbinds)


# ---- (c) stable indexes -----------------------------------------------------------------

def names_by_index(walk):
    return {i: cols[COLUMNS["numprovRangeName"]][1] for i, cols in seen_rows(walk).items()}


def test_indexes_stay_across_restart_and_reload(sim, numprovd, snmp, tmp_path):
    conf = snmp_conf(snmp)
    d = start(sim, numprovd, snmp, ranges=CTL_RANGES)
    before, walk = table_matches(d, snmp)
    index = {name: r["index"] for name, r in before.items()}
    assert names_by_index(walk.varbinds) == {i: n for n, i in index.items()}
    assert before["park-lane"]["assigned"] == 1  # bob: it stays in the inventory

    first_start = date_and_time(snmp.get(scalar("numprovStartTime")).varbinds[0])
    uptime = snmp.get(SYS_UPTIME).value
    time.sleep(1.1)  # DateAndTime counts whole seconds (deci-seconds at best)
    d.stop()
    d = start(sim, numprovd, snmp, ranges=CTL_RANGES)
    after, _ = table_matches(d, snmp)
    assert {n: r["index"] for n, r in after.items()} == index
    # snmpd did not restart, numprovd did: numprovStartTime tells the NMS that
    # numprovd's counters started again
    assert snmp.get(SYS_UPTIME).value > uptime
    assert date_and_time(snmp.get(scalar("numprovStartTime")).varbinds[0]) > first_start
    assert snmp.get(scalar("numprovSyncCount")).value == status(d)["syncs"] == 1

    # a range added before the others, one removed: SIGHUP
    new_ranges = ('\n  { name = "aaa-first"; type = "direct-routing"; provider = "BT";\n'
                  '    first = "+441910000000"; last = "+441910000099";\n'
                  '    match = "city = \'Newcastle\'"; },'
                  + re.sub(r'\{ name = "park-lane".*?\},\n', "", CTL_RANGES, flags=re.S))
    assert "park-lane" not in new_ranges
    Numprovd(sim, tmp_path, ranges=new_ranges, snmp=conf)  # writes the new config
    n = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("configuration reloaded" in l for l in d.lines[n:]), 10, "reload")
    wait_for(lambda: "aaa-first" in {r["name"] for r in ctl_ranges(d)}, 10, "new range")
    reloaded, walk = table_matches(d, snmp)
    for name in ("london", "abingdon", "park-lane"):
        assert reloaded[name]["index"] == index[name], name
    new = reloaded["aaa-first"]["index"]
    assert new not in index.values()
    rows = seen_rows(walk.varbinds)
    park = rows[index["park-lane"]]
    assert park[COLUMNS["numprovRangeStatus"]] == ("INTEGER", 4)  # removed(4)
    assert park[COLUMNS["numprovRangeWarnPercent"]] == ("Gauge32", 0)
    assert park[COLUMNS["numprovRangeAssigned"]] == ("Gauge32", 1)
    assert rows[new][COLUMNS["numprovRangeName"]] == ("STRING", "aaa-first")
    assert rows[new][COLUMNS["numprovRangeStatus"]] == ("INTEGER", 1)


# ---- (d) numprovSyncTrigger --------------------------------------------------------------

def first_request_after(sim, t0, timeout=10, path=""):
    def first():
        hits = [q for q in sim.ctl.log()["requests"] if q["time"] >= t0 and path in q["path"]]
        return hits and hits[0]["time"]
    return wait_for(first, timeout, "a Graph request")


TRIGGER = scalar("numprovSyncTrigger")


def test_sync_trigger_starts_a_round_and_reads_back_idle(sim, numprovd, snmp):
    d = start(sim, numprovd, snmp, interval=300)
    n = status(d)["syncs"]
    assert snmp.get(TRIGGER).value == 0

    t0 = time.time()
    r = snmp.set(TRIGGER, "i", 1)
    assert r.rc == 0 and r.error is None, r
    assert first_request_after(sim, t0) - t0 < 1.0
    idle_after(d, n + 1)
    assert d.events("sync")[n]["full"] == "no", d.events("sync")[n]
    assert snmp.get(TRIGGER).value == 0
    wait_for(lambda: snmp.get(scalar("numprovSyncLastFull")).value == 2, 3, "LastFull false")
    wait_for(lambda: snmp.get(scalar("numprovSyncCount")).value == n + 1, 3, "SyncCount")

    t0 = time.time()
    r = snmp.set(TRIGGER, "i", 2)
    assert r.rc == 0 and r.error is None, r
    assert first_request_after(sim, t0) - t0 < 1.0
    idle_after(d, n + 2)
    assert d.events("sync")[n + 1]["full"] == "yes", d.events("sync")[n + 1]
    assert snmp.get(TRIGGER).value == 0
    wait_for(lambda: snmp.get(scalar("numprovSyncLastFull")).value == 1, 3, "LastFull true")
    assert len(d.events("sync")) == n + 2


def test_sync_trigger_refuses_bad_values_and_starts_nothing(sim, numprovd, snmp):
    """wrongType and wrongValue. wrongLength cannot be provoked from outside: net-snmp
    decodes any BER INTEGER into a C long before a handler sees it (an INTEGER longer
    than a long is a parse error, the packet is dropped: the next test), so the
    handler's length check is only reachable from the unit tests."""
    d = start(sim, numprovd, snmp, interval=300)
    n = status(d)["syncs"]
    t0 = time.time()
    for type_, value, error in (("s", "1", "wrongType"), ("u", "1", "wrongType"),
                                ("x", "01", "wrongType"), ("i", "3", "wrongValue"),
                                ("i", "-1", "wrongValue"), ("i", "2147483647", "wrongValue"),
                                # the MIB: "any other value, idle(0) included, is
                                # rejected with wrongValue"
                                ("i", "0", "wrongValue")):
        r = snmp.set(TRIGGER, type_, value)
        assert r.rc != 0 and r.error == error, (type_, value, r)
        assert snmp.get(TRIGGER).value == 0
    time.sleep(1.5)
    assert not [q for q in sim.ctl.log()["requests"] if q["time"] >= t0]
    assert len(d.events("sync")) == n and status(d)["syncs"] == n


def test_an_integer_of_the_wrong_length_never_reaches_numprovd(sim, numprovd, snmp):
    """What wrongLength would be for: hand-made SETs of numprovSyncTrigger.0 whose
    INTEGER is 9 octets (longer than a long) or empty. snmpd drops both packets
    unanswered (a BER parse error), so no round starts; a 5-octet 1 (zero-padded, legal
    BER) is the value 1 to numprovd and starts one round."""
    d = start(sim, numprovd, snmp, interval=300)
    n = status(d)["syncs"]
    t0 = time.time()
    assert raw_set(snmp, snmp.rw, TRIGGER, ber(0x02, bytes(8) + b"\x01")) is None
    assert raw_set(snmp, snmp.rw, TRIGGER, ber(0x02, b"")) is None
    time.sleep(1)
    assert not [q for q in sim.ctl.log()["requests"] if q["time"] >= t0]
    assert raw_set(snmp, snmp.rw, TRIGGER, ber(0x02, b"\0\0\0\0\x01")) == 0  # noError
    idle_after(d, n + 1)
    assert d.events("sync")[n]["full"] == "no"
    # the same through the tools' encoder: an OCTET STRING is wrongType
    assert ERROR_STATUS[raw_set(snmp, snmp.rw, TRIGGER, ber(0x04, b"\x01"))] == "wrongType"


def test_sync_triggers_during_a_round_queue_exactly_one_more(sim, numprovd, snmp):
    d = start(sim, numprovd, snmp, interval=300)
    n = status(d)["syncs"]
    sim.ctl.fault("latency", match="/users/delta", ms=2000)
    assert snmp.set(TRIGGER, "i", 1).rc == 0
    wait_for(lambda: status(d)["running"], 3, "the round to run")
    for value in (1, 1, 2, 1):
        r = snmp.set(TRIGGER, "i", value)
        assert r.rc == 0 and r.error is None, r
    assert snmp.get(scalar("numprovSyncState")).value == 2
    sim.ctl.clear_faults()
    idle_after(d, n + 2, timeout=20)
    time.sleep(1.5)
    rounds = d.events("sync")
    assert len(rounds) == n + 2, rounds
    # the MIB: "If any of those SETs asked for fullSync(2), the queued round is a full one"
    assert [e["full"] for e in rounds[n:]] == ["no", "yes"], rounds[n:]
    assert status(d)["syncs"] == n + 2 and not status(d)["running"]
    wait_for(lambda: snmp.get(scalar("numprovSyncCount")).value == n + 2, 3, "SyncCount")


# ---- (e) the example's VACM ----------------------------------------------------------------

def test_example_vacm_lets_the_write_community_set_the_trigger_alone(sim, numprovd, snmp):
    d = start(sim, numprovd, snmp, interval=300)
    byname, _ = table_matches(d, snmp)
    n = status(d)["syncs"]
    t0 = time.time()
    idx = byname["london"]["index"]
    for oid, type_, value in ((scalar("numprovSyncState"), "i", 2),
                              (scalar("numprovSyncCount"), "u", 5),
                              (scalar("numprovSyncLastError"), "s", "x"),
                              (column("numprovRangeName", idx), "s", "x"),
                              (column("numprovRangeWarnPercent", idx), "u", 10),
                              ("1.3.6.1.2.1.1.4.0", "s", "mallory")):  # sysContact
        r = snmp.set(oid, type_, value)
        assert r.rc != 0 and r.error in ("noAccess", "notWritable"), (oid, r)
    assert snmp.get("1.3.6.1.2.1.1.4.0").value != "mallory"
    # the read-only community cannot start a sync
    r = snmp.set(TRIGGER, "i", 1, community=snmp.ro)
    assert r.rc != 0 and r.error in ("noAccess", "notWritable"), r
    # an unknown community gets no answer at all
    assert snmp.get(TRIGGER, community="public", timeout=1).error == "timeout"
    time.sleep(1.2)
    assert not [q for q in sim.ctl.log()["requests"] if q["time"] >= t0]
    assert status(d)["syncs"] == n
    # ... and the write community can
    assert snmp.set(TRIGGER, "i", 1).rc == 0
    idle_after(d, n + 1)


@pytest.fixture
def public_dir():
    """A directory other users may enter (pytest's tmp_path is 0700 root)."""
    d = tempfile.mkdtemp(prefix="numprov-snmp-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def connect_as(user, group, path):
    """Can `user` (primary group `group`) connect to the AgentX socket at path?"""
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); print('ok')\n"
            "except OSError as e:\n print(type(e).__name__)\n")
    r = subprocess.run(["/usr/bin/python3", "-c", code, str(path)], user=user, group=group,
                       extra_groups=[], capture_output=True, text=True, timeout=30)
    return r.stdout.strip() or r.stderr


def test_example_agentx_perms_let_the_group_connect_and_nobody_else(tmp_path, public_dir):
    """numprovd runs as user numprov: the example's agentXPerms must let a non-root
    member of the socket's group reach the socket (directory snmpd creates included),
    and keep every other local user out. Here the group is `daemon` (user daemon)."""
    agent = Snmpd(tmp_path / "snmpd", agentx=public_dir / "agentx" / "master",
                  group="daemon")
    agent.start()
    try:
        assert agent.agentx.exists()
        assert connect_as("daemon", "daemon", agent.agentx) == "ok", (
            f"{agent.agentx.parent}: {oct(agent.agentx.parent.stat().st_mode)} "
            f"uid {agent.agentx.parent.stat().st_uid} gid {agent.agentx.parent.stat().st_gid}")
        assert connect_as("nobody", "nogroup", agent.agentx) == "PermissionError"
    finally:
        agent.stop()


# ---- (f) snmpd going and coming ------------------------------------------------------------

def snmp_status(d):
    st = status(d)["snmp"]
    return st["enabled"], st["connected"]


def human_snmp(d):
    """The state on numprovctl status's `snmp:` line (a detail in parentheses, such as
    the socket, may follow it)."""
    r = d.ctl("status")
    lines = [l for l in r.stdout.splitlines() if re.match(r"snmp:\s", l)]
    assert len(lines) == 1, r.stdout
    m = re.fullmatch(r"snmp:\s+(connected|not connected|disabled)(?: \(.*\))?", lines[0])
    assert m, lines[0]
    return m.group(1)


def test_snmpd_restart_numprovd_reconnects_and_says_so_once(sim, numprovd, snmp):
    d = start(sim, numprovd, snmp, interval=300)
    assert snmp_status(d) == (True, True)
    assert human_snmp(d) == "connected"
    n = len(d.lines)

    snmp.stop()
    time.sleep(2.5 * PING)  # several reconnect attempts
    assert d.proc.poll() is None
    lost = snmp_lines(d, n)
    assert len(lost) == 1, lost  # one line for the lost master, not one per attempt
    assert snmp_status(d) == (True, False)
    assert human_snmp(d) == "not connected"
    # syncs go on without snmpd
    syncs = status(d)["syncs"]
    assert d.ctl("sync").returncode == 0
    idle_after(d, syncs + 1)
    assert d.events("sync")[-1]["result"] == "success"

    t0 = time.time()
    snmp.start()
    registered(snmp, timeout=PING + 3)
    assert time.time() - t0 <= PING + 1.5
    table_matches(d, snmp)
    wait_for(lambda: status(d)["snmp"]["connected"], 3, "status to say connected")
    assert human_snmp(d) == "connected"


def test_numprovd_without_snmpd_syncs_and_connects_when_it_appears(sim, numprovd, tmp_path):
    trapd = Snmptrapd(tmp_path / "snmptrapd").start()
    agent = Snmpd(tmp_path / "snmpd", trap_port=trapd.port)
    try:
        d = start(sim, numprovd, agent, wait=False, interval=300)
        st = first_sync(d)
        assert st["last_result"] == "success"
        assert d.events("assign")  # provisioning works without snmpd
        assert (st["snmp"]["enabled"], st["snmp"]["connected"]) == (True, False)
        assert human_snmp(d) == "not connected"
        time.sleep(2 * PING)
        # one line says snmpd is not there; not one line per attempt
        assert len(snmp_lines(d)) == 1, snmp_lines(d)
        t0 = time.time()
        agent.start()
        registered(agent, timeout=PING + 3)
        assert time.time() - t0 <= PING + 1.5
        table_matches(d, agent)
        wait_for(lambda: status(d)["snmp"]["connected"], 3, "status to say connected")
        assert human_snmp(d) == "connected"
    finally:
        agent.stop()
        trapd.stop()


def test_snmp_disabled_shows_in_status(sim, numprovd):
    sim.ctl.settings(op_polls=0)
    d = numprovd(snmp="enabled = false;")
    first_sync(d)
    assert status(d)["snmp"]["enabled"] is False
    assert status(d)["snmp"]["connected"] is False
    assert human_snmp(d) == "disabled"


# ---- (g) GET while a round waits on Graph ----------------------------------------------------

def test_get_answers_at_once_during_a_slow_sync(sim, numprovd, snmp):
    d = start(sim, numprovd, snmp, interval=300)
    byname, _ = table_matches(d, snmp)
    sim.ctl.fault("latency", match="", ms=2000)  # every Graph request
    t0 = time.time()
    assert snmp.set(TRIGGER, "i", 1).rc == 0
    assert time.time() - t0 < 0.5
    wait_for(lambda: status(d)["running"], 3, "the round to run")
    for _ in range(5):
        r = snmp.get(scalar("numprovSyncState"), column("numprovRangeName",
                                                         byname["london"]["index"]))
        assert r.rc == 0 and r.elapsed < 0.5, r
        assert r.varbinds[0].value == 2 and r.varbinds[1].value == "london", r
        time.sleep(0.1)
    w = snmp.walk()
    assert w.rc == 0 and w.elapsed < 1.0, w
    assert status(d)["running"]  # all of it happened inside the round
    sim.ctl.clear_faults()
    idle_after(d, 2, timeout=20)
    wait_for(lambda: snmp.get(scalar("numprovSyncState")).value == 1, 3, "idle(1)")


# ---- (h) notifications --------------------------------------------------------------------

TINY = """
  { name = "spare"; type = "direct-routing"; provider = "BT";
    first = "+441130000100"; last = "+441130000199"; match = "city = 'York'"; },
  { name = "tiny"; type = "direct-routing"; provider = "BT";
    first = "+441130000000"; last = "+441130000004"; match = "city = 'Leeds'";
    warn_percent = 60; }
"""


def sync_now(d):
    n = status(d)["syncs"]
    assert d.ctl("sync").returncode == 0
    return idle_after(d, n + 1)


USERS = {}


def leeds(sim, *nums):
    for i in nums:
        USERS[f"leeds{i}"] = add_user(sim, f"leeds{i}", city="Leeds")


def vb(n):
    return [(v.oid, v.type, v.value) for v in n.objects()]


def test_notifications_once_per_change_with_instance_oids(sim, numprovd, snmp):
    trapd = snmp.trapd
    d = start(sim, numprovd, snmp, interval=300, ranges=TINY)
    idx = {r["name"]: r["index"] for r in ctl_ranges(d)}["tiny"]
    assert trapd.notifications() == []

    # 3 of 5 numbers: 60 % reaches warn_percent
    leeds(sim, 1, 2, 3)
    sync_now(d)
    high = trapd.wait(1)
    assert len(high) == 1 and high[0].trap == NOTIFICATIONS["numprovRangeUtilisationHigh"]
    assert high[0].community == snmp.trap_community
    assert [v.oid for v in high[0].objects()] == [
        column(c, idx) for c in NOTIFICATION_OBJECTS["numprovRangeUtilisationHigh"]]
    assert vb(high[0]) == [
        (column("numprovRangeName", idx), "STRING", "tiny"),
        (column("numprovRangeUtilisation", idx), "Gauge32", 60),
        (column("numprovRangeWarnPercent", idx), "Gauge32", 60),
        (column("numprovRangeAvailable", idx), "Gauge32", 2),
        (column("numprovRangeStatus", idx), "INTEGER", 2),
    ]
    # the same values a GET answers
    got = snmp.get(*[v.oid for v in high[0].objects()])
    assert [(v.oid, v.type, v.value) for v in got.varbinds] == vb(high[0])
    assert [e["range"] for e in d.events("range_high")] == ["tiny"]

    # all 5: exhausted, and no second high
    leeds(sim, 4, 5)
    sync_now(d)
    got = trapd.wait(2)
    assert len(got) == 2 and got[1].trap == NOTIFICATIONS["numprovRangeExhausted"], got
    assert vb(got[1]) == [
        (column("numprovRangeName", idx), "STRING", "tiny"),
        (column("numprovRangeSize", idx), "Gauge32", 5),
        (column("numprovRangeStatus", idx), "INTEGER", 3),
    ]
    d.wait_event("range_exhausted", range="tiny")
    # further rounds send nothing again
    sync_now(d)
    sync_now(d)
    time.sleep(1)
    assert len(trapd.notifications()) == 2, trapd.notifications()
    assert len(d.events("range_high")) == 1 and len(d.events("range_exhausted")) == 1

    # Graph answers garbage: the round fails -> one numprovSyncFailed
    sim.ctl.fault("malformed", match="/users/delta", count=1000)
    st = sync_now(d)
    assert st["last_result"] == "failed"
    got = trapd.wait(3)
    assert got[2].trap == NOTIFICATIONS["numprovSyncFailed"], got
    assert vb(got[2]) == [
        (scalar("numprovSyncLastResult"), "INTEGER", 4),
        (scalar("numprovSyncLastError"), "STRING", st["last_error"]),
        (scalar("numprovSyncFailures"), "Counter32", st["sync_failures"]),
    ]
    assert st["last_error"]
    # failing again is no news
    st = sync_now(d)
    assert st["last_result"] == "failed"
    time.sleep(1)
    assert len(trapd.notifications()) == 3, trapd.notifications()
    assert len(d.events("sync_failed")) == 1

    # Graph back: one numprovSyncRecovered
    sim.ctl.clear_faults()
    st = sync_now(d)
    assert st["last_result"] == "success"
    got = trapd.wait(4)
    assert got[3].trap == NOTIFICATIONS["numprovSyncRecovered"], got
    objs = got[3].objects()
    assert [v.oid for v in objs] == [scalar("numprovSyncLastResult"),
                                     scalar("numprovSyncLastEnd")]
    assert (objs[0].type, objs[0].value) == ("INTEGER", 2)
    assert date_and_time(objs[1]).replace(microsecond=0) == ctl_time(st["last_end"])
    assert len(d.events("sync_recovered")) == 1
    sync_now(d)
    time.sleep(1)
    assert len(trapd.notifications()) == 4, trapd.notifications()
    assert all(n.community == snmp.trap_community for n in trapd.notifications())


def gone(sim, name):
    """Delete a user added by leeds() from the directory (B7: the number is released)."""
    sim.ctl.hard_delete(USERS.pop(name))


def test_utilisation_warns_again_only_below_the_hysteresis(sim, numprovd, snmp):
    """20 numbers, warn_percent 50: high at 10 numbers used; 9 (45 %) is not below
    50 - 5, so 10 again is no news; 8 (40 %) clears it, and 10 warns again."""
    ranges = """
  { name = "half"; type = "direct-routing"; provider = "BT";
    first = "+441130000000"; last = "+441130000019"; match = "city = 'Leeds'";
    warn_percent = 50; }
"""
    trapd = snmp.trapd
    d = start(sim, numprovd, snmp, interval=300, ranges=ranges)
    idx = ctl_ranges(d)[0]["index"]
    highs = lambda: [n for n in trapd.notifications()  # noqa: E731
                     if n.trap == NOTIFICATIONS["numprovRangeUtilisationHigh"]]
    leeds(sim, *range(1, 11))
    sync_now(d)
    trapd.wait(1)
    assert [n.dict[column("numprovRangeUtilisation", idx)].value for n in highs()] == [50]

    gone(sim, "leeds1")  # 45 %
    sync_now(d)
    assert ctl_ranges(d)[0]["assigned"] == 9
    leeds(sim, 11)  # 50 % again
    sync_now(d)
    assert ctl_ranges(d)[0]["assigned"] == 10
    time.sleep(1)
    assert len(highs()) == 1 and not d.events("range_ok"), (trapd.notifications(), d.lines[-5:])
    assert snmp.get(column("numprovRangeStatus", idx)).value == 2  # warning

    gone(sim, "leeds2")
    gone(sim, "leeds3")  # 40 %: below 45, cleared
    sync_now(d)
    d.wait_event("range_ok", range="half")
    wait_for(lambda: snmp.get(column("numprovRangeStatus", idx)).value == 1, 3, "ok(1)")
    leeds(sim, 12, 13)  # 50 % again: warns again
    sync_now(d)
    trapd.wait(2)
    time.sleep(0.5)
    assert len(highs()) == 2 and len(trapd.notifications()) == 2, trapd.notifications()
    assert len(d.events("range_high")) == 2


def test_exhausted_again_only_after_numbers_became_available(sim, numprovd, snmp):
    trapd = snmp.trapd
    d = start(sim, numprovd, snmp, interval=300, ranges=TINY)
    tiny = lambda: {r["name"]: r for r in ctl_ranges(d)}["tiny"]  # noqa: E731
    exhausted = lambda: [n for n in trapd.notifications()  # noqa: E731
                         if n.trap == NOTIFICATIONS["numprovRangeExhausted"]]
    leeds(sim, 1, 2, 3, 4, 5)
    sync_now(d)
    wait_for(lambda: len(exhausted()) == 1, 5, "numprovRangeExhausted")
    sync_now(d)
    gone(sim, "leeds1")  # a number comes free
    sync_now(d)
    assert tiny()["available"] == 1
    wait_for(lambda: snmp.get(column("numprovRangeStatus", tiny()["index"])).value == 2,
             3, "warning(2) once a number is free")
    time.sleep(0.5)
    assert len(exhausted()) == 1
    leeds(sim, 6)  # ... and is taken: exhausted again, news again
    sync_now(d)
    assert tiny()["available"] == 0
    wait_for(lambda: len(exhausted()) == 2, 5, "a second numprovRangeExhausted")
    sync_now(d)
    time.sleep(1)
    assert len(exhausted()) == 2, exhausted()
    assert len(d.events("range_exhausted")) == 2
    # utilisation never fell below 55 %: still the one numprovRangeUtilisationHigh
    assert len(trapd.notifications()) == 3, trapd.notifications()


def test_traps_off_sends_none_but_logs_the_events(sim, numprovd, snmp):
    trapd = snmp.trapd
    d = start(sim, numprovd, snmp, traps=False, interval=300, ranges=TINY)
    assert status(d)["snmp"]["connected"] is True
    leeds(sim, 1, 2, 3)
    sync_now(d)
    d.wait_event("range_high", range="tiny")
    leeds(sim, 4, 5)
    sync_now(d)
    d.wait_event("range_exhausted", range="tiny")
    sim.ctl.fault("malformed", match="/users/delta", count=1000)
    sync_now(d)
    d.wait_event("sync_failed")
    sim.ctl.clear_faults()
    sync_now(d)
    d.wait_event("sync_recovered")
    time.sleep(1)
    assert trapd.notifications() == []
    # snmptrapd works: snmpd's own coldStart reached it
    assert trapd.notifications(prefix="1.3.6.1.6.3.1.1.5.1")
    # the table still shows the state
    idx = {r["name"]: r["index"] for r in ctl_ranges(d)}["tiny"]
    assert snmp.get(column("numprovRangeStatus", idx)).value == 3


def test_a_set_beside_or_below_the_trigger_instance_starts_nothing(sim, numprovd, snmp):
    """numprovSyncTrigger.0.5 and .1 are no instances: the example's write view covers
    the subtree under .0, so the subagent itself must refuse them."""
    d = start(sim, numprovd, snmp, interval=300)
    n = status(d)["syncs"]
    t0 = time.time()
    for name in (TRIGGER + ".5", TRIGGER[:-2] + ".1"):
        r = snmp.set(name, "i", 1)
        assert r.rc != 0 and r.error in ("noCreation", "noAccess", "notWritable"), (name, r)
    time.sleep(1.5)
    assert not [q for q in sim.ctl.log()["requests"] if q["time"] >= t0]
    assert status(d)["syncs"] == n
    assert not [l for l in d.lines if "numprovSyncTrigger set" in l]


def test_notifications_raised_while_snmpd_is_away_are_sent_when_it_is_back(
        sim, numprovd, snmp):
    """The range crosses its threshold while snmpd is stopped: the notification is held
    and sent once the subagent is connected again; it is not sent a second time."""
    trapd = snmp.trapd
    d = start(sim, numprovd, snmp, interval=300, ranges=TINY)
    idx = {r["name"]: r["index"] for r in ctl_ranges(d)}["tiny"]
    snmp.stop()
    wait_for(lambda: not status(d)["snmp"]["connected"], 5, "numprovd to lose snmpd")
    leeds(sim, 1, 2, 3)
    sync_now(d)
    d.wait_event("range_high", range="tiny")
    time.sleep(0.5)
    assert trapd.notifications() == []
    snmp.start()
    got = trapd.wait(1, timeout=PING + 10)
    assert [n.trap for n in got] == [NOTIFICATIONS["numprovRangeUtilisationHigh"]]
    assert got[0].dict[column("numprovRangeName", idx)].value == "tiny"
    assert got[0].dict[column("numprovRangeUtilisation", idx)].value == 60
    sync_now(d)
    time.sleep(1)
    assert len(trapd.notifications()) == 1, trapd.notifications()
    assert status(d)["snmp"]["notifications"] == 1


def test_a_reload_that_turns_traps_off_sends_nothing_it_raises(sim, numprovd, snmp):
    """Two of five numbers (40 %): a reload lowers warn_percent to 30 and turns traps
    off. The range_high it causes is logged, and no notification goes out."""
    trapd = snmp.trapd
    d = start(sim, numprovd, snmp, interval=300, ranges=TINY)
    leeds(sim, 1, 2)
    sync_now(d)
    time.sleep(1)
    assert d.events("range_high") == []
    text = d.conf.read_text()
    assert "traps = true" in text and "warn_percent = 60" in text
    d.conf.write_text(text.replace("traps = true", "traps = false")
                      .replace("warn_percent = 60", "warn_percent = 30"))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_event("range_high", range="tiny")
    time.sleep(1)
    assert trapd.notifications() == []
    assert status(d)["snmp"]["traps"] is False
    assert status(d)["snmp"]["notifications"] == 0
