# The two commands a fresh machine needs:
#   make demo   set up, start a local control plane, and show a playbook catching an alert
#   make test   set up and run the whole test suite (unit, integration, end to end)
# Everything installs itself: a virtualenv in .venv and the control-plane binaries, built
# from the Go module proxy and cached under ~/.cache/kubesoar (never in the repository).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup control-plane test lint demo demo-down clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

control-plane:
	bash hack/localcluster/build.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPY=$(BIN)/mypy bash hack/typecheck.sh

test: setup control-plane
	$(BIN)/pytest -q -ra

demo: setup control-plane
	$(BIN)/python hack/demo.py

# Stops what `hack/demo.py --keep-cluster` left running, then the control plane.
demo-down: setup
	$(BIN)/python hack/demo.py --stop

clean:
	rm -rf $(VENV) build *.egg-info
