#!/usr/bin/env bash
# Installs relay_ml into .venv and runs the main job end to end on sample datasets it writes:
# the quick start, then training a small MLP through relay_ml.torch.loader.
# Usage (from a fresh clone): bash examples/run_quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Builds the extension (release, several minutes on a first run; -v shows cargo's progress).
python -m pip install -v -e ".[torch,arrow]"
python examples/quickstart.py --out examples/sample.arrow "$@"
python examples/train_torch.py --out examples/train.arrow
