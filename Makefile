# jacnb: the commands (README, "Commands", says more).
#   make book   - set up .venv if missing, prepare data (installs Debian's dataset-fashion-mnist
#                 when root and offline), execute every notebook with papermill (profile:
#                 PROFILE=auto -> paper on a CUDA machine, cpu otherwise), build the HTML into
#                 book/_build/html; PROFILE=paper without CUDA prints its cost and asks (YES=1: don't)
#   make test   - set up .venv if missing (and Debian's chromium for the browser test when root),
#                 then lint, run the test suite and the mutation check (what .ci/run calls)
#   make lab    - JupyterLab on notebooks/ with the project's kernel (.venv); LAB_ARGS="--port 8899 ..."
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
STAMP := $(VENV)/.jacnb-installed

.PHONY: book test lab env chromium clean-book gpu-check

book: $(STAMP)
	$(PY) -m jacnb.book --profile $(PROFILE) $(if $(YES),--yes)

test: $(STAMP) chromium
	$(PY) -m ruff check jacnb tests benchmarks scripts
	$(PY) -m pytest
	$(PY) scripts/mutation_check.py

# Table VI and the paper profile's dry run on this machine's GPU (< 10 min), into one JSON;
# without CUDA the same at a small size (scripts/gpu_check.py).
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

env: $(STAMP)

# pyproject.toml gives version ranges (the package installs beside a user's torch); the book and
# its tests run on the exact versions of constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Debian's chromium for tests/test_browser.py (Playwright drives it; the test skips without it).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "[make test] installing Debian's chromium for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	      >/dev/null || echo "[make test] chromium not installed: the browser test will skip"; \
	  else \
	    echo "[make test] no chromium and not root: the browser test will skip (apt-get install chromium)"; \
	  fi; }

clean-book:
	rm -rf book/_build book/executed
