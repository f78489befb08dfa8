# Rotor's developer commands. `make test` is what CI runs (.ci/run); `make run` starts the
# control plane with a demo project. Both start local Postgres and Redis first when needed.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export REDIS_URL ?= redis://127.0.0.1:6379

CARGO ?= cargo
NEXTEST_PROFILE ?= default

.PHONY: test run run-standalone fmt fmt-check lint build build-release services build-deps test-deps nextest bench soak fuzz

## test: start services, install test deps, then format check, clippy, build and all tests
test: services test-deps fmt-check lint build nextest

RUN_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rotor

## run: build release binaries and start Rotor (control plane, edge, dashboard) with a demo project
## (locally, tenants' proxies may call your backend on localhost: ROTOR_TENANT_PRIVATE_EGRESS=1)
run: services build-deps build-release
	DATABASE_URL="$(RUN_DATABASE_URL)" ROTOR_TENANT_PRIVATE_EGRESS=$${ROTOR_TENANT_PRIVATE_EGRESS:-1} \
		target/release/rotor-control-plane serve --demo

## run-standalone: one data plane from config/example.json, without the control plane
run-standalone: services build-deps build-release
	target/release/rotor-data-plane --config config/example.json

## services: make sure Postgres and Redis answer locally (see scripts/ensure-services.sh)
services:
	scripts/ensure-services.sh

## build-deps: what compiling the workspace needs besides Rust (protoc for the Terraform provider and the data plane's gRPC API)
build-deps:
	scripts/install-test-deps.sh --build-only

## test-deps: cargo-nextest, clippy, rustfmt, node and python interop clients
test-deps:
	scripts/install-test-deps.sh

## fmt: format the workspace
fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

## lint: clippy over every target, warnings are errors
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --workspace --bins

build-release:
	$(CARGO) build --release --workspace --bins

# The end-to-end tests spawn the binaries built by `build`, so it runs first. Tests that
# compare latencies with and without an attack (login_flood) run afterwards on their own, so
# the rest of the suite is not part of what they measure.
QUIET_TESTS := binary(login_flood)
nextest: build
	$(CARGO) nextest run --workspace --no-fail-fast --profile $(NEXTEST_PROFILE) -E 'not ($(QUIET_TESTS))'
	$(CARGO) nextest run --workspace --no-fail-fast --profile $(NEXTEST_PROFILE) -E '$(QUIET_TESTS)'

## bench: the benchmark suite (load generator, peers; < 20 min), regenerates BENCHMARKS.md and bench/results/
bench: services
	scripts/bench/run.sh

## soak: SOAK_SECS (600) of mixed traffic against one data plane; fails unless RSS, fds and threads stay flat. Not part of `test`
soak:
	CARGO="$(CARGO)" scripts/soak.sh

FUZZ_SECONDS ?= 60

## fuzz: each cargo-fuzz target (protocol decoders, API bodies, config) for FUZZ_SECONDS from its seeds; fails on a crash. Not part of `test`
fuzz:
	FUZZ_SECONDS="$(FUZZ_SECONDS)" scripts/fuzz.sh
