#!/usr/bin/env bash
# THE test command: `bash scripts/test.sh`
#   1. scripts/services.sh        (installs/starts local servers, Python venv)
#   2. cargo build --release --bin junction
#   3. cargo nextest run --release --all-features
#   4. `junction rule test rules/`: the test cases of the shipped rule files
#   5. Python black-box suite (tests/python) against the built binary
# Fails if any step fails (steps 3 to 5 all run even if one fails).
# Honours CARGO_TARGET_DIR, JUNCTION_VENV, JUNCTION_REQUIRE_SERVICES (CI sets it),
# PYTEST_ARGS (extra pytest arguments, e.g. "-x -k retained").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${JUNCTION_REQUIRE_SERVICES+x}" ]; then
    export JUNCTION_REQUIRE_SERVICES
fi
VENV="${JUNCTION_VENV:-/var/tmp/junction-venv}"
export JUNCTION_VENV="$VENV"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

step() { echo "==> $*"; }

step "services"
bash scripts/services.sh

step "cargo build --release --bin junction"
cargo build --release --bin junction

status=0

step "cargo nextest run --release --all-features"
cargo nextest run --release --all-features || status=1

JUNCTION_BIN="$(cd "$TARGET_DIR/release" && pwd)/junction"
export JUNCTION_BIN

step "junction rule test rules/"
"$JUNCTION_BIN" rule test rules/ || status=1

step "python black-box tests (tests/python)"
export PYTHONDONTWRITEBYTECODE=1
# pytest's own closing line is the last line printed by this script.
# shellcheck disable=SC2086
"$VENV/bin/pytest" -q -p no:cacheprovider tests/python ${PYTEST_ARGS:-} || status=1

exit "$status"
