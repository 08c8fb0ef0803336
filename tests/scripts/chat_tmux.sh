#!/usr/bin/env bash
# examples/chat in a real terminal: two clients in two tmux panes exchange messages, a
# third one joins late and shows both as history, /quit ends each cleanly. Then the error
# lines a user sees for a token of another room and for an expired token.
# Everything runs against a private mim-local on a free loopback port and a private tmux
# server (its own socket); both are stopped on any exit.
set -u
export LC_ALL=C.UTF-8 # the panes type and show UTF-8; grep counts characters
B=${MIM_BUILD:-build}
B=$(cd "$B" && pwd)
dir=$(mktemp -d)
server_pid=
vendor_pid=
ivan_pid=
T=(tmux -S "$dir/tmux.sock" -f "$dir/tmux.conf")
unset TMUX # also when make check itself runs inside tmux
cleanup() {
  "${T[@]}" kill-server >/dev/null 2>&1
  [ -n "$vendor_pid" ] && kill -TERM "$vendor_pid" 2>/dev/null && wait "$vendor_pid" 2>/dev/null
  [ -n "$ivan_pid" ] && kill -TERM "$ivan_pid" 2>/dev/null && wait "$ivan_pid" 2>/dev/null
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -CONT "$server_pid" 2>/dev/null # stopped by the last check if that failed midway
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
chat_cmd() { # name [more options]
  local name=$1
  shift
  printf '%q ' "$B/examples/chat" --chat "$ROOM" --name "$name" --endpoint "$E" \
    --key-file "$dir/$name.key" "$@"
  printf '; echo $? >%q' "$dir/$name.rc"
}

# Waits up to 10 s until the pane's whole scrollback has a line matching the ERE (trailing
# blanks dropped: -J keeps the spaces a full-screen program wrote to clear a line).
wait_pane() { # pane regex
  for _ in $(seq 1 100); do
    "${T[@]}" capture-pane -p -J -S - -t "$1" 2>/dev/null | sed 's/ *$//' | grep -qE "$2" && return 0
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
# The visible screen (a full-screen program keeps nothing in the pane's scrollback).
screen() { # pane
  "${T[@]}" capture-pane -p -t "$1" 2>/dev/null | sed 's/ *$//'
}
input_line() { # pane: the full-screen chat's input line is the pane's last row
  screen "$1" | tail -n 1
}
# Waits up to 10 s until the input line reads exactly that.
wait_input() { # pane text
  for _ in $(seq 1 100); do
    [ "$(input_line "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  echo "---- input line of $1: '$(input_line "$1")' (waiting for '$2')"
  return 1
}
# Waits up to 10 s until exactly N lines of the screen match the ERE.
wait_count() { # pane regex n
  local n
  for _ in $(seq 1 100); do
    n=$(screen "$1" | grep -cE "$2")
    [ "$n" = "$3" ] && return 0
    sleep 0.1
  done
  echo "---- pane $1: $n lines match /$2/, not $3"
  return 1
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
# A message's line starts with its number (#N, what /reply, /edit... take), then its time.
TS='#[0-9]+ [0-9]{2}:[0-9]{2}:[0-9]{2}'

alice=$("${T[@]}" new-session -d -P -F '#{pane_id}' -s chat -x 200 -y 60 "$(chat_cmd alice)")
check_pane "alice joins in a tmux pane" "$alice" "^\*\*\* joined $ROOM as alice"
bob=$("${T[@]}" split-window -P -F '#{pane_id}' -t chat "$(chat_cmd bob)")
check_pane "bob joins in a second pane" "$bob" "^\*\*\* joined $ROOM as bob"
check_pane "presence: alice is told bob is here" "$alice" "^\*\*\* bob is here$"

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

# Direct chats (docs/PROTOCOL.md, section 7). The id, computed here independently.
dm_id() { python3 -c 'import hashlib,sys; x,y=sorted(a.encode() for a in sys.argv[1:3]); print("dm-"+hashlib.sha256(x+b"\0"+y).hexdigest()[:32])' "$1" "$2"; }
vurl="http://127.0.0.1:$(cat "$dir/vendor.port" 2>/dev/null)/token"
DM=$(dm_id kim mia)
answer=$(curl -s "$vurl?user=mia&dm=kim&mode=client")
if grep -q "\"chat\": *\"$DM\"" <<<"$answer" && grep -q '"dm": *"kim"' <<<"$answer" &&
  grep -q '"token": *"' <<<"$answer"; then ok "the vendor mints mia's token for her direct chat with kim ($DM)"; else
  bad "the vendor mints mia's token for her direct chat with kim ($DM): ${answer//\"token\":\"*\",/}"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' "$vurl?chat=$ROOM&user=mia&dm=kim&mode=client")
if [ "$code" = 400 ]; then ok "... chat= and dm= together: 400"; else bad "... chat= and dm= together: 400 (got $code)"; fi
# mia (token URL) and kim (root key) each /dm the other from the room: both in the same
# direct chat, through the vendor's dm= for mia, mim_direct_chat_id for kim.
mia=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: \
  "$(printf '%q ' "$B/examples/chat" --chat "$ROOM" --name mia --token-url "$vurl?chat=$ROOM&user=mia&mode=client"; printf '; echo $? >%q' "$dir/mia.rc")")
check_pane "mia joins the room with a token URL" "$mia" "^\*\*\* joined $ROOM as mia"
type_line "$mia" "/dm no way"
check_pane "/dm of a name the vendor refuses: a clear line" "$mia" \
  "^\*\*\* cannot get a token for the direct chat with no way from the token URL$"
type_line "$mia" "/dm kim"
check_pane "mia: /dm kim joins their direct chat" "$mia" "^\*\*\* joined $DM as mia: direct chat with kim$"
kim=$("${T[@]}" split-window -P -F '#{pane_id}' -t "$mia" \
  "$(printf '%q ' "$B/examples/chat" --chat "$ROOM" --name kim --endpoint "$E" --key-file "$dir/root.key"; printf '; echo $? >%q' "$dir/kim.rc")")
check_pane "kim joins the room with a key" "$kim" "^\*\*\* joined $ROOM as kim"
type_line "$kim" "/dm mia"
check_pane "kim: /dm mia joins the same chat" "$kim" "^\*\*\* joined $DM as kim: direct chat with mia$"
check_pane "... its status line names it" "$kim" "^ $DM as kim \| connected +/help$"
type_line "$mia" "just between us"
check_pane "kim gets mia's direct message" "$kim" "^$TS mia: just between us$"
type_line "$kim" "sure, mia"
# kim's root key has the token id "root", and the chat says so next to his name.
check_pane "mia gets kim's answer" "$mia" "^$TS kim \\(token root\\): sure, mia$"
type_line "$alice" "room after the dm"
check_pane "the room goes on without them" "$bob" "^$TS alice: room after the dm$"
if "${T[@]}" capture-pane -p -J -S - -t "$alice" | grep -q "just between us"; then
  bad "... and the room never saw the direct message"
else ok "... and the room never saw the direct message"; fi
type_line "$mia" "/quit"
check_pane "mia leaves the direct chat" "$mia" "^\*\*\* left $DM$"
type_line "$kim" "/quit"
check_pane "kim leaves it" "$kim" "^\*\*\* left $DM$"
check_exit "... mia exits 0" mia 0
check_exit "... kim exits 0" kim 0
# olga's key allows only the room: her /dm is refused, and she is back in the room.
mint olga client
olga=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$(chat_cmd olga)")
check_pane "olga joins the room" "$olga" "^\*\*\* joined $ROOM as olga"
type_line "$olga" "/dm zed"
check_pane "/dm to a chat her key does not allow: a clear line" "$olga" \
  "^\*\*\* cannot open the direct chat with zed: your token does not allow this"
check_pane "... and she is back in the room" "$olga" "^\*\*\* joined $ROOM as olga again$"
type_line "$olga" "olga still here"
check_pane "... where alice gets her next message" "$alice" "^$TS olga: olga still here$"
type_line "$olga" "/quit"
check_exit "... olga exits 0" olga 0

# ---- The full-screen UI: what a person sees while typing ----
check_pane "the status line names the room, the user and the connection" "$alice" \
  "^ $ROOM as alice \| connected +/help$"

# Alice has typed half a line (UTF-8) when bob sends a burst: her line stays whole.
half="grüße ☕, half a line from ali"
"${T[@]}" send-keys -t "$alice" -l "$half"
if wait_input "$alice" "alice> $half"; then ok "alice's half-typed line is on her input line"; else
  bad "alice's half-typed line is on her input line"
fi
for i in 1 2 3 4 5 6; do type_line "$bob" "bob burst $i"; done
check_pane "alice sees bob's burst while she types" "$alice" "^$TS bob: bob burst 6$"
if wait_count "$alice" "^$TS bob: bob burst [1-6]$" 6; then ok "... all six, each on its own line"; else
  bad "... all six, each on its own line"
fi
if [ "$(input_line "$alice")" = "alice> $half" ]; then ok "... and her input line is intact"; else
  bad "... and her input line is intact (it reads '$(input_line "$alice")')"
fi
type_line "$alice" "ce, done"
check_pane "bob gets alice's finished line" "$bob" "^$TS alice: ${half}ce, done$"
type_line "$alice" "sync after the burst"
check_pane "... then her next one" "$bob" "^$TS alice: sync after the burst$"
if wait_count "$bob" "half a line from alice, done" 1 && wait_count "$alice" "half a line from alice" 1 &&
  wait_count "$alice" "sync after the burst" 1; then ok "it arrived once, and alice's screen shows it once (no echo of the typed line)"; else
  bad "it arrived once, and alice's screen shows it once (no echo of the typed line)"
fi
if wait_input "$alice" "alice>"; then ok "the input line is empty after Enter"; else
  bad "the input line is empty after Enter"
fi

# Each sender's name in a colour of its own, the same on every line (SGR 31..36).
name_colours() { # pane name: the distinct colour codes the name is drawn in
  local esc
  esc=$(printf '\033')
  "${T[@]}" capture-pane -p -e -t "$1" | grep -oE "$esc\[3[1-6]m$2$esc" | cut -c4 | sort -u |
    tr -d '\n'
}
ca=$(name_colours "$alice" alice) cb=$(name_colours "$alice" bob)
if [[ $ca =~ ^[1-6]$ && $cb =~ ^[1-6]$ && $ca != "$cb" ]]; then
  ok "alice and bob each have a colour of their own on alice's screen"
else
  bad "alice and bob each have a colour of their own on alice's screen (alice: '$ca', bob: '$cb')"
fi

# Scrollback: PgUp holds the view still, the status line counts what arrives meanwhile.
"${T[@]}" send-keys -t "$alice" PPage
check_pane "PgUp: the status line says alice is scrolled back" "$alice" "scrolled back; 0 unread \(PgDn\)$"
type_line "$bob" "while alice reads back"
check_pane "a message arriving meanwhile is counted as unread" "$alice" \
  "scrolled back; 1 unread \(PgDn\)$"
if screen "$alice" | grep -q "while alice reads back"; then bad "... and is not scrolled into view"; else
  ok "... and is not scrolled into view"
fi
for _ in 1 2 3 4 5; do # PgDn moves a page at a time
  "${T[@]}" send-keys -t "$alice" NPage
  screen "$alice" | grep -q "scrolled back" || break
  sleep 0.2
done
check_pane "PgDn: back at the newest message" "$alice" "^$TS bob: while alice reads back$"
check_pane "... and the status line no longer counts unread" "$alice" "^ $ROOM as alice \| connected +/help$"

type_line "$alice" "/help"
check_pane "/help lists the commands" "$alice" "^\*\*\*   /retry +send again the messages"
check_pane "... with the keys" "$alice" "^\*\*\*   keys: PgUp/PgDn scroll"

# A send the library refuses (the envelope is over 4096 bytes) is shown with its text.
big=$(printf 'é%.0s' $(seq 1 2100))
type_line "$alice" "$big"
refused="^\*\*\* not sent: \"(é){30}\"\.\.\. \(the server or the library refused the request: MIM_ERR_INVALID_ARGUMENT"
check_pane "a message over the payload limit: 'not sent' with its text" "$alice" "$refused"
check_pane "... and how to retry it" "$alice" "; /retry sends it again$"
type_line "$alice" "/retry"
check_pane "/retry sends it again" "$alice" "^\*\*\* sending 1 failed message again$"
if wait_count "$alice" "$refused" 2; then ok "... (refused again, shown again)"; else
  bad "... (refused again, shown again)"
fi
type_line "$alice" "/retry"
check_pane "... once: the next /retry is refused again too" "$alice" \
  "^\*\*\* sending 1 failed message again$"

# Up brings back what alice typed last, Down returns to an empty line.
"${T[@]}" send-keys -t "$alice" Up
if wait_input "$alice" "alice> /retry"; then ok "Up brings back the last typed line"; else
  bad "Up brings back the last typed line"
fi
"${T[@]}" send-keys -t "$alice" Down
if wait_input "$alice" "alice>"; then ok "... and Down an empty line"; else bad "... and Down an empty line"; fi

# A message from two days ago carries its date, live and in a late joiner's history.
day=$(date -d '-2 days' +%m-%d)
if ! command -v faketime >/dev/null 2>&1; then
  bad "faketime is not installed (make deps installs it)"
else
  mint dan client
  mint hal client
  # faketime preloads its library, which wraps the clock and pthread's timed waits: an
  # ASan build must be told that the preload is fine, and TSan misreads those waits as
  # races and double locks, so this helper (only the receivers are under test) is not
  # checked by TSan.
  printf 'news from two days ago\n' |
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}report_bugs=0" timeout 20 \
      faketime -f -2d "$B/examples/chat" --chat "$ROOM" --name dan --endpoint "$E" \
      --key-file "$dir/dan.key" --history 0 >"$dir/dan.out" 2>&1 ||
    sed 's/^/    dan: /' "$dir/dan.out"
  check_pane "alice sees dan's message with its date" "$alice" \
    "^#[0-9]+ $day [0-9]{2}:[0-9]{2} dan: news from two days ago$"
  hal=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$(chat_cmd hal --history 1)")
  check_pane "a late joiner's history shows the date" "$hal" \
    "^\[history\] #[0-9]+ $day [0-9]{2}:[0-9]{2} dan: news from two days ago$"
  type_line "$hal" "/quit"
  check_exit "... hal leaves" hal 0
fi

# A terminal that goes away (its pane killed) ends the client even when SIGHUP is ignored
# (nohup-like): it must notice the hang-up instead of polling it forever.
mint jay client
jay=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: \
  "trap '' HUP; echo \$\$ >$(printf %q "$dir/jay.pid"); exec $(chat_cmd jay)")
check_pane "jay joins (SIGHUP ignored)" "$jay" "^\*\*\* joined $ROOM as jay"
jay_pid=$(cat "$dir/jay.pid")
"${T[@]}" kill-pane -t "$jay"
for _ in $(seq 1 100); do
  kill -0 "$jay_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$jay_pid" 2>/dev/null; then
  bad "a client whose terminal went away exits"
  kill -KILL "$jay_pid"
else
  ok "a client whose terminal went away exits"
fi

# The examples of the --help texts work as printed (pointed at this test's server,
# vendor and directory instead of the default ports and /tmp).
mkdir -p "$dir/ex"
cp "$dir/root.key" "$dir/ex/root.key"
vport=$(cat "$dir/vendor.port")
example() { # tool start: the first example line of `tool --help` that starts with "  start "
  local line= l
  while IFS= read -r l; do
    if [ -n "$line" ] || [[ $l == "  $2 "* ]]; then
      line+=$l
      [[ $line == *\\ ]] || break
      line=${line%\\}
    fi
  done < <("$B/examples/$1" --help)
  sed -e 's/  */ /g; s/^ //' -e "s|127\.0\.0\.1:8080|$E|g; s|127\.0\.0\.1:8081|127.0.0.1:$vport|g" \
    -e "s|/tmp/|$dir/ex/|g; s#^\(chat\|mint-token\|token-vendor\) #$B/examples/\1 #" <<<"$line"
}
run_example_chat() { # description tool
  local ex
  ex=$(example "$2" chat)
  local pane
  pane=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$ex")
  check_pane "$1" "$pane" "^\*\*\* joined lobby as alice"
  type_line "$pane" "/quit"
  check_pane "... and leaves" "$pane" "^\*\*\* left lobby$"
}
ex=$(example mint-token mint-token)
if [ -n "$ex" ] && bash -c "$ex" && [ -s "$dir/ex/alice.key" ]; then ok "mint-token --help: its example mints"; else
  bad "mint-token --help: its example mints ($ex)"
fi
run_example_chat "mint-token --help: its chat example joins" mint-token
run_example_chat "chat --help: its --token-url example joins (mode= in the URL)" chat
ex=$(example token-vendor curl)
if bash -c "$ex" 2>&1 | grep -q '"token": *"'; then ok "token-vendor --help: its curl example gets a token"; else
  bad "token-vendor --help: its curl example gets a token ($ex)"
fi
if grep -q "for development only: it has NO authentication" "$dir/vendor.out"; then
  ok "the token vendor warns at start that it is for development only"
else
  bad "the token vendor warns at start that it is for development only"
fi
if "$B/examples/token-vendor" --help | grep -q "NO authentication"; then
  ok "... and in its --help"
else
  bad "... and in its --help"
fi


# ---- Replies, edits, deletions, reactions, presence, unread (docs/PROTOCOL.md 3-6) ----
num_of() { # pane ERE-after-"name: ": the number beside the newest line that matches
  screen "$1" | sed -nE "s/^#([0-9]+) [0-9:]{8} $2$/\1/p" | tail -n 1
}
type_line "$bob" "numbered for the commands"
check_pane "alice sees bob's next message with its number" "$alice" "^$TS bob: numbered for the commands$"
na=$(num_of "$alice" "bob: numbered for the commands")
check_pane "... and so does bob" "$bob" "^$TS bob: numbered for the commands$"
nb=$(num_of "$bob" "bob: numbered for the commands")
type_line "$alice" "/reply $na agreed, numbers"
check_pane "/reply: bob sees alice's reply with what it replies to" "$bob" \
  "^$TS alice: \[re #$nb bob: numbered for the commands\] agreed, numbers$"
type_line "$bob" "/edit $nb numbered, then edited"
check_pane "/edit: alice sees bob's message changed in place" "$alice" \
  "^#$na [0-9:]{8} bob: numbered, then edited \(edited\)$"
if wait_count "$alice" "bob: numbered for the commands$" 0; then ok "... the old text is gone from her screen"; else
  bad "... the old text is gone from her screen"
fi
type_line "$alice" "/edit $na hijacked by alice"
check_pane "/edit of someone else's message: refused with a clear line" "$alice" \
  "^\*\*\* /edit $na hijacked by alice: only its author can edit or delete a message$"
type_line "$alice" "/delete 99999"
check_pane "a number no message has: a clear line" "$alice" "^\*\*\* /delete: no message #99999 on this screen$"
type_line "$alice" "/react $na +1"
check_pane "/react: bob sees alice's reaction on his message" "$bob" \
  "^#$nb [0-9:]{8} bob: numbered, then edited \(edited\) \[\+1 alice\]$"
check_pane "... and alice too" "$alice" "^#$na [0-9:]{8} bob: numbered, then edited \(edited\) \[\+1 alice\]$"
type_line "$alice" "/react $na +1"
check_pane "/react again takes it back" "$bob" "^#$nb [0-9:]{8} bob: numbered, then edited \(edited\)$"
type_line "$bob" "/delete $nb"
check_pane "/delete: alice sees bob's message deleted in place" "$alice" "^#$na [0-9:]{8} bob: \(deleted\)$"
if { screen "$alice"; screen "$bob"; } | grep -q "bob: hijacked"; then bad "... and the refused edit never showed"; else
  ok "... and the refused edit never showed"
fi
type_line "$alice" "/who"
check_pane "/who lists bob and carol" "$alice" "^\*\*\* here besides you: .*bob"
check_pane "... carol too" "$alice" "^\*\*\* here besides you: .*carol"
# A typing signal goes out at most every few seconds (MIM_TYPING_REFRESH_MS), and bob's
# last one was with his /delete: he types a key at a time until alice sees it.
typing=
for _ in $(seq 1 50); do # up to 10 s
  "${T[@]}" send-keys -t "$bob" -l "x"
  if screen "$alice" | grep -qx " bob is typing…"; then typing=1 && break; fi
  sleep 0.2
done
if [ -n "$typing" ]; then ok "alice sees that bob is typing (the line above her status line)"; else
  bad "alice sees that bob is typing (the line above her status line)"
  screen "$alice" | sed 's/^/    /'
fi
"${T[@]}" send-keys -t "$bob" C-u
if wait_count "$alice" "is typing" 0; then ok "... and no more once he clears his line"; else
  bad "... and no more once he clears his line"
fi
type_line "$alice" "/help"
check_pane "/help lists the new commands" "$alice" "^\*\*\*   /react N KEY +add your reaction"
# Unread: pat leaves, two messages come, pat comes back.
mint pat client
pat=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$(chat_cmd pat)")
check_pane "pat joins" "$pat" "^\*\*\* joined $ROOM as pat"
check_pane "... sees the room's last message" "$pat" "^\[history\] $TS bob: \(deleted\)$"
type_line "$pat" "/quit"
check_exit "... and leaves" pat 0
rm -f "$dir/pat.rc"
type_line "$bob" "while pat is away, 1"
type_line "$bob" "while pat is away, 2"
check_pane "(alice gets both)" "$alice" "^$TS bob: while pat is away, 2$"
pat=$("${T[@]}" new-window -P -F '#{pane_id}' -t chat: "$(chat_cmd pat)")
check_pane "pat back: 2 unread since pat last read" "$pat" "^\*\*\* 2 unread messages since you last read here$"
type_line "$pat" "/quit"
check_exit "... pat leaves again" pat 0

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


# SIGSTOP, then waits (up to 10 s) until every thread of the server has stopped: kill only
# starts the group stop, and a busy server went on answering for milliseconds after it
# (enough for a whole send and leave to go through, and this check to fail).
freeze_server() {
  kill -STOP "$server_pid"
  local t state all
  for _ in $(seq 1 1000); do
    all=1
    for t in /proc/"$server_pid"/task/*/stat; do
      read -r state <"$t" 2>/dev/null || continue # a thread that exited meanwhile
      state=${state##*) }
      case ${state:0:1} in T | t) ;; *) all=0 ;; esac
    done
    [ "$all" = 1 ] && return 0
    sleep 0.01
  done
  bad "the server did not stop within 10 s of SIGSTOP"
}

# Last, since it hangs the server (SIGSTOP): a message still queued when the client leaves
# is reported with its text (through on_send_result), not by its id.
mint ivan client
mkfifo "$dir/ivan.in"
"$B/examples/chat" --chat "$ROOM" --name ivan --endpoint "$E" --key-file "$dir/ivan.key" \
  <"$dir/ivan.in" >"$dir/ivan.out" 2>&1 &
ivan_pid=$!
exec 7>"$dir/ivan.in"
for _ in $(seq 1 100); do
  grep -q "^\*\*\* joined" "$dir/ivan.out" && break
  sleep 0.1
done
freeze_server
echo "lost while the server hangs" >&7
exec 7>&-
for _ in $(seq 1 600); do # leaving waits for the hung server's deadlines: up to 60 s
  kill -0 "$ivan_pid" 2>/dev/null || break
  sleep 0.1
done
kill -CONT "$server_pid"
if grep -q '^\*\*\* not sent: "lost while the server hangs" (cancelled' "$dir/ivan.out"; then
  ok "a message queued at leave is reported by its text"
else
  bad "a message queued at leave is reported by its text"
  sed 's/^/    /' "$dir/ivan.out"
fi
if grep -qE '[0-9a-f]{32}' "$dir/ivan.out"; then bad "... and no message id is shown"; else
  ok "... and no message id is shown"
fi

finish
