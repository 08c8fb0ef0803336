#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/fuzz_*.c, `make fuzz-build`, clang) and runs each
# for MIM_FUZZ_SECONDS seconds (default 15, so the six fit make check's 10-minute budget;
# `make fuzz FUZZ_SECONDS=N` for longer campaigns). The committed seeds in
# fuzz/corpus/<name>/ are read-only inputs; what a run discovers goes to
# $B/fuzz/corpus/<name>/ (kept between runs). A crash, leak or sanitizer report fails the harness and leaves the reproducer
# in $B/fuzz/crashes/ (replay: $B/fuzz/<name> <file>). Last line: "fuzz: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${MIM_BUILD:-build}
SECS=${MIM_FUZZ_SECONDS:-15}
FZ=$B/fuzz
mkdir -p "$FZ/crashes" "$FZ/logs"

if ! command -v "${FUZZ_CC:-clang}" >/dev/null; then
  echo "fuzz: ${FUZZ_CC:-clang} not found"
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
if ! make --no-print-directory -j2 B="$B" fuzz-build >"$FZ/logs/build.log" 2>&1; then
  tail -n 30 "$FZ/logs/build.log"
  echo "fuzz: build failed (log: $FZ/logs/build.log)"
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi

passed=0
failed=0
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  bin=$FZ/$name
  work=$FZ/corpus/$name
  log=$FZ/logs/$name.log
  mkdir -p "$work" "fuzz/corpus/$name"
  # -timeout: one input taking longer than 10 s counts as a hang (a failure).
  "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$FZ/crashes/$name-" "$work" "fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok   $name: ${execs:-?} executions in ${SECS} s (${rate:-?}/s), corpus $(ls "$work" | wc -l) files"
  else
    failed=$((failed + 1))
    echo "FAIL $name (exit $rc) after ${execs:-?} executions; log: $log"
    grep -aE 'ERROR|SUMMARY|fuzz_[a-z0-9_]+:|fake_rpc:|Test unit written' "$log" | head -n 10 | sed 's/^/    /'
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
