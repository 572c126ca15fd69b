#!/usr/bin/env bash
# Throw-away PostgreSQL, MariaDB, Redis and a 3-master Redis Cluster for the
# store test suites (see the README, "Tests").
#
# Every instance runs from the installed server binaries, in one temporary
# directory, on free loopback ports; the machine's shared services on the
# standard ports are never touched.
#
# Two ways to use it:
#
#   # 1. Sourced (the test script): starts everything, exports the URLs and
#   #    stops everything when the sourcing shell exits.
#   source scripts/services.sh            # all services
#   TESSERA_SERVICES="redis cluster" source scripts/services.sh
#
#   # 2. As a command: `start` prints `export VAR=...` lines (eval them);
#   #    the servers keep running until `stop`.
#   eval "$(scripts/services.sh start)"
#   scripts/services.sh stop              # uses $TESSERA_SERVICES_DIR
#   scripts/services.sh stop /tmp/tessera-services.XXXX
#
# Exports: TESSERA_TEST_POSTGRES_URL, TESSERA_TEST_MYSQL_URL,
# TESSERA_TEST_REDIS_URL, TESSERA_TEST_REDIS_CLUSTER_URL and
# TESSERA_SERVICES_DIR (the temp dir, needed by `stop`).
#
# Missing binaries are installed with apt-get when running as root;
# otherwise the script fails naming the Debian packages. It never skips a
# service silently.

# Deliberately no `set -e` at top level: this file is sourced into the
# caller's shell. Functions return non-zero and the entry points check.

_ts_log() { printf 'services: %s\n' "$*" >&2; }

# Seconds to wait for each server to become ready.
: "${TESSERA_SERVICES_TIMEOUT:=60}"

# A free TCP port on 127.0.0.1. For Redis Cluster the bus port (port+10000)
# must be free too, so both are checked.
_ts_used_ports=""
_ts_port_in_use() {
    local p=$1
    # Ports handed out earlier in this run are reserved even if the server
    # has not bound yet.
    case " $_ts_used_ports " in *" $p "*) return 0 ;; esac
    if command -v ss >/dev/null 2>&1; then
        ss -Htan 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$p\$" && return 0
        return 1
    fi
    # Fallback: something answering a connect is in use.
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
    return 1
}
_ts_free_port() {
    local p i lo hi
    # Stay below the kernel's ephemeral range: a port in it can be taken as
    # the source port of any outgoing connection between our check and the
    # server's bind (seen: a cluster bus port, port+10000, lost that race).
    # Both the port and port+10000 must lie below it.
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    hi=$((lo - 10000))
    if ((hi <= 12000)); then
        hi=55535 # an unusual ephemeral range: fall back to checking only
    fi
    for i in $(seq 1 200); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % (hi - 10000)))
        if ! _ts_port_in_use "$p" && ! _ts_port_in_use $((p + 10000)); then
            _ts_used_ports="$_ts_used_ports $p $((p + 10000))"
            echo "$p"
            return 0
        fi
    done
    _ts_log "no free port found"
    return 1
}

# Waits until "$@" succeeds, up to TESSERA_SERVICES_TIMEOUT seconds.
_ts_wait() {
    local what=$1
    shift
    local deadline=$((SECONDS + TESSERA_SERVICES_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            _ts_log "$what: not ready after ${TESSERA_SERVICES_TIMEOUT}s"
            return 1
        fi
        sleep 0.1
    done
}

_ts_dump_log() {
    local f=$1
    if [[ -f $f ]]; then
        _ts_log "---- last lines of $f ----"
        tail -n 40 "$f" >&2
        _ts_log "---- end of $f ----"
    fi
}

# --- binaries -------------------------------------------------------------

_ts_pg_bindir() {
    local d
    # Highest installed major version.
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] && echo "$d"
}

# Ensures the binaries for the requested services exist; installs the
# Debian packages when root, fails naming them otherwise.
_ts_ensure_binaries() {
    local want=$1 pkgs=()
    if [[ " $want " == *" postgres "* ]] && [[ -z $(_ts_pg_bindir) ]]; then
        pkgs+=(postgresql)
    fi
    if [[ " $want " == *" mysql "* ]] && ! { command -v mariadb-install-db && command -v mariadbd && command -v mariadb; } >/dev/null 2>&1; then
        pkgs+=(mariadb-server mariadb-client)
    fi
    if [[ " $want " == *" redis "* || " $want " == *" cluster "* ]]; then
        command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
        command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
    fi
    ((${#pkgs[@]} == 0)) && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        _ts_log "installing missing packages: ${pkgs[*]}"
        # Package post-install scripts must not start system services on
        # the standard ports: policy-rc.d 101 forbids it.
        local had_policy=0
        [[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
        if ((had_policy == 0)); then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
        local rc=$?
        ((had_policy == 0)) && rm -f /usr/sbin/policy-rc.d
        if ((rc != 0)); then
            _ts_log "apt-get install failed; install these packages: ${pkgs[*]}"
            return 1
        fi
        return 0
    fi
    _ts_log "missing server binaries; install these Debian packages: ${pkgs[*]}"
    _ts_log "(e.g. sudo apt-get install -y ${pkgs[*]})"
    return 1
}

# --- PostgreSQL -----------------------------------------------------------

_ts_start_postgres() {
    local dir=$TESSERA_SERVICES_DIR/postgres bindir port
    bindir=$(_ts_pg_bindir) || return 1
    port=$(_ts_free_port) || return 1
    mkdir -p "$dir"
    # initdb refuses to run as root: run the server as `postgres` then.
    local run=()
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir" || return 1
        # The temp dir is 0700 root; postgres must reach its subdir and
        # socket.
        chmod 0711 "$TESSERA_SERVICES_DIR"
        run=(runuser -u postgres --)
    fi
    if ! "${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
        --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
        _ts_log "postgres: initdb failed"
        _ts_dump_log "$dir/initdb.log"
        return 1
    fi
    # fsync off and a tiny shared_buffers: this data is thrown away.
    if ! "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -t "$TESSERA_SERVICES_TIMEOUT" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >"$dir/pg_ctl.log" 2>&1; then
        _ts_log "postgres: failed to start"
        _ts_dump_log "$dir/pg_ctl.log"
        _ts_dump_log "$dir/server.log"
        return 1
    fi
    head -n 1 "$dir/data/postmaster.pid" >"$dir/pid"
    echo "$bindir" >"$dir/bindir"
    if ! _ts_wait postgres pg_isready -q -h 127.0.0.1 -p "$port" -U postgres; then
        _ts_dump_log "$dir/server.log"
        return 1
    fi
    export TESSERA_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    _ts_log "postgres ready on 127.0.0.1:$port"
}

# --- MariaDB --------------------------------------------------------------

_ts_start_mysql() {
    local dir=$TESSERA_SERVICES_DIR/mysql port
    port=$(_ts_free_port) || return 1
    mkdir -p "$dir/data"
    local user
    user=$(id -un)
    # --no-defaults everywhere: the machine's my.cnf must not leak in (it
    # points at the shared server's socket and datadir).
    if ! mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
        --auth-root-authentication-method=normal --skip-test-db \
        --skip-name-resolve >"$dir/install.log" 2>&1; then
        _ts_log "mariadb: mariadb-install-db failed"
        _ts_dump_log "$dir/install.log"
        return 1
    fi
    # setsid + nohup: the server outlives `services.sh start`.
    setsid nohup mariadbd --no-defaults --datadir="$dir/data" --user="$user" \
        --port="$port" --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --log-error="$dir/server.log" \
        --skip-name-resolve --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        --innodb-doublewrite=0 --max-connections=300 \
        </dev/null >"$dir/stdout.log" 2>&1 &
    echo $! >"$dir/pid"
    if ! _ts_wait mariadb mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping; then
        _ts_dump_log "$dir/server.log"
        return 1
    fi
    # $! may be a short-lived `setsid` fork under job control; the server's
    # own pid file is authoritative.
    cat "$dir/mysqld.pid" >"$dir/pid" 2>/dev/null
    # Password-less root over TCP (the URL form the tests use) and the
    # `test` database.
    if ! mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e "
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
        CREATE DATABASE IF NOT EXISTS test;
        FLUSH PRIVILEGES;" >"$dir/setup.log" 2>&1; then
        _ts_log "mariadb: setup failed"
        _ts_dump_log "$dir/setup.log"
        return 1
    fi
    export TESSERA_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port/test"
    _ts_log "mariadb ready on 127.0.0.1:$port"
}

# --- Redis ----------------------------------------------------------------

# Starts one daemonized redis-server in $1 on port $2 with extra args.
_ts_redis_server() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    if ! redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/server.log" "$@" >"$dir/start.log" 2>&1; then
        _ts_log "redis: failed to start on $port"
        _ts_dump_log "$dir/start.log"
        _ts_dump_log "$dir/server.log"
        return 1
    fi
    # Wait for PONG, but give up at once if the server exited (a port
    # taken between the check and the bind): the caller can retry.
    local deadline=$((SECONDS + TESSERA_SERVICES_TIMEOUT)) pid
    until _ts_redis_ping "$port"; do
        pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            _ts_log "redis:$port: exited during start-up"
            _ts_dump_log "$dir/server.log"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            _ts_log "redis:$port: not ready after ${TESSERA_SERVICES_TIMEOUT}s"
            _ts_dump_log "$dir/server.log"
            return 1
        fi
        sleep 0.1
    done
    cat "$dir/redis.pid" >"$dir/pid" 2>/dev/null
}
_ts_redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

_ts_start_redis() {
    local port
    port=$(_ts_free_port) || return 1
    _ts_redis_server "$TESSERA_SERVICES_DIR/redis" "$port" || return 1
    export TESSERA_TEST_REDIS_URL="redis://127.0.0.1:$port"
    _ts_log "redis ready on 127.0.0.1:$port"
}

_ts_cluster_ok() {
    local p
    for p in "$@"; do
        redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

_ts_start_cluster() {
    local ports=() p i attempt addrs=()
    for i in 1 2 3; do
        # A node whose port (or bus port) was taken before it could bind
        # exits at once: try another port, a few times.
        for attempt in 1 2 3; do
            p=$(_ts_free_port) || return 1
            if _ts_redis_server "$TESSERA_SERVICES_DIR/cluster-$p" "$p" \
                --cluster-enabled yes --cluster-config-file "$TESSERA_SERVICES_DIR/cluster-$p/nodes.conf" \
                --cluster-node-timeout 5000; then
                break
            fi
            ((attempt < 3)) || return 1
            _ts_log "redis cluster: node on $p failed to start, trying another port"
        done
        ports+=("$p")
        addrs+=("127.0.0.1:$p")
    done
    if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
        >"$TESSERA_SERVICES_DIR/cluster-create.log" 2>&1; then
        _ts_log "redis cluster: create failed"
        _ts_dump_log "$TESSERA_SERVICES_DIR/cluster-create.log"
        return 1
    fi
    if ! _ts_wait "redis cluster" _ts_cluster_ok "${ports[@]}"; then
        for p in "${ports[@]}"; do _ts_dump_log "$TESSERA_SERVICES_DIR/cluster-$p/server.log"; done
        return 1
    fi
    local IFS=,
    export TESSERA_TEST_REDIS_CLUSTER_URL="redis-cluster://${addrs[*]}"
    _ts_log "redis cluster ready on ${addrs[*]}"
}

# --- start / stop ---------------------------------------------------------

# Starts the services named in $TESSERA_SERVICES (default: all of
# "postgres mysql redis cluster").
tessera_services_start() {
    local want=${TESSERA_SERVICES:-postgres mysql redis cluster} s
    _ts_ensure_binaries "$want" || return 1
    TESSERA_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tessera-services.XXXXXX") || return 1
    export TESSERA_SERVICES_DIR
    for s in $want; do
        case $s in
        postgres | mysql | redis | cluster) ;;
        *)
            _ts_log "unknown service '$s' (known: postgres mysql redis cluster)"
            tessera_services_stop
            return 1
            ;;
        esac
        if ! "_ts_start_$s"; then
            _ts_log "starting $s failed; stopping everything"
            tessera_services_stop
            return 1
        fi
    done
}

# Kills the given pids: TERM to all at once (servers shut down in
# parallel), then KILL whatever is left after a grace period.
_ts_kill() {
    local pid i alive
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
    for i in $(seq 1 100); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive == 0)) && return 0
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.1
    return 0
}

# Stops everything started in $1 (default $TESSERA_SERVICES_DIR) and
# removes the directory.
tessera_services_stop() {
    local dir=${1:-${TESSERA_SERVICES_DIR:-}} d pid
    [[ -n $dir && -d $dir ]] || return 0
    # Refuse anything that is not one of ours.
    case $(basename "$dir") in
    tessera-services.*) ;;
    *)
        _ts_log "refusing to stop '$dir': not a services dir"
        return 1
        ;;
    esac
    if [[ -f $dir/postgres/bindir && -d $dir/postgres/data ]]; then
        local run=()
        [[ $(id -u) -eq 0 ]] && run=(runuser -u postgres --)
        "${run[@]}" "$(cat "$dir/postgres/bindir")/pg_ctl" -D "$dir/postgres/data" \
            -m immediate -w stop >/dev/null 2>&1
    fi
    local pids=()
    for d in "$dir"/*/; do
        [[ -f $d/pid ]] || continue
        pid=$(cat "$d/pid" 2>/dev/null)
        # Only our servers: a stale pid file must not kill a recycled pid.
        [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
            grep -Eq 'redis-server|mariadbd|postgres' && pids+=("$pid")
    done
    ((${#pids[@]} > 0)) && _ts_kill "${pids[@]}"
    rm -rf "$dir"
    [[ ${TESSERA_SERVICES_DIR:-} == "$dir" ]] && unset TESSERA_SERVICES_DIR
    return 0
}

_ts_print_exports() {
    local v
    for v in TESSERA_SERVICES_DIR TESSERA_TEST_POSTGRES_URL TESSERA_TEST_MYSQL_URL \
        TESSERA_TEST_REDIS_URL TESSERA_TEST_REDIS_CLUSTER_URL; do
        # Values are URLs and paths without quotes; single-quote them so
        # `eval` keeps them verbatim.
        [[ -n ${!v:-} ]] && printf "export %s='%s'\n" "$v" "${!v}"
    done
}

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    # Sourced: start now, stop when the sourcing shell exits.
    if tessera_services_start; then
        trap 'tessera_services_stop' EXIT
    else
        return 1
    fi
else
    case ${1:-} in
    start)
        tessera_services_start || exit 1
        _ts_print_exports
        ;;
    stop)
        tessera_services_stop "${2:-}" || exit 1
        ;;
    *)
        echo "usage: $0 start|stop [dir]   (or: source $0)" >&2
        exit 2
        ;;
    esac
fi
