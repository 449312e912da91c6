"""Training objectives of the FE2E study (SPEC section 3): flow matching, consistent velocity
(+ fixed start), joint estimation and the dispersive loss. GenPercept's one-step objective and its
pixel-space losses (SPEC section 9) are in `genpercept.py` and `pixel_losses.py`."""

from lightning_modules.objectives.config import KINDS, SIGMA_SAMPLINGS, ObjectiveConfig
from lightning_modules.objectives.dispersive import dispersive_loss
from lightning_modules.objectives.flow import Objective, build_objective, masked_mse
from lightning_modules.objectives.sampling import (
    inference_sigmas,
    sample_sigma,
    shift_sigma,
)

__all__ = [
    "KINDS",
    "SIGMA_SAMPLINGS",
    "Objective",
    "ObjectiveConfig",
    "build_objective",
    "dispersive_loss",
    "inference_sigmas",
    "masked_mse",
    "sample_sigma",
    "shift_sigma",
]
