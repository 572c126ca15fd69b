#!/usr/bin/env bash
# The performance harness (docs/performance.md): tessera next to bare axum,
# tower-sessions, express-session and express + the tessera Node client, in
# one run on this machine.
#
#   scripts/bench.sh                      # full run (about 40 minutes on 2 CPUs)
#   BENCH_DURATION=2 BENCH_ROUNDS=1 BENCH_SCALE_N=20000 scripts/bench.sh   # smoke run
#
# Settings (environment):
#   BENCH_DURATION    seconds measured per configuration and workload (10)
#   BENCH_WARMUP      seconds of warm-up per server start (3)
#   BENCH_ROUNDS      rounds; stacks are interleaved, order rotated per round (3)
#   BENCH_CONNECTIONS wrk connections (32)
#   BENCH_SESSIONS    signed-in sessions the load cycles through (256)
#   BENCH_SCALE_N     sessions of the memory, SQLite and sweeper scale tests (1000000)
#   BENCH_STACKS      stacks to run (default: all, see below)
#   BENCH_SKIP_SCALE  1 = skip the scale tests
#   BENCH_SCALE_TESTS which scale tests to run ("memory sqlite sweeper")
#   BENCH_SWEEP_N     expired sessions of the sweeper test (BENCH_SCALE_N)
#   BENCH_OUT         output directory (default bench/target/results/<time>)
#   BENCH_INSTR       1 = also count instructions per request with callgrind
#                     (in-process, no sockets; default 1 when valgrind exists)
#   BENCH_INSTR_N     requests per callgrind run (10000)
#
# What it does: installs missing tools (wrk, Node/npm, curl, python3 via
# apt-get; `npm ci` in bench/node), builds bench/ in release mode, starts a
# throw-away Redis (scripts/services.sh), then for each round and stack:
# starts the server pinned to CPU 0 (its Redis too), signs in sessions
# through POST /login, warms up, and runs wrk pinned to CPU 1 for each
# workload:
#   read          GET /whoami, cycling through BENCH_SESSIONS sessions
#   write         POST /counter, cycling through the sessions (one per request in flight)
#   write-shared  POST /counter, all requests on ONE session; afterwards the
#                 counter is compared with the number of 2xx answers
# Redis commands per request come from INFO commandstats deltas, SQL
# statements per request from a separate counting pass (sqlx's statement
# events; counting costs time, so it is not part of the measured runs).
# Everything listens on 127.0.0.1 only and every run is bounded in time.
#
# The table is printed and written to $BENCH_OUT/report.md; raw wrk results
# are in $BENCH_OUT/results.tsv.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
SESSIONS=${BENCH_SESSIONS:-256}
SCALE_N=${BENCH_SCALE_N:-1000000}
SCALE_TESTS=${BENCH_SCALE_TESTS:-memory sqlite sweeper}
SWEEP_N=${BENCH_SWEEP_N:-$SCALE_N}
ALL_STACKS="bare tessera-memory tessera-sqlite tessera-redis tessera-redis-cache ts-memory ts-redis ts-redis-sliding express express-tessera express-tessera-cache"
STACKS=${BENCH_STACKS:-$ALL_STACKS}
OUT=${BENCH_OUT:-$BENCH/target/results/$(date +%Y%m%d-%H%M%S)}
SERVER_CPU=0
CLIENT_CPU=1

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# ---------------------------------------------------------------- tools
install_missing() {
    local pkgs=()
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v taskset >/dev/null || pkgs+=(util-linux)
    ((${#pkgs[@]} == 0)) && return 0
    if [[ $(id -u) != 0 ]]; then
        die "missing tools; install the Debian packages: ${pkgs[*]}"
    fi
    log "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
}

(($(nproc) >= 2)) || die "needs 2 CPUs (server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU)"
install_missing
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
: >"$RESULTS"

BIN=$BENCH/target/release
# The Rust stacks, the scale tests and the instruction counts run bench/'s
# binaries; a run of the Node stacks alone does not need them.
INSTR=${BENCH_INSTR:-$(command -v valgrind >/dev/null && echo 1 || echo 0)}
if [[ -n $(tr ' ' '\n' <<<"$STACKS" | grep -vx -e express -e express-tessera -e express-tessera-cache -e '') ||
    ${BENCH_SKIP_SCALE:-0} != 1 || $INSTR == 1 ]]; then
    log "building bench/ (release)"
    cargo build --release --manifest-path "$BENCH/Cargo.toml" --bins
fi
if [[ " $STACKS " == *" express"* ]]; then
    log "npm ci in bench/node"
    (cd "$BENCH/node" && npm ci --no-audit --no-fund --silent)
fi
# express-tessera: express + clients/node in front of `tessera serve` (release
# build) on the same Redis; both processes run on the server CPU.
# express-tessera-cache: the same with tessera's session cache on
# (`TESSERA_CACHE=on`, invalidated through Redis pub/sub).
TESSERA_SERVE=$ROOT/target/release/tessera
if [[ " $STACKS " == *" express-tessera"* ]]; then
    log "building tessera serve (release) and clients/node"
    cargo build --release -p tessera-server --bin tessera
    (cd "$ROOT/clients/node" && npm ci --no-audit --no-fund --silent && npm run --silent build)
fi

# ---------------------------------------------------------------- Redis
export TESSERA_SERVICES=redis
# services.sh is written for a plain sourcing shell, not for `set -eu`.
set +eu
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
services_rc=$?
set -eu
((services_rc == 0)) || die "could not start Redis (scripts/services.sh)"
REDIS_URL=$TESSERA_TEST_REDIS_URL
REDIS_PORT=${REDIS_URL##*:}
REDIS_PID=$(cat "$TESSERA_SERVICES_DIR/redis/redis.pid")
taskset -pc "$SERVER_CPU" "$REDIS_PID" >/dev/null
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

SERVER_PID=""
TESSERA_PID=""
stop_server() {
    local pid
    for pid in "$SERVER_PID" "$TESSERA_PID"; do
        if [[ -n $pid ]]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    SERVER_PID=""
    TESSERA_PID=""
}

# start_tessera LOGFILE CACHE: `tessera serve` on Redis for the
# express-tessera stacks, on the server CPU, with a fresh API key and the
# session cache CACHE (off|on); sets TESSERA_URL and TESSERA_API_KEY.
start_tessera() {
    local logf=$1 cache=$2 db attempt port
    db=$(mktemp -d "$OUT/tessera-db.XXXX")
    export TESSERA_DATABASE="sqlite://$db/tessera.db" TESSERA_KEYS_DIR="$db/keys"
    TESSERA_API_KEY=$("$TESSERA_SERVE" api-key create bench --store "$REDIS_URL" 2>>"$logf") ||
        die "tessera api-key create failed (see $logf)"
    for attempt in 1 2 3; do
        port=$(_ts_free_port)
        TESSERA_CACHE=$cache taskset -c "$SERVER_CPU" "$TESSERA_SERVE" serve \
            --listen "127.0.0.1:$port" --store "$REDIS_URL" >>"$logf" 2>&1 &
        TESSERA_PID=$!
        local deadline=$((SECONDS + 30))
        until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do
            if ! kill -0 "$TESSERA_PID" 2>/dev/null; then
                wait "$TESSERA_PID" 2>/dev/null || true
                TESSERA_PID=""
                ((attempt < 3)) && continue 2
                die "tessera serve did not start (see $logf)"
            fi
            ((SECONDS < deadline)) || die "tessera serve not ready after 30 s (see $logf)"
            sleep 0.1
        done
        TESSERA_URL="http://127.0.0.1:$port"
        return 0
    done
}
trap 'stop_server; tessera_services_stop' EXIT

# A free loopback port (same helper as the services).
PORT=""

# start_server STACK [extra env...]: starts the stack on CPU 0 and waits
# until it answers.
start_server() {
    local stack=$1 attempt
    shift
    local logf=$OUT/server-$stack.log
    # The free port can be taken by another process before the server binds
    # it (a shared machine): try another one a few times.
    for attempt in 1 2 3; do
        PORT=$(_ts_free_port)
        if [[ $stack == express ]]; then
            env BENCH_REDIS_URL="$REDIS_URL" "$@" taskset -c "$SERVER_CPU" \
                node "$BENCH/node/server.js" "127.0.0.1:$PORT" >>"$logf" 2>&1 &
        elif [[ $stack == express-tessera* ]]; then
            local cache=off
            [[ $stack == express-tessera-cache ]] && cache=on
            [[ -n $TESSERA_PID ]] || start_tessera "$OUT/server-tessera-serve-$cache.log" "$cache"
            env TESSERA_URL="$TESSERA_URL" TESSERA_API_KEY="$TESSERA_API_KEY" "$@" \
                taskset -c "$SERVER_CPU" node "$BENCH/node/tessera-server.mjs" "127.0.0.1:$PORT" >>"$logf" 2>&1 &
        else
            env BENCH_REDIS_URL="$REDIS_URL" BENCH_WORKERS=1 "$@" taskset -c "$SERVER_CPU" \
                "$BIN/bench-server" "$stack" "127.0.0.1:$PORT" >>"$logf" 2>&1 &
        fi
        SERVER_PID=$!
        local deadline=$((SECONDS + 30))
        until curl -s -o /dev/null "http://127.0.0.1:$PORT/counter"; do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                wait "$SERVER_PID" 2>/dev/null || true
                SERVER_PID=""
                if ((attempt < 3)) && grep -qi 'addr.*in use' "$logf"; then
                    log "$stack: port $PORT was taken, retrying"
                    continue 2
                fi
                die "$stack did not start (see $logf)"
            fi
            ((SECONDS < deadline)) || die "$stack not ready after 30 s (see $logf)"
            sleep 0.1
        done
        return 0
    done
}

# The bare stack has no sessions: its "sessions" are a dummy cookie.
SEED_ANONYMOUS=0

# seed N PREFIX FILE: signs in N users through POST /login and writes
# "<cookie>\t<csrf>" lines to FILE (one curl process for all of them).
seed() {
    local n=$1 prefix=$2 file=$3 i
    local urls=()
    for ((i = 1; i <= n; i++)); do
        urls+=("http://127.0.0.1:$PORT/login?user=$prefix$i")
    done
    curl -s -X POST -D - -o /dev/null -w '\nEND\n' "${urls[@]}" |
        tr -d '\r' |
        awk 'BEGIN { IGNORECASE = 1 }
             /^set-cookie:/ { sub(/^[^:]*: */, ""); sub(/;.*/, ""); cookie = $0 }
             /^x-csrf-token:/ { sub(/^[^:]*: */, ""); csrf = $0 }
             /^END$/ { if (cookie != "" || anon) print (cookie != "" ? cookie : "anonymous=1") "\t" csrf
                       cookie = ""; csrf = "" }' anon="$SEED_ANONYMOUS" >"$file"
    local got
    got=$(wc -l <"$file")
    ((got == n)) || die "seeding: $got of $n sessions created (port $PORT)"
}

# run_wrk SECONDS METHOD PATH SESSIONS_FILE: prints the RESULT line.
run_wrk() {
    local secs=$1 method=$2 path=$3 file=$4
    BENCH_METHOD=$method BENCH_PATH=$path BENCH_SESSIONS=$file \
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s \
        -s "$BENCH/wrk/sessions.lua" "http://127.0.0.1:$PORT" | grep '^RESULT'
}

# Redis calls by command, as "cmd=calls ..." (commandstats).
redis_calls() {
    rcli info commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1=\2/p' | tr '\n' ' '
}

# sum_counters FILE: sum of GET /counter over the sessions in FILE (one
# curl process; `next` gives each URL its own Cookie header).
sum_counters() {
    local file=$1 cfg=$OUT/counters.curl cookie csrf
    : >"$cfg"
    local sep=""
    while IFS=$'\t' read -r cookie csrf; do
        printf '%surl = "http://127.0.0.1:%s/counter"\nheader = "Cookie: %s"\nwrite-out = "\\n"\n' \
            "$sep" "$PORT" "$cookie" >>"$cfg"
        sep=$'next\n'
    done <"$file"
    curl -s -K "$cfg" | awk '/^[0-9]+$/ { s += $1 } END { print s + 0 }'
}

# cpu_ticks: "<server ticks> <redis ticks> <tessera serve ticks>", user +
# system CPU time in clock ticks (/proc/PID/stat fields 14 and 15) of the
# stack's processes (the server, and `tessera serve` for the
# express-tessera stacks), of Redis, and of `tessera serve` alone (0 for
# the other stacks): where an express-tessera request's time goes.
ticks_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_ticks() {
    local server=0 tessera=0 pid
    for pid in $SERVER_PID $TESSERA_PID; do
        server=$((server + $(ticks_of "$pid")))
    done
    [[ -n $TESSERA_PID ]] && tessera=$(ticks_of "$TESSERA_PID")
    echo "$server $(ticks_of "$REDIS_PID") $tessera"
}

# field NAME LINE: value of NAME=... in a RESULT line.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

is_redis_stack() { [[ $1 == tessera-redis* || $1 == ts-redis* || $1 == express || $1 == express-tessera* ]]; }

# measure ROUND STACK WORKLOAD METHOD PATH FILE [shared]
measure() {
    local round=$1 stack=$2 workload=$3 method=$4 path=$5 file=$6
    local before="" after="" kept=""
    is_redis_stack "$stack" && before=$(redis_calls)
    local cache_before=""
    [[ $stack == tessera-redis-cache ]] && cache_before=$(curl -s "http://127.0.0.1:$PORT/__cache")
    local line cpu_before
    cpu_before=$(cpu_ticks)
    line=$(run_wrk "$DURATION" "$method" "$path" "$file") || die "wrk failed on $stack $workload"
    # CPU time the server (and `tessera serve`) and Redis spent on the run:
    # unlike req/s, hardly moved by other work on this shared machine.
    printf 'cpu\t%s\t%s\t%s\t%s\t%s\n' "$stack" "$workload" "$(field requests "$line")" \
        "$cpu_before" "$(cpu_ticks)" >>"$RESULTS"
    is_redis_stack "$stack" && after=$(redis_calls)
    if [[ $stack == tessera-redis-cache ]]; then
        # The session cache's hits and misses during this run.
        printf 'cache\t%s\t%s\t%s\t%s\n' "$stack" "$workload" "$cache_before" \
            "$(curl -s "http://127.0.0.1:$PORT/__cache")" >>"$RESULTS"
    fi
    if [[ $workload == write && $stack != bare ]]; then
        # Every update kept? The counters of all sessions must add up to
        # the successful POSTs.
        kept=$(sum_counters "$file")
    fi
    if [[ $workload == write-shared && $stack != bare ]]; then
        local cookie final
        cookie=$(cut -f1 "$file")
        final=$(curl -s -H "Cookie: $cookie" "http://127.0.0.1:$PORT/counter")
        kept="$final"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$stack" "$workload" "$line" \
        "$before" "$after" "$kept" >>"$RESULTS"
    log "round $round $stack $workload: $(field requests "$line") requests, p99 $(field p99_us "$line") us${kept:+, counter $kept}"
}

# Redis commands sent and round trips per request: a short separate pass
# (round 1) with MONITOR, which prints one line per command and marks the
# commands a Lua script runs with "lua]": the other lines are what clients
# sent (INFO commandstats counts both, so it cannot tell them apart); then
# a pass with one connection that counts round trips (below).
# MONITOR slows Redis down, so this pass is never a throughput figure.
redis_round_trips() {
    local stack=$1 workload=$2 method=$3 path=$4 file=$5 mon=$OUT/monitor.txt line pid
    # redis-cli itself in the background (not the rcli function, whose
    # subshell's pid $! would be: killing it left redis-cli running, and
    # every later command of the run was copied to the leaked MONITORs).
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" monitor >"$mon" &
    pid=$!
    sleep 0.2
    line=$(run_wrk 2 "$method" "$path" "$file") || die "wrk failed on $stack $workload (monitor pass)"
    sleep 0.2
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    local sent scripted
    sent=$(grep -v -e 'lua\]' -e '"monitor"' -e '"info"' -e '"ping"' "$mon" | grep -c '^[0-9]') || true
    scripted=$(grep -c 'lua\]' "$mon") || true
    printf 'redis-rt\t%s\t%s\t%s\t%s\t%s\n' "$stack" "$workload" "$(field requests "$line")" \
        "$sent" "$scripted" >>"$RESULTS"
    rm -f "$mon"
    # Network round trips: one connection, so one request at a time, and
    # Redis's count of reads from its clients (INFO stats
    # total_reads_processed, Redis >= 6). Commands a client sends together
    # (a pipeline) arrive in one read, so this counts the times a request
    # waited on Redis, where the MONITOR count above counts commands. A
    # background write (a cache's invalidation message) counts too. The
    # second INFO's own read is taken off.
    local CONNS=1 reads_before reads_after
    reads_before=$(redis_reads)
    line=$(run_wrk 2 "$method" "$path" "$file") || die "wrk failed on $stack $workload (round-trip pass)"
    reads_after=$(redis_reads)
    printf 'redis-reads\t%s\t%s\t%s\t%s\n' "$stack" "$workload" "$(field requests "$line")" \
        "$((reads_after - reads_before - 1))" >>"$RESULTS"
}

# Reads Redis has processed from its clients since it started.
redis_reads() {
    rcli info stats | tr -d '\r' | sed -n 's/^total_reads_processed:\([0-9]*\)$/\1/p'
}

# Redis bytes per session: MEMORY USAGE of every key / session keys.
redis_memory() {
    local stack=$1 pattern=$2 total=0 sessions=0 key bytes
    while read -r key; do
        [[ -z $key ]] && continue
        bytes=$(rcli memory usage "$key" samples 0)
        total=$((total + bytes))
        if [[ $key == $pattern ]]; then sessions=$((sessions + 1)); fi
    done < <(rcli --scan)
    printf 'redis-memory\t%s\t%s\t%s\n' "$stack" "$total" "$sessions" >>"$RESULTS"
}

# ---------------------------------------------------------------- stacks
run_stack() {
    local round=$1 stack=$2
    rcli flushall >/dev/null
    local dbdir=""
    local extra=()
    if [[ $stack == tessera-sqlite ]]; then
        dbdir=$(mktemp -d "$OUT/sqlite.XXXX")
        extra+=(BENCH_SQLITE_PATH="$dbdir/sessions.db")
    fi
    start_server "$stack" "${extra[@]}"
    SEED_ANONYMOUS=0
    [[ $stack == bare ]] && SEED_ANONYMOUS=1
    local sess=$OUT/sessions-$stack.txt shared=$OUT/shared-$stack.txt
    seed "$SESSIONS" u "$sess"
    if ((round == 1)); then
        case $stack in
            tessera-redis | tessera-redis-cache) redis_memory "$stack" 'tessera:s:*' ;;
            ts-redis | ts-redis-sliding) redis_memory "$stack" '*' ;;
            express) redis_memory "$stack" 'sess:*' ;;
            express-tessera | express-tessera-cache) redis_memory "$stack" 'tessera:s:*' ;;
        esac
    fi
    run_wrk "$WARMUP" GET /whoami "$sess" >/dev/null || true
    measure "$round" "$stack" read GET /whoami "$sess"
    measure "$round" "$stack" write POST /counter "$sess"
    seed 1 shared "$shared"
    measure "$round" "$stack" write-shared POST /counter "$shared"
    if ((round == 1)) && is_redis_stack "$stack"; then
        redis_round_trips "$stack" read GET /whoami "$sess"
        redis_round_trips "$stack" write POST /counter "$sess"
        redis_round_trips "$stack" write-shared POST /counter "$shared"
    fi
    stop_server
    [[ -n $dbdir ]] && rm -rf "$dbdir"
    return 0
}

# SQL statements per request: one short counting pass per workload.
count_sql() {
    local dbdir
    dbdir=$(mktemp -d "$OUT/sqlite.XXXX")
    start_server tessera-sqlite BENCH_SQLITE_PATH="$dbdir/sessions.db" BENCH_COUNT_SQL=1
    local sess=$OUT/sessions-sqlcount.txt shared=$OUT/shared-sqlcount.txt
    seed "$SESSIONS" u "$sess"
    seed 1 shared "$shared"
    local workload method file before after line
    for workload in read write write-shared; do
        case $workload in
            read) method=GET file=$sess path=/whoami ;;
            write) method=POST file=$sess path=/counter ;;
            write-shared) method=POST file=$shared path=/counter ;;
        esac
        before=$(curl -s "http://127.0.0.1:$PORT/__sql" | tr ' \n' '= ')
        line=$(run_wrk 2 "$method" "$path" "$file")
        after=$(curl -s "http://127.0.0.1:$PORT/__sql" | tr ' \n' '= ')
        printf 'sql\t%s\t%s\t%s\t%s\n' "$workload" "$line" "$before" "$after" >>"$RESULTS"
    done
    stop_server
    rm -rf "$dbdir"
}

# ---------------------------------------------------------------- scale
scale_tests() {
    [[ " $SCALE_TESTS " == *" memory "* ]] && scale_memory
    [[ " $SCALE_TESTS " == *" sqlite "* ]] && scale_sqlite
    [[ " $SCALE_TESTS " == *" sweeper "* ]] && scale_sweeper
    return 0
}

scale_memory() {
    log "memory store: $SCALE_N sessions"
    local which
    for which in tessera tower-sessions; do
        printf 'memsize\t%s\n' "$("$BIN/bench-memsize" "$which" "$SCALE_N")" >>"$RESULTS"
    done
}

scale_sqlite() {
    log "SQLite: 1000 vs $SCALE_N stored sessions"
    local small=$OUT/scale-small/sessions.db big=$OUT/scale-big/sessions.db
    mkdir -p "$(dirname "$small")" "$(dirname "$big")"
    "$BIN/bench-sqlite-seed" "$small" 1000 0 >&2
    "$BIN/bench-sqlite-seed" "$big" "$SCALE_N" 0 >&2
    local round db label
    for ((round = 1; round <= ROUNDS; round++)); do
        for label in small big; do
            if [[ $label == small ]]; then db=$small; else db=$big; fi
            start_server tessera-sqlite BENCH_SQLITE_PATH="$db"
            seed "$SESSIONS" "r$round" "$OUT/sessions-scale.txt"
            run_wrk "$WARMUP" GET /whoami "$OUT/sessions-scale.txt" >/dev/null || true
            measure "$round" "sqlite-$label" read GET /whoami "$OUT/sessions-scale.txt"
            stop_server
        done
    done
    rm -rf "$(dirname "$small")" "$(dirname "$big")"
}

scale_sweeper() {
    log "SQLite sweeper: $SWEEP_N expired sessions"
    local sweep=$OUT/scale-sweep/sessions.db
    mkdir -p "$(dirname "$sweep")"
    "$BIN/bench-sqlite-seed" "$sweep" 1000 "$SWEEP_N" >&2
    start_server tessera-sqlite BENCH_SQLITE_PATH="$sweep"
    seed "$SESSIONS" s "$OUT/sessions-sweep.txt"
    run_wrk "$WARMUP" GET /whoami "$OUT/sessions-sweep.txt" >/dev/null || true
    measure 1 sweep-idle read GET /whoami "$OUT/sessions-sweep.txt"
    curl -s -X POST "http://127.0.0.1:$PORT/__sweep" >/dev/null
    local started=$SECONDS runs=0 purged=0
    # Measure reads back to back until the backlog is gone (bounded).
    while ((runs < 30)); do
        runs=$((runs + 1))
        measure "$runs" sweep-busy read GET /whoami "$OUT/sessions-sweep.txt"
        purged=$(curl -s "http://127.0.0.1:$PORT/__sweep" | cut -d' ' -f1)
        ((purged >= SWEEP_N)) && break
    done
    printf 'sweep\t%s\t%s\t%s\n' "$purged" "$((SECONDS - started))" "$runs" >>"$RESULTS"
    stop_server
    rm -rf "$(dirname "$sweep")"
}

# ---------------------------------------------------------------- instructions
# Instructions per request of the in-process stacks, counted by callgrind:
# `bench-server <stack> inproc N PATH` signs in once and drives N requests
# through the router without sockets. Instruction counts do not depend on
# what else the machine is doing, so these ratios are exact where the
# throughput ratios are noisy. Caveat: under valgrind the sha2 crate falls
# back to its portable SHA-256 (no SHA-NI), which inflates tessera's token
# hashing about tenfold (~3.5k of the counted instructions).
#
# The Redis stacks count this process's side only (the client library,
# encoding, the session logic), not the Redis server's work.
instructions() {
    local n=${BENCH_INSTR_N:-10000} stack path out ir
    for path in /whoami /counter; do
        for stack in bare tessera-memory ts-memory tessera-redis tessera-redis-cache ts-redis ts-redis-sliding; do
            out=$OUT/callgrind-$stack-${path#/}.out
            rcli flushall >/dev/null
            BENCH_REDIS_URL="$REDIS_URL" valgrind --tool=callgrind --callgrind-out-file="$out" \
                "$BIN/bench-server" "$stack" inproc "$n" "$path" >/dev/null 2>&1 ||
                die "callgrind run of $stack $path failed"
            ir=$(sed -n 's/^summary: *//p' "$out")
            printf 'instr\t%s\t%s\t%s\t%s\n' "$stack" "$path" "$ir" "$n" >>"$RESULTS"
            rm -f "$out"
        done
    done
}

# ---------------------------------------------------------------- main
if [[ $INSTR == 1 ]]; then
    log "instructions per request (callgrind, in-process)"
    instructions
fi
read -r -a stack_list <<<"$STACKS"
for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the order each round so no stack always runs first or last.
    n=${#stack_list[@]}
    for ((k = 0; k < n; k++)); do
        stack=${stack_list[$(((k + round - 1) % n))]}
        log "round $round/$ROUNDS: $stack"
        run_stack "$round" "$stack"
    done
done
if [[ " $STACKS " == *" tessera-sqlite "* ]]; then
    count_sql
fi
if [[ ${BENCH_SKIP_SCALE:-0} != 1 ]]; then
    scale_tests
fi

{
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "settings: duration=${DURATION}s warmup=${WARMUP}s rounds=$ROUNDS connections=$CONNS sessions=$SESSIONS scale_n=$SCALE_N"
    echo "versions: $(rustc --version), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
python3 "$BENCH/report.py" "$RESULTS" "$OUT/machine.txt" | tee "$OUT/report.md"
log "report: $OUT/report.md"
