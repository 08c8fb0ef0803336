#!/usr/bin/env bash
# `make install` into a temporary DESTDIR puts headers, both libraries, the .pc file, the
# CMake package, the tools and the man pages where they belong; a program builds against
# them with pkg-config alone (C and C++, shared and static) and with CMake's find_package;
# the tools run and their man pages render; `make uninstall` removes every file it
# installed.
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
  lib/libmomento-im.so lib/libmomento-im.so.2 lib/pkgconfig/libmomento-im.pc; do
  [ -e "$root$prefix/$file" ] && ok || bad "not installed: $file"
done
ls "$lib"/libmomento-im.so.*.*.* >/dev/null 2>&1 && ok || bad "no versioned shared library"
for file in bin/mim-local bin/mim-chat bin/mim-token-vendor bin/mim-mint-token bin/mim-moderator \
  lib/cmake/momento-im/momento-imConfig.cmake lib/cmake/momento-im/momento-imConfigVersion.cmake \
  share/man/man3/libmomento-im.3 share/doc/libmomento-im/html/index.html; do
  [ -e "$root$prefix/$file" ] && ok || bad "not installed: $file"
done

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

# The installed tools run under their installed names, and say so in their usage line.
bin=$root$prefix/bin
if "$bin/mim-local" --help 2>&1 | grep -q '^usage: mim-local'; then ok; else bad "mim-local --help"; fi
for t in chat token-vendor mint-token moderator; do
  if LD_LIBRARY_PATH=$lib "$bin/mim-$t" --help 2>&1 | grep -q "^usage: mim-$t "; then ok; else
    bad "mim-$t --help does not print its usage as mim-$t"
  fi
done

# Man pages: every function declared MIM_API has its page, which carries the header's
# text; the tools' pages render; man finds them through the prefix's share/man.
man3=$root$prefix/share/man/man3
for fn in $(python3 scripts/apidoc.py names include/momento/*.h); do
  [ -f "$man3/$fn.3" ] || { bad "no man page $fn(3)"; continue; }
  ok
done
page=$(MANWIDTH=200 man -M "$root$prefix/share/man" mim_join 2>&1)
if grep -q 'Joins chat_id in cache' <<<"$page" && grep -q 'mim_join_options' <<<"$page"; then ok; else
  bad "man -M PREFIX/share/man mim_join: $(head -c 300 <<<"$page")"
fi
for t in local chat token-vendor mint-token moderator; do
  out=$(MANWIDTH=200 man -M "$root$prefix/share/man" "mim-$t" 2>&1)
  grep -q "^NAME" <<<"$out" && grep -q "mim-$t" <<<"$out" && ok || bad "man mim-$t: $(head -c 200 <<<"$out")"
  # Every flag the tool's --help shows is in its man page (and the page invents none).
  flags_help=$(LD_LIBRARY_PATH=$lib "$bin/mim-$t" --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
  flags_man=$(grep -o -- '--[a-z][a-z0-9-]*' <<<"$out" | sort -u)
  [ "$(comm -23 <(echo "$flags_help") <(echo "$flags_man"))" = "" ] && ok ||
    bad "mim-$t(1) lacks $(comm -23 <(echo "$flags_help") <(echo "$flags_man") | tr '\n' ' ')"
done

# The HTML reference (make docs) documents every function with its header text.
python3 scripts/apidoc.py check-html "$root$prefix/share/doc/libmomento-im/html" include/momento/*.h &&
  ok || bad "HTML API reference incomplete"

# CMake: find_package with a version, the imported target, a program that runs.
if command -v cmake >/dev/null; then
  mkdir -p "$root/cm"
  cat >"$root/cm/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.13)
project(mim_consumer C)
find_package(momento-im @MAJOR_MINOR@ REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE momento-im::momento-im)
CMAKE
  ver=$(sed -n 's/^Version: //p' "$lib/pkgconfig/libmomento-im.pc")
  sed -i "s/@MAJOR_MINOR@/${ver%.*}/" "$root/cm/CMakeLists.txt"
  cp "$root/app.c" "$root/cm/"
  if (cd "$root/cm" && cmake -S . -B build -DCMAKE_PREFIX_PATH="$root$prefix" \
    ${san:+-DCMAKE_C_FLAGS=$san} >cmake.log 2>&1 && cmake --build build >>cmake.log 2>&1) &&
    LD_LIBRARY_PATH=$lib "$root/cm/build/app" >"$root/cm/run.log" 2>&1 &&
    grep -q "^$ver MIM_ERR_INVALID_ARGUMENT" "$root/cm/run.log"; then ok; else
    cat "$root/cm/cmake.log" "$root/cm/run.log" 2>/dev/null
    bad "CMake consumer (find_package + momento-im::momento-im)"
  fi
  # The version rule of docs/ABI.md: another minor (before 1.0) or major is refused.
  major=${ver%%.*} rest=${ver#*.}
  minor=${rest%%.*}
  if [ "$major" = 0 ]; then other=0.$((minor + 1)); else other=$((major + 1)).0; fi
  sed -i "s/find_package(momento-im [0-9.]*/find_package(momento-im $other/" "$root/cm/CMakeLists.txt"
  if (cd "$root/cm" && cmake -S . -B build2 -DCMAKE_PREFIX_PATH="$root$prefix" >cmake2.log 2>&1); then
    bad "find_package(momento-im $other) accepted version $ver"
  else ok; fi
else
  bad "cmake not found (scripts/install-deps.sh installs it)"
fi

make -s --no-print-directory B="$B" uninstall PREFIX=$prefix DESTDIR="$root" >/dev/null 2>&1 || bad "make uninstall"
left=$(find "$root$prefix" -type f -o -type l 2>/dev/null)
# Directories of our own go too (the shared ones, bin/ or share/man/man1/, may stay).
for d in include/momento lib/cmake/momento-im share/doc/libmomento-im; do
  [ -e "$root$prefix/$d" ] && left="$left $d/"
done
[ -z "$left" ] && ok || bad "left after uninstall: $left"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
