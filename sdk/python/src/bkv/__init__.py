"""bkv: the Python binding of libbkv, the client of the bkv backup key vault.

    import bkv

    with bkv.Client("https://vault.example", ca_file="ca.pem") as client:
        key = bkv.generate_key()
        client.register(token, password, key)
        ...
        key = client.recover(token, password)   # a bytearray
        ...
        bkv.wipe(key)

See sdk/python/README.md. libbkv.so.0 is loaded from $BKV_LIBRARY if set, else from the
dynamic loader's path.
"""

from ._api import (
    KEY_BYTES,
    AccountStatus,
    Client,
    RecordState,
    Suite,
    format_key,
    generate_key,
    parse_key,
    status_name,
    version,
    wipe,
)
from ._backup import decrypt_file, encrypt_file
from .errors import (
    AlreadyRegistered,
    ArgumentError,
    BkvError,
    Conflict,
    DataLoss,
    Destroyed,
    FormatError,
    HttpError,
    InternalError,
    IoError,
    NotRegistered,
    OutOfMemory,
    ProtocolError,
    RateLimited,
    Status,
    Tampered,
    TlsError,
    Truncated,
    Unauthenticated,
    Unavailable,
    WrongKey,
    WrongPassword,
    error_class,
)

__version__ = "0.1.0"

__all__ = [
    "AccountStatus",
    "AlreadyRegistered",
    "ArgumentError",
    "BkvError",
    "Client",
    "Conflict",
    "DataLoss",
    "Destroyed",
    "FormatError",
    "HttpError",
    "InternalError",
    "IoError",
    "KEY_BYTES",
    "NotRegistered",
    "OutOfMemory",
    "ProtocolError",
    "RateLimited",
    "RecordState",
    "Status",
    "Suite",
    "Tampered",
    "TlsError",
    "Truncated",
    "Unauthenticated",
    "Unavailable",
    "WrongKey",
    "WrongPassword",
    "decrypt_file",
    "encrypt_file",
    "error_class",
    "format_key",
    "generate_key",
    "parse_key",
    "status_name",
    "version",
    "wipe",
]
