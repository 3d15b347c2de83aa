# Everything a fresh machine with python3 and make needs: `make test`, `make demo`, `make bench`.
#
# Dependencies install from uv.lock, never from whatever is newest: a fresh clone on any later date gets
# the same versions. uv itself is pinned and installed with pip into .tools/. `make lock` refreshes the
# lock after a change to pyproject.toml (keeping every other pin), `make lock-upgrade` moves all pins
# forward on purpose, and `make lock-check` (run by CI) fails when the lock is stale against pyproject.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# Copies, not hardlinks from uv's cache: nltk (under llama-index) refuses hardlinked data files.
export UV_LINK_MODE := copy

.PHONY: install test lint typecheck demo bench clean redis-server lock lock-upgrade lock-check

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --python $(PY)
	@touch $(STAMP)

lock: | $(UV)
	$(UV) lock --python $(PY)

lock-upgrade: | $(UV)
	$(UV) lock --upgrade --python $(PY)

lock-check: | $(UV)
	@$(UV) lock --check --python $(PY) || { echo "uv.lock is stale against pyproject.toml: run 'make lock' and commit uv.lock"; exit 1; }

install: $(STAMP)

LINT_DIRS := cache_integrations tests $(wildcard bench cookbook)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(STAMP)
	$(BIN)/mypy

# The Redis registry is tested against a real redis-server, started by the test suite on a free port.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

test: lint typecheck redis-server $(STAMP)
	$(BIN)/python -m pytest -q --record-mode=none --block-network --allowed-hosts=127.0.0.1,localhost

demo: $(STAMP)
	$(BIN)/python -m cache_integrations.demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info
