#!/usr/bin/env bash
# Sign-in figures of docs/security.md ("Sign-in under load"): resident
# memory high-water of the server under 200 concurrent sign-ins with unknown
# users, and guesses evaluated under 40 concurrent wrong passwords for one
# user. Usage: scripts/signin-figures.sh [TESSERA_BINARY] [LOAD_GENERATOR]
# (defaults: the release builds in target/; build them with
#  cargo build --release -p tessera-server --bin tessera --example signin_flood).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/tessera}
flood=${2:-target/release/examples/signin_flood}

run() { # $1: label, $2: flood args, rest: env
    local label=$1 args=$2; shift 2
    local dir; dir=$(mktemp -d)
    env "$@" TESSERA_INSECURE_HTTP=true "$bin" serve --listen 127.0.0.1:0 \
        --store "sqlite://$dir/t.db" >"$dir/out" 2>"$dir/err" &
    local pid=$!
    for _ in $(seq 1 600); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
    local url; url=$(sed -n 's/^tessera listening on //p' "$dir/out")
    echo "== $label ($bin)"
    # shellcheck disable=SC2086
    "$flood" --url "$url" --pid "$pid" $args
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

# Budgets out of the way, so the flood measures password hashing alone.
run "200 concurrent sign-ins, unknown users" "--mode unknown --n 200" \
    TESSERA_LOGIN_MAX_FAILURES_PER_IP=1000000 TESSERA_LOGIN_MAX_FAILURES_PER_USER=1000000
# Shipped limits: 5 per user, 20 per IP.
run "40 concurrent wrong passwords for one user" "--mode guess --user demo --n 40"
