# motionlab: `make train` runs the main job, `make test` runs the tests; both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=
# test processes (pytest-xdist); the lip-sync tests share one of them (tests/conftest.py)
TEST_WORKERS ?= 2

.PHONY: help setup train test test-fast test-all lint bench baselines clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; motionlab needs Python 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,export,landmarks,app,cluster,stream,musetalk]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install motionlab with its dev extras

train: $(STAMP) ## train the quickstart Animator on the embedded toy world (ARGS="..." adds Hydra overrides)
	$(BIN)/motionlab-train experiment=quickstart $(ARGS)

test: $(STAMP) ## run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP) ## the fast tier: no training runs, no browser (about a minute)
	$(BIN)/python -m pytest -m "not slow and not trains" -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff over the package, tests, benchmarks and experiments (configured in pyproject.toml)
	$(BIN)/ruff check .

test-all: $(STAMP) ## run every test, slow ones included
	$(BIN)/python -m pytest -m "" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP) ## run the benchmarks and print their results (see docs/benchmarks.md)
	$(BIN)/python -m benchmarks.run $(ARGS)

baselines: $(STAMP) ## rerun the ci-scale baselines with seeds 1-3 and rebuild experiments/RESULTS.csv and .md
	$(BIN)/python -m experiments.baselines $(ARGS)

clean: ## remove run folders, caches and build files (keeps .venv)
	rm -rf logs .cache .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -exec rm -rf {} +
