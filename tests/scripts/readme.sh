#!/usr/bin/env bash
# The README's complete C program must compile and work: extract the first ```c block,
# build it against the library, run it twice against a fresh mim-local and check that
# the second run sees the first one's message in the history and its own live.
set -u
B=${MIM_BUILD:-build}
dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
awk '/^```c$/ {on=1; next} on && /^```$/ {exit} on {print}' README.md >"$dir/chat.c"
p=0 f=0
[ -s "$dir/chat.c" ] && p=$((p + 1)) || { f=$((f + 1)); echo "no C block in README.md"; }
# The library's own dependencies, as its .pc lists them.
flags=$(pkg-config --cflags --libs $(sed -n 's/^Requires.private://p' "$B/lib/libmomento-im.pc"))
san=${SANITIZE:+-fsanitize=$SANITIZE}
if cc -std=c11 -Wall -Wextra -Werror $san -Iinclude -o "$dir/chat" "$dir/chat.c" "$B/lib/libmomento-im.a" \
  $flags -lpthread 2>"$dir/cc.log"; then p=$((p + 1)); else f=$((f + 1)); cat "$dir/cc.log"; fi

"$B/bin/mim-local" --port 0 --port-file "$dir/port" --root-key-file "$dir/key" --log-level warn \
  >"$dir/server.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -s "$dir/port" ] && [ -s "$dir/key" ] && break; sleep 0.1; done
if [ -x "$dir/chat" ] && [ -s "$dir/key" ]; then
  export MOMENTO_API_KEY
  MOMENTO_API_KEY=$(cat "$dir/key")
  first=$(timeout 30 "$dir/chat" alice 2>&1)
  second=$(timeout 30 "$dir/chat" bob 2>&1)
  grep -qx "\[live\] alice: hello from C" <<<"$first" && p=$((p + 1)) || { f=$((f + 1)); echo "first run: $first"; }
  grep -qx "\[history\] alice: hello from C" <<<"$second" && p=$((p + 1)) || { f=$((f + 1)); echo "second run: $second"; }
  grep -qx "\[live\] bob: hello from C" <<<"$second" && p=$((p + 1)) || { f=$((f + 1)); echo "second run: $second"; }
else
  f=$((f + 1))
  echo "mim-local did not start or the program did not build"
fi
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
