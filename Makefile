# One command installs what it needs and runs the main job (`make run`), one installs
# what it needs and passes the tests (`make test`). Both use a virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned here for reproducible installs; pyproject.toml keeps open ranges for users.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DATA_ROOT ?= ../shared/data
ARGS ?=

.PHONY: install run lint docs docs-build test test-heavy test-real test-slow bench bench-sweep bench-compare bench-fused clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: install  ## the main job: an MLP on MNIST with L1 on its hidden activations
	$(VENV)/bin/regrun model=mlp reg=l1_activations dataset.root=$(DATA_ROOT) $(ARGS)

lint: install  ## ruff (pyproject's rules, imports sorted) and mypy over regrun/ and hydra_plugins/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

docs: install  ## serve the documentation site at http://127.0.0.1:8000 (docs/, mkdocs.yml), rebuilt on each edit
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve $(ARGS)

docs-build: install  ## build the site into site/; any broken link, nav entry or reference is an error
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict $(ARGS)

test: install  ## the fast suite (generated data, no network)
	$(PY) -m pytest $(ARGS)

test-heavy: install  ## marker `heavy`: tests of many whole processes (locks, resume, launchers, properties)
	$(PY) -m pytest -m 'heavy and not slow' $(ARGS)

test-real: install  ## the real-data checks on $(DATA_ROOT); skipped where the files are absent
	REGRUN_DATA_ROOT=$(DATA_ROOT) $(PY) -m pytest -m realdata $(ARGS)

test-slow: install  ## the Ray launcher's tests (marker `slow`): adds the `ray` extra, starts a local Ray
	$(PY) -m pip install -q -e '.[dev,ray]'
	$(PY) -m pytest -m slow $(ARGS)

bench: install  ## epoch timings: regrun vs the seed-004 loop vs a bare loop (real MNIST)
	$(PY) bench/epoch_speed.py --data-root $(DATA_ROOT) $(ARGS)

bench-sweep: install  ## wall time of a 3-job λ sweep: basic launcher vs joblib (real MNIST)
	$(PY) bench/sweep_speed.py --data-root $(DATA_ROOT) $(ARGS)

bench-compare: install  ## wall time of `regrun compare` over 100, 400 and 1000 runs (copies of one real run)
	$(PY) bench/compare_speed.py --data-root $(DATA_ROOT) $(ARGS)

bench-fused: install  ## wall time of 8-λ and 8-λ × 3-seed sweeps: fused vs basic vs joblib vs one run (real MNIST)
	$(PY) bench/fused_speed.py --data-root $(DATA_ROOT) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache site
