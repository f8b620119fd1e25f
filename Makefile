# `make demo` and `make test` create .venv on first use, then reuse it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test lint bench bench-deps clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nlkd demo

demo-quick: $(STAMP)
	$(BIN)/nlkd demo --quick --out runs/demo-quick

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# the bench and io extras (cleanlab; pycocotools, onnx, tensorboard, ...): the tests that `make test` skips without them
bench-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,io]'

bench: bench-deps
	$(BIN)/python benchmarks/bench_metrics.py

clean-venv:
	rm -rf $(VENV)
