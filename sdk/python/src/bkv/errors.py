"""The exceptions: BkvError, and one subclass for each failing bkv_status of bkv.h.

Every exception carries what libbkv said: ``status`` (a Status), ``message`` (libbkv's
text, safe to show: control characters are replaced), ``http_status`` and
``retry_after_ms`` (0 when they do not apply), and for recover and change_password
``attempts_remaining`` / ``attempt_limit`` (None when the vault did not say) and
``destroyed``. docs/SDK.md's error table says what an application does about each.
"""

import enum


class Status(enum.IntEnum):
    """bkv_status; the values are fixed, new ones are only ever added at the end."""

    OK = 0
    ERR_ARGUMENT = 1
    ERR_WRONG_PASSWORD = 2
    ERR_DESTROYED = 3
    ERR_NOT_REGISTERED = 4
    ERR_UNAUTHENTICATED = 5
    ERR_UNAVAILABLE = 6
    ERR_PROTOCOL = 7
    ERR_IO = 8
    ERR_FORMAT = 9
    ERR_TRUNCATED = 10
    ERR_TAMPERED = 11
    ERR_WRONG_KEY = 12
    ERR_NOMEM = 13
    ERR_INTERNAL = 14
    ERR_ALREADY_REGISTERED = 15
    ERR_CONFLICT = 16
    ERR_DATA_LOSS = 17
    ERR_TLS = 18
    ERR_HTTP = 19
    ERR_RATE_LIMITED = 20


class BkvError(Exception):
    """A call into libbkv failed. ``status`` is an int (a Status when libbkv's is known)."""

    def __init__(
        self,
        message,
        status=None,
        http_status=0,
        retry_after_ms=0,
        attempts_remaining=None,
        attempt_limit=None,
        destroyed=False,
    ):
        super().__init__(message)
        self.message = message
        self.status = _STATUS_OF.get(type(self), status) if status is None else status
        self.http_status = http_status
        self.retry_after_ms = retry_after_ms
        self.attempts_remaining = attempts_remaining
        self.attempt_limit = attempt_limit
        self.destroyed = destroyed

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r})"


class ArgumentError(BkvError, ValueError):
    """Bad input; the message says which and where. Fix the call."""


class WrongPassword(BkvError):
    """The password did not open the key; ``attempts_remaining`` are left."""


class Destroyed(BkvError):
    """No attempts left: the vault destroyed the key. It exists only if written down."""


class NotRegistered(BkvError):
    """The vault holds no key for this account."""


class Unauthenticated(BkvError):
    """The vault rejected the account token: get a fresh one."""


class Unavailable(BkvError):
    """The vault cannot be reached or is temporarily down: retry with backoff
    (``retry_after_ms`` if the vault said how long to wait)."""


class ProtocolError(BkvError):
    """The vault's answer was malformed or failed verification, or its Argon2id
    parameters are below libbkv's floor. Do not retry blindly."""


class IoError(BkvError):
    """Reading or writing a file failed."""


class FormatError(BkvError):
    """A backup file is not in the bkv format or is corrupted."""


class Truncated(BkvError):
    """A backup file ends early."""


class Tampered(BkvError):
    """A backup chunk failed authentication, is out of order, or data follows the end."""


class WrongKey(BkvError):
    """The backup was encrypted with another key."""


class OutOfMemory(BkvError):
    """libbkv could not allocate memory."""


class InternalError(BkvError):
    """libsodium or libcurl could not start, or another internal failure."""


class AlreadyRegistered(BkvError):
    """A key, or a destroyed key's tombstone, is in the vault: read ``Client.status`` and
    use ``Client.register_replacing`` if replacing it is what the user wants."""


class Conflict(BkvError):
    """The record changed since its version was read: read the status again, retry."""


class DataLoss(BkvError):
    """The vault's stored record failed its integrity check: report to its operator."""


class TlsError(BkvError):
    """TLS failed: the vault's certificate is not trusted, is not the pinned one, or the
    CA file cannot be read. Possibly a man in the middle: never retry automatically."""


class HttpError(BkvError):
    """Something answered, but not with the Connect protocol (a proxy's 502, a wrong
    path's 404 page, a bare 401); the status is ``http_status``."""


class RateLimited(BkvError):
    """Too many requests: retry after ``retry_after_ms`` (0: the vault did not say)."""


_CLASS_OF = {
    Status.ERR_ARGUMENT: ArgumentError,
    Status.ERR_WRONG_PASSWORD: WrongPassword,
    Status.ERR_DESTROYED: Destroyed,
    Status.ERR_NOT_REGISTERED: NotRegistered,
    Status.ERR_UNAUTHENTICATED: Unauthenticated,
    Status.ERR_UNAVAILABLE: Unavailable,
    Status.ERR_PROTOCOL: ProtocolError,
    Status.ERR_IO: IoError,
    Status.ERR_FORMAT: FormatError,
    Status.ERR_TRUNCATED: Truncated,
    Status.ERR_TAMPERED: Tampered,
    Status.ERR_WRONG_KEY: WrongKey,
    Status.ERR_NOMEM: OutOfMemory,
    Status.ERR_INTERNAL: InternalError,
    Status.ERR_ALREADY_REGISTERED: AlreadyRegistered,
    Status.ERR_CONFLICT: Conflict,
    Status.ERR_DATA_LOSS: DataLoss,
    Status.ERR_TLS: TlsError,
    Status.ERR_HTTP: HttpError,
    Status.ERR_RATE_LIMITED: RateLimited,
}
_STATUS_OF = {cls: status for status, cls in _CLASS_OF.items()}


def error_class(status):
    """The exception class for a bkv_status value (BkvError for one this package does not
    know: a newer libbkv's)."""
    try:
        return _CLASS_OF[Status(status)]
    except (ValueError, KeyError):
        return BkvError
