"""The miniature prior's model: the mini FLUX DiT plus a condition embedder standing in for text.

`dit_velocity` feeds the transformer exactly as `FluxBackbone` does during fine-tuning (packed 2x2
tokens, frame-0 position ids for target AND source tokens as Step1X-Edit, zero text ids, timestep
sigma, no guidance), so what pretraining teaches is what fine-tuning starts from.
"""

from __future__ import annotations

import torch
from torch import nn

from experiments.priors.scenes import FIELDS, NULL
from lightning_modules.backbones import tokens
from lightning_modules.backbones.tiny import MINI_FLUX_CONFIG


class ConditionEmbedder(nn.Module):
    """Condition ids (B, len(FIELDS)) -> "text" tokens (B, len(FIELDS), D) and pooled (B, P).

    One embedding table per field (its last id = null) plus a per-field position vector; pooled =
    Linear(mean of the tokens). The all-null condition is the miniature "empty prompt".
    """

    def __init__(self, dim: int, pooled_dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size + 1, dim) for size in FIELDS.values())
        self.position = nn.Parameter(torch.zeros(len(FIELDS), dim))
        self.pooled = nn.Linear(dim, pooled_dim)
        for table in self.tables:
            nn.init.normal_(table.weight, std=1.0)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tok = torch.stack([table(ids[:, i]) for i, table in enumerate(self.tables)], dim=1) + self.position
        return tok, self.pooled(tok.mean(dim=1))

    def null_ids(self, batch: int = 1) -> torch.Tensor:
        return torch.tensor([[NULL[name] for name in FIELDS]] * batch, dtype=torch.int64)


def build_prior(seed: int) -> tuple[nn.Module, ConditionEmbedder]:
    """(FluxTransformer2DModel(**MINI_FLUX_CONFIG), ConditionEmbedder), float32, seeded."""
    from diffusers import FluxTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(**MINI_FLUX_CONFIG)
        cond = ConditionEmbedder(MINI_FLUX_CONFIG["joint_attention_dim"], MINI_FLUX_CONFIG["pooled_projection_dim"])
    return transformer, cond


def dit_velocity(transformer: nn.Module, target: torch.Tensor, source: torch.Tensor | None, sigma: torch.Tensor,
                 text: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """The transformer's output at the target tokens, (B, 16, h, w).

    target, source: (B, 16, h, w) latents (source None for generation: target tokens only);
    sigma (B,) in [0, 1]; text (B, T, D), pooled (B, P) from `ConditionEmbedder`.
    """
    b, _, h, w = target.shape
    ids = tokens.position_ids(h, w, 0.0, target.device)
    hidden = tokens.pack(target)
    if source is not None:
        hidden = torch.cat([hidden, tokens.pack(source)], dim=1)
        ids = torch.cat([ids, ids], dim=0)
    txt_ids = torch.zeros(text.shape[1], 3, device=target.device)
    out = transformer(hidden_states=hidden, encoder_hidden_states=text, pooled_projections=pooled,
                      timestep=sigma.float(), img_ids=ids, txt_ids=txt_ids, return_dict=False)[0]
    return tokens.unpack(out[:, : (h // 2) * (w // 2)], h, w)
