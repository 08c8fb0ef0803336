#!/usr/bin/env bash
# make check: the benchmark harness still runs (our stack + raw gRPC ping, tiny counts, no
# external servers) and produces its JSON. Ends with "bench-smoke: N passed, N failed".
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
export MIM_BUILD=${MIM_BUILD:-build}
out=$(timeout --kill-after=5 120 bench/run.sh smoke 2>&1)
rc=$?
summary=$(grep -E '^bench-smoke: [0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n1)
grep -vE '^bench-smoke: ' <<<"$out"
if [ -z "$summary" ]; then
  echo "bench-smoke: 0 passed, 1 failed (exit $rc, no summary)"
  exit 1
fi
if [ ! -s "$MIM_BUILD/bench-smoke/latest.json" ]; then
  echo "bench-smoke: 0 passed, 1 failed (no $MIM_BUILD/bench-smoke/latest.json)"
  exit 1
fi
echo "$summary"
exit "$rc"
