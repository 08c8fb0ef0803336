#!/usr/bin/env bash
# clang-tidy (checks in .clang-tidy) and cppcheck over the library and server sources.
# Usage: scripts/lint.sh [files...]
#   (default: common/*.c lib/*.c lib/h2/*.c lib/loop/*.c lib/transport/h2.c server/*.c)
# Files are checked in parallel, one clang-tidy per core, cppcheck alongside.
set -u
cd "$(dirname "$0")/.."
files=("$@")
[ ${#files[@]} -gt 0 ] ||
  files=(common/*.c lib/*.c lib/h2/*.c lib/loop/*.c lib/transport/h2.c server/*.c)
flags=(-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Ilib -Icommon -Iserver
  -isystem build/gen $(pkg-config --cflags grpc libprotobuf-c jansson openssl))
jobs=$(nproc 2>/dev/null || echo 2)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cppcheck -q --std=c11 --enable=warning,portability,performance --error-exitcode=1 \
  --suppress=missingIncludeSystem -Iinclude -Ilib -Icommon "${files[@]}" &
cpp=$!
# Each clang-tidy prints only its findings; any finding fails the run.
printf '%s\0' "${files[@]}" |
  xargs -0 -P "$jobs" -I{} sh -c 'f=$1; shift; clang-tidy -quiet "$f" -- "$@" 2>/dev/null | grep -E "warning:|error:"; true' \
    sh {} "${flags[@]}" >"$out"
rc=0
if [ -s "$out" ]; then cat "$out"; rc=1; fi
wait "$cpp" || rc=1
exit $rc
