"""Step1X-Edit's text connector: Qwen2.5-VL states + mask + a timestep -> DiT text tokens and a pooled vector.

A port of the architecture (HunyuanVideo's single-token refiner plus a pooled projection), with the
parameter names of the released DiT file's `connector.*` keys so that state dict loads strictly.
For x (B, T, C) Qwen states, m (B, T) the valid-token mask and sigma (B,) the flow-matching time in
[0, 1], the connector's timestep is t = 1000 * sigma (the x1000 is inside the forward, as in
Step1X-Edit's and FE2E's released `connector_edit.py`; callers pass sigma, in training and inference):

    mean     = sum_j m_j x_j / sum_j m_j                                         (B, C)
    pooled   = global_proj_out(mean * (1 + scale_factor))                        (B, 768)
    c        = t_embedder(sinusoid(t)) + c_embedder(mean)                        (B, H)
    h        = input_embedder(x)                                                 (B, T, H)
    per block: g_attn, g_mlp = adaLN_modulation(c)        (SiLU, then Linear(H, 2H), split in halves)
               h = h + g_attn * self_attn_proj(attention(self_attn_qkv(norm1(h))))
               h = h + g_mlp * mlp.fc2(SiLU(mlp.fc1(norm2(h))))
    tokens   = h                                                                 (B, T, H)

sinusoid(t) = [cos(t f_k), sin(t f_k)] with f_k = 10000^(-k/128), k = 0..127; t is used as given.
Attention: token i may attend to token j when both are valid; key 0 is always allowed, so padding
rows are defined. LayerNorms have eps 1e-6 and affine weights; there is no qk-norm.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FREQUENCY_CHANNELS = 256
TIMESTEP_SCALE = 1000.0
"""The connector's timestep is sigma * this, inside its forward (Step1X-Edit, FE2E: `t = t * 1000`)."""


@dataclass(frozen=True)
class ConnectorConfig:
    """in_channels: Qwen state width (3584); hidden: token width (4096 = the DiT's joint_attention_dim);
    heads: attention heads (32); depth: refiner blocks (2); pooled: pooled width (768); mlp_ratio: 4."""

    in_channels: int = 3584
    hidden: int = 4096
    heads: int = 32
    depth: int = 2
    pooled: int = 768
    mlp_ratio: float = 4.0


class _TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_CHANNELS, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = FREQUENCY_CHANNELS // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1).to(self.mlp[0].weight.dtype))


class _RefinerBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        width = int(hidden * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attn_qkv = nn.Linear(hidden, 3 * hidden)
        self.self_attn_proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(hidden, width), act=nn.SiLU(), fc2=nn.Linear(width, hidden)))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, h: torch.Tensor, c: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        gate_attn, gate_mlp = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        b, n, _ = h.shape
        q, k, v = self.self_attn_qkv(self.norm1(h)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        h = h + gate_attn * self.self_attn_proj(attn.transpose(1, 2).reshape(b, n, -1))
        return h + gate_mlp * self.mlp(self.norm2(h))


class _Refiner(nn.Module):
    """The container named `S` in the released keys (input, timestep and context embedders, blocks)."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.input_embedder = nn.Linear(cfg.in_channels, cfg.hidden)
        self.t_embedder = _TimestepEmbedder(cfg.hidden)
        self.c_embedder = nn.Sequential(OrderedDict(linear_1=nn.Linear(cfg.in_channels, cfg.hidden), act_1=nn.SiLU(),
                                                    linear_2=nn.Linear(cfg.hidden, cfg.hidden)))
        self.individual_token_refiner = nn.Module()
        self.individual_token_refiner.blocks = nn.ModuleList(
            _RefinerBlock(cfg.hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))


class Step1XConnector(nn.Module):
    """The connector; `forward(states, mask, sigma) -> (tokens (B, T, hidden), pooled (B, pooled))`."""

    def __init__(self, cfg: ConnectorConfig = ConnectorConfig()):
        super().__init__()
        self.config = cfg
        self.S = _Refiner(cfg)
        self.global_proj_out = nn.Linear(cfg.in_channels, cfg.pooled)
        self.scale_factor = nn.Parameter(torch.zeros(1))

    def forward(self, states: torch.Tensor, mask: torch.Tensor, sigma: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, T, C); mask (B, T) bool or 0/1 (True = real token); sigma (B,) in [0, 1]
        (the timestep embedder sees sigma * 1000).

        Returns tokens (B, T, hidden) and pooled (B, pooled) in the parameters' dtype (or autocast's).
        """
        valid = mask.bool()
        weights = valid.to(states.dtype).unsqueeze(-1)
        mean = (states * weights).sum(1) / weights.sum(1)
        pooled = self.global_proj_out(mean * (1 + self.scale_factor.to(states.dtype)))
        c = self.S.t_embedder(sigma * TIMESTEP_SCALE) + self.S.c_embedder(mean)
        allowed = valid[:, None, :, None] & valid[:, None, None, :]
        allowed[..., 0] = True
        h = self.S.input_embedder(states)
        for block in self.S.individual_token_refiner.blocks:
            h = block(h, c, allowed)
        return h, pooled


def connector_config(state_dict: dict[str, torch.Tensor], head_dim: int = 128) -> ConnectorConfig:
    """ConnectorConfig read off a connector state dict (`connector.` prefix already removed).

    The head count is not in the weights: hidden / head_dim (4096 / 128 = 32 for Step1X-Edit).
    """
    hidden, in_channels = state_dict["S.input_embedder.weight"].shape
    prefix = "S.individual_token_refiner.blocks."
    depth = len({key[len(prefix):].split(".")[0] for key in state_dict if key.startswith(prefix)})
    width = state_dict[f"{prefix}0.mlp.fc1.weight"].shape[0]
    return ConnectorConfig(in_channels=in_channels, hidden=hidden, heads=max(1, hidden // head_dim), depth=depth,
                           pooled=state_dict["global_proj_out.weight"].shape[0], mlp_ratio=width / hidden)


def connector_from_state_dict(state_dict: dict[str, torch.Tensor], source: str = "state dict",
                              head_dim: int = 128) -> Step1XConnector:
    """Build the connector and load `state_dict` strictly; raises ValueError naming `source` on a mismatch."""
    try:
        cfg = connector_config(state_dict, head_dim)
    except KeyError as err:
        raise ValueError(f"{source}: not a Step1X-Edit connector state dict (missing {err})") from None
    with torch.device("meta"):
        connector = Step1XConnector(cfg)
    try:
        connector.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{source}: connector weights do not match {cfg}: {err}") from None
    return connector.requires_grad_(False).eval()
