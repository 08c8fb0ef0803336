#!/usr/bin/env bash
# The loop-mode examples work as a user runs them: examples/loop_uv (libuv) and
# examples/loop_event (libevent) join the same chat on a private mim-local (free loopback
# port), each driven by its own single-threaded loop with stdin on the same loop. uv
# sends, event gets it as history, event sends, uv gets it live; "/quit" leaves and both
# exit 0. Every wait is bounded; servers and clients are stopped even on failure.
set -u
cd "$(dirname "$0")/../.." || exit 1
B=${MIM_BUILD:-build}
dir=$(mktemp -d /tmp/mim-loop-examples.XXXXXX)
pids=()
p=0 f=0
finish() {
  exec 3>&- 4>&- 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$dir"
  echo "loop_examples: $p passed, $f failed"
  [ "$f" -eq 0 ]
  exit
}
trap finish EXIT
check() { # description command...
  local what=$1
  shift
  if "$@"; then p=$((p + 1)); else
    f=$((f + 1))
    echo "FAILED: $what"
    for o in "$dir"/*.out "$dir"/*.err; do echo "--- $o"; tail -n 20 "$o"; done
  fi
}
wait_line() { # file pattern: true once the file has a line matching (at most 20 s)
  for _ in $(seq 200); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
exit_status() { # pid: waits at most 20 s, then prints the exit status
  for _ in $(seq 200); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then echo timeout; else wait "$1"; echo $?; fi
}

"$B/bin/mim-local" --port 0 --port-file "$dir/port" --root-key-file "$dir/root.key" \
  --cache instant-messaging --log-level warn >"$dir/server.out" 2>"$dir/server.err" &
pids+=($!)
check "mim-local starts" wait_line "$dir/server.out" listening
E=127.0.0.1:$(cat "$dir/port")

mkfifo "$dir/uv.in" "$dir/event.in"
"$B/examples/loop_uv" --chat lobby --name uv-user --endpoint "$E" --key-file "$dir/root.key" \
  <"$dir/uv.in" >"$dir/uv.out" 2>"$dir/uv.err" &
uv=$!
pids+=("$uv")
exec 3>"$dir/uv.in"
check "loop_uv joins" wait_line "$dir/uv.err" "*** joined"
echo "hello from uv" >&3
check "loop_uv receives its own message" wait_line "$dir/uv.out" "uv-user: hello from uv"

"$B/examples/loop_event" --chat lobby --name event-user --endpoint "$E" \
  --key-file "$dir/root.key" <"$dir/event.in" >"$dir/event.out" 2>"$dir/event.err" &
ev=$!
pids+=("$ev")
exec 4>"$dir/event.in"
check "loop_event joins" wait_line "$dir/event.err" "*** joined"
check "loop_event gets uv's message as history" \
  wait_line "$dir/event.out" "[history] uv-user: hello from uv"
echo "hello from event" >&4
check "loop_uv receives event's message live" wait_line "$dir/uv.out" "event-user: hello from event"
check "loop_event receives its own message" wait_line "$dir/event.out" "event-user: hello from event"

echo "/quit" >&3
echo "/quit" >&4
check "loop_uv leaves and exits 0" [ "$(exit_status "$uv")" = 0 ]
check "loop_event leaves and exits 0" [ "$(exit_status "$ev")" = 0 ]
check "no send failed" [ -z "$(grep -h 'not sent\|send:' "$dir/uv.err" "$dir/event.err")" ]
