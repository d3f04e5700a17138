"""The example in sdk/python/README.md runs as written against the test vault and
recovers the key it registered."""

import contextlib
import functools
import io
import re
import types
from pathlib import Path

import bkv
from conftest import LIGHT_ARGON2


def test_the_readme_example_registers_and_recovers_a_key(vault, token):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace("import bkv\n", "")  # the shim below stands for it
    code = code.replace('"https://vault.example"', repr(vault.url))
    code = code.replace('"/etc/bkv/ca.pem"', repr(vault.ca_file))
    used = []
    password = bytearray("correct horse battery staple".encode())
    # The vault publishes a light Argon2id below libbkv's floor; the example uses the
    # vault's parameters, so its client gets the same light ones set explicitly.
    shim = types.SimpleNamespace(**{n: getattr(bkv, n) for n in bkv.__all__})
    shim.Client = functools.partial(bkv.Client, argon2=LIGHT_ARGON2)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"bkv": shim, "get_account_token": lambda: token,
                    "ask_password": lambda: password,
                    "use": lambda key: used.append(bytes(key))})
    written_down = re.search(r"write this down: ([0-9a-f ]+)\n", out.getvalue()).group(1)
    assert used == [bytes(bkv.parse_key(written_down))]
    assert password == bytearray(len(password))  # wiped at the end
