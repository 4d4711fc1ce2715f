#!/usr/bin/env bash
# Installs everything the tests need into .venv and runs every test: Rust, then Python.
# Usage (from a fresh clone): bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Builds the extension (release) and installs the test dependencies from pyproject's [test] extra.
python -m pip install --quiet -e ".[test]"

cargo test --workspace --exclude relay-py --quiet
python -m pytest tests -q -p no:cacheprovider "$@"
