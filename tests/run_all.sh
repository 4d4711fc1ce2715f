#!/usr/bin/env bash
# Installs everything the tests need into .venv and runs every test: Rust, then Python.
# Usage (from a fresh clone): bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Builds the extension (release, several minutes on a first run; -v shows cargo's progress) and
# installs the test dependencies from pyproject's [test] extra (torch's CUDA libraries make it
# about 3 GB).
python -m pip install -v -e ".[test]"

# Formatting, lints and type checks: any finding fails the run.
bash tests/checks.sh

# Every crate of the workspace, the bindings included (their tests embed the venv's Python).
# Includes a bounded fuzzing run of each fuzz target's body (rust/relay-storage/src/fuzzing.rs).
RELAY_FUZZ_SECONDS="${RELAY_FUZZ_SECONDS:-60}" cargo test --workspace
python -m pytest tests -q -p no:cacheprovider "$@"
