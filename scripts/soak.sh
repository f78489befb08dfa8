#!/usr/bin/env bash
# `make soak`: SOAK_SECS (default 600) of steady mixed traffic — connect/disconnect churn,
# publishes, history and presence — against one rotor-data-plane, sampling its RSS, open fds,
# threads and connection gauges; fails unless they are flat at the end (see
# bench/src/bin/soak.rs for the exact rule). Not part of `make test`.
#
#   SOAK_SECS=60            a shorter run (warm-up and windows shrink to a quarter each)
#   SOAK_ENGINE=redis       the Redis engine, on a private redis-server started for the run
#   SOAK_PROFILE=debug      use debug binaries (default: release, built first)
#   SOAK_JSON_OUT=file      also write the summary JSON there
#   other knobs: target/<profile>/soak --help (SOAK_STEADY, SOAK_CHURNERS, SOAK_PUBLISH_RATE…)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${SOAK_PROFILE:-release}
CARGO=${CARGO:-cargo}

case $PROFILE in
    release) "$CARGO" build --release --bin rotor-data-plane --bin soak ;;
    debug) "$CARGO" build --bin rotor-data-plane --bin soak ;;
    *)
        echo "soak: SOAK_PROFILE must be release or debug, not $PROFILE" >&2
        exit 2
        ;;
esac
BIN="$TARGET/$PROFILE"
exec "$BIN/soak" --server "$BIN/rotor-data-plane" "$@"
