# `make demo` and `make test` set up everything they need (venv cached under ~/.cache/tx2_infer).
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/tx2_infer
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
# The stamp covers the requirements and this checkout's path (the venv's editable install
# points at one checkout; another clone re-points it).
REQ_HASH := $(shell (cat requirements.txt setup.py setup.cfg; echo $(CURDIR)) | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: venv test test-core demo demo-cli bench clean-venv

# Extra setup steps owned by parts of the project (ROS messages, CUDA); each appends to TEST_DEPS.
TEST_DEPS :=
-include mk/*.mk

venv: $(STAMP)

$(STAMP): requirements.txt setup.py setup.cfg
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*; touch $(STAMP)

test: venv $(TEST_DEPS)
	$(PY) -m pytest test -ra

test-core: venv
	$(PY) -m pytest test/core -ra

# The ROS 2 node on the CPU with YOLOv3-tiny, fed real photos by a camera publisher node; a
# subscriber prints every Detection2DArray. Stops by itself and prints a summary.
demo: demo-ros

# The engine alone through the command line (no ROS): detections and annotated images.
demo-cli: venv
	$(PY) -m tx2_infer_core.cli demo

bench: venv
	$(PY) bench/bench_cpu.py

clean-venv:
	rm -rf $(VENV)
