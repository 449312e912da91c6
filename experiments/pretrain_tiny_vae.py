"""Pretrain the tiny FLUX-family VAE on procedural scenes, so the CPU default can decode geometry.

    python -m experiments.pretrain_tiny_vae --out lightning_modules/backbones/assets

The randomly initialised AutoencoderKL(**TINY_VAE_CONFIG) of the tiny presets cannot reproduce its
input, so whatever the DiT predicts in latent space decodes to noise. This script trains it briefly
(seeded, one CPU thread, a few minutes) on the three kinds of image the VAE has to carry (SPEC
sections 2, 4, 5): the RGB input in [-1, 1], the log-quantised depth target (3 equal channels in
[-1, 1]) and the encoded normal target (x, y, z in [-1, 1]). Scenes come from
`datamodules.synthetic.render` at the training sizes of the embedded default (Hypersim-like rooms
at 96x128, tone-mapped like Hypersim; Virtual-KITTI-like roads at 96x320, sRGB-like with a random
lighting gain), rendered at 2x and resized like the readers do. Loss: L1 reconstruction of a
posterior sample plus a small KL. Afterwards the latent mean/std of the posterior modes over the
training set set `shift_factor` / `scaling_factor`, so that FluxBackbone's normalised latents
(z - shift) * scale have zero mean and unit std.

Writes {out}/tiny_flux_vae.safetensors (float16 weights) and {out}/tiny_flux_vae.json (config,
seed, steps, data, timings, measured round-trip errors on held-out scenes).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.hypersim import tone_map
from datamodules.synthetic.render import render_scene
from datamodules.transforms import resize
from lightning_modules.encoding import encode_normals, quantize_depth

logger = logging.getLogger(__name__)

KINDS = ("rgb", "depth", "normal")
SIZES = {"room": (96, 128), "road": (96, 320)}
"""(H, W) of each scene kind: data/synthetic.yaml's Hypersim and Virtual KITTI training sizes."""
ROAD_MAX_DEPTH = 80.0
"""Virtual KITTI's valid depth range upper end (metres); the sky has no depth."""
HELD_OUT_SEED = 10_000
"""Scene seeds of the evaluation set start here (training scenes use seed*1000 + i, seed < 10)."""


def render_sample(kind: str, seed: int) -> dict[str, torch.Tensor]:
    """One procedural scene as the three VAE inputs: {'rgb', 'depth', 'normal'} (3,H,W) float32 in
    [-1, 1] at SIZES[kind], plus 'valid' (1,H,W) bool (pixels with depth) and 'known' (1,H,W) bool
    (pixels with a normal). Rendered at 2x and resized with `datamodules.transforms.resize`."""
    h, w = SIZES[kind]
    view = render_scene(kind, 2 * h, 2 * w, seed=seed)
    valid = np.isfinite(view.depth)
    if kind == "road":
        valid &= np.nan_to_num(view.depth, nan=np.inf) <= ROAD_MAX_DEPTH
        gain = np.random.default_rng(seed).uniform(0.5, 1.15, 3).astype(np.float32)
        rgb01 = np.clip(view.rgb_linear * gain / 2.5, 0.0, 1.0) ** (1 / 2.2)
    else:
        rgb01 = tone_map(view.rgb_linear, valid)
    sample = {"rgb": torch.from_numpy(np.ascontiguousarray(rgb01.transpose(2, 0, 1))) * 2 - 1,
              "depth": torch.from_numpy(np.nan_to_num(view.depth, nan=0.0))[None],
              "valid_mask": torch.from_numpy(valid)[None],
              "normal": torch.from_numpy(np.ascontiguousarray(view.normal.transpose(2, 0, 1))),
              "intrinsics": torch.from_numpy(view.K).float()}
    s = resize(sample, h, w)
    return {"rgb": s["rgb"].clamp(-1, 1),
            "depth": quantize_depth(s["depth"][None], s["valid_mask"][None], "log")[0],
            "normal": encode_normals(s["normal"][None])[0],
            "valid": s["valid_mask"], "known": s["normal"].abs().sum(0, keepdim=True) > 0}


def render_set(n_room: int, n_road: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """n_room rooms then n_road roads; scene seeds seed*1000 + i (rooms) and seed*1000 + 500 + i (roads)."""
    rooms = [render_sample("room", seed * 1000 + i) for i in range(n_room)]
    return rooms + [render_sample("road", seed * 1000 + 500 + i) for i in range(n_road)]


def random_batch(data: list[dict], batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, 3, crop, crop) random crops of random images, each of a random kind (rgb/depth/normal)."""
    out = []
    for _ in range(batch):
        item = data[int(torch.randint(len(data), (1,), generator=gen))]
        img = item[KINDS[int(torch.randint(3, (1,), generator=gen))]]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        out.append(img[:, top:top + crop, left:left + crop])
    return torch.stack(out)


def train(vae, data: list[dict], steps: int, batch: int, crop: int, lr: float, kl_weight: float,
          seed: int, log_every: int = 100) -> list[float]:
    """Adam with a cosine learning-rate decay to 0; loss = mean |x - D(z)| + kl_weight * mean KL per
    latent element, z a posterior sample. Returns the per-log_every mean losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    vae.train()
    history, running = [], 0.0
    for step in range(steps):
        x = random_batch(data, batch, crop, gen)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        kl = 0.5 * (post.mean.square() + post.var - 1.0 - post.logvar).mean()
        loss = (rec - x).abs().mean() + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % log_every == 0:
            history.append(running / log_every)
            logger.info("step %d/%d loss %.4f", step + 1, steps, history[-1])
            running = 0.0
    vae.eval()
    return history


@torch.no_grad()
def latent_stats(vae, data: list[dict]) -> tuple[float, float]:
    """Mean and std (population) of the posterior modes of every image of every kind in `data`."""
    zs = [vae.encode(item[k][None]).latent_dist.mode().flatten() for item in data for k in KINDS]
    z = torch.cat(zs).double()
    return float(z.mean()), float(z.std(unbiased=False))


@torch.no_grad()
def round_trip_errors(vae, data: list[dict]) -> dict[str, float]:
    """Posterior-mode round trip D(E(x)) of each kind, decoded clamped to [-1, 1]:
    depth_mae = mean |error| over valid pixels of the encoded depth ([-1, 1] units, channel mean);
    normal_deg = mean angle (degrees) between the L2-normalised decoded and true normals on known
    pixels; rgb_psnr = PSNR (dB) over all images with peak-to-peak 2 (the [-1, 1] range)."""
    d_err, d_n, ang, a_n, sq, sq_n = 0.0, 0, 0.0, 0, 0.0, 0
    for item in data:
        rec = {k: vae.decode(vae.encode(item[k][None]).latent_dist.mode()).sample[0].clamp(-1, 1) for k in KINDS}
        v, kn = item["valid"][0], item["known"][0]
        d_err += float((rec["depth"].mean(0) - item["depth"][0])[v].abs().sum())
        d_n += int(v.sum())
        n = F.normalize(rec["normal"], dim=0, eps=1e-6)
        cos = (n * item["normal"]).sum(0).clamp(-1, 1)[kn]
        ang += float(torch.rad2deg(torch.acos(cos)).sum())
        a_n += int(kn.sum())
        sq += float((rec["rgb"] - item["rgb"]).square().sum())
        sq_n += item["rgb"].numel()
    return {"depth_mae": d_err / max(d_n, 1), "normal_deg": ang / max(a_n, 1),
            "rgb_psnr": 10 * math.log10(4.0 / (sq / sq_n))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for tiny_flux_vae.safetensors and tiny_flux_vae.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=1e-5)
    p.add_argument("--rooms", type=int, default=160)
    p.add_argument("--roads", type=int, default=80)
    p.add_argument("--eval-scenes", type=int, default=16, help="held-out rooms and as many roads")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    from lightning_modules.backbones.tiny import tiny_flux_vae

    t0 = time.perf_counter()
    data = render_set(args.rooms, args.roads, args.seed)
    held_out = render_set(args.eval_scenes, args.eval_scenes, HELD_OUT_SEED // 1000 + args.seed)
    t_data = time.perf_counter() - t0
    logger.info("rendered %d training and %d held-out scenes in %.1f s", len(data), len(held_out), t_data)
    vae = tiny_flux_vae(args.seed, pretrained=False)
    before = round_trip_errors(vae, held_out)
    torch.manual_seed(args.seed)
    history = train(vae, data, args.steps, args.batch, args.crop, args.lr, args.kl_weight, args.seed)
    t_train = time.perf_counter() - t0 - t_data
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    vae.load_state_dict({k: v.float() for k, v in state.items()})  # measure what is shipped
    mean, std = latent_stats(vae, data)
    after = round_trip_errors(vae, held_out)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "tiny_flux_vae.safetensors"))
    record = {
        "what": "AutoencoderKL(**TINY_VAE_CONFIG) pretrained on procedural scenes (NOT real data)",
        "command": "python -m experiments.pretrain_tiny_vae " + " ".join(sys.argv[1:] if argv is None else argv),
        "shift_factor": round(mean, 4), "scaling_factor": round(1.0 / std, 4),
        "raw_latent_mean": mean, "raw_latent_std": std,
        "train": {k: getattr(args, k) for k in ("seed", "steps", "batch", "crop", "lr", "kl_weight")},
        "data": {"rooms": args.rooms, "roads": args.roads, "sizes": SIZES, "kinds": list(KINDS),
                 "scene_seeds": "seed*1000 + i (rooms), seed*1000 + 500 + i (roads)",
                 "held_out": f"{args.eval_scenes} rooms + {args.eval_scenes} roads, scene seeds from "
                             f"{(HELD_OUT_SEED // 1000 + args.seed) * 1000}"},
        "held_out_round_trip": {"random_init": before, "pretrained": after},
        "loss_every_100_steps": [round(v, 4) for v in history],
        "seconds": {"render": round(t_data, 1), "train": round(t_train, 1)},
        "torch": torch.__version__, "weights_dtype": "float16",
    }
    (out / "tiny_flux_vae.json").write_text(json.dumps(record, indent=1) + "\n")
    logger.info("latent mean %.4f std %.4f; held-out round trip before %s after %s", mean, std, before, after)
    return record


if __name__ == "__main__":
    main()
