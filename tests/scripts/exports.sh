#!/usr/bin/env bash
# The shared library must export only mim_* symbols (everything else is hidden) and must
# not link libcurl.
set -u
B=${MIM_BUILD:-build}
# The soname follows MIM_ABI_VERSION (docs/ABI.md), not the release version.
want=libmomento-im.so.$(sed -n 's/^#define MIM_ABI_VERSION \([0-9]*\)$/\1/p' include/momento/common.h)
so=$(readlink -f "$B/lib/$want" 2>/dev/null)
[ -f "$so" ] || { echo "no $want in $B/lib"; exit 1; }
syms=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
bad=$(grep -v '^mim_' <<<"$syms" | grep -v '^$' || true)
count=$(grep -c '^mim_' <<<"$syms")
soname=$(objdump -p "$so" | awk '/SONAME/ {print $2}')
p=0 f=0
if [ -z "$bad" ] && [ "$count" -gt 0 ]; then p=$((p+1)); else f=$((f+1)); echo "non-mim exports:"; head -n 20 <<<"$bad"; fi
if [ "$soname" = "$want" ]; then p=$((p+1)); else f=$((f+1)); echo "bad soname: $soname"; fi
if [ -L "$B/lib/$want" ] && [ -L "$B/lib/libmomento-im.so" ] && [ -f "$B/lib/libmomento-im.a" ]; then p=$((p+1)); else f=$((f+1)); echo "missing symlinks or static library"; fi
# libcurl is dlopen()ed for token URLs only (lib/curl_dl.c): never a link-time dependency.
needed=$(objdump -p "$so" | awk '/NEEDED/ {print $2}')
if ! grep -q '^libcurl' <<<"$needed"; then p=$((p+1)); else f=$((f+1)); echo "libcurl is in NEEDED"; fi
pc=$B/lib/libmomento-im.pc
if [ -f "$pc" ] && ! grep -q 'curl' "$pc"; then p=$((p+1)); else f=$((f+1)); echo "$pc missing or names libcurl"; fi
# The default transport (HTTP/2 on nghttp2 + OpenSSL) keeps gRPC core, its Abseil and
# libstdc++ out of every process; 12 shared libraries at most (the sanitizer runtimes of
# an instrumented build aside).
if [[ $B != *transport-grpc* ]]; then
  libs=$(ldd "$so" | awk '{print $1}' | grep -v -E '^(linux-vdso|/)' || true)
  heavy_re='^lib(grpc|gpr|absl|stdc\+\+|upb|re2|cares)'
  max=12
  if [ -n "${SANITIZE:-}" ]; then
    # The sanitizer runtimes bring libstdc++, libm and libgcc_s themselves: only gRPC
    # core and its parts are checked there.
    heavy_re='^lib(grpc|gpr|absl|upb|re2|cares)'
    max=99
  fi
  nlibs=$(grep -c . <<<"$libs")
  heavy=$(grep -E "$heavy_re" <<<"$libs" || true)
  if [ -z "$heavy" ] && [ "$nlibs" -le "$max" ]; then p=$((p+1)); else
    f=$((f+1)); echo "loads $nlibs shared libraries (at most 12, no gRPC core/libstdc++):"; echo "$libs"; fi
  echo "exports: loads $nlibs shared libraries: $(tr '\n' ' ' <<<"$libs")"
fi
echo "exports: $count mim_* symbols, soname $soname"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
