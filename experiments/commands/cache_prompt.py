"""`cache-prompt`: compute the empty-prompt text conditioning of a real backbone once, save it.

FE2E always uses the empty prompt, so the text encoders are run once here and never loaded again
(see lightning_modules/backbones/prompt.py for the file format). FLUX.1-dev / FLUX.1-Kontext: T5 +
CLIP from the weights folder; Qwen-Image(-Edit): Qwen2.5-VL from the weights folder. Step1X-Edit:
Qwen2.5-VL hidden states through Step1X's connector (lightning_modules/backbones/step1x.py).
Everything loads from local folders only.
"""

from __future__ import annotations

import argparse
import os

from lightning_modules.backbones.prompt import save_prompt_embeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, choices=["flux", "qwen-image"],
                        help="pipeline whose encode_prompt('') to run")
    parser.add_argument("--weights", required=True, help="local diffusers pipeline folder with the text encoders")
    parser.add_argument("--out", required=True, help="output .safetensors (give it as backbone.prompt_embeds)")


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.path.isfile(os.path.join(args.weights, "model_index.json")):
        raise FileNotFoundError(f"--weights {args.weights}: expected a diffusers pipeline folder with model_index.json")
    if args.family == "flux":
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained(args.weights, transformer=None, vae=None, local_files_only=True)
        embeds, pooled, _ = pipe.encode_prompt("", prompt_2="", max_sequence_length=512)
        save_prompt_embeds(args.out, embeds[0], pooled[0])
    else:
        from diffusers import QwenImagePipeline

        pipe = QwenImagePipeline.from_pretrained(args.weights, transformer=None, vae=None, local_files_only=True)
        embeds, _ = pipe.encode_prompt("")
        save_prompt_embeds(args.out, embeds[0], None)
    print(args.out)
