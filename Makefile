# charger: the usual entry points. `make install` once, then `make run` or `make test`.
VENV ?= .venv
PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(CURDIR)/$(VENV)/bin/python,python3)

.PHONY: install run check-topology peers test bench lint typecheck format

install:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test,dev]'
	$(VENV)/bin/pip install -e examples/hello_plugin

run:
	$(PYTHON) -m charger.boot topology/site.yaml

check-topology:
	$(PYTHON) -m charger.boot topology/site.yaml --check

# The independent OCPP CSMS (ocpp-rpc, from the npm registry) the backend-link tests also run against.
peers:
	@if [ ! -d tests/peers/ocpp-rpc/node_modules ] && command -v npm >/dev/null; then \
		npm ci --prefix tests/peers/ocpp-rpc --no-audit --no-fund; fi

test: peers
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m bench.messaging
	$(PYTHON) -m bench.restart
	$(PYTHON) -m bench.park
	$(PYTHON) -m bench.energy
	$(PYTHON) -m bench.ocpp
	$(PYTHON) -m bench.recovery

lint: typecheck
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# mypy cannot follow setup.cfg's package_dir mapping (actors/ is charger.actors, ...), so it checks
# a tree of symlinks laid out as the installed package.
typecheck:
	rm -rf build/typecheck && mkdir -p build/typecheck
	cp -as $(CURDIR)/charger build/typecheck/charger
	for d in actors supervisors protocols hal sim; do cp -as $(CURDIR)/$$d build/typecheck/charger/$$d; done
	cp -as $(CURDIR)/examples/hello_plugin/charger_hello build/typecheck/charger_hello
	cd build/typecheck && $(PYTHON) -m mypy --config-file $(CURDIR)/setup.cfg -p charger -p charger_hello

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .
