#!/usr/bin/env bash
# Profiles the data plane's fan-out hot path: a release rotor-data-plane with N connections on
# one channel (rotor-loadgen), publishing RATE/s through the server API, sampled with
# `perf record` (software cpu-clock, DWARF call graphs) for a few seconds. Falls back to
# `valgrind --tool=callgrind` (much slower: use small N and RATE) when perf cannot record.
# Prints the top self and inclusive costs; the raw data stays in $OUT.
#
#   scripts/bench/profile.sh [N=10000] [RATE=10] [SECONDS=8]
#   CHANNELS=10 POOL=1000 scripts/bench/profile.sh 10000 300   # the many-channels scenario
#   PROFILER=callgrind scripts/bench/profile.sh 1000 2 20
#   PROFILER=none scripts/bench/profile.sh             # the load generator's numbers only
#   SCENARIO=storm scripts/bench/profile.sh 10000 0 4   # the connect storm (JWT connect + subscribe)
#   ROTOR_LENT_WRITES=off scripts/bench/profile.sh       # fan-out without lent writes, to compare
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SCRIPT_NAME=profile
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
N=${1:-10000} RATE=${2:-10} SECS=${3:-8}
PROFILER=${PROFILER:-perf}
OUT=${OUT:-/tmp/rotor-profile}
PORT=8310
BIN=target/release
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
[[ ${BENCH_NO_BUILD:-0} == 1 ]] || cargo build --release -p rotor-data-plane -p rotor-bench --bins

cat >"$OUT/rotor.json" <<EOF
{"http_server": {"address": "127.0.0.1", "port": $PORT},
 "client": {"token": {"hmac_secret_key": "profile-secret"}, "allowed_origins": ["*"]},
 "http_api": {"key": "profile-key"},
 "channel": {"without_namespace": {"allow_subscribe_for_client": true}}}
EOF
if [[ $PROFILER == callgrind ]]; then
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
        "$BIN/rotor-data-plane" --config "$OUT/rotor.json" >"$OUT/server.log" 2>&1 &
else
    RUST_LOG=warn "$BIN/rotor-data-plane" --config "$OUT/rotor.json" >"$OUT/server.log" 2>&1 &
fi
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
wait_port "$PORT" 30 || true

workers=$(((N + 8999) / 9000))
if [[ ${SCENARIO:-fanout} == storm ]]; then
    # Connections as fast as they are accepted, each a JWT connect and one subscribe; the
    # profiler samples the storm from its start.
    "$BIN/rotor-loadgen" run --name profile --scenario profile --out-dir "$OUT" --mode storm \
        --ws-url "ws://127.0.0.1:$PORT/connection/websocket" --secret profile-secret \
        --publish-url "http://127.0.0.1:$PORT/api/publish" --api-key profile-key \
        --conns "$N" --workers "$workers" --connect-rate 0 --concurrency 256 --settle-ms 500 \
        --max-secs 120 --server-pid $SERVER >"$OUT/loadgen.log" 2>&1 &
    LOADGEN=$!
    sleep 0.3
else
    # One long step at RATE; the profiler samples its middle.
    "$BIN/rotor-loadgen" run --name profile --scenario profile --out-dir "$OUT" \
        --ws-url "ws://127.0.0.1:$PORT/connection/websocket" --secret profile-secret \
        --publish-url "http://127.0.0.1:$PORT/api/publish" --api-key profile-key \
        --conns "$N" --workers "$workers" --connect-rate 3000 --handshake-timeout-ms 120000 \
        --channels "${CHANNELS:-1}" --pool "${POOL:-1}" --publish-concurrency 128 \
        --rates "$RATE" --step-secs $((SECS + 6)) --stop-p99-ms 100000 --max-secs 600 \
        --server-pid $SERVER >"$OUT/loadgen.log" 2>&1 &
    LOADGEN=$!
    # Wait until connected (the loadgen prints the warm-up later), then a little into the step.
    sleep $(((N / 3000) + 6))
fi
if [[ $PROFILER == none ]]; then
    # Only the load generator's numbers (server CPU per delivery from /proc), no sampling.
    wait $LOADGEN || true
elif [[ $PROFILER == perf ]]; then
    perf record -e cpu-clock -F ${FREQ:-499} --call-graph dwarf,8192 -p $SERVER -o "$OUT/perf.data" \
        -- sleep "$SECS" 2>"$OUT/perf-record.log"
    wait $LOADGEN || true
    echo "== self cost (top 30) =="
    perf report -i "$OUT/perf.data" --no-children --sort symbol --percent-limit 0.7 \
        --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -30
    echo "== inclusive cost (top 40) =="
    perf report -i "$OUT/perf.data" --children --sort symbol --percent-limit 2 \
        --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
else
    wait $LOADGEN || true
    kill -TERM $SERVER 2>/dev/null || true
    wait $SERVER 2>/dev/null || true
    callgrind_annotate --inclusive=yes "$OUT/callgrind.out" 2>/dev/null | head -60
fi
tail -8 "$OUT/loadgen.log"
