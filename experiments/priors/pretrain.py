"""Pretraining of the miniature priors: data, flow-matching stages, the gate, weights + provenance.

Stages (one seed drives everything): stage 1 trains a class-conditioned generator from scratch;
from its weights, three continuations of equal length: more generation (the compute-matched
generator arm), edits (editor), edits without relight (editor-norelight). Each arm is gated on a
held-out set: its flow-matching loss must end at least `GATE_RATIO` below the loss of predicting
the training mean (v = noise - x0 predicted as -mean(x0)); otherwise "prior not formed".
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from experiments.priors.model import ConditionEmbedder, build_prior, dit_velocity
from experiments.priors.scenes import (
    EDITS,
    class_condition,
    condition_ids,
    encode_images,
    render_class_image,
    render_edit_pair,
    sample_scene,
)

log = logging.getLogger(__name__)

GATE_RATIO = 0.8
"""A prior is formed when its held-out loss <= GATE_RATIO x the mean predictor's (20% below)."""
ARMS = ("generator", "editor", "editor-norelight")
"""Shipped arms (the random arm needs no file)."""


@dataclass
class PriorPlan:
    """Everything that determines the shipped priors (recorded in their provenance)."""

    seed: int = 0
    height: int = 64
    width: int = 96
    num_scenes: int = 2048
    """Training scenes for generation, and training pairs for each edit set."""
    num_held_out: int = 128
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 100
    generator_steps: int = 2000
    """Stage 1: generation from scratch."""
    continue_steps: int = 1000
    """Each arm's continuation (generation, edits, edits without relight): compute-matched."""
    condition_dropout: float = 0.1
    """Generation: a sample's class is replaced by the null condition (the miniature empty prompt)."""
    identity_edits: float = 0.1
    """Edits: a pair is replaced by (source, source) under the null condition ("no edit")."""
    eval_sigmas: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    threads: int = 1
    """torch threads: results are bit-reproducible for a fixed count (1: also fastest on a shared machine)."""
    edits: dict[str, list[str]] = field(default_factory=lambda: {"editor": list(EDITS),
                                                                 "editor-norelight": [e for e in EDITS if e != "relight"]})


@dataclass
class LatentSet:
    """Normalised VAE latents of one task: targets (N,16,h,w), sources (N,16,h,w) or None, condition ids (N,F)."""

    target: torch.Tensor
    source: torch.Tensor | None
    ids: torch.Tensor

    def split(self, n: int) -> tuple[LatentSet, LatentSet]:
        """(first len - n, last n)."""
        cut = self.target.shape[0] - n
        src = (None, None) if self.source is None else (self.source[:cut], self.source[cut:])
        return (LatentSet(self.target[:cut], src[0], self.ids[:cut]), LatentSet(self.target[cut:], src[1], self.ids[cut:]))


def vae_codec():
    """(encode, decode) with the shipped pretrained tiny VAE: rgb (B,3,H,W) in [-1, 1] <-> normalised
    latents (B,16,H/8,W/8), the normalisation of the fine-tuning backbones."""
    from lightning_modules.backbones.tiny import tiny_flux_vae

    vae = tiny_flux_vae().eval()
    shift, scale = float(vae.config.shift_factor), float(vae.config.scaling_factor)
    return (lambda x: (vae.encode(x).latent_dist.mode() - shift) * scale,
            lambda z: vae.decode(z / scale + shift).sample)


def make_generation_set(plan: PriorPlan, encode, seed_offset: int = 0) -> LatentSet:
    rng = np.random.default_rng([plan.seed, 1, seed_offset])
    n = plan.num_scenes + plan.num_held_out
    scenes = [sample_scene(rng, plan.seed * 1_000_003 + i) for i in range(n)]
    images = [render_class_image(s, (plan.height, plan.width)) for s in scenes]
    return LatentSet(encode_images(encode, images), None, condition_ids([class_condition(s) for s in scenes]))


def make_edit_set(plan: PriorPlan, encode, edits: list[str], seed_offset: int) -> LatentSet:
    rng = np.random.default_rng([plan.seed, 2, seed_offset])
    n = plan.num_scenes + plan.num_held_out
    sources, targets, conds = [], [], []
    for i in range(n):
        scene = sample_scene(rng, plan.seed * 1_000_003 + 500_000 + i)
        src, tgt, cond = render_edit_pair(scene, edits[int(rng.integers(len(edits)))], rng, (plan.height, plan.width))
        sources.append(src)
        targets.append(tgt)
        conds.append(cond)
    return LatentSet(encode_images(encode, targets), encode_images(encode, sources), condition_ids(conds))


def flow_loss(transformer: nn.Module, embed: ConditionEmbedder, x0: torch.Tensor, source: torch.Tensor | None,
              ids: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow-matching MSE of the target velocity noise - x0 at x_sigma = (1 - sigma) x0 + sigma noise."""
    s = sigma.view(-1, 1, 1, 1)
    text, pooled = embed(ids)
    v = dit_velocity(transformer, (1 - s) * x0 + s * noise, source, sigma, text, pooled)
    return ((v - (noise - x0)) ** 2).mean()


def train_stage(transformer: nn.Module, embed: ConditionEmbedder, data: LatentSet, plan: PriorPlan, steps: int,
                seed: int, dropout: float, identity: float) -> list[float]:
    """`steps` AdamW steps of flow matching on `data` (a fresh optimizer, linear warm-up); the losses."""
    params = [*transformer.parameters(), *embed.parameters()]
    opt = torch.optim.AdamW(params, lr=plan.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / plan.warmup_steps))
    gen = torch.Generator().manual_seed(seed)
    null = embed.null_ids(1)
    losses = []
    transformer.train()
    for _ in range(steps):
        idx = torch.randint(0, data.target.shape[0], (plan.batch_size,), generator=gen)
        x0, ids = data.target[idx], data.ids[idx].clone()
        source = None if data.source is None else data.source[idx]
        drop = torch.rand(plan.batch_size, generator=gen) < (identity if source is not None else dropout)
        ids[drop] = null
        if source is not None:
            x0 = torch.where(drop.view(-1, 1, 1, 1), source, x0)
        sigma = torch.rand(plan.batch_size, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = flow_loss(transformer, embed, x0, source, ids, sigma, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 250 == 0:
            log.info("  step %d/%d: mean loss of the last 250 steps %.4f", len(losses), steps, np.mean(losses[-250:]))
    return losses


@torch.no_grad()
def held_out_losses(transformer: nn.Module, embed: ConditionEmbedder, held: LatentSet, train: LatentSet,
                    plan: PriorPlan) -> dict[str, float]:
    """{'model', 'mean_predictor', 'ratio'}: held-out flow-matching MSE at fixed sigmas and noise, and the MSE
    of predicting -mean(training x0) for the same draws."""
    transformer.eval()
    gen = torch.Generator().manual_seed(plan.seed + 99)
    mean_x0 = train.target.mean(dim=0, keepdim=True)
    model = mean = 0.0
    for s in plan.eval_sigmas:
        noise = torch.randn(held.target.shape, generator=gen)
        sigma = torch.full((held.target.shape[0],), s)
        model += float(flow_loss(transformer, embed, held.target, held.source, held.ids, sigma, noise))
        mean += float(((noise - held.target + mean_x0) ** 2).mean())
    model, mean = model / len(plan.eval_sigmas), mean / len(plan.eval_sigmas)
    return {"model": model, "mean_predictor": mean, "ratio": model / mean}


def _clone(transformer: nn.Module, embed: ConditionEmbedder, seed: int) -> tuple[nn.Module, ConditionEmbedder]:
    t2, e2 = build_prior(seed)
    t2.load_state_dict(transformer.state_dict())
    e2.load_state_dict(embed.state_dict())
    return t2, e2


def save_prior(out: Path, arm: str, transformer: nn.Module, embed: ConditionEmbedder, provenance: dict) -> Path:
    """`mini_prior_{arm}.safetensors` (float16: transformer.*, condition.*, and the null condition's
    text.tokens (T, D) / text.pooled (P,)) and `.json` provenance (with the weights' sha256)."""
    from safetensors.torch import save_file

    with torch.no_grad():
        tok, pooled = embed(embed.null_ids(1))
    tensors = {f"transformer.{k}": v for k, v in transformer.state_dict().items()}
    tensors.update({f"condition.{k}": v for k, v in embed.state_dict().items()})
    tensors.update({"text.tokens": tok[0], "text.pooled": pooled[0]})
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"mini_prior_{arm}.safetensors"
    save_file(tensors, str(path))
    provenance = {**provenance, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return path


@torch.no_grad()
def write_prior_grid(path: Path, transformer: nn.Module, embed: ConditionEmbedder, held: LatentSet, decode,
                     seed: int, n: int = 6) -> Path:
    """Generators: real held-out images over samples of their classes. Editors: sources, real targets,
    the model's edits under the same conditions."""
    from experiments.priors.samples import sample_latents, write_grid

    hw = tuple(held.target.shape[-2:])
    ids, target = held.ids[:n], held.target[:n]
    source = None if held.source is None else held.source[:n]
    made = sample_latents(transformer, embed, ids, hw, source=source, seed=seed)
    rows = ([] if source is None else [decode(source)]) + [decode(target), decode(made)]
    return write_grid(rows, path)


def pretrain_all(plan: PriorPlan, out: Path) -> dict[str, dict]:
    """Run every stage, gate and save each arm into `out`; returns {arm: provenance}."""
    torch.set_num_threads(plan.threads)
    start = time.time()
    encode, decode = vae_codec()
    gen_train, gen_held = make_generation_set(plan, encode).split(plan.num_held_out)
    log.info("generation data: %d train / %d held out (%.0f s)", gen_train.target.shape[0], plan.num_held_out,
             time.time() - start)
    transformer, embed = build_prior(plan.seed)
    stage1 = train_stage(transformer, embed, gen_train, plan, plan.generator_steps, plan.seed + 1,
                         plan.condition_dropout, 0.0)
    log.info("stage 1 (generator, %d steps): final loss %.4f (%.0f s)", plan.generator_steps,
             float(np.mean(stage1[-50:])), time.time() - start)
    results = {}
    for i, arm in enumerate(ARMS):
        t_arm, e_arm = _clone(transformer, embed, plan.seed)
        if arm == "generator":
            train, held, dropout, identity = gen_train, gen_held, plan.condition_dropout, 0.0
        else:
            train, held = make_edit_set(plan, encode, plan.edits[arm], i).split(plan.num_held_out)
            dropout, identity = 0.0, plan.identity_edits
        losses = train_stage(t_arm, e_arm, train, plan, plan.continue_steps, plan.seed + 10 + i, dropout, identity)
        scores = held_out_losses(t_arm, e_arm, held, train, plan)
        formed = scores["ratio"] <= GATE_RATIO
        log.info("%s: held-out loss %.4f vs mean predictor %.4f (ratio %.3f): %s", arm, scores["model"],
                 scores["mean_predictor"], scores["ratio"], "prior formed" if formed else "prior NOT formed")
        provenance = {
            "arm": arm, "plan": asdict(plan), "stage1_steps": plan.generator_steps,
            "continuation": "generation" if arm == "generator" else f"edits {plan.edits[arm]}",
            "stage1_final_loss": float(np.mean(stage1[-50:])), "final_train_loss": float(np.mean(losses[-50:])),
            "held_out": scores, "gate": {"ratio_max": GATE_RATIO, "formed": formed},
            "loss_curve_every_50": [float(np.mean(losses[k:k + 50])) for k in range(0, len(losses), 50)],
            "torch": torch.__version__, "threads": plan.threads,
        }
        save_prior(out, arm, t_arm, e_arm, provenance)
        write_prior_grid(out / f"mini_prior_{arm}_samples.png", t_arm, e_arm, held, decode, plan.seed)
        results[arm] = provenance
    log.info("priors written to %s in %.0f s", out, time.time() - start)
    return results
