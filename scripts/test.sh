#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh
#
# 1. installs the system packages the tests drive (nginx for the
#    forward-auth test, chromium and chromium-driver for the browser
#    tests, npm for axe-core) when they are missing — as root with
#    apt-get, otherwise it fails naming the packages; then `npm ci`
#    installs axe-core, which the browser tests inject into every page,
#    from crates/tessera-server/tests/it/browser/package-lock.json;
# 2. starts throw-away PostgreSQL, MariaDB, Redis and a 3-master Redis
#    Cluster in a temp dir on free ports (scripts/services.sh) and stops
#    them on exit — the machine's shared services are never touched;
# 3. checks formatting, module import cycles (scripts/import-cycles.py
#    --strict), clippy (warnings are errors), rustdoc (warnings are
#    errors), and tessera-sql with each backend alone;
# 4. runs every crate's tests, examples and doc tests (while the fuzz
#    targets build in the background at the lowest CPU priority);
# 5. client suites: runs each clients/*/test.sh (the Node and Python
#    packages, each against a real `tessera serve` of the binary step 4
#    built; they install their own dependencies from lockfiles);
# 6. runs each fuzz target for 10 s (fuzz/README.md).
#
# Nothing is skipped silently: a missing service or package is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each section says when it starts (seconds since the script began), so a
# slow step shows in the CI log.
log() { printf '\n== [%ss] %s\n' "$SECONDS" "$*" >&2; }

# Packages whose binaries the tests run: "binary package" pairs.
need=(
    "/usr/sbin/nginx nginx"
    "/usr/bin/chromium chromium"
    "/usr/bin/chromedriver chromium-driver"
    "/usr/bin/node nodejs"
    "/usr/bin/npm npm"
    "/usr/bin/openssl openssl"
)
missing=()
for pair in "${need[@]}"; do
    bin=${pair%% *} pkg=${pair##* }
    [[ -x $bin ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "missing packages: ${missing[*]} (install them with apt-get)" >&2
        exit 1
    fi
fi

log "npm ci: axe-core for the browser tests (committed lockfile)"
npm ci --prefix crates/tessera-server/tests/it/browser --no-audit --no-fund

log "browser helper tests (clients/browser, node --test)"
node --test clients/browser/test/

log "starting throw-away PostgreSQL, MariaDB, Redis, Redis Cluster"
# shellcheck source=services.sh
source scripts/services.sh
export CI="${CI:-}"

log "cargo fmt --check"
cargo fmt --all -- --check

log "module import cycles (scripts/import-cycles.py)"
# Every crate's module graph must be acyclic, strictly: a child that
# imports an item its parent defines counts as an edge to the parent, so a
# parent that re-exports its children defines nothing they use (shared
# items live in a leaf module of their own).
python3 scripts/import-cycles.py --strict crates/tessera crates/tessera-jwt crates/tessera-redis \
    crates/tessera-sql crates/tessera-axum crates/tessera-server

log "rust-version: no let-chains in the crates that claim 1.85"
# clippy's incompatible_msrv lint (warn by default, an error below) checks
# std APIs against each crate's rust-version; language features it does
# not see. Let-chains are stable since 1.88: only tessera-server and
# tessera-jwt (rust-version 1.89) may use them.
if grep -rnE '(^|[[:space:]])&& let |(if|while) let [^{]*&& let ' \
    crates/tessera/src crates/tessera-axum/src crates/tessera-sql/src crates/tessera-redis/src; then
    echo "let-chains need Rust 1.88; these crates claim rust-version 1.85" >&2
    exit 1
fi

log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo doc (rustdoc warnings are errors: broken intra-doc links, …)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --lib

log "tessera-sql with one backend at a time (clippy, warnings are errors)"
# An application that needs one database enables one feature; each must
# build on its own, without the code of the other two (about 1 min).
for backend in sqlite postgres mysql; do
    cargo clippy -p tessera-sql --no-default-features --features "$backend" --lib -- -D warnings
done

log "cargo test: build"
# Under `set -e -o pipefail` a failing pipeline would end the script here,
# before the fuzz runs, the client suites and the closing line: keep going
# and remember the status.
status=0
build_status=0
cargo test --workspace --no-fail-fast --no-run || build_status=$?

# The fuzz targets are a separate build (sanitizer-coverage flags, their own
# target dir under fuzz/). It runs in the background at the lowest CPU
# priority while the tests and the client suites run, which leave CPU idle
# while they wait on sockets and services; the tests keep the CPU whenever
# they want it (nice 19 has ~1/70 of the weight of nice 0). The smoke runs
# use no sanitizer: every crate of ours is `forbid(unsafe_code)`, and what a
# 10-second run can find (panics, overflow, debug assertions) needs none;
# long runs (fuzz/README.md) use AddressSanitizer as cargo-fuzz does by
# default. cargo-fuzz needs nightly-only rustc flags; the machine has one
# stable toolchain, so RUSTC_BOOTSTRAP enables them for this build only.
fuzz_flags=(--sanitizer none)
fuzz_build_log="${TMPDIR:-/tmp}/fuzz-build.log"
(
    if ! command -v cargo-fuzz >/dev/null; then
        nice -n 19 cargo install cargo-fuzz --locked
    fi
    cd fuzz && RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz build "${fuzz_flags[@]}"
) >"$fuzz_build_log" 2>&1 &
fuzz_build_pid=$!

log "cargo test: run"
cargo test --workspace --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/tessera-test.log" || status=$?

# ---------------------------------------------------------------- client suites
# Each client package (clients/<name>/) owns a test.sh that installs its
# dependencies from a lockfile and runs its own test runner against the
# tessera binary in TESSERA_BIN, ending with the line
# "client suite <name>: N passed, M failed, K skipped".
# The binary is the one `cargo test` built for the server's integration
# tests (target/debug/tessera): `cargo build -p tessera-server` alone would
# resolve other features for the dependencies and compile them all again.
client_logs=()
if ((build_status == 0)) && [[ -x target/debug/tessera ]]; then
    export TESSERA_BIN=$PWD/target/debug/tessera
    for suite in clients/*/test.sh; do
        name=$(basename "$(dirname "$suite")")
        log "client suite: $name"
        client_log="${TMPDIR:-/tmp}/tessera-client-$name.log"
        client_logs+=("$client_log")
        if ! "$suite" 2>&1 | tee "$client_log"; then
            echo "client suite $name FAILED" >&2
            status=1
        fi
        grep -q "^client suite $name: " "$client_log" ||
            echo "client suite $name: 0 passed, 1 failed, 0 skipped (no summary)" >>"$client_log"
    done
else
    echo "client suites: the cargo test build failed, no tessera binary" >&2
    status=1
fi

log "fuzz smoke runs (${TESSERA_FUZZ_SECONDS:-10}s per target; see fuzz/README.md for long runs)"
fuzz_passed=0
fuzz_failed=0
if ! wait "$fuzz_build_pid"; then
    echo "fuzz build failed:" >&2
    tail -40 "$fuzz_build_log" >&2
    fuzz_failed=1
else
    for target in $(cd fuzz && cargo fuzz list); do
        if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "${fuzz_flags[@]}" "$target" -- \
            -max_total_time="${TESSERA_FUZZ_SECONDS:-10}" -print_final_stats=0 >/dev/null 2>"${TMPDIR:-/tmp}/fuzz-$target.log"); then
            echo "fuzz target $target failed:" >&2
            tail -40 "${TMPDIR:-/tmp}/fuzz-$target.log" >&2
            fuzz_failed=$((fuzz_failed + 1))
        else
            echo "fuzz target $target: no crash"
            fuzz_passed=$((fuzz_passed + 1))
        fi
    done
fi
if ((fuzz_failed)); then status=1; fi
fuzz_summary="${TMPDIR:-/tmp}/tessera-fuzz-summary.log"
echo "fuzz smoke: $fuzz_passed passed, $fuzz_failed failed, 0 skipped" | tee "$fuzz_summary"

# One closing line for CI: the totals over every test binary, client suite
# and fuzz target (each target's smoke run counts as one test).
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     /^client suite [^ ]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ { p += $4; f += $6; i += $8 }
     /^fuzz smoke: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ { p += $3; f += $5; i += $7 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' \
    "${TMPDIR:-/tmp}/tessera-test.log" "${client_logs[@]}" "$fuzz_summary"
exit "$status"
