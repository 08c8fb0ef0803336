#!/usr/bin/env bash
# The reference transport on gRPC core (make TRANSPORT=grpc, build/transport-grpc/) still
# builds and keeps the transport contract: test_transport and the conformance suite
# against mim-local and the grpc-js server, as on the default HTTP/2 transport.
set -u
cd "$(dirname "$0")/../.."
B=build/transport-grpc
tests=(test_transport test_transport_conformance)
p=0 f=0
if ! make -j"$(nproc)" --no-print-directory TRANSPORT=grpc lib server "${tests[@]/#/$B/tests/}" \
  >"${TMPDIR:-/tmp}/transport_grpc_build.$$.log" 2>&1; then
  tail -n 30 "${TMPDIR:-/tmp}/transport_grpc_build.$$.log"
  echo "transport_grpc: 0 passed, 1 failed (build)"
  exit 1
fi
rm -f "${TMPDIR:-/tmp}/transport_grpc_build.$$.log"
for t in "${tests[@]}"; do
  if MIM_BUILD=$B "$B/tests/$t"; then p=$((p + 1)); else f=$((f + 1)); echo "FAILED: $t (gRPC core transport)"; fi
done
echo "transport_grpc: $p passed, $f failed"
[ "$f" -eq 0 ]
