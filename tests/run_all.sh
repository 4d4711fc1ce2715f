#!/usr/bin/env bash
# Installs everything the tests need into .venv and runs every test: Rust, then Python.
# Usage (from a fresh clone): bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Builds the extension (release, a few minutes on a first run) and installs the test
# dependencies from pyproject's [test] extra (torch's CUDA libraries make it about 3 GB).
python -m pip install -e ".[test]"

# Formatting, lints and type checks: any finding fails the run.
bash tests/checks.sh

# Includes a bounded fuzzing run of each fuzz target's body (rust/relay-storage/src/fuzzing.rs).
RELAY_FUZZ_SECONDS="${RELAY_FUZZ_SECONDS:-60}" cargo test --workspace --exclude relay-py --quiet
python -m pytest tests -q -p no:cacheprovider "$@"
