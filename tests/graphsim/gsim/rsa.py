"""RSA signature verification in pure Python (RFC 8017), SHA-256 only.

verify_pkcs1v15: RSASSA-PKCS1-v1_5 (JWS "RS256").
verify_pss:      RSASSA-PSS, MGF1-SHA-256, any salt length (JWS "PS256")."""
import hashlib
import hmac

# DER prefix of DigestInfo{ sha256, OCTET STRING(32) } (RFC 8017 section 9.2, note 1)
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
HASH_LEN = 32


def _recover(signature, n, e):
    """s^e mod n as a k-byte string, or None when the signature cannot be ours."""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return None
    s = int.from_bytes(signature, "big")
    if s >= n:
        return None
    return pow(s, e, n).to_bytes(k, "big")


def verify_pkcs1v15(message, signature, n, e):
    em = _recover(signature, n, e)
    if em is None:
        return False
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (len(em) - len(t) - 3) + b"\x00" + t
    return len(em) >= len(t) + 11 and hmac.compare_digest(em, expected)


def mgf1_sha256(seed, length):
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def verify_pss(message, signature, n, e):
    em_full = _recover(signature, n, e)
    if em_full is None:
        return False
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    if em_full[:len(em_full) - em_len].strip(b"\x00"):
        return False  # the top byte(s) beyond emLen must be zero
    return _emsa_pss_verify(message, em_full[-em_len:], em_bits)


def _emsa_pss_verify(message, em, em_bits):
    """EMSA-PSS-VERIFY (RFC 8017 9.1.2) with the salt length read from DB."""
    em_len = len(em)
    if em_len < HASH_LEN + 2 or em[-1] != 0xBC:
        return False
    masked_db, h = em[:em_len - HASH_LEN - 1], em[em_len - HASH_LEN - 1:-1]
    unused_bits = 8 * em_len - em_bits
    if unused_bits and masked_db[0] >> (8 - unused_bits):
        return False
    db = bytes(a ^ b for a, b in zip(masked_db, mgf1_sha256(h, len(masked_db))))
    db = bytes([db[0] & (0xFF >> unused_bits)]) + db[1:]
    padding_end = len(db) - len(db.lstrip(b"\x00"))
    if padding_end == len(db) or db[padding_end] != 0x01:
        return False
    salt = db[padding_end + 1:]
    m_hash = hashlib.sha256(message).digest()
    h2 = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    return hmac.compare_digest(h, h2)
