"""ObjectiveConfig: the training-objective ablation axes of SPEC section 3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from lightning_modules.choices import check_choices

ObjectiveKind = Literal["direct_adapt", "consistent_velocity"]
SigmaSampling = Literal["uniform", "logit_normal", "shifted"]
KINDS = get_args(ObjectiveKind)
SIGMA_SAMPLINGS = get_args(SigmaSampling)


@dataclass
class ObjectiveConfig:
    """Which flow-matching objective trains the DiT, and its auxiliary terms."""

    kind: ObjectiveKind = "consistent_velocity"
    """'direct_adapt' (the editor's own loss: random sigma, Euler over `num_inference_steps`) or
    'consistent_velocity' (CV: sigma fixed to 1, one Euler step)."""
    fixed_start: bool = True
    """FS: start from zeros instead of noise (input target = 0, target velocity = -z_D, inference
    z_D = -f). Requires kind 'consistent_velocity'. CV + FS is FE2E."""
    joint_estimation: bool = False
    """JE: supervise the image-token outputs with the normal latent (+z_N, no sign flip). Needs a
    backbone with image tokens (sequence concatenation)."""
    sigma_sampling: SigmaSampling = "uniform"
    """How direct_adapt draws sigma per sample: 'uniform' U(0,1), 'logit_normal'
    u = sigmoid(N(logit_mean, logit_std)), or 'shifted' (Step1X-Edit's recipe) that u then
    shift*u / (1 + (shift-1)*u). Ignored by consistent_velocity (sigma = 1)."""
    shift: float = 3.1582
    """Schedule shift of 'shifted' (exp(1.15), Step1X-Edit's value at 1024x1024)."""
    logit_mean: float = 0.0
    """Mean of the normal variable of 'logit_normal' and 'shifted'."""
    logit_std: float = 1.0
    """Standard deviation of the normal variable of 'logit_normal' and 'shifted'."""
    num_inference_steps: int = 28
    """Euler steps of direct_adapt inference; CV always takes one."""
    inference_shift: float | None = None
    """Shift of the direct_adapt inference sigmas shift*t / (1 + (shift-1)*t), t = linspace(1, 0, N+1).
    None (default) = FLUX's resolution-dependent shift e^mu, mu = 0.5 + 0.65 (L - 256) / 3840 for
    L target tokens, as FE2E's released sampler (SPEC section 3); a number fixes it (1 = linear)."""
    dispersive_weight: float = 0.5
    """lambda of the dispersive loss (DL); 0 turns it off. Total = L_fm + lambda * L_disp."""
    dispersive_block: str = "single.9"
    """Backbone block (a name from `block_names()`) whose output the dispersive loss spreads."""
    dispersive_tau: float = 1.0
    """Temperature tau of the dispersive loss (> 0)."""
    dispersive_across_ranks: bool = True
    """Under DDP/FSDP, compute the dispersive loss on the GLOBAL batch (block features gathered over
    all processes, with gradients), so it equals the single-process loss on that batch; False = per
    process (then exactly 0 with one sample per GPU)."""
    latent_mask: bool = False
    """Marigold-style loss mask: average the MSE only over latent cells whose 8x8 pixels are all
    valid (the complement of the 8x8-max-pooled invalid mask, given as latents['latent_valid']).
    FE2E does not mask (default)."""

    def __post_init__(self) -> None:
        check_choices(self, "objective")
        if self.fixed_start and self.kind != "consistent_velocity":
            raise ValueError("objective.fixed_start=True requires objective.kind='consistent_velocity' "
                             f"(got kind={self.kind!r})")
        if int(self.num_inference_steps) < 1:
            raise ValueError(f"objective.num_inference_steps: expected >= 1, got {self.num_inference_steps}")
        if self.shift <= 0 or (self.inference_shift is not None and self.inference_shift <= 0):
            raise ValueError(f"objective.shift / objective.inference_shift: expected > 0, "
                             f"got {self.shift} / {self.inference_shift}")
        if self.logit_std <= 0:
            raise ValueError(f"objective.logit_std: expected > 0, got {self.logit_std}")
        if self.dispersive_weight < 0:
            raise ValueError(f"objective.dispersive_weight: expected >= 0, got {self.dispersive_weight}")
        if self.dispersive_tau <= 0:
            raise ValueError(f"objective.dispersive_tau: expected > 0, got {self.dispersive_tau}")
