#!/usr/bin/env bash
# Interop tests: the official Momento Node.js SDK (@gomomento/sdk, pinned in
# tests/interop/package-lock.json) against build/bin/mim-local. Each test file starts its own
# mim-local on a free port. Installs the pinned packages with `npm ci` when node_modules is
# missing or installed from another lockfile, builds $MIM_BUILD/interop/mim-peer (our C
# library's CLI for the both-ways tests), runs `node --test`, and ends with
# "interop: N passed, N failed". Needs `make` (server + static library) first.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=$ROOT/tests/interop
export MIM_BUILD=${MIM_BUILD:-build}
case $MIM_BUILD in /*) ;; *) MIM_BUILD=$ROOT/$MIM_BUILD ;; esac

# In sanitizer builds a UBSan report must fail the test like an ASan one (servers and
# mim-peer are checked for exit status 0).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

fail() { echo "interop: $*"; echo "0 passed, 1 failed"; exit 1; }

command -v node >/dev/null || fail "node not found (Node 20+ is required)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "node $(node --version) is too old (need 20+)"
[ -x "$MIM_BUILD/bin/mim-local" ] || echo "interop: warning: $MIM_BUILD/bin/mim-local not built; every test will fail"

cd "$DIR" || fail "no $DIR"
bash "$DIR/npm-ci.sh" || fail "npm ci failed"

# Our C library's side of the both-ways tests (test/cpeer.test.js): a small CLI on the
# static library. A failed build removes any old binary so those tests fail instead of
# testing stale code.
# The C peers: mim-peer (cpeer, direct, dictionary tests) and mim-chat-peer (one chat
# session, for protocol.test.js).
build_peer() { # SOURCE BINARY
  rm -f "$2"
  # shellcheck disable=SC2046
  ${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -O1 -g \
    ${SANITIZE:+-fsanitize=$SANITIZE -fno-omit-frame-pointer} -I"$ROOT/include" \
    "$1" "$MIM_BUILD/lib/libmomento-im.a" \
    $(pkg-config --libs $(sed -n 's/^Requires.private://p' "$MIM_BUILD/lib/libmomento-im.pc")) \
    -lpthread -o "$2" ||
    echo "interop: could not build $2; the tests using it will fail"
}
if [ -f "$MIM_BUILD/lib/libmomento-im.a" ]; then
  mkdir -p "$MIM_BUILD/interop"
  build_peer "$DIR/c/mim_peer.c" "$MIM_BUILD/interop/mim-peer"
  build_peer "$DIR/c/mim_chat_peer.c" "$MIM_BUILD/interop/mim-chat-peer"
else
  rm -f "$MIM_BUILD/interop/mim-peer" "$MIM_BUILD/interop/mim-chat-peer"
  echo "interop: no $MIM_BUILD/lib/libmomento-im.a (run make); the C<->SDK tests will fail"
fi

out=$(mktemp)
# Server temp files go to a per-run dir (removed even if a test process is killed), server
# logs to $MIM_BUILD/test-logs/interop/ (kept from the last run only).
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/mim-interop-run-XXXXXX")
rm -rf "$MIM_BUILD/test-logs/interop"
node_pid=
trap '[ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; rm -rf "$out" "$run_tmp"' EXIT
trap 'exit 143' TERM INT
# Files run one after another (node's default on this 2-core box); each test is bounded.
TMPDIR=$run_tmp node --test --test-reporter=spec --test-timeout=60000 test/ >"$out" 2>&1 &
node_pid=$!
wait "$node_pid"
rc=$?
node_pid=
cat "$out"
pass=$(grep -aE '^(ℹ|#) pass [0-9]+' "$out" | tail -n1 | grep -oE '[0-9]+$')
failn=$(grep -aE '^(ℹ|#) fail [0-9]+' "$out" | tail -n1 | grep -oE '[0-9]+$')
cancelled=$(grep -aE '^(ℹ|#) cancelled [0-9]+' "$out" | tail -n1 | grep -oE '[0-9]+$')
pass=${pass:-0}
failn=$(( ${failn:-0} + ${cancelled:-0} ))
if [ "$rc" -ne 0 ] && [ "$failn" -eq 0 ]; then failn=1; fi
echo "interop: $pass passed, $failn failed"
[ "$rc" -eq 0 ] && [ "$failn" -eq 0 ]
