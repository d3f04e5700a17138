#!/usr/bin/env bash
# run-tests.sh - the Python binding as a user gets it: builds the wheel from a copy of
# sdk/python (pip wheel with Debian's setuptools and wheel, no network), installs it into a
# directory of its own, and runs the pytest suite against that install with BKV_LIBRARY
# naming the build's libbkv.so.0 and a real bkvd (tests/conftest.py) on 127.0.0.1.
#
#   [tests/with-vault] sdk/python/tests/run-tests.sh BUILD_DIR SOURCE_DIR [C_COMPILER]
#
# Works in $BKV_TEST_DIR when run under tests/with-vault (which removes it and any bkvd
# left there), else in a directory of its own removed on exit. Uses /usr/bin/python3,
# Debian's, with python3-pytest, python3-pip, python3-setuptools and python3-wheel.
set -euo pipefail

build=$(cd "${1:?usage: run-tests.sh BUILD_DIR SOURCE_DIR [CC]}" && pwd)
src=$(cd "${2:?usage: run-tests.sh BUILD_DIR SOURCE_DIR [CC]}" && pwd)
export CC=${3:-cc}
python=/usr/bin/python3

work=$(mktemp -d "${BKV_TEST_DIR:-${TMPDIR:-/tmp}}/bkv-python.XXXXXXXX")
trap 'rm -rf "$work"' EXIT

# A copy, so that the build leaves nothing (build/, *.egg-info) in the source tree.
cp -r "$src/sdk/python" "$work/src"
rm -rf "$work/src/build" "$work/src/src/bkv.egg-info"
(cd "$work/src" && "$python" -m pip wheel --quiet --no-deps --no-build-isolation --no-index \
  -w "$work/wheel" .)
wheel=$(ls "$work"/wheel/bkv-*-py3-none-any.whl)
echo "built $(basename "$wheel")"
"$python" -m pip install --quiet --no-deps --no-index --target "$work/site" "$wheel" \
  2> >(grep -v "Running pip as the 'root' user" >&2)

export PYTHONPATH=$work/site
export PYTHONDONTWRITEBYTECODE=1
export BKV_EXPECT_PACKAGE_IN=$work/site
export BKV_LIBRARY=$build/lib/libbkv.so.0
export BKVD=$build/bin/bkvd
export BKV_SOURCE_DIR=$src
export BKV_INCLUDE=$src/client/include:$build/client/include
export BKV_TEST_DIR=$work

# A libbkv built with -DBKV_SANITIZE=ON needs the ASan runtime loaded first, which the
# Python interpreter (not instrumented) does not do: preload it into Python, with leak
# detection off there (the interpreter's own allocations at exit are not libbkv's; the C
# tests check libbkv for leaks), and Python allocating with malloc so that ASan sees the
# bounds of the buffers the binding hands libbkv (pymalloc's arenas hide them).
# conftest.py's native_env() gives the programs the tests start (bkvd and bkv, which are
# instrumented with their own runtime; openssl; cc) the environment without these.
runtime=$(ldd "$BKV_LIBRARY" | awk '/libasan\.so/ { print $3 }')
if [ -z "$runtime" ] && nm -D "$BKV_LIBRARY" | grep ' U __asan_init' >/dev/null; then
  runtime=$("$CC" -print-file-name="libclang_rt.asan-$(uname -m).so")
fi
if [ -n "$runtime" ]; then
  [ -f "$runtime" ] || { echo "libbkv is built with ASan, but $runtime is missing" >&2; exit 1; }
  echo "libbkv is built with ASan: preloading $runtime into Python"
  export BKV_NATIVE_ASAN_OPTIONS=${ASAN_OPTIONS:-}
  export BKV_NATIVE_LD_PRELOAD=${LD_PRELOAD:-}
  export LD_PRELOAD=$runtime${LD_PRELOAD:+:$LD_PRELOAD}
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
  export PYTHONMALLOC=malloc
fi
# Run from the tests' directory (short names); pytest writes nothing there (no cache, no
# bytecode) and keeps its tmp_path directories under $work.
cd "$src/sdk/python/tests"
"$python" -m pytest -p no:cacheprovider -v --basetemp "$work/pytest" .
