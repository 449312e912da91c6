"""Step1X-Edit's empty-prompt text states: Qwen2.5-VL-7B last hidden states of Step1X's chat prompt.

Step1X-Edit conditions its DiT on Qwen2.5-VL states of a chat message [PREFIX, reference image, caption]
(their `Qwen25VL_7b_Embedder`, re-implemented here); a connector inside the adapter turns them into text
tokens. FE2E always uses the empty caption, so this runs once (`python -m experiments cache-prompt --family
step1x`) and the result is written with `save_qwen_states` (lightning_modules/backbones/prompt.py).

Pipeline (Step1X-Edit, modules/conditioner.py):
1. the reference image is pre-resized as qwen_vl_utils.process_vision_info does (`qwen_vl_pre_resize_size`,
   PIL `Image.resize` with its default filter);
2. the chat template renders system + user [PREFIX, "Picture 1: <|vision_start|><|image_pad|><|vision_end|>",
   caption] + the assistant header, with add_vision_id=True;
3. the Qwen2-VL image processor (min_pixels=256*28*28, max_pixels=324*28*28) gives pixel patches and the grid;
   <|image_pad|> is expanded to grid_t*grid_h*grid_w / merge_size**2 tokens, the text is tokenised;
4. attention_mask = input_ids > 0, the model runs, the last hidden states (T_all, C) are kept from token
   `drop_tokens` (217) on, at most `max_length` (640), zero-padded; masks are 1 on the kept tokens.
Step1X re-tokenises quoted spans after character 155 of the rendered text separately; the empty caption
under this PREFIX has no quote there, so that step is the identity here (`step1x_requotes` checks it).

Everything loads from a local folder only (Qwen2.5-VL-7B-Instruct's layout: config.json, weights,
preprocessor_config.json, tokenizer files, a chat template).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field

import torch
from PIL import Image

logger = logging.getLogger(__name__)

# Verbatim copy (data, not code) of `Qwen25VL_7b_PREFIX` in stepfun-ai/Step1X-Edit, modules/conditioner.py
# (commit ba9283ee1e0c0722a978a3d00abb29a124bdbbfc). The two \n escapes there are copied too: each makes a
# blank line (a newline followed by the line break).
QWEN25VL_7B_PREFIX = '''Given a user prompt, generate an "Enhanced prompt" that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:
- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.
- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.\n
Here are examples of how to transform or refine prompts:
- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.
- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.\n
Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:
User Prompt:'''

STEP1X_DROP_TOKENS = 217
"""Step1X's constant: leading tokens of the rendered prompt dropped from the hidden states."""
STEP1X_MAX_LENGTH = 640
"""Step1X's text length: kept tokens are zero-padded / truncated to this many."""
STEP1X_MIN_PIXELS, STEP1X_MAX_PIXELS = 256 * 28 * 28, 324 * 28 * 28
"""Pixel bounds Step1X gives the Qwen2-VL image processor (256..324 merged image tokens)."""
QWEN_VL_MIN_PIXELS, QWEN_VL_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28
"""qwen_vl_utils' default bounds for its pre-resize of an image given in a chat message."""
DEFAULT_IMAGE_DESCRIPTION = "mid-grey (128,128,128) RGB, 1024x768 (width x height)"
IMAGE_PAD = "<|image_pad|>"
REQUOTE_AFTER_CHAR = 155
"""Step1X's split_string re-tokenises quotes only at character indices > 155 of the rendered text."""


def qwen_vl_pre_resize_size(height: int, width: int, factor: int = 28, min_pixels: int = QWEN_VL_MIN_PIXELS,
                            max_pixels: int = QWEN_VL_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) that qwen_vl_utils resizes an image to: each side rounded to a multiple of `factor`
    (at least `factor`), then rescaled by a common factor if the area leaves [min_pixels, max_pixels]
    (floored to the factor when too big, ceiled when too small)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image aspect ratio must be at most 200, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def pre_resize(image: Image.Image, min_pixels: int = QWEN_VL_MIN_PIXELS,
               max_pixels: int = QWEN_VL_MAX_PIXELS) -> Image.Image:
    """RGB copy of `image` resized to `qwen_vl_pre_resize_size` with PIL's default resampling."""
    image = image.convert("RGB")
    h, w = qwen_vl_pre_resize_size(image.height, image.width, min_pixels=min_pixels, max_pixels=max_pixels)
    return image.resize((w, h))


def reference_image(image: str | Image.Image | None) -> tuple[Image.Image, str]:
    """The reference image of the chat and a description for the record: None -> mid-grey 1024x768,
    a path -> that file (FileNotFoundError naming it if missing), a PIL image -> itself."""
    if image is None:
        return Image.new("RGB", (1024, 768), (128, 128, 128)), DEFAULT_IMAGE_DESCRIPTION
    if isinstance(image, Image.Image):
        return image.convert("RGB"), f"PIL image {image.width}x{image.height}"
    if not os.path.isfile(image):
        raise FileNotFoundError(f"--image {image}: no such file (expected an RGB image for Step1X's chat prompt)")
    with Image.open(image) as img:
        return img.convert("RGB"), os.path.abspath(image)


def step1x_messages(image: Image.Image, caption: str = "") -> list[dict]:
    """Step1X's single user message: [PREFIX text, the image, the caption text]."""
    return [{"role": "user", "content": [{"type": "text", "text": QWEN25VL_7B_PREFIX},
                                         {"type": "image", "image": image},
                                         {"type": "text", "text": caption}]}]


def step1x_requotes(text: str) -> bool:
    """True if Step1X's split_string would re-tokenise part of the rendered `text` separately: a quote
    (" ' or curly double quotes, all normalised to ") at a character index > 155."""
    return any(ch in "\"'\u201c\u201d" for ch in text[REQUOTE_AFTER_CHAR + 1:])


def check_qwen_folder(folder: str) -> None:
    """Raise FileNotFoundError / ValueError naming `folder` unless it looks like a local Qwen2.5-VL folder."""
    what = ("a local Qwen2.5-VL(-7B-Instruct) folder with config.json (model_type qwen2_5_vl), model weights "
            "(*.safetensors), preprocessor_config.json, tokenizer files (tokenizer.json or vocab.json + "
            "merges.txt, tokenizer_config.json) and a chat template (chat_template.json/.jinja)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--weights {folder}: not a directory; expected {what}")
    names = set(os.listdir(folder))
    missing = [n for n in ("config.json", "preprocessor_config.json", "tokenizer_config.json") if n not in names]
    if not ({"tokenizer.json"} <= names or {"vocab.json", "merges.txt"} <= names):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        missing.append("model weights (*.safetensors)")
    if missing:
        raise FileNotFoundError(f"--weights {folder}: missing {', '.join(missing)}; expected {what}")
    with open(os.path.join(folder, "config.json")) as f:
        model_type = json.load(f).get("model_type")
    if model_type != "qwen2_5_vl":
        raise ValueError(f"--weights {folder}: config.json has model_type {model_type!r}, expected 'qwen2_5_vl'")


def load_chat_template(folder: str, tokenizer) -> str:
    """The processor's chat template: chat_template.jinja, else chat_template.json, else the tokenizer's."""
    path = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(path):
        with open(path) as f:
            return f.read()
    path = os.path.join(folder, "chat_template.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)["chat_template"]
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        return tokenizer.chat_template
    raise FileNotFoundError(f"--weights {folder}: no chat template (expected chat_template.json, "
                            "chat_template.jinja or a chat_template in tokenizer_config.json)")


def keep_after_drop(hidden: torch.Tensor, drop_tokens: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step1X's slicing: hidden (T_all, C) -> embeds (max_length, C) float32 = hidden[drop:drop+max_length]
    zero-padded, masks (max_length,) int64 with 1 on the n = min(max_length, T_all - drop) kept rows."""
    n = min(max_length, hidden.shape[0] - drop_tokens)
    if n <= 0:
        raise ValueError(f"the prompt has {hidden.shape[0]} tokens, not more than drop_tokens={drop_tokens}")
    embeds = torch.zeros(max_length, hidden.shape[1], dtype=torch.float32)
    embeds[:n] = hidden[drop_tokens:drop_tokens + n].float()
    masks = torch.zeros(max_length, dtype=torch.int64)
    masks[:n] = 1
    return embeds, masks


@dataclass
class Step1XPromptStates:
    """Result of `encode_step1x_prompt`: embeds (max_length, C) float32, masks (max_length,) int64, and
    `info` (image description, sizes, token counts, where the drop cuts: the <|vision_start|> index and the
    decoded tokens either side of `drop_tokens`) to record next to the cached file."""
    embeds: torch.Tensor
    masks: torch.Tensor
    info: dict = field(default_factory=dict)


def encode_step1x_prompt(qwen_folder: str, image: str | Image.Image | None = None, max_length: int = STEP1X_MAX_LENGTH,
                         drop_tokens: int = STEP1X_DROP_TOKENS, dtype: torch.dtype | None = None,
                         device: str | torch.device | None = None, min_pixels: int = STEP1X_MIN_PIXELS,
                         max_pixels: int = STEP1X_MAX_PIXELS, pre_min_pixels: int = QWEN_VL_MIN_PIXELS,
                         pre_max_pixels: int = QWEN_VL_MAX_PIXELS) -> Step1XPromptStates:
    """Qwen2.5-VL states of Step1X's empty-caption prompt (see the module docstring). dtype defaults to
    bfloat16 on CUDA and float32 on CPU; device to CUDA when available."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    check_qwen_folder(qwen_folder)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    image, description = reference_image(image)
    original_size = (image.height, image.width)
    image = pre_resize(image, pre_min_pixels, pre_max_pixels)

    tokenizer = AutoTokenizer.from_pretrained(qwen_folder, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(qwen_folder, local_files_only=True, backend="pil",
                                                   min_pixels=min_pixels, max_pixels=max_pixels)
    text = tokenizer.apply_chat_template(step1x_messages(image), chat_template=load_chat_template(qwen_folder, tokenizer),
                                         tokenize=False, add_generation_prompt=True, add_vision_id=True)
    if step1x_requotes(text):  # cannot happen for Step1X's PREFIX + empty caption; guards a changed template
        raise ValueError(f"the rendered prompt has a quote after character {REQUOTE_AFTER_CHAR}, which Step1X "
                         "re-tokenises separately; not implemented (the empty prompt does not need it)")
    if text.count(IMAGE_PAD) != 1:
        raise ValueError(f"{qwen_folder}: the chat template rendered {text.count(IMAGE_PAD)} {IMAGE_PAD}, expected 1")
    vision = processor(images=[image], return_tensors="pt")
    grid = vision["image_grid_thw"]
    num_image_tokens = int(grid[0].prod()) // processor.merge_size ** 2
    input_ids = tokenizer([text.replace(IMAGE_PAD, IMAGE_PAD * num_image_tokens)], return_tensors="pt")["input_ids"]

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_folder, dtype=dtype, local_files_only=True)
    model = model.to(device).eval().requires_grad_(False)
    with torch.no_grad():
        out = model(input_ids=input_ids.to(device), attention_mask=(input_ids > 0).long().to(device),
                    pixel_values=vision["pixel_values"].to(device), image_grid_thw=grid.to(device),
                    output_hidden_states=True)
    hidden = out.hidden_states[-1][0].float().cpu()
    embeds, masks = keep_after_drop(hidden, drop_tokens, max_length)
    ids = input_ids[0].tolist()
    vision_start = ids.index(tokenizer.convert_tokens_to_ids("<|vision_start|>"))
    boundary = {"last_dropped": tokenizer.decode(ids[max(0, drop_tokens - 6):drop_tokens]),
                "first_kept": tokenizer.decode(ids[drop_tokens:drop_tokens + 3])}
    info = {"image": description, "image_size_hw": list(original_size), "pre_resized_hw": [image.height, image.width],
            "image_grid_thw": grid[0].tolist(), "image_tokens": num_image_tokens, "total_tokens": hidden.shape[0],
            "vision_start_index": vision_start, "drop_boundary": boundary,
            "drop_tokens": drop_tokens, "max_length": max_length, "valid_tokens": int(masks.sum()),
            "qwen_folder": os.path.abspath(qwen_folder), "dtype": str(dtype).replace("torch.", ""),
            "device": str(device), "prefix": "Qwen25VL_7b_PREFIX of stepfun-ai/Step1X-Edit modules/conditioner.py"}
    logger.info("Step1X prompt: image %s, %d tokens (%d image tokens, <|vision_start|> at index %d), kept %d "
                "after dropping %d; last dropped %r, first kept %r", description, hidden.shape[0], num_image_tokens,
                vision_start, info["valid_tokens"], drop_tokens, boundary["last_dropped"], boundary["first_kept"])
    return Step1XPromptStates(embeds, masks, info)


def encode_step1x_empty_prompt(qwen_folder: str, image: str | Image.Image | None = None,
                               max_length: int = STEP1X_MAX_LENGTH, drop_tokens: int = STEP1X_DROP_TOKENS,
                               dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                               **pixels) -> tuple[torch.Tensor, torch.Tensor]:
    """embeds (max_length, C) float32 and masks (max_length,) int64 of Step1X's empty prompt;
    `pixels`: min_pixels / max_pixels / pre_min_pixels / pre_max_pixels of `encode_step1x_prompt`."""
    states = encode_step1x_prompt(qwen_folder, image, max_length, drop_tokens, dtype, device, **pixels)
    return states.embeds, states.masks
