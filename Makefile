# `make demo` and `make test` each do their own set-up on a fresh clone:
# create .venv if missing, install the pinned stack and the plugin (editable), fetch the demo data.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PLANKTON := data/plankton
# ImageNet weights of the EfficientNet-Lite0 demo backbone (timm's tf_efficientnet_lite0)
LITE0_WEIGHTS := data/pretrained/tf_efficientnet_lite0_imagenet.pth
DEMO_CONFIG ?= configs/bio_lite0_plankton_cpu.py
DEMO_WORK_DIR ?= work_dirs/demo_plankton

.PHONY: install data weights demo test test-fast gpu-wheels clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

data: $(PLANKTON)/.complete

$(PLANKTON)/.complete: | $(INSTALLED)
	$(PY) tools/data/fetch_plankton_demo.py $(PLANKTON)

# --reference: the original model code too, which tests/test_lite0_weights.py compares with
weights: $(LITE0_WEIGHTS).complete

$(LITE0_WEIGHTS).complete: | $(INSTALLED)
	$(PY) tools/data/fetch_lite0_weights.py $(LITE0_WEIGHTS) --reference

demo: install data weights
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR) --restart
	$(PY) tools/test.py $(DEMO_CONFIG) $(DEMO_WORK_DIR) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) $(DEMO_WORK_DIR) --csv $(DEMO_WORK_DIR)/prediction.csv
	$(PY) tools/analysis/report.py $(DEMO_WORK_DIR)

# everything (what CI runs); one worker per core, each test file in one worker (module
# fixtures train once)
PYTEST_WORKERS ?= auto
test: install data weights
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# the inner loop: all but the end-to-end runs marked slow
test-fast: install data weights
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m 'not slow'

# the wheels tools/gpu_check.sh installs on a GPU machine without the MMEngine stack or a
# network (tools/gpu_wheels.txt; docs/gpu.md): Python 3.12, Linux x86-64
GPU_WHEELS ?= .whl
GPU_PLATFORM := --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any
gpu-wheels:
	mkdir -p $(GPU_WHEELS)
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: $(GPU_PLATFORM) \
		-d $(GPU_WHEELS) -r tools/gpu_wheels.txt
	# grad-cam publishes only a source archive: a pure-Python wheel is built from it
	$(PYTHON) -m pip wheel -q --no-deps -w $(GPU_WHEELS) grad-cam==1.5.7
	ls $(GPU_WHEELS)

clean:
	rm -rf $(DEMO_WORK_DIR) .pytest_cache
