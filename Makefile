# jacnb: the two commands.
#   make book   - set up .venv if missing, prepare data, execute every notebook with papermill
#                 (profile: PROFILE=auto -> paper on a CUDA machine, cpu otherwise), build the HTML
#                 into book/_build/html
#   make test   - set up .venv if missing, then lint and run the test suite (what .ci/run calls),
#                 then the mutation check (scripts/mutation_check.py: planted bugs must be caught)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
STAMP := $(VENV)/.jacnb-installed

.PHONY: book test env clean-book

book: $(STAMP)
	$(PY) -m jacnb.book --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m ruff check jacnb tests benchmarks scripts
	$(PY) -m pytest
	$(PY) scripts/mutation_check.py

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

clean-book:
	rm -rf book/_build book/executed
