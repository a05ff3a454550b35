# shardify developer commands. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint bench bench-smoke clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build lies on local disk; an unpinned torch pulls CUDA.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[all,test]' numpy
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not ray and not s3" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check shardify tests scripts
	$(BIN)/mypy shardify

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

bench-smoke: $(STAMP)
	$(BIN)/python scripts/bench.py --smoke

clean:
	rm -rf $(VENV) demo .bench .pytest_cache .mypy_cache .hypothesis
