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
