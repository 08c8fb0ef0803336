#!/usr/bin/env bash
# Runs the benchmark: bench/run.sh full|smoke (make bench / make bench-smoke call it).
#   full:  every system (our stack, raw gRPC ping, the official Node SDK, NATS, Redis);
#          installs missing Debian packages (nats-server libnats-dev redis-server
#          libhiredis-dev gnuplot-nox); writes bench/results/latest.{json,md,png}.
#   smoke: our stack + raw gRPC ping with tiny counts, no external servers; writes
#          $MIM_BUILD/bench-smoke/latest.json and checks it.
# Every server is started here on loopback on a free port and stopped by the EXIT trap.
# Placement: servers and clients are pinned with taskset (BENCH_SERVER_CPU,
# BENCH_CLIENT_CPU; default both 0 = "same core"); the placement is recorded.
set -euo pipefail
MODE=${1:-full}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=${MIM_BUILD:-build}
MAKE=${MAKE:-make}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-0}
PAYLOAD=100
export BENCH_LOADAVG_BEFORE
BENCH_LOADAVG_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)

case $MODE in
full)
  OUT=bench/results
  COUNT=${BENCH_COUNT:-5000} WARMUP=${BENCH_WARMUP:-500} TPUT=${BENCH_TPUT:-50000}
  # The Node SDK publishes a few hundred messages/s here: its throughput run gets fewer
  # messages so the whole bench stays within minutes (the count is in the JSON).
  NODE_TPUT=${BENCH_NODE_TPUT:-5000}
  WINDOW=${BENCH_WINDOW:-256}
  ROUNDS=${BENCH_ROUNDS:-3} JOINS=${BENCH_JOINS:-300} SESSIONS=${BENCH_SESSIONS:-1000}
  ;;
smoke)
  OUT=$B/bench-smoke
  COUNT=50 WARMUP=10 TPUT=500 WINDOW=64 JOINS=5 SESSIONS=20 ROUNDS=1
  ;;
*)
  echo "usage: bench/run.sh full|smoke" >&2
  exit 2
  ;;
esac

WORK=$(mktemp -d /tmp/mim-bench.XXXXXX)
SAMPLES=$WORK/samples
mkdir -p "$SAMPLES" "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "bench: $*" >&2; }

# A free loopback port: bind port 0, read it back, release it.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port: wait up to 10 s until something listens
  local i
  for i in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on port $1"
  return 1
}

# ---- packages and programs ----
if [ "$MODE" = full ]; then
  missing=()
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
  pkg-config --exists libnats || missing+=(libnats-dev)
  pkg-config --exists hiredis || missing+=(libhiredis-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" >&2 || { $SUDO apt-get update -q >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
  fi
  # The Node SDK: reuse the interop tests' pinned install (tests/interop/package-lock.json).
  if [ ! -d tests/interop/node_modules/@gomomento/sdk ]; then
    log "npm ci in tests/interop"
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
  $MAKE -s B="$B" bench-build bench-peers >&2
else
  $MAKE -s B="$B" bench-build >&2
fi
BIN=$B/bench

# ---- mim-local ----
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

start_mim_local() { # sets MIM_PID, MIM_EP, MIMDIR
  MIMDIR=$WORK/mim-$1
  mkdir -p "$MIMDIR"
  taskset -c "$SCPU" "$B/bin/mim-local" --host 127.0.0.1 --port 0 --port-file "$MIMDIR/port" \
    --root-key-file "$MIMDIR/key" --cache bench --log-level warn >"$MIMDIR/log" 2>&1 &
  MIM_PID=$!
  PIDS+=("$MIM_PID")
  local i
  for i in $(seq 100); do [ -s "$MIMDIR/port" ] && break; sleep 0.1; done
  [ -s "$MIMDIR/port" ] || { log "mim-local did not start"; cat "$MIMDIR/log" >&2; exit 1; }
  MIM_EP=127.0.0.1:$(cat "$MIMDIR/port")
}

# One round runs every system once, one after the other (so a busy spell of the machine
# hits one round, and the report takes each figure's median over the rounds).
run_round() { # round number
  local r=$1 dir=$SAMPLES/round$1
  mkdir -p "$dir"
  local common=(--count "$COUNT" --warmup "$WARMUP" --tput "$TPUT" --sessions "$SESSIONS"
    --payload "$PAYLOAD" --samples-dir "$dir")
  start_mim_local "$r"
  log "round $r: libmomento-im + raw gRPC ping (mim-local $MIM_EP, pid $MIM_PID)"
  taskset -c "$CCPU" "$BIN/bench_mim" --endpoint "$MIM_EP" --key-file "$MIMDIR/key" \
    --cache bench --server-pid "$MIM_PID" --window "$WINDOW" --joins "$JOINS" "${common[@]}" |
    sed "s/^{/{\"round\":$r,/" >>"$RESULTS"
  MIM_RSS_END=$(awk '/VmRSS/ {print $2*1024}' "/proc/$MIM_PID/status")
  [ "$MODE" = full ] || { kill "$MIM_PID"; return 0; }

  log "round $r: official Node SDK"
  NODE_PATH=$ROOT/tests/interop/node_modules taskset -c "$CCPU" node bench/node/bench_sdk.js \
    --endpoint "$MIM_EP" --key-file "$MIMDIR/key" --cache bench --server-pid "$MIM_PID" \
    --window "$WINDOW" --joins "$JOINS" "${common[@]}" --tput "$NODE_TPUT" |
    sed "s/^{/{\"round\":$r,/" >>"$RESULTS" || log "Node SDK bench failed (see above)"
  kill "$MIM_PID"

  log "round $r: NATS"
  local nport rport
  nport=$(free_port)
  taskset -c "$SCPU" nats-server -a 127.0.0.1 -p "$nport" >"$WORK/nats.log" 2>&1 &
  NATS_PID=$!
  PIDS+=("$NATS_PID")
  wait_port "$nport"
  taskset -c "$CCPU" "$BIN/bench_nats" --url "nats://127.0.0.1:$nport" --server-pid "$NATS_PID" \
    "${common[@]}" | sed "s/^{/{\"round\":$r,/" >>"$RESULTS"
  kill "$NATS_PID"

  log "round $r: Redis"
  rport=$(free_port)
  taskset -c "$SCPU" redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
    --daemonize no --logfile "$WORK/redis.log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$rport"
  taskset -c "$CCPU" "$BIN/bench_redis" --port "$rport" --server-pid "$REDIS_PID" \
    --window "$WINDOW" --joins "$JOINS" "${common[@]}" | sed "s/^{/{\"round\":$r,/" >>"$RESULTS"
  kill "$REDIS_PID"
}

for r in $(seq "$ROUNDS"); do run_round "$r"; done

# ---- report ----
SO=$B/lib/libmomento-im.so.$(sed -n 's/^VERSION_\(MAJOR\|MINOR\|PATCH\) := //p' Makefile | paste -sd.)
STRIPPED=$WORK/stripped.so
strip -o "$STRIPPED" "$SO" 2>/dev/null || cp "$SO" "$STRIPPED"
python3 bench/report.py --mode "$MODE" --results "$RESULTS" --samples "$SAMPLES" --out "$OUT" \
  --so "$SO" --so-stripped "$STRIPPED" --server-cpu "$SCPU" --client-cpu "$CCPU" \
  --payload "$PAYLOAD" --count "$COUNT" --warmup "$WARMUP" --tput "$TPUT" --window "$WINDOW" \
  --joins "$JOINS" --sessions "$SESSIONS" --rounds "$ROUNDS" --mim-local-rss-end "$MIM_RSS_END"
log "wrote $OUT/latest.json"
