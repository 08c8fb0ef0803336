#!/usr/bin/env bash
# Runs the benchmark: bench/run.sh full|smoke (make bench / make bench-smoke call it).
#   full:  every system (our stack, raw gRPC ping, the official Node SDK, NATS, Redis);
#          installs missing Debian packages (nats-server libnats-dev redis-server
#          libhiredis-dev gnuplot-nox); writes bench/results/latest.{json,md,png}.
#   smoke: our stack + raw gRPC ping with tiny counts, no external servers; writes
#          $MIM_BUILD/bench-smoke/latest.json and checks it.
# Every server is started here on loopback on a free port and stopped by the EXIT trap.
# Each round runs, for every system in turn:
#   1. the latency/throughput/join/memory set twice: placement "same" (server and client
#      pinned to CPU $BENCH_SERVER_CPU, default 0) and "split" (server on
#      $BENCH_SERVER_CPU, client on $BENCH_SPLIT_CLIENT_CPU, default 1; skipped on a
#      1-CPU machine); see /work/shared/BENCHMARKING.md for why both;
#   2. fan-out (1/100/1,000 subscribers over $BENCH_FANOUT_PROCS processes) and scaling
#      (latency + RSS with 1/10/100/1,000 chats), in placement $BENCH_EXTRA_PLACEMENT
#      (default split: the subscriber processes and the server get a core each).
# The placement of every figure is recorded in the JSON.
# Transports (issue 14): the library is measured once per transport build in the same run,
# each row against its own fresh mim-local (the same server binary): "mim (h2)" and
# "mim (grpc core)". The build given (MIM_BUILD) is one; full mode also builds the other
# (make TRANSPORT=...); a row whose build or run fails is marked failed and the others are
# kept. Smoke mode measures the given build only. Client CPU per blocking call and per
# async publish comes from getrusage inside bench_mim and, when `perf` works, from
# `perf stat -e task-clock` (difference of two runs of different lengths, so start-up
# cancels out); server CPU per message from /proc/PID/stat.
set -euo pipefail
MODE=${1:-full}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=${MIM_BUILD:-build}
MAKE=${MAKE:-make}
SCPU=${BENCH_SERVER_CPU:-0}
SAME_CCPU=${BENCH_CLIENT_CPU:-0}
SPLIT_CCPU=${BENCH_SPLIT_CLIENT_CPU:-1}
PLACEMENTS="same split"
[ "$(nproc)" -ge 2 ] || PLACEMENTS=same
EXTRA_PLACEMENT=${BENCH_EXTRA_PLACEMENT:-split}
[ "$(nproc)" -ge 2 ] || EXTRA_PLACEMENT=same
FANOUT_PROCS=${BENCH_FANOUT_PROCS:-4}
PAYLOAD=100
export BENCH_LOADAVG_BEFORE
BENCH_LOADAVG_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)

case $MODE in
full)
  OUT=${BENCH_OUT:-bench/results}
  COUNT=${BENCH_COUNT:-5000} WARMUP=${BENCH_WARMUP:-500} TPUT=${BENCH_TPUT:-50000}
  # The Node SDK publishes a few hundred messages/s here: its throughput run gets fewer
  # messages so the whole bench stays within minutes (the count is in the JSON).
  NODE_TPUT=${BENCH_NODE_TPUT:-5000}
  WINDOW=${BENCH_WINDOW:-256}
  ROUNDS=${BENCH_ROUNDS:-3} JOINS=${BENCH_JOINS:-300} SESSIONS=${BENCH_SESSIONS:-1000}
  # fan-out: subscriber counts and timed messages (one in flight) per count
  FANOUT_SUBS=${BENCH_FANOUT_SUBS:-"1 100 1000"} FANOUT_MSGS=${BENCH_FANOUT_MSGS:-200}
  FANOUT_MSGS_BIG=${BENCH_FANOUT_MSGS_BIG:-50} # for 1,000 subscribers
  NODE_FANOUT_SUBS=${BENCH_NODE_FANOUT_SUBS:-"1 100 1000"}
  NODE_FANOUT_MSGS_BIG=${BENCH_NODE_FANOUT_MSGS_BIG:-50}
  # scaling: chats held by one client, and timed messages in one of them
  CHATS=${BENCH_CHATS:-"1 10 100 1000"} NODE_CHATS=${BENCH_NODE_CHATS:-"1 10 100 1000"}
  SCALE_COUNT=${BENCH_SCALE_COUNT:-500} SCALE_WARMUP=${BENCH_SCALE_WARMUP:-50}
  ;;
smoke)
  OUT=$B/bench-smoke
  COUNT=50 WARMUP=10 TPUT=500 WINDOW=64 JOINS=5 SESSIONS=20 ROUNDS=1
  FANOUT_SUBS="1 8" FANOUT_MSGS=5 FANOUT_MSGS_BIG=5 FANOUT_PROCS=2
  CHATS="1 10" SCALE_COUNT=20 SCALE_WARMUP=5
  ;;
*)
  echo "usage: bench/run.sh full|smoke" >&2
  exit 2
  ;;
esac

DEFAULT_T=$(sed -n 's/^DEFAULT_TRANSPORT := //p' Makefile)
transport_of() { # build dir: the transport it was built with (its name says so, else default)
  case $(basename "$1") in transport-h2) echo h2 ;; transport-grpc) echo grpc ;; *) echo "$DEFAULT_T" ;; esac
}
row_name() { case $1 in h2) echo "mim (h2)" ;; grpc) echo "mim (grpc core)" ;; esac; }
THIS_T=$(transport_of "$B")
OTHER_T=h2
[ "$THIS_T" = grpc ] || OTHER_T=grpc

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
log() { echo "bench: [${SECONDS}s] $*" >&2; }

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

# BENCH_PEERS=0 (full mode): our transport rows only, no Node SDK / NATS / Redis (and no
# packages installed for them): a quick transport comparison.
PEERS=${BENCH_PEERS:-1}
[ "$MODE" = full ] || PEERS=0

# ---- packages and programs ----
if [ "$PEERS" = 1 ]; then
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
  $MAKE -s B="$B" TRANSPORT="$THIS_T" bench-build bench-peers >&2
else
  $MAKE -s B="$B" TRANSPORT="$THIS_T" bench-build >&2
fi
BIN=$B/bench
# Rows: "transport bench-dir", the given build first.
ROWS=("$THIS_T $BIN")
FAILED_ROWS=() # "transport reason"
if [ "$MODE" = full ]; then
  OTHER_B=$($MAKE -s --no-print-directory TRANSPORT="$OTHER_T" print-build-dir)
  log "building the $OTHER_T transport in $OTHER_B"
  if $MAKE -s TRANSPORT="$OTHER_T" lib server bench-build >"$WORK/build-$OTHER_T.log" 2>&1; then
    ROWS+=("$OTHER_T $OTHER_B/bench")
  else
    log "the $OTHER_T build failed (its row is marked failed): $(tail -n 3 "$WORK/build-$OTHER_T.log" | tr '\n' ' ')"
    FAILED_ROWS+=("$OTHER_T build failed")
  fi
fi
PERF=0
[ "$MODE" = full ] && perf stat -x, -e task-clock -- true >/dev/null 2>&1 && PERF=1

# ---- mim-local ----
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

start_mim_local() { # name: sets MIM_PID, MIM_EP, MIMDIR
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

start_nats() { # sets NATS_PID, NATS_URL
  local port
  port=$(free_port)
  taskset -c "$SCPU" nats-server -a 127.0.0.1 -p "$port" >"$WORK/nats.log" 2>&1 &
  NATS_PID=$!
  PIDS+=("$NATS_PID")
  wait_port "$port"
  NATS_URL=nats://127.0.0.1:$port
}

start_redis() { # sets REDIS_PID, REDIS_PORT
  REDIS_PORT=$(free_port)
  taskset -c "$SCPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --daemonize no --logfile "$WORK/redis.log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$REDIS_PORT"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Every JSON line gets its round and placement.
tag() { sed "s/^{/{\"round\":$1,\"placement\":\"$2\",/" >>"$RESULTS"; }

# task-clock ms of one bench_mim run under perf stat (every thread), or nothing.
perf_ms() { # bench-dir args...
  local bin=$1 out=$WORK/perf.$$
  shift
  taskset -c "$CCPU" perf stat -x, -e task-clock -o "$out" -- "$bin/bench_mim" "$@" >/dev/null 2>&1 ||
    return 1
  awk -F, '$3 == "task-clock" {print $1}' "$out"
}

# perf stat's CPU per op: runs N and N/5 ops, (difference) / (4N/5) in µs; -1 when not run.
perf_per_op() { # bench-dir phase count-flag N mim-args...
  local bin=$1 phase=$2 flag=$3 n=$4 a b
  shift 4
  if [ "$PERF" = 1 ] && a=$(perf_ms "$bin" "$@" --only "$phase" "$flag" "$n") &&
    b=$(perf_ms "$bin" "$@" --only "$phase" "$flag" $((n / 5))) && [ -n "$a" ] && [ -n "$b" ]; then
    python3 -c "import sys; print(round(($a - $b) * 1000 / ($n - $n // 5), 1))"
  else
    echo -1
  fi
}

# One transport's row of the core set against a fresh mim-local; a failure becomes a
# {"failed": ...} row.
run_mim_row() { # round placement transport bench-dir common-args...
  local r=$1 pl=$2 t=$3 bin=$4 name out
  shift 4
  name=$(row_name "$t")
  start_mim_local "$pl-$r-$t"
  log "round $r ($pl: server CPU $SCPU, client CPU $CCPU): $name"
  local args=(--endpoint "$MIM_EP" --key-file "$MIMDIR/key" --cache bench --server-pid "$MIM_PID"
    --window "$WINDOW" --joins "$JOINS" --system "$name" --tag "$t")
  if out=$(timeout 600 taskset -c "$CCPU" "$bin/bench_mim" "${args[@]}" "$@"); then
    local pc pp
    pc=$(perf_per_op "$bin" ping --count "$COUNT" "${args[@]}" --warmup "$WARMUP")
    pp=$(perf_per_op "$bin" pubcpu --tput "$TPUT" "${args[@]}")
    sed "s/}\$/,\"perf_cpu_per_call_us\":$pc,\"perf_cpu_per_publish_us\":$pp}/" <<<"$out" | tag "$r" "$pl"
  else
    log "$name failed in round $r ($pl); its row is marked failed"
    echo "{\"system\":\"$name\",\"failed\":\"bench_mim exited with an error (see the log)\"}" |
      tag "$r" "$pl"
  fi
  [ "$pl" != same ] || [ "$t" != "$THIS_T" ] ||
    MIM_RSS_END=$(awk '/VmRSS/ {print $2*1024}' "/proc/$MIM_PID/status")
  stop "$MIM_PID"
}

node_sdk() { # args...: the Node SDK bench with the interop tests' install
  NODE_PATH=$ROOT/tests/interop/node_modules taskset -c "$CCPU" node bench/node/bench_sdk.js "$@"
}

# The latency/throughput/join/memory set: every system once, one after the other.
run_core_set() { # round placement
  local r=$1 pl=$2 dir=$SAMPLES/$2-round$1
  mkdir -p "$dir"
  local common=(--count "$COUNT" --warmup "$WARMUP" --tput "$TPUT" --sessions "$SESSIONS"
    --payload "$PAYLOAD" --samples-dir "$dir")
  local row
  for row in "${ROWS[@]}"; do
    run_mim_row "$r" "$pl" ${row} "${common[@]}"
  done
  for row in "${FAILED_ROWS[@]}"; do
    echo "{\"system\":\"$(row_name "${row%% *}")\",\"failed\":\"${row#* }\"}" | tag "$r" "$pl"
  done
  [ "$PEERS" = 1 ] || return 0

  start_mim_local "$pl-$r"

  log "round $r ($pl): official Node SDK"
  node_sdk --endpoint "$MIM_EP" --key-file "$MIMDIR/key" --cache bench --server-pid "$MIM_PID" \
    --window "$WINDOW" --joins "$JOINS" "${common[@]}" --tput "$NODE_TPUT" | tag "$r" "$pl" ||
    log "Node SDK bench failed (see above)"
  stop "$MIM_PID"

  log "round $r ($pl): NATS"
  start_nats
  taskset -c "$CCPU" "$BIN/bench_nats" --url "$NATS_URL" --server-pid "$NATS_PID" \
    "${common[@]}" | tag "$r" "$pl"
  stop "$NATS_PID"

  log "round $r ($pl): Redis"
  start_redis
  taskset -c "$CCPU" "$BIN/bench_redis" --port "$REDIS_PORT" --server-pid "$REDIS_PID" \
    --window "$WINDOW" --joins "$JOINS" "${common[@]}" | tag "$r" "$pl"
  stop "$REDIS_PID"
}

# Fan-out and scaling of one system: prog args... are the program and its connection
# options; each figure is a fresh client process (clean RSS).
run_extra_system() { # round placement fanout-subs chats prog args...
  local r=$1 pl=$2 subs=$3 chats=$4 n m
  shift 4
  for n in $subs; do
    m=$FANOUT_MSGS
    [ "$n" -lt 1000 ] || m=$FANOUT_MSGS_BIG
    case $1 in node_sdk) [ "$n" -lt 1000 ] || m=${NODE_FANOUT_MSGS_BIG:-$m} ;; esac
    "$@" --only fanout --subs "$n" --procs "$FANOUT_PROCS" --messages "$m" \
      --payload "$PAYLOAD" | tag "$r" "$pl" || log "fan-out to $n failed: $*"
  done
  for n in $chats; do
    "$@" --only scale --chats "$n" --count "$SCALE_COUNT" --warmup "$SCALE_WARMUP" \
      --payload "$PAYLOAD" | tag "$r" "$pl" || log "scale $n chats failed: $*"
  done
}

run_extra() { # round
  local r=$1 pl=$EXTRA_PLACEMENT
  start_mim_local "extra-$r"
  log "round $r ($pl): fan-out + scaling, libmomento-im"
  run_extra_system "$r" "$pl" "$FANOUT_SUBS" "$CHATS" taskset -c "$CCPU" "$BIN/bench_mim" \
    --endpoint "$MIM_EP" --key-file "$MIMDIR/key" --cache bench --system "$(row_name "$THIS_T")"
  if [ "$PEERS" = 1 ]; then
    log "round $r ($pl): fan-out + scaling, Node SDK"
    run_extra_system "$r" "$pl" "$NODE_FANOUT_SUBS" "$NODE_CHATS" node_sdk \
      --endpoint "$MIM_EP" --key-file "$MIMDIR/key" --cache bench
  fi
  stop "$MIM_PID"
  [ "$PEERS" = 1 ] || return 0
  log "round $r ($pl): fan-out + scaling, NATS"
  start_nats
  run_extra_system "$r" "$pl" "$FANOUT_SUBS" "$CHATS" taskset -c "$CCPU" "$BIN/bench_nats" \
    --url "$NATS_URL"
  stop "$NATS_PID"
  log "round $r ($pl): fan-out + scaling, Redis"
  start_redis
  run_extra_system "$r" "$pl" "$FANOUT_SUBS" "$CHATS" taskset -c "$CCPU" "$BIN/bench_redis" \
    --port "$REDIS_PORT"
  stop "$REDIS_PID"
}

placement_cpu() { # placement: the client CPU
  case $1 in same) echo "$SAME_CCPU" ;; split) echo "$SPLIT_CCPU" ;; esac
}

T_START=$(date +%s)
for r in $(seq "$ROUNDS"); do
  for pl in $PLACEMENTS; do
    CCPU=$(placement_cpu "$pl")
    run_core_set "$r" "$pl"
  done
  CCPU=$(placement_cpu "$EXTRA_PLACEMENT")
  run_extra "$r"
done


# ---- footprint of each transport build (full mode): bench/footprint.sh ----
FOOTPRINTS=()
if [ "$MODE" = full ]; then
  for row in "${ROWS[@]}"; do
    t=${row%% *} dir=$(dirname "${row#* }")
    log "footprint of the $t build ($dir)"
    if bench/footprint.sh "$dir" >"$WORK/footprint-$t.md"; then
      cp "$dir/footprint/latest.json" "$WORK/footprint-$t.json"
      FOOTPRINTS+=("$t=$WORK/footprint-$t.json")
    else
      log "footprint of the $t build failed"
    fi
  done
fi

# ---- report ----
SO=$B/lib/libmomento-im.so.$(sed -n 's/^#define MIM_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' include/momento/common.h | paste -sd.)
STRIPPED=$WORK/stripped.so
strip -o "$STRIPPED" "$SO" 2>/dev/null || cp "$SO" "$STRIPPED"
python3 bench/report.py --mode "$MODE" --results "$RESULTS" --samples "$SAMPLES" --out "$OUT" \
  --so "$SO" --so-stripped "$STRIPPED" --server-cpu "$SCPU" --client-cpu "$SAME_CCPU" \
  --split-client-cpu "$SPLIT_CCPU" --placements "$PLACEMENTS" --extra-placement "$EXTRA_PLACEMENT" \
  --fanout-procs "$FANOUT_PROCS" --fanout-subs "$FANOUT_SUBS" --chats "$CHATS" \
  --node-fanout-subs "${NODE_FANOUT_SUBS:-}" --node-chats "${NODE_CHATS:-}" \
  --fanout-messages "$FANOUT_MSGS" --fanout-messages-big "$FANOUT_MSGS_BIG" \
  --node-fanout-messages-big "${NODE_FANOUT_MSGS_BIG:-}" \
  --scale-count "$SCALE_COUNT" --scale-warmup "$SCALE_WARMUP" \
  --wall-s "$(($(date +%s) - T_START))" \
  --payload "$PAYLOAD" --count "$COUNT" --warmup "$WARMUP" --tput "$TPUT" --window "$WINDOW" \
  --joins "$JOINS" --sessions "$SESSIONS" --rounds "$ROUNDS" --mim-local-rss-end "$MIM_RSS_END" \
  --footprint "${FOOTPRINTS[*]:-}"
log "wrote $OUT/latest.json"
