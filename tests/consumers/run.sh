#!/bin/sh
# Build a downstream program against libqnoise the way a user would.
# usage: run.sh MODE BUILD_DIR SOURCE_DIR
#   pkgconfig-c | pkgconfig-cxx : install into a temporary DESTDIR, compile with
#                                 `pkg-config --cflags --libs qnoise` alone, run
#   cmake                       : same install, find_package(qnoise) + qnoise::qnoise
#   meson-subproject            : dependency('qnoise') with this tree as the fallback
set -eu
mode=$1
build=$(cd "$2" && pwd)
src=$(cd "$3" && pwd)
here="$src/tests/consumers"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qn-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

install_destdir() {
  dest="$tmp/dest"
  meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2; echo "meson install failed" >&2; exit 1; }
  pc=$(find "$dest" -name qnoise.pc | head -n 1)
  [ -n "$pc" ] || { echo "qnoise.pc was not installed" >&2; exit 1; }
  so=$(find "$dest" -name 'libqnoise.so.1' | head -n 1)
  [ -n "$so" ] || { echo "libqnoise.so.1 was not installed" >&2; exit 1; }
  [ -f "$(dirname "$pc")/../../../include/qnoise/qnoise.h" ] || [ -n "$(find "$dest" -path '*/include/qnoise/qnoise.h')" ] || {
    echo "headers were not installed under include/qnoise" >&2; exit 1; }
  libdir=$(dirname "$so")
  soname=$(objdump -p "$so" | awk '/SONAME/ {print $2}')
  [ "$soname" = "libqnoise.so.1" ] || { echo "SONAME is '$soname', want libqnoise.so.1" >&2; exit 1; }
  PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  PKG_CONFIG_SYSROOT_DIR="$dest"
  export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
}

case "$mode" in
  pkgconfig-c)
    install_destdir
    flags=$(pkg-config --cflags --libs qnoise)
    echo "pkg-config --cflags --libs qnoise: $flags"
    # shellcheck disable=SC2086
    ${CC:-cc} -std=c99 -Wall -Wextra -Werror -o "$tmp/consumer" "$here/consumer.c" $flags
    LD_LIBRARY_PATH="$libdir" "$tmp/consumer"
    ;;
  pkgconfig-cxx)
    install_destdir
    flags=$(pkg-config --cflags --libs qnoise)
    # shellcheck disable=SC2086
    ${CXX:-c++} -std=c++11 -Wall -Wextra -Werror -o "$tmp/consumer" "$here/consumer.cc" $flags
    LD_LIBRARY_PATH="$libdir" "$tmp/consumer"
    ;;
  cmake)
    install_destdir
    prefix_dir=$(dirname "$(dirname "$(dirname "$libdir")")")
    cfg=$(find "$dest" -name qnoiseConfig.cmake | head -n 1)
    [ -n "$cfg" ] || { echo "qnoiseConfig.cmake was not installed" >&2; exit 1; }
    cmake -S "$here/cmake" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$dest/usr/local;$dest/usr;$prefix_dir" \
      -Dqnoise_DIR="$(dirname "$cfg")" >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log" >&2; exit 1; }
    cmake --build "$tmp/cmake-build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
    LD_LIBRARY_PATH="$libdir" "$tmp/cmake-build/consumer_c"
    LD_LIBRARY_PATH="$libdir" "$tmp/cmake-build/consumer_cxx"
    ;;
  meson-subproject)
    mkdir -p "$tmp/proj/subprojects"
    cp "$here/meson/meson.build" "$here/consumer.c" "$tmp/proj/"
    ln -s "$src" "$tmp/proj/subprojects/qnoise"
    meson setup "$tmp/proj/build" "$tmp/proj" --wrap-mode=forcefallback >"$tmp/setup.log" 2>&1 || {
      cat "$tmp/setup.log" >&2; exit 1; }
    meson compile -C "$tmp/proj/build" >"$tmp/compile.log" 2>&1 || { cat "$tmp/compile.log" >&2; exit 1; }
    "$tmp/proj/build/consumer"
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
