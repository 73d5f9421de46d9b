# `make demo` and `make test` work on a fresh clone: they create .venv when missing
# and install requirements.txt into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
DEMO_DIR ?= runs/demo

.PHONY: install demo test lint format bench clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

# The pipeline on the bundled digits data: prune first (dense and 95% sparse resnet20s),
# then every unlearning method from both, then the paper's table.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(PY) scripts/demo.py --out $(DEMO_DIR)

test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
