"""The registered application certificate, read once with the openssl CLI."""
import hashlib
import os
import re
import subprocess

from .util import b64url


_CACHE = {}


def load_certificate(path):
    """AppCertificate(path), cached while the file is unchanged (tests reload often)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE[key] = AppCertificate(path)
    return _CACHE[key]


class AppCertificate:
    """Public key (n, e) and thumbprints of an X.509 certificate file."""

    def __init__(self, path):
        self.path = str(path)
        self.der = _openssl("x509", "-in", self.path, "-outform", "DER")
        self.n = _modulus(self.path)
        self.e = _exponent(self.path)
        self.x5t = b64url(hashlib.sha1(self.der).digest())          # RS256 header
        self.x5t_s256 = b64url(hashlib.sha256(self.der).digest())   # PS256 header

    def describe(self):
        return {"path": self.path, "bits": self.n.bit_length(),
                "x5t": self.x5t, "x5t#S256": self.x5t_s256}


def _openssl(*args):
    proc = subprocess.run(["openssl", *args], capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise ValueError(f"openssl {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _modulus(path):
    out = _openssl("x509", "-in", path, "-noout", "-modulus").decode()
    match = re.match(r"Modulus=([0-9A-Fa-f]+)", out.strip())
    if not match:
        raise ValueError(f"{path}: not an RSA certificate")
    return int(match.group(1), 16)


def _exponent(path):
    out = _openssl("x509", "-in", path, "-noout", "-text").decode()
    match = re.search(r"Exponent:\s*(\d+)", out)
    if not match:
        raise ValueError(f"{path}: no RSA public exponent")
    return int(match.group(1))
