#!/usr/bin/env bash
# Runs a plotting script of loadtest/ with matplotlib, pinned, in a venv cached across runs
# (~/.cache/tailsift/venvs/plot). Usage: bash loadtest/plot.sh SCRIPT.py ARGS...
set -euo pipefail
VENV="${HOME}/.cache/tailsift/venvs/plot"
MPL=3.9.2
if ! "$VENV/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$MPL')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "matplotlib==$MPL"
fi
exec "$VENV/bin/python" "$@"
