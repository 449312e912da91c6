"""The experiment schema: every component's config dataclass composed into one validated tree.

Config flows one way: YAML (experiments/configs/...) -> `ExperimentConfig` -> constructor arguments.
Each component owns its dataclass (fields documented where they are defined); this file only
composes them and adds the run and trainer settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from datamodules.geometry_datamodule import DataConfig
from experiments.config_loading import ConfigError, load_config
from experiments.scoring import EvalConfig
from lightning_modules.backbones import PRESETS
from lightning_modules.backbones.config import BackboneConfig
from lightning_modules.choices import check_choices
from lightning_modules.encoding import Quantization
from lightning_modules.merge import MergeConfig
from lightning_modules.objectives import ObjectiveConfig
from lightning_modules.objectives.genpercept import GenPerceptConfig
from lightning_modules.optim import OptimConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
Method = Literal["fe2e", "t2i", "genpercept", "merge"]
"""Every method's module is in experiments.runner.METHOD_MODULES; a method with its own config
section (METHOD_SECTIONS there) receives it as a constructor argument of the same name."""
METHODS = get_args(Method)
METHOD_PRIOR = {"fe2e": True, "t2i": False}
"""Methods whose name says which prior they fine-tune (True = an editor, False = a generator): FE2E
and the T2I baseline run one module and recipe, and differ only in the backbone. Whether a backbone IS
an editor is its preset's `is_editor` (lightning_modules.backbones.PRESETS); `check_method_prior`
holds the name to it. genpercept takes either prior; merge checks its own presets (merge.MERGE_PRESETS)."""


def check_method_prior(method: str, backbone_name: str) -> None:
    """ValueError naming both keys when `method` (fe2e / t2i) names a prior the backbone preset is not:
    a run labelled fe2e on a generator would put a T2I result in FE2E's row of every table."""
    if method not in METHOD_PRIOR or PRESETS[backbone_name].is_editor == METHOD_PRIOR[method]:
        return
    need, have, other = ("an editor", "a generator", "t2i") if METHOD_PRIOR[method] else ("a generator", "an editor", "fe2e")
    raise ValueError(f"method={method} needs {need} backbone, but backbone.name={backbone_name!r} is {have} "
                     f"(its preset); choose {need} backbone or method={other}")


def check_path_component(key: str, value: str) -> None:
    """Raise ValueError unless `value` is one plain folder name (no separator, not '', '.' or '..')."""
    if not isinstance(value, str) or value in ("", ".", "..") or any(c in value for c in "/\\\0") \
            or value != value.strip():
        raise ValueError(f"{key}={value!r}: expected one plain folder name (no '/', not empty, '.' or '..', "
                         "no leading/trailing spaces)")


@dataclass
class TrainerConfig:
    """Lightning Trainer settings (one-to-one with `lightning.Trainer` arguments)."""

    accelerator: str = "auto"
    """'auto', 'cpu' or 'gpu'."""
    devices: int = 1
    """Processes (GPUs) per node."""
    num_nodes: int = 1
    """Machines; with SLURM or torchrun Lightning reads ranks from the environment."""
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = "auto"
    """'auto', 'ddp', 'ddp_spawn' or 'fsdp' (FSDP wraps each transformer block of the backbone)."""
    precision: str = "32-true"
    """Trainer precision. Keep 32-true: the backbone already runs its frozen DiT in bf16 under
    autocast while the VAE stays float32 (SPEC section 2)."""
    max_epochs: int = 30
    """FE2E trains 30 epochs."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = no limit)."""
    limit_train_batches: float | None = None
    """Fraction (<=1.0) or count (>1) of training batches per epoch; None = all."""
    limit_val_batches: float | None = None
    """Fraction or count of batches per validation dataloader; None = all."""
    val_check_interval: float | None = None
    """Validate every this many training batches (int-valued) or fraction of an epoch."""
    check_val_every_n_epoch: int | None = 1
    """Validate every n epochs (None with an integer val_check_interval = by steps only)."""
    num_sanity_val_steps: int = 0
    """Validation batches run before training as a smoke check."""
    log_every_n_steps: int = 10
    """Training scalars are written every this many steps."""
    checkpoint_every_n_steps: int | None = 100
    """Also refresh checkpoints/last.ckpt every this many optimizer steps (None = only at epoch ends),
    so a crash loses minutes of training rather than an epoch; `resume=last` continues from it."""
    accumulate_grad_batches: int = 1
    """Gradient accumulation."""
    gradient_clip_val: float | None = 1.0
    """Clip the gradient norm (None = off)."""
    enable_progress_bar: bool = True
    """Show progress bars."""
    deterministic: bool = False
    """torch deterministic algorithms (slower)."""

    def __post_init__(self) -> None:
        check_choices(self, "trainer")
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError(f"devices and num_nodes must be >= 1, got {self.devices}, {self.num_nodes}")
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise ValueError(f"checkpoint_every_n_steps must be >= 1 or null, got {self.checkpoint_every_n_steps}")


@dataclass
class FeatureProbeConfig:
    """Block feature maps saved during training for the paper's feature figure."""

    blocks: list[str] = field(default_factory=list)
    """Block names (e.g. [double.1, single.1, single.16]); empty = off."""
    every_n_epochs: int = 1
    """Probe at the end of the first epoch, every n-th epoch, and the last epoch."""


@dataclass
class ExperimentConfig:
    """One training / evaluation run."""

    experiment: str = "default"
    """Experiment name: runs go to {runs_dir}/{experiment}/{run}/ (one plain folder name)."""
    run: str = "run"
    """Run name within the experiment (e.g. editor, generator, row7): one plain folder name."""
    runs_dir: str = "runs"
    """Root of the run folders."""
    method: Method = "fe2e"
    """'fe2e' (an editor backbone) or 't2i' (a generator backbone): one module (FE2EModule), the name
    says which prior and is checked against the backbone preset (METHOD_PRIOR),
    'genpercept' (any sequence-conditioned backbone; GenPerceptModule, configured by `genpercept`) or
    'merge' (frozen FLUX generator + converters; MergeModule, configured by `merge`)."""
    quantization: Quantization = "log"
    """Depth target encoding: 'direct', 'inverse' or 'log' (SPEC section 4; FE2E uses log)."""
    seed: int = 0
    """The run's one seed, on every rank: it seeds Lightning's `seed_everything` (global RNGs: LoRA
    and head initialisation), the objective's per-step noise, and, unless they are set explicitly,
    `data.seed` (batch mixing order and flips) and `backbone.seed` (random initialisation of tiny
    presets, random_init and MERGE's converters). Those two default to null = "this seed"; an explicit
    value wins. The resolved config.yaml of a run holds all three numbers, so `seed=3` alone and
    `seed=3 data.seed=3 backbone.seed=3` are the same run."""
    resume: str | None = None
    """'last' (this run's checkpoints/last.ckpt) or a checkpoint path; None = start fresh."""
    existing_run: Literal["refuse", "keep", "retrain"] = "refuse"
    """What `train` does when the run folder already holds a run (and resume is not set):
    'refuse' (error; the default by hand), 'keep' (what Make passes: a finished run whose resolved
    config is unchanged is kept, an unfinished one resumes from checkpoints/last.ckpt, a changed
    config retrains) or 'retrain' (Make's FORCE=1). Retraining first MOVES the old run aside to
    `{run}.replaced-{timestamp}` beside it; nothing is deleted."""
    overwrite: bool = False
    """Old spelling of existing_run=retrain (the old run is moved aside, never deleted)."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """Flow-matching objective of fe2e / t2i (not used by genpercept)."""
    genpercept: GenPerceptConfig = field(default_factory=GenPerceptConfig)
    """GenPercept's forward, head and losses (method 'genpercept' only)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    features: FeatureProbeConfig = field(default_factory=FeatureProbeConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)

    def __post_init__(self) -> None:
        check_path_component("experiment", self.experiment)
        check_path_component("run", self.run)
        check_choices(self, "")
        check_method_prior(self.method, self.backbone.name)
        if self.data.seed is None:  # "inherit": one seed drives data order, init and noise
            self.data.seed = self.seed
        if self.backbone.seed is None:
            self.backbone.seed = self.seed

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.experiment / self.run


def _check_data(data: DataConfig) -> None:
    """Ranges of the loader settings a user is likely to mistype (ValueError naming the key)."""
    if data.batch_size < 1:
        raise ValueError(f"data.batch_size={data.batch_size}: expected >= 1 samples per batch and device")
    for key in ("hypersim_probability", "vkitti_probability", "hflip_prob"):
        value = getattr(data, key)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"data.{key}={value}: expected a probability in [0, 1]")
    if data.num_workers < 0 or data.eval_num_workers < 0:
        raise ValueError(f"data.num_workers={data.num_workers}, data.eval_num_workers={data.eval_num_workers}: "
                         "expected >= 0")
    if data.sample_cache_mb < 0 or data.latent_cache_mb < 0:
        raise ValueError(f"data.sample_cache_mb={data.sample_cache_mb}, data.latent_cache_mb={data.latent_cache_mb}: "
                         "expected >= 0 MiB (0 = off)")
    if data.batches_per_epoch is not None and data.batches_per_epoch < 1:
        raise ValueError(f"data.batches_per_epoch={data.batches_per_epoch}: expected >= 1 or null")


def _validate_components(cfg: ExperimentConfig) -> None:
    """Run the `validate()` hooks of components that validate outside __post_init__."""
    try:
        _check_data(cfg.data)
    except ValueError as err:
        raise ConfigError(f"config section 'data': {err}") from None
    for section in ("backbone", "objective", "data", "evaluation"):
        component = getattr(cfg, section)
        validate = getattr(component, "validate", None)
        if validate is None:
            continue
        try:
            validate()
        except ValueError as err:
            raise ConfigError(f"config section '{section}': {err}") from None


RETIRED_KEYS = {
    "backbone.connector_time_scale": "Step1X-Edit's text connector always embeds sigma * 1000, inside its "
    "forward, in training and inference alike, as Step1X-Edit's and FE2E's released code do (SPEC section 1)",
    "evaluation.output_dir": "evaluate writes into the run folder it scores (experiments.scoring.BenchmarkScorer "
    "gets it from the run)",
}
"""Keys older run folders may hold in config.yaml, and why they went (dropped with a warning)."""


def load_experiment(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The validated experiment config from YAML files and key=value overrides (ConfigError if bad)."""
    cfg = load_config(ExperimentConfig, files, overrides, retired=RETIRED_KEYS)
    _validate_components(cfg)
    return cfg
