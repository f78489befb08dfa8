#!/usr/bin/env bash
# Makes sure the services the tests need answer locally: PostgreSQL on 127.0.0.1:5432 (role
# `postgres`, trust auth over TCP), Redis on 127.0.0.1:6379 and a NATS server with JetStream on
# 127.0.0.1:4222 (for the NATS JetStream consumer; the NATS broker's tests run their own
# nats-server from the same package, and redis-server for extra Redis shards). Installs them from Debian only
# when their binaries are missing, creates a cluster only when none exists, starts what is
# stopped and waits (bounded) until each answers. Idempotent; near-instant when all is up.
#
# If DATABASE_URL / REDIS_URL point somewhere other than those local defaults, that service is
# left alone (it is someone else's to run).
set -euo pipefail

readonly PG_PORT=5432
readonly REDIS_PORT=6379
readonly NATS_PORT=4222
readonly WAIT_SECONDS=30
readonly HBA_MARKER="# rotor: trust local TCP for tests (scripts/ensure-services.sh)"

SCRIPT_NAME=ensure-services
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Prints "host port" of a URL such as postgres://user@host:5432/db or redis://[::1]:6379/0.
url_host_port() {
    local rest=${1#*://}
    rest=${rest%%/*}
    rest=${rest%%\?*}
    rest=${rest##*@}
    local host port=""
    if [[ $rest == \[* ]]; then
        host=${rest%%]*}
        host=${host#[}
        rest=${rest#*]}
        port=${rest#:}
    elif [[ $rest == *:* ]]; then
        host=${rest%%:*}
        port=${rest#*:}
    else
        host=$rest
    fi
    printf '%s %s\n' "$host" "$port"
}

# True when the URL (if set) names the local default instance on the given port.
is_local_default() {
    local url=$1 default_port=$2 host port
    [[ -z $url ]] && return 0
    read -r host port < <(url_host_port "$url")
    case $host in
        127.0.0.1 | localhost | ::1 | "") ;;
        *) return 1 ;;
    esac
    [[ -z $port || $port == "$default_port" ]]
}

# Polls "$@" until it succeeds, for at most WAIT_SECONDS.
wait_until() {
    local what=$1
    shift
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$what did not become ready within ${WAIT_SECONDS}s"
        fi
        sleep 0.2
    done
}

# --- PostgreSQL ------------------------------------------------------------------------------

pg_bin_dir() {
    # The newest installed server version's binaries (Debian layout).
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $dir && -x $dir/postgres ]] && printf '%s\n' "$dir"
}

pg_accepts_trusted_tcp() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -w -qAtc 'select 1' >/dev/null 2>&1
}

pg_cluster() {
    # Prints "version name" of the first cluster configured on this machine, if any.
    local conf
    for conf in /etc/postgresql/*/*/postgresql.conf; do
        [[ -f $conf ]] || continue
        local dir=${conf%/postgresql.conf}
        printf '%s %s\n' "$(basename "$(dirname "$dir")")" "$(basename "$dir")"
        return 0
    done
    return 1
}

# Lets role postgres in over 127.0.0.1 and ::1 without a password (first matching line wins).
pg_trust_local_tcp() {
    local version=$1 name=$2
    local hba=/etc/postgresql/$version/$name/pg_hba.conf
    [[ -f $hba ]] || die "no pg_hba.conf at $hba"
    if ! grep -qF "$HBA_MARKER" "$hba"; then
        local tmp
        tmp=$(mktemp)
        {
            printf '%s\n' "$HBA_MARKER"
            printf 'local   all   postgres                 trust\n'
            printf 'host    all   all       127.0.0.1/32   trust\n'
            printf 'host    all   all       ::1/128        trust\n'
            cat "$hba"
        } >"$tmp"
        $SUDO cp "$tmp" "$hba"
        rm -f "$tmp"
    fi
}

ensure_postgres() {
    if ! is_local_default "${DATABASE_URL:-}" "$PG_PORT"; then
        log "postgres: external DATABASE_URL, not managed here"
        return 0
    fi

    if port_open "$PG_PORT" && pg_accepts_trusted_tcp; then
        log "postgres: up on 127.0.0.1:$PG_PORT"
        return 0
    fi

    local cluster="" version name fresh=0
    if ! port_open "$PG_PORT"; then
        if [[ -z $(pg_bin_dir) ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
            log "postgres: installing from Debian packages"
            apt_install postgresql postgresql-client
            fresh=1
        fi
        if ! cluster=$(pg_cluster); then
            version=$(basename "$(dirname "$(pg_bin_dir)")")
            log "postgres: creating cluster $version/main"
            $SUDO pg_createcluster --port "$PG_PORT" "$version" main >/dev/null
            fresh=1
            cluster=$(pg_cluster) || die "pg_createcluster did not create a cluster"
        fi
        read -r version name <<<"$cluster"
        if [[ $fresh -eq 1 ]]; then
            pg_trust_local_tcp "$version" "$name"
        fi
        # The package's own scripts may have started it meanwhile.
        if ! port_open "$PG_PORT"; then
            log "postgres: starting cluster $version/$name"
            $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
        fi
    fi

    command -v pg_isready >/dev/null 2>&1 || apt_install postgresql-client
    wait_until "postgres" pg_isready -q -h 127.0.0.1 -p "$PG_PORT"

    if ! pg_accepts_trusted_tcp; then
        # A running cluster that asks role postgres for a password: allow trusted local TCP,
        # but only for a cluster this machine manages with the Debian tools.
        cluster=$(pg_cluster) ||
            die "127.0.0.1:$PG_PORT refuses role postgres without a password; set DATABASE_URL"
        read -r version name <<<"$cluster"
        log "postgres: enabling trust auth for 127.0.0.1 and ::1 in $version/$name"
        pg_trust_local_tcp "$version" "$name"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload
        wait_until "postgres trust auth" pg_accepts_trusted_tcp
    fi
    log "postgres: up on 127.0.0.1:$PG_PORT"
}

# --- Redis -----------------------------------------------------------------------------------

redis_answers() {
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

ensure_redis() {
    # Tests start private redis-servers (extra shards, restarts): the binary must be there
    # even when the shared server is someone else's.
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
    if ! is_local_default "${REDIS_URL:-}" "$REDIS_PORT"; then
        log "redis: external REDIS_URL, not managed here"
        return 0
    fi

    if port_open "$REDIS_PORT" && redis_answers; then
        log "redis: up on 127.0.0.1:$REDIS_PORT"
        return 0
    fi

    if ! port_open "$REDIS_PORT"; then
        if ! command -v redis-server >/dev/null 2>&1; then
            log "redis: installing from Debian packages"
            apt_install redis-server redis-tools
        fi
        # The package's own scripts may have started it meanwhile.
        if ! port_open "$REDIS_PORT"; then
            log "redis: starting redis-server"
            $SUDO mkdir -p /var/lib/redis /var/log/redis
            $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
                --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
        fi
    fi
    command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
    wait_until "redis" redis_answers
    log "redis: up on 127.0.0.1:$REDIS_PORT"
}

# --- NATS (JetStream) -------------------------------------------------------------------------

ensure_nats() {
    # The NATS broker's tests start (and kill) private nats-servers on free ports: the binary
    # must be there even when the shared server is someone else's.
    if ! command -v nats-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/nats-server ]]; then
        log "nats: installing from Debian packages"
        apt_install nats-server
    fi
    if [[ -n ${NATS_URL:-} && ${NATS_URL} != "nats://127.0.0.1:$NATS_PORT" ]]; then
        log "nats: external NATS_URL, not managed here"
        return 0
    fi
    if port_open "$NATS_PORT"; then
        log "nats: up on 127.0.0.1:$NATS_PORT"
        return 0
    fi
    if ! port_open "$NATS_PORT"; then
        log "nats: starting nats-server with JetStream"
        $SUDO mkdir -p /var/lib/nats-server
        (nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server \
            -l /var/log/nats-server-ci.log >/dev/null 2>&1 &)
    fi
    wait_until "nats" port_open "$NATS_PORT"
    log "nats: up on 127.0.0.1:$NATS_PORT"
}

ensure_postgres
ensure_redis
ensure_nats
