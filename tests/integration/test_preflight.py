"""numprovd -t checks what the daemon will need without the network: the credentials'
files and modes, the CA file, the database's parent, the control socket's directory.
Each problem is one FILE:LINE: line and the exit status is 78 (EX_CONFIG)."""
import grp
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import AS_ROOT
from conftest import binary, run

RANGES = """ranges = (
  { name = "office"; type = "direct-routing"; first = "+441235000000"; last = "+441235000099"; }
);
"""


class Conf:
    """A config in tmp_path whose keys sit on known lines:
         1 tenant: { id = ...;
         2   client_id = ...;
         3   client_secret_file = ...;   (or certificate_file)
         4   ca_file = ...;              (or private_key_file, or a comment)
         5 };
         6 database: { path = ...; durable = false; };
         7 control: { socket = ...; group = "root"; };
         8 snmp: { enabled = false; };
    """

    def __init__(self, tmp):
        self.tmp = tmp
        self.path = tmp / "numprovd.conf"
        self.secret = tmp / "client-secret"
        self.secret.write_text("s3cr3t\n")
        self.secret.chmod(0o600)
        self.db = tmp / "db"
        self.sock = tmp / "control.sock"

    def write(self, line3=None, line4="# no ca_file", db=None, sock=None):
        line3 = line3 or f'client_secret_file = "{self.secret}";'
        self.path.write_text(
            'tenant: { id = "contoso.onmicrosoft.com";\n'
            '  client_id = "11111111-2222-3333-4444-555555555555";\n'
            f"  {line3}\n  {line4}\n}};\n"
            f'database: {{ path = "{db or self.db}"; durable = false; }};\n'
            f'control: {{ socket = "{sock or self.sock}"; group = "root"; }};\n'
            "snmp: { enabled = false; };\n" + RANGES)
        return self.path

    def check(self, **kw):
        conf = self.write(**kw)
        return conf, run(binary("numprovd"), *AS_ROOT, "-t", "-c", conf)


@pytest.fixture
def conf(tmp_path):
    return Conf(tmp_path)


def problems(r):
    return r.stderr.strip().splitlines()


def test_a_good_config_is_valid(conf):
    conf_file, r = conf.check()
    assert r.returncode == 0, r.stderr
    assert f"{conf_file}: configuration is valid (1 range, sync mode enforce)" in r.stdout
    assert r.stderr == ""


def test_a_good_config_with_ca_file_and_certificate(conf, certs):
    conf_file, r = conf.check(line4=f'ca_file = "{certs}/ca.pem";')
    assert r.returncode == 0, r.stderr
    assert "configuration is valid" in r.stdout
    key = conf.tmp / "app.key"
    shutil.copy(certs / "app.key", key)
    key.chmod(0o600)
    conf_file, r = conf.check(line3=f'certificate_file = "{certs}/app.pem";',
                              line4=f'private_key_file = "{key}";')
    assert r.returncode == 0, r.stderr
    assert "configuration is valid" in r.stdout


def test_a_secret_others_may_read(conf):
    conf.secret.chmod(0o644)
    conf_file, r = conf.check()
    assert r.returncode == 78
    assert problems(r) == [
        f"{conf_file}:3: tenant.client_secret_file: {conf.secret} may be read by group or "
        "others (mode 0644); it holds the tenant's credentials: chmod 600 it"]
    assert "configuration is valid" not in r.stdout


def test_a_group_writable_secret(conf):
    conf.secret.chmod(0o620)
    conf_file, r = conf.check()
    assert r.returncode == 78
    assert problems(r)[0].startswith(
        f"{conf_file}:3: tenant.client_secret_file: {conf.secret} may be read by group or "
        "others (mode 0620)")


def test_a_missing_secret(conf):
    conf.secret.unlink()
    conf_file, r = conf.check()
    assert r.returncode == 78
    assert problems(r) == [f"{conf_file}:3: tenant.client_secret_file: cannot open "
                           f"{conf.secret}: No such file or directory"]


def test_a_missing_database_parent(conf):
    db = conf.tmp / "no-such-dir" / "db"
    conf_file, r = conf.check(db=db)
    assert r.returncode == 78
    assert problems(r) == [f"{conf_file}:6: database.path: the directory {db.parent} does "
                           f"not exist (numprovd creates {db}, not its parents)"]


def test_an_unparsable_ca_file(conf):
    ca = conf.tmp / "ca.pem"
    ca.write_text("this is not a certificate\n")
    conf_file, r = conf.check(line4=f'ca_file = "{ca}";')
    assert r.returncode == 78
    lines = problems(r)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{conf_file}:4: tenant.ca_file: no PEM certificate in {ca}")


def test_a_missing_control_socket_directory(conf):
    # one missing level: numprovd makes it at start, so -t accepts it
    conf_file, r = conf.check(sock=conf.tmp / "run" / "control.sock")
    assert r.returncode == 0, r.stderr
    sock = conf.tmp / "var" / "run" / "control.sock"
    conf_file, r = conf.check(sock=sock)
    assert r.returncode == 78
    assert problems(r) == [
        f"{conf_file}:7: control.socket: the directory {sock.parent} does not exist, "
        f"nor {sock.parent.parent}"]


def test_every_problem_at_once(conf):
    conf.secret.chmod(0o644)
    ca = conf.tmp / "ca.pem"
    ca.write_text("garbage\n")
    gone = conf.tmp / "gone"
    conf_file, r = conf.check(line4=f'ca_file = "{ca}";', db=gone / "db",
                              sock=gone / "run" / "control.sock")
    assert r.returncode == 78
    lines = problems(r)
    assert [l.split(": ")[0] for l in lines] == [
        f"{conf_file}:3", f"{conf_file}:4", f"{conf_file}:6", f"{conf_file}:7"], lines


def test_a_certificate_that_does_not_parse(conf, certs):
    cert = conf.tmp / "app.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    key = conf.tmp / "app.key"
    shutil.copy(certs / "app.key", key)
    key.chmod(0o600)
    conf_file, r = conf.check(line3=f'certificate_file = "{cert}";',
                              line4=f'private_key_file = "{key}";')
    assert r.returncode == 78
    lines = problems(r)
    assert len(lines) == 1 and lines[0].startswith(
        f"{conf_file}:3: tenant.certificate_file: no PEM certificate in {cert}"), lines


def test_syntax_errors_come_first(conf):
    """A file config_load refuses is reported as before; the preflight does not run."""
    conf.secret.unlink()
    conf_file = conf.write()
    conf_file.write_text(conf_file.read_text() + "sync: { mode = ; };\n")
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", conf_file)
    assert r.returncode == 78
    assert r.stderr.startswith(f"{conf_file}:12: syntax error")
    assert "client_secret_file" not in r.stderr


def test_an_encrypted_private_key_is_refused_without_a_prompt(conf, certs):
    """numprovd has nobody to type a passphrase: -t says the key is encrypted, at once,
    instead of prompting on the terminal."""
    cert = conf.tmp / "app.pem"
    shutil.copy(certs / "app.pem", cert)
    key = conf.tmp / "app.key"
    subprocess.run(["openssl", "pkey", "-in", str(certs / "app.key"), "-aes256",
                    "-passout", "pass:hunter2", "-out", str(key)], check=True)
    key.chmod(0o600)
    conf_file = conf.write(line3=f'certificate_file = "{cert}";',
                           line4=f'private_key_file = "{key}";')
    r = subprocess.run([str(binary("numprovd")), *AS_ROOT, "-t", "-c", str(conf_file)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert r.returncode == 78, r
    assert "pass phrase" not in r.stdout + r.stderr  # no prompt
    assert f"{conf_file}:4: tenant.private_key_file: " in r.stderr
    assert "the private key is encrypted" in r.stderr


def test_inventory_files_another_user_left_are_refused(certs):
    """A numprovd once run as root leaves root's files in the database directory; -t,
    run as the service user, says which file it cannot write."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="numprov-pf-", dir="/tmp"))
    try:
        top.chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        c = Conf(top)
        os.chown(c.secret, nobody.pw_uid, nobody.pw_gid)
        c.db.mkdir()
        os.chown(c.db, nobody.pw_uid, nobody.pw_gid)
        lock = c.db / "numprovd.lock"
        lock.write_text("1\n")  # root's, 0644
        lock.chmod(0o644)
        (top / "run").mkdir()
        os.chown(top / "run", nobody.pw_uid, nobody.pw_gid)
        conf_file = c.write(sock=top / "run" / "control.sock")
        # the socket goes to a group of nobody's (numprovd as nobody can give it no other)
        nogroup = grp.getgrgid(nobody.pw_gid).gr_name
        conf_file.write_text(conf_file.read_text().replace('group = "root"',
                                                          f'group = "{nogroup}"'))
        conf_file.chmod(0o644)
        r = subprocess.run(["runuser", "-u", "nobody", "--", str(binary("numprovd")), *AS_ROOT, "-t",
                            "-c", str(conf_file)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 78, r
        assert (f"{conf_file}:6: database.path: {lock} is not writable by user nobody"
                in r.stderr), r.stderr
        os.chown(lock, nobody.pw_uid, nobody.pw_gid)
        r = subprocess.run(["runuser", "-u", "nobody", "--", str(binary("numprovd")), *AS_ROOT, "-t",
                            "-c", str(conf_file)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(top)


def test_a_fifo_as_the_config_is_refused_at_once(conf):
    """A FIFO is no configuration file: -t says so at once instead of waiting for a writer."""
    fifo = conf.tmp / "fifo.conf"
    os.mkfifo(fifo)
    r = subprocess.run([binary("numprovd"), *AS_ROOT, "-t", "-c", str(fifo)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    assert r.returncode == 78, r
    assert problems(r) == [f"{fifo}: cannot read the file: not a regular file"]


def test_an_include_is_refused(conf):
    conf_file = conf.write()
    (conf.tmp / "more.conf").write_text("sync: { mode = \"dry-run\"; };\n")
    conf_file.write_text(conf_file.read_text() + '  @include "more.conf"\n')
    r = run(binary("numprovd"), *AS_ROOT, "-t", "-c", conf_file)
    assert r.returncode == 78, r
    assert problems(r) == [f"{conf_file}:12: @include is not supported: keep the "
                           "configuration in one file"]


FLIP = """
import os, sys
link, targets = sys.argv[1], sys.argv[2:]
while True:
    for i, t in enumerate(targets):
        tmp = f"{link}.{i}"
        os.symlink(t, tmp)
        os.replace(tmp, link)
"""


def test_a_config_replaced_during_the_check_is_read_as_the_daemon_reads_it(conf):
    """-t reads the file twice: config_load, then the preflight for the keys' lines. When it
    is replaced in between, by a FIFO or by a file with an @include of one, the preflight
    refuses it as config_load would, at once, instead of waiting on the FIFO for ever."""
    good = conf.write()
    fifo = conf.tmp / "fifo"
    os.mkfifo(fifo)
    include = conf.tmp / "include.conf"
    include.write_text(good.read_text() + f'@include "{fifo}"\n')
    link = conf.tmp / "link.conf"
    flip = subprocess.Popen([sys.executable, "-c", FLIP, str(link), str(good), str(fifo),
                             str(good), str(include)])
    try:
        while not link.is_symlink():
            time.sleep(0.01)
        seen = set()
        for _ in range(40):
            try:
                r = subprocess.run([binary("numprovd"), *AS_ROOT, "-t", "-c", str(link)],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail("numprovd -t waited on a FIFO for 10 s")
            if r.returncode == 0:
                assert "configuration is valid" in r.stdout, r
                seen.add("valid")
                continue
            assert r.returncode == 78, r
            lines = problems(r)
            assert len(lines) == 1, lines
            assert lines[0] in (f"{link}: cannot read the file: not a regular file",
                                f"{link}:12: @include is not supported: keep the "
                                "configuration in one file"), lines
            seen.add(lines[0])
        assert "valid" in seen and len(seen) > 1, seen
    finally:
        flip.kill()
        flip.wait()
