#!/usr/bin/env bash
# The Python binding as a user installs it: a fresh venv in a temp dir, `pip install` of
# bindings/python into it offline (Debian's setuptools and wheel, no index), then the
# pytest suite (bindings/python/tests) run by the venv's interpreter against the
# installed package and the freshly built library, twice: all of it with the library
# named by MOMENTO_IM_LIB (the override), then the tests that load it (and a chat
# round trip) with the library found through the loader path (LD_LIBRARY_PATH only). Its
# type hints are checked with mypy --strict as installed.
# Each run starts its own mim-local. Ends with "python: N passed, N failed"; exits
# non-zero on any failure, error, or a run where pytest collected nothing (its exit 5).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
B=${MIM_BUILD:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
export MIM_BUILD=$B
LIBDIR=$B/lib
export PYTHONDONTWRITEBYTECODE=1

fail() {
  echo "$1"
  echo "python: 0 passed, 1 failed"
  exit 1
}

# The venv needs ensurepip (python3-venv), and --system-site-packages gives it Debian's
# python3-pytest, setuptools and wheel. A python3 earlier on PATH (pyenv...) may lack
# them: take the first interpreter that has all.
py=
for cand in ${MIM_PYTHON:-} /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
    "$cand" -c 'import ensurepip, venv, pytest, setuptools, wheel, mypy' >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
[ -n "$py" ] || fail "no python3 with venv, pytest, setuptools, wheel and mypy (make deps)"
[ -e "$LIBDIR/libmomento-im.so" ] || fail "$LIBDIR/libmomento-im.so not built (run make)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
venv=$tmp/venv
"$py" -m venv --system-site-packages "$venv" || fail "python -m venv failed"
# A copy: pip builds in the source directory (build/, *.egg-info), not in the checkout.
cp -r bindings/python "$tmp/src"
"$venv/bin/python" -m pip install -q --no-index --no-build-isolation --no-deps "$tmp/src" ||
  fail "pip install bindings/python failed"
rm -rf "$tmp/src"

passed=0
failed=0
run() { # name, then env's arguments (variables to unset / set), --, pytest's arguments
  local log=$tmp/$1.log envargs=() rc summary p f
  shift
  while [ "$1" != -- ]; do
    envargs+=("$1")
    shift
  done
  shift
  (cd "$tmp" && env "${envargs[@]}" MOMENTO_IM_TEST_INSTALLED=1 "$venv/bin/python" -m \
    pytest -q -p no:cacheprovider "$@" "$ROOT/bindings/python/tests") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # pytest's last line, e.g. "2 failed, 17 passed, 1 error in 3.1s" or "20 passed in 0.4s".
  summary=$(grep -aE '(passed|failed|error|no tests ran)' "$log" | tail -n1)
  p=$(grep -oE "[0-9]+ passed" <<<"$summary" | awk '{s+=$1} END {print s+0}')
  f=$(grep -oE "[0-9]+ (failed|errors?)" <<<"$summary" | awk '{s+=$1} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1 # no tests (exit 5), interrupted, internal error, usage error
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

# The type hints of the installed package, as a user's mypy sees them (PEP 561).
if (cd "$tmp" && "$venv/bin/python" -m mypy --strict --cache-dir "$tmp/mypy" -p momento_im); then
  passed=$((passed + 1))
else
  echo "mypy --strict -p momento_im failed"
  failed=$((failed + 1))
fi
run override MOMENTO_IM_LIB="$LIBDIR/libmomento-im.so" --
run loader -u MOMENTO_IM_LIB LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" -- \
  -k 'test_version or installed or loader_path or test_ping or join_send or ctrl_c'
echo "python: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
