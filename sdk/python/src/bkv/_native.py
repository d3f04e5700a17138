"""The ctypes declarations of bkv.h, and where libbkv.so.0 is loaded from.

Everything here mirrors client/include/bkv.h; tests/test_native.py compiles a C program
against that header and checks every structure's size and field offsets and every
status value against what is declared here. Nothing outside this package should import
this module.
"""

import ctypes
import os

BKV_KEY_BYTES = 32
BKV_KEY_TEXT_BYTES = 80
BKV_MESSAGE_BYTES = 256

# The soname: the only major version these declarations describe.
SONAME = "libbkv.so.0"


class bkv_error(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_int),
        ("message", ctypes.c_char * BKV_MESSAGE_BYTES),
        ("http_status", ctypes.c_int),
        ("retry_after_ms", ctypes.c_uint32),
    ]


class bkv_key(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint8 * BKV_KEY_BYTES)]


class bkv_client_config(ctypes.Structure):
    _fields_ = [
        ("vault_url", ctypes.c_char_p),
        ("ca_file", ctypes.c_char_p),
        ("pinned_cert", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_long),
        ("suite", ctypes.c_int),
        ("argon2_iterations", ctypes.c_uint32),
        ("argon2_memory_kib", ctypes.c_uint32),
        ("argon2_parallelism", ctypes.c_uint32),
    ]


class bkv_recover_info(ctypes.Structure):
    _fields_ = [
        ("attempts_remaining", ctypes.c_uint32),
        ("attempt_limit", ctypes.c_uint32),
        ("attempts_known", ctypes.c_bool),
        ("destroyed", ctypes.c_bool),
    ]


class bkv_account_status(ctypes.Structure):
    _fields_ = [
        ("registered", ctypes.c_bool),
        ("suite", ctypes.c_int),
        ("attempts_used", ctypes.c_uint32),
        ("attempt_limit", ctypes.c_uint32),
        ("record_version", ctypes.c_uint64),
        ("registered_at_unix", ctypes.c_int64),
        ("state", ctypes.c_int),
        ("destroyed_at_unix", ctypes.c_int64),
    ]


# void (*)(void *arg, uint64_t done, uint64_t total)
bkv_progress_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)

STRUCTS = (bkv_error, bkv_key, bkv_client_config, bkv_recover_info, bkv_account_status)

_c = ctypes
_status = _c.c_int
_ptr = _c.POINTER
# Buffers (passwords, keys, key text) are c_void_p: a bytes object is passed as a pointer
# to its own storage, a bytearray through a ctypes array made with from_buffer, so no
# copy of a secret is made on the way in.
_buf = _c.c_void_p

_PROTOTYPES = {
    "bkv_status_name": (_c.c_char_p, [_status]),
    "bkv_version": (_c.c_char_p, []),
    "bkv_key_generate": (_status, [_buf]),
    "bkv_key_format": (_status, [_buf, _buf, _c.c_size_t]),
    "bkv_key_parse": (_status, [_buf, _c.c_size_t, _buf, _ptr(bkv_error)]),
    "bkv_key_wipe": (None, [_buf]),
    "bkv_client_new": (
        _status,
        [_ptr(bkv_client_config), _ptr(_c.c_void_p), _ptr(bkv_error)],
    ),
    "bkv_client_free": (None, [_c.c_void_p]),
    "bkv_register": (
        _status,
        [_c.c_void_p, _c.c_char_p, _buf, _c.c_size_t, _buf, _c.c_uint32, _ptr(bkv_error)],
    ),
    "bkv_register_replacing": (
        _status,
        [
            _c.c_void_p,
            _c.c_char_p,
            _buf,
            _c.c_size_t,
            _buf,
            _c.c_uint32,
            _c.c_uint64,
            _ptr(_c.c_uint64),
            _ptr(bkv_error),
        ],
    ),
    "bkv_recover": (
        _status,
        [
            _c.c_void_p,
            _c.c_char_p,
            _buf,
            _c.c_size_t,
            _buf,
            _ptr(bkv_recover_info),
            _ptr(bkv_error),
        ],
    ),
    "bkv_change_password": (
        _status,
        [
            _c.c_void_p,
            _c.c_char_p,
            _buf,
            _c.c_size_t,
            _buf,
            _c.c_size_t,
            _ptr(bkv_recover_info),
            _ptr(bkv_error),
        ],
    ),
    "bkv_status_get": (
        _status,
        [_c.c_void_p, _c.c_char_p, _ptr(bkv_account_status), _ptr(bkv_error)],
    ),
    "bkv_delete": (
        _status,
        [_c.c_void_p, _c.c_char_p, _ptr(_c.c_bool), _ptr(bkv_error)],
    ),
    # FILE * is a c_void_p from libc's fdopen (see libc below).
    "bkv_backup_encrypt": (
        _status,
        [_buf, _c.c_void_p, _c.c_void_p, _c.c_uint64, bkv_progress_fn, _c.c_void_p,
         _ptr(bkv_error)],
    ),
    "bkv_backup_decrypt": (
        _status,
        [_buf, _c.c_void_p, _c.c_void_p, _c.c_uint64, bkv_progress_fn, _c.c_void_p,
         _ptr(bkv_error)],
    ),
}


def _load():
    """libbkv from $BKV_LIBRARY (a path) if set, else libbkv.so.0 from the loader's path."""
    path = os.environ.get("BKV_LIBRARY") or SONAME
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(
            f"cannot load libbkv ({path}): install libbkv.so.0 where the dynamic loader "
            f"finds it, or set BKV_LIBRARY to its path ({e})"
        ) from e
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _load_libc():
    """The C library's stdio calls, to hand libbkv's backup calls FILE streams."""
    libc = ctypes.CDLL(None, use_errno=True)
    for name, (restype, argtypes) in {
        "fdopen": (_c.c_void_p, [_c.c_int, _c.c_char_p]),
        "fflush": (_c.c_int, [_c.c_void_p]),
        "fclose": (_c.c_int, [_c.c_void_p]),
    }.items():
        fn = getattr(libc, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return libc


lib = _load()
libc = _load_libc()
