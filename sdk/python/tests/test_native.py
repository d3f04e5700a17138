"""The ctypes declarations (bkv/_native.py) against bkv.h as the C compiler reads it:
every structure's fields (names and order from the header), size and field offsets, and
every enum value. A mismatch here would make libbkv read or write the wrong bytes.

Needs BKV_INCLUDE (the directories of bkv.h and bkv_version.h, ':'-separated) and a C
compiler ($CC or cc); run-tests.sh sets them.
"""

import ctypes
import os
import re
import subprocess
from pathlib import Path

import pytest

import bkv
from bkv import _native
from conftest import native_env

INCLUDE = [d for d in os.environ.get("BKV_INCLUDE", "").split(":") if d]
pytestmark = pytest.mark.skipif(not INCLUDE, reason="BKV_INCLUDE is not set")


def header():
    for d in INCLUDE:
        if (Path(d) / "bkv.h").exists():
            return re.sub(r"/\*.*?\*/", "", (Path(d) / "bkv.h").read_text(), flags=re.S)
    raise FileNotFoundError("bkv.h in BKV_INCLUDE")


def enum_names(name):
    body = re.search(r"typedef enum %s \{(.*?)\} %s;" % (name, name), header(), re.S).group(1)
    return re.findall(r"^\s*(BKV_[A-Z0-9_]+)", body, re.M)


def struct_fields(name):
    body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), header(), re.S).group(1)
    return [re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", d).group(1)
            for d in body.split(";") if d.strip()]


def compiled_values(tmp_path, lines):
    """Runs a C program printing "NAME VALUE" for each (NAME, C expression) in lines."""
    src = tmp_path / "layout.c"
    body = "".join(f'\tprintf("%s %%llu\\n", (unsigned long long)({expr}));\n' % name
                   for name, expr in lines)
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <bkv.h>\n"
                   "int main(void)\n{\n" + body + "\treturn 0;\n}\n")
    exe = tmp_path / "layout"
    cc = os.environ.get("CC") or "cc"
    subprocess.run([cc, *(f"-I{d}" for d in INCLUDE), str(src), "-o", str(exe)], check=True,
                   env=native_env())
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True,
                         env=native_env()).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("struct", _native.STRUCTS, ids=lambda s: s.__name__)
def test_structure_matches_the_header(struct, tmp_path):
    name = struct.__name__
    assert [f[0] for f in struct._fields_] == struct_fields(name)
    lines = [(name, f"sizeof({name})")]
    for field, _ in struct._fields_:
        lines.append((f"{field}.offset", f"offsetof({name}, {field})"))
        lines.append((f"{field}.size", f"sizeof((({name} *)0)->{field})"))
    c = compiled_values(tmp_path, lines)
    assert ctypes.sizeof(struct) == c[name]
    for field, _ in struct._fields_:
        assert getattr(struct, field).offset == c[f"{field}.offset"], field
        assert getattr(struct, field).size == c[f"{field}.size"], field


@pytest.mark.parametrize("c_enum, py_enum, prefix", [
    ("bkv_status", bkv.Status, "BKV_"),
    ("bkv_suite", bkv.Suite, "BKV_SUITE_"),
    ("bkv_record_state", bkv.RecordState, "BKV_RECORD_"),
])
def test_enum_matches_the_header(c_enum, py_enum, prefix, tmp_path):
    names = enum_names(c_enum)
    assert [n[len(prefix):] for n in names] == [m.name for m in py_enum]
    c = compiled_values(tmp_path, [(n, n) for n in names] + [("enum_size", f"sizeof({c_enum})")])
    assert c.pop("enum_size") == ctypes.sizeof(ctypes.c_int)
    assert {n[len(prefix):]: v for n, v in c.items()} == {m.name: m.value for m in py_enum}


def test_buffer_sizes_match_the_header(tmp_path):
    names = ["BKV_KEY_BYTES", "BKV_KEY_TEXT_BYTES", "BKV_MESSAGE_BYTES"]
    c = compiled_values(tmp_path, [(n, n) for n in names])
    assert c == {n: getattr(_native, n) for n in names}
