#!/usr/bin/env bash
# Formatting, lints and type checks of the whole tree: Rust (rustfmt, clippy), then Python
# (ruff, mypy, and stubtest of relay_ml/_relay.pyi against the built extension).
# Runs every check in order and exits non-zero if any of them reports a finding.
#
# Usage (from anywhere, in the environment of the [test] extra, with the extension built):
#   bash tests/checks.sh
# PYTHON picks the interpreter whose ruff and mypy are used (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python}"
python_paths=(relay_ml tests benchmarks examples)
failed=()

check() {
    local name="$1"
    shift
    echo "== $name: $*"
    if ! "$@"; then
        failed+=("$name")
    fi
}

check "rustfmt" cargo fmt --all --check
check "clippy" cargo clippy --workspace --all-targets -- -D warnings
check "ruff check" "$python" -m ruff check "${python_paths[@]}"
check "ruff format" "$python" -m ruff format --check "${python_paths[@]}"
check "mypy" "$python" -m mypy relay_ml
check "stubtest" "$python" -m mypy.stubtest relay_ml._relay --mypy-config-file pyproject.toml

if ((${#failed[@]})); then
    echo "checks failed: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed"
