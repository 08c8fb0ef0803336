#!/usr/bin/env bash
# The Python binding's pytest suite (bindings/python/tests) against a mim-local it starts
# itself. Ends with "python: N passed, N failed"; exits non-zero on any failure, error,
# or when pytest collected no test (its exit 5).
set -u
cd "$(dirname "$0")/../.."
B=${MIM_BUILD:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
export MIM_BUILD=$B
if [ -z "${MOMENTO_IM_LIB:-}" ] && [ -e "$B/lib/libmomento-im.so" ]; then
  export MOMENTO_IM_LIB=$B/lib/libmomento-im.so
fi
export PYTHONDONTWRITEBYTECODE=1

# Debian's python3-pytest lives in /usr/lib/python3/dist-packages: a python3 earlier on
# PATH (pyenv, a venv) may not see it, so take the first interpreter that imports pytest.
py=
for cand in ${MIM_PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import pytest' >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "pytest not found for any python3 (install python3-pytest: make deps)"
  echo "python: 0 passed, 1 failed"
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$py" -m pytest -q -p no:cacheprovider bindings/python/tests 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# pytest's last line, e.g. "2 failed, 17 passed, 1 error in 3.1s" or "20 passed in 0.4s".
summary=$(grep -aE '(passed|failed|error|no tests ran)' "$log" | tail -n1)
count() { grep -oE "[0-9]+ $1" <<<"$summary" | awk '{s+=$1} END {print s+0}'; }
passed=$(count passed)
failed=$(($(count failed) + $(count 'errors?')))
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # no tests (exit 5), interrupted, internal error, usage error
fi
echo "python: $passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
