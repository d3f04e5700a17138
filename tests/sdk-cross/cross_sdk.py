"""The Python side of tests/test_sdk_cross.sh: one bkv call through the Python binding per
run, with the same command line as tests/sdk-cross/CrossSdk.java (the Java side).

    python3 cross_sdk.py URL CA_FILE T,M,P SUITE TOKEN_FILE COMMAND [ARGS]

    recover PASSWORD_FILE              prints the key as 64 lowercase hex digits
    change-password OLD_FILE NEW_FILE
    register PASSWORD_FILE KEY_OUT     a key from bkv.generate_key, registered in place of
                                       whatever the account holds; its hex written to KEY_OUT
    status                             state=... suite=... attempts_used=N attempt_limit=N
                                       record_version=N

SUITE (p256-sha256, ristretto255-sha512) is the registration's suite; T,M,P the client's
Argon2id parameters. Passwords are read from their files as UTF-8 and passed as str, so
the binding's own UTF-8 encoding is what the other SDKs must agree with. Exit status: 0, 3
for a wrong password (attempts remaining on stderr), 1 otherwise.
"""

import sys
from pathlib import Path

import bkv

SUITES = {"p256-sha256": bkv.Suite.P256_SHA256,
          "ristretto255-sha512": bkv.Suite.RISTRETTO255_SHA512}
ARITY = {"status": 0, "recover": 1, "change-password": 2, "register": 2}


def password(path):
    return Path(path).read_bytes().decode("utf-8")


def run(args):
    if len(args) < 6 or ARITY.get(args[5]) != len(args) - 6:
        print("usage: cross_sdk.py URL CA_FILE T,M,P SUITE TOKEN_FILE COMMAND [ARGS]",
              file=sys.stderr)
        return 2
    url, ca_file, argon2, suite, token_file, command, *rest = args
    argon2 = tuple(int(x) for x in argon2.split(","))
    if len(argon2) != 3:
        raise ValueError("Argon2id parameters are T,M,P")
    token = Path(token_file).read_text("ascii").strip()
    with bkv.Client(url, ca_file=ca_file, suite=SUITES[suite], argon2=argon2) as client:
        if command == "status":
            s = client.status(token)
            name = {v: k for k, v in SUITES.items()}.get(s.suite, "-") if s.registered else "-"
            print(f"state={s.state.name.lower()} suite={name} attempts_used={s.attempts_used}"
                  f" attempt_limit={s.attempt_limit} record_version={s.record_version}")
        elif command == "recover":
            key = client.recover(token, password(rest[0]))
            print(bytes(key).hex())
            bkv.wipe(key)
        elif command == "change-password":
            client.change_password(token, password(rest[0]), password(rest[1]))
        else:  # register
            key = bkv.generate_key()
            replaces = client.status(token).record_version
            version = client.register_replacing(token, password(rest[0]), key, replaces)
            with open(rest[1], "x", encoding="ascii") as out:
                out.write(bytes(key).hex() + "\n")
            bkv.wipe(key)
            print(f"record_version={version}")
    return 0


def main():
    try:
        return run(sys.argv[1:])
    except bkv.WrongPassword as e:
        print(f"cross_sdk.py: wrong password: {e.attempts_remaining} attempts remaining",
              file=sys.stderr)
        return 3
    except (bkv.BkvError, OSError, ValueError, KeyError) as e:
        print(f"cross_sdk.py: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
