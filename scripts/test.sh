#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh
#
# 1. installs the system packages the tests drive (nginx for the
#    forward-auth test, chromium and chromium-driver for the browser
#    tests) when they are missing — as root with apt-get,
#    otherwise it fails naming the packages;
# 2. starts throw-away PostgreSQL, MariaDB, Redis and a 3-master Redis
#    Cluster in a temp dir on free ports (scripts/services.sh) and stops
#    them on exit — the machine's shared services are never touched;
# 3. checks formatting and clippy (warnings are errors);
# 4. runs every crate's tests, examples and doc tests.
#
# Nothing is skipped silently: a missing service or package is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n== %s\n' "$*" >&2; }

# Packages whose binaries the tests run: "binary package" pairs.
need=(
    "/usr/sbin/nginx nginx"
    "/usr/bin/chromium chromium"
    "/usr/bin/chromedriver chromium-driver"
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

log "starting throw-away PostgreSQL, MariaDB, Redis, Redis Cluster"
# shellcheck source=services.sh
source scripts/services.sh
export CI="${CI:-}"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/tessera-test.log"
status=${PIPESTATUS[0]}

log "fuzz smoke runs (${TESSERA_FUZZ_SECONDS:-10}s per target; see fuzz/README.md for long runs)"
fuzz_status=0
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly-only rustc flags (sanitizer coverage); the
# machine has one stable toolchain, so enable them for this build only.
for target in $(cd fuzz && cargo fuzz list); do
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
        -max_total_time="${TESSERA_FUZZ_SECONDS:-10}" -print_final_stats=0 >/dev/null 2>"${TMPDIR:-/tmp}/fuzz-$target.log"); then
        echo "fuzz target $target failed:" >&2
        tail -40 "${TMPDIR:-/tmp}/fuzz-$target.log" >&2
        fuzz_status=1
    else
        echo "fuzz target $target: no crash"
    fi
done
if ((fuzz_status)); then status=1; fi

# One closing line for CI: the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' \
    "${TMPDIR:-/tmp}/tessera-test.log"
exit "$status"
