"""The calls: backup keys (generate, format, parse, wipe) and Client, over libbkv.

Secrets: keys come back as bytearrays that libbkv writes into directly, so the only copy
is the caller's, which wipe() clears. Passwords and keys given as bytes or bytearray are
handed to libbkv as pointers to their own storage, never copied here. A str password is
encoded to UTF-8 (no normalization, no trimming: libbkv takes the bytes as they are), and
neither the str nor its encoding can be wiped: pass a bytearray where that matters.
"""

import ctypes
import dataclasses
import enum
import threading

from . import _native
from ._native import lib
from .errors import ArgumentError, Status, error_class

KEY_BYTES = _native.BKV_KEY_BYTES


class Suite(enum.IntEnum):
    """bkv_suite: the OPAQUE cipher suite a registration uses."""

    VAULT_PREFERENCE = 0
    P256_SHA256 = 1
    RISTRETTO255_SHA512 = 2


class RecordState(enum.IntEnum):
    """bkv_record_state: what the vault holds for an account."""

    UNKNOWN = 0
    ABSENT = 1
    REGISTERED = 2
    DESTROYED = 3


@dataclasses.dataclass(frozen=True)
class AccountStatus:
    """What the vault holds for an account (bkv_account_status)."""

    state: RecordState
    registered: bool
    suite: Suite
    attempts_used: int
    attempt_limit: int
    record_version: int
    registered_at_unix: int
    destroyed_at_unix: int


def version():
    """The version of the libbkv loaded, e.g. "0.1.0"."""
    return lib.bkv_version().decode("ascii")


def status_name(status):
    """libbkv's short English name of a bkv_status ("wrong password")."""
    return lib.bkv_status_name(int(status)).decode("ascii")


def wipe(buffer):
    """Zeroes a bytearray (or another writable buffer) in place with memset, e.g. a key
    from recover() or generate_key() once it is no longer needed. bytes and str are
    immutable and cannot be wiped: TypeError."""
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("wipe() needs a writable buffer such as a bytearray")
    view = view.cast("B")
    if view.nbytes:
        ctypes.memset((ctypes.c_char * view.nbytes).from_buffer(view), 0, view.nbytes)


class _Borrowed:
    """A bytes-like argument as (pointer, length) for one call, without a copy. For a
    bytearray the ctypes view pins it (it cannot be resized) until close()."""

    def __init__(self, data, what, encode_str=False):
        self._view = None
        self._copy = None
        if isinstance(data, str) and encode_str:
            data = data.encode("utf-8")
        if isinstance(data, bytes):
            self.pointer, self.length = data, len(data)
        elif isinstance(data, (bytearray, memoryview)):
            view = memoryview(data).cast("B")
            self.length = view.nbytes
            if view.readonly:  # a copy of our own, wiped by close()
                self._copy = bytearray(view)
                view.release()
                view = memoryview(self._copy)
            self._view = (ctypes.c_char * self.length).from_buffer(view)
            self.pointer = self._view
        else:
            kinds = "bytes, bytearray or str" if encode_str else "bytes or bytearray"
            raise TypeError(f"{what} must be {kinds}, not {type(data).__name__}")

    def close(self):
        self.pointer = self._view = None
        if self._copy is not None:
            wipe(self._copy)
            self._copy = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _raise(err, info=None):
    """Raises the exception for a filled bkv_error (and recover info, when there is one)."""
    try:
        status = Status(err.status)
    except ValueError:  # a newer libbkv's status
        status = err.status
    fields = {
        "status": status,
        "http_status": err.http_status,
        "retry_after_ms": err.retry_after_ms,
    }
    if info is not None:
        if info.attempts_known:
            fields["attempts_remaining"] = info.attempts_remaining
            fields["attempt_limit"] = info.attempt_limit
        fields["destroyed"] = bool(info.destroyed)
    message = err.message.decode("utf-8", errors="replace") or status_name(err.status)
    raise error_class(err.status)(message, **fields)


def _check(status, err, info=None):
    if status != Status.OK:
        err.status = status  # also for the calls that fill no bkv_error
        _raise(err, info)


def _key_arg(key):
    if not isinstance(key, (bytes, bytearray, memoryview)) or memoryview(key).nbytes != KEY_BYTES:
        raise ArgumentError(f"a key is {KEY_BYTES} bytes (a bytes or bytearray)")
    return _Borrowed(key, "key")


def generate_key():
    """A new random backup key: 32 bytes from the OS CSPRNG, in a bytearray."""
    key = bytearray(KEY_BYTES)
    view = (ctypes.c_char * KEY_BYTES).from_buffer(key)
    _check(lib.bkv_key_generate(view), _native.bkv_error())
    del view
    return key


def format_key(key):
    """The key as people see it: 64 lowercase hex digits in 16 groups of 4, as ASCII in a
    bytearray (79 bytes) that can be wiped; .decode() it to show it."""
    buf = ctypes.create_string_buffer(_native.BKV_KEY_TEXT_BYTES)
    try:
        with _key_arg(key) as k:
            _check(lib.bkv_key_format(k.pointer, buf, len(buf)), _native.bkv_error())
        text = bytearray(_native.BKV_KEY_TEXT_BYTES - 1)
        ctypes.memmove((ctypes.c_char * len(text)).from_buffer(text), buf, len(text))
        return text
    finally:
        ctypes.memset(buf, 0, len(buf))


def parse_key(text):
    """A key from its text (str, bytes or bytearray): hex digits in upper or lower case,
    with spaces, dashes and line breaks anywhere. ArgumentError says where it is wrong."""
    key = bytearray(KEY_BYTES)
    err = _native.bkv_error()
    view = (ctypes.c_char * KEY_BYTES).from_buffer(key)
    with _Borrowed(text, "key text", encode_str=True) as t:
        status = lib.bkv_key_parse(t.pointer, t.length, view, ctypes.byref(err))
    del view
    _check(status, err)
    return key


class Client:
    """A client of one vault (bkv_client). Use it as a context manager, or call close().

    vault_url: "https://host[:port][/path]" (http:// only for a loopback host).
    ca_file: a PEM CA bundle (None: the system's). pinned_cert: a PEM certificate whose
    public key the vault must present (None: no pin). timeout_ms: per request (0: 30 s).
    suite: the preferred suite for registrations. argon2: (iterations, memory_kib,
    parallelism) to use instead of the vault's published parameters (an application's own
    decision, not held to libbkv's floor; every recovery must use the same); None for
    the vault's. Makes no network call. A Client may be used from several threads.
    """

    def __init__(
        self,
        vault_url,
        *,
        ca_file=None,
        pinned_cert=None,
        timeout_ms=0,
        suite=Suite.VAULT_PREFERENCE,
        argon2=None,
    ):
        self._handle = None
        self._calls = 0
        self._idle = threading.Condition()
        config = _native.bkv_client_config()
        config.vault_url = _c_string(vault_url, "vault_url")
        config.ca_file = None if ca_file is None else _c_string(ca_file, "ca_file")
        config.pinned_cert = None if pinned_cert is None else _c_string(pinned_cert, "pinned_cert")
        config.timeout_ms = timeout_ms
        config.suite = int(suite)
        if argon2 is not None:
            (
                config.argon2_iterations,
                config.argon2_memory_kib,
                config.argon2_parallelism,
            ) = argon2
        handle = ctypes.c_void_p()
        err = _native.bkv_error()
        status = lib.bkv_client_new(ctypes.byref(config), ctypes.byref(handle), ctypes.byref(err))
        _check(status, err)
        self._handle = handle

    @property
    def closed(self):
        return self._handle is None

    def close(self):
        """Frees the C client (waiting for calls other threads have under way). Idempotent."""
        with self._idle:
            while self._calls:
                self._idle.wait()
            handle, self._handle = self._handle, None
        if handle is not None:
            lib.bkv_client_free(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            lib.bkv_client_free(self._handle)
            self._handle = None

    def _begin(self):
        with self._idle:
            if self._handle is None:
                raise ValueError("the bkv client is closed")
            self._calls += 1
            return self._handle

    def _end(self):
        with self._idle:
            self._calls -= 1
            self._idle.notify_all()

    def register(self, account_token, password, key, attempt_limit=0):
        """Registers key (32 bytes) under password for the account. Only creates:
        AlreadyRegistered if the account has a key or a destroyed key's tombstone.
        attempt_limit: 0 for the vault's default."""
        self.register_replacing(account_token, password, key, 0, attempt_limit)

    def register_replacing(self, account_token, password, key, replaces_record_version,
                           attempt_limit=0):
        """Registers key in place of the record of version replaces_record_version (from
        status(); 0 creates, as register does). Conflict if the record is not that version
        any more. Returns the new record version."""
        token = _token(account_token)
        err = _native.bkv_error()
        new_version = ctypes.c_uint64()
        with _Borrowed(password, "password", encode_str=True) as pw, _key_arg(key) as k:
            handle = self._begin()
            try:
                status = lib.bkv_register_replacing(
                    handle, token, pw.pointer, pw.length, k.pointer, attempt_limit,
                    replaces_record_version, ctypes.byref(new_version), ctypes.byref(err))
            finally:
                self._end()
        _check(status, err)
        return new_version.value

    def recover(self, account_token, password):
        """The account's key, in a bytearray (wipe() it when done). WrongPassword carries
        attempts_remaining; Destroyed when this or an earlier attempt was the last."""
        token = _token(account_token)
        err = _native.bkv_error()
        info = _native.bkv_recover_info()
        key = bytearray(KEY_BYTES)
        view = (ctypes.c_char * KEY_BYTES).from_buffer(key)
        with _Borrowed(password, "password", encode_str=True) as pw:
            handle = self._begin()
            try:
                status = lib.bkv_recover(handle, token, pw.pointer, pw.length, view,
                                         ctypes.byref(info), ctypes.byref(err))
            finally:
                self._end()
        del view
        _check(status, err, info)
        return key

    def change_password(self, account_token, old_password, new_password):
        """Recovers with old_password and registers the same key under new_password in
        place of exactly that record. Raises what recover raises, and Conflict."""
        token = _token(account_token)
        err = _native.bkv_error()
        info = _native.bkv_recover_info()
        with _Borrowed(old_password, "old_password", encode_str=True) as old, \
                _Borrowed(new_password, "new_password", encode_str=True) as new:
            handle = self._begin()
            try:
                status = lib.bkv_change_password(handle, token, old.pointer, old.length,
                                                 new.pointer, new.length, ctypes.byref(info),
                                                 ctypes.byref(err))
            finally:
                self._end()
        _check(status, err, info)

    def status(self, account_token):
        """What the vault holds for the account (an AccountStatus). A destroyed key is a
        status with state RecordState.DESTROYED, not an exception."""
        token = _token(account_token)
        err = _native.bkv_error()
        out = _native.bkv_account_status()
        handle = self._begin()
        try:
            status = lib.bkv_status_get(handle, token, ctypes.byref(out), ctypes.byref(err))
        finally:
            self._end()
        _check(status, err)
        return AccountStatus(
            state=RecordState(out.state),
            registered=bool(out.registered),
            suite=Suite(out.suite),
            attempts_used=out.attempts_used,
            attempt_limit=out.attempt_limit,
            record_version=out.record_version,
            registered_at_unix=out.registered_at_unix,
            destroyed_at_unix=out.destroyed_at_unix,
        )

    def delete(self, account_token):
        """Deletes the account's record (a destroyed key's tombstone too). Returns whether
        there was one."""
        token = _token(account_token)
        err = _native.bkv_error()
        deleted = ctypes.c_bool()
        handle = self._begin()
        try:
            status = lib.bkv_delete(handle, token, ctypes.byref(deleted), ctypes.byref(err))
        finally:
            self._end()
        _check(status, err)
        return bool(deleted.value)


def _c_string(value, what):
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif hasattr(value, "__fspath__"):
        value = value.__fspath__()
        value = value.encode("utf-8") if isinstance(value, str) else value
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be str, bytes or a path")
    if b"\0" in value:
        raise ArgumentError(f"{what} contains a NUL byte")
    return value


def _token(account_token):
    return _c_string(account_token, "account_token")
