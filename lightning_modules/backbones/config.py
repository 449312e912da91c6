"""Configuration of a backbone (DiT + VAE adapter); `build_backbone` turns it into a module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from lightning_modules.choices import check_choices

BackboneName = Literal["tiny-editor", "tiny-kontext", "tiny-generator", "tiny-qwen-editor", "tiny-qwen-generator",
                       "mini-random", "mini-generator", "mini-editor", "mini-editor-norelight",
                       "flux-dev", "flux-kontext", "step1x-edit", "qwen-image", "qwen-image-edit"]
"""Every preset (backbones.PRESETS holds what each one is)."""
NAMES = get_args(BackboneName)
MINI_NAMES = tuple(n for n in NAMES if n.startswith("mini-"))
"""The miniature study's arms: one architecture (tiny.MINI_FLUX_CONFIG), pretrained differently."""
TINY_NAMES = tuple(n for n in NAMES if n.startswith(("tiny-", "mini-")))
FULL_NAMES = tuple(n for n in NAMES if n not in TINY_NAMES)
Finetune = Literal["lora", "full", "frozen"]


@dataclass
class BackboneConfig:
    name: BackboneName = "tiny-editor"
    """Preset: one of `NAMES`. Editors: tiny-editor (Step1X-style ids, no guidance), tiny-kontext,
    tiny-qwen-editor, flux-kontext, step1x-edit, qwen-image-edit. Generators: tiny-generator,
    tiny-qwen-generator, flux-dev, qwen-image. Miniature priors (SPEC 11, one architecture):
    mini-random, mini-generator (generators), mini-editor, mini-editor-norelight (editors)."""
    weights: str | None = None
    """Local folder with the pretrained weights (diffusers layout `transformer/`, `vae/`; for
    step1x-edit also the released single DiT file, see step1x.py). None = random init, allowed only
    for tiny presets or with `random_init: true`. Never downloaded from a hub."""
    random_init: bool = False
    """Allow a full-size preset with random weights (benchmarks only; needs memory for the model)."""
    seed: int | None = None
    """Seed of random initialisation (tiny presets, random_init, MERGE's converters) and of the tiny
    text buffer. None = the experiment's top-level `seed` (filled in when the ExperimentConfig is
    built, so a run's config.yaml holds the number); a BackboneConfig used on its own takes None as 0
    (`init_seed`)."""
    conditioning: Literal["sequence", "channel"] = "sequence"
    """How the image latent enters the DiT: "sequence" (tokens [target ; image], every preset) or
    "channel" (generators only: input projection widened to [target, image] channels, Marigold
    style, new weights = old weights repeated and halved; the widened projection trains fully)."""
    dit_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """dtype of the frozen DiT weights: "bfloat16" or "float32". With bfloat16 the forward runs under
    torch.autocast; trainable parameters (LoRA or full) are float32 either way; the VAE is float32."""
    finetune: Finetune = "lora"
    """"lora" (adapters on every Linear of every transformer block), "full" (all DiT weights) or
    "frozen" (no DiT weight trains: MERGE, whose trainable converters are added by its module)."""
    lora_rank: int = 64
    """LoRA rank r."""
    lora_alpha: float = 32.0
    """LoRA alpha; the adapter output is scaled by alpha / r."""
    gradient_checkpointing: bool = False
    """Recompute each transformer block's activations in the backward pass."""
    guidance: float = 1.0
    """Value of the distilled-guidance embedding (FLUX.1-dev, FLUX.1-Kontext, tiny-generator,
    tiny-kontext); ignored by models without one."""
    prompt_embeds: str | None = None
    """File with the cached empty-prompt conditioning, required with real weights; None for tiny
    presets and random_init (a seeded buffer is used). FLUX / Qwen-Image: safetensors with
    `prompt_embeds` (T, D) (+ `pooled_prompt_embeds` (768,) for FLUX). step1x-edit: the Qwen2.5-VL
    states `embeds` (T, 3584) + `masks` (T,), as .safetensors or FE2E's `no_info.npz`. See prompt.py."""
    num_text_tokens: int = 8
    """Text tokens of the fixed buffer used by tiny presets and random_init (ignored with a file)."""

    def __post_init__(self) -> None:
        check_choices(self, "backbone")

    @property
    def init_seed(self) -> int:
        """The seed random initialisation uses: `seed`, or 0 when it is left to an experiment that is
        not there (the config built on its own)."""
        return 0 if self.seed is None else self.seed

    def validate(self) -> None:
        """Raise ValueError naming the key when a field is out of range (the choices are Literal fields,
        checked when the config is built)."""
        if self.lora_rank < 1:
            raise ValueError(f"backbone.lora_rank={self.lora_rank}: expected >= 1")
        if self.weights is None and self.name not in TINY_NAMES and not self.random_init:
            raise ValueError(f"backbone.weights is None for full-size preset {self.name!r}: give a local "
                             "weights folder, or set backbone.random_init=true (benchmarks only)")
