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

# Prune first on the bundled digits data: a dense and a 95%-sparse (OMP) resnet20s.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(PY) main_imp.py --dataset digits --arch resnet20s --epochs 15 --decreasing_lr 8,12 \
		--batch_size 64 --rate 0.95 --pruning_times 2 --prune_type rewind_lt --rewind_epoch 2 \
		--save_dir $(DEMO_DIR)

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
