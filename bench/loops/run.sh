#!/usr/bin/env bash
# Run the loop-timing benchmark in its own venv (.venv-bench), which has discord.py.
# Usage: bench/loops/run.sh [--quick] [other timing.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=.venv-bench
STAMP=$VENV/.installed
if [ ! -f "$STAMP" ] || [ bench/loops/requirements.txt -nt "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    "$PYTHON" -m venv "$VENV"
    # Keep the venv out of git and out of `ruff check .`.
    printf '*\n' > "$VENV/.gitignore"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e . -r bench/loops/requirements.txt
    touch "$STAMP"
fi
exec "$VENV/bin/python" bench/loops/timing.py "$@"
