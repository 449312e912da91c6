"""Procedural training data of the miniature priors: classes, edit pairs, and their VAE latents.

A scene is (kind, seed, SceneParams). Its class for generation is (kind, object-count bucket, hue
bucket); an edit pair renders one seed twice, the target differing from the source in one control.
Images are tone mapped with ONE scale per pair (from the source), so an exposure edit stays visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from datamodules.hypersim import apply_tone, tone_scale
from datamodules.synthetic.render import SceneParams, render_scene

KINDS = ("room", "road")
COUNTS = (2, 3, 4, 5)
"""Object counts (room: count-1 boxes + 1 sphere; road: cars)."""
HUES = tuple(i / 6 for i in range(6))
LIGHTS = tuple((math.cos(a), 1.0, math.sin(a)) for a in np.linspace(0, 2 * math.pi, 8, endpoint=False))
"""Eight light directions (azimuths 0, 45, ... 315 degrees, elevation 45 degrees)."""
EDITS = ("recolour", "relight", "move", "exposure")
MOVES = ((0.8, 0.0), (-0.8, 0.0), (0.0, 0.8), (0.0, -0.8))
"""First-object shifts (dx, dz) in metres of the 'move' edit (room scale; x4 on roads)."""
EXPOSURES = (0.5, 2.0)
FIELDS = {"kind": len(KINDS), "count": len(COUNTS), "hue": len(HUES), "edit": len(EDITS), "param": 8}
"""Condition tokens, in order, and their vocabulary sizes; each field also has a null id = its size."""
NULL = {name: size for name, size in FIELDS.items()}


@dataclass(frozen=True)
class Scene:
    kind: int
    seed: int
    count: int
    hue: int
    light: int


def sample_scene(rng: np.random.Generator, seed: int) -> Scene:
    """A random class and light for a scene seed."""
    return Scene(int(rng.integers(2)), seed, int(rng.integers(len(COUNTS))), int(rng.integers(len(HUES))),
                 int(rng.integers(len(LIGHTS))))


def scene_params(s: Scene) -> SceneParams:
    return SceneParams(light_dir=LIGHTS[s.light], hue=HUES[s.hue], num_objects=COUNTS[s.count])


def _tone(lin: np.ndarray, scale: float) -> np.ndarray:
    """(H,W,3) linear radiance -> float32 RGB in [-1, 1] with Hypersim's curve at a given scale (SPEC 6)."""
    return apply_tone(lin, scale) * 2.0 - 1.0


def _scale(lin: np.ndarray) -> float:
    """Hypersim's tone-map scale (SPEC 6) from the 90th brightness percentile of the whole image."""
    return tone_scale(lin, np.ones(lin.shape[:2], dtype=bool))


def render_class_image(s: Scene, hw: tuple[int, int]) -> np.ndarray:
    """(H,W,3) RGB in [-1, 1] of a scene for class-conditioned generation."""
    lin = render_scene(KINDS[s.kind], *hw, seed=s.seed, params=scene_params(s)).rgb_linear
    return _tone(lin, _scale(lin))


def edit_condition(s: Scene, edit: str, rng: np.random.Generator) -> tuple[SceneParams, dict[str, int]]:
    """Target params of one edit of scene s and its condition tokens (kind/count null; hue only for recolour)."""
    p = scene_params(s)
    cond = {"kind": NULL["kind"], "count": NULL["count"], "hue": NULL["hue"], "edit": EDITS.index(edit),
            "param": NULL["param"]}
    if edit == "recolour":
        hue = int((s.hue + rng.integers(1, len(HUES))) % len(HUES))
        return replace(p, hue=HUES[hue]), {**cond, "hue": hue}
    if edit == "relight":
        light = int((s.light + rng.integers(1, len(LIGHTS))) % len(LIGHTS))
        return replace(p, light_dir=LIGHTS[light]), {**cond, "param": light}
    if edit == "move":
        k = int(rng.integers(len(MOVES)))
        factor = 4.0 if KINDS[s.kind] == "road" else 1.0
        return replace(p, object_shift=(MOVES[k][0] * factor, MOVES[k][1] * factor)), {**cond, "param": k}
    if edit == "exposure":
        k = int(rng.integers(len(EXPOSURES)))
        return replace(p, exposure=EXPOSURES[k]), {**cond, "param": k}
    raise ValueError(f"unknown edit {edit!r}; expected one of {EDITS}")


def render_edit_pair(s: Scene, edit: str, rng: np.random.Generator, hw: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(source, target) RGB in [-1, 1] of one edit, tone mapped with the source's scale, and the condition."""
    kind = KINDS[s.kind]
    target_params, cond = edit_condition(s, edit, rng)
    src = render_scene(kind, *hw, seed=s.seed, params=scene_params(s)).rgb_linear
    tgt = render_scene(kind, *hw, seed=s.seed, params=target_params).rgb_linear
    scale = _scale(src)
    return _tone(src, scale), _tone(tgt, scale), cond


def class_condition(s: Scene) -> dict[str, int]:
    return {"kind": s.kind, "count": s.count, "hue": s.hue, "edit": NULL["edit"], "param": NULL["param"]}


def condition_ids(conds: list[dict[str, int]]) -> torch.Tensor:
    """(N, len(FIELDS)) int64 token ids in FIELDS order."""
    return torch.tensor([[c[name] for name in FIELDS] for c in conds], dtype=torch.int64)


@torch.no_grad()
def encode_images(vae_encode, images: list[np.ndarray], batch: int = 64) -> torch.Tensor:
    """(N, 16, h, w) float32 normalised latents (posterior mode) of (H,W,3) [-1, 1] images."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i : i + batch])).permute(0, 3, 1, 2).contiguous()
        out.append(vae_encode(x))
    return torch.cat(out)
