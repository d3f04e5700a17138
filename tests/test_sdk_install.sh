#!/usr/bin/env bash
# test_sdk_install.sh - libbkv as an SDK user gets it: `cmake --install` into a fresh
# prefix, then client/examples/recover_key.c built against that prefix only, with
# pkg-config (shared, and libbkv.a with the libraries of Requires.private) and with a CMake project using
# find_package(bkv) (bkv::bkv and bkv::bkv_static). Each program runs far enough to print
# its usage and the version of the libbkv it loaded, and the shared ones load libbkv.so.0
# from the prefix. The shared library exports exactly libbkv.map's names, all bkv_ and all
# under the version node BKV_0, and libbkv.a defines no other global symbol.
#
#   tests/test_sdk_install.sh BUILD_DIR SOURCE_DIR VERSION C_COMPILER [C_FLAGS]
set -euo pipefail

build=$(cd "${1:?usage: test_sdk_install.sh BUILD_DIR SOURCE_DIR VERSION CC [CFLAGS]}" && pwd)
src=$(cd "$2" && pwd)
version=$3
cc=$4
cflags=${5:-}
# shellcheck source=tests/testlib.sh
. "$src/tests/testlib.sh"

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
pc=$(find "$prefix" -name bkv.pc)
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$(dirname "$pc")
example=$src/client/examples/recover_key.c
map_names=$(grep -Eo '^[[:space:]]+bkv_[a-z0-9_]+;' "$src/client/libbkv.map" | tr -d ' \t;' | sort)

# usage_names_version PROGRAM: no arguments prints usage (exit 2) and the loaded version
usage_names_version() {
  local rc=0
  env -u BKV_TOKEN "$1" >"$work/usage.out" 2>&1 || rc=$?
  cat "$work/usage.out"
  [ "$rc" -eq 2 ] && grep -q '^usage: ' "$work/usage.out" &&
    grep -qF "libbkv $version (built against $version)" "$work/usage.out"
}
# loads_prefix_library PROGRAM: ldd resolves libbkv.so.0 to the prefix's copy
loads_prefix_library() {
  ldd "$1"
  local loaded
  loaded=$(ldd "$1" | awk '$1 == "libbkv.so.0" {print $3}')
  [ -n "$loaded" ] && [ "$(realpath "$loaded")" = "$(realpath "$libdir/libbkv.so.0")" ]
}
no_shared_libbkv() { ! ldd "$1" | grep -q libbkv; }

check "pkg-config paths point into the prefix" \
  sh -c "pkg-config --cflags --libs bkv | tee /dev/stderr | grep -qF -- '-I$prefix/' &&
         ! pkg-config --cflags --libs bkv | grep -q /usr/local &&
         [ \"\$(pkg-config --modversion bkv)\" = '$version' ]"
check "bkv_version.h and bkv.h are installed" test -f "$prefix/include/bkv_version.h" \
  -a -f "$prefix/include/bkv.h"

# shellcheck disable=SC2046,SC2086
check "recover_key.c builds with pkg-config (shared)" \
  $cc $cflags -o "$work/rk-pc" "$example" $(pkg-config --cflags --libs bkv) \
  -Wl,-rpath,"$(pkg-config --variable=libdir bkv)"
check "the pkg-config build runs" usage_names_version "$work/rk-pc"
check "the pkg-config build loads the prefix's libbkv.so.0" loads_prefix_library "$work/rk-pc"
# shellcheck disable=SC2046,SC2086
check "recover_key.c builds with pkg-config --static (libbkv.a)" \
  $cc $cflags -o "$work/rk-pc-static" "$example" $(pkg-config --cflags bkv) \
  $(pkg-config --libs-only-L bkv) -l:libbkv.a \
  $(pkg-config --libs $(pkg-config --print-requires-private bkv)) -lpthread
check "the static pkg-config build runs" usage_names_version "$work/rk-pc-static"
check "the static pkg-config build does not load libbkv.so" no_shared_libbkv "$work/rk-pc-static"

mkdir "$work/consumer"
cp "$example" "$work/consumer/"
cat >"$work/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(bkv_consumer C)
find_package(bkv 0.1 REQUIRED)
add_executable(rk-shared recover_key.c)
target_link_libraries(rk-shared PRIVATE bkv::bkv)
add_executable(rk-static recover_key.c)
target_link_libraries(rk-static PRIVATE bkv::bkv_static)
EOF
check "a CMake project finds bkv with find_package and builds" \
  sh -c "cmake -S '$work/consumer' -B '$work/consumer/build' -DCMAKE_PREFIX_PATH='$prefix' \
           -DCMAKE_C_COMPILER='$cc' -DCMAKE_C_FLAGS='$cflags' &&
         cmake --build '$work/consumer/build'"
check "the bkv::bkv build runs" usage_names_version "$work/consumer/build/rk-shared"
check "the bkv::bkv build loads the prefix's libbkv.so.0" \
  loads_prefix_library "$work/consumer/build/rk-shared"
check "the bkv::bkv_static build runs" usage_names_version "$work/consumer/build/rk-static"
check "the bkv::bkv_static build does not load libbkv.so" \
  no_shared_libbkv "$work/consumer/build/rk-static"

# exports_exactly_the_map: the dynamic symbols are libbkv.map's names (the version node
# BKV_0 itself is listed by nm as an absolute symbol)
exports_exactly_the_map() {
  local names
  names=$(nm -D --defined-only "$libdir/libbkv.so.0" | awk '$2 != "A" {print $3}' |
    sed 's/@.*//' | sort)
  echo "$names"
  [ -n "$names" ] && [ "$names" = "$map_names" ] && ! echo "$names" | grep -v '^bkv_'
}
# every_export_versioned: objdump -T shows each bkv_ symbol under BKV_0
every_export_versioned() {
  objdump -T "$libdir/libbkv.so.0" | grep ' bkv_' | tee "$work/versions"
  [ "$(grep -c ' BKV_0 ' "$work/versions")" -eq "$(echo "$map_names" | wc -l)" ] &&
    ! grep ' bkv_' "$work/versions" | grep -v ' BKV_0 '
}
static_defines_only_the_map() {
  local names
  names=$(nm -g --defined-only "$libdir/libbkv.a" | awk 'NF == 3 {print $3}' | sort)
  echo "$names"
  [ "$names" = "$map_names" ]
}
check "libbkv.so.0 exports exactly libbkv.map's bkv_ names" exports_exactly_the_map
check "every export is versioned BKV_0" every_export_versioned
check "the soname is libbkv.so.0" \
  sh -c "readelf -d '$libdir/libbkv.so.0' | grep -F 'Library soname: [libbkv.so.0]'"
check "libbkv.a defines no global symbol but libbkv.map's" static_defines_only_the_map

summary
