# `make demo` and `make test` each do their own set-up on a fresh clone:
# create .venv if missing, install the pinned stack and the plugin (editable), fetch the demo data.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PLANKTON := data/plankton
DEMO_CONFIG ?= configs/bio_resnext50_plankton_cpu.py
DEMO_WORK_DIR ?= work_dirs/demo_plankton

.PHONY: install data demo test test-fast clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

data: $(PLANKTON)/.complete

$(PLANKTON)/.complete: | $(INSTALLED)
	$(PY) tools/data/fetch_plankton_demo.py $(PLANKTON)

demo: install data
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) $(DEMO_WORK_DIR) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) $(DEMO_WORK_DIR) --csv $(DEMO_WORK_DIR)/prediction.csv
	$(PY) tools/analysis/report.py $(DEMO_WORK_DIR)

# everything (what CI runs); one worker per core, each test file in one worker (module
# fixtures train once)
PYTEST_WORKERS ?= auto
test: install data
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# the inner loop: all but the end-to-end runs marked slow
test-fast: install data
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m 'not slow'

clean:
	rm -rf $(DEMO_WORK_DIR) .pytest_cache
