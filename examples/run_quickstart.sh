#!/usr/bin/env bash
# Installs relay_ml into .venv and runs the quick start end to end on a sample dataset it writes.
# Usage (from a fresh clone): bash examples/run_quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[torch,arrow]"
python examples/quickstart.py --out examples/sample.arrow "$@"
