# charger: the usual entry points. `make install` once, then `make run` or `make test`.
VENV ?= .venv
PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)

.PHONY: install run check-topology test bench lint format

install:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test,dev]'

run:
	$(PYTHON) -m charger.boot topology/site.yaml

check-topology:
	$(PYTHON) -m charger.boot topology/site.yaml --check

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m bench.messaging
	$(PYTHON) -m bench.restart

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy charger supervisors actors protocols hal sim

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .
