"""Backup files (docs/BACKUP-FORMAT.md): encrypt_file and decrypt_file over libbkv's
streaming bkv_backup_encrypt / bkv_backup_decrypt, as `bkv encrypt` / `bkv decrypt` do
it: the output is written to a temporary file next to the destination (mode 0600) and
renamed into place only when the whole file is done (for decryption: verified), so a
failure leaves nothing behind.
"""

import ctypes
import os
import stat
import tempfile

from . import _native
from ._api import _check, _key_arg
from ._native import lib, libc
from .errors import IoError


def encrypt_file(key, source, destination, progress=None):
    """Encrypts the file source into destination (which must not exist) with the 32-byte
    backup key. progress, if given, is called as progress(done, total) with the bytes
    read so far every few chunks and at the end; an exception it raises is raised after
    the call, and the output is discarded."""
    _crypt_file(lib.bkv_backup_encrypt, key, source, destination, progress)


def decrypt_file(key, source, destination, progress=None):
    """Decrypts the backup file source into destination (which must not exist), which
    appears only once every chunk has verified. WrongKey, Truncated, Tampered and
    FormatError say what is wrong with the file; arguments as for encrypt_file."""
    _crypt_file(lib.bkv_backup_decrypt, key, source, destination, progress)


def _fdopen(fd, mode):
    stream = libc.fdopen(fd, mode)
    if not stream:
        code = ctypes.get_errno()
        os.close(fd)
        raise OSError(code, os.strerror(code))
    return stream


def _crypt_file(crypt, key, source, destination, progress):
    destination = os.fspath(destination)
    if os.path.lexists(destination):
        raise FileExistsError(17, "exists; not overwriting it", destination)
    progress_errors = []

    def report(_arg, done, total):
        if not progress_errors:
            try:
                progress(done, total)
            except BaseException as e:  # cannot cross the C frames: raised after the call
                progress_errors.append(e)

    callback = _native.bkv_progress_fn(report if progress is not None else 0)  # 0: NULL
    source_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    in_stream = _fdopen(source_fd, b"rb")  # owns source_fd from here on
    partial = None
    try:
        source_info = os.fstat(source_fd)
        total = source_info.st_size if stat.S_ISREG(source_info.st_mode) else 0
        out_fd, partial = tempfile.mkstemp(
            dir=os.path.dirname(os.path.abspath(destination)),
            prefix=os.path.basename(destination) + ".partial-")
        out_stream = _fdopen(out_fd, b"wb")
        err = _native.bkv_error()
        try:
            with _key_arg(key) as k:
                status = crypt(k.pointer, in_stream, out_stream, total, callback, None,
                               ctypes.byref(err))
            if status == 0:
                if libc.fflush(out_stream) != 0:
                    raise IoError(f"cannot write {partial}: {os.strerror(ctypes.get_errno())}")
                os.fsync(out_fd)
        finally:
            closed = libc.fclose(out_stream)
        _check(status, err)
        if closed != 0:
            raise IoError(f"cannot write {partial}: {os.strerror(ctypes.get_errno())}")
        if progress_errors:
            raise progress_errors[0]
        os.rename(partial, destination)
        partial = None
    finally:
        libc.fclose(in_stream)
        if partial is not None:
            os.unlink(partial)
