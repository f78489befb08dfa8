#!/usr/bin/env bash
# Runs Rotor's cargo-fuzz targets (fuzz/): the JSON and Protobuf client-protocol decoders, the
# server API bodies and the tenant config parser. Each target starts from its committed seeds
# (fuzz/seeds/<target>/, copied into a temporary corpus so the seeds never grow) and runs for
# FUZZ_SECONDS. Fails if any target crashes, panics, times out or runs out of memory; the input
# is kept in fuzz/artifacts/<target>/ (gitignored): minimise it with `cargo fuzz tmin`, fix the
# bug and add a regression test in the crate the bug is in.
#
#   scripts/fuzz.sh                      every target, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh config api_body
#
# Environment: FUZZ_SECONDS (default 60) per target; FUZZ_SANITIZER (default none; `address`
# rebuilds everything with ASan, slower and only useful for the few unsafe dependencies);
# FUZZ_CORPUS_DIR keeps the grown corpora there instead of a temporary directory.
#
# cargo-fuzz needs nightly compiler flags; this machine has a stable toolchain, so the build
# runs with RUSTC_BOOTSTRAP=1. cargo-fuzz itself is installed when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly FUZZ_DIR=$ROOT/fuzz
readonly ALL_TARGETS=(protocol_json protocol_protobuf api_body config)
readonly SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
readonly SANITIZER=${FUZZ_SANITIZER:-none}
# One input taking longer than this is a failure (a hang or an exponential path).
readonly INPUT_TIMEOUT_SECONDS=10
readonly RSS_LIMIT_MB=2048

SCRIPT_NAME=fuzz
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive integer"
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install Rust with rustup)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
    [[ -d $FUZZ_DIR/seeds/$t ]] || die "unknown target $t (known: ${ALL_TARGETS[*]})"
done

export RUSTC_BOOTSTRAP=1
# Release code with debug assertions (overflow checks included): what runs, plus the checks.
readonly FUZZ_FLAGS=(--release --debug-assertions --sanitizer "$SANITIZER")

cd "$FUZZ_DIR"
log "building ${targets[*]} (sanitizer: $SANITIZER)"
for t in "${targets[@]}"; do
    cargo fuzz build "${FUZZ_FLAGS[@]}" "$t"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus_root=${FUZZ_CORPUS_DIR:-$work/corpus}

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus=$corpus_root/$t
    mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$t"
    cp "$FUZZ_DIR"/seeds/"$t"/* "$corpus"/
    log "fuzzing $t for ${SECONDS_PER_TARGET}s"
    status=0
    cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="$INPUT_TIMEOUT_SECONDS" \
        -rss_limit_mb="$RSS_LIMIT_MB" -print_final_stats=1 >"$work/$t.log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log" | tail -n 1)
    if [[ $status -ne 0 ]]; then
        failed+=("$t")
        summary+=("$t: FAILED (exit $status)")
        # The panic message, the crashing input's location and how to reproduce it.
        grep -E -A3 "panicked at|ERROR: libFuzzer|Test unit written|SUMMARY|Reproduce with" \
            "$work/$t.log" | head -n 40 >&2 || tail -n 40 "$work/$t.log" >&2
    else
        summary+=("$t: ok, ${runs:-?} runs, ${rate:-?} exec/s, corpus $(find "$corpus" -type f | wc -l) inputs")
    fi
done

log ""
log "fuzz summary (${SECONDS_PER_TARGET}s per target):"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    die "crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
fi
