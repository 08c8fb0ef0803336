#!/usr/bin/env bash
# clang-tidy (.clang-tidy) and cppcheck must stay clean on the library and the server.
set -u
if ! command -v clang-tidy >/dev/null 2>&1 || ! command -v cppcheck >/dev/null 2>&1; then
  echo "lint: clang-tidy and cppcheck are needed (make deps installs them)"
  echo "lint: 0 passed, 1 failed"
  exit 1
fi
if out=$(scripts/lint.sh 2>&1); then
  echo "lint: 1 passed, 0 failed"
else
  echo "$out"
  echo "lint: 0 passed, 1 failed"
  exit 1
fi
