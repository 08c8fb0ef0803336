#!/usr/bin/env bash
# examples/chat in a real terminal: two clients in two tmux panes exchange messages, a
# third one joins late and shows both as history, /quit ends each cleanly. Then the error
# lines a user sees for a token of another room and for an expired token.
# Everything runs against a private mim-local on a free loopback port and a private tmux
# server (its own socket); both are stopped on any exit.
set -u
B=${MIM_BUILD:-build}
B=$(cd "$B" && pwd)
dir=$(mktemp -d)
server_pid=
vendor_pid=
T=(tmux -S "$dir/tmux.sock" -f "$dir/tmux.conf")
unset TMUX # also when make check itself runs inside tmux
cleanup() {
  "${T[@]}" kill-server >/dev/null 2>&1
  [ -n "$vendor_pid" ] && kill -TERM "$vendor_pid" 2>/dev/null && wait "$vendor_pid" 2>/dev/null
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

p=0 f=0
ok() { p=$((p + 1)); echo "ok   $1"; }
bad() {
  f=$((f + 1))
  echo "FAIL $1"
}
finish() {
  echo "$p passed, $f failed"
  [ "$f" -eq 0 ]
  exit
}

if ! command -v tmux >/dev/null 2>&1; then
  bad "tmux is not installed (make deps installs it)"
  finish
fi

"$B/bin/mim-local" --port 0 --port-file "$dir/port" --root-key-file "$dir/root.key" \
  --cache instant-messaging --log-level warn >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!
for _ in $(seq 1 100); do # up to 10 s
  [ -s "$dir/port" ] && grep -q listening "$dir/server.out" && break
  sleep 0.1
done
if ! [ -s "$dir/port" ]; then
  bad "mim-local did not start: $(cat "$dir/server.err")"
  finish
fi
E=127.0.0.1:$(cat "$dir/port")
ROOM=room-1

mint() { # user mode [extra args] -> $dir/user.key
  local user=$1 mode=$2
  shift 2
  "$B/examples/mint-token" --endpoint "$E" --key-file "$dir/root.key" --chat "$ROOM" \
    --user "$user" --mode "$mode" "$@" >"$dir/$user.key"
}
for u in alice bob carol; do
  if mint $u client; then ok "mint-token for $u"; else bad "mint-token for $u"; fi
done

# The pane runs the client through sh and records its exit status in $dir/NAME.rc
# (tmux 3.3's #{pane_dead_status} is not reliably filled in).
chat_cmd() { # name
  printf '%q ' "$B/examples/chat" --chat "$ROOM" --name "$1" --endpoint "$E" \
    --key-file "$dir/$1.key"
  printf '; echo $? >%q' "$dir/$1.rc"
}

# Waits up to 10 s until the pane's whole scrollback has a line matching the ERE.
wait_pane() { # pane regex
  for _ in $(seq 1 100); do
    "${T[@]}" capture-pane -p -J -S - -t "$1" 2>/dev/null | grep -qE "$2" && return 0
    sleep 0.1
  done
  echo "---- pane $1 (waiting for /$2/):"
  "${T[@]}" capture-pane -p -J -S - -t "$1" 2>/dev/null | sed '/^$/d; s/^/    /'
  return 1
}
check_pane() { # description pane regex
  if wait_pane "$2" "$3"; then ok "$1"; else bad "$1"; fi
}
type_line() { # pane text
  "${T[@]}" send-keys -t "$1" -l "$2" && "${T[@]}" send-keys -t "$1" Enter
}
# Waits until NAME's client has exited, then checks its exit status.
check_exit() { # description name status
  for _ in $(seq 1 100); do
    [ -s "$dir/$2.rc" ] && break
    sleep 0.1
  done
  local st
  st=$(cat "$dir/$2.rc" 2>/dev/null)
  if [ "$st" = "$3" ]; then ok "$1"; else bad "$1 (exit status: '$st')"; fi
}

# Dead panes stay so their last output and exit status can be read.
printf 'set -g remain-on-exit on\nset -g history-limit 5000\n' >"$dir/tmux.conf"
TS='[0-9]{2}:[0-9]{2}:[0-9]{2}'

alice=$("${T[@]}" new-session -d -P -F '#{pane_id}' -s chat -x 200 -y 50 "$(chat_cmd alice)")
check_pane "alice joins in a tmux pane" "$alice" "^\*\*\* joined $ROOM as alice"
bob=$("${T[@]}" split-window -P -F '#{pane_id}' -t chat "$(chat_cmd bob)")
check_pane "bob joins in a second pane" "$bob" "^\*\*\* joined $ROOM as bob"

type_line "$alice" "hello from alice"
check_pane "bob sees alice's message live" "$bob" "^$TS alice: hello from alice$"
check_pane "alice sees her own message" "$alice" "^$TS alice: hello from alice$"
type_line "$bob" "hi alice, bob here"
check_pane "alice sees bob's message live" "$alice" "^$TS bob: hi alice, bob here$"

carol=$("${T[@]}" split-window -P -F '#{pane_id}' -t chat "$(chat_cmd carol)")
check_pane "carol joins late" "$carol" "^\*\*\* joined $ROOM as carol"
check_pane "carol shows alice's message as history" "$carol" \
  "^\[history\] $TS alice: hello from alice$"
check_pane "carol shows bob's message as history" "$carol" \
  "^\[history\] $TS bob: hi alice, bob here$"
order=$("${T[@]}" capture-pane -p -J -S - -t "$carol" | grep -E "^(\[history\]|\*\*\* joined)" |
  cut -c1-9 | tr '\n' ' ')
if [ "$order" = "[history] [history] *** joine " ]; then
  ok "history comes before the joined line"
else
  bad "history comes before the joined line (got: $order)"
fi

type_line "$carol" "carol says hi"
check_pane "alice sees carol's live message" "$alice" "^$TS carol: carol says hi$"
check_pane "bob sees carol's live message" "$bob" "^$TS carol: carol says hi$"

# The server cuts every subscription stream (SIGUSR1): the clients say so and recover.
kill -USR1 "$server_pid"
check_pane "alice is told the connection was lost" "$alice" \
  "^\*\*\* connection lost \(.*stream cut for test\); reconnecting\.\.\.$"
check_pane "alice is told she is reconnected" "$alice" "^\*\*\* reconnected$"
check_pane "bob is told he is reconnected" "$bob" "^\*\*\* reconnected$"
type_line "$bob" "after the cut"
check_pane "alice gets bob's message after the reconnect" "$alice" "^$TS bob: after the cut$"

# A client that gets its token from examples/token-vendor (--token-url).
"$B/examples/token-vendor" --key-file "$dir/root.key" --endpoint "$E" --port 0 \
  --port-file "$dir/vendor.port" >"$dir/vendor.out" 2>&1 &
vendor_pid=$!
for _ in $(seq 1 100); do
  [ -s "$dir/vendor.port" ] && break
  sleep 0.1
done
url="http://127.0.0.1:$(cat "$dir/vendor.port" 2>/dev/null)/token?chat=$ROOM&user=gina&mode=client"
gina=$("${T[@]}" split-window -P -F '#{pane_id}' -t chat \
  "$(printf '%q ' "$B/examples/chat" --chat "$ROOM" --name gina --token-url "$url" --history 1)")
check_pane "gina joins with --token-url and sees only the last message" "$gina" \
  "^\[history\] $TS bob: after the cut$"
check_pane "... with a note about the earlier ones" "$gina" "^\*\*\* 3 earlier messages not shown$"
type_line "$gina" "gina via the token vendor"
check_pane "alice sees gina's message" "$alice" "^$TS gina: gina via the token vendor$"
type_line "$gina" "/quit"
check_pane "gina leaves" "$gina" "^\*\*\* left $ROOM$"

type_line "$alice" "/quit"
"${T[@]}" send-keys -t "$bob" C-d
"${T[@]}" send-keys -t "$carol" C-c
check_exit "alice's /quit exits 0" alice 0
check_exit "bob's Ctrl-D (end of input) exits 0" bob 0
check_exit "carol's Ctrl-C exits 0" carol 0
check_pane "carol's pane says she left" "$carol" "^\*\*\* left $ROOM$"
check_pane "alice's pane says she left" "$alice" "^\*\*\* left $ROOM$"

# Errors a user can run into, each on one clear line.
ROOM=room-2 mint eve client
wrong=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$(chat_cmd eve)")
check_pane "a token of another room: clear permission error" "$wrong" \
  "^chat: cannot join $ROOM: your token does not allow this in this room"
check_exit "... and exit status 1" eve 1

mint frank client --valid-for 1
sleep 2.2 # the token's lifetime (whole seconds) must be over
expired=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$(chat_cmd frank)")
check_pane "an expired token: clear message" "$expired" \
  "^chat: cannot join $ROOM: your token is invalid or has expired"
check_exit "... and exit status 1" frank 1

finish
