#!/usr/bin/env bash
# Runs every test program and script and ends with one line "N passed, N failed".
#  - build/tests/test_*: cmocka programs; their "[  PASSED  ] N" / "[  FAILED  ] N"
#    lines are counted per test case.
#  - tests/scripts/*.sh: each may print its own "N passed, N failed" line (counted), or
#    counts as one test by exit status.
# Every program runs under a time limit so a hang fails instead of stalling CI.
set -u
B=${MIM_BUILD:-build}
LIMIT=${MIM_TEST_TIMEOUT:-300}
LOGDIR=$B/test-logs
mkdir -p "$LOGDIR"
passed=0
failed=0
failed_names=()

count_output() { # name log rc
  local name=$1 log=$2 rc=$3 p f line
  # A cmocka program may run several groups: add up every summary line.
  p=$(grep -aE '^\[  PASSED  \] [0-9]+ test' "$log" | sed -E 's/^\[  PASSED  \] ([0-9]+).*/\1/' | awk '{s+=$1} END {if (NR) print s}')
  f=$(grep -aE '^\[  FAILED  \] [0-9]+ test' "$log" | sed -E 's/^\[  FAILED  \] ([0-9]+).*/\1/' | awk '{s+=$1} END {if (NR) print s}')
  if [ -z "$p$f" ]; then
    line=$(grep -aE '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
    if [ -n "$line" ]; then
      p=$(sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/' <<<"$line")
      f=$(sed -E 's/^([A-Za-z]+: )?[0-9]+ passed, ([0-9]+) failed.*/\2/' <<<"$line")
    fi
  fi
  p=${p:-0}
  f=${f:-0}
  # A crash, timeout or non-zero exit with nothing counted as failed is one failure.
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    if [ "$rc" -eq 0 ]; then p=1; else f=1; fi
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$f" -gt 0 ]; then
    failed_names+=("$name")
    echo "FAIL $name ($p passed, $f failed, exit $rc) -- log: $log"
    tail -n 40 "$log" | sed 's/^/    /'
  else
    echo "ok   $name ($p passed)"
  fi
}

run_one() { # name command...
  local name=$1; shift
  local log=$LOGDIR/$name.log rc
  timeout --kill-after=10 "$LIMIT" "$@" >"$log" 2>&1
  rc=$?
  count_output "$name" "$log" "$rc"
}

for t in "$B"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
for s in tests/scripts/*.sh; do
  [ -f "$s" ] || continue
  run_one "$(basename "$s" .sh)" bash "$s"
done

if [ ${#failed_names[@]} -gt 0 ]; then
  echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
