#!/usr/bin/env bash
# The README's first command must keep working: run the scripted demo and check that the
# conversation, the moderator's mask, the rejected spam and the late joiner's history show.
set -u
B=${MIM_BUILD:-build}
out=$(MIM_BUILD=$B timeout 60 scripts/demo.sh 2>&1)
rc=$?
p=0 f=0
check() { # description pattern
  if grep -qF -- "$2" <<<"$out"; then p=$((p + 1)); else f=$((f + 1)); echo "missing: $1"; fi
}
check "server line" "mim-local listening on 127.0.0.1:"
check "bob receives alice live" "[bob   sees]"
check "moderator masks the word" "this is **** fast   (token id: moderator)"
check "late joiner gets history" "[carol sees]"
check "history lists 4 messages" "(4 messages, the spam was rejected)"
check "clean end" "demo finished"
if grep -q "spam now   (token id" <<<"$out"; then f=$((f + 1)); echo "spam was delivered"; else p=$((p + 1)); fi
if [ "$rc" -ne 0 ]; then f=$((f + 1)); echo "demo exited $rc"; fi
[ "$f" -eq 0 ] || echo "$out"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
