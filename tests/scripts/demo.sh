#!/usr/bin/env bash
# The README's first command must keep working: run the scripted demo (processes, then the
# in-process tour) and check the conversation, the moderator's mask, the rejected spam
# and the late joiner's history.
set -u
B=${MIM_BUILD:-build}
out=$(MIM_BUILD=$B timeout 60 scripts/demo.sh 2>&1)
rc=$?
p=0 f=0
check() { # description pattern
  if grep -qF -- "$2" <<<"$out"; then p=$((p + 1)); else f=$((f + 1)); echo "missing: $1"; fi
}
check "server line" "mim-local       listening on 127.0.0.1:"
check "vendor line" "token-vendor    listening on http://127.0.0.1:"
check "bob sees alice live" "alice: hi bob, alice here"
check "moderator masks the word" "bob (token root): hello alice! this **** demo works"
check "moderator rejects spam" "lobby reject bob: **** ****  [only banned words]"
check "late joiner gets history" "[history] "
check "tour: moderator's own token id" "this is **** fast   (token id: moderator)"
check "tour: history lists 4 messages" "(4 messages, the spam was rejected)"
check "tour: direct chat, alice's token id" "live    alice  just between us, bob   (token id: alice)"
check "tour: a reply" "live    bob    I do   [a reply]   (token id: bob)"
check "tour: an edit" "[alice sees] update (edited): bob \"I do, and croissants\""
check "tour: a reaction" "[alice sees] update (reactions): bob \"I do, and croissants\"  +1 by alice"
check "tour: a deletion" "[alice sees] update (deleted): bob \"\""
check "tour: typing" "[alice sees] bob is typing"
check "tour: mim_members" "alice asks who is here (mim_members): bob, typing"
check "tour: unread count" "(mim_mark_read): 1 unread after it"
check "tour: read markers" "read markers (mim_read_markers): carol read up to the question"
check "tour: dictionary" "dictionary tour-settings: topic = coffee (get), 1 field (fetch)"
check "clean end" "demo finished"
if grep -q "spam spam\|spam now   (token id" <<<"$(grep -v 'says:\|rejected' <<<"$out")"; then
  f=$((f + 1))
  echo "spam was delivered"
else
  p=$((p + 1))
fi
if grep -qF "(token root): **** ****" <<<"$out"; then f=$((f + 1)); echo "rejected message shown"; else p=$((p + 1)); fi
if [ "$rc" -ne 0 ]; then f=$((f + 1)); echo "demo exited $rc"; fi
[ "$f" -eq 0 ] || echo "$out"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
