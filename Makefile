# xo-reseller: `make run` starts the whole system, `make test` sets up and runs every check.
# Both create their own virtual environment and install what they need.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit docs bench faults cluster-faults clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "xo-reseller needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(STAMP)
	scripts/ensure-rabbitmq --with-management
	$(PY) -m tools.launcher

test: $(STAMP)
	scripts/ensure-rabbitmq
	scripts/ensure-chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -ra

unit: $(STAMP)
	$(VENV)/bin/pytest -ra tests/unit

docs: $(STAMP)
	$(PY) -m tools.asyncapi docs/asyncapi.json
	$(PY) -m tools.openapi docs

faults: $(STAMP)
	scripts/ensure-rabbitmq
	$(VENV)/bin/pytest -ra tests/faults

# A RabbitMQ node lost for 90 s under 300 sales: three local nodes of the machine's
# rabbitmq-server behind HAProxy (tests/faults/test_cluster.py; minutes, so not in CI).
# It never starts, stops or restarts the machine's broker on 5672.
cluster-faults: $(STAMP)
	scripts/ensure-cluster-tools
	XO_CLUSTER_FAULTS=1 $(VENV)/bin/pytest -ra -s tests/faults/test_cluster.py

bench: $(STAMP)
	scripts/ensure-rabbitmq
	$(PY) -m bench.sale_latency
	$(PY) -m bench.sale_throughput
	$(PY) -m bench.licence_check

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
