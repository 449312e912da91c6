"""image=None runs the target tokens alone (GenPercept's input); channel conditioning refuses it."""

import pytest
import torch


@pytest.mark.parametrize("name", ["tiny-generator", "tiny-editor", "tiny-qwen-generator"])
def test_target_tokens_alone(make_backbone, latents, name):
    bb = make_backbone(name, finetune="full")
    target, image = latents
    sigma = torch.full((2,), 0.5)
    alone = bb(target, None, sigma, capture=[bb.block_names()[-1]])
    assert alone.image is None and alone.target.shape == target.shape
    n = (target.shape[-2] // 2) * (target.shape[-1] // 2)
    assert alone.features[bb.block_names()[-1]].shape[1] == alone.num_text_tokens + n  # no image tokens
    with_image = bb(target, image, sigma)
    assert not torch.allclose(alone.target, with_image.target)  # the image tokens were really left out


def test_channel_conditioning_needs_the_image(make_backbone, latents):
    bb = make_backbone("tiny-generator", conditioning="channel")
    with pytest.raises(ValueError, match="conditioning='sequence'"):
        bb(latents[0], None, torch.ones(2))
