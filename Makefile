# Every target creates .venv if it is missing. torch==2.13.0 goes in first so the CPU wheel
# is used; installing plain `torch` would pull gigabytes of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test check bench up clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/retrain demo

up: setup
	$(VENV)/bin/retrain up

# Two workers: most tests wait on subprocesses and sockets as much as on the CPU.
test: setup
	$(PY) -m pytest -n 2 --dist worksteal

check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/retrain pipelines export --check
	$(VENV)/bin/retrain alerts rules --check infra/prometheus/retrain-rules.yml

bench: setup
	$(PY) bench/registry.py
	$(PY) bench/data.py
	$(PY) bench/train.py
	$(PY) bench/gate_attributions.py
	$(PY) bench/retrain_big.py
	$(PY) bench/serving.py
	$(PY) bench/explain.py
	$(PY) bench/orchestration.py

clean:
	rm -rf .retrain .pytest_cache .mypy_cache .ruff_cache
