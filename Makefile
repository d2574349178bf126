# faststate_mw — `make run` serves example_app (fetching what it needs first), `make test` sets up
# everything and runs every check.
PY ?= python3
PORT ?= 5001
VENV := .venv
BIN := $(VENV)/bin
DATASTAR_JS := .cache/datastar/datastar-core.js
export FASTSTATE_DATASTAR_JS := $(abspath $(DATASTAR_JS))

# The Datastar client that pages load (self-hosted, never committed).
# Datastar 1.0.x releases: 1.0.0 ... 1.0.4. The newest 1.0.x browser bundle that any PyPI package
# ships is 1.0.1: starhtml 0.7.0 (its newest release), file starhtml/static/js/datastar-core.js,
# first line "// Datastar v1.0.1 (StarHTML patched: shadow-dom-scan, outside-race-fix)".
# Checked and shipping no bundle: datastar-py 1.0.3, stario 4.3.0/5.0.0/5.1.1 (CDN links to 1.0.2
# and 1.0.4 only), python-fasthtml 0.14.14, air 0.48.1, starui 0.4.3, starelements 0.1.3,
# star-drawing 0.1.3, starlighter 0.2.0, django-datastar 0.2.0, ol-datastar 0.2.0, datastar 0.0.9.
DATASTAR_VERSION := 1.0.1
DATASTAR_DIST := starhtml
DATASTAR_DIST_VERSION := 0.7.0
DATASTAR_WHEEL := starhtml-0.7.0-py3-none-any.whl
DATASTAR_MEMBER := starhtml/static/js/datastar-core.js
# true when the file $(1) is the Datastar v$(DATASTAR_VERSION) bundle (its first line says so)
datastar_ok = head -n 1 $(1) | grep -Eq '^// Datastar v$(subst .,\.,$(DATASTAR_VERSION))( |$$)'

# Other supported Pythons: `make test` runs the unit tests on each one found, in .venv-X.Y.
PYTHONS := 3.11 3.12 3.13

.PHONY: run test lint typecheck pytest pytest-other-pythons bench docs soak system-deps datastar-js clean

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

# The Datastar client (see DATASTAR_VERSION): taken from the wheel on PyPI, verified, cached.
$(DATASTAR_JS): | $(BIN)/python
	rm -rf .cache/datastar/wheel && mkdir -p .cache/datastar/wheel
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  $(DATASTAR_DIST)==$(DATASTAR_DIST_VERSION) -d .cache/datastar/wheel
	cd .cache/datastar/wheel && $(abspath $(BIN))/python -m zipfile -e $(DATASTAR_WHEEL) x
	@if ! $(call datastar_ok,.cache/datastar/wheel/x/$(DATASTAR_MEMBER)); then \
	  echo "ERROR: $(DATASTAR_MEMBER) in $(DATASTAR_WHEEL) is not Datastar v$(DATASTAR_VERSION):" >&2; \
	  head -n 1 .cache/datastar/wheel/x/$(DATASTAR_MEMBER) | cut -c1-120 >&2; exit 1; \
	fi
	cp .cache/datastar/wheel/x/$(DATASTAR_MEMBER) $@.tmp && mv $@.tmp $@
	rm -rf .cache/datastar/wheel

# Fetches the client if missing, and again if the cached one is not v$(DATASTAR_VERSION).
datastar-js: $(BIN)/python
	@if [ -f $(DATASTAR_JS) ] && ! $(call datastar_ok,$(DATASTAR_JS)); then \
	  echo "$(DATASTAR_JS) is not Datastar v$(DATASTAR_VERSION): fetching it again"; \
	  rm -f $(DATASTAR_JS); \
	fi
	@$(MAKE) --no-print-directory $(DATASTAR_JS)

run: $(BIN)/python datastar-js
	$(BIN)/uvicorn example_app.main:app --host 127.0.0.1 --port $(PORT)

lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/python
	$(BIN)/mypy --strict faststate_mw

pytest: $(BIN)/python system-deps datastar-js
	$(BIN)/python -m pytest -q

# The unit tests (no browser) on every other supported Python found: pythonX.Y on PATH, else
# $(PYENV_ROOT)/versions/X.Y.*; each in a venv of its own, .venv-X.Y.
pytest-other-pythons: $(BIN)/python system-deps
	@main=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	pyenv_root=$${PYENV_ROOT:-$$HOME/.pyenv}; found=""; \
	for v in $(PYTHONS); do \
	  [ "$$v" = "$$main" ] && continue; \
	  py=""; \
	  for c in $$(command -v python$$v 2>/dev/null) $$(ls -d $$pyenv_root/versions/$$v.*/bin/python$$v 2>/dev/null | sort -V -r); do \
	    if "$$c" -c "import sys; sys.exit(sys.version_info[:2] != ($${v%%.*}, $${v#*.}))" >/dev/null 2>&1; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "Python $$v not found: skipping its unit tests"; continue; fi; \
	  found="$$found $$v"; venv=.venv-$$v; \
	  echo "== unit tests on Python $$v ($$py) in $$venv"; \
	  if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
	    rm -rf $$venv && "$$py" -m venv $$venv && $$venv/bin/pip install -q --upgrade pip && \
	    $$venv/bin/pip install -q -e '.[dev]' && touch $$venv/.installed || exit 1; \
	  fi; \
	  $$venv/bin/python -m pytest -q -m "not e2e" --ignore=tests/e2e || exit 1; \
	done; \
	[ -n "$$found" ] || echo "no other supported Python ($(PYTHONS)) found besides $$main"

test: lint typecheck pytest pytest-other-pythons

bench: $(BIN)/python system-deps
	$(BIN)/python -m bench

# docs/api.md, the API reference, regenerated from the docstrings (tests/test_api_docs.py fails
# when it is stale).
docs: $(BIN)/python
	$(BIN)/python docs/gen_api.py

# A bounded soak run (SOAK_SECONDS, default 180; SOAK_TABS, default 1000) and the fault
# scenarios; figures go to bench/results/.
soak: $(BIN)/python system-deps
	$(BIN)/python -m bench.soak
	$(BIN)/python -m bench.faults

clean:
	rm -rf $(VENV) $(VENV)-* .cache
