"""MERGE's converters: grouping (SPEC section 10), initialisation, the forward's call order, the
unchanged generator path, the trainable count on full-size FLUX, and zero-init image independence."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock

from lightning_modules.backbones import BackboneConfig, build_backbone, tokens
from lightning_modules.backbones.flux import FLUX_DIT_CONFIG
from lightning_modules.backbones.merge_backbone import MergeBackbone
from lightning_modules.backbones.merge_converters import MergeConverters, flux_forward, group_blocks
from lightning_modules.backbones.tiny import TINY_FLUX_CONFIG
from lightning_modules.objectives.sampling import flux_dynamic_shift, inference_sigmas

SMALL = dict(TINY_FLUX_CONFIG, num_layers=4, num_single_layers=5)  # groups of 2 and of 3 with K = 2


def small_base(seed: int = 0) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(**SMALL, guidance_embeds=True).requires_grad_(False)


def inputs(n_tokens: int = 12, channels: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(2, n_tokens, channels, generator=g),
                encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                pooled_projections=torch.randn(2, 32, generator=g), timestep=torch.tensor([0.3, 0.8]),
                img_ids=tokens.position_ids(6, 8), txt_ids=torch.zeros(5, 3), guidance=torch.tensor([0.0, 0.0]))


def test_groups_of_flux_sections_as_spec():
    r = lambda a, b: list(range(a, b + 1))
    assert group_blocks(19, 5) == [r(0, 3), r(4, 7), r(8, 11), r(12, 15), r(16, 18)]
    assert group_blocks(38, 5) == [r(0, 7), r(8, 15), r(16, 23), r(24, 31), r(32, 37)]


def test_groups_of_tiny_models_and_edge_cases():
    assert group_blocks(2, 5) == [[0], [1]]            # tiny generator: 2 double blocks
    assert group_blocks(4, 5) == [[0], [1], [2], [3]]  # and 4 single blocks
    assert group_blocks(4, 2) == [[0, 1], [2, 3]]
    assert group_blocks(5, 2) == [[0, 1, 2], [3, 4]]
    assert group_blocks(6, 4) == [[0, 1], [2, 3], [4, 5]]  # ceil(6/4) = 2: the 4th group would be empty
    assert group_blocks(7, 1) == [list(range(7))]
    assert group_blocks(0, 5) == []
    with pytest.raises(ValueError, match="num_converters"):
        group_blocks(4, 0)


def test_trainable_count_on_full_size_flux_is_spec_value():
    with torch.device("meta"):
        base = FluxTransformer2DModel(**FLUX_DIT_CONFIG, guidance_embeds=True)
        conv = MergeConverters(base, 5)
    assert (len(conv.double_blocks), len(conv.single_blocks)) == (5, 5)
    assert sum(p.numel() for p in conv.parameters() if p.requires_grad) == 1_435_391_552  # SPEC section 10


def test_initialisation():
    base = small_base()
    conv = MergeConverters(base, 2, seed=3)
    assert conv.double_groups == [[0, 1], [2, 3]] and conv.single_groups == [[0, 1, 2], [3, 4]]
    assert all(type(b) is FluxSingleTransformerBlock for b in [*conv.double_blocks, *conv.single_blocks])
    # single-stream converters: copies of the base block at the group's FIRST index (0 and 3), own tensors
    for converter, first in zip(conv.single_blocks, (0, 3)):
        for (name, p), q in zip(converter.state_dict().items(), base.single_transformer_blocks[first].state_dict().values()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    # double-stream converters: random, seeded
    again = MergeConverters(base, 2, seed=3)
    other = MergeConverters(base, 2, seed=4)
    w = lambda c: c.double_blocks[0].proj_mlp.weight
    assert torch.equal(w(conv), w(again)) and not torch.equal(w(conv), w(other))
    assert not torch.equal(w(conv), base.single_transformer_blocks[0].proj_mlp.weight)
    # input projection: [depth ; image] channels, depth half = base x_embedder, image half zero
    assert conv.x_embedder.weight.shape == (32, 128)
    assert torch.equal(conv.x_embedder.weight[:, :64], base.x_embedder.weight)
    assert torch.count_nonzero(conv.x_embedder.weight[:, 64:]) == 0
    assert torch.equal(conv.x_embedder.bias, base.x_embedder.bias)
    assert torch.equal(conv.proj_out.weight, base.proj_out.weight)
    assert conv.proj_out.weight.data_ptr() != base.proj_out.weight.data_ptr()
    assert torch.equal(conv.norm_out.linear.weight, base.norm_out.linear.weight)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in conv.parameters())
    assert not any(p.requires_grad for p in base.parameters())


def test_converters_off_equals_the_diffusers_model():
    base = small_base()
    x = inputs()
    want = base(**x, return_dict=False)[0]
    assert torch.equal(flux_forward(base, **x), want)


def test_each_converter_runs_before_every_block_of_its_group():
    base = small_base()
    conv = MergeConverters(base, 2)
    names = {id(b): f"conv.d{i}" for i, b in enumerate(conv.double_blocks)}
    names.update({id(b): f"conv.s{i}" for i, b in enumerate(conv.single_blocks)})
    names.update({id(b): f"base.d{i}" for i, b in enumerate(base.transformer_blocks)})
    names.update({id(b): f"base.s{i}" for i, b in enumerate(base.single_transformer_blocks)})
    calls = []

    def record(module, args):
        calls.append((names[id(module)], args[0].shape[1], args[1].shape[1]))  # (who, image tokens, text tokens)

    blocks = [*conv.double_blocks, *conv.single_blocks, *base.transformer_blocks, *base.single_transformer_blocks]
    handles = [b.register_forward_pre_hook(record) for b in blocks]
    x = inputs()
    x["hidden_states"] = torch.cat([x["hidden_states"], torch.randn(2, 12, 64)], dim=2)
    flux_forward(base, **x, converters=conv)
    for h in handles:
        h.remove()
    expected = ["conv.d0", "base.d0", "conv.d0", "base.d1", "conv.d1", "base.d2", "conv.d1", "base.d3",
                "conv.s0", "base.s0", "conv.s0", "base.s1", "conv.s0", "base.s2",
                "conv.s1", "base.s3", "conv.s1", "base.s4"]
    assert [c[0] for c in calls] == expected
    for who, n_image, n_text in calls:
        assert n_image == 12
        assert n_text == (0 if who.startswith("conv.d") else 5), who  # double converters: image tokens only


def _merge_backbone(**overrides) -> MergeBackbone:
    cfg = BackboneConfig(name="tiny-generator", finetune="frozen", dit_dtype="float32", guidance=0.0, **overrides)
    return MergeBackbone.from_flux(build_backbone(cfg), 5, seed=0)


def test_generator_path_is_the_plain_diffusers_model():
    bb = _merge_backbone()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 6, 8, generator=g)
    sigma = torch.tensor([0.2, 0.9])
    emb, pooled = bb.text(sigma)
    want = bb.transformer(hidden_states=tokens.pack(x), encoder_hidden_states=emb, pooled_projections=pooled,
                          timestep=sigma, img_ids=tokens.position_ids(6, 8), txt_ids=torch.zeros(emb.shape[1], 3),
                          guidance=torch.full((2,), 2.5), return_dict=False)[0]
    assert torch.equal(bb.generator_velocity(x, sigma, guidance=2.5), tokens.unpack(want, 6, 8))


def test_output_does_not_depend_on_the_image_at_step_zero():
    bb = _merge_backbone()
    g = torch.Generator().manual_seed(0)
    target, image_a, image_b = (torch.randn(2, 16, 6, 8, generator=g) for _ in range(3))
    sigma = torch.tensor([0.4, 0.7])
    out_a, out_b = bb(target, image_a, sigma), bb(target, image_b, sigma)
    assert out_a.image is None  # the image enters as channels: no image-token output
    assert torch.equal(out_a.target, out_b.target)
    with torch.no_grad():  # once the image half is non-zero, the image matters (the check can fail)
        bb.converters.x_embedder.weight[:, 64:].normal_(0, 0.02)
    assert not torch.allclose(bb(target, image_a, sigma).target, bb(target, image_b, sigma).target)


def test_only_converters_train_and_the_image_reaches_them():
    bb = _merge_backbone()
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("converters.") for n in trainable)
    g = torch.Generator().manual_seed(0)
    target, image = torch.randn(2, 16, 6, 8, generator=g), torch.randn(2, 16, 6, 8, generator=g)
    bb(target, image, torch.tensor([0.5, 0.5])).target.square().mean().backward()
    grad = bb.converters.x_embedder.weight.grad
    assert grad is not None and grad[:, 64:].abs().sum() > 0  # the zero image half still learns


def test_flux_dynamic_schedule_matches_spec_formula():
    n, tokens_l = 4, 1024
    mu = 0.5 + 0.65 * (tokens_l - 256) / 3840  # SPEC section 3, worked by hand below
    t = [1.0, 0.75, 0.5, 0.25, 0.0]
    want = [0.0 if v == 0 else math.exp(mu) / (math.exp(mu) + 1 / v - 1) for v in t]
    assert inference_sigmas(n, flux_dynamic_shift(tokens_l)).tolist() == pytest.approx(want, abs=1e-6)
    assert inference_sigmas(n, flux_dynamic_shift(256))[2] == pytest.approx(math.exp(0.5) / (math.exp(0.5) + 1))


def test_gradient_checkpointing_gives_the_same_gradients():
    g = torch.Generator().manual_seed(0)
    target, image = torch.randn(2, 16, 6, 8, generator=g), torch.randn(2, 16, 6, 8, generator=g)
    grads = []
    for ckpt in (False, True):
        bb = _merge_backbone(gradient_checkpointing=ckpt)
        assert bb.transformer.gradient_checkpointing == ckpt
        with torch.no_grad():
            bb.converters.x_embedder.weight[:, 64:].normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
        bb(target, image, torch.tensor([0.3, 0.6])).target.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in bb.converters.named_parameters()})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
