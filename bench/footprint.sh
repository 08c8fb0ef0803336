#!/usr/bin/env bash
# Footprint of libmomento-im as built in one build dir (issue 14's footprint goals):
#   bench/footprint.sh [BUILD_DIR]      (default $MIM_BUILD, else build; e.g. build/transport-grpc)
# Reports the shared libraries libmomento-im.so loads (ldd: count, size on disk, whether
# libstdc++ / libgrpc are among them), then, against a mim-local of the same build dir
# started here on a free loopback port, plaintext and TLS (a throwaway self-signed
# 127.0.0.1 certificate), the RSS and thread count of a process holding one client with
# one joined session, and the RSS growth per idle joined session over
# $FOOTPRINT_SESSIONS (default 100) more. bench/footprint.c is that process (linked
# against the shared library, as an application is). Prints a Markdown table and writes
# BUILD_DIR/footprint/latest.json. Servers are stopped by the EXIT trap.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=${1:-${MIM_BUILD:-build}}
SESSIONS=${FOOTPRINT_SESSIONS:-100}
SO=$(ls "$B"/lib/libmomento-im.so.*.*.* 2>/dev/null | head -n1 || true)
[ -n "$SO" ] && [ -x "$B/bin/mim-local" ] || {
  echo "footprint: build $B first (make lib server, with its TRANSPORT)" >&2
  exit 2
}
OUT=$B/footprint
mkdir -p "$OUT" "$B/bench"
WORK=$(mktemp -d /tmp/mim-footprint.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The probe links the shared library of this build dir (rpath: no install needed).
LIBDIR=$(cd "$B/lib" && pwd)
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -Iinclude -o "$B/bench/footprint" \
  bench/footprint.c -L"$LIBDIR" -lmomento-im -Wl,-rpath,"$LIBDIR"

# ---- shared libraries ----
# Every ldd line that resolves to a file (not linux-vdso), the library itself excluded.
mapfile -t LIBS < <(ldd "$SO" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
NLIBS=${#LIBS[@]}
DISK=0
for l in "${LIBS[@]}"; do DISK=$((DISK + $(stat -L -c %s "$l"))); done
STDCXX=no GRPC=no CURL=no
printf '%s\n' "${LIBS[@]}" | grep -q 'libstdc++' && STDCXX=yes
printf '%s\n' "${LIBS[@]}" | grep -q '/libgrpc' && GRPC=yes
printf '%s\n' "${LIBS[@]}" | grep -q '/libcurl' && CURL=yes
NEEDED=$(objdump -p "$SO" | awk '/NEEDED/ {print $2}' | paste -sd, -)
SO_SIZE=$(stat -L -c %s "$SO")

# ---- one process with one client + sessions, against mim-local ----
start_mim_local() { # name extra-args...: sets MIM_PID, MIM_EP, MIMDIR
  MIMDIR=$WORK/$1
  shift
  mkdir -p "$MIMDIR"
  "$B/bin/mim-local" --host 127.0.0.1 --port 0 --port-file "$MIMDIR/port" \
    --root-key-file "$MIMDIR/key" --cache bench --log-level warn "$@" >"$MIMDIR/log" 2>&1 &
  MIM_PID=$!
  PIDS+=("$MIM_PID")
  for _ in $(seq 100); do [ -s "$MIMDIR/port" ] && break; sleep 0.1; done
  [ -s "$MIMDIR/port" ] || { echo "footprint: mim-local did not start" >&2; cat "$MIMDIR/log" >&2; exit 1; }
  MIM_EP=127.0.0.1:$(cat "$MIMDIR/port")
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

start_mim_local plain
PLAIN=$("$B/bench/footprint" --endpoint "$MIM_EP" --key-file "$MIMDIR/key" --sessions "$SESSIONS")
stop "$MIM_PID"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" 2>/dev/null
start_mim_local tls --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
TLS=$("$B/bench/footprint" --endpoint "$MIM_EP" --key-file "$MIMDIR/key" --sessions "$SESSIONS" \
  --tls-ca "$WORK/cert.pem")
stop "$MIM_PID"

python3 - "$B" "$NLIBS" "$DISK" "$STDCXX" "$GRPC" "$CURL" "$NEEDED" "$SO_SIZE" "$PLAIN" "$TLS" \
  "$OUT/latest.json" <<'PY'
import json, sys
b, nlibs, disk, stdcxx, grpc, curl, needed, so_size, plain, tls, out = sys.argv[1:]
plain, tls = json.loads(plain), json.loads(tls)
res = {"build": b, "shared_libraries": int(nlibs), "shared_libraries_bytes": int(disk),
       "so_bytes": int(so_size), "libstdcxx": stdcxx == "yes", "libgrpc": grpc == "yes",
       "libcurl": curl == "yes", "needed": needed.split(",") if needed else [],
       "plaintext": plain, "tls": tls}
json.dump(res, open(out, "w"), indent=1)
mib = lambda kib: "%.1f MiB" % (kib / 1024.0)
print("| footprint (%s) | plaintext | TLS |" % b)
print("|---|---|---|")
print("| shared libraries loaded (ldd) | %s, %.1f MiB on disk (libstdc++: %s, libgrpc: %s, libcurl: %s) | same |"
      % (nlibs, int(disk) / 1048576.0, stdcxx, grpc, curl))
print("| libmomento-im.so | %.0f KiB, NEEDED %d | same |" % (int(so_size) / 1024.0, len(res["needed"])))
print("| RSS before any client | %s | %s |" % (mib(plain["rss_start_kib"]), mib(tls["rss_start_kib"])))
print("| RSS, 1 client + 1 joined session | %s | %s |"
      % (mib(plain["rss_one_session_kib"]), mib(tls["rss_one_session_kib"])))
print("| threads, 1 client + 1 joined session | %d | %d |"
      % (plain["threads_one_session"], tls["threads_one_session"]))
print("| RSS per idle joined session (over %d) | %.1f KiB | %.1f KiB |"
      % (plain["sessions"] - 1, plain["rss_per_session_bytes"] / 1024.0,
         tls["rss_per_session_bytes"] / 1024.0))
print("| RSS / threads with %d sessions | %s / %d | %s / %d |"
      % (plain["sessions"], mib(plain["rss_sessions_kib"]), plain["threads_sessions"],
         mib(tls["rss_sessions_kib"]), tls["threads_sessions"]))
PY
