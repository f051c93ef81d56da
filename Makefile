# Everything a developer or CI needs, from a fresh clone: `make test`, `make demo`.
# Virtualenvs are built with uv: pip's resolver backtracks for many minutes on Airflow's
# dependency tree, uv resolves it in seconds.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The oldest Airflow this provider supports; `make test-oldest` runs the suite against it.
OLDEST_AIRFLOW ?= 3.1.8
OLD_VENV := .venv-airflow-$(OLDEST_AIRFLOW)

.PHONY: install test lint test-oldest test-python demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(OLD_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLD_VENV)
	$(OLD_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(OLD_VENV)/bin/uv pip install --quiet --python $(OLD_VENV)/bin/python -e ".[test]" \
		"apache-airflow==$(OLDEST_AIRFLOW)"
	touch $@

# tests/ui is left out: Airflow 3.1 renders provider form fields only with the FAB
# provider installed, which this provider does not depend on (3.2+ reads get_provider_info).
test-oldest: $(OLD_VENV)/.installed
	$(OLD_VENV)/bin/python -m pytest --ignore=tests/ui $(PYTEST_ARGS)

# The suite on another Python (CI runs 3.10, 3.12 and 3.13 where the machine has them):
# `make test-python OTHER_PYTHON=/path/to/python3.12`, in .venv-python3.12.
OTHER_PYTHON ?= python3.10
OTHER_VENV = .venv-$(notdir $(OTHER_PYTHON))

$(OTHER_VENV)/.installed: pyproject.toml
	$(OTHER_PYTHON) -m venv $(OTHER_VENV)
	$(OTHER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(OTHER_VENV)/bin/uv pip install --quiet --python $(OTHER_VENV)/bin/python -e ".[test]"
	touch $@

test-python: $(OTHER_VENV)/.installed
	$(OTHER_VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test,bench]"
	$(BIN)/python benchmarks/bench_export.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(OLD_VENV) .venv-python* .demo build dist *.egg-info
