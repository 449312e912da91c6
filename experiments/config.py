"""The experiment schema: every component's config dataclass composed into one validated tree.

Config flows one way: YAML (experiments/configs/...) -> `ExperimentConfig` -> constructor arguments.
Each component owns its dataclass (fields documented where they are defined); this file only
composes them and adds the run and trainer settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.geometry_datamodule import DataConfig
from experiments.config_loading import ConfigError, load_config
from lightning_modules.backbones.config import BackboneConfig
from lightning_modules.evaluation import EvalConfig
from lightning_modules.objectives import ObjectiveConfig
from lightning_modules.objectives.genpercept import GenPerceptConfig
from lightning_modules.optim import OptimConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
METHODS = ("fe2e", "t2i", "genpercept")
"""Every method's module is in experiments.runner.METHOD_MODULES; a method with its own config
section (METHOD_SECTIONS there) receives it as a constructor argument of the same name."""
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp")


@dataclass
class TrainerConfig:
    """Lightning Trainer settings (one-to-one with `lightning.Trainer` arguments)."""

    accelerator: str = "auto"
    """'auto', 'cpu' or 'gpu'."""
    devices: int = 1
    """Processes (GPUs) per node."""
    num_nodes: int = 1
    """Machines; with SLURM or torchrun Lightning reads ranks from the environment."""
    strategy: str = "auto"
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
    accumulate_grad_batches: int = 1
    """Gradient accumulation."""
    gradient_clip_val: float | None = 1.0
    """Clip the gradient norm (None = off)."""
    enable_progress_bar: bool = True
    """Show progress bars."""
    deterministic: bool = False
    """torch deterministic algorithms (slower)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got '{self.strategy}'")
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError(f"devices and num_nodes must be >= 1, got {self.devices}, {self.num_nodes}")


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
    """Experiment name: runs go to {runs_dir}/{experiment}/{run}/."""
    run: str = "run"
    """Run name within the experiment (e.g. editor, generator, row7)."""
    runs_dir: str = "runs"
    """Root of the run folders."""
    method: str = "fe2e"
    """'fe2e' (editor backbone; FE2EModule), 't2i' (generator backbone; T2IBaselineModule) or
    'genpercept' (any sequence-conditioned backbone; GenPerceptModule, configured by `genpercept`)."""
    quantization: str = "log"
    """Depth target encoding: 'direct', 'inverse' or 'log' (SPEC section 4; FE2E uses log)."""
    seed: int = 0
    """Seeds data order, initialisation and the per-step noise, on every rank."""
    resume: str | None = None
    """'last' (this run's checkpoints/last.ckpt) or a checkpoint path; None = start fresh."""
    overwrite: bool = False
    """Starting fresh in a run folder that already holds a run deletes it first; False refuses."""
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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got '{self.method}'")
        if self.quantization not in ("direct", "inverse", "log"):
            raise ValueError(f"quantization must be 'direct', 'inverse' or 'log', got '{self.quantization}'")

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.experiment / self.run


def _validate_components(cfg: ExperimentConfig) -> None:
    """Run the `validate()` hooks of components that validate outside __post_init__."""
    for section in ("backbone", "objective", "data", "evaluation"):
        component = getattr(cfg, section)
        validate = getattr(component, "validate", None)
        if validate is None:
            continue
        try:
            validate()
        except ValueError as err:
            raise ConfigError(f"config section '{section}': {err}") from None


def load_experiment(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The validated experiment config from YAML files and key=value overrides (ConfigError if bad)."""
    cfg = load_config(ExperimentConfig, files, overrides)
    _validate_components(cfg)
    return cfg
