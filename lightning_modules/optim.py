"""Optimizer and learning-rate schedule, built late (in `configure_optimizers`) from config."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class OptimConfig:
    """AdamW over the trainable parameters (LoRA adapters or the full DiT); FE2E: lr 1e-4, constant."""

    lr: float = 1e-4
    """Peak learning rate."""
    weight_decay: float = 1e-2
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many optimizer steps."""
    schedule: str = "constant"
    """After warm-up: 'constant', 'cosine' or 'linear' (both decay to 0 at the last step; linear is
    diffusers' get_scheduler("linear"), MERGE's recipe)."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got '{self.schedule}'")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"lr must be > 0 and warmup_steps >= 0, got lr={self.lr}, warmup_steps={self.warmup_steps}")


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        span = max(1, total_steps - cfg.warmup_steps)
        return max(0.0, 1.0 - (step - cfg.warmup_steps) / span)
    return 1.0


def build_optimizer(params, cfg: OptimConfig, total_steps: float):
    """Lightning's optimizer dict: AdamW + a per-step LambdaLR."""
    total = int(total_steps) if math.isfinite(total_steps) else 0
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
