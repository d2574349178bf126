# faststate_mw — `make run` serves example_app, `make test` sets up everything and runs every check.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASTAR_JS := .cache/datastar/datastar-core.js
export FASTSTATE_DATASTAR_JS := $(abspath $(DATASTAR_JS))

.PHONY: run test lint typecheck pytest bench system-deps datastar-js clean

$(BIN)/python: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/python

# Binaries the browser tests and the benchmark need: Debian chromium and wrk (redis-server for later work).
system-deps:
	@missing=""; \
	for b in chromium:chromium wrk:wrk redis-server:redis-server; do \
	  cmd=$${b%%:*}; pkg=$${b##*:}; command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (install them as root)"; fi; \
	fi

# The Datastar 1.0.1 client used by tests: taken from the starhtml wheel on PyPI, cached, never committed.
$(DATASTAR_JS):
	mkdir -p .cache/datastar/wheel
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 starhtml==0.7.0 -d .cache/datastar/wheel
	cd .cache/datastar/wheel && $(abspath $(BIN))/python -m zipfile -e starhtml-0.7.0-py3-none-any.whl x
	cp .cache/datastar/wheel/x/starhtml/static/js/datastar-core.js $(DATASTAR_JS)
	rm -rf .cache/datastar/wheel/x

datastar-js: $(BIN)/python $(DATASTAR_JS)

run: $(BIN)/python
	$(BIN)/uvicorn example_app.main:app --host 127.0.0.1 --port 5001

lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/python
	$(BIN)/mypy --strict faststate_mw

pytest: $(BIN)/python system-deps datastar-js
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(BIN)/python system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cache
