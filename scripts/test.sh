#!/usr/bin/env bash
# Lint, then run the whole test suite (sets up .venv first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
exec .venv/bin/python -m pytest "$@"  # pyproject.toml [tool.pytest.ini_options]: testpaths = tests
