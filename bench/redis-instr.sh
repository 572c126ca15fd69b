#!/usr/bin/env bash
# Instructions the Redis *server* executes per request, counted by
# callgrind: the other half of `scripts/bench.sh`'s in-process counts,
# which cover only the session layer's own process.
#
#   bench/redis-instr.sh                       # tessera-redis ts-redis, POST /counter
#   BENCH_INSTR_STACKS="tessera-redis" BENCH_INSTR_PATH=/whoami bench/redis-instr.sh
#
# For each stack it starts a throw-away redis-server under
# `valgrind --tool=callgrind` twice and drives `bench-server <stack> inproc
# N PATH` against it, once with N1 and once with N2 requests; the difference
# of the two totals divided by N2 - N1 is what one request costs Redis
# (start-up, sign-in and shutdown cancel out). Instruction counts do not
# depend on the load of the machine, so this compares Lua script versions
# or stacks exactly where `INFO commandstats` microseconds are noisy.
# Needs the release build of bench/ (scripts/bench.sh builds it), valgrind
# and redis-server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
BIN=target/release/bench-server
STACKS=${BENCH_INSTR_STACKS:-tessera-redis ts-redis}
REQ_PATH=${BENCH_INSTR_PATH:-/counter}
N1=${BENCH_INSTR_N1:-1000}
N2=${BENCH_INSTR_N2:-3000}
[[ -x $BIN ]] || cargo build --release --bins
for tool in valgrind redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "redis-instr: $tool is not installed" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Total instructions of one redis-server run serving `bench-server $1
# inproc $2 $REQ_PATH`.
count() {
    local stack=$1 n=$2 port pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        >/dev/null 2>"$work/valgrind.err" &
    pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    BENCH_REDIS_URL="redis://127.0.0.1:$port" "$BIN" "$stack" inproc "$n" "$REQ_PATH" >/dev/null
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/valgrind.err"
}

printf '%-22s %s\n' "stack ($REQ_PATH)" "Redis instructions per request"
for stack in $STACKS; do
    a=$(count "$stack" "$N1")
    b=$(count "$stack" "$N2")
    printf '%-22s %d\n' "$stack" $(((b - a) / (N2 - N1)))
done
