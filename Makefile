# `make demo` and `make test` work on a fresh clone: they create .venv when missing
# and install requirements.txt into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
DEMO_DIR ?= runs/demo

.PHONY: install demo test test-fast lint format bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps --config-settings editable_mode=compat -e .
	touch $(STAMP)

# The pipeline on a capped Fashion-MNIST (scripts/grids/fashionmnist_demo.json): prune first
# (dense and 95% sparse resnet20s), then the paper's methods from both, then the paper's
# table. The data as `make test` gets it (apt-get as root, else torchvision's download), else
# the bundled digits with a line saying why (scripts/demo.sh). Finished tasks are kept: a
# second `make demo` only summarises (`make clean` starts afresh).
demo: $(STAMP)
	bash scripts/demo.sh $(PY) $(DEMO_DIR)

# The Slurm tests need slurm-wlm and munge, one test the real Fashion-MNIST files
# (dataset-fashion-mnist): installed here when missing (root with apt-get). TEST_WORKERS
# pytest processes share the machine, a file each at a time (--dist loadfile keeps a file's
# fixtures, the Slurm cluster among them, in one process); tests/conftest.py gives each its
# share of the cores. The runs the tests start are small, so two processes on 2 cores finish
# sooner than one with two threads.
TEST_WORKERS ?= 2
test: $(STAMP) lint
	bash tests/install_test_packages.sh
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# The fast tier: in-process tests on tiny models (no training runs, no Slurm), a few minutes.
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow"

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
