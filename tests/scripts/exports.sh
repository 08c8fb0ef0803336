#!/usr/bin/env bash
# The shared library must export only mim_* symbols (everything else is hidden).
set -u
B=${MIM_BUILD:-build}
so=$(ls "$B"/lib/libmomento-im.so.*.*.* 2>/dev/null | head -n1)
[ -n "$so" ] || { echo "no shared library in $B/lib"; exit 1; }
syms=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
bad=$(grep -v '^mim_' <<<"$syms" | grep -v '^$' || true)
count=$(grep -c '^mim_' <<<"$syms")
soname=$(objdump -p "$so" | awk '/SONAME/ {print $2}')
p=0 f=0
if [ -z "$bad" ] && [ "$count" -gt 0 ]; then p=$((p+1)); else f=$((f+1)); echo "non-mim exports:"; head -n 20 <<<"$bad"; fi
if [ "$soname" = "libmomento-im.so.0" ]; then p=$((p+1)); else f=$((f+1)); echo "bad soname: $soname"; fi
if [ -L "$B/lib/libmomento-im.so.0" ] && [ -L "$B/lib/libmomento-im.so" ] && [ -f "$B/lib/libmomento-im.a" ]; then p=$((p+1)); else f=$((f+1)); echo "missing symlinks or static library"; fi
echo "exports: $count mim_* symbols, soname $soname"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
