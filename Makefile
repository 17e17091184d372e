# The two commands of the README. Each sets itself up: a .venv is made and filled on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output
DEMO_STEPS ?= 15

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
	@for m in swav mocov2 byol spark; do \
	  echo "== pre-training $$m ($(DEMO_STEPS) steps, ResNet-18, 64 px) =="; \
	  $(PY) Pre-Training/$$m.py fit --config Pre-Training/configs/$${m}_quick.yaml \
	    --data.store $(DEMO)/phantom/store --trainer.max_steps $(DEMO_STEPS) \
	    --trainer.default_root_dir $(DEMO)/pretrain/$$m --trainer.enable_model_summary false \
	    || exit 1; \
	done
	@echo
	@echo "Demo data: $(DEMO)/phantom (slice store, store_preview.png, labelled tasks/)."
	@echo "Backbones:"; ls -1t $(DEMO)/pretrain/*/lightning_logs/version_*/*_backbone.pt
	@echo "SparK reconstructions: $(DEMO)/pretrain/spark/lightning_logs/version_*/reconstructions/"
	@echo "Next (not built yet): the downstream sweep over training-set sizes, then the report."

clean-demo:
	rm -rf $(DEMO)
