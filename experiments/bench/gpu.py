"""GPU benchmark of the full-size FLUX/Step1X-Edit DiT: memory, step time, inference time, MFU.

    python -m experiments.bench.gpu [--height 768 --width 1024 --text-tokens 512 --rank 64 --peak-tflops 989]

Random weights (the architecture is what costs): built on the meta device, materialised on CUDA,
base in bfloat16, LoRA (rank 64, alpha 32, float32) on every block Linear, gradient checkpointing on,
one sample with sequence concatenation ([target ; image] = 2 x (H/16 * W/16) tokens + text tokens),
AdamW on the LoRA parameters, forward under bf16 autocast (as in training). Prints one JSON line.

FLOP formula (multiply-accumulate = 2 FLOPs; d = hidden 3072, L = text + image-stream tokens,
N = image-stream tokens, T = text tokens, r = LoRA rank, f = 4 MLP ratio):
- per double block: token linears 2 * L * (3d^2 qkv + d^2 out + 2 f d^2 mlp) = 24 d^2 L (each stream its
  own weights, same count); attention 4 L^2 d (QK^T and AV); modulation 2 * 2 * 6 d^2 (per sample).
- per single block: linear1 d -> (3 + f) d and linear2 (1 + f) d -> d: 2 L * 12 d^2 = 24 d^2 L;
  attention 4 L^2 d; modulation 2 * 3 d^2.
- outside blocks: x_embedder 2 N 64 d, context_embedder 2 T 4096 d, time/guidance/pooled-text MLPs,
  norm_out 2 * 2 d^2, proj_out 2 N d 64.
- LoRA: 2 r (in + out) per adapted Linear per token it sees (per sample for the modulation Linears).
Training step (checkpointing): base linears 3x forward (forward, recompute, input-gradient; frozen
weights need no weight gradient), attention 4x (forward, recompute, backward = 2x), LoRA 4x (forward,
recompute, input and weight gradients). Model FLOPs (MFU, no recompute) drop one forward of each.
The forward count is checked against torch's FlopCounterMode on a tiny config in the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass


@dataclass
class FluxDims:
    """Architecture numbers the FLOP formula needs (defaults: FLUX.1 / Step1X-Edit)."""

    hidden: int = 3072
    num_double: int = 19
    num_single: int = 38
    in_channels: int = 64
    text_dim: int = 4096
    pooled_dim: int = 768
    guidance: bool = False
    mlp_ratio: int = 4


def flux_forward_flops(dims: FluxDims, n_image: int, n_text: int, lora_rank: int = 0) -> dict[str, float]:
    """Forward FLOPs of one sample, split into base linears, attention and LoRA (see module docstring)."""
    d, f, L = dims.hidden, dims.mlp_ratio, n_image + n_text
    per_token = (3 + 1 + 2 * f) * d * d  # MACs of a token's linears in either block type
    mods = dims.num_double * 2 * 6 * d * d + dims.num_single * 3 * d * d
    linear = 2 * (dims.num_double + dims.num_single) * L * per_token + 2 * mods
    embed = n_image * dims.in_channels * d + n_text * dims.text_dim * d + (256 * d + d * d)
    embed += (256 * d + d * d) * dims.guidance + dims.pooled_dim * d + d * d
    embed += 2 * d * d + n_image * d * dims.in_channels  # norm_out linear, proj_out
    linear += 2 * embed
    attention = 4 * (dims.num_double + dims.num_single) * L * L * d
    lora = 0.0
    if lora_rank:
        # per token: q, k, v, out (d -> d each) + MLP up/down; modulation per sample (both streams)
        double = (3 * 2 * d + 2 * d + 2 * (f + 1) * d) * L + 2 * (d + 6 * d)
        single = (3 * 2 * d + (d + f * d) + ((1 + f) * d + d)) * L + (d + 3 * d)
        lora = 2 * lora_rank * (dims.num_double * double + dims.num_single * single)
    return {"linear": float(linear), "attention": float(attention), "lora": float(lora)}


def train_step_flops(fwd: dict[str, float], checkpointing: bool = True) -> tuple[float, float]:
    """(hardware FLOPs, model FLOPs) of a LoRA training step from the forward split."""
    model = 2 * fwd["linear"] + 3 * fwd["attention"] + 3 * fwd["lora"]
    extra = fwd["linear"] + fwd["attention"] + fwd["lora"] if checkpointing else 0.0
    return model + extra, model


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("experiments.bench.gpu needs a CUDA GPU (torch.cuda.is_available() is False)")
    result = run(args, torch)
    print(json.dumps(result))
    return result


def run(args, torch, device: str = "cuda", dit_config: dict | None = None) -> dict:
    """Build, time and measure; `device`/`dit_config` exist so the CPU tests can dry-run a tiny model."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from lightning_modules.backbones.flux import FLUX_DIT_CONFIG, FluxBackbone
    from lightning_modules.backbones.lora import apply_lora
    from lightning_modules.backbones.text import FixedText
    from lightning_modules.backbones.tiny import TINY_VAE_CONFIG

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    config = dit_config or FLUX_DIT_CONFIG
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**config, guidance_embeds=False)
    transformer.to_empty(device=dev)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            param.normal_(0, 0.02) if param.ndim > 1 else param.fill_(1.0 if "norm" in name else 0.0)
    torch.nn.Module.to(transformer, torch.bfloat16)
    T, D = args.text_tokens, config["joint_attention_dim"]
    pooled = torch.randn(config["pooled_projection_dim"])
    backbone = FluxBackbone(transformer, AutoencoderKL(**TINY_VAE_CONFIG), FixedText(torch.randn(T, D), pooled),
                            is_editor=True, dit_dtype=torch.bfloat16).to(dev)
    backbone.vae.requires_grad_(False)  # a tiny stand-in: the benchmark feeds latents directly
    with torch.device(dev):
        apply_lora(backbone, rank=args.rank, alpha=32)
    transformer.enable_gradient_checkpointing()
    params = [q for q in backbone.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    h, w = args.height // 8, args.width // 8
    image = torch.randn(1, 16, h, w, device=dev)
    goal = torch.randn(1, 16, h, w, device=dev)
    sigma = torch.ones(1, device=dev)

    def step():
        out = backbone(torch.zeros_like(image), image, sigma)
        loss = torch.nn.functional.mse_loss(out.target, goal) + torch.nn.functional.mse_loss(out.image, goal)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def infer():
        with torch.no_grad():
            backbone(torch.zeros_like(image), image, sigma)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step_s = _time(step, args.warmup, args.steps, torch, cuda)
    peak_train = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    infer_s = _time(infer, args.warmup, args.steps, torch, cuda)
    n_image = 2 * (h // 2) * (w // 2)
    dims = FluxDims(hidden=config["num_attention_heads"] * config["attention_head_dim"],
                    num_double=config["num_layers"], num_single=config["num_single_layers"],
                    in_channels=config["in_channels"], text_dim=D, pooled_dim=config["pooled_projection_dim"])
    fwd = flux_forward_flops(dims, n_image, T, args.rank)
    hw, model = train_step_flops(fwd)
    fwd_total = sum(fwd.values())
    peak = args.peak_tflops * 1e12
    return {"device": torch.cuda.get_device_name() if cuda else str(dev), "image_tokens": n_image, "text_tokens": T, "rank": args.rank,
            "trainable_params": sum(q.numel() for q in params), "peak_mem_train_gib": round(peak_train, 2),
            "train_step_s": round(step_s, 4), "infer_forward_s": round(infer_s, 4),
            "train_step_tflop_model": round(model / 1e12, 2), "train_step_tflop_hw": round(hw / 1e12, 2),
            "infer_tflop": round(fwd_total / 1e12, 2), "train_mfu": round(model / step_s / peak, 4),
            "train_hfu": round(hw / step_s / peak, 4), "infer_mfu": round(fwd_total / infer_s / peak, 4),
            "peak_tflops": args.peak_tflops}


def _time(fn, warmup: int, steps: int, torch, cuda: bool) -> float:
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - start) / steps


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
