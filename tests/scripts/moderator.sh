#!/usr/bin/env bash
# examples/moderator between moderated-mode chat clients and client-only readers, in two
# rooms: a banned word arrives masked, messages made only of banned words, over the length
# limit or empty never show up (live or in the history), every decision is logged, and
# SIGTERM stops the moderator cleanly. Private mim-local on a free loopback port; every
# process is stopped on any exit.
set -u
B=${MIM_BUILD:-build}
B=$(cd "$B" && pwd)
dir=$(mktemp -d)
pids=()
cleanup() {
  exec 3>&- 4>&- 5>&- 6>&- 2>/dev/null
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null
  done
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
check() { # description command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
# Waits up to 10 s for a line matching the ERE in a file.
wait_line() { # file regex
  for _ in $(seq 1 100); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "---- $(basename "$1") (waiting for /$2/):"
  sed 's/^/    /' "$1" 2>/dev/null
  return 1
}
# Waits up to 10 s for a process to exit and checks its status.
wait_exit() { # pid status
  for _ in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$1" 2>/dev/null && return 1
  wait "$1"
  [ $? -eq "$2" ]
}

"$B/bin/mim-local" --port 0 --port-file "$dir/port" --root-key-file "$dir/root.key" \
  --cache instant-messaging --log-level warn >"$dir/server.out" 2>"$dir/server.err" &
pids+=($!)
wait_line "$dir/server.out" listening >/dev/null || {
  bad "mim-local did not start: $(cat "$dir/server.err")"
  finish
}
E=127.0.0.1:$(cat "$dir/port")

# Usage errors come back as exit status 2 with a message.
"$B/examples/moderator" --endpoint "$E" >"$dir/usage.out" 2>&1
check "moderator without --chat: usage error" [ $? -eq 2 ]
"$B/examples/moderator" --chat room-1 --word "two words" >"$dir/usage.out" 2>&1
check "a banned 'word' with a space: usage error" [ $? -eq 2 ]

printf 'darn\n# a comment line\n  Heck  \n' >"$dir/words"
"$B/examples/moderator" --chat room-1 --chat room-2 --endpoint "$E" --key-file "$dir/root.key" \
  --words "$dir/words" --word spam --max-length 40 >"$dir/mod.out" 2>"$dir/mod.err" &
mod=$!
pids+=($mod)
check "moderator watches both rooms' input topics" \
  wait_line "$dir/mod.out" "^moderator: watching room-1-input room-2-input in instant-messaging; 3 banned words"

mint() { # user room mode
  "$B/examples/mint-token" --endpoint "$E" --key-file "$dir/root.key" --chat "$2" --user "$1" \
    --mode "$3" >"$dir/$1.key"
}
check "mint-token dave (moderated, room-1)" mint dave room-1 moderated
check "mint-token bob (client, room-1)" mint bob room-1 client
check "mint-token erin (moderated, room-2)" mint erin room-2 moderated
check "mint-token frank (client, room-2)" mint frank room-2 client
check "mint-token carol (client, room-1)" mint carol room-1 client

# Each client reads its stdin from a FIFO this script holds open on fd N.
start_chat() { # name room fd [--moderated]
  local name=$1 room=$2 fd=$3
  shift 3
  mkfifo "$dir/$name.in"
  "$B/examples/chat" --chat "$room" --name "$name" --endpoint "$E" --key-file "$dir/$name.key" \
    "$@" <"$dir/$name.in" >"$dir/$name.out" 2>&1 &
  pids+=($!)
  eval "exec $fd>\"\$dir/\$name.in\""
  wait_line "$dir/$name.out" "^\*\*\* joined $room as $name"
}
check "bob joins room-1" start_chat bob room-1 3
bob=${pids[-1]}
check "dave joins room-1 in moderated mode" start_chat dave room-1 4 --moderated
dave=${pids[-1]}
check "frank joins room-2" start_chat frank room-2 5
check "erin joins room-2 in moderated mode" start_chat erin room-2 6 --moderated

TS='[0-9]{2}:[0-9]{2}:[0-9]{2}'
CTS="#[0-9]+ $TS" # a chat line: the message's number, then its time
echo "this is DARN fast, darned good" >&4
check "bob sees dave's banned word masked (whole word, any case)" \
  wait_line "$dir/bob.out" "^$CTS dave \(token root\): this is \*\*\*\* fast, darned good$"
# In a moderated chat its own members see the sender the moderator recorded (its token
# id, dave's own), not the moderator's token (docs/PROTOCOL.md, "Senders").
check "dave sees his own message masked" \
  wait_line "$dir/dave.out" "^$CTS dave: this is \*\*\*\* fast, darned good$"
echo "Heck, darn!" >&4
echo "spam" >&4
echo "this line is far longer than the forty characters allowed" >&4
# dave's token under another name: the moderator holds senders to their token id.
printf 'i am not dave\n' | timeout 20 "$B/examples/chat" --chat room-1 --name mallory \
  --endpoint "$E" --key-file "$dir/dave.key" --moderated >"$dir/mallory.out" 2>&1
check "an impostor's client sends and exits 0" [ $? -eq 0 ]
echo "after the rejects" >&4
check "bob sees the message sent after the rejected ones" \
  wait_line "$dir/bob.out" "^$CTS dave \(token root\): after the rejects$"
check "no rejected message reached bob" \
  bash -c "! grep -v '^\*\*\* ' '$dir/bob.out' | grep -qiE 'heck|spam|forty|\*\*\*\*, |mallory'"
check "the moderator logged the mask" \
  grep -qE "^$TS room-1 mask +dave: this is \*\*\*\* fast, darned good$" "$dir/mod.out"
check "the moderator logged 'only banned words' twice" \
  [ "$(grep -cE "^$TS room-1 reject dave: .*\[only banned words\]$" "$dir/mod.out")" = 2 ]
check "the moderator logged the length reject" \
  grep -qE "^$TS room-1 reject dave: \(not shown\)  \[57 characters, limit 40\]$" "$dir/mod.out"
check "the moderator logged the impostor's reject" \
  grep -qE "^$TS room-1 reject mallory \(token dave\): i am not dave  \[name is not the token id\]$" \
  "$dir/mod.out"
check "the moderator logged the accept" \
  grep -qE "^$TS room-1 accept dave: after the rejects$" "$dir/mod.out"

echo "heck yes, a second room" >&6
check "room-2: frank sees erin's message masked" \
  wait_line "$dir/frank.out" "^$CTS erin \(token root\): \*\*\*\* yes, a second room$"
check "room-2's message did not leak into room-1" \
  bash -c "! grep -q 'second room' '$dir/bob.out'"

# A late joiner's history holds exactly the two forwarded messages.
timeout 20 "$B/examples/chat" --chat room-1 --name carol --endpoint "$E" \
  --key-file "$dir/carol.key" </dev/null >"$dir/carol.out" 2>&1
check "carol's client exits 0 at end of input" [ $? -eq 0 ]
check "carol's history holds the masked message" \
  grep -qE "^\[history\] $CTS dave: this is \*\*\*\* fast, darned good$" "$dir/carol.out"
check "carol's history holds the accepted message" \
  grep -qE "^\[history\] $CTS dave: after the rejects$" "$dir/carol.out"
check "carol's history holds nothing else" [ "$(grep -c '^\[history\]' "$dir/carol.out")" = 2 ]

# Edits pass the same filter (logged "(edit)"); an edit by anyone but the author never
# reaches readers (docs/PROTOCOL.md 4.4). The chats name messages by their number.
n=$(sed -nE 's/^#([0-9]+) [0-9:]{8} dave: after the rejects$/\1/p' "$dir/dave.out")
echo "/edit $n after the darn rejects, edited" >&4
check "bob sees dave's edit in place, masked (line mode: a line saying so)" \
  wait_line "$dir/bob.out" "^\*\*\* edited: $CTS dave \(token root\): after the \*\*\*\* rejects, edited \(edited\)$"
check "the moderator logged the masked edit" \
  grep -qE "^$TS room-1 mask +\(edit\) dave: after the \*\*\*\* rejects, edited$" "$dir/mod.out"
mint eve room-1 moderated
# eve's history is dave's two messages: #2 is "after the rejects".
printf '/edit 2 hijacked by eve\n' | timeout 20 "$B/examples/chat" --chat room-1 --name eve \
  --endpoint "$E" --key-file "$dir/eve.key" --moderated >"$dir/eve.out" 2>&1
check "eve's client sends her edit of dave's message and exits 0" [ $? -eq 0 ]
echo "after the impostor" >&4
check "bob sees dave's next message" wait_line "$dir/bob.out" "^$CTS dave \(token root\): after the impostor$"
check "... and never eve's edit of dave's message" bash -c "! grep -q hijacked '$dir/bob.out'"
check "... which the filter never saw" bash -c "! grep -q hijacked '$dir/mod.out'"

echo /quit >&3
echo /quit >&4
check "bob's /quit exits 0" wait_exit "$bob" 0
check "dave's /quit exits 0" wait_exit "$dave" 0
kill -TERM "$mod"
check "SIGTERM stops the moderator with status 0" wait_exit "$mod" 0
check "the moderator says it stopped" grep -qx "moderator: stopped (SIGTERM)" "$dir/mod.out"
check "the moderator logged no warnings" [ ! -s "$dir/mod.err" ]
finish
