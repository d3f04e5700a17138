"""bkv.Client against a real bkvd (conftest.py): every call, and the exception and
fields each failure carries."""

import concurrent.futures
import socket
import subprocess
import threading
import time
import unicodedata

import pytest

import bkv
from conftest import native_env
from bkv import _native


@pytest.mark.parametrize("suite", [bkv.Suite.P256_SHA256, bkv.Suite.RISTRETTO255_SHA512],
                         ids=lambda s: s.name)
def test_register_then_recover_returns_the_key_in_each_suite(vault, token, suite):
    key = bkv.generate_key()
    with vault.client(suite=suite) as c:
        c.register(token, b"correct horse", key)
        status = c.status(token)
        recovered = c.recover(token, bytearray(b"correct horse"))
    assert status.state == bkv.RecordState.REGISTERED and status.registered
    assert status.suite == suite
    assert status.record_version == 1
    assert status.attempts_used == 0
    assert status.registered_at_unix > 0
    assert isinstance(recovered, bytearray)
    assert recovered == key
    bkv.wipe(recovered)
    assert recovered == bytearray(bkv.KEY_BYTES)


def test_a_str_password_is_its_utf8_bytes_without_normalization(client, token):
    composed = unicodedata.normalize("NFC", "pässwörd ")
    decomposed = unicodedata.normalize("NFD", composed)
    key = bkv.generate_key()
    client.register(token, composed, key)
    assert client.recover(token, bytearray(composed.encode("utf-8"))) == key
    with pytest.raises(bkv.WrongPassword):
        client.recover(token, decomposed)
    with pytest.raises(bkv.WrongPassword):
        client.recover(token, composed.strip())
    assert client.recover(token, composed) == key


def test_a_wrong_password_raises_wrong_password_with_the_attempts_remaining(client, token):
    key = bkv.generate_key()
    client.register(token, b"right", key, attempt_limit=3)
    with pytest.raises(bkv.WrongPassword) as first:
        client.recover(token, b"wrong")
    with pytest.raises(bkv.WrongPassword) as second:
        client.recover(token, b"wrong again")
    for e, left in ((first.value, 2), (second.value, 1)):
        assert e.status == bkv.Status.ERR_WRONG_PASSWORD
        assert e.attempts_remaining == left
        assert e.attempt_limit == 3
        assert not e.destroyed
        assert f"{left} attempt" in e.message and str(e) == e.message
        assert e.http_status == 0
    assert client.status(token).attempts_used == 2
    assert client.recover(token, b"right") == key
    assert client.status(token).attempts_used == 0


def test_the_last_wrong_password_destroys_the_key(client, token):
    key = bkv.generate_key()
    client.register(token, b"right", key, attempt_limit=2)
    with pytest.raises(bkv.WrongPassword):
        client.recover(token, b"wrong")
    with pytest.raises(bkv.Destroyed) as last:
        client.recover(token, b"wrong")
    assert last.value.destroyed
    assert last.value.attempts_remaining == 0
    assert last.value.status == bkv.Status.ERR_DESTROYED
    with pytest.raises(bkv.Destroyed) as later:
        client.recover(token, b"right")
    assert later.value.destroyed
    status = client.status(token)
    assert status.state == bkv.RecordState.DESTROYED and not status.registered
    assert status.destroyed_at_unix > 0
    with pytest.raises(bkv.AlreadyRegistered):
        client.register(token, b"right", key)
    assert client.register_replacing(token, b"new", key, status.record_version) == \
        status.record_version + 1
    assert client.recover(token, b"new") == key


def test_status_and_recover_of_an_account_with_nothing_registered(client, token):
    status = client.status(token)
    assert status.state == bkv.RecordState.ABSENT
    assert not status.registered
    with pytest.raises(bkv.NotRegistered) as e:
        client.recover(token, b"anything")
    assert e.value.status == bkv.Status.ERR_NOT_REGISTERED


def test_delete_removes_the_record_and_says_whether_there_was_one(client, token):
    client.register(token, b"pw", bkv.generate_key())
    assert client.delete(token) is True
    assert client.status(token).state == bkv.RecordState.ABSENT
    assert client.delete(token) is False
    with pytest.raises(bkv.NotRegistered):
        client.recover(token, b"pw")


def test_change_password_keeps_the_key_under_the_new_password(client, token):
    key = bkv.generate_key()
    client.register(token, b"old password", key, attempt_limit=5)
    client.change_password(token, b"old password", "new password")
    with pytest.raises(bkv.WrongPassword) as e:
        client.recover(token, b"old password")
    assert e.value.attempt_limit == 5
    assert client.recover(token, bytearray(b"new password")) == key
    with pytest.raises(bkv.WrongPassword) as e:
        client.change_password(token, b"old password", b"third")
    assert e.value.attempts_remaining == 4


def test_register_replacing_a_stale_version_is_a_conflict(client, token):
    client.register(token, b"pw", bkv.generate_key())
    second = bkv.generate_key()
    assert client.register_replacing(token, b"pw2", second, 1) == 2
    with pytest.raises(bkv.Conflict) as e:
        client.register_replacing(token, b"pw3", bkv.generate_key(), 1)
    assert e.value.status == bkv.Status.ERR_CONFLICT
    assert client.recover(token, b"pw2") == second


def test_the_context_manager_frees_the_c_client_once(vault, token, monkeypatch):
    freed = []
    real_free = _native.lib.bkv_client_free
    monkeypatch.setattr(_native.lib, "bkv_client_free",
                        lambda handle: (freed.append(handle.value), real_free(handle)))
    with vault.client() as c:
        handle = c._handle.value
        assert not c.closed
        assert c.status(token).state == bkv.RecordState.ABSENT
    assert c.closed
    assert freed == [handle]
    c.close()
    assert freed == [handle]
    with pytest.raises(ValueError, match="closed"):
        c.status(token)


def test_a_ca_that_did_not_sign_the_vaults_certificate_raises_tls_error(vault, token, tmp_path):
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other-key.pem"), "-out", str(other)],
                   check=True, capture_output=True, env=native_env())
    with vault.client(ca_file=str(other)) as c, pytest.raises(bkv.TlsError) as e:
        c.status(token)
    assert e.value.status == bkv.Status.ERR_TLS
    assert "TLS" in e.value.message
    with vault.client(pinned_cert=other) as c, pytest.raises(bkv.TlsError):
        c.status(token)
    with vault.client(ca_file=str(tmp_path / "missing.pem")) as c, pytest.raises(bkv.TlsError):
        c.status(token)


def test_a_path_where_no_vault_answers_raises_http_error_with_the_status(vault, token):
    with bkv.Client(vault.url + "/not/the/vault", ca_file=vault.ca_file) as c:
        with pytest.raises(bkv.HttpError) as e:
            c.status(token)
    assert e.value.http_status == 404
    assert "404" in e.value.message


def test_a_token_the_vault_rejects_raises_unauthenticated(client):
    with pytest.raises(bkv.Unauthenticated):
        client.status("not.a.jwt")


def test_no_vault_listening_raises_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with bkv.Client(f"https://127.0.0.1:{port}") as c, pytest.raises(bkv.Unavailable) as e:
        c.status("token")
    assert e.value.status == bkv.Status.ERR_UNAVAILABLE


def test_bad_arguments_raise_argument_error_before_anything_is_sent(client, token):
    with pytest.raises(bkv.ArgumentError):
        client.register(token, b"", bkv.generate_key())
    with pytest.raises(bkv.ArgumentError):
        client.register(token, b"pw", bytes(31))
    with pytest.raises(bkv.ArgumentError, match="NUL"):
        client.status(token + "\0")
    with pytest.raises(TypeError):
        client.recover(token, 12345)
    with pytest.raises(bkv.ArgumentError, match="https"):
        bkv.Client("ftp://127.0.0.1/")
    with pytest.raises(bkv.ArgumentError):
        bkv.Client("https://vault.example", argon2=(1, 0, 0))
    assert client.status(token).state == bkv.RecordState.ABSENT


def test_one_client_serves_several_threads_at_once(client, vault):
    # One account per thread: two recoveries of one account at once are a conflict by
    # design (the second finds its ticket used), which is not what this test is about.
    tokens = [vault.token() for _ in range(8)]
    keys = [bkv.generate_key() for _ in tokens]
    for t, k in zip(tokens, keys):
        client.register(t, b"shared client", k)
    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
        recovered = list(pool.map(lambda t: client.recover(t, b"shared client"), tokens))
    assert recovered == keys


def test_close_waits_for_a_call_another_thread_has_under_way(vault, token, monkeypatch):
    events = []
    closing = threading.Event()
    real_status_get, real_free = _native.lib.bkv_status_get, _native.lib.bkv_client_free

    def slow_status_get(*args):
        closing.wait(10)
        time.sleep(0.2)  # close() has been called and must be waiting now
        result = real_status_get(*args)
        events.append("status_get returned")
        return result

    def free(handle):
        events.append("free")
        real_free(handle)

    monkeypatch.setattr(_native.lib, "bkv_status_get", slow_status_get)
    monkeypatch.setattr(_native.lib, "bkv_client_free", free)
    c = vault.client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(c.status, token)
        while not c._calls:
            time.sleep(0.001)
        closing.set()
        c.close()
        assert call.result().state == bkv.RecordState.ABSENT
    assert events == ["status_get returned", "free"]
