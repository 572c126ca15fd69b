#!/usr/bin/env bash
# The Python client's suite, run by scripts/test.sh (client suites) with
# TESSERA_BIN set to the tessera binary; by hand:
#
#   cargo build -p tessera-server && TESSERA_BIN=$PWD/target/debug/tessera clients/python/test.sh
#
# 1. a fresh virtualenv with the exact versions of requirements-test.txt
#    (from PyPI with pip);
# 2. ruff (lint, formatting) and mypy --strict on the package and tests;
# 3. pytest: its fixtures start `tessera serve` from TESSERA_BIN and the
#    FastAPI/Flask test apps on loopback ports.
#
# Ends with "client suite python: N passed, M failed, K skipped" and exits
# non-zero on any failure (pytest's exit 5, nothing collected, included).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
: "${TESSERA_BIN:?set TESSERA_BIN to the tessera binary (cargo build -p tessera-server)}"

venv="${TMPDIR:-/tmp}/tessera-python-venv"
log="${TMPDIR:-/tmp}/tessera-python-pytest.log"
if ! python3 -m venv --clear "$venv"; then
    # Debian's python3 has venv (and ensurepip) in a separate package.
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv --clear "$venv"
    else
        echo "python3 -m venv failed: install python3-venv" >&2
        exit 1
    fi
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-test.txt

status=0
typecheck_failed=0
# Lint, formatting and strict types (package and tests): each counts as one
# failed check.
for check in "ruff check ." "ruff format --check ." "mypy"; do
    # shellcheck disable=SC2086 # the check's words are meant to split
    if ! "$venv/bin/python" -m $check; then
        echo "client suite python: '$check' failed" >&2
        typecheck_failed=$((typecheck_failed + 1))
        status=1
    fi
done
if ! "$venv/bin/python" -m pytest -q 2>&1 | tee "$log"; then
    status=1
fi

# pytest's last line: "N passed, M failed, K skipped, E errors in Ts".
read -r passed failed skipped < <(awk '/ in [0-9.]+s/ { line = $0 }
    END {
        n = split(line, w, /[ ,=]+/)
        for (k = 2; k <= n; k++) {
            if (w[k] == "passed") p = w[k - 1]
            else if (w[k] == "failed" || w[k] == "error" || w[k] == "errors") f += w[k - 1]
            else if (w[k] == "skipped") s = w[k - 1]
        }
        printf "%d %d %d\n", p, f, s
    }' "$log")
failed=$((failed + typecheck_failed))
if ((status)) && ((failed == 0)); then failed=1; fi
echo "client suite python: $passed passed, $failed failed, $skipped skipped"
exit "$status"
