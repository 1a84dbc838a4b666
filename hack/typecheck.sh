#!/usr/bin/env bash
# mypy (strict) over the kubesoar package. mypy cannot follow setuptools' editable
# mapping of folders to import names (runtime/ -> kubesoar, operator/ ->
# kubesoar.operator), so it checks a tree of links that has the import layout.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree"
mkdir -p "$tree/kubesoar"
for f in runtime/*.py runtime/py.typed; do ln -s "$PWD/$f" "$tree/kubesoar/"; done
ln -s "$PWD/operator" "$tree/kubesoar/operator"
MYPYPATH=$tree exec "${MYPY:-.venv/bin/mypy}" --config-file pyproject.toml -p kubesoar "$@"
