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
STEP1X_PROMPT ?= $(WEIGHTS)/step1x-edit/empty_prompt.safetensors
DEVICES     ?= 1
NUM_NODES   ?= 1
STRATEGY    ?= auto
PRECISION   ?= 32-true
MAX_EPOCHS  ?=
MAX_STEPS   ?=
CHECKPOINTS ?=
PRIORS_OUT  ?= lightning_modules/backbones/assets
BENCH_EPOCHS  ?= 30
BENCH_REPEATS ?= 2
BENCH_BASE    ?=

SYNTH_DIR   := data/synthetic
CFG         := experiments/configs
TRAIN_OVR   := trainer.devices=$(DEVICES) trainer.num_nodes=$(NUM_NODES) \
               trainer.strategy=$(STRATEGY) trainer.precision=$(PRECISION) \
               $(if $(MAX_EPOCHS),trainer.max_epochs=$(MAX_EPOCHS)) \
               $(if $(MAX_STEPS),trainer.max_steps=$(MAX_STEPS))
RUN := $(PY) -m experiments
# Sleeping, not spinning, OpenMP waits: 2 threads never ~10x slower than 1 on a shared machine
# (experiments/thread_policy.py; measured by `make bench-threads`).
export OMP_WAIT_POLICY ?= PASSIVE

# Data: procedural scenes (embedded default) or the real releases under DATA_ROOT.
ifeq ($(DATA_ROOT),)
DATA_CFG := --config $(CFG)/data/synthetic.yaml
DATA_OVR :=
DATA_DEP := $(SYNTH_DIR)/SYNTHETIC.txt
else
DATA_CFG := --config $(CFG)/data/real.yaml
DATA_OVR := data.hypersim_root=$(DATA_ROOT)/hypersim data.vkitti_root=$(DATA_ROOT)/vkitti2 evaluation.root=$(DATA_ROOT)/eval
DATA_DEP :=
endif
# Backbones: tiny random-init models (embedded default) or real weights under WEIGHTS.
ifeq ($(WEIGHTS),)
EDITOR_CFG    :=
GENERATOR_CFG :=
EDITOR_OVR    :=
GENERATOR_OVR :=
MERGE_CFG     :=
else
EDITOR_CFG    := --config $(CFG)/backbone/step1x-edit.yaml
GENERATOR_CFG := --config $(CFG)/backbone/flux-dev.yaml
EDITOR_OVR    := backbone.weights=$(WEIGHTS)/step1x-edit backbone.prompt_embeds=$(STEP1X_PROMPT)
GENERATOR_OVR := backbone.weights=$(WEIGHTS)/flux-dev backbone.prompt_embeds=$(WEIGHTS)/flux-dev/empty_prompt.safetensors
# MERGE-L: FLUX.1-dev kept frozen (no LoRA), its converters at lr 3e-4 (merge/flux-dev.yaml after flux-dev.yaml)
MERGE_CFG     := --config $(CFG)/backbone/flux-dev.yaml --config $(CFG)/merge/flux-dev.yaml
endif
# The study's arms: the miniature priors (SPEC 11; random first: the reference arm) on the embedded default,
# Step1X-Edit vs FLUX.1-dev with WEIGHTS. Every arm runs once per seed of SEEDS, all with one recipe.
SEEDS ?= 0 1 2
STUDY_BENCHMARKS := kitti,nyuv2,eth3d
ifeq ($(WEIGHTS),)
STUDY_ARMS := random generator editor editor-norelight
study_cfg = $(CFG)/ablation/editor_vs_t2i/mini/$(1).yaml
study_weights =
else
STUDY_ARMS := generator editor
study_cfg = $(CFG)/ablation/editor_vs_t2i/$(1).yaml
study_weights = $$(case $(1) in editor) echo "$(EDITOR_CFG) $(EDITOR_OVR)";; *) echo "$(GENERATOR_CFG) $(GENERATOR_OVR)";; esac)
endif
STUDY_RUNS := $(foreach s,$(SEEDS),$(foreach a,$(STUDY_ARMS),$(a)-s$(s)))
# Runs trained at once. The embedded default: as many as there are cores (capped at the number of runs), each
# with ONE torch thread: the tiny models train faster on one thread than on two (a 30-epoch mini run on the
# 2-core machine, train + evaluation: 64 s on 1 thread, 84 s on 2), and one thread per run makes the numbers independent of JOBS
# and of the machine's core count. With WEIGHTS, DEVICES > 1 or NUM_NODES > 1 a run holds every device: 1.
NPROC := $(shell nproc 2>/dev/null || echo 1)
RUN_HOLDS_DEVICES := $(or $(WEIGHTS),$(filter-out 1,$(DEVICES) $(NUM_NODES)))
JOBS ?= $(if $(RUN_HOLDS_DEVICES),1,$(shell n=$(NPROC); r=$(words $(STUDY_RUNS)); echo $$(( n < r ? n : r ))))
STUDY_THREADS ?= $(if $(RUN_HOLDS_DEVICES),,1)
MERGE_OVR := $(GENERATOR_OVR)
# GenPercept on a real backbone: the generator's files, then LoRA r64 + the published schedule (a deviation).
GENPERCEPT_CFG := $(GENERATOR_CFG) $(if $(WEIGHTS),--config $(CFG)/genpercept/lora.yaml)
GENPERCEPT_OVR := $(GENERATOR_OVR)
# ablation-paradigms: FE2E (editor), the T2I baseline (generator), GenPercept and MERGE (on the generator), one
# seed and data order, PARADIGM_EPOCHS each (30: FE2E's), validation off (scored once at the end).
# Measured on the shared 2-core machine: 5m55s for all four, train + evaluation + report.
PARADIGMS := fe2e t2i genpercept merge
PARADIGM_EPOCHS ?= 30
paradigm_cfg = $(CFG)/$$(case $(1) in fe2e) echo ablation/editor_vs_t2i/editor.yaml;; t2i) echo ablation/editor_vs_t2i/generator.yaml;; *) echo $(1).yaml;; esac)
paradigm_weights = $$(case $(1) in fe2e) echo "$(EDITOR_CFG) $(EDITOR_OVR)";; t2i) echo "$(GENERATOR_CFG) $(GENERATOR_OVR)";; genpercept) echo "$(GENPERCEPT_CFG) $(GENPERCEPT_OVR)";; merge) echo "$(MERGE_CFG) $(MERGE_OVR)";; esac)
RECIPE ?= improved
RECIPE_CFG := $(if $(filter direct,$(RECIPE)),--config $(CFG)/ablation/editor_vs_t2i/direct_adapt.yaml)

# Re-running a training target: a finished run with an unchanged resolved config is kept, an unfinished
# one resumes from its last checkpoint, a changed config (or FORCE=1) retrains after moving the old run
# aside to {run}.replaced-{timestamp} (experiments/run_state.py). Nothing is deleted.
FORCE ?=
TRAIN_MODE := existing_run=$(if $(filter 1 yes true,$(FORCE)),retrain,keep)

# train_eval(config, role, run folder, benchmarks): train one run (re-run semantics above), then evaluate it in
# the same process (train --evaluate: what `evaluate --checkpoint RUN` would write, one start-up fewer)
define train_eval
	$(RUN) train --config $(1) $(RECIPE_CFG) $(DATA_CFG) $($(2)_CFG) $(DATA_OVR) $($(2)_OVR) $(TRAIN_OVR) $(TRAIN_MODE) \
	  --evaluate $(4)
endef

comma := ,
ABL_EVT := runs/ablation-editor-vs-t2i
FE2E_ROWS_EDITOR := 2 3 4 5 6 7 9
FE2E_ROWS_GENERATOR := 1 8
DEPTH_BENCHMARKS := nyuv2,kitti,eth3d,scannet,diode
NORMAL_BENCHMARKS := nyuv2_normal,scannet_normal,ibims_normal,sintel_normal
# Runs the tables score: CHECKPOINTS if given; else with WEIGHTS the released FE2E LoRA on Step1X-Edit
# (no training) plus every method's default run that has been trained; else the embedded default's
# runs (each method's default run and the editor-vs-T2I pair), trained first if missing.
# Scored as FE2E's released evaluation runs it: the connector embeds sigma * 1000 (as in training; it is
# inside the connector's forward) and the image latent is a seeded sample of the VAE posterior.
RELEASED_LORA ?= $(WEIGHTS)/fe2e/fe2e_lora.safetensors
RELEASED := $(if $(and $(WEIGHTS),$(if $(CHECKPOINTS),,yes)),runs/fe2e-released/released)
METHOD_DEPTH_RUNS  := runs/fe2e/fe2e runs/genpercept/genpercept runs/merge/merge
METHOD_NORMAL_RUNS := runs/fe2e/fe2e runs/genpercept/genpercept-normal
trained = $(patsubst %/checkpoints/last.ckpt,%,$(wildcard $(addsuffix /checkpoints/last.ckpt,$(1))))
DEFAULT_DEPTH_RUNS  := $(if $(WEIGHTS),$(call trained,$(METHOD_DEPTH_RUNS)),$(METHOD_DEPTH_RUNS) $(ABL_EVT)/editor-s0 $(ABL_EVT)/generator-s0)
DEFAULT_NORMAL_RUNS := $(if $(WEIGHTS),$(call trained,$(METHOD_NORMAL_RUNS)),$(METHOD_NORMAL_RUNS))
DEPTH_RUNS  := $(if $(CHECKPOINTS),$(subst $(comma), ,$(CHECKPOINTS)),$(DEFAULT_DEPTH_RUNS))
NORMAL_RUNS := $(if $(CHECKPOINTS),$(subst $(comma), ,$(CHECKPOINTS)),$(DEFAULT_NORMAL_RUNS))
join_runs = $(subst $(eval) ,$(comma),$(strip $(1)))
released_eval = $(if $(RELEASED),$(RUN) evaluate --config $(CFG)/fe2e.yaml $(DATA_CFG) $(EDITOR_CFG) \
	--adapter $(RELEASED_LORA) --benchmarks $(1) $(DATA_OVR) $(EDITOR_OVR) evaluation.image_latent=sample \
	experiment=fe2e-released run=released)
.PHONY: help venv test test-slow test-gpu lint synth ablation-editor-vs-t2i ablation-paradigms ablation-fe2e fe2e merge \
        genpercept genpercept-depth genpercept-normal \
        table-depth table-normal priors tensorboard bench-metrics bench-data bench-predict bench-threads bench-train bench-gpu clean

help: ## list the targets and variables
	@echo "FE2E-Lightning: editor vs text-to-image generator fine-tuned for depth and normals."
	@echo
	@echo "Targets:"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (make VAR=value TARGET):"
	@echo "  DATA_ROOT    real datasets root (hypersim/, vkitti2/, eval/); unset = procedural scenes in data/synthetic"
	@echo "  WEIGHTS      local folder of real weights; unset = tiny randomly initialised backbones"
	@echo "  DEVICES      GPUs (or CPU processes) per node [$(DEVICES)]"
	@echo "  NUM_NODES    machines [$(NUM_NODES)]"
	@echo "  STRATEGY     auto | ddp | fsdp [$(STRATEGY)]"
	@echo "  PRECISION    Lightning trainer precision [$(PRECISION)] (the DiT itself runs bf16 inside the backbone)"
	@echo "  MAX_EPOCHS / MAX_STEPS   override the training length"
	@echo "  CHECKPOINTS  comma-separated run folders for table-depth / table-normal (default: each method's run,"
	@echo "               runs/fe2e/fe2e, runs/genpercept/genpercept[-normal], + the editor-vs-T2I runs; with"
	@echo "               WEIGHTS: the released FE2E LoRA + the method runs already trained)"
	@echo "  STEP1X_PROMPT  Step1X-Edit's cached Qwen2.5-VL empty-prompt states (.safetensors, or FE2E's no_info.npz)"
	@echo "                 [WEIGHTS/step1x-edit/empty_prompt.safetensors]"
	@echo "  RELEASED_LORA  with WEIGHTS: the released FE2E LoRA the tables score [WEIGHTS/fe2e/fe2e_lora.safetensors]"
	@echo "  RECIPE       improved (CV+FS+DL, log: rows 7/8) | direct (DirectAdapt, direct: rows 1/2) for ablation-editor-vs-t2i"
	@echo "  PARADIGM_EPOCHS  training epochs of each ablation-paradigms run [$(PARADIGM_EPOCHS)]"
	@echo "  SEEDS        fine-tuning seeds of ablation-editor-vs-t2i [$(SEEDS)] (>= 3 for the verdict)"
	@echo "  JOBS         ablation-editor-vs-t2i: runs trained at once [$(JOBS)] (embedded default: the cores, one torch"
	@echo "               thread each, STUDY_THREADS [$(STUDY_THREADS)]; with WEIGHTS or several devices: 1)"
	@echo "  PRIORS_OUT   where make priors writes the miniature priors [$(PRIORS_OUT)]"
	@echo "  TEST_JOBS    make test: pytest-xdist processes [$(TEST_JOBS)] (the cores up to 4, one torch thread each; 1: one process)"
	@echo "  FORCE=1      retrain runs that are finished with an unchanged config"
	@echo "  BENCH_EPOCHS / BENCH_REPEATS  bench-train: epochs of each timed run [$(BENCH_EPOCHS)] (the study's), repeats [$(BENCH_REPEATS)]"
	@echo "  BENCH_BASE   bench-train, bench-data, bench-metrics: a checkout of another commit (e.g. a worktree of main)"
	@echo "               timed in the same repeats (before/after)"
	@echo
	@echo "Re-running a training target: a finished run whose resolved config is unchanged is kept (not retrained),"
	@echo "an unfinished one resumes from checkpoints/last.ckpt, a changed config or FORCE=1 retrains after moving"
	@echo "the old run aside to runs/EXPERIMENT/RUN.replaced-TIMESTAMP (nothing is deleted; the log says where)."

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create/update .venv (only when setup.cfg changed)

# Test processes (pytest-xdist): one per core up to 4, each on one torch thread, whole files per process (a file's
# module fixtures run once); the suite's one DDP launch is shared by all of them (tests/conftest.py). TEST_JOBS=1: one
# process on 2 threads.
TEST_JOBS ?= $(shell n=$(NPROC); echo $$(( n < 4 ? n : 4 )))
TEST_RUN  := $(if $(filter-out 0 1,$(TEST_JOBS)),OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile,OMP_NUM_THREADS=2 $(PY) -m pytest -q -p no:xdist)

test: $(STAMP) ## run the test suite (what CI runs; skips slow and gpu tests); TEST_JOBS processes
	$(TEST_RUN)

test-slow: $(STAMP) ## run the slow tests too (end-to-end smoke tests of the Make targets)
	$(PY) -m pytest -q -m "not gpu"

test-gpu: $(STAMP) ## run the GPU tests (needs CUDA)
	$(PY) -m pytest -q -m gpu

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check lightning_modules datamodules experiments analysis tests

synth: $(DATA_DEP) ## write the procedural scenes of the embedded default to data/synthetic (once)

$(SYNTH_DIR)/SYNTHETIC.txt: | $(STAMP)
	$(RUN) synth --out $(SYNTH_DIR)

ablation-editor-vs-t2i: $(STAMP) $(DATA_DEP) ## the study: every arm x SEEDS, one recipe (RECIPE=improved|direct), JOBS runs at once; verdict, curves, probe, features
	@echo "ablation-editor-vs-t2i: $(words $(STUDY_RUNS)) runs ($(STUDY_RUNS)), $(JOBS) at a time$(if $(STUDY_THREADS), with $(STUDY_THREADS) torch thread each)$(if $(filter 1,$(JOBS)),,; each run's log is printed when it ends)"
	$(MAKE) --no-print-directory -j$(JOBS) $(if $(filter 1,$(JOBS)),,--output-sync=target) $(addprefix study-run/,$(STUDY_RUNS))
	$(RUN) report-ablation $(ABL_EVT) --runs editor-s$(firstword $(SEEDS)),generator-s$(firstword $(SEEDS)) --out results/ablation-editor-vs-t2i
	$(RUN) report-study $(ABL_EVT) --arms $(call join_runs,$(STUDY_ARMS)) --seeds $(call join_runs,$(SEEDS)) \
	  --reference $(firstword $(STUDY_ARMS)) --benchmarks $(STUDY_BENCHMARKS) $(if $(WEIGHTS),,--probe) --out results/ablation-editor-vs-t2i

# One run of the study: study-run/ARM-sSEED (ARM may hold dashes: editor-norelight-s0 -> editor-norelight, 0).
study-run/%:
	@arm='$*'; arm=$${arm%-s*}; seed='$*'; seed=$${seed##*-s}; set -x; \
	$(if $(STUDY_THREADS),OMP_NUM_THREADS=$(STUDY_THREADS)) $(RUN) train --config $(call study_cfg,$$arm) $(RECIPE_CFG) $(DATA_CFG) $(call study_weights,$$arm) $(TRAIN_MODE) \
	  $(DATA_OVR) $(TRAIN_OVR) run=$* seed=$$seed data.seed=$$seed backbone.seed=$$seed --evaluate $(STUDY_BENCHMARKS)

ablation-fe2e: $(STAMP) $(DATA_DEP) ## the nine rows of FE2E's ablation table (SPEC section 8)
	set -e; for r in $(FE2E_ROWS_EDITOR); do \
	  $(RUN) train --config $(CFG)/ablation/fe2e/row$$r.yaml $(DATA_CFG) $(EDITOR_CFG) $(DATA_OVR) $(EDITOR_OVR) $(TRAIN_OVR) $(TRAIN_MODE) \
	    --evaluate kitti,eth3d; done
	set -e; for r in $(FE2E_ROWS_GENERATOR); do \
	  $(RUN) train --config $(CFG)/ablation/fe2e/row$$r.yaml $(DATA_CFG) $(GENERATOR_CFG) $(DATA_OVR) $(GENERATOR_OVR) $(TRAIN_OVR) $(TRAIN_MODE) \
	    --evaluate kitti,eth3d; done
	$(RUN) report-ablation runs/ablation-fe2e --out results/ablation-fe2e

fe2e: $(STAMP) $(DATA_DEP) ## train FE2E as published (row 9: depth + normals) into runs/fe2e/fe2e
	$(call train_eval,$(CFG)/fe2e.yaml,EDITOR,runs/fe2e/fe2e,kitti$(comma)eth3d)

merge: $(STAMP) $(DATA_DEP) ## MERGE: frozen generator + converters into runs/merge/merge; its unchanged generations in results/merge
	$(call train_eval,$(CFG)/merge.yaml,MERGE,runs/merge/merge,kitti$(comma)eth3d)
	$(RUN) generate --checkpoint runs/merge/merge --out results/merge

genpercept: genpercept-depth genpercept-normal ## GenPercept (SPEC 9): one-step, pixel losses through the frozen VAE decoder; one model per task

genpercept-depth: $(STAMP) $(DATA_DEP) ## GenPercept's depth model into runs/genpercept/genpercept
	$(call train_eval,$(CFG)/genpercept.yaml,GENPERCEPT,runs/genpercept/genpercept,kitti$(comma)eth3d)

genpercept-normal: $(STAMP) $(DATA_DEP) ## GenPercept's normal model into runs/genpercept/genpercept-normal
	$(call train_eval,$(CFG)/genpercept_normal.yaml,GENPERCEPT,runs/genpercept/genpercept-normal,nyuv2_normal)

# Runs the tables evaluate by default are trained once if missing.
runs/fe2e/fe2e/checkpoints/last.ckpt: | $(STAMP) $(DATA_DEP)
	$(MAKE) fe2e
runs/genpercept/genpercept/checkpoints/last.ckpt: | $(STAMP) $(DATA_DEP)
	$(MAKE) genpercept-depth
runs/genpercept/genpercept-normal/checkpoints/last.ckpt: | $(STAMP) $(DATA_DEP)
	$(MAKE) genpercept-normal
runs/merge/merge/checkpoints/last.ckpt: | $(STAMP) $(DATA_DEP)
	$(MAKE) merge
$(ABL_EVT)/%/checkpoints/last.ckpt: | $(STAMP) $(DATA_DEP)
	$(MAKE) ablation-editor-vs-t2i

table-depth: $(STAMP) $(DATA_DEP) $(if $(CHECKPOINTS),,$(addsuffix /checkpoints/last.ckpt,$(DEFAULT_DEPTH_RUNS))) ## zero-shot depth table (CHECKPOINTS=run,run... to choose runs)
	set -e; for r in $(DEPTH_RUNS); do $(RUN) evaluate --checkpoint $$r --benchmarks $(DEPTH_BENCHMARKS); done
	$(call released_eval,$(DEPTH_BENCHMARKS))
	$(RUN) table depth --runs $(call join_runs,$(DEPTH_RUNS) $(RELEASED)) --out results/table-depth

table-normal: $(STAMP) $(DATA_DEP) $(if $(CHECKPOINTS),,$(addsuffix /checkpoints/last.ckpt,$(DEFAULT_NORMAL_RUNS))) ## zero-shot normal table (CHECKPOINTS=run,run...)
	set -e; for r in $(NORMAL_RUNS); do $(RUN) evaluate --checkpoint $$r --benchmarks $(NORMAL_BENCHMARKS); done
	$(call released_eval,$(NORMAL_BENCHMARKS))
	$(RUN) table normal --runs $(call join_runs,$(NORMAL_RUNS) $(RELEASED)) --out results/table-normal

priors: $(STAMP) ## re-create the miniature priors (SPEC 11) from seeds into PRIORS_OUT [lightning_modules/backbones/assets]; ~24 min on 2 shared CPU cores
	$(RUN).priors --out $(PRIORS_OUT)

ablation-paradigms: $(STAMP) $(DATA_DEP) ## FE2E, T2I, GenPercept, MERGE: one data order, PARADIGM_EPOCHS each; depth table, curves, cost
	set -e; for m in $(PARADIGMS); do \
	  $(RUN) train --config $(call paradigm_cfg,$$m) $(DATA_CFG) $(call paradigm_weights,$$m) $(TRAIN_MODE) \
	    $(DATA_OVR) $(TRAIN_OVR) experiment=ablation-paradigms run=$$m seed=0 data.seed=0 backbone.seed=0 \
	    trainer.max_epochs=$(PARADIGM_EPOCHS) trainer.limit_val_batches=0 --evaluate kitti,eth3d; done
	$(RUN) report-paradigms runs/ablation-paradigms --runs $(call join_runs,$(PARADIGMS)) --out results/ablation-paradigms

tensorboard: $(STAMP) ## serve runs/ with TensorBoard on port 6006
	$(VENV)/bin/tensorboard --logdir runs --port 6006

bench-metrics: $(STAMP) ## depth metric suite vs a per-image NumPy reference and the bandwidth floor, per mask kind; BENCH_BASE=checkout: before/after
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PY) -m experiments.bench.metrics $(if $(BENCH_BASE),--base $(BENCH_BASE))

bench-data: $(STAMP) ## samples/s per loader worker: Hypersim raw and cached, Virtual KITTI; raw Hypersim vs a plain h5py read; BENCH_BASE=checkout: before/after
	$(PY) -m experiments.bench.data $(if $(BENCH_BASE),--base $(BENCH_BASE))

bench-predict: $(STAMP) ## predict: the model's time vs writing its outputs (before / PredictionWriter / writer thread)
	$(PY) -m experiments.bench.predict

bench-threads: $(STAMP) ## torch threads 1 vs 2 (active vs passive OpenMP wait), other core idle and busy
	$(PY) -m experiments.bench.threads

bench-train: $(STAMP) $(SYNTH_DIR)/SYNTHETIC.txt ## whole `train` of the study's default (steps/s) vs the bare loop, ratio; --help start-up; BENCH_BASE=checkout: before/after
	$(PY) -m experiments.bench.train --epochs $(BENCH_EPOCHS) --repeats $(BENCH_REPEATS) $(if $(BENCH_BASE),--base $(BENCH_BASE))

bench-gpu: $(STAMP) ## full-size FLUX DiT + LoRA r64 step time, memory, MFU (needs a GPU)
	$(PY) -m experiments.bench.gpu

clean: ## DELETES runs/ (trained runs included), results/ and generated synthetic data (keeps .venv)
	rm -rf runs results $(SYNTH_DIR)
