"""bench/benchlib.py: what bench/provision.py and bench/snmp_bench.py share.

Child processes (started, stopped, all stopped at the end), /proc CPU figures, the Graph
simulator's tenant fixture and its start, numprovd's configuration, and a reader of
numprovd's log. Imported by the scripts as `benchlib` (a script's own directory is the
first entry of sys.path). Standard library only."""
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time
import uuid

TOP = pathlib.Path(__file__).resolve().parents[1]
GRAPHSIM = TOP / "tests" / "graphsim"
CLK = os.sysconf("SC_CLK_TCK")

SECRET = "bench-secret"
MCOEV = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"
TEAMS1 = "57ff2da0-773e-42df-b2af-ffb7a2317929"

CHILDREN = []          # Popen objects this run started, stopped by cleanup()


class BenchError(Exception):
    pass


def note(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- processes -----------------------------------------------------------------------------
def start(argv, **kw):
    proc = subprocess.Popen([str(a) for a in argv], **kw)
    CHILDREN.append(proc)
    return proc


def stop(proc, sig=signal.SIGTERM, wait=20):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def cleanup(wait=10):
    """Stop every process start() started, the last first, each given `wait` s."""
    while CHILDREN:
        stop(CHILDREN.pop(), wait=wait)


def wait_for(pred, what, timeout, procs=(), step=0.02):
    end = time.monotonic() + timeout
    while not pred():
        for p in procs:
            if p.poll() is not None:
                raise BenchError(f"{what}: process {p.args[0]} exited {p.returncode}")
        if time.monotonic() > end:
            raise BenchError(f"timeout waiting for {what}")
        time.sleep(step)


# ---- /proc ---------------------------------------------------------------------------------
def cpu_s(pid, or_nan=False):
    """utime + stime of the process (all its threads, also finished ones), seconds. When
    the process is gone: OSError, or NaN if or_nan."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        if or_nan:
            return float("nan")
        raise
    return (int(fields[11]) + int(fields[12])) / CLK


def sched_ns(pid):
    """Time on CPU of the process's live threads, ns (finer than the clock ticks of stat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def status_kb(pid, key):
    """A figure of /proc/PID/status in kB (VmRSS, VmHWM, RssAnon, ...); 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def sys_busy():
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def sys_busy_s():
    """Busy CPU seconds of the whole machine (all CPUs) since boot."""
    return sys_busy()[0] / CLK


# ---- the tenant (a graphsim fixture) -------------------------------------------------------
def plan(pid, name):
    return {"servicePlanId": pid, "servicePlanName": name, "provisioningStatus": "Success",
            "appliesTo": "User"}


def sku_e5():
    return {"skuId": "aaaaaaaa-0000-0000-0000-000000000005", "skuPartNumber": "SPE_E5",
            "servicePlans": [plan(TEAMS1, "TEAMS1"), plan(MCOEV, "MCOEV")]}


def user_ids(n, seed):
    """Random-looking GUIDs, as Entra's are (a shared prefix would make id compares slower)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def user(i, uid, domain, city, office, department, sku):
    return {"id": uid, "userPrincipalName": f"user{i:06d}@{domain}",
            "displayName": f"User {i:06d}", "givenName": "User", "surname": f"{i:06d}",
            "accountEnabled": True, "city": city, "officeLocation": office,
            "usageLocation": "GB", "country": "United Kingdom", "department": department,
            "companyName": "Bench Ltd", "jobTitle": "Staff", "licenses": [sku]}


def tenant(tenant_id, domain, client_id, skus, users):
    return {"tenant": {"id": tenant_id, "domain": domain},
            "app": {"client_id": client_id, "client_secret": SECRET},
            "skus": skus, "users": users, "numbers": [], "policies": [], "locations": []}


# ---- the simulator -------------------------------------------------------------------------
def start_graphsim(work, certs, fixture_path, page_size, op_polls, timeout, step=0.02):
    """graphsim.py on 127.0.0.1, any port, its output in WORK/graphsim.out: (process, that
    output file, base URL) once it has written its port."""
    port_file = work / "graphsim.port"
    out = open(work / "graphsim.out", "w")
    proc = start(["/usr/bin/python3", GRAPHSIM / "graphsim.py", "--port", "0",
                  "--port-file", port_file, "--cert", certs / "server.pem",
                  "--key", certs / "server.key", "--fixture", fixture_path,
                  "--page-size", page_size, "--op-polls", op_polls, "--seed", "1"],
                 stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: port_file.exists() and port_file.read_text().strip(),
             f"graphsim (see {work}/graphsim.out)", timeout, [proc], step)
    return proc, out, f"https://127.0.0.1:{int(port_file.read_text())}"


# ---- numprovd ------------------------------------------------------------------------------
def range_conf(name, first, last, match):
    match = match.replace('"', '\\"')
    return (f'  {{ name = "{name}"; type = "direct-routing"; provider = "Gamma";\n'
            f'    first = "{first}"; last = "{last}"; match = "{match}"; priority = 10; }}')


def numprovd_conf(work, domain, client_id, sim_url, certs, ranges, parallel, durable=False,
                  snmp="snmp: { enabled = false; };\n"):
    """Write WORK/client-secret and WORK/numprovd.conf (a round an hour or on SIGUSR1, the
    database in WORK/db; ranges: range_conf() entries); returns the configuration's path."""
    secret = work / "client-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    conf = work / "numprovd.conf"
    conf.write_text(
        f'tenant: {{ id = "{domain}"; client_id = "{client_id}";\n'
        f'  client_secret_file = "{secret}";\n'
        f'  login_url = "{sim_url}"; graph_url = "{sim_url}";\n'
        f'  ca_file = "{certs}/ca.pem"; timeout = 60; }};\n'
        f'sync: {{ mode = "enforce"; interval = 3600; full_interval = 86400;\n'
        f'  parallel = {parallel}; retry_min = 60; retry_max = 14400; }};\n'
        f'database: {{ path = "{work}/db"; durable = {"true" if durable else "false"}; }};\n'
        f'control: {{ socket = "{work}/control.sock"; group = "root"; }};\n'
        + snmp +
        'log: { level = "info"; };\n'
        'ranges = (\n' + ",\n".join(ranges) + '\n);\n')
    return conf


# the benchmarks run as root in scratch directories: numprovd stays root (see numprovd(8))
AS_ROOT = ["--allow-root"] if os.geteuid() == 0 else []


def check_conf(binary, conf, timeout=60):
    chk = subprocess.run([binary, *AS_ROOT, "-t", "-c", conf], capture_output=True, text=True,
                         timeout=timeout)
    if chk.returncode != 0:
        raise BenchError(f"numprovd -t: {chk.stdout}{chk.stderr}")


def start_numprovd(binary, conf, log_path):
    """numprovd -f, its output to log_path: (process, the open log file, wall clock at exec)."""
    log = open(log_path, "w")
    t_exec = time.time()
    proc = start([binary, *AS_ROOT, "-f", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    return proc, log, t_exec


# ---- numprovd's log ------------------------------------------------------------------------
EVENT = re.compile(r"(event=\S+.*)$")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)\.(\d{3})")


def fields(text):
    out = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', text))
    return {k: v.strip('"') for k, v in out.items()}


class LogTail:
    """numprovd's log read as it grows: lines, [(line, wall clock of its stamp or None)],
    and syncs, [(fields of an event=sync line, stamp)], both as far as poll() has read."""

    def __init__(self, path):
        self.path, self.pos, self.partial = path, 0, ""
        self.lines = []
        self.syncs = []

    def poll(self):
        """Read what has been written since the last call: the new (line, stamp)s."""
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return []
        if not data:
            return []
        parts = (self.partial + data).split("\n")
        self.partial = parts.pop()
        new = []
        for line in parts:
            m = STAMP.match(line)
            stamp = None
            if m:
                stamp = time.mktime(time.strptime(m.group(1).replace("T", " "),
                                                  "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
            self.lines.append((line, stamp))
            new.append((line, stamp))
            ev = EVENT.search(line)
            if ev and ev.group(1).startswith("event=sync "):
                self.syncs.append((fields(ev.group(1)), stamp))
        return new

    def find(self, needle):
        return [(line, stamp) for line, stamp in self.lines if needle in line]

    def events(self, kind):
        """The fields of the event=KIND lines read so far."""
        out = []
        for line, _ in self.lines:
            ev = EVENT.search(line)
            if ev and ev.group(1).startswith(f"event={kind} "):
                out.append(fields(ev.group(1)))
        return out
