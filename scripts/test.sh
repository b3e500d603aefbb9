#!/usr/bin/env bash
# Lint, then run the whole test suite, two test modules at a time (sets up .venv first). Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
# Two modules at a time, each module on one worker (its Ray, games and fixtures stay together).
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"  # pyproject.toml: testpaths = tests
