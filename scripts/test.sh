#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh
#
# 1. installs the system packages the tests drive (nginx for the
#    forward-auth test) when they are missing — as root with apt-get,
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

# One closing line for CI: the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' \
    "${TMPDIR:-/tmp}/tessera-test.log"
exit "$status"
