"""`cache-prompt`: compute the empty-prompt text conditioning of a real backbone once, save it.

FE2E always uses the empty prompt, so the text encoders are run once here and never loaded again
(see lightning_modules/backbones/prompt.py for the file format). FLUX.1-dev / FLUX.1-Kontext: T5 +
CLIP from the weights folder; Qwen-Image(-Edit): Qwen2.5-VL from the weights folder. Step1X-Edit:
Qwen2.5-VL-7B's last hidden states of Step1X's chat prompt (experiments/step1x_prompt.py), --weights being
the Qwen2.5-VL-7B-Instruct folder; Step1X's connector turns them into text tokens inside the adapter. The
reference image in that chat (--image, default mid-grey 1024x768) is recorded in <out>.json.
Everything loads from local folders only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from lightning_modules.backbones.prompt import save_prompt_embeds, save_qwen_states

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, choices=["flux", "qwen-image", "step1x"],
                        help="pipeline whose encode_prompt('') to run (step1x: Step1X-Edit's Qwen2.5-VL states)")
    parser.add_argument("--weights", required=True, help="local diffusers pipeline folder with the text encoders "
                        "(step1x: the Qwen2.5-VL-7B-Instruct folder)")
    parser.add_argument("--out", required=True, help="output .safetensors (give it as backbone.prompt_embeds)")
    parser.add_argument("--image", default=None, help="step1x only: reference image of the chat prompt "
                        "(default mid-grey 1024x768)")


def run(args: argparse.Namespace) -> None:
    if args.family == "step1x":
        run_step1x(args)
        return
    if args.image is not None:
        raise ValueError(f"--image is only used with --family step1x, not {args.family}")
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


def run_step1x(args: argparse.Namespace) -> None:
    """Step1X-Edit: Qwen2.5-VL states of the empty prompt -> `save_qwen_states`, metadata -> <out>.json."""
    from experiments.step1x_prompt import encode_step1x_prompt

    states = encode_step1x_prompt(args.weights, image=args.image)
    save_qwen_states(args.out, states.embeds, states.masks)
    with open(args.out + ".json", "w") as f:
        json.dump(states.info, f, indent=2)
    logger.info("wrote %s and %s.json (reference image: %s)", args.out, args.out, states.info["image"])
    print(args.out)
