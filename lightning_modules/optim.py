"""Optimizer and learning-rate schedule, built late (in `configure_optimizers`) from config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from lightning_modules.choices import check_choices

OptimizerName = Literal["adamw", "adam"]
Schedule = Literal["constant", "cosine", "linear", "exponential"]
LR_TAG = "train/lr"
"""Name of the scheduler, so LearningRateMonitor logs the learning rate under this TensorBoard tag."""


@dataclass
class OptimConfig:
    """Optimizer over the trainable parameters (LoRA adapters, the full DiT, heads); FE2E: AdamW, lr 1e-4,
    constant. GenPercept: Adam 3e-5, warm-up 100, exponential decay to 0.01x at 25K steps."""

    optimizer: OptimizerName = "adamw"
    """'adamw' (decoupled weight decay) or 'adam' (torch.optim.Adam; weight_decay is an L2 term there)."""
    lr: float = 1e-4
    """Peak learning rate."""
    weight_decay: float = 1e-2
    """Weight decay (decoupled for AdamW, L2 for Adam)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam(W) betas."""
    eps: float = 1e-8
    """Adam(W) epsilon."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many optimizer steps (factor (step + 1) / warmup_steps)."""
    schedule: Schedule = "constant"
    """After warm-up: 'constant'; 'cosine' (to 0 at the last step); 'linear' (to 0 at the last step);
    'exponential' (factor final_ratio ** ((step - warmup) / (decay_steps - warmup)), then held at
    final_ratio: Marigold's / GenPercept's IterExponential)."""
    final_ratio: float = 0.01
    """'exponential' only: the factor reached at `decay_steps`."""
    decay_steps: int = 0
    """'exponential' only: the optimizer step at which the factor reaches final_ratio; 0 = the run's
    last step (the estimated total)."""

    def __post_init__(self) -> None:
        check_choices(self, "optim")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"lr must be > 0 and warmup_steps >= 0, got lr={self.lr}, warmup_steps={self.warmup_steps}")
        if not 0 < self.final_ratio <= 1 or self.decay_steps < 0:
            raise ValueError(f"optim.final_ratio must be in (0, 1] and optim.decay_steps >= 0, got "
                             f"final_ratio={self.final_ratio}, decay_steps={self.decay_steps}")


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based); total_steps = the run's length (0 = unknown)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule in ("cosine", "linear"):
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0 - progress
    if cfg.schedule == "exponential":
        end = cfg.decay_steps or total_steps
        if step >= end:
            return cfg.final_ratio
        span = max(1, end - cfg.warmup_steps)
        return math.exp((step - cfg.warmup_steps) / span * math.log(cfg.final_ratio))
    return 1.0


def build_optimizer(params, cfg: OptimConfig, total_steps: float):
    """Lightning's optimizer dict: Adam(W) + a per-step LambdaLR, named `train/lr` (the tag under which
    Lightning's LearningRateMonitor, added by the experiment runner, logs the learning rate)."""
    total = int(total_steps) if math.isfinite(total_steps) else 0
    if cfg.schedule == "exponential" and not cfg.decay_steps and total <= 0:
        raise ValueError("optim.schedule='exponential' with optim.decay_steps=0 needs a known run length "
                         "(trainer.max_steps or max_epochs); set optim.decay_steps")
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": LR_TAG}}
