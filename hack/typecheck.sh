#!/usr/bin/env bash
# mypy (strict) over the three packages, straight from their folders
# (pyproject's [tool.mypy] names them and their mypy_path).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${MYPY:-.venv/bin/mypy}" --config-file pyproject.toml "$@"
