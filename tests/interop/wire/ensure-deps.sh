#!/usr/bin/env bash
# Installs the pinned packages of the wire-check server (package-lock.json) with `npm ci`
# when node_modules is missing or was installed from another lockfile. Run by
# tests/unit/test_wire.c before it starts server.js; prints why it fails and exits non-zero.
set -u
cd "$(dirname "$0")" || exit 1
command -v node >/dev/null || { echo "wire: node not found (Node 20+ is required)" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "wire: node $(node --version) is too old (need 20+)" >&2; exit 1; }
stamp=node_modules/.mim-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -d node_modules ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "wire: npm ci (node_modules missing or stale)"
npm ci --no-audit --no-fund --loglevel=error || { echo "wire: npm ci failed" >&2; exit 1; }
echo "$want" >"$stamp"
