#!/usr/bin/env bash
# `make install` into a temporary DESTDIR puts headers, both libraries and the .pc file
# where they belong; a program builds against them with pkg-config alone (C and C++,
# shared and static); `make uninstall` removes everything it installed.
set -u
B=${MIM_BUILD:-build}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
prefix=/opt/mim
p=0 f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $*"; }

make -s --no-print-directory B="$B" install PREFIX=$prefix DESTDIR="$root" >"$root/install.log" 2>&1 \
  || { cat "$root/install.log"; bad "make install"; }
lib=$root$prefix/lib
for file in include/momento/im.h include/momento/common.h lib/libmomento-im.a \
  lib/libmomento-im.so lib/libmomento-im.so.1 lib/pkgconfig/libmomento-im.pc; do
  [ -e "$root$prefix/$file" ] && ok || bad "not installed: $file"
done
ls "$lib"/libmomento-im.so.*.*.* >/dev/null 2>&1 && ok || bad "no versioned shared library"

export PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_PATH=$lib/pkgconfig
cat >"$root/app.c" <<'C'
#include <momento/im.h>
#include <stdio.h>
int main(void) {
  mim_credentials *c = NULL;
  mim_status st = mim_credentials_from_string("not a key", &c);
  printf("%s %s\n", mim_version(), mim_status_name(st));
  return st == MIM_ERR_INVALID_ARGUMENT ? 0 : 1;
}
C
cp "$root/app.c" "$root/app.cpp"
san=${SANITIZE:+-fsanitize=$SANITIZE} # an instrumented library needs instrumented programs
if cc $san -o "$root/app" "$root/app.c" $(pkg-config --cflags --libs libmomento-im) 2>"$root/cc.log" &&
  LD_LIBRARY_PATH=$lib "$root/app" >/dev/null; then ok; else cat "$root/cc.log"; bad "C program with the shared library"; fi
if c++ $san -o "$root/appxx" "$root/app.cpp" $(pkg-config --cflags libmomento-im) "$lib/libmomento-im.a" \
  $(pkg-config --libs $(pkg-config --print-requires-private libmomento-im)) 2>"$root/cxx.log" &&
  "$root/appxx" >/dev/null; then ok; else cat "$root/cxx.log"; bad "C++ program with the static library"; fi

if c++ $san -o "$root/appxx-shared" "$root/app.cpp" $(pkg-config --cflags --libs libmomento-im) \
  2>"$root/cxx-shared.log" && LD_LIBRARY_PATH=$lib "$root/appxx-shared" >/dev/null; then ok; else
  cat "$root/cxx-shared.log"
  bad "C++ program with the shared library"
fi

# The chat example, built out of tree with nothing but the installed files and pkg-config.
cp examples/chat.c examples/key_file.h "$root/"
if (cd "$root" && cc $san -std=c11 -D_POSIX_C_SOURCE=200809L -o chat chat.c \
  $(pkg-config --cflags --libs libmomento-im) $(pkg-config --libs ncursesw) -lpthread 2>chat.log) &&
  LD_LIBRARY_PATH=$lib "$root/chat" --help >/dev/null 2>&1; then ok; else
  cat "$root/chat.log"
  bad "examples/chat out of tree with pkg-config"
fi

make -s --no-print-directory B="$B" uninstall PREFIX=$prefix DESTDIR="$root" >/dev/null 2>&1 || bad "make uninstall"
left=$(find "$root$prefix" -type f -o -type l 2>/dev/null)
[ -z "$left" ] && ok || bad "left after uninstall: $left"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
