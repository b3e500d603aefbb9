#!/usr/bin/env bash
# Create .venv and install the pinned requirements when missing or when the requirement files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON_FOR_VENV:-python3}"
stamp=".venv/.requirements.sha256"
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "Setting up .venv (pip install -r requirements-dev.txt)..." >&2
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
.venv/bin/python -m pip check
echo "$want" > "$stamp"
