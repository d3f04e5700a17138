"""Backup key helpers, wipe(), and the mapping from bkv_error to exceptions (no vault)."""

import os
import subprocess
import sys

import pytest

import bkv
from bkv import _api, _native


def test_generate_key_gives_32_fresh_random_bytes_in_a_bytearray():
    first, second = bkv.generate_key(), bkv.generate_key()
    assert isinstance(first, bytearray) and len(first) == bkv.KEY_BYTES
    assert first != second
    assert first != bytearray(bkv.KEY_BYTES)


def test_format_key_is_16_groups_of_4_hex_digits_and_parses_back():
    key = bytearray(range(32))
    text = bkv.format_key(key)
    assert isinstance(text, bytearray)
    assert text.decode("ascii").split(" ") == [bytes(key).hex()[i:i + 4] for i in range(0, 64, 4)]
    assert bkv.parse_key(text) == key
    assert bkv.parse_key(text.decode().upper().replace(" ", "-")) == key
    assert bkv.parse_key(bytes(key).hex()) == key


def test_parse_key_names_the_position_of_the_first_bad_character():
    with pytest.raises(bkv.ArgumentError, match="'g' at position 3") as e:
        bkv.parse_key("00g" + "0" * 61)
    assert isinstance(e.value, ValueError)
    assert e.value.status == bkv.Status.ERR_ARGUMENT
    with pytest.raises(bkv.ArgumentError, match="expected 64 hex digits, found 63"):
        bkv.parse_key("0" * 63)


def test_format_key_refuses_a_key_that_is_not_32_bytes():
    with pytest.raises(bkv.ArgumentError):
        bkv.format_key(bytes(33))
    with pytest.raises(bkv.ArgumentError):
        bkv.format_key("00" * 32)


def test_wipe_zeroes_a_bytearray_in_place_and_refuses_immutable_bytes():
    key = bkv.generate_key()
    alias = memoryview(key)
    bkv.wipe(key)
    assert bytes(alias) == bytes(bkv.KEY_BYTES)
    writable = bytearray(os.urandom(8))
    bkv.wipe(memoryview(writable)[2:6])
    assert writable[2:6] == bytes(4) and len(writable) == 8
    bkv.wipe(bytearray())
    with pytest.raises(TypeError):
        bkv.wipe(b"immutable")


def test_every_failing_status_has_its_own_exception_class():
    failing = [s for s in bkv.Status if s != bkv.Status.OK]
    classes = {bkv.error_class(s) for s in failing}
    assert len(classes) == len(failing)
    for s in failing:
        cls = bkv.error_class(s)
        assert issubclass(cls, bkv.BkvError) and cls is not bkv.BkvError
        assert cls.__name__ in bkv.__all__ and getattr(bkv, cls.__name__) is cls
        assert cls("m").status == s
        assert bkv.status_name(s) != "unknown status"
    assert bkv.error_class(len(bkv.Status)) is bkv.BkvError


def raised_from(status, http_status=0, retry_after_ms=0, info=None, message=b"said by libbkv"):
    err = _native.bkv_error()
    err.status, err.message = status, message
    err.http_status, err.retry_after_ms = http_status, retry_after_ms
    with pytest.raises(bkv.BkvError) as e:
        _api._check(status, err, info)
    return e.value


def test_rate_limited_carries_retry_after_ms_and_the_http_status():
    e = raised_from(bkv.Status.ERR_RATE_LIMITED, 429, 1500)
    assert type(e) is bkv.RateLimited
    assert (e.retry_after_ms, e.http_status, e.message) == (1500, 429, "said by libbkv")
    e = raised_from(bkv.Status.ERR_UNAVAILABLE, 503, 250)
    assert type(e) is bkv.Unavailable and (e.retry_after_ms, e.http_status) == (250, 503)


def test_recover_info_fields_are_set_only_when_the_vault_said():
    info = _native.bkv_recover_info(attempts_remaining=4, attempt_limit=9, attempts_known=True)
    e = raised_from(bkv.Status.ERR_WRONG_PASSWORD, info=info)
    assert (e.attempts_remaining, e.attempt_limit, e.destroyed) == (4, 9, False)
    e = raised_from(bkv.Status.ERR_CONFLICT, info=_native.bkv_recover_info())
    assert type(e) is bkv.Conflict and e.attempts_remaining is None and e.attempt_limit is None


def test_a_status_this_package_does_not_know_is_a_bkv_error_with_libbkvs_name():
    e = raised_from(999, message=b"")
    assert type(e) is bkv.BkvError and e.status == 999
    assert e.message == "unknown status"


def test_the_installed_wheel_is_what_is_tested():
    site = os.environ.get("BKV_EXPECT_PACKAGE_IN")
    if not site:
        pytest.skip("run-tests.sh sets BKV_EXPECT_PACKAGE_IN to the wheel's install dir")
    assert os.path.dirname(os.path.dirname(bkv.__file__)) == site
    assert bkv.version() == bkv.__version__


def run_python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("BKV_LIBRARY", "LD_LIBRARY_PATH")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_bkv_library_names_the_library_to_load_and_a_wrong_one_is_an_import_error():
    missing = run_python("import bkv", BKV_LIBRARY="/nonexistent/libbkv.so.0")
    assert missing.returncode != 0
    assert "ImportError: cannot load libbkv (/nonexistent/libbkv.so.0)" in missing.stderr


def test_without_bkv_library_libbkv_so_0_comes_from_the_loader_path():
    library = os.environ["BKV_LIBRARY"]
    maps = "import bkv; print(open('/proc/self/maps').read())"
    found = run_python(maps, LD_LIBRARY_PATH=os.path.dirname(library))
    assert found.returncode == 0, found.stderr
    loaded = {line.split()[-1] for line in found.stdout.splitlines() if "libbkv" in line}
    assert loaded == {os.path.realpath(library)}
