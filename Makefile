# The two commands of the README. Each sets itself up: a .venv is made and filled on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output
# the methods the demo pre-trains (METHODS=all: every registered one), minutes per method (the
# learning-rate schedule stretches over them), and the label-subset seeds of each training fraction.
# SimCLR by default: on 2 CPU cores its 64 px views fit about 550 to 600 steps in 4 minutes, which
# fine-tune about 0.1 above random init (README, "The demo"); SparK (METHODS=spark DEMO_SIZE=128)
# needs a longer budget (README, learning curves)
METHODS ?= simclr
DEMO_MINUTES ?= 4
DEMO_SEEDS ?= 0 1 2 3 4
# the downstream image size: the quick configs pre-train at 64 px, SparK's at 128 px
DEMO_SIZE ?= 64
# the fine-tuning schedule of the demo and the learning benchmark
FINETUNE_SCHEDULE ?= Downstream/configs/finetune_quick.yaml

.PHONY: demo test test-fast lint install clean-demo

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt -e .
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# the whole suite (what CI runs, with lint); test-fast leaves out the tests marked slow
# (subprocesses, DDP, SIGKILL, benchmarks, long training): the edit-test loop, a few minutes
test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

demo: $(STAMP)
	$(PY) Pre-Training/make_phantom.py --out $(DEMO)/phantom
	@rm -rf $(DEMO)/pretrain $(DEMO)/backbones $(DEMO)/results
	@mkdir -p $(DEMO)/backbones
	@methods="$(METHODS)"; [ "$$methods" = all ] && methods=$$($(PY) -m medssl.pretrain --list); \
	for m in $$methods; do \
	  echo "== pre-training $$m for $(DEMO_MINUTES) minutes (Pre-Training/configs/$${m}_quick.yaml) =="; \
	  $(PY) -m medssl.pretrain $$m fit --config Pre-Training/configs/$${m}_quick.yaml \
	    --data.store $(DEMO)/phantom/store --trainer.max_epochs -1 --trainer.max_time $$(printf '00:00:%02d:00' $(DEMO_MINUTES)) \
	    --trainer.default_root_dir $(DEMO)/pretrain/$$m --trainer.enable_model_summary false \
	    --trainer.callbacks+=medssl.pretrain.online_eval.EmbeddingPicture \
	    --trainer.callbacks.data $(DEMO)/phantom/tasks/organsmnist_phantom.npz \
	    || exit 1; \
	  cp $(DEMO)/pretrain/$$m/$${m}_backbone.pt $(DEMO)/backbones/; \
	done
	@echo "== fine-tuning (the study's protocol, $(FINETUNE_SCHEDULE)) vs random init: organ task, 15 % of the labels x $(words $(DEMO_SEEDS)) seeds =="
	$(PY) Downstream/sweep.py --task organ=medmnist:$(DEMO)/phantom/tasks/organsmnist_phantom.npz \
	  --checkpoints random $$(ls $(DEMO)/backbones/*_backbone.pt) --fractions 0.15 --seeds $(DEMO_SEEDS) \
	  --config $(FINETUNE_SCHEDULE) --model.arch resnet18 --data.image_size $(DEMO_SIZE) --data.num_workers 0 \
	  --out $(DEMO)/results/results.csv
	@echo "== frozen features vs random init: organ task, kNN and linear probe, 2 training fractions x $(words $(DEMO_SEEDS)) seeds =="
	@for mode in knn linear; do \
	  $(PY) Downstream/sweep.py --task organ=medmnist:$(DEMO)/phantom/tasks/organsmnist_phantom.npz \
	    --checkpoints random $$(ls $(DEMO)/backbones/*_backbone.pt) --fractions 1.0 0.15 \
	    --seeds $(DEMO_SEEDS) --model.mode $$mode --model.arch resnet18 --data.image_size $(DEMO_SIZE) \
	    --data.num_workers 0 --out $(DEMO)/results/results.csv || exit 1; \
	done
	$(PY) Downstream/report.py $(DEMO)/results/results.csv
	@echo
	@echo "Demo done. Phantom data: $(DEMO)/phantom (store, store_preview.png, tasks/)."
	@echo "Backbones: $(DEMO)/backbones/. Pre-training runs (TensorBoard, pictures, embedding.png): $(DEMO)/pretrain/"
	@echo "Report: $(DEMO)/results/report/results.md and the PNG plots beside it."

clean-demo:
	rm -rf $(DEMO)
