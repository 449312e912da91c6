"""Step1X-Edit's empty-prompt Qwen2.5-VL states (experiments/step1x_prompt.py) on a tiny random Qwen2.5-VL
checkpoint written in the real on-disk layout; references are built here by hand (template string,
tokenisation, image pad expansion, the model run) and compared with what the code under test returns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from tiny_qwen25vl import SYSTEM, build_tiny_qwen25vl  # noqa: E402

from experiments.__main__ import main  # noqa: E402
from experiments.step1x_prompt import (  # noqa: E402
    QWEN25VL_7B_PREFIX,
    encode_step1x_empty_prompt,
    pre_resize,
    qwen_vl_pre_resize_size,
    step1x_requotes,
)
from lightning_modules.backbones.prompt import load_qwen_states  # noqa: E402

HIDDEN = 32  # the tiny text model's width


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qwen25vl")
    build_tiny_qwen25vl(folder)
    return folder


@pytest.mark.parametrize("hw, bounds, expected", [
    ((768, 1024), {}, (756, 1036)),  # 27.43 -> 27, 36.57 -> 37 multiples of 28, inside the default bounds
    ((90, 150), {}, (84, 140)),
    ((84, 140), {"max_pixels": 8 * 28 * 28}, (56, 84)),  # 11760 > 6272: beta 1.3693, floor(2.19), floor(3.65)
    ((4000, 6000), {}, (2912, 4368)),  # 4004*5992 > 16384*784: beta 1.3669, floor(104.51), floor(156.77)
    ((20, 30), {}, (56, 84)),  # 28*28 < 4*784: beta 2.2862, ceil(1.633), ceil(2.449)
])
def test_pre_resize_sizes(hw, bounds, expected):
    assert qwen_vl_pre_resize_size(*hw, **bounds) == expected
    image = Image.new("L", (hw[1], hw[0]), 7)
    resized = pre_resize(image, **bounds)
    assert resized.mode == "RGB" and resized.size == (expected[1], expected[0])


def test_prefix_is_step1x_text_and_the_empty_prompt_is_not_requoted():
    assert QWEN25VL_7B_PREFIX.startswith('Given a user prompt, generate an "Enhanced prompt"')
    assert QWEN25VL_7B_PREFIX.endswith("evaluations:\nUser Prompt:") and len(QWEN25VL_7B_PREFIX) == 1058
    assert QWEN25VL_7B_PREFIX.count("\n\n") == 2 and "\\" not in QWEN25VL_7B_PREFIX  # Step1X's two "\n" escapes
    text = (SYSTEM + "<|im_start|>user\n" + QWEN25VL_7B_PREFIX + "Picture 1: <|vision_start|><|image_pad|>"
            "<|vision_end|><|im_end|>\n<|im_start|>assistant\n")
    last_quote = max(text.rfind('"'), text.rfind("'"))
    assert 0 < last_quote <= 155  # the quotes of "Enhanced prompt" come before Step1X's index-155 threshold
    assert not step1x_requotes(text)
    assert step1x_requotes(text.replace("<|im_end|>\n<|im", 'say "hi"<|im_end|>\n<|im'))
    assert step1x_requotes(text + "it's")


def _reference_states(folder: Path, image: Image.Image) -> torch.Tensor:
    """Hidden states of Step1X's prompt, built without the code under test."""
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    resized = image.resize((140, 84))  # hand-computed qwen_vl_utils pre-resize of 150x90
    vision = Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=8 * 28 * 28)(images=[resized],
                                                                                     return_tensors="pt")
    assert vision["image_grid_thw"].tolist() == [[1, 4, 6]]  # 84x140 -> 56x84 pixels -> 4x6 patches
    text = (SYSTEM + "<|im_start|>user\n" + QWEN25VL_7B_PREFIX + "Picture 1: <|vision_start|>"
            + "<|image_pad|>" * 6 + "<|vision_end|><|im_end|>\n<|im_start|>assistant\n")  # 24 patches / 2x2 merge
    ids = torch.tensor([Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids])
    assert (ids > 0).all()  # so Step1X's mask (input_ids > 0) is all ones
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=vision["pixel_values"],
                       image_grid_thw=vision["image_grid_thw"], output_hidden_states=True).hidden_states[-1][0]
    return hidden


def test_encode_equals_the_last_hidden_states_sliced_and_padded(tiny_qwen):
    rgb = (np.random.default_rng(0).random((90, 150, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    drop = 5
    hidden = _reference_states(tiny_qwen, image)
    total = hidden.shape[0]
    pixels = {"min_pixels": 4 * 28 * 28, "max_pixels": 8 * 28 * 28}

    short = total - drop - 7  # truncation: the last 7 tokens fall off
    embeds, masks = encode_step1x_empty_prompt(str(tiny_qwen), image, max_length=short, drop_tokens=drop,
                                               device="cpu", **pixels)
    assert embeds.shape == (short, HIDDEN) and embeds.dtype == torch.float32 and masks.dtype == torch.int64
    torch.testing.assert_close(embeds, hidden[drop:drop + short], atol=1e-5, rtol=1e-5)
    assert masks.tolist() == [1] * short

    long = total - drop + 9  # padding: 9 zero rows with mask 0
    embeds, masks = encode_step1x_empty_prompt(str(tiny_qwen), image, max_length=long, drop_tokens=drop,
                                               device="cpu", **pixels)
    torch.testing.assert_close(embeds[:total - drop], hidden[drop:], atol=1e-5, rtol=1e-5)
    assert (embeds[total - drop:] == 0).all()
    assert masks.tolist() == [1] * (total - drop) + [0] * 9


def test_cli_writes_a_file_load_qwen_states_reads(tiny_qwen, tmp_path):
    out = tmp_path / "step1x_empty.safetensors"
    assert main(["cache-prompt", "--family", "step1x", "--weights", str(tiny_qwen), "--out", str(out)]) == 0
    embeds, masks = load_qwen_states(str(out), HIDDEN)
    info = json.loads(Path(str(out) + ".json").read_text())
    assert info["image"].startswith("mid-grey (128,128,128)") and info["pre_resized_hw"] == [756, 1036]
    # Step1X's processor bounds 256..324 merged tokens: 756x1036 -> 420x588 pixels -> 30x42 patches -> 315
    assert info["image_grid_thw"] == [1, 30, 42] and info["image_tokens"] == 315
    assert embeds.shape == (640, HIDDEN) and masks.dtype == torch.bool
    assert int(masks.sum()) == min(640, info["total_tokens"] - 217) and bool(masks[0])
    assert (embeds[~masks] == 0).all()
    head = SYSTEM + "<|im_start|>user\n" + QWEN25VL_7B_PREFIX + "Picture 1: <|vision_start|>"
    assert info["vision_start_index"] == len(Tokenizer.from_file(str(tiny_qwen / "tokenizer.json")).encode(head).ids) - 1

    picture = tmp_path / "ref.png"
    Image.fromarray((np.random.default_rng(1).random((60, 80, 3)) * 255).astype(np.uint8)).save(picture)
    out2 = tmp_path / "step1x_ref.npz"
    assert main(["cache-prompt", "--family", "step1x", "--weights", str(tiny_qwen), "--out", str(out2),
                 "--image", str(picture)]) == 0
    info2 = json.loads(Path(str(out2) + ".json").read_text())
    assert info2["image"] == str(picture) and info2["image_size_hw"] == [60, 80]
    # 60x80 -> 56x84 (pre-resize) -> below 256*784 pixels: beta 6.532, ceil(13.06), ceil(19.60) -> 392x560
    assert info2["pre_resized_hw"] == [56, 84] and info2["image_grid_thw"] == [1, 28, 40]
    assert info2["total_tokens"] == info["total_tokens"] - 315 + 280
    assert load_qwen_states(str(out2), HIDDEN)[0].shape == (640, HIDDEN)


def test_cli_wrong_folders_exit_2_naming_them(tiny_qwen, tmp_path, capsys):
    out = str(tmp_path / "x.safetensors")
    missing = tmp_path / "nope"
    assert main(["cache-prompt", "--family", "step1x", "--weights", str(missing), "--out", out]) == 2
    assert str(missing) in capsys.readouterr().err

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tiny_qwen / "config.json").read_text())
    assert main(["cache-prompt", "--family", "step1x", "--weights", str(partial), "--out", out]) == 2
    err = capsys.readouterr().err
    assert str(partial) in err and "preprocessor_config.json" in err and "tokenizer.json" in err

    assert main(["cache-prompt", "--family", "flux", "--weights", str(tiny_qwen), "--out", out]) == 2
    assert "model_index.json" in capsys.readouterr().err  # the diffusers check still applies to the other families
    assert not Path(out).exists()
