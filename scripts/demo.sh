#!/usr/bin/env bash
# `make demo`: starts mim-local on a free loopback port, runs the scripted chat, stops
# the server (also on failure or Ctrl-C).
set -euo pipefail
B=${MIM_BUILD:-build}
dir=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$B/bin/mim-local" --port 0 --port-file "$dir/port" --root-key-file "$dir/root.key" \
  --log-level warn >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!
for _ in $(seq 1 100); do # up to 10 s for the server to come up
  [ -s "$dir/port" ] && grep -q "listening" "$dir/server.out" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$dir/server.err" >&2; exit 1; }
  sleep 0.1
done
[ -s "$dir/port" ] || { echo "mim-local did not start" >&2; cat "$dir/server.err" >&2; exit 1; }
echo "$(cat "$dir/server.out")"
echo
"$B/examples/demo" "127.0.0.1:$(cat "$dir/port")" "$dir/root.key"
