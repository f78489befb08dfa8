#!/usr/bin/env bash
# `make bench`: Rotor's whole benchmark suite on this machine, loopback only, bounded in time.
#
# Builds release binaries, installs the peers when missing (Socket.IO from npm with its
# lockfile, Debian's nginx + libnginx-mod-nchan, matplotlib in a venv), then for each scenario
# starts a fresh server, drives it with rotor-loadgen (several worker processes: the hard fd
# limit is 20,000 per process), writes bench/results/*.json and finally regenerates
# BENCHMARKS.md and the PNG plots in bench/results/.
#
#   BENCH_ONLY=fanout,idle   run only these scenarios (fanout channels idle storm latency spread
#                            sweep redis engines edge noisy density configpush delta tags presence grpc); the report uses what is in
#                            bench/results/
#   NOISY_SECS, NOISY_CONNS, NOISY_RATE, NOISY_VIA (edge|direct), NOISY_FLOOD_RATE,
#   NOISY_STORM_CONNS        the noisy-neighbour scenario's sizes (defaults below)
#   BENCH_NO_BUILD=1         use the release binaries already built instead of building them
#   NOISY_TENANT_HOST        projects served at their own host in the noisy-neighbour scenario
#                            (default {slug}.tenants.bench, as hosted; empty: the /t/{slug} form)
#   NOISY_PIN=1              also run it with the load generators (B's clients, A's noise) on
#                            CPU 1 and Rotor (control plane, tenants) on CPU 0, the closest this
#                            box gets to a load generator on its own machine
#   DENSITY_PROJECTS, DENSITY_LIVE, DENSITY_CLIENTS, DENSITY_IDLE_SECS, DENSITY_PARK_AFTER_MS,
#   DENSITY_PROBES, DENSITY_WAKES, DENSITY_MAX_PROCESSES   the density scenario's sizes (below)
#   BENCH_QUICK=1            small sizes and short steps (a smoke run of a few minutes)
#   BENCH_TARGETS=rotor,bare restrict the peers (rotor rotor-protobuf bare socketio nchan)
#   BENCH_RESULTS=dir BENCH_REPORT=file   write results / the report elsewhere (trial runs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
REPORT=${BENCH_REPORT:-$ROOT/BENCHMARKS.md}
BIN="$ROOT/target/release"
QUICK=${BENCH_QUICK:-0}
ONLY=${BENCH_ONLY:-fanout,channels,idle,storm,latency,spread,sweep,redis,engines,edge,noisy,density,configpush,delta,tags,presence,grpc}
TARGETS=${BENCH_TARGETS:-rotor,rotor-protobuf,bare,socketio,nchan}
BUDGET_SECS=${BENCH_BUDGET_SECS:-1140} # the measurements stop starting after 19 minutes
WORK=$(mktemp -d /tmp/rotor-bench.XXXXXX)
SECRET=rotor-bench-secret
API_KEY=rotor-bench-api-key
PORT_ROTOR=8300 PORT_BARE=8301 PORT_SIO=8302 PORT_NCHAN=8303 PORT_CP=8304 PORT_TENANCY=8305
STARTED=$SECONDS
SERVER_PID=""

SCRIPT_NAME=bench
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# The benchmark's own log lines: timed, on stderr (over lib.sh's).
log() { printf '[bench %4ds] %s\n' $((SECONDS - STARTED)) "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
want() { [[ ",$ONLY," == *",$1,"* ]]; }
has_target() { [[ ",$TARGETS," == *",$1,"* ]]; }
in_budget() {
    if ((SECONDS - MEASURING_SINCE > BUDGET_SECS)); then
        log "time budget (${BUDGET_SECS}s) spent: skipping $1"
        return 1
    fi
}

stop_server() {
    if [[ -n $SERVER_PID ]]; then stop_pid "$SERVER_PID" 50; fi
    SERVER_PID=""
}
cleanup() {
    stop_server
    stop_tenancy_cp
    if [[ -n ${CP_PID:-} ]]; then
        kill -TERM "$CP_PID" 2>/dev/null || true
        wait "$CP_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- preparation
prepare() {
    log "building release binaries"
    # The whole workspace, as `make build-release` does: one feature set, so the artifacts are
    # shared with `make run` instead of built a second time per package.
    if [[ ${BENCH_NO_BUILD:-0} == 1 ]]; then
        log "BENCH_NO_BUILD=1: using the release binaries in $BIN as they are"
    elif ! cargo build --release --workspace --bins; then
        cargo build --release -p rotor-data-plane -p rotor-bench --bins
        if want edge || want noisy || want density; then
            log "rotor-control-plane does not build: skipping the edge, noisy and density scenarios"
            ONLY=${ONLY//edge/}
            ONLY=${ONLY//noisy/}
            ONLY=${ONLY//density/}
        fi
    fi

    if has_target socketio; then
        if ! command -v node >/dev/null; then
            apt-get install -y -qq nodejs npm >/dev/null
        fi
        (cd scripts/bench/socketio && npm ci --no-audit --no-fund --silent)
    fi
    if has_target nchan && ! [[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]]; then
        log "installing nginx + libnginx-mod-nchan"
        apt_install nginx libnginx-mod-nchan
        # Debian starts the packaged nginx on port 80; the benchmark runs its own.
        systemctl stop nginx 2>/dev/null || service nginx stop 2>/dev/null || true
    fi
    local venv=scripts/bench/.venv
    if ! [[ -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        log "installing matplotlib into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q -r scripts/bench/requirements.txt
    fi
    ulimit -n "$(ulimit -Hn)"
    mkdir -p "$RESULTS"
    "$BIN/rotor-bench-report" machine >"$RESULTS/machine.json"
}

# ---------------------------------------------------------------- servers
# Each start_* leaves the server's pid in SERVER_PID and its base URLs in WS_URL / PUB_URL.
start_rotor() {
    cat >"$WORK/rotor.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $PORT_ROTOR},
  "client": {"token": {"hmac_secret_key": "$SECRET"}, "allowed_origins": ["*"]},
  "http_api": {"key": "$API_KEY"},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true},
              "namespaces": [{"name": "delta", "history_size": 10, "history_ttl": "300s",
                              "allow_subscribe_for_client": true, "allowed_delta_types": ["fossil"]},
                             {"name": "tags", "allow_subscribe_for_client": true, "allow_tags_filter": true}]}
}
EOF
    RUST_LOG=warn "$BIN/rotor-data-plane" --config "$WORK/rotor.json" >"$WORK/rotor.log" 2>&1 &
    SERVER_PID=$!
    wait_port $PORT_ROTOR 20 || die "rotor-data-plane did not start: $(tail -5 "$WORK/rotor.log")"
    WS_URL="ws://127.0.0.1:$PORT_ROTOR/connection/websocket"
    PUB_URL="http://127.0.0.1:$PORT_ROTOR/api/publish"
}
start_bare() {
    "$BIN/rotor-bare-ws" --port $PORT_BARE >"$WORK/bare.log" 2>&1 &
    SERVER_PID=$!
    wait_port $PORT_BARE 20 || die "rotor-bare-ws did not start"
    WS_URL="ws://127.0.0.1:$PORT_BARE/ws"
    PUB_URL="http://127.0.0.1:$PORT_BARE/publish"
    ECHO_URL="ws://127.0.0.1:$PORT_BARE/echo"
}
start_socketio() {
    PORT=$PORT_SIO node scripts/bench/socketio/server.js >"$WORK/socketio.log" 2>&1 &
    SERVER_PID=$!
    wait_port $PORT_SIO 30 || die "socket.io server did not start: $(cat "$WORK/socketio.log")"
    WS_URL="ws://127.0.0.1:$PORT_SIO/socket.io/?EIO=4&transport=websocket"
    PUB_URL="http://127.0.0.1:$PORT_SIO/publish"
}
start_nchan() {
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
user root;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 19000; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    nchan_max_reserved_memory 512M;
    server {
        listen 127.0.0.1:$PORT_NCHAN backlog=4096;
        location = /pub {
            nchan_publisher http websocket;
            nchan_channel_id \$arg_id;
            nchan_message_buffer_length 16;
            nchan_message_timeout 60s;
        }
        location = /sub {
            nchan_subscriber websocket;
            nchan_channel_id \$arg_id;
            nchan_subscriber_first_message newest;
        }
        # A connection that publishes a frame to its own channel gets it back: the round trip
        # of the storm_echo scenario.
        location = /echo {
            nchan_pubsub websocket;
            nchan_channel_id \$arg_id;
            nchan_message_buffer_length 1;
            nchan_message_timeout 10s;
        }
        location = /health { return 200 '{}'; }
    }
}
EOF
    nginx -c "$WORK/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nchan.log" 2>&1 &
    SERVER_PID=$!
    wait_port $PORT_NCHAN 20 || die "nginx did not start: $(cat "$WORK/nchan.log" "$WORK/nginx/error.log")"
    WS_URL="ws://127.0.0.1:$PORT_NCHAN/sub?id={channel}"
    PUB_URL="http://127.0.0.1:$PORT_NCHAN/pub?id={channel}"
    ECHO_URL="ws://127.0.0.1:$PORT_NCHAN/echo?id={channel}"
}

# start_target NAME: starts the server for a target and sets PROTO / VIA / the loadgen flags.
start_target() {
    case $1 in
    rotor | rotor-protobuf)
        start_rotor
        PROTO=json VIA=api
        [[ $1 == rotor-protobuf ]] && PROTO=protobuf
        EXTRA=(--secret "$SECRET" --api-key "$API_KEY")
        ;;
    bare) start_bare && PROTO=raw VIA=http EXTRA=() ;;
    socketio) start_socketio && PROTO=socketio VIA=http EXTRA=() ;;
    nchan) start_nchan && PROTO=raw VIA=http EXTRA=() ;;
    *) die "unknown target $1" ;;
    esac
    sleep 0.5
}

# loadgen NAME SCENARIO TARGET ARGS...: one run against the server started last.
loadgen() {
    local name=$1 scenario=$2 target=$3
    shift 3
    log "run $name"
    "$BIN/rotor-loadgen" run --name "$name" --scenario "$scenario" --target "$target" \
        --protocol "$PROTO" --ws-url "$WS_URL" --publish-via "$VIA" --publish-url "$PUB_URL" \
        --server-pid "$SERVER_PID" --out-dir "$RESULTS" "${EXTRA[@]}" "$@" ||
        log "run $name failed (see above); continuing"
}

only_targets() { # the targets of $TARGETS among the comma-separated list $1
    local t out=()
    for t in ${1//,/ }; do has_target "$t" && out+=("$t"); done
    (IFS=,; echo "${out[*]}")
}

each_target() { # scenario function name
    local t
    for t in ${TARGETS//,/ }; do
        in_budget "$1 $t" || return 0
        start_target "$t"
        "$1" "$t"
        stop_server
    done
}

# ---------------------------------------------------------------- sizes
if [[ $QUICK == 1 ]]; then
    FAN_CONNS=1000 FAN_WORKERS=1 STEP=2 IDLE_CONNS=2000 STORM_CONNS=2000 LAT_CONNS=200
    FAN_RATES=1,10,50,200 CH_CONNS=1000 CH_RATES=100,1000 EDGE_CONNS=500 SWEEP_SIZES=200
    LAT_RATES=10,200 SPREAD_RATES=100,200
    : "${NOISY_SECS:=10}" "${DENSITY_PROJECTS:=200}" "${DENSITY_LIVE:=20}" "${DENSITY_IDLE_SECS:=10}"
    : "${DENSITY_PROBES:=10}" "${DENSITY_WAKES:=20}"
else
    FAN_CONNS=10000 FAN_WORKERS=2 STEP=5 IDLE_CONNS=18000 STORM_CONNS=10000 LAT_CONNS=1000
    LAT_RATES=10,100,1000 SPREAD_RATES=100,1000 FAN_RATES=1,2,5,10,15,20,30,50,70,100,150,200,300,500 CH_CONNS=10000
    CH_RATES=100,200,500,1000,1500,2000,3000,5000,10000 EDGE_CONNS=5000 SWEEP_SIZES=1000,4000
fi
# Multi-tenant scenarios (issue #20): noisy neighbour, density. Overridable from the environment.
: "${NOISY_SECS:=30}" "${NOISY_CONNS:=1000}" "${NOISY_RATE:=1000}" "${NOISY_VIA:=edge}"
: "${NOISY_FLOOD_RATE:=2000}" "${NOISY_STORM_CONNS:=2000}" "${NOISY_PIN:=1}"
: "${NOISY_TENANT_HOST={slug\}.tenants.bench}"
: "${DENSITY_PROJECTS:=10000}" "${DENSITY_LIVE:=1000}" "${DENSITY_CLIENTS:=3}"
: "${DENSITY_IDLE_SECS:=60}" "${DENSITY_PARK_AFTER_MS:=5000}" "${DENSITY_PROBES:=50}"
: "${DENSITY_WAKES:=100}" "${DENSITY_MAX_PROCESSES:=2500}"

# ---------------------------------------------------------------- scenarios
fanout() { # 10k connections on one channel, publish rate rising; within limits while p99 <= 50 ms,
    # on to saturation (p99 > 1 s, loss or drops)
    loadgen "fanout-$1" fanout "$1" --conns $FAN_CONNS --workers $FAN_WORKERS \
        --connect-rate 4000 --rates $FAN_RATES --step-secs $STEP --stop-p99-ms 1000 --max-secs 240
}
sweep() { # the same ramp with fewer connections: throughput vs connections
    local n rates
    for n in ${SWEEP_SIZES//,/ }; do
        rates=$(((10000 + n - 1) / n))
        rates="$rates,$((rates * 2)),$((rates * 5)),$((rates * 10)),$((rates * 15)),$((rates * 20)),$((rates * 30)),$((rates * 50)),$((rates * 100))"
        loadgen "sweep-$1-$n" sweep "$1" --conns "$n" --workers 1 --connect-rate 4000 \
            --rates "$rates" --step-secs 3 --stop-p99-ms 1000 --max-secs 120
    done
}
idle() { # as many idle subscribed connections as the fd limit allows
    local workers=2
    ((IDLE_CONNS < 4000)) && workers=1
    loadgen "idle-$1" idle "$1" --mode idle --conns $IDLE_CONNS --workers $workers \
        --connect-rate 4000 --settle-ms 3000 --max-secs 120
}
storm() { # connections (JWT + one subscribe) per second, unpaced
    local workers=2
    ((STORM_CONNS < 4000)) && workers=1
    loadgen "storm-$1" storm "$1" --mode storm --conns $STORM_CONNS --workers $workers \
        --connect-rate 0 --concurrency 256 --settle-ms 500 --max-secs 120
}
storm_echo() { # the storm's round trip without a protocol: upgrade, one frame sent, its answer
    # read (bare: echoed; Nchan: published to the connection's own channel and delivered back)
    local workers=2
    ((STORM_CONNS < 4000)) && workers=1
    PROTO=echo WS_URL=$ECHO_URL loadgen "storm-echo-$1" storm-echo "$1" --mode storm \
        --conns $STORM_CONNS --workers $workers --connect-rate 0 --concurrency 256 \
        --pool $STORM_CONNS --channel-prefix e --settle-ms 500 --max-secs 120
}
latency() { # 1k msgs/s to 1k subscribers of one channel (after 10 and 100 msgs/s); never stops early
    loadgen "latency-$1" latency "$1" --conns $LAT_CONNS --workers 1 --connect-rate 2000 \
        --rates $LAT_RATES --step-secs $STEP --max-p99-ms 1000000 --max-loss 1 --max-secs 120
}

spread() { # 1k msgs/s to 1k subscribers, each on its own channel (servers with channels only)
    case $1 in bare | socketio) return 0 ;; esac
    loadgen "spread-$1" spread "$1" --conns $LAT_CONNS --workers 1 --connect-rate 2000 \
        --channels 1 --pool $LAT_CONNS --rates $SPREAD_RATES --step-secs $STEP \
        --max-p99-ms 1000000 --max-loss 1 --max-secs 120
}

delta_compression() { # 1 KB JSON documents changing by a few fields, whole vs Fossil deltas (Rotor only)
    local conns=500 messages=400
    [[ $QUICK == 1 ]] && conns=100 messages=100
    start_target rotor
    log "run delta"
    "$BIN/rotor-bench-delta" --ws-url "$WS_URL" --api-url "http://127.0.0.1:$PORT_ROTOR/api" \
        --api-key "$API_KEY" --secret "$SECRET" --server-pid "$SERVER_PID" \
        --conns $conns --messages $messages --rate 200 --out "$RESULTS/delta.json" ||
        log "run delta failed (see above); continuing"
    stop_server
}

tags_filters() { # publication tag filters vs the same deliveries without (Rotor only)
    local conns=1000 messages=500
    [[ $QUICK == 1 ]] && conns=100 messages=100
    start_target rotor
    log "run tags"
    "$BIN/rotor-bench-tags" --ws-url "$WS_URL" --api-url "http://127.0.0.1:$PORT_ROTOR/api" \
        --api-key "$API_KEY" --secret "$SECRET" --server-pid "$SERVER_PID" \
        --conns $conns --messages $messages --rate 200 --out "$RESULTS/tags.json" ||
        log "run tags failed (see above); continuing"
    stop_server
}

presence_stats() { # presence_stats on a channel of 100k entries, kept counts vs full read
    local entries=100000 users=10000
    [[ $QUICK == 1 ]] && entries=10000 users=1000
    log "run presence"
    "$BIN/rotor-bench-presence" --entries $entries --users $users \
        --redis-url "${REDIS_URL:-redis://127.0.0.1:6379}" --out "$RESULTS/presence.json" ||
        log "run presence failed (see above); continuing"
}

grpc_api() { # publishes/s over the gRPC server API against the HTTP server API, same run
    local publishes=20000
    [[ $QUICK == 1 ]] && publishes=2000
    log "run grpc"
    "$BIN/rotor-bench-grpc" --publishes $publishes --concurrency 32 --rounds 3 \
        --out "$RESULTS/grpc.json" ||
        log "run grpc failed (see above); continuing"
}

channels() { # 10k connections × 10 channels of 1000, random publishes (Rotor only)
    start_target rotor
    loadgen "channels-rotor" channels rotor --conns $CH_CONNS --workers $FAN_WORKERS \
        --connect-rate 4000 --channels 10 --pool 1000 --rates $CH_RATES --step-secs $STEP \
        --publish-concurrency 128 --stop-p99-ms 1000 --max-secs 240
    stop_server
}

redis_engine() {
    scripts/ensure-services.sh >/dev/null
    log "cargo bench redis_publish"
    local out
    out=$(cargo bench -q -p rotor-data-plane --bench redis_publish 2>&1) || {
        log "redis bench failed: $out"
        return 0
    }
    printf '%s\n' "$out" >&2
    "$BIN/rotor-bench-report" parse-redis <<<"$out" >"$RESULTS/redis.json"
}

engines() { # issue #23: Redis standalone vs Redis Cluster (3 primaries) vs NATS across two data
    # planes, beside raw redis-benchmark / NATS numbers on the same servers (~2 minutes)
    local nats
    nats=$(command -v nats-server || echo /usr/sbin/nats-server)
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! [[ -x $nats ]]; then
        log "installing redis-server, redis-tools, nats-server"
        apt_install redis-server redis-tools nats-server
    fi
    local args=()
    [[ $QUICK == 1 ]] && args=(--rates 1000,4000 --step-secs 2 --raw-requests 20000 --raw-nats-messages 50000)
    log "run engines"
    timeout -k 10 300 "$BIN/rotor-bench-engines" --data-plane-bin "$BIN/rotor-data-plane" \
        --nats-server "$nats" \
        "${args[@]}" --out "$RESULTS/engines.json" ||
        log "run engines failed (see above); continuing"
}

edge() { # fan-out through the control plane's public endpoint vs straight to the tenant
    scripts/ensure-services.sh >/dev/null
    local db="postgres://postgres@127.0.0.1:5432/rotor_bench" base="http://127.0.0.1:$PORT_CP"
    # Not parked while it runs (the tenant's process is looked up once, below); a run directory
    # of its own, so no tenant or parking mark of an earlier run is adopted.
    local run="$WORK/cp-run"
    DATABASE_URL=$db ROTOR_LISTEN=127.0.0.1:$PORT_CP RUST_LOG=warn ROTOR_PARK_AFTER_MS=0 \
        ROTOR_RUN_DIR="$run" ROTOR_DATA_PLANE_BIN="$BIN/rotor-data-plane" \
        "$BIN/rotor-control-plane" serve --demo >"$WORK/cp.log" 2>&1 &
    CP_PID=$!
    wait_port $PORT_CP 60 || die "control plane did not start: $(tail -5 "$WORK/cp.log")"
    local j='Content-Type: application/json' token id slug key secret tenant_pid tenant_port
    token=$(curl -sf -X POST "$base/v1/tokens" -H "$j" \
        -d '{"email":"demo@rotor.local","password":"rotor-demo-password","name":"bench"}' | jq -r .token)
    local auth="Authorization: Bearer $token"
    id=$(curl -sf "$base/v1/projects" -H "$auth" | jq -r '[.projects[] | select(.name=="demo")][0].id')
    slug=$(curl -sf "$base/v1/projects/$id" -H "$auth" | jq -r .slug)
    # Plans are the operator's: lift the connection cap through the operator CLI.
    DATABASE_URL=$db "$BIN/rotor-control-plane" operator set-plan "$id" custom >/dev/null
    curl -sf -X PUT "$base/v1/projects/$id/namespaces/bench" -H "$auth" -H "$j" \
        -d '{"allow_subscribe_for_client": true}' >/dev/null
    # Key names are unique per project and the database outlives a run: one name per run.
    key=$(curl -sf -X POST "$base/v1/projects/$id/api-keys" -H "$auth" -H "$j" \
        -d "{\"name\":\"bench-$(date +%s)\"}" | jq -r .key)
    secret=$(curl -sf "$base/v1/projects/$id/secrets" -H "$auth" | jq -r .token_hmac_secret)
    # Wait until the tenant runs the new config (plan without connection cap, namespace).
    local i applied
    for i in $(seq 100); do
        applied=$(curl -sf "$base/v1/projects/$id" -H "$auth" | jq -r '.config_version == .applied_version')
        [[ $applied == true ]] && break
        sleep 0.1
    done
    # A tenant may start on its first request through the edge: ask for something, then read
    # its process and public address from the record the control plane keeps (the tenant also
    # listens on a private admin address, which serves no clients).
    curl -s -o /dev/null -X POST "$base/t/$slug/api/info" -H "X-API-Key: $key" -d '{}' || true
    local record=""
    for i in $(seq 100); do
        record=$(find "$run" -name "$id.state" 2>/dev/null | head -1)
        [[ -n $record ]] && break
        sleep 0.1
    done
    [[ -n $record ]] || die "tenant process of $id not found"
    tenant_pid=$(jq -r .pid "$record")
    tenant_port=$(jq -r .addr "$record" | sed 's/.*://')
    [[ -n $tenant_port && $tenant_port != null ]] || die "tenant port not found"
    log "edge: project $slug, tenant pid $tenant_pid port $tenant_port"
    PROTO=json VIA=api EXTRA=(--secret "$secret" --api-key "$key" --channel-prefix "bench:b")
    local rates=10,20,50,100,200,500
    [[ $QUICK == 1 ]] && rates=10,50
    # Both processes: with the hand-off the tenant serves the sockets, and an adopted tenant is
    # not a descendant of this control plane.
    SERVER_PID="$CP_PID,$tenant_pid"
    WS_URL="ws://127.0.0.1:$PORT_CP/t/$slug/connection/websocket"
    PUB_URL="$base/t/$slug/api/publish"
    loadgen edge-through-edge edge rotor-edge --conns $EDGE_CONNS --workers 1 \
        --connect-rate 3000 --rates $rates --step-secs 3 --stop-p99-ms 1000 --max-secs 150
    WS_URL="ws://127.0.0.1:$tenant_port/connection/websocket"
    PUB_URL="http://127.0.0.1:$tenant_port/api/publish"
    loadgen edge-direct edge rotor-direct --conns $EDGE_CONNS --workers 1 \
        --connect-rate 3000 --rates $rates --step-secs 3 --stop-p99-ms 1000 --max-secs 150
    SERVER_PID=""
    kill -TERM "$CP_PID" 2>/dev/null || true
    wait "$CP_PID" 2>/dev/null || true
    CP_PID=""
    # The control plane leaves its tenants running on purpose; the benchmark does not.
    kill -TERM "$tenant_pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- multi-tenant scenarios
# A control plane of their own per scenario: a fresh database (sign-ups are limited per address
# per hour, and old projects would be adopted), a short run directory (hand-off socket paths
# must fit), the per-address cap of the edge lifted (all load comes from 127.0.0.1).
CP_RUN="" CP_DB="" CP_DB_NAME="" CP_BASE=""
start_tenancy_cp() { # NAME [VAR=VALUE...]: sets CP_PID, CP_RUN, CP_DB, CP_BASE
    local name=$1
    shift
    scripts/ensure-services.sh >/dev/null
    CP_DB_NAME="rotor_bench_$name"
    CP_DB="postgres://postgres@127.0.0.1:5432/$CP_DB_NAME"
    PGOPTIONS=--client-min-messages=warning psql -q -h 127.0.0.1 -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $CP_DB_NAME WITH (FORCE)" >/dev/null
    # The load generator is one address: it wakes every live project itself, so the per-address
    # wake budget (a guard against strangers, see README) is lifted.
    # On tmpfs where there is one, as /run is on a production host (the default run directory
    # is /run/rotor): a run directory on a disk puts every tenant's record, socket and parking
    # marker in the file system's journal, in front of Postgres's commits.
    CP_RUN=$(mktemp -d /dev/shm/rbt.XXXXXX 2>/dev/null || mktemp -d /tmp/rbt.XXXXXX)
    CP_BASE="http://127.0.0.1:$PORT_TENANCY"
    env "$@" DATABASE_URL="$CP_DB" ROTOR_LISTEN=127.0.0.1:$PORT_TENANCY ROTOR_RUN_DIR="$CP_RUN" \
        ROTOR_DATA_PLANE_BIN="$BIN/rotor-data-plane" ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS=100000 \
        ROTOR_EDGE_WAKE_BURST=1000000 ROTOR_EDGE_WAKES_PER_MINUTE=1000000 \
        ROTOR_ACCOUNT_WRITES_PER_SECOND=1000000 ROTOR_ACCOUNT_WRITE_BURST=1000000 \
        ROTOR_SECRET_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" RUST_LOG=warn \
        ${CP_CPUS:+taskset -c "$CP_CPUS"} "$BIN/rotor-control-plane" serve >"$WORK/cp-$name.log" 2>&1 &
    CP_PID=$!
    wait_port $PORT_TENANCY 60 || die "control plane did not start: $(tail -5 "$WORK/cp-$name.log")"
    log "$name: control plane pid $CP_PID, run dir $CP_RUN"
}

# Stops the control plane, then every tenant it started (a control plane leaves them running
# on purpose), their control groups and the run directory, and drops the database.
stop_tenancy_cp() {
    [[ -n $CP_RUN ]] || return 0
    local pids="" f group parent i
    if [[ -n ${CP_PID:-} ]] && kill -0 "$CP_PID" 2>/dev/null; then
        pids=$(cat /proc/"$CP_PID"/task/*/children 2>/dev/null || true)
        stop_pid "$CP_PID" 100
    fi
    CP_PID=""
    local groups=()
    for f in "$CP_RUN"/*.state; do
        [[ -f $f ]] || continue
        pids+=" $(jq -r '.pid // empty' "$f" 2>/dev/null || true)"
        mapfile -t -O "${#groups[@]}" groups < <(jq -r '.cgroups[]? // empty' "$f" 2>/dev/null || true)
    done
    local parents=()
    if [[ -f $CP_RUN/cgroups ]]; then
        mapfile -t parents <"$CP_RUN/cgroups"
    fi
    for parent in "${parents[@]}"; do
        for group in "$parent"/*/; do
            if [[ -d $group ]]; then groups+=("${group%/}"); fi
        done
    done
    for group in "${groups[@]}"; do # tenants that wrote no record yet
        if [[ -f $group/cgroup.procs ]]; then
            pids+=" $(cat "$group/cgroup.procs" 2>/dev/null || true)"
        fi
    done
    for f in $pids; do
        if [[ $f =~ ^[0-9]+$ ]]; then kill -KILL "$f" 2>/dev/null || true; fi
    done
    # The kernel refuses to remove a group until its killed processes are reaped.
    for group in "${groups[@]}"; do
        for i in $(seq 20); do
            if rmdir "$group" 2>/dev/null || [[ ! -d $group ]]; then break; fi
            sleep 0.1
        done
    done
    for parent in "${parents[@]}"; do
        rmdir "$parent" 2>/dev/null || true
    done
    rm -rf "$CP_RUN"
    CP_RUN=""
    psql -q -h 127.0.0.1 -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $CP_DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
}

tenancy_args() {
    printf '%s\n' --base "$CP_BASE" --database-url "$CP_DB" --cp-bin "$BIN/rotor-control-plane" \
        --run-dir "$CP_RUN" --cp-pid "$CP_PID"
    [[ -z ${CP_TENANT_HOST:-} ]] || printf '%s\n' --tenant-host "$CP_TENANT_HOST"
}

noisy() { # tenant B's latency and loss while tenant A is saturated (issue #20 item 3)
    noisy_run noisy "" ""
    if [[ $NOISY_PIN == 1 ]] && [[ $(nproc) -ge 2 ]]; then
        noisy_run noisy-pinned 0 1
        # A's noise at the kernel's idle priority: it no longer delays B's load generator on
        # the shared CPU, as a noise machine of its own would not.
        noisy_run noisy-isolated 0 1 --noise-idle
    fi
}
noisy_run() { # OUT SERVER_CPUS LOAD_CPUS [rotor-noisy flags] (empty CPUs: unpinned)
    local out=$1 args extra=("${@:4}")
    # Hosted projects are served at their own host: a project's backend then keeps its API
    # connections in its own process, away from the shared edge.
    CP_TENANT_HOST=$NOISY_TENANT_HOST
    CP_CPUS=$2 start_tenancy_cp noisy ${CP_TENANT_HOST:+ROTOR_TENANT_HOST=$CP_TENANT_HOST}
    mapfile -t args < <(tenancy_args)
    log "$out: B ${NOISY_RATE}/s to $NOISY_CONNS subscribers via $NOISY_VIA, windows of ${NOISY_SECS}s${2:+, Rotor on CPU $2, load on CPU $3}"
    ROTOR_BENCH_CONNECT_TO=127.0.0.1:$PORT_TENANCY \
        timeout -k 10 600 ${3:+taskset -c "$3"} "$BIN/rotor-noisy" run "${args[@]}" --conns "$NOISY_CONNS" \
        --rate "$NOISY_RATE" --window-secs "$NOISY_SECS" --b-via "$NOISY_VIA" \
        --flood-rate "$NOISY_FLOOD_RATE" --storm-conns "$NOISY_STORM_CONNS" --max-secs 500 \
        "${extra[@]}" --out "$RESULTS/$out.json" || log "$out run failed (see above); continuing"
    stop_tenancy_cp
    CP_TENANT_HOST=""
}

density() { # many projects on one control plane, most parked (issue #20 item 6)
    start_tenancy_cp density ROTOR_PARK_AFTER_MS="$DENSITY_PARK_AFTER_MS"
    local args
    mapfile -t args < <(tenancy_args)
    log "density: $DENSITY_PROJECTS projects, $DENSITY_LIVE live, park after ${DENSITY_PARK_AFTER_MS}ms"
    timeout -k 10 1200 "$BIN/rotor-density" "${args[@]}" --projects "$DENSITY_PROJECTS" \
        --live "$DENSITY_LIVE" --clients "$DENSITY_CLIENTS" --idle-secs "$DENSITY_IDLE_SECS" \
        --park-after-ms "$DENSITY_PARK_AFTER_MS" --probes "$DENSITY_PROBES" \
        --wakes "$DENSITY_WAKES" --max-processes "$DENSITY_MAX_PROCESSES" --max-secs 1100 --out "$RESULTS/density.json" ||
        log "density run failed (see above); continuing"
    stop_tenancy_cp
}

config_push() {
    scripts/ensure-services.sh >/dev/null
    log "config push: e2e test (debug build)"
    local out
    out=$(cargo nextest run -p rotor-e2e \
        -E 'binary(control_plane) & (test(config_changes) | test(first_connection))' \
        --no-capture 2>&1) || {
        log "config push test failed"
        return 0
    }
    "$BIN/rotor-bench-report" parse-config-push <<<"$out" >"$RESULTS/config_push.json"
}

# ---------------------------------------------------------------- main
prepare
# The budget counts measurements only: a first release build can take minutes on two cores.
MEASURING_SINCE=$SECONDS
log "results → $RESULTS; scenarios: $ONLY; targets: $TARGETS"
want fanout && each_target fanout
want latency && each_target latency
want spread && each_target spread
want storm && each_target storm
want storm && TARGETS=$(only_targets bare,nchan) each_target storm_echo
want idle && each_target idle
want channels && in_budget channels && channels
want edge && in_budget edge && edge
want redis && in_budget redis && redis_engine
want engines && in_budget engines && engines
want sweep && TARGETS=${TARGETS//rotor-protobuf,/} each_target sweep
want noisy && in_budget noisy && noisy
want density && in_budget density && density
want configpush && config_push
want delta && in_budget delta && delta_compression
want tags && in_budget tags && tags_filters
want presence && in_budget presence && presence_stats
want grpc && in_budget grpc && grpc_api

log "plots and BENCHMARKS.md"
scripts/bench/.venv/bin/python scripts/bench/plot.py "$RESULTS"
"$BIN/rotor-bench-report" markdown --results "$RESULTS" --out "$REPORT" \
    --command "make bench${BENCH_ONLY:+ (BENCH_ONLY=$BENCH_ONLY)}"
log "done in $((SECONDS - STARTED)) s"
