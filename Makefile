# Everything a fresh machine with python3 and make needs: `make test`, `make demo`, `make bench`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck demo bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[langchain,llama-index,testing,dev]"
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check cache_integrations tests bench cookbook
	$(BIN)/ruff format --check cache_integrations tests bench cookbook

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint $(STAMP)
	$(BIN)/python -m pytest -q --record-mode=none --block-network --allowed-hosts=127.0.0.1,localhost --benchmark-disable

demo: $(STAMP)
	$(BIN)/python -m cache_integrations.demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info
