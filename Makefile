# fgclip_ros workspace commands. README's two commands for a fresh machine: `make demo`, `make test`.
# Each creates the environment (.venv, via scripts/setup.sh) when it is missing or its inputs changed.

SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.fgclip-setup-stamp

# ---------------------------------------------------------------------------------------------------
# DEMO_CMD: what `make demo` runs (docs/demo.md): the sample bag replayed into the real perception node
# (pip-world bringup, private DDS graph), its answers printed per object and scored; PNG frames and the
# report go to DEMO_OUT. Other models: `make demo DEMO_MODEL=openai-vit-b-16` (downloads CLIP weights).
DEMO_MODEL ?= fgsynth
DEMO_OUT ?= out/demo
DEMO_CMD ?= $(VENV)/bin/fgclip-demo --model $(DEMO_MODEL) --out $(DEMO_OUT)
# ---------------------------------------------------------------------------------------------------

# Everything scripts/setup.sh hashes: a change to any of them re-runs it (it is also fast when idle).
SETUP_INPUTS := requirements.txt scripts/setup.sh $(wildcard scripts/cmake/*) \
	$(shell find fgclip_msgs compat/vision_msgs -type f 2>/dev/null) \
	fgclip_ros/setup.py fgclip_ros/setup.cfg fgclip_ros/package.xml \
	$(shell find fgclip_ros/launch fgclip_ros/config fgclip_ros/models -type f 2>/dev/null)

PYTEST_ARGS ?=

.PHONY: setup test test-fast demo lint clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   run the demo ($(DEMO_CMD))"
	@echo "make test   run every test (fgclip_ros/test)"
	@echo "make test-fast  the unit tests only (pytest -m unit)"
	@echo "make setup  create/refresh $(VENV): requirements, interfaces, editable fgclip_ros, ROS prefix"
	@echo "make lint   ruff over the repository (ruff.toml)"
	@echo "make clean  remove $(VENV) and build outputs"

$(STAMP): $(SETUP_INPUTS)
	bash scripts/setup.sh

setup:
	bash scripts/setup.sh

# pytest exits 5 when it collected nothing: say so, and fail (make passes the failure on).
test: $(STAMP)
	@echo "$(PYTHON) -m pytest -p no:cacheprovider fgclip_ros/test $(PYTEST_ARGS)"
	@rc=0; $(PYTHON) -m pytest -p no:cacheprovider fgclip_ros/test $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; exit $$rc

test-fast: $(STAMP)
	$(PYTHON) -m pytest -p no:cacheprovider -m unit fgclip_ros/test $(PYTEST_ARGS)

demo: $(STAMP)
	$(DEMO_CMD)

lint: $(STAMP)
	$(PYTHON) -m ruff check --no-cache .

clean:
	rm -rf $(VENV) build install log
	find fgclip_ros -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf fgclip_ros/*.egg-info
