"""docs/vectors/bkv-v1.json recomputed independently in Python: HKDF (RFC 5869) written out
on the standard library's hmac/hashlib, AES-256-GCM from Debian's python3-cryptography, and
the backup file decrypted through the binding (bkv.decrypt_file). The vectors were written
by libbkv (scripts/gen-vectors); nothing here comes from libbkv except that last check."""

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import bkv

VECTORS = Path(os.environ.get("BKV_SOURCE_DIR", Path(__file__).resolve().parents[3])) / (
    "docs/vectors/bkv-v1.json"
)
HASHES = {"SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}


@pytest.fixture(scope="module")
def vectors():
    return json.loads(VECTORS.read_text())


def h(vector, name):
    return bytes.fromhex(vector[name])


def hkdf_expand(hash_fn, prk, info, length):
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hash_fn).digest()
        out += block
        i += 1
    return out[:length]


def hkdf(hash_fn, ikm, salt, info, length):
    return hkdf_expand(hash_fn, hmac.new(salt, ikm, hash_fn).digest(), info, length)


def seal(key, nonce, aad, plaintext):
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def test_hkdf_matches_rfc5869_case_1():
    # RFC 5869 A.1, so that the by-hand HKDF above is itself checked.
    okm = hkdf(hashlib.sha256, bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


@pytest.mark.parametrize("index", [0, 1])
def test_key_wrap_and_release(vectors, index):
    v = vectors["keywrap"][index]
    hash_fn = HASHES[v["hash"]]
    assert v["suite_id"] == index + 1
    assert len(h(v, "export_key")) == hash_fn().digest_size
    wrap_key = hkdf_expand(hash_fn, h(v, "export_key"), b"bkv-v1 wrap", 32)
    assert wrap_key == h(v, "wrap_key")
    wrapped = seal(wrap_key, h(v, "wrap_nonce"), b"bkv-v1 wrap", h(v, "backup_key"))
    assert wrapped == h(v, "wrapped_key")
    release_key = hkdf_expand(hash_fn, h(v, "session_key"), b"bkv-v1 release", 32)
    assert release_key == h(v, "release_key")
    sealed = seal(release_key, h(v, "release_nonce"), b"bkv-v1 release", wrapped)
    assert sealed == h(v, "sealed_key")


def test_backup_file(vectors, tmp_path):
    v = vectors["backup_file"]
    plain = h(v, "plaintext")
    okm = hkdf(hashlib.sha256, h(v, "backup_key"), h(v, "salt"), b"bkv-v1 backup", 64)
    assert okm == h(v, "okm")
    header = b"bkvbak\r\n" + b"\x01" + (65536).to_bytes(4, "big") + h(v, "salt")
    header += hmac.new(okm[32:], header, hashlib.sha256).digest()
    assert header == h(v, "header")
    chunk_header = b"\x01" + len(plain).to_bytes(4, "big")
    nonce = (0).to_bytes(11, "big") + b"\x01"
    sealed = AESGCM(okm[:32]).encrypt(nonce, plain, header + chunk_header)
    assert header + chunk_header + sealed == h(v, "file")

    source, out = tmp_path / "vector.bkv", tmp_path / "vector.out"
    source.write_bytes(h(v, "file"))
    bkv.decrypt_file(bytearray(h(v, "backup_key")), source, out)
    assert out.read_bytes() == plain
