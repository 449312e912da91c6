"""Learning-rate schedules and optimizer choice (hand-computed factors)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.optim import OptimConfig, build_optimizer, lr_factor


def test_exponential_schedule_genpercept_recipe():
    """GenPercept: warm-up 100, then final_ratio ** ((step - 100) / (25000 - 100)), held at 0.01 from 25000."""
    cfg = OptimConfig(optimizer="adam", lr=3e-5, warmup_steps=100, schedule="exponential", final_ratio=0.01,
                      decay_steps=25000)
    assert lr_factor(0, cfg, 30000) == pytest.approx(1 / 100)
    assert lr_factor(99, cfg, 30000) == pytest.approx(1.0)
    assert lr_factor(100, cfg, 30000) == pytest.approx(1.0)
    assert lr_factor(12550, cfg, 30000) == pytest.approx(0.1)  # halfway through the decay: sqrt(0.01)
    assert lr_factor(25000, cfg, 30000) == pytest.approx(0.01)
    assert lr_factor(29999, cfg, 30000) == pytest.approx(0.01)


def test_exponential_decay_steps_zero_means_the_run_length_and_needs_it():
    cfg = OptimConfig(schedule="exponential", final_ratio=0.25, decay_steps=0)
    assert lr_factor(50, cfg, 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, float("inf"))


def test_linear_schedule_and_adam():
    cfg = OptimConfig(optimizer="adam", lr=1e-3, warmup_steps=10, schedule="linear", weight_decay=0.0)
    assert [lr_factor(s, cfg, 110) for s in (9, 10, 60, 110)] == pytest.approx([1.0, 1.0, 0.5, 0.0])
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, 110)["optimizer"]
    assert type(opt) is torch.optim.Adam and math.isclose(opt.param_groups[0]["weight_decay"], 0.0)


def test_bad_optimizer_names_the_key():
    with pytest.raises(ValueError, match="optim.optimizer"):
        OptimConfig(optimizer="sgd")
