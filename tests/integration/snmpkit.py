"""A private net-snmp world for the subagent tests: an snmpd master agent configured
from etc/snmpd-numprov.conf, an snmptrapd writing one parsable line per notification,
and wrappers of the net-snmp command-line tools that return parsed values.

Everything lives under the test's tmp_path: the tools and daemons get their own
SNMPCONFPATH and SNMP_PERSISTENT_DIR and load no MIB file (MIBS empty), so nothing of
/etc/snmp or /var/lib/snmp is read or written and all output is numeric (-On)."""
import datetime
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_CONF = TOP / "etc" / "snmpd-numprov.conf"

# numprovMIB and its objects (mibs/NUMPROV-MIB.txt, numbers only): { netSnmpPlaypen 6867 },
# netSnmpPlaypen being { netSnmpExperimental 9999 } = 1.3.6.1.4.1.8072.9999.9999
MIB = "1.3.6.1.4.1.8072.9999.9999.6867"
NOTIFS = MIB + ".0"
SYNC = MIB + ".1.1"
STATS = MIB + ".1.2"
RANGE_ENTRY = MIB + ".1.3.1"
SYNC_SCALARS = {
    "numprovSyncState": 1, "numprovSyncLastResult": 2, "numprovSyncLastStart": 3,
    "numprovSyncLastEnd": 4, "numprovSyncLastDuration": 5, "numprovSyncLastError": 6,
    "numprovSyncNextIn": 7, "numprovSyncCount": 8, "numprovSyncFailures": 9,
    "numprovSyncTrigger": 10, "numprovSyncLastFull": 11,
}
STATS_SCALARS = {
    "numprovUsersTracked": 1, "numprovUsersPending": 2, "numprovUsersUnmatched": 3,
    "numprovAssignments": 4, "numprovReleases": 5, "numprovAssignFailures": 6,
    "numprovDrift": 7, "numprovStartTime": 8,
}
COLUMNS = {
    "numprovRangeName": 2, "numprovRangeType": 3, "numprovRangeProvider": 4,
    "numprovRangeFirst": 5, "numprovRangeLast": 6, "numprovRangeSize": 7,
    "numprovRangeAssigned": 8, "numprovRangePending": 9, "numprovRangeAvailable": 10,
    "numprovRangeReserved": 11, "numprovRangeQuarantined": 12,
    "numprovRangeUtilisation": 13, "numprovRangeWarnPercent": 14, "numprovRangeStatus": 15,
}
NOTIFICATIONS = {
    "numprovRangeUtilisationHigh": NOTIFS + ".1", "numprovRangeExhausted": NOTIFS + ".2",
    "numprovSyncFailed": NOTIFS + ".3", "numprovSyncRecovered": NOTIFS + ".4",
}
# the objects each notification carries, in order (the plan's OBJECTS clauses)
NOTIFICATION_OBJECTS = {
    "numprovRangeUtilisationHigh": ["numprovRangeName", "numprovRangeUtilisation",
                                    "numprovRangeWarnPercent", "numprovRangeAvailable",
                                    "numprovRangeStatus"],
    "numprovRangeExhausted": ["numprovRangeName", "numprovRangeSize", "numprovRangeStatus"],
    "numprovSyncFailed": ["numprovSyncLastResult", "numprovSyncLastError",
                          "numprovSyncFailures"],
    "numprovSyncRecovered": ["numprovSyncLastResult", "numprovSyncLastEnd"],
}
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"


MIB_FILE = TOP / "mibs" / "NUMPROV-MIB.txt"
NET_SNMP_MIB = pathlib.Path("/usr/share/snmp/mibs/NET-SNMP-MIB.txt")
_MACROS = ("OBJECT IDENTIFIER|OBJECT-TYPE|MODULE-IDENTITY|NOTIFICATION-TYPE|OBJECT-GROUP|"
           "NOTIFICATION-GROUP|MODULE-COMPLIANCE|OBJECT-IDENTITY")


def mib_definitions(*paths):
    """{name: numeric OID} of the definitions in SMI module texts, read with a regex
    (net-snmp and libsmi cannot load NUMPROV-MIB here: Debian lacks the IETF base
    modules it imports). Only `::= { parent n }` forms, which is all these modules use."""
    edges = {}
    for path in paths:
        text = re.sub(r"--[^\n]*", "", pathlib.Path(path).read_text())
        text = re.sub(r'"[^"]*"', '""', text)  # DESCRIPTIONs may hold anything
        for name, _, parent, num in re.findall(
                rf"^(\w[\w-]*)[ \t]+({_MACROS})\b[^:]*?::=\s*\{{\s*(\w[\w-]*)\s+(\d+)\s*\}}",
                text, re.M | re.S):
            edges[name] = (parent, num)
    oids = {"enterprises": "1.3.6.1.4.1"}

    def resolve(name):
        if name not in oids:
            parent, num = edges[name]
            oids[name] = f"{resolve(parent)}.{num}"
        return oids[name]
    for name in edges:
        resolve(name)
    return oids


def mib_notification_objects(path=MIB_FILE):
    text = re.sub(r"--[^\n]*", "", pathlib.Path(path).read_text())
    return {name: re.findall(r"\w+", objs) for name, objs in re.findall(
        r"^(\w+)\s+NOTIFICATION-TYPE\s+OBJECTS\s*\{([^}]*)\}", text, re.M)}


def scalar(name):
    """The instance OID (…​.0) of a scalar of numprovSync or numprovStats."""
    if name in SYNC_SCALARS:
        return f"{SYNC}.{SYNC_SCALARS[name]}.0"
    return f"{STATS}.{STATS_SCALARS[name]}.0"


def column(name, index):
    return f"{RANGE_ENTRY}.{COLUMNS[name]}.{index}"


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home):
    env = dict(os.environ)
    env.update(SNMPCONFPATH=str(home), SNMP_PERSISTENT_DIR=str(home / "persist"), MIBS="",
               MIBDIRS=str(home))
    return env


# ---- parsing the tools' numeric output --------------------------------------------------

class Value:
    """One varbind as the tools print it with -On -Oe -Ot: `.OID = TYPE: value`."""

    def __init__(self, oid, type_, value):
        self.oid, self.type, self.value = oid, type_, value

    def __repr__(self):
        return f"{self.oid} = {self.type}: {self.value!r}"

    def __eq__(self, other):
        if isinstance(other, Value):
            return (self.oid, self.type, self.value) == (other.oid, other.type, other.value)
        return NotImplemented


EXCEPTIONS = {
    "No Such Object available on this agent at this OID": "noSuchObject",
    "No Such Instance currently exists at this OID": "noSuchInstance",
    "No more variables left in this MIB View (It is past the end of the MIB tree)":
        "endOfMibView",
}


def _unquote(text):
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return re.sub(r'\\(.)', r'\1', text)


def parse_value(oid, text):
    text = text.strip()
    if text in EXCEPTIONS:
        return Value(oid, EXCEPTIONS[text], None)
    if text == '""':
        return Value(oid, "STRING", "")
    m = re.match(r"([\w-]+(?: \w+)?): ?(.*)$", text, re.S)
    if not m:
        # -Ot prints Timeticks as a bare number; an empty string as ""
        if re.fullmatch(r"\d+", text):
            return Value(oid, "Timeticks", int(text))
        return Value(oid, "?", text)
    type_, raw = m.groups()
    if type_ in ("INTEGER", "Gauge32", "Counter32", "Counter64", "Unsigned32",
                 "Timeticks"):
        num = re.match(r"-?\d+", raw)
        return Value(oid, type_, int(num.group(0)) if num else raw)
    if type_ == "STRING":
        return Value(oid, type_, _unquote(raw))
    if type_ == "Hex-STRING":
        return Value(oid, "Hex-STRING", bytes.fromhex(raw.replace("\n", " ")))
    if type_ == "OID":
        return Value(oid, type_, raw.strip().lstrip("."))
    return Value(oid, type_, raw)


def parse_varbinds(text):
    """`.OID = TYPE: value` lines (continuation lines of long Hex-STRINGs joined)."""
    out, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^\.?(\d+(?:\.\d+)+) = (.*)$", line)
        if m:
            if cur:
                out.append(cur)
            cur = [m.group(1), m.group(2)]
        elif cur and line.strip():
            cur[1] += "\n" + line
    if cur:
        out.append(cur)
    return [parse_value(o, t) for o, t in out]


def as_bytes(v):
    """An OCTET STRING value as bytes, whichever way the tool printed it."""
    if v.type == "Hex-STRING":
        return v.value
    return v.value.encode()


def date_and_time(v):
    """DateAndTime octets -> an aware datetime in UTC; None for '0000000000000000'H
    (no such time yet). 8 octets (no zone) are read as UTC."""
    b = as_bytes(v)
    assert len(b) in (8, 11), f"DateAndTime of {len(b)} octets: {v}"
    if b[:8] == bytes(8):
        return None
    t = datetime.datetime(int.from_bytes(b[0:2], "big"), b[2], b[3], b[4], b[5], b[6],
                          b[7] * 100000, tzinfo=datetime.timezone.utc)
    if len(b) == 11:
        assert chr(b[8]) in "+-", f"DateAndTime direction {b[8]!r}: {v}"
        offset = datetime.timedelta(hours=b[9], minutes=b[10])
        t = t - offset if chr(b[8]) == "+" else t + offset
    return t


class Result:
    """What a tool printed: parsed varbinds, exit status, stderr and the SNMP error."""

    def __init__(self, proc, elapsed):
        self.rc, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.elapsed = elapsed
        self.varbinds = parse_varbinds(proc.stdout)
        m = re.search(r"Reason: (\w+)", proc.stdout + proc.stderr)
        self.error = m.group(1) if m else None
        if "Timeout" in proc.stderr:
            self.error = self.error or "timeout"

    @property
    def value(self):
        assert len(self.varbinds) == 1, self
        return self.varbinds[0].value

    def dict(self):
        return {v.oid: v for v in self.varbinds}

    def __repr__(self):
        return (f"<rc={self.rc} error={self.error} {self.varbinds} "
                f"stderr={self.stderr.strip()!r} {self.elapsed:.3f}s>")


# ---- the daemons -------------------------------------------------------------------------

def _wait_file(path, proc, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"{what} did not start (exit {proc.poll()})")


class Notification:
    """One received notification: its snmpTrapOID.0 value, the varbinds in order
    (sysUpTime.0 and snmpTrapOID.0 included), the community it came with."""

    def __init__(self, pdu, varbinds):
        self.pdu, self.varbinds = pdu, varbinds
        self.dict = {v.oid: v for v in varbinds}
        trap = self.dict.get(SNMP_TRAP_OID)
        self.trap = trap.value if trap else None
        m = re.search(r"community (\S+)", pdu)
        self.community = m.group(1) if m else None

    def objects(self):
        """The varbinds after sysUpTime.0 and snmpTrapOID.0."""
        return [v for v in self.varbinds if v.oid not in (SYS_UPTIME, SNMP_TRAP_OID)]

    def __repr__(self):
        return f"<notification {self.trap} {self.community} {self.objects()}>"


class Snmptrapd:
    """snmptrapd on 127.0.0.1:<port>, one line per notification in traps.log."""

    FORMAT = "TRAP\t%P\t%V\x1f%v\n"

    def __init__(self, home):
        self.home = pathlib.Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        self.log = self.home / "traps.log"
        self.conf = self.home / "snmptrapd.conf"
        self.conf.write_text("disableAuthorization yes\ndoNotRetainNotificationLogs yes\n")
        self.pidfile = self.home / "snmptrapd.pid"
        self.proc = None

    def start(self):
        self.pidfile.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["snmptrapd", "-f", "-Lf", str(self.log), "-C", "-c", str(self.conf),
             "-p", str(self.pidfile), "-On", "-Oe", "-Ot", "-F", self.FORMAT,
             f"udp:127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(self.home))
        _wait_file(self.pidfile, self.proc, 10, "snmptrapd")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def notifications(self, prefix=NOTIFS):
        """The notifications received whose snmpTrapOID.0 is under `prefix`, in order."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(errors="replace").split("TRAP\t")[1:]:
            pdu, _, rest = line.rstrip("\n").partition("\t")
            binds = [parse_varbinds(b)[0] for b in rest.split("\x1f") if b.strip()]
            n = Notification(pdu, binds)
            if n.trap and (n.trap + ".").startswith(prefix + "."):
                out.append(n)
        return out

    def wait(self, count=1, timeout=15, prefix=NOTIFS):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.notifications(prefix)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} notification(s) under {prefix} not received: "
                             f"{self.notifications(prefix)}")


class Snmpd:
    """A private snmpd master agent on udp:127.0.0.1:<port>, its AgentX socket at
    <home>/agentx/master, configured with etc/snmpd-numprov.conf (placeholders replaced
    by the local addresses; nothing else changed or added)."""

    def __init__(self, home, trap_port=None, agentx=None, group="root"):
        self.home = pathlib.Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        self.agentx = pathlib.Path(agentx) if agentx else self.home / "agentx" / "master"
        self.group = group
        self.conf = self.home / "snmpd.conf"
        self.pidfile = self.home / "snmpd.pid"
        self.logfile = self.home / "snmpd.log"
        text = EXAMPLE_CONF.read_text()
        self.ro, self.rw = self._communities(text)
        self.trap_community = re.search(r"^trap2sink\s+\S+\s+(\S+)", text, re.M).group(1)
        self.trap_port = trap_port
        self.conf.write_text(self.substitute(text, self.agentx, trap_port, group))
        self.proc = None
        self.peer = f"udp:127.0.0.1:{self.port}"

    @staticmethod
    def _communities(text):
        com = dict(re.findall(r"^com2sec\s+(\S+)\s+\S+\s+(\S+)", text, re.M))
        return com["numprovRO"], com["numprovRW"]

    @staticmethod
    def substitute(text, agentx, trap_port, group="root"):
        """The example's placeholders, each of which must be there, by local values."""
        subs = [
            (r"^(agentXSocket\s+)/var/agentx/master\s*$", rf"\g<1>{agentx}"),
            # no group numprov on a test machine: the socket's group is another one
            (r"^(agentXPerms\s+\S+\s+\S+\s+root\s+)numprov\s*$", rf"\g<1>{group}"),
            (r"192\.0\.2\.0/24", "127.0.0.1"),
        ]
        if trap_port:
            subs.append((r"^(trap2sink\s+)192\.0\.2\.162:162\b", rf"\g<1>127.0.0.1:{trap_port}"))
        else:
            subs.append((r"^(trap2sink\s+.*)$", r"# \1"))
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl, text, flags=re.M)
            assert n >= 1, f"etc/snmpd-numprov.conf has no line matching {pattern}"
        return text

    def start(self, timeout=10):
        self.pidfile.unlink(missing_ok=True)
        self.log = open(self.logfile, "a")
        # -C: no system configuration; -I -smux: no SMUX listener on TCP port 199
        self.proc = subprocess.Popen(
            ["snmpd", "-f", "-Lo", "-C", "-c", str(self.conf), "-p", str(self.pidfile),
             "-I", "-smux", self.peer],
            stdout=self.log, stderr=subprocess.STDOUT, env=_env(self.home))
        _wait_file(self.pidfile, self.proc, timeout, "snmpd")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.agentx.exists() and self.get(SYS_DESCR, timeout=1).rc == 0:
                return self
            time.sleep(0.05)
        raise AssertionError(f"snmpd does not answer:\n{self.logfile.read_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def restart(self):
        self.stop()
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- the tools ----
    def tool(self, name, *args, opts=(), community=None, timeout=2, retries=0):
        """`name` -v2c [opts] PEER args: numeric OIDs (-On), numeric enums (-Oe), raw
        Timeticks (-Ot); no retry, so a slow answer shows as a timeout."""
        cmd = [name, "-v2c", "-c", community or self.ro, "-On", "-Oe", "-Ot",
               "-t", str(timeout), "-r", str(retries), *opts, self.peer, *map(str, args)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(self.home),
                              timeout=60)
        return Result(proc, time.monotonic() - t0)

    def get(self, *oids, **kw):
        return self.tool("snmpget", *oids, **kw)

    def getnext(self, *oids, **kw):
        return self.tool("snmpgetnext", *oids, **kw)

    def walk(self, oid=MIB, **kw):
        # snmpwalk checks that every answer increases: a subagent's loop is an error
        return self._walked(self.tool("snmpwalk", oid, **kw))

    def bulkwalk(self, oid=MIB, repetitions=7, **kw):
        return self._walked(self.tool("snmpbulkwalk", oid, opts=(f"-Cr{repetitions}",), **kw))

    @staticmethod
    def _walked(result):
        """Without the tools' closing `endOfMibView` line (the view ends after the MIB:
        it is the walk's end, not an object)."""
        if result.varbinds and result.varbinds[-1].type == "endOfMibView":
            result.varbinds.pop()
        return result

    def set(self, oid, type_, value, community=None, **kw):
        """snmpset through the write community unless another one is given."""
        return self.tool("snmpset", oid, type_, value, community=community or self.rw, **kw)


# ---- the MIB's table, from a walk ---------------------------------------------------------

def table_rows(varbinds):
    """{index: {column number: Value}} of numprovRangeTable's rows in a walk."""
    rows = {}
    for v in varbinds:
        if v.oid.startswith(RANGE_ENTRY + "."):
            col, index = v.oid[len(RANGE_ENTRY) + 1:].split(".", 1)
            rows.setdefault(int(index), {})[int(col)] = v
    return rows


# ---- hand-made packets, for what the tools cannot send ----------------------------------

def ber(tag, body):
    n = len(body)
    if n < 128:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + body


def ber_oid(text):
    parts = [int(x) for x in text.split(".")]
    out = bytes([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7f]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7f))
            p >>= 7
        out += bytes(reversed(enc))
    return ber(0x06, out)


def _ber_items(data):
    i = 0
    while i < len(data):
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7f
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        yield tag, data[i:i + n]
        i += n


def raw_set(agent, community, oid, value, timeout=1.0):
    """An SNMPv2c SetRequest of one varbind whose value is the BER bytes `value`, sent
    as is; the answer's error-status (0 = noError), or None when there is no answer."""
    pdu = ber(0xa3, ber(0x02, b"\x10\x92") + ber(0x02, b"\0") + ber(0x02, b"\0")
              + ber(0x30, ber(0x30, ber_oid(oid) + value)))
    msg = ber(0x30, ber(0x02, b"\x01") + ber(0x04, community.encode()) + pdu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, ("127.0.0.1", agent.port))
        try:
            data = s.recv(65535)
        except socket.timeout:
            return None
    (_, body), = _ber_items(data)
    _, _, (tag, pdu) = list(_ber_items(body))
    assert tag == 0xa2, f"not a Response-PDU: {data.hex()}"
    _, (_, status), _, _ = list(_ber_items(pdu))
    return int.from_bytes(status, "big")


ERROR_STATUS = {0: "noError", 3: "badValue", 6: "noAccess", 7: "wrongType",
                8: "wrongLength", 10: "wrongValue", 17: "notWritable"}
