"""Checks run before a command touches any file: weights files, data roots, checkpoints.

Everything here is cheap (file headers, folder listings; a checkpoint is memory-mapped, not read),
so a wrong `WEIGHTS` folder, a truncated safetensors file or a missing data root is reported by
name, with exit code 2, before a run folder is created, moved or written.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from pathlib import Path

from experiments.checkpoints import read_checkpoint
from experiments.config import ExperimentConfig
from lightning_modules.backbones import PRESETS
from lightning_modules.backbones.config import BackboneConfig


def check_safetensors(path: str | Path, what: str = "safetensors file") -> None:
    """Raise ValueError naming `path` unless its header parses and its data is all there.

    A safetensors file is: u64 header length N | N bytes of JSON {name: {dtype, shape,
    data_offsets: [begin, end]}} | the data; a complete file holds at least 8 + N + max(end) bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected a {what}")
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError(f"header of {n} bytes in a {size}-byte file")
            header = json.loads(fh.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ValueError(f"{path}: not a readable {what} ({err})") from None
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise ValueError(f"{path}: truncated {what}: {size} bytes, its header promises {need} "
                         "(copy or download it again)")


def _require(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"backbone.weights: {path} not found; expected {what}")


def _diffusers_folder(path: str, what: str) -> list[str]:
    """config.json and at least one .safetensors weights file in a diffusers model folder."""
    _require(os.path.join(path, "config.json"), f"a diffusers {what} folder (config.json + weights)")
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"backbone.weights: no *.safetensors weights in {path}; expected a diffusers {what} folder")
    return files


def backbone_weight_files(cfg: BackboneConfig) -> list[str]:
    """The weight files the backbone will load from cfg.weights (FileNotFoundError naming what is missing)."""
    preset = PRESETS[cfg.name]
    if cfg.weights is None or preset.tiny:
        return []
    if not os.path.isdir(cfg.weights):
        raise FileNotFoundError(f"backbone.weights: {cfg.weights} is not a folder")
    root = cfg.weights
    if preset.family == "qwen":
        return (_diffusers_folder(os.path.join(root, "transformer"), "QwenImageTransformer2DModel")
                + _diffusers_folder(os.path.join(root, "vae"), "AutoencoderKLQwenImage"))
    files = _diffusers_folder(os.path.join(root, "vae"), "AutoencoderKL (FLUX VAE)")
    if preset.connector and not os.path.isfile(os.path.join(root, "transformer", "config.json")):
        from lightning_modules.backbones.step1x import find_dit_file

        return [find_dit_file(root), *files]
    files += _diffusers_folder(os.path.join(root, "transformer"), "FluxTransformer2DModel")
    if preset.connector:
        connector = os.path.join(root, "connector.safetensors")
        _require(connector, "Step1X-Edit's connector weights next to a converted transformer/ folder")
        files.append(connector)
    return files


def check_backbone(cfg: ExperimentConfig) -> None:
    """The weights folder's layout and every weights file's integrity (the method/backbone pairing is
    checked when the config is built: experiments.config.check_method_prior)."""
    b = cfg.backbone
    preset = PRESETS[b.name]
    if preset.tiny and b.weights is not None:
        raise ValueError(f"backbone.weights must be null for the tiny preset {b.name!r} (got {b.weights}); "
                         "real weights need a real preset, e.g. --config experiments/configs/backbone/step1x-edit.yaml")
    for path in backbone_weight_files(b):
        check_safetensors(path, "weights file")
    if b.weights is not None and not preset.tiny:
        if b.prompt_embeds is None:
            raise ValueError(f"backbone.prompt_embeds is required with real weights ({b.weights})")
        if not os.path.isfile(b.prompt_embeds):
            raise FileNotFoundError(f"backbone.prompt_embeds: no file at {b.prompt_embeds}")
        if b.prompt_embeds.endswith(".safetensors"):
            check_safetensors(b.prompt_embeds, "prompt-embeds file")


def check_training_data(cfg: ExperimentConfig) -> None:
    """The training roots that will be read exist as folders, and at least one is configured."""
    d = cfg.data
    used = [(key, root) for key, root, p in (("data.hypersim_root", d.hypersim_root, d.hypersim_probability),
                                             ("data.vkitti_root", d.vkitti_root, d.vkitti_probability))
            if root is not None and p > 0]
    if not used:
        raise ValueError("data: set data.hypersim_root and/or data.vkitti_root (with a probability > 0) to train")
    for key, root in used:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{key}: {root} is not a folder")


def check_benchmarks_root(cfg: ExperimentConfig) -> None:
    """evaluation.root is a folder whenever benchmarks are configured."""
    ev = cfg.evaluation
    if ev.benchmarks and (ev.root is None or not os.path.isdir(ev.root)):
        raise FileNotFoundError(f"evaluation.root: {ev.root} is not a folder (benchmarks {ev.benchmarks} need it)")


def check_for_training(cfg: ExperimentConfig, checkpoint: str | Path | None) -> None:
    """Everything `train` can check before it creates, moves or writes a run folder."""
    check_backbone(cfg)
    check_training_data(cfg)
    check_benchmarks_root(cfg)
    if checkpoint is not None:
        read_checkpoint(checkpoint, mmap=True)
