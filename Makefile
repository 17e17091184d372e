# The two commands of the README. Each sets itself up: a .venv is made and filled on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output
DEMO_STEPS ?= 15
SPARK_STEPS ?= 120  # a masked autoencoder needs more steps before its pictures show anatomy

.PHONY: demo test lint install clean-demo

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt -e .
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) Pre-Training/make_phantom.py --out $(DEMO)/phantom
	@rm -rf $(DEMO)/pretrain $(DEMO)/backbones $(DEMO)/results
	@mkdir -p $(DEMO)/backbones
	@for m in $$($(PY) -m medssl.pretrain --list); do \
	  steps=$(DEMO_STEPS); [ $$m = spark ] && steps=$(SPARK_STEPS); \
	  echo "== pre-training $$m ($$steps steps, ResNet-18, 64 px) =="; \
	  $(PY) -m medssl.pretrain $$m fit --config Pre-Training/configs/$${m}_quick.yaml \
	    --data.store $(DEMO)/phantom/store --trainer.max_steps $$steps \
	    --trainer.default_root_dir $(DEMO)/pretrain/$$m --trainer.enable_model_summary false \
	    || exit 1; \
	  cp $(DEMO)/pretrain/$$m/$${m}_backbone.pt $(DEMO)/backbones/; \
	done
	@echo "== downstream sweep: every backbone + random init, 2 tasks, 2 training fractions, 2 seeds =="
	$(PY) Downstream/sweep.py \
	  --task organ=medmnist:$(DEMO)/phantom/tasks/organsmnist_phantom.npz \
	  --task covid=covid:$(DEMO)/phantom/tasks/covid \
	  --checkpoints random $$(ls $(DEMO)/backbones/*_backbone.pt) \
	  --fractions 0.5 0.1 --seeds 0 1 --model.arch resnet18 --data.image_size 32 --data.batch_size 32 \
	  --trainer.max_epochs 2 --model.freeze_epochs 1 --data.num_workers 0 --out $(DEMO)/results/results.csv
	$(PY) Downstream/report.py $(DEMO)/results/results.csv
	@echo
	@echo "Demo done. Phantom data: $(DEMO)/phantom (store, store_preview.png, tasks/)."
	@echo "Backbones: $(DEMO)/backbones/. SparK pictures: $(DEMO)/pretrain/spark/reconstructions/"
	@echo "Report: $(DEMO)/results/report/results.md and the PNG plots beside it."

clean-demo:
	rm -rf $(DEMO)
