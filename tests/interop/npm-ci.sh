#!/usr/bin/env bash
# Installs tests/interop/node_modules (the pinned package-lock.json) with `npm ci` when it
# is missing or was installed from another lockfile; otherwise does nothing. Used by
# tests/scripts/interop.sh and tests/unit/test_transport_conformance.c (its grpc-js server).
set -u
cd "$(dirname "$0")" || exit 1
stamp=node_modules/.mim-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || { echo "npm-ci.sh: npm not found" >&2; exit 1; }
  echo "interop: npm ci (node_modules missing or stale)"
  npm ci --no-audit --no-fund --loglevel=error || { echo "npm-ci.sh: npm ci failed" >&2; exit 1; }
  echo "$want" >"$stamp"
fi
