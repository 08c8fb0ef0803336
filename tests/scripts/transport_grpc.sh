#!/usr/bin/env bash
# The reference transport on gRPC core (make TRANSPORT=grpc, build/transport-grpc/) still
# builds and keeps the transport contract: test_transport and the conformance suite
# against mim-local and the grpc-js server, as on the default HTTP/2 transport.
set -u
cd "$(dirname "$0")/../.." || exit 1
B=build/transport-grpc
tests=(test_transport test_transport_conformance test_net_errors)
p=0 f=0
# mim-local does not depend on the client transport: the tests use the default build's.
SERVER=${MIM_LOCAL_BIN:-${MIM_BUILD:-build}/bin/mim-local}
if ! make -j"$(nproc)" --no-print-directory TRANSPORT=grpc "${tests[@]/#/$B/tests/}" \
  >"${TMPDIR:-/tmp}/transport_grpc_build.$$.log" 2>&1; then
  tail -n 30 "${TMPDIR:-/tmp}/transport_grpc_build.$$.log"
  echo "transport_grpc: 0 passed, 1 failed (build)"
  exit 1
fi
rm -f "${TMPDIR:-/tmp}/transport_grpc_build.$$.log"
# Counts cmocka's cases; a program that fails without a count is one failure.
for t in "${tests[@]}"; do
  out=$(MIM_BUILD=$B MIM_LOCAL_BIN=$SERVER "$B/tests/$t" 2>&1)
  rc=$?
  echo "$out"
  ok=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) test.*/\1/p' <<<"$out" | awk '{s += $1} END {print s + 0}')
  bad=$(grep -cE '^\[  FAILED  \] test_' <<<"$out")
  [ "$rc" -eq 0 ] || [ "$bad" -gt 0 ] || bad=1
  p=$((p + ok)) f=$((f + bad))
  [ "$rc" -eq 0 ] || echo "FAILED: $t (gRPC core transport, exit $rc)"
done
echo "transport_grpc: $p passed, $f failed"
[ "$f" -eq 0 ]
