# FE2E-Lightning. `make help` lists the targets. Every target bootstraps .venv on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed

# ---- user variables (documented in `make help`) -------------------------------------------------
DATA_ROOT   ?=
WEIGHTS     ?=
DEVICES     ?= 1
NUM_NODES   ?= 1
STRATEGY    ?= auto
PRECISION   ?= 32-true
MAX_EPOCHS  ?=
MAX_STEPS   ?=
CHECKPOINTS ?=
SYNTH_DIR   ?= data/synthetic

TRAINER_ARGS := trainer.devices=$(DEVICES) trainer.num_nodes=$(NUM_NODES) \
                trainer.strategy=$(STRATEGY) trainer.precision=$(PRECISION) \
                $(if $(MAX_EPOCHS),trainer.max_epochs=$(MAX_EPOCHS)) \
                $(if $(MAX_STEPS),trainer.max_steps=$(MAX_STEPS))
RUN := $(PY) -m experiments

.PHONY: help venv test test-slow test-gpu lint synth ablation-editor-vs-t2i ablation-fe2e \
        table-depth table-normal tensorboard bench-metrics bench-data bench-gpu clean

help: ## list the targets and variables
	@echo "FE2E-Lightning: editor vs text-to-image generator fine-tuned for depth and normals."
	@echo
	@echo "Targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (make VAR=value TARGET):"
	@echo "  DATA_ROOT    real datasets root (hypersim/, vkitti2/, eval/); unset = procedural scenes in SYNTH_DIR"
	@echo "  WEIGHTS      local folder of real weights; unset = tiny randomly initialised backbones"
	@echo "  DEVICES      GPUs (or CPU processes) per node [$(DEVICES)]"
	@echo "  NUM_NODES    machines [$(NUM_NODES)]"
	@echo "  STRATEGY     auto | ddp | fsdp [$(STRATEGY)]"
	@echo "  PRECISION    Lightning trainer precision [$(PRECISION)] (the DiT itself runs bf16 inside the backbone)"
	@echo "  MAX_EPOCHS / MAX_STEPS   override the training length"
	@echo "  CHECKPOINTS  comma-separated runs or .ckpt files for table-depth / table-normal"

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create/update .venv (only when setup.cfg changed)

test: $(STAMP) ## run the test suite (what CI runs; skips slow and gpu tests)
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

test-slow: $(STAMP) ## run the slow tests too (end-to-end smoke tests of the Make targets)
	$(PY) -m pytest -q -m "not gpu"

test-gpu: $(STAMP) ## run the GPU tests (needs CUDA)
	$(PY) -m pytest -q -m gpu

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check lightning_modules datamodules experiments analysis tests

tensorboard: $(STAMP) ## serve runs/ with TensorBoard on port 6006
	$(VENV)/bin/tensorboard --logdir runs --port 6006

bench-metrics: $(STAMP) ## time the batched metric suite vs a per-image NumPy reference (654 maps 480x640)
	$(PY) -m experiments.bench.metrics

bench-data: $(STAMP) ## samples/s per loader worker: Hypersim raw and cached, Virtual KITTI
	$(PY) -m experiments.bench.data

bench-gpu: $(STAMP) ## full-size FLUX DiT + LoRA r64 step time, memory, MFU (needs a GPU)
	$(PY) -m experiments.bench.gpu

clean: ## remove runs/, results/ and generated synthetic data (keeps .venv)
	rm -rf runs results $(SYNTH_DIR)
