#!/usr/bin/env bash
# Packaging check: install the build into a temporary prefix, then
#  1. only etcdreg_* symbols are exported by libetcdreg.so (nm -D),
#  2. the soname is versioned,
#  3. a program built with `pkg-config etcdreg` compiles and runs against etcd,
#  4. a program built through find_package(etcdreg) compiles and runs against etcd.
# Usage: run.sh BUILD_DIR SOURCE_DIR WITH_ETCD
set -euo pipefail
build=$1 src=$2 with_etcd=$3
prefix=$(mktemp -d /tmp/etcdreg-pkg-XXXXXX)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(ls "$prefix"/lib*/libetcdreg.so 2>/dev/null || ls "$prefix"/lib/*/libetcdreg.so)
libdir=$(dirname "$lib")

leaks=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^etcdreg_' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' || true)
if [[ -n "$leaks" ]]; then
  echo "FAIL: libetcdreg.so exports symbols outside etcdreg_*:"; echo "$leaks" | head -20; exit 1
fi
count=$(nm -D --defined-only "$lib" | grep -c ' etcdreg_' || true)
[[ "$count" -gt 10 ]] || { echo "FAIL: only $count etcdreg_ symbols exported"; exit 1; }
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[[ "$soname" == libetcdreg.so.* ]] || { echo "FAIL: soname is '$soname'"; exit 1; }
echo "ok: $count exported symbols, all etcdreg_*; soname $soname"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=gnu11 -Wall -Wextra -Werror -o "$prefix/pc-consumer" "$src/test/packaging/consumer/main.c" \
  $(pkg-config --cflags --libs etcdreg) -Wl,-rpath,"$libdir"
LD_LIBRARY_PATH="$libdir" "$with_etcd" "$prefix/pc-consumer" '{endpoint}'
echo "ok: pkg-config consumer"

cmake -S "$src/test/packaging/consumer" -B "$prefix/cmake-consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/cmake-consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$with_etcd" "$prefix/cmake-consumer/consumer" '{endpoint}'
echo "ok: find_package consumer"
echo "1 passed, 0 failed"
