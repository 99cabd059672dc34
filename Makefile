# dohost — build, run and test from a fresh machine.
#   make build      venv in .venv, the package, guest toolchains (tools/install_toolchains.sh),
#                   every sample and fixture
#   make run        a local server with the samples deployed (embedded SQLite storage)
#   make test       the test suite (what CI runs)
#   make test-slow  the long-running tests too
#   make test-cluster  the cluster tests (etcd, SeaweedFS, node processes), long ones too
#   make lint       ruff + mypy
#   make bench      the benchmarks (writes bench/results/)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export ZIG_GLOBAL_CACHE_DIR ?= $(CURDIR)/.zig-cache

.PHONY: build venv guests run test test-slow test-cluster lint bench clean

build: venv guests

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

guests: venv
	tools/install_toolchains.sh
	$(PY) tools/build_guests.py

# `run` builds quietly (one line per step; errors in full), then prints what matters.
run: venv
	@tools/install_toolchains.sh > .toolchains.log 2>&1 || { cat .toolchains.log; exit 1; }
	@$(PY) tools/build_guests.py --quiet
	@$(PY) tools/dev_server.py

# The tests that go through a real `dohost serve` run again with two node processes.
SERVE_TESTS = tests/server/test_api_serve.py tests/server/test_api_tenancy.py \
	tests/server/test_api_errors.py tests/server/test_api_quotas.py tests/cli \
	tests/server/test_cli_client.py

test: build
	$(PY) -m pytest -q -p no:cacheprovider
	DOHOST_TEST_PROCESSES=2 $(PY) -m pytest -q -p no:cacheprovider $(SERVE_TESTS)

test-slow: build
	$(PY) -m pytest -q -p no:cacheprovider -m slow

# The cluster tests (real etcd and SeaweedFS, node processes), long variants included.
test-cluster: build
	$(PY) -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/cluster

lint: venv
	$(VENV)/bin/ruff check host tests bench tools
	$(VENV)/bin/ruff format --check host tests bench tools
	$(VENV)/bin/mypy

bench: build
	$(PY) -m bench

clean:
	rm -rf $(VENV) .zig-cache tests/fixtures/build samples/*/*.wasm dohost-data
	rm -rf build guest-sdk/*/examples/*/*.wasm guest-sdk/assemblyscript/node_modules
