"""numprovd -t, the inventory across restarts, and numprovctl ranges, as a user sees them."""
import json
import re
import signal

from conftest import AS_ROOT
from conftest import TENANT, TOP, binary, run

RANGES = """
  { name = "abingdon-office-1"; type = "direct-routing"; provider = "Gamma";
    first = "+441235000000"; last = "+441235000999";
    match = "city = \\"Abingdon\\" AND office = \\"Office 1\\"";
    reserved = [ "+441235000000", "+441235000999" ]; },
  { name = "london"; type = "calling-plan"; provider = "Microsoft";
    first = "+442071230000"; last = "+442071230099"; warn_percent = 1;
    reserved = [ "+442071230050" ]; },
  { name = "hq-ext"; type = "direct-routing"; provider = "Own SBC";
    first = "+441235999000;ext=100"; last = "+441235999000;ext=199"; }
"""


def test_config_check_accepts_the_example(tmp_path):
    """The example as shipped is refused with one line saying it is the example (the
    package must not start on it); with an application id put in, on a machine where its
    files exist (here: a copy pointing into tmp_path, with a 0600 secret), -t accepts it."""
    text = (TOP / "etc" / "numprovd.conf").read_text()
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", TOP / "etc" / "numprovd.conf")
    assert r.returncode == 78
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "tenant.client_id is still the example's" in lines[0], r.stderr
    at = 1 + next(i for i, l in enumerate(text.splitlines()) if l.strip().startswith("client_id"))
    assert lines[0].startswith(f"{TOP / 'etc' / 'numprovd.conf'}:{at}: "), r.stderr
    text = text.replace("00000000-0000-0000-0000-000000000000",
                        "11111111-2222-3333-4444-555555555555")
    (tmp_path / "app.conf").write_text(text)
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", tmp_path / "app.conf")
    # the example's syntax and values are fine; only this machine's files are missing
    assert r.returncode == 78
    assert all("client_secret_file" in l or "control.socket" in l or "database.path" in l
               for l in r.stderr.splitlines()), r.stderr
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    local = (text.replace("/etc/numprov/client-secret", str(secret))
             .replace("/var/lib/numprov", str(tmp_path / "db"))
             .replace("/run/numprov/control.sock", str(tmp_path / "run" / "control.sock")))
    assert local != text
    (tmp_path / "numprovd.conf").write_text(local)
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", tmp_path / "numprovd.conf")
    assert r.returncode == 0, r.stderr
    assert "configuration is valid (5 ranges, sync mode enforce)" in r.stdout


def test_config_check_reports_file_line_and_exits_78(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(TENANT + "sync: {\n  intervall = 30;\n  parallel = 0;\n};\n"
                    "ranges = (\n  { name = \"a\"; type = \"direct-routing\";\n"
                    "    first = \"+441235000000\"; last = \"+441235000999\";\n"
                    "    match = \"city = 'x' AND\"; }\n);\n")
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", conf)
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert f"{conf}:5: unknown key 'sync.intervall' (did you mean 'sync.interval'?)" in lines
    assert f"{conf}:6: sync.parallel is 0; it must be between 1 and 64" in lines
    assert any(l.startswith(f"{conf}:11: range 'a': match: ") for l in lines), lines


def test_config_check_syntax_error(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(TENANT + "sync: { mode = ; };\n")
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", conf)
    assert r.returncode == 78
    assert r.stderr.startswith(f"{conf}:4: syntax error")


def test_daemon_refuses_a_bad_config_at_start(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(TENANT + "log: { level = \"loud\"; };\n")
    r = run(binary("numprovd"), *AS_ROOT, "-f", "-c", conf)
    assert r.returncode == 78
    assert f'{conf}:4: log.level "loud" is not a syslog level' in r.stderr


def parse_table(text):
    """Columns are separated by two spaces or more; a value may hold one space."""
    lines = text.strip().splitlines()
    head = re.split(r"\s{2,}", lines[0].strip())
    rows = [re.split(r"\s{2,}", row.strip()) for row in lines[1:]]
    assert all(len(r) == len(head) for r in rows), rows
    return {r[0]: dict(zip(head, r)) for r in rows}


def test_ranges_table_and_json(daemon):
    d = daemon(RANGES).start()
    d.stop()
    r = d.ctl("ranges")
    assert r.returncode == 0, r.stderr
    rows = parse_table(r.stdout)
    assert list(rows) == ["abingdon-office-1", "london", "hq-ext"]
    a = rows["abingdon-office-1"]
    assert (a["TYPE"], a["PROVIDER"], a["SIZE"], a["ASSIGNED"], a["AVAILABLE"],
            a["RESERVED"], a["QUARANTINED"], a["USED"], a["STATUS"]) == \
        ("direct-routing", "Gamma", "1000", "0", "998", "2", "0", "0.2%", "ok")
    assert rows["london"]["STATUS"] == "warning"  # 1 % used, warn_percent 1
    assert (rows["hq-ext"]["PROVIDER"], rows["hq-ext"]["SIZE"]) == ("Own SBC", "100")

    j = d.ctl("--json", "ranges")
    assert j.returncode == 0, j.stderr
    data = {x["name"]: x for x in json.loads(j.stdout)}
    assert data["abingdon-office-1"] == {
        "name": "abingdon-office-1", "index": data["abingdon-office-1"]["index"],
        "type": "direct-routing", "provider": "Gamma",
        "first": "+441235000000", "last": "+441235000999", "size": 1000,
        "assigned": 0, "pending": 0, "available": 998, "reserved": 2, "quarantined": 0,
        "utilisation": 0.2, "warn_percent": 90, "status": "ok"}
    assert data["hq-ext"]["first"] == "+441235999000;ext=100"
    # --json may stand anywhere on the line
    assert json.loads(d.ctl("ranges", "--json").stdout) == json.loads(j.stdout)


def test_range_lists_numbers_in_use(daemon):
    d = daemon(RANGES).start()
    d.stop()
    r = d.ctl("range", "abingdon-office-1")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\+441235000000\s+reserved", r.stdout, re.M)
    assert re.search(r"^\+441235000999\s+reserved", r.stdout, re.M)
    j = json.loads(d.ctl("range", "london", "--json").stdout)
    assert [(x["number"], x["state"]) for x in j] == [("+442071230050", "reserved")]
    bad = d.ctl("range", "nowhere")
    assert bad.returncode == 1
    assert bad.stderr == "numprovctl: no range named 'nowhere'\n"


def test_ranges_read_beside_a_running_daemon(daemon):
    d = daemon(RANGES).start()
    r = d.ctl("ranges")
    assert r.returncode == 0, r.stderr
    assert parse_table(r.stdout)["london"]["RESERVED"] == "1"
    assert d.stop() == 0


def test_second_daemon_on_the_same_database_is_refused(daemon):
    d = daemon(RANGES).start()
    r = run(binary("numprovd"), *AS_ROOT, "-f", "-c", d.conf)
    assert r.returncode == 1
    assert f"the database {d.db} is in use by another numprovd (pid {d.proc.pid})" in r.stdout + r.stderr
    assert d.proc.poll() is None  # the first one is untouched


def test_inventory_survives_restart_and_kill(daemon):
    d = daemon(RANGES).start()
    d.stop(signal.SIGKILL)
    # a config change while stopped: one more reserved number, one range removed
    d.write(RANGES.replace('"+442071230050" ]', '"+442071230050", "+442071230051" ]')
            .replace("""  { name = "hq-ext"; type = "direct-routing"; provider = "Own SBC";
    first = "+441235999000;ext=100"; last = "+441235999000;ext=199"; }""", "")
            .rstrip().rstrip(","))
    d.start()
    d.stop()
    data = {x["name"]: x for x in json.loads(d.ctl("--json", "ranges").stdout)}
    assert data["london"]["reserved"] == 2
    assert data["abingdon-office-1"]["reserved"] == 2
    assert data["hq-ext"]["status"] == "removed"  # kept, with its numbers


def test_ctl_without_inventory_says_so(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(TENANT + f'database: {{ path = "{tmp_path}/none"; }};\n')
    r = run(binary("numprovctl"), "-c", conf, "ranges")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"numprovctl: no inventory in {tmp_path}/none "
                                "(has numprovd run with this config?)")


def test_ctl_usage_errors(tmp_path):
    r = run(binary("numprovctl"), "-c", TOP / "etc" / "numprovd.conf", "frobnicate")
    assert r.returncode == 2
    assert "usage: numprovctl" in r.stderr


def test_both_programs_answer_help_and_version():
    for prog in ("numprovd", "numprovctl"):
        for flag in ("-h", "--help"):
            r = run(binary(prog), flag)
            assert r.returncode == 0 and r.stdout.startswith(f"usage: {prog}"), (prog, flag, r)
            assert "--version" in r.stdout and "--config" in r.stdout
        for flag in ("-V", "--version"):
            r = run(binary(prog), flag)
            assert r.returncode == 0 and re.fullmatch(rf"{prog} \d+\.\d+\.\d+\n", r.stdout), r


def test_usage_errors_are_one_line_with_a_hint(tmp_path):
    conf = TOP / "etc" / "numprovd.conf"
    cases = [
        (["numprovd", "--bogus"], "numprovd: unknown option '--bogus'; see numprovd --help"),
        (["numprovd", "-c"], "numprovd: an option needs a value: '-c'; see numprovd --help"),
        (["numprovd", "-f", "extra"], "numprovd: unexpected argument 'extra'; see numprovd --help"),
        (["numprovd", "-xf"], "numprovd: unknown option '-x'; see numprovd --help"),
        (["numprovctl", "-xh", "status"], "numprovctl: unknown option '-x'"),
        (["numprovctl", "--bogus", "status"], "numprovctl: unknown option '--bogus'"),
        (["numprovctl", "-c", conf, "frobnicate"], "numprovctl: unknown command 'frobnicate'"),
        (["numprovctl", "-c", conf, "assign", "x"], "numprovctl: wrong arguments for 'assign'"),
        (["numprovctl", "-c", conf], "numprovctl: no command"),
    ]
    for args, start in cases:
        r = run(binary(args[0]), *args[1:])
        assert r.returncode == 2 and r.stdout == "", (args, r)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(start), (args, r.stderr)
        assert r.stderr.rstrip().endswith(f"see {args[0]} --help"), r.stderr
    # with --json the error is JSON too
    r = run(binary("numprovctl"), "--json", "-c", conf, "frobnicate")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    err = json.loads(r.stderr)
    assert err["ok"] is False and err["error"].startswith("unknown command 'frobnicate'")
    r = run(binary("numprovctl"), "--json", "-c", tmp_path / "none.conf", "status")
    assert r.returncode == 78 and json.loads(r.stderr)["ok"] is False
