"""Backing up and restoring the inventory, as docs/deployment.md ("Backing up and
restoring the inventory") tells an operator to: a hot backup with db5.3_hotbackup while
numprovd runs and changes numbers, then a restore into the inventory's directory with
numprovd stopped, then a restart.

The backup is taken by the very script printed in the guide (read from
docs/deployment.md, its paths pointed at the test's directories), so the guide cannot
drift from what is tested. The restore steps are the guide's, less systemctl.

What an operator sees, and these tests assert:
- with numprovd stopped, the restored inventory shows exactly the state at the backup;
- numprovd starts on it (its own recovery at open; no db5.3_recover needed);
- the numbers handed out, released or reserved after the backup are re-learnt from
  Teams, not lost: the users delta since the backup's delta link brings joiners and
  leavers back, and the full sync the guide runs at once adopts every number Teams shows
  on a user; a reservation made with numprovctl after the backup is gone (the guide
  says to make it again);
- numprovd never overwrites a number Teams shows as assigned: before the full sync has
  run, a number a person assigned after the backup looks free to the inventory; Teams
  refuses it, numprovd keeps it out of the pool and logs drift, and the full sync then
  adopts it for its holder;
- backups taken while numprovctl changes the inventory many times a second are each
  complete and consistent.

Real processes and files: the TLS Graph simulator, numprovd, numprovctl and the
Berkeley DB 5.3 utilities of db5.3-util. Skipped when those utilities are missing."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import IDS, TOP, UPN, Ctld, add_user, binary, gtl, holder, wait_for

TOOLS = ("db5.3_hotbackup", "db5.3_verify")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS),
    reason="db5.3_hotbackup/db5.3_verify are not installed: apt-get install db5.3-util")

GUIDE = TOP / "docs" / "deployment.md"
UPN = dict(UPN, **{n: f"{n}@{gtl.DOMAIN}" for n in ("gina", "hank", "ivy")})


def guide_backup_script():
    """The backup script exactly as docs/deployment.md prints it."""
    text = GUIDE.read_text()
    m = re.search(r"```sh\n(#!/bin/sh\n# numprov-backup:.*?)```", text, re.S)
    assert m, "docs/deployment.md has no numprov-backup script block"
    return m.group(1)


def backup_script(tmp, db, backups):
    """The guide's script, pointed at this test's inventory and backup directory. The
    test's numprovd runs as root, so the copy is taken as root instead of numprov."""
    script = guide_backup_script()
    for old, new in (("/var/lib/numprov", str(db)), ("/var/backups/numprov", str(backups)),
                     ("runuser -u numprov --", "runuser -u root --")):
        assert old in script, f"the guide's script no longer says {old!r}"
        script = script.replace(old, new)
    path = tmp / "numprov-backup"
    path.write_text(script)
    path.chmod(0o755)
    return path


def run_backup(script):
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    dest = pathlib.Path(r.stdout.strip().splitlines()[-1])
    assert dest.is_dir(), r.stdout
    return dest


def verify(d):
    """db5.3_verify on every database of a directory, as the guide runs it."""
    r = subprocess.run("db5.3_verify -q *.db", shell=True, cwd=d, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)


def restore(backup, db):
    """The guide's restore, numprovd being stopped: the old directory moved aside, the
    backup copied in, owner and mode set, the copy verified."""
    old = db.with_name(db.name + ".before-restore")
    shutil.move(str(db), str(old))
    subprocess.run(["cp", "-a", str(backup), str(db)], check=True)
    subprocess.run(["chown", "-R", "root:root", str(db)], check=True)  # numprov:numprov
    db.chmod(0o750)
    verify(db)
    return old


def numbers_of(d, rng):
    return {x["number"]: (x["state"], x.get("user")) for x in d.json("range", rng)}


def stopped_view(d, rng):
    """`numprovctl ranges` and `range` with the daemon stopped: read from the inventory."""
    r = d.ctl("--json", "ranges")
    assert r.returncode == 0, r.stderr
    ranges = {x["name"]: x for x in json.loads(r.stdout)}
    r = d.ctl("--json", "range", rng)
    assert r.returncode == 0, r.stderr
    return ranges, {x["number"]: (x["state"], x.get("user")) for x in json.loads(r.stdout)}


def assign_requests_for(sim, number, since):
    return sim.ctl.assign_requests(number=number, since=since)


def last_seq(sim):
    reqs = sim.ctl.log()["requests"]
    return reqs[-1]["seq"] if reqs else 0


def changes_after_backup(sim, d):
    """What happens on the live system after the backup: a joiner gets a number, an
    administrator gives a user one by hand, reserves one, and a leaver's number goes
    back to the pool. Returns the numbers involved."""
    gina = add_user(sim, "gina", city="London")
    assert d.ctl("sync").returncode == 0
    gina_number = d.wait_event("assign", id=gina)[0]["number"]
    assert gina_number == "+442080000002"  # after alice's and dave's
    # frank (Paris) matches no range: an administrator gives him the next free number
    frank_number = "+442080000003"
    r = d.ctl("assign", UPN["frank"], frank_number)
    assert r.returncode == 0, (r.stderr, d.log())
    assert d.ctl("reserve", "+442080000009").returncode == 0
    alice_number = holder_number(sim, "alice")
    sim.ctl.hard_delete(IDS["alice"])
    assert d.ctl("sync").returncode == 0
    d.wait_event("release", user=UPN["alice"])
    return gina, gina_number, frank_number, alice_number


def holder_number(sim, name):
    return sim.ctl.truth()["users"][IDS[name]][0]


# ---- the guide's procedure, end to end ---------------------------------------------------

def test_hot_backup_restore_then_full_sync_relearns_from_teams(sim, ctld, tmp_path):
    d = ctld()
    db, backups = tmp_path / "db", tmp_path / "backups"
    backups.mkdir()
    script = backup_script(tmp_path, db, backups)
    at_backup = d.ranges()
    london_at_backup = numbers_of(d, "london")
    assert london_at_backup == {"+442080000000": ("assigned", UPN["alice"]),
                                "+442080000001": ("assigned", UPN["dave"])}

    dest = run_backup(script)  # numprovd running
    assert d.proc.poll() is None
    files = sorted(os.listdir(dest))
    assert {"numbers.db", "users.db", "ranges.db", "quarantine.db",
            "meta.db", "directory.db"} <= set(files), files
    assert any(f.startswith("log.") for f in files), files
    assert not any(f.startswith("__db.") for f in files), "region files in a backup"
    assert all(os.stat(dest / f).st_mode & 0o077 == 0 for f in files)  # 0600 copies

    gina, gina_number, frank_number, alice_number = changes_after_backup(sim, d)
    live = d.ranges()["london"]
    assert (live["assigned"], live["reserved"]) == (3, 1)  # dave, gina, frank; +..09
    assert d.stop() == 0

    old = restore(dest, db)
    assert sorted(os.listdir(old)) != [], "the old inventory is kept aside"
    # what numprovctl shows with numprovd stopped: the inventory at the backup
    ranges, london = stopped_view(d, "london")
    assert ranges == at_backup
    assert london == london_at_backup

    since = last_seq(sim)
    d2 = Ctld(sim, tmp_path).start()  # same configuration and directory
    try:
        assert d2.ctl("sync", "--full").returncode == 0
        wait_for(lambda: any(e.get("full") == "yes" for e in d2.events("sync")), timeout=30,
                 what="the full sync after the restore")
        # every number in Teams on a user is in the inventory on that user again
        london = numbers_of(d2, "london")
        assert london[gina_number] == ("assigned", UPN["gina"])
        assert london[frank_number] == ("assigned", UPN["frank"])
        assert alice_number not in london, "the leaver's number is back in the pool"
        assert "+442080000009" not in london, "a reservation made after the backup"
        ids = dict(IDS, gina=gina)
        truth = sim.ctl.truth()["numbers"]
        for number, (state, upn) in london.items():
            assert state == "assigned", (number, state)
            assert truth[number]["target"] == ids[upn.split("@")[0]], (number, upn)
        st = d2.status()
        assert st["last_result"] == "success" and st["drift"] == 0, st
        # nothing that Teams showed as someone's number was sent to anyone else
        for number in (gina_number, frank_number):
            assert assign_requests_for(sim, number, since) == []
        # the next joiner gets a number that is free in Teams too
        hank = add_user(sim, "hank", city="London")
        assert d2.ctl("sync").returncode == 0
        got = d2.wait_event("assign", id=hank)[0]["number"]
        assert got not in (gina_number, frank_number)
        assert holder(sim, got) == hank
        assert holder(sim, frank_number) == IDS["frank"]  # never overwritten
        assert holder(sim, gina_number) == gina
    finally:
        assert d2.stop() == 0


def test_before_the_full_sync_a_number_teams_holds_is_refused_not_overwritten(
        sim, ctld, tmp_path):
    """The guide runs `numprovctl sync --full` right after the restart. Until it has run,
    a number assigned by hand after the backup looks free to the restored inventory:
    Teams refuses it, numprovd keeps it out of the pool (drift), and the full sync then
    adopts it for the user who holds it."""
    d = ctld()
    db, backups = tmp_path / "db", tmp_path / "backups"
    backups.mkdir()
    dest = run_backup(backup_script(tmp_path, db, backups))
    gina, gina_number, frank_number, alice_number = changes_after_backup(sim, d)
    assert d.stop() == 0
    restore(dest, db)

    d2 = Ctld(sim, tmp_path).start()
    try:
        first = d2.wait_syncs(1)[0]
        assert first["full"] == "no"  # the restored delta link is used
        # the delta since the backup brought the joiner and the leaver back
        d2.wait_event("adopt", user=UPN["gina"], number=gina_number)
        d2.wait_event("release", user=UPN["alice"], number=alice_number)
        # frank's record did not change: the delta does not bring him, and his number
        # looks free to the inventory. Two joiners: the first gets the leaver's number,
        # the second is offered frank's.
        since = last_seq(sim)
        hank = add_user(sim, "hank", city="London")
        assert d2.ctl("sync").returncode == 0
        assert d2.wait_event("assign", id=hank)[0]["number"] == alice_number
        ivy = add_user(sim, "ivy", city="London")
        assert d2.ctl("sync").returncode == 0
        drift = d2.wait_event("drift", number=frank_number)[0]
        assert drift["reason"] == "held-in-teams"
        assert holder(sim, frank_number) == IDS["frank"]  # Teams refused: not overwritten
        assert [e["status"] for e in assign_requests_for(sim, frank_number, since)] == [202]
        assert numbers_of(d2, "london")[frank_number][0] == "reserved"  # out of the pool

        assert d2.ctl("sync", "--full").returncode == 0
        d2.wait_event("adopt", user=UPN["frank"], number=frank_number)
        ivy_number = d2.wait_event("assign", id=ivy)[0]["number"]
        assert ivy_number not in (frank_number, gina_number, alice_number)
        assert holder(sim, ivy_number) == ivy
        london = numbers_of(d2, "london")
        assert london[frank_number] == ("assigned", UPN["frank"])
        truth = sim.ctl.truth()["users"]
        assert truth[IDS["frank"]] == [frank_number] and truth[ivy] == [ivy_number]
    finally:
        assert d2.stop() == 0


def test_hot_backups_under_load_are_complete_and_consistent(sim, ctld, tmp_path):
    """Backups taken while numprovctl reserves and releases numbers as fast as it can:
    each copy verifies, opens, agrees with itself (range counters equal the number
    records) and is the inventory as it stood at one moment while its backup ran: every
    change finished before the backup started is in it, none begun after it ended."""
    d = ctld()
    db, backups = tmp_path / "db", tmp_path / "backups"
    backups.mkdir()
    script = backup_script(tmp_path, db, backups)
    numbers = [f"+4412350000{n:02d}" for n in range(10, 100)]
    done, made = threading.Event(), []  # (issued, finished, verb, number), in order

    def churn():
        i = 0
        while not done.is_set():
            n = numbers[i % len(numbers)]
            verb = "reserve" if (i // len(numbers)) % 2 == 0 else "unreserve"
            issued = time.monotonic()
            if d.ctl(verb, n).returncode == 0:
                made.append((issued, time.monotonic(), verb, n))
            i += 1

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    copies = []
    try:
        wait_for(lambda: len(made) >= 20, what="changes under way")
        for k in range(6):
            started = time.monotonic()
            dest = run_backup(script)
            ended = time.monotonic()
            # the next backup cleans its directory only if it has the same name
            copy = tmp_path / f"copy{k}"
            shutil.copytree(dest, copy)
            copies.append((copy, started, ended))
            time.sleep(0.3)
    finally:
        done.set()
        worker.join(60)
    assert len(made) > 40, "the churn was too slow to test anything"
    assert d.proc.poll() is None and d.status()["last_result"] == "success"

    overlap = 0
    for k, (copy, started, ended) in enumerate(copies):
        verify(copy)
        conf = tmp_path / f"copy{k}.conf"
        conf.write_text(d.conf.read_text()
                        .replace(f'path = "{db}"', f'path = "{copy}"')
                        .replace(f'socket = "{d.sock}"', f'socket = "{tmp_path}/none.sock"'))
        got = {}
        for what in ("ranges", "range"):
            r = subprocess.run([binary("numprovctl"), "-c", str(conf), "--json", what]
                               + (["abingdon"] if what == "range" else []),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            got[what] = json.loads(r.stdout)
        abingdon = {x["name"]: x for x in got["ranges"]}["abingdon"]
        rows = got["range"]
        reserved = {x["number"] for x in rows if x["state"] == "reserved"}
        assert abingdon["reserved"] == len(reserved), (k, abingdon, sorted(reserved))
        assert abingdon["assigned"] == sum(x["state"] == "assigned" for x in rows) == 1
        assert abingdon["available"] == abingdon["size"] - len(rows)
        assert "+441235000000" in reserved  # the config file's reservation
        # the copy is the state after the first p changes, for some p between the
        # changes finished before the backup started and those issued before it ended
        low = sum(1 for _, fin, _, _ in made if fin < started)
        high = sum(1 for iss, _, _, _ in made if iss < ended)
        state, states = set(), [set()]
        for _, _, verb, n in made[:high]:
            (state.add if verb == "reserve" else state.discard)(n)
            states.append(set(state))
        churned = reserved - {"+441235000000"}
        assert any(states[p] == churned for p in range(low, high + 1)), \
            (k, low, high, sorted(churned))
        overlap += high - low
    assert overlap > 0, "no change was made while a backup ran"
