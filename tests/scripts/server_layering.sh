#!/usr/bin/env bash
# mim-local's files must include each other without circles, so that nothing below calls
# back up (handlers -> checks -> engines -> persistence, never the other way). Builds the
# graph from the #include "..." lines of server/*.c and server/*.h (headers that are not
# in server/, such as generated ones, are left out) and checks it twice:
#   files:   X.c, X.h as separate nodes;
#   modules: X.c and X.h as one node X (a .c including a header whose module includes
#            X's header back is a circle between two modules even if no file loops).
# Usage: tests/scripts/server_layering.sh [DIR]   (default: server/)
set -u
cd "$(dirname "$0")/../.."
dir=${1:-server}
edges() { # mode: files|modules
  local f inc base
  for f in "$dir"/*.c "$dir"/*.h; do
    [ -f "$f" ] || continue
    base=$(basename "$f")
    while IFS= read -r inc; do
      [ -f "$dir/$inc" ] || continue
      if [ "$1" = modules ]; then
        echo "${base%.*} ${inc%.*}"
      else
        echo "$base $inc"
      fi
    done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p' "$f")
    # Every file is a node, also one that includes nothing of ours.
    if [ "$1" = modules ]; then echo "${base%.*} ${base%.*}"; else echo "$base $base"; fi
  done
}
p=0 f=0
for mode in files modules; do
  if out=$(edges "$mode" | tsort 2>&1 >/dev/null) && [ -z "$out" ]; then
    p=$((p + 1))
  else
    f=$((f + 1))
    echo "server_layering: $dir: the $mode include each other in a circle:"
    sed 's/^/  /' <<<"$out"
  fi
done
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
