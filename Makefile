# The two commands of the README. Each sets itself up: a .venv is made and filled on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output

.PHONY: demo test install clean-demo

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt -e .
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) Pre-Training/make_phantom.py --out $(DEMO)/phantom
	@echo
	@echo "Demo data is ready in $(DEMO)/phantom: slice store, store_preview.png, tasks/."
	@echo "Next (not built yet): brief pre-training of SwAV, MoCo v2, BYOL and SparK on the store,"
	@echo "then the downstream sweep over training-set sizes, then the report."

clean-demo:
	rm -rf $(DEMO)
