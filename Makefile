# Developer entry points. `make test` works from a fresh clone: it creates .venv on first use.
# Each target needs only the venv; Redis for the tests is found or started by tests/redis_fixtures.py.
# Both `mcp` majors install under the same import name, so each gets a venv of its own:
# .venv holds mcp 1.x (the 2025-11-25 wire), .venv2 mcp 2.x (the SEP-2663 extension); each runs
# its own wire's tests and reports the other's skipped.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENV2 := .venv2
BIN2 := $(VENV2)/bin
STAMP2 := $(VENV2)/.installed
VENVARQ := .venv-arq
BINARQ := $(VENVARQ)/bin
STAMPARQ := $(VENVARQ)/.installed
BENCH_ARGS ?=

.PHONY: venv venv2 venv-arq test test1 test2 test-arq test-arq-integration clients-test deploy-test lint lint2 lint-arq format demo bench clean

venv: $(STAMP)
venv2: $(STAMP2)
venv-arq: $(STAMPARQ)

# Re-installs only when pyproject.toml changed since the last install (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" "mcp>=1.24,<2"
	@touch $(STAMP)

$(STAMP2): pyproject.toml
	@test -x $(BIN2)/python || $(PYTHON) -m venv $(VENV2)
	$(BIN2)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" "mcp>=2.3,<3"
	@touch $(STAMP2)

# The [arq] extra pins redis-py below 6, so the arq dispatcher gets a venv of its own (mcp 1.x,
# redis-py 5.x): the engine's fundamentals must hold on redis-py 5 too.
$(STAMPARQ): pyproject.toml
	@test -x $(BINARQ)/python || $(PYTHON) -m venv $(VENVARQ)
	$(BINARQ)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,arq]" "mcp>=1.24,<2"
	@touch $(STAMPARQ)

# The deploy tests (tests/deploy: the image and the compose stack on a real Docker engine) have a
# target of their own: they need Docker and take minutes.
# The whole suite, on both SDK majors: each venv runs its wire's tests (and the engine's), and
# reports the other's skipped; the 2.x run includes the official conformance suite's tasks
# scenarios (tests/v2/test_conformance.py); then the arq dispatcher in its own venv (redis-py 5.x).
test: test1 test2 test-arq

test1: venv
	$(BIN)/pytest -q -m "not deploy"

test2: venv2
	$(BIN2)/pytest -q -m "not deploy"

# The arq dispatcher (tests/arq_dispatch: in-process, real arq worker processes, through the MCP server)
# and the engine's fundamentals, on redis-py 5.x.
test-arq: venv-arq
	$(BINARQ)/pytest -q tests/fundamentals tests/arq_dispatch

# The integration suite with every server and worker on the arq dispatcher (~6 min; not in CI).
# Deselected: what the arq dispatcher does differently by design (docs/arq.md): a killed worker's
# task waits out arq's job timeout + 10 s rather than the lease, no priorities, no quotas.
test-arq-integration: venv-arq
	MCP_TASKS_TEST_DISPATCHER=arq $(BINARQ)/pytest -q tests/integration --continue-on-collection-errors \
		-k "not sigkilled and not priority and not quota"

# Real third-party clients (tests/clients, marker `clients`; also part of test / test2): FastMCP 3
# (2025-11-25) from the mcp 1.x venv, FastMCP 4 (SEP-2663) from the 2.x one, each against servers of
# both majors. Each client gets a venv of its own under tests/.venvs/ on first use (~45 s each, then
# cached); here a client that cannot be installed fails the run instead of skipping.
clients-test: venv venv2
	MCP_TASKS_REQUIRE_CLIENTS=1 $(BIN)/pytest -q -m clients tests/clients
	MCP_TASKS_REQUIRE_CLIENTS=1 $(BIN2)/pytest -q -m clients tests/clients

deploy-test: venv
	$(BIN)/pytest -q -m deploy tests/deploy

lint: venv venv2 venv-arq
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright
	$(BIN2)/pyright -p pyrightconfig.v2.json
	$(BINARQ)/pyright -p pyrightconfig.arq.json

# mcp_v2 needs mcp 2.x: type-checked in .venv2 with its own config.
lint2: venv2
	$(BIN2)/pyright -p pyrightconfig.v2.json

# arq_dispatch needs arq: type-checked in .venv-arq with its own config.
lint-arq: venv-arq
	$(BINARQ)/pyright -p pyrightconfig.arq.json

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: venv
	$(BIN)/mcp-tasks-redis demo

bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV2) $(VENVARQ) .pytest_cache .ruff_cache .hypothesis dist build
