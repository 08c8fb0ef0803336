#!/usr/bin/env bash
# `make demo`: the whole pattern with real processes on free loopback ports:
#   mim-local (the Momento-compatible server), token-vendor (hands out disposable tokens
#   scoped to one chat), moderator (masks banned words for the moderated room), and
#   three terminal chat clients fed by a script. Prints each client's screen and the
#   moderator's log, then stops everything (also on failure or Ctrl-C).
# Then runs build/examples/tour, the same story in one process through the C API.
set -euo pipefail
B=${MIM_BUILD:-build}
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

wait_file() { # file what pid: up to 10 s for a file a background process writes
  for _ in $(seq 1 100); do
    [ -s "$1" ] && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "demo: $2 did not start" >&2
  cat "$dir"/*.err >&2 2>/dev/null || true
  exit 1
}

"$B/bin/mim-local" --port 0 --port-file "$dir/port" --root-key-file "$dir/root.key" \
  --cache instant-messaging --log-level warn >"$dir/server.out" 2>"$dir/server.err" &
pids+=($!)
wait_file "$dir/port" mim-local $!
endpoint=127.0.0.1:$(cat "$dir/port")
echo "mim-local       listening on $endpoint"

"$B/examples/token-vendor" --key-file "$dir/root.key" --endpoint "$endpoint" --port 0 \
  --port-file "$dir/vport" >"$dir/vendor.out" 2>"$dir/vendor.err" &
pids+=($!)
wait_file "$dir/vport" token-vendor $!
vendor=http://127.0.0.1:$(cat "$dir/vport")/token
echo "token-vendor    listening on ${vendor%/token}"

"$B/examples/moderator" --chat lobby --endpoint "$endpoint" --key-file "$dir/root.key" \
  --word darn --word spam >"$dir/moderator.out" 2>"$dir/moderator.err" &
pids+=($!)
wait_file "$dir/moderator.out" moderator $!
echo "moderator       watching lobby-input (banned: darn, spam)"
echo

# A chat client reading its lines from a fifo, its screen going to NAME.screen.
start_chat() { # name mode
  local name=$1 mode=$2 extra=()
  [ "$mode" = moderated ] && extra=(--moderated)
  mkfifo "$dir/$name.in"
  "$B/examples/chat" --chat lobby --name "$name" --endpoint "$endpoint" "${extra[@]}" \
    --token-url "$vendor?chat=lobby&user=$name&mode=$mode" <"$dir/$name.in" \
    >"$dir/$name.screen" 2>&1 &
  pids+=($!)
  exec {fd}>"$dir/$name.in"
  eval "fd_$name=$fd"
  for _ in $(seq 1 100); do grep -q "joined lobby" "$dir/$name.screen" && return 0; sleep 0.1; done
  echo "demo: $name could not join" >&2
  cat "$dir/$name.screen" >&2
  exit 1
}
say() { # name text: type a line into that client, give it a moment to travel
  local fd_var="fd_$1"
  printf '%s\n' "$2" >&"${!fd_var}"
  sleep 0.5
}

start_chat alice client
start_chat bob moderated
say alice "hi bob, alice here"
say bob "hello alice! this darn demo works"
say bob "spam spam"
say alice "bye for now"
start_chat carol client
say carol "/quit"
say bob "/quit"
say alice "/quit"
sleep 0.5

for name in alice bob carol; do
  echo "---- $name's terminal ($( [ $name = bob ] && echo moderated || echo client-only) mode)"
  cat "$dir/$name.screen"
  echo
done
echo "---- moderator log"
cat "$dir/moderator.out"
echo
echo "(bob's messages reach the room through the moderator, so they carry its token id;"
echo " \"spam spam\" was rejected, \"darn\" masked; carol joined late and got the history.)"
echo
echo "==== the same story in one process, through the C API (examples/tour.c)"
MIM_BUILD=$B "$B/examples/tour" "$endpoint" "$dir/root.key"
