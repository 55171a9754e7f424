# Two commands: `make lab` to learn, `make test` to check everything.
# Both create a virtual environment and install the course into it first, so a fresh
# clone with Python 3.11+ and git needs nothing else.
#
# One environment per interpreter: plain `make` uses .venv (built by python3);
# `make test PYTHON=python3.13` uses .venv-3.13, so it never reuses an environment
# that another Python built. The stamp names the exact interpreter version too, so
# if python3 itself changes (say 3.11 -> 3.12), .venv is rebuilt, not reused.

ifeq ($(origin PYTHON),undefined)
PYTHON := python3
VENV   ?= .venv
endif
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
VENV   ?= .venv-$(basename $(PYVER))
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(PYVER)
# JupyterLab reads overrides.json from its environment's settings folder (not $HOME).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
PORT   ?= 8888
# Jupyter refuses to run as root unless told; containers and CI often are root.
ROOT_OK := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test unit notebooks release grade benchmark doctor outputs clean

setup: $(STAMP) $(LAB_SETTINGS)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s); set PYTHON=/path/to/python3.11" % sys.version.split()[0])' \
	    || { echo "$(PYTHON) is not a usable Python: set PYTHON=/path/to/python3.11 (or newer)" >&2; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# No news prompt or update check at start; Markdown opens rendered (.jupyter/README.md).
$(LAB_SETTINGS): .jupyter/overrides.json $(STAMP)
	@mkdir -p $(dir $@)
	cp .jupyter/overrides.json $@

# The whole course is the root (so chapters can link to exercises); chapter 00 opens first.
lab: $(STAMP) $(LAB_SETTINGS)
	$(BIN)/jupyter lab $(ROOT_OK) --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
	    --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/chapters/00_two_ways_to_serve.ipynb \
	    $(LAB_ARGS)

test: unit notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests

notebooks: $(STAMP)
	$(BIN)/python -m pytest $(NBVAL) chapters solutions

# Instructor helpers -----------------------------------------------------------

release: $(STAMP)
	$(BIN)/labkit release

DIR ?= exercises
grade: $(STAMP)
	$(BIN)/labkit grade $(DIR)

doctor: $(STAMP)
	$(BIN)/labkit doctor

benchmark: $(STAMP)
	$(BIN)/python benchmarks/harness.py
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/panel.py

# Re-execute every chapter and solution in place, storing fresh outputs.
outputs: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace chapters/*.ipynb solutions/*.ipynb

clean:
	rm -rf .venv .venv-* *.egg-info
