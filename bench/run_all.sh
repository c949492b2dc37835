#!/usr/bin/env bash
# `make bench`: underway against the field, every system on the same workloads, in one run.
#
# Installs the peers (pinned in bench/queue/requirements-field.txt; arq apart in
# requirements-arq.txt, underway apart in requirements-underway.txt) into .venv-bench,
# starts private Redis and PostgreSQL servers on free loopback ports, and runs
# bench/queue/field.py (about 20 minutes on a 2-CPU VM), writing
# bench/results/field.{json,md}, then bench/queue/floor.py (bench/results/floor.{json,md}).
# `bash bench/run_all.sh --quick` is the smoke test (tiny N,
# one repetition, prints the tables, writes nothing). Other options: field.py --help.
#
# Needs python3 (3.11+), redis-server, and PostgreSQL's server binaries
# (/usr/lib/postgresql/*/bin); systems whose server is missing are skipped and listed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-bench
ARQ_VENV=$VENV/arq

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    # Keep the venv out of git and out of `ruff check .`.
    printf '*\n' > "$VENV/.gitignore"
fi
# Stamps of this suite's own: the loops and SQLite suites share the venv and keep theirs.
STAMP=$VENV/.installed-field
if [ ! -f "$STAMP" ] || [ bench/queue/requirements-field.txt -nt "$STAMP" ] \
        || [ bench/queue/requirements.txt -nt "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    echo "installing the peers into $VENV (a few minutes the first time)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e . -r bench/queue/requirements.txt \
        -r bench/queue/requirements-field.txt
    touch "$STAMP"
fi
ARQ_STAMP=$ARQ_VENV/.installed
if [ ! -f "$ARQ_STAMP" ] || [ bench/queue/requirements-arq.txt -nt "$ARQ_STAMP" ] \
        || [ pyproject.toml -nt "$ARQ_STAMP" ]; then
    echo "installing arq into $ARQ_VENV" >&2
    "$PYTHON" -m venv "$ARQ_VENV"
    "$ARQ_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$ARQ_VENV/bin/python" -m pip install --quiet -e . -r bench/queue/requirements-arq.txt
    touch "$ARQ_STAMP"
fi
# underway apart, installed with its own extras: underway[redis] brings hiredis, which
# redis-py would also use for the peers, whose documented installs do not have it.
UW_VENV=$VENV/underway
UW_STAMP=$UW_VENV/.installed
if [ ! -f "$UW_STAMP" ] || [ bench/queue/requirements-underway.txt -nt "$UW_STAMP" ] \
        || [ pyproject.toml -nt "$UW_STAMP" ]; then
    echo "installing underway into $UW_VENV" >&2
    "$PYTHON" -m venv "$UW_VENV"
    "$UW_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$UW_VENV/bin/python" -m pip install --quiet -e '.[redis,postgres]' \
        -r bench/queue/requirements-underway.txt
    touch "$UW_STAMP"
fi
"$VENV/bin/python" bench/queue/field.py "$@"
# The full run (no options) also measures the round trips underneath one-at-a-time
# enqueues (bench/results/floor.md); the quick run, a few of them, printed only.
if [ "$#" -eq 0 ]; then
    "$VENV/bin/python" bench/queue/floor.py --json bench/results/floor.json \
        --markdown bench/results/floor.md
elif [[ " $* " == *" --quick "* ]]; then
    "$VENV/bin/python" bench/queue/floor.py --n 300 --rounds 1
fi
