#!/usr/bin/env bash
# Installs what the test suite needs besides Rust itself, doing work only for what is missing
# or stale: cargo-nextest, the clippy and rustfmt components, the Node.js interop clients
# (tests/clients/node, `npm ci` from the committed package-lock.json) and the Python interop
# clients (tests/clients/python/.venv from the fully pinned requirements.txt). Idempotent; takes
# well under a second when everything is in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly NODE_DIR=$ROOT/tests/clients/node
readonly PYTHON_DIR=$ROOT/tests/clients/python
readonly VENV=$PYTHON_DIR/.venv
readonly VENV_STAMP=$VENV/.rotor-requirements.sha256

SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

log() { printf '%s\n' "$*"; }
die() {
    printf 'install-test-deps: %s\n' "$*" >&2
    exit 1
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $*: apt-get is not available"
    if [[ $APT_UPDATED -eq 0 ]]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null
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

ensure_rust_tools
ensure_node_clients
ensure_python_clients
