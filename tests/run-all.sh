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
# Valgrind runs use the plain build: their logs go elsewhere than a plain run's.
LOGDIR=$B/test-logs${MIM_VALGRIND:+-valgrind}
mkdir -p "$LOGDIR"
passed=0
failed=0
failed_names=()
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Test programs that start scripts of the source tree (test_transport_conformance runs
# tests/interop/conform/server.js) find it here, whatever the working directory.
export MIM_SRC_ROOT=${MIM_SRC_ROOT:-$ROOT}

# Sanitizer runs (make check SANITIZE=...): every report must fail the test that caused it,
# also one printed by a child process (mim-local, examples) whose exit status a test may not
# look at. So ASan, LSan and TSan also write their reports to $SANDIR/<test>.<pid>, and any
# such file fails that test; so does a report in the test's output (GCC's UBSan ignores
# log_path and prints to stderr, which child servers share with the test). UBSan is built
# with -fno-sanitize-recover and halts here too. TSan reads tests/tsan.supp (gRPC, Abseil
# and OpenSSL internals only, documented there); LSan reads tests/lsan.supp. Every C test
# program runs in every mode; the scripts in SAN_SKIP below are skipped, printed.
SANITIZE=${SANITIZE:-}
SANDIR=$LOGDIR/sanitizer
# Scripts that do not run in sanitizer mode, each with the reason (printed as "skip").
declare -A SAN_SKIP=()
if [ -n "$SANITIZE" ]; then
  rm -rf "$SANDIR"
  mkdir -p "$SANDIR"
  LIMIT=${MIM_TEST_TIMEOUT:-600} # TSan runs the test programs 5-15x slower
  export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
  export TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$ROOT/tests/tsan.supp:halt_on_error=0:exitcode=66:second_deadlock_stack=1:history_size=4:print_suppressions=0}
  SAN_SKIP[fuzz]="the libFuzzer harnesses are always built with ASan+UBSan; the plain make check runs them"
  SAN_SKIP[lint]="static analysis; the same result as in the plain make check"
  SAN_SKIP[bench_smoke]="timing harness; the plain make check runs it"
  SAN_SKIP[transport_grpc]="builds the reference gRPC core transport; the plain make check runs it"
  if [[ $SANITIZE == *thread* ]]; then
    SAN_SKIP[python]="CPython with the TSan runtime preloaded crashes; ASan runs the binding"
  fi
fi

# Valgrind runs (make check-valgrind, MIM_VALGRIND=1): every C test program runs under
# memcheck, and so does each mim-local a test starts (MIM_LOCAL_BIN points at
# tests/valgrind/mim-local, which execs valgrind on $B/bin/mim-local). Any memcheck error
# or definite leak fails the test: valgrind exits 99 and its per-process log in $SANDIR
# says "ERROR SUMMARY: N" with N > 0 (checked for servers whose exit status a test may
# ignore). The shell scripts only start programs of their own (examples, the README
# program, node, python) and are skipped, printed as "skip".
MIM_VALGRIND=${MIM_VALGRIND:-}
WRAP=()
# TSan in GCC 12 / clang 14 maps its shadow memory at fixed places and dies with
# "unexpected memory mapping" when the kernel randomizes mmap with more than 28 bits
# (newer kernels' default on some distributions). Then run everything without ASLR
# (setarch -R is inherited by the servers a test starts). Not needed on a kernel with 28.
# MIM_TSAN_SETARCH=1 forces it.
SCRIPT_WRAP=()
if [[ $SANITIZE == *thread* ]] && { [ "${MIM_TSAN_SETARCH:-}" = 1 ] ||
  [ "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)" -gt 28 ]; }; then
  SCRIPT_WRAP=(setarch "$(uname -m)" -R)
  WRAP=("${SCRIPT_WRAP[@]}")
  echo "run-all: TSan programs run under setarch -R (no ASLR)"
fi
if [ -n "$MIM_VALGRIND" ]; then
  SANDIR=$LOGDIR/valgrind
  rm -rf "$SANDIR"
  mkdir -p "$SANDIR"
  LIMIT=${MIM_TEST_TIMEOUT:-900}
  export MIM_VG_DIR=$SANDIR MIM_LOCAL_BIN=$ROOT/tests/valgrind/mim-local
  export MIM_VG_BIN=${MIM_VG_BIN:-$B/bin/mim-local}
  # Timing bounds in tests that honour these are widened (valgrind runs ~20-50x slower):
  # MIM_TEST_SLOW by some tests' own rules, MIM_TEST_TIME_SCALE by test_time_scale().
  export MIM_TEST_SLOW=${MIM_TEST_SLOW:-1} MIM_TEST_TIME_SCALE=${MIM_TEST_TIME_SCALE:-10}
  WRAP=("$ROOT/tests/valgrind/memcheck")
  MIM_RUN_SCRIPTS=${MIM_RUN_SCRIPTS:-0}
fi
MIM_RUN_SCRIPTS=${MIM_RUN_SCRIPTS:-1}

# The chaos test (test_chaos: 10 senders x 1000 messages through a connection-cutting
# proxy) runs with fewer messages per sender in instrumented runs, which are 2-50x slower;
# every check of it still runs. An explicit MIM_CHAOS_* setting wins.
if [ -n "$MIM_VALGRIND" ]; then
  export MIM_CHAOS_MSGS=${MIM_CHAOS_MSGS:-50} MIM_CHAOS_RESTART_MSGS=${MIM_CHAOS_RESTART_MSGS:-50}
elif [ -n "$SANITIZE" ]; then
  export MIM_CHAOS_MSGS=${MIM_CHAOS_MSGS:-200} MIM_CHAOS_RESTART_MSGS=${MIM_CHAOS_RESTART_MSGS:-100}
fi

# Adds the sanitizer's own SANITIZE-mode options for one test: reports go to files too.
san_env() { # name
  export MIM_VG_NAME=$1
  [ -n "$SANITIZE" ] || return 0
  local p=$SANDIR/$1 v
  for v in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
    export "$v=${!v}:log_path=$p"
  done
  # The Python binding loads our instrumented .so into an uninstrumented interpreter: the
  # sanitizer runtime must be loaded first. LSan is off there, since CPython keeps its own
  # objects until exit (the C tests check our leaks).
  if [ "$1" = python ]; then
    local rt lib pre=
    case $SANITIZE in *address*) rt="libasan.so libubsan.so" ;; *) rt= ;; esac
    for lib in $rt; do pre="$pre:$(${CC:-cc} -print-file-name="$lib")"; done
    export LD_PRELOAD=${pre#:} ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0
  fi
}

# Appends every sanitizer report file a test left to its log; non-zero if there was one.
sanitizer_reports() { # name log
  local files f
  if [ -n "$MIM_VALGRIND" ]; then
    files=
    for f in "$SANDIR/$1".*; do
      [ -f "$f" ] || continue
      # A process SIGKILLed by a crash test writes no summary: nothing to judge there.
      if grep -qE 'ERROR SUMMARY: [1-9]' "$f"; then files="$files $f"; fi
    done
  elif [ -n "$SANITIZE" ]; then
    files=$(ls "$SANDIR/$1".* 2>/dev/null)
    # GCC's libubsan ignores log_path: its reports (also a child's) land in the log.
    if grep -qaE 'runtime error: |ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer' "$2"; then
      [ -n "$files" ] || { echo "[  FAILED  ] 1 test: sanitizer report in the output" >>"$2"; return 1; }
    fi
  fi
  [ -n "${files:-}" ] || return 0
  { echo "---- ${SANITIZE:-valgrind} reports ----"; cat $files; } >>"$2"
  echo "[  FAILED  ] 1 test: sanitizer report" >>"$2"
  return 1
}

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
    echo "ok   $name ($p passed, ${TEST_SECONDS:-0} s)"
  fi
}

# MIM_RUN_ONLY=REGEX runs only the tests whose name matches (grep -E), e.g. to repeat
# one failure in a sanitizer build.
MIM_RUN_ONLY=${MIM_RUN_ONLY:-}

run_one() { # name command...
  local name=$1; shift
  local log=$LOGDIR/$name.log rc
  if [ -n "$MIM_RUN_ONLY" ] && ! grep -qE -- "$MIM_RUN_ONLY" <<<"$name"; then
    return
  fi
  if [ -n "${SAN_SKIP[$name]:-}" ]; then
    echo "skip $name (SANITIZE=$SANITIZE: ${SAN_SKIP[$name]})"
    return
  fi
  local t0=$SECONDS
  (san_env "$name" && exec timeout --kill-after=10 "$LIMIT" "${WRAP[@]}" "$@") >"$log" 2>&1
  rc=$?
  TEST_SECONDS=$((SECONDS - t0))
  sanitizer_reports "$name" "$log" || { [ "$rc" -ne 0 ] || rc=1; }
  count_output "$name" "$log" "$rc"
}

for t in "$B"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
WRAP=("${SCRIPT_WRAP[@]}")
for s in tests/scripts/*.sh; do
  [ -f "$s" ] || continue
  if [ "$MIM_RUN_SCRIPTS" = 0 ]; then
    echo "skip $(basename "$s" .sh) (valgrind run: C test programs only)"
    continue
  fi
  run_one "$(basename "$s" .sh)" bash "$s"
done

if [ ${#failed_names[@]} -gt 0 ]; then
  echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
