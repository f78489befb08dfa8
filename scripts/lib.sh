# What Rotor's shell scripts share: sourced, not run. The script sets SCRIPT_NAME (the prefix
# of its error messages) before sourcing this.

# Root installs directly; anyone else through sudo where there is one.
SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

log() { printf '%s\n' "$*"; }
die() {
    printf '%s: %s\n' "${SCRIPT_NAME:-rotor}" "$*" >&2
    exit 1
}

# Installs Debian packages quietly, refreshing the package lists once per run. Package scripts
# may try to start a daemon; without an init system that can fail, and the scripts start the
# services they need themselves.
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

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no tools needed).
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits until 127.0.0.1:$1 accepts connections, for at most $2 seconds; false when it never did.
wait_port() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_open "$1" && return 0
        sleep 0.1
    done
    return 1
}

# Stops process $1 (a child of this shell): SIGTERM, up to $2 tenths of a second to exit, then
# SIGKILL; reaps it either way. Nothing to do when it is not running.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < $2; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
