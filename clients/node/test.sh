#!/usr/bin/env bash
# The Node client's suite against a real `tessera serve`, as scripts/test.sh
# runs it:
#
#   TESSERA_BIN=target/debug/tessera clients/node/test.sh
#
# TESSERA_BIN must be a debug build (the tests move tessera's session clock
# with TESSERA_TEST_CLOCK_FILE, which release builds ignore). Installs the
# dev dependencies from the committed lockfile (npm ci), builds the package,
# runs `node --test`, and ends with one line:
#   client suite node: N passed, M failed, K skipped
set -euo pipefail
: "${TESSERA_BIN:?set TESSERA_BIN to the tessera binary (cargo build -p tessera-server)}"
# Absolute, before changing directory.
TESSERA_BIN=$(cd "$(dirname "$TESSERA_BIN")" && pwd)/$(basename "$TESSERA_BIN")
[[ -x $TESSERA_BIN ]] || { echo "TESSERA_BIN=$TESSERA_BIN is not an executable" >&2; exit 1; }
export TESSERA_BIN
cd "$(dirname "${BASH_SOURCE[0]}")"

npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
status=0
node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    test/*.test.js || status=$?
awk '/^# pass / { p = $3 } /^# fail / { f = $3 } /^# skipped / { s = $3 } /^# todo / { t = $3 }
     END { printf "client suite node: %d passed, %d failed, %d skipped\n", p, f, s + t }' "$tap"
exit "$status"
