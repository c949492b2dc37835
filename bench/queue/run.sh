#!/usr/bin/env bash
# Run the SQLite job-queue benchmark in its own venv (.venv-bench), which has Huey.
# Usage: bench/queue/run.sh [--quick] [other sqlite_vs_huey.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=.venv-bench
# A stamp of this suite's own: the loops suite shares the venv and keeps its own stamp.
STAMP=$VENV/.installed-queue
if [ ! -f "$STAMP" ] || [ bench/queue/requirements.txt -nt "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    "$PYTHON" -m venv "$VENV"
    # Keep the venv out of git and out of `ruff check .`.
    printf '*\n' > "$VENV/.gitignore"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e . -r bench/queue/requirements.txt
    touch "$STAMP"
fi
exec "$VENV/bin/python" bench/queue/sqlite_vs_huey.py "$@"
