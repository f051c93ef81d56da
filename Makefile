# Everything a developer or CI needs, from a fresh clone: `make test`, `make demo`.
# The virtualenv is built with uv: pip's resolver backtracks for many minutes on Airflow's
# dependency tree, uv resolves it in seconds.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AIRFLOW_VERSION ?=
PYTEST_ARGS ?=

.PHONY: install test lint demo bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]" \
		$(if $(AIRFLOW_VERSION),"apache-airflow==$(AIRFLOW_VERSION)")
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .demo build dist *.egg-info
