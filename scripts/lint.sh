#!/usr/bin/env bash
# clang-tidy (checks in .clang-tidy) and cppcheck over the library and server sources.
# Usage: scripts/lint.sh [files...]   (default: common/*.c lib/*.c server/*.c)
set -u
cd "$(dirname "$0")/.."
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(common/*.c lib/*.c server/*.c)
flags=(-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Ilib -Icommon -Iserver
  -isystem build/gen $(pkg-config --cflags grpc libprotobuf-c jansson openssl))
rc=0
for f in "${files[@]}"; do
  out=$(clang-tidy -quiet "$f" -- "${flags[@]}" 2>/dev/null | grep -E "warning:|error:")
  if [ -n "$out" ]; then echo "$out"; rc=1; fi
done
cppcheck -q --std=c11 --enable=warning,portability,performance --error-exitcode=1 \
  --suppress=missingIncludeSystem -Iinclude -Ilib -Icommon "${files[@]}" || rc=1
exit $rc
