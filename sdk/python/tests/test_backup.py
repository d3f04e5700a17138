"""encrypt_file / decrypt_file (no vault): round trips, each damaged file's exception,
nothing left behind on failure, and files the bkv CLI reads and writes."""

import os
import subprocess
from pathlib import Path

import pytest

import bkv
from conftest import native_env

CHUNK = 65536
HEADER = 77


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(os.urandom(2 * CHUNK + 1234))
    return path


def encrypted(tmp_path, key, plain):
    out = tmp_path / "plain.bkv"
    bkv.encrypt_file(key, plain, out)
    return out


def leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if ".partial-" in p.name)


def test_a_file_encrypted_decrypts_to_the_same_bytes_with_progress(tmp_path, plain):
    key = bkv.generate_key()
    calls = []
    out = tmp_path / "plain.bkv"
    bkv.encrypt_file(key, plain, out, progress=lambda done, total: calls.append((done, total)))
    assert out.read_bytes()[:8] == b"bkvbak\r\n"
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    size = plain.stat().st_size
    assert calls[-1] == (size, size)
    back = tmp_path / "back"
    bkv.decrypt_file(bytes(key), str(out), back)
    assert back.read_bytes() == plain.read_bytes()
    assert leftovers(tmp_path) == []


def test_another_key_raises_wrong_key_and_leaves_nothing(tmp_path, plain):
    out = encrypted(tmp_path, bkv.generate_key(), plain)
    with pytest.raises(bkv.WrongKey) as e:
        bkv.decrypt_file(bkv.generate_key(), out, tmp_path / "back")
    assert e.value.status == bkv.Status.ERR_WRONG_KEY
    assert not (tmp_path / "back").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("damage, error", [
    (lambda b: b[:HEADER + 5 + CHUNK + 16], bkv.Truncated),   # cut after the first chunk
    (lambda b: b[:HEADER + 100], bkv.Truncated),              # cut inside a chunk
    (lambda b: b[:HEADER + 10] + bytes([b[HEADER + 10] ^ 1]) + b[HEADER + 11:], bkv.Tampered),
    (lambda b: b"not a bkv backup" + b[16:], bkv.FormatError),
])
def test_a_damaged_file_raises_its_own_error_and_leaves_nothing(tmp_path, plain, damage, error):
    key = bkv.generate_key()
    out = encrypted(tmp_path, key, plain)
    out.write_bytes(damage(out.read_bytes()))
    with pytest.raises(error):
        bkv.decrypt_file(key, out, tmp_path / "back")
    assert not (tmp_path / "back").exists() and leftovers(tmp_path) == []


def test_an_existing_destination_is_not_overwritten(tmp_path, plain):
    (tmp_path / "there").write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        bkv.encrypt_file(bkv.generate_key(), plain, tmp_path / "there")
    assert (tmp_path / "there").read_bytes() == b"keep me"
    with pytest.raises(FileNotFoundError):
        bkv.encrypt_file(bkv.generate_key(), tmp_path / "missing", tmp_path / "out")
    with pytest.raises(bkv.ArgumentError):
        bkv.encrypt_file(bytes(31), plain, tmp_path / "out")
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


def test_an_exception_in_progress_is_raised_after_the_call_and_discards_the_output(
        tmp_path, plain):
    def refuse(done, total):
        raise KeyboardInterrupt("stop")
    with pytest.raises(KeyboardInterrupt):
        bkv.encrypt_file(bkv.generate_key(), plain, tmp_path / "out", progress=refuse)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_the_cli_decrypts_what_python_encrypts_and_the_other_way(tmp_path, plain):
    cli = Path(os.environ["BKVD"]).with_name("bkv")
    key = bkv.generate_key()
    key_file = tmp_path / "key"
    key_file.write_bytes(bkv.format_key(key) + b"\n")
    subprocess.run([cli, "decrypt", "--key-file", key_file, encrypted(tmp_path, key, plain),
                    tmp_path / "by-cli"], check=True, capture_output=True, env=native_env())
    assert (tmp_path / "by-cli").read_bytes() == plain.read_bytes()
    subprocess.run([cli, "encrypt", "--key-file", key_file, plain, tmp_path / "cli.bkv"],
                   check=True, capture_output=True, env=native_env())
    bkv.decrypt_file(key, tmp_path / "cli.bkv", tmp_path / "by-python")
    assert (tmp_path / "by-python").read_bytes() == plain.read_bytes()
