"""Step1X-Edit original-layout checkpoint -> diffusers FluxTransformer2DModel (tiny random checkpoint)."""

import pytest
import torch
from diffusers import FluxTransformer2DModel

from lightning_modules.backbones.step1x import (
    split_connector,
    transformer_from_state_dict,
)

H, HD, D2, S1, TXT, VEC, IN = 32, 16, 2, 3, 32, 24, 64  # hidden, head dim, doubles, singles, text, pooled, in
AXES = (4, 6, 6)


def _original_checkpoint(seed=0):
    """Random tensors under the BFL/FLUX key names Step1X-Edit's released file uses (+ connector)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"img_in": (H, IN), "txt_in": (H, TXT), "time_in.in_layer": (H, 256), "time_in.out_layer": (H, H),
              "vector_in.in_layer": (H, VEC), "vector_in.out_layer": (H, H), "final_layer.linear": (IN, H),
              "final_layer.adaLN_modulation.1": (2 * H, H)}
    for i in range(D2):
        for s in ("img", "txt"):
            shapes.update({f"double_blocks.{i}.{s}_mod.lin": (6 * H, H), f"double_blocks.{i}.{s}_attn.qkv": (3 * H, H),
                           f"double_blocks.{i}.{s}_attn.proj": (H, H), f"double_blocks.{i}.{s}_mlp.0": (4 * H, H),
                           f"double_blocks.{i}.{s}_mlp.2": (H, 4 * H)})
    for i in range(S1):
        shapes.update({f"single_blocks.{i}.linear1": (7 * H, H), f"single_blocks.{i}.linear2": (H, 5 * H),
                       f"single_blocks.{i}.modulation.lin": (3 * H, H)})
    sd = {}
    for name, (o, i_) in shapes.items():
        sd[name + ".weight"] = torch.randn(o, i_, generator=g) / i_ ** 0.5
        sd[name + ".bias"] = torch.randn(o, generator=g) * 0.1
    norms = [f"double_blocks.{i}.{s}_attn.norm" for i in range(D2) for s in ("img", "txt")]
    norms += [f"single_blocks.{i}.norm" for i in range(S1)]
    for n in norms:
        for q in ("query_norm", "key_norm"):
            sd[f"{n}.{q}.scale"] = 1 + 0.1 * torch.randn(HD, generator=g)
    sd["connector.S.input_embedder.weight"] = torch.randn(8, 8, generator=g)
    sd["connector.global_proj_out.bias"] = torch.randn(8, generator=g)
    return sd


def _hand_mapping(sd):
    """Independent BFL -> diffusers mapping (written from the two architectures, not diffusers' converter)."""
    out = {}

    def lin(dst, src):
        out[dst + ".weight"], out[dst + ".bias"] = sd[src + ".weight"], sd[src + ".bias"]

    lin("x_embedder", "img_in"); lin("context_embedder", "txt_in")
    lin("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer")
    lin("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer")
    lin("time_text_embed.text_embedder.linear_1", "vector_in.in_layer")
    lin("time_text_embed.text_embedder.linear_2", "vector_in.out_layer")
    lin("proj_out", "final_layer.linear")
    w, b = sd["final_layer.adaLN_modulation.1.weight"], sd["final_layer.adaLN_modulation.1.bias"]
    out["norm_out.linear.weight"] = torch.cat([w[H:], w[:H]])  # BFL (shift, scale) -> diffusers (scale, shift)
    out["norm_out.linear.bias"] = torch.cat([b[H:], b[:H]])
    for i in range(D2):
        p, o = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        lin(o + "norm1.linear", p + "img_mod.lin"); lin(o + "norm1_context.linear", p + "txt_mod.lin")
        for s, names, nq, nk in (("img", ("to_q", "to_k", "to_v"), "norm_q", "norm_k"),
                                 ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"), "norm_added_q", "norm_added_k")):
            for j, n in enumerate(names):
                out[f"{o}attn.{n}.weight"] = sd[f"{p}{s}_attn.qkv.weight"][j * H:(j + 1) * H]
                out[f"{o}attn.{n}.bias"] = sd[f"{p}{s}_attn.qkv.bias"][j * H:(j + 1) * H]
            out[f"{o}attn.{nq}.weight"] = sd[f"{p}{s}_attn.norm.query_norm.scale"]
            out[f"{o}attn.{nk}.weight"] = sd[f"{p}{s}_attn.norm.key_norm.scale"]
        lin(o + "attn.to_out.0", p + "img_attn.proj"); lin(o + "attn.to_add_out", p + "txt_attn.proj")
        lin(o + "ff.net.0.proj", p + "img_mlp.0"); lin(o + "ff.net.2", p + "img_mlp.2")
        lin(o + "ff_context.net.0.proj", p + "txt_mlp.0"); lin(o + "ff_context.net.2", p + "txt_mlp.2")
    for i in range(S1):
        p, o = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        lin(o + "norm.linear", p + "modulation.lin"); lin(o + "proj_out", p + "linear2")
        for kind in ("weight", "bias"):
            t = sd[f"{p}linear1.{kind}"]
            out[f"{o}attn.to_q.{kind}"], out[f"{o}attn.to_k.{kind}"] = t[:H], t[H:2 * H]
            out[f"{o}attn.to_v.{kind}"], out[f"{o}proj_mlp.{kind}"] = t[2 * H:3 * H], t[3 * H:]
        out[f"{o}attn.norm_q.weight"] = sd[f"{p}norm.query_norm.scale"]
        out[f"{o}attn.norm_k.weight"] = sd[f"{p}norm.key_norm.scale"]
    return out


def _forward(model):
    g = torch.Generator().manual_seed(1)
    n, t = 12, 5
    ids = torch.cat([torch.zeros(n, 1), torch.randint(0, 4, (n, 2), generator=g).float()], dim=1)
    with torch.no_grad():
        return model(hidden_states=torch.randn(2, n, IN, generator=g),
                     encoder_hidden_states=torch.randn(2, t, TXT, generator=g),
                     pooled_projections=torch.randn(2, VEC, generator=g), timestep=torch.tensor([0.3, 1.0]),
                     img_ids=ids, txt_ids=torch.zeros(t, 3), return_dict=False)[0]


def test_split_connector_keeps_connector_apart():
    dit, connector = split_connector({"model.diffusion_model.img_in.weight": 1, "connector.a": 2})
    assert dit == {"img_in.weight": 1} and connector == {"connector.a": 2}


def test_step1x_conversion_matches_hand_mapping():
    sd = _original_checkpoint()
    model = transformer_from_state_dict(dict(sd), axes_dims_rope=AXES)  # strict load inside
    assert model.config.guidance_embeds is False
    assert (model.config.num_layers, model.config.num_single_layers) == (D2, S1)
    assert model.config.num_attention_heads == H // HD
    ref = FluxTransformer2DModel(patch_size=1, in_channels=IN, num_layers=D2, num_single_layers=S1,
                                 attention_head_dim=HD, num_attention_heads=H // HD, joint_attention_dim=TXT,
                                 pooled_projection_dim=VEC, guidance_embeds=False, axes_dims_rope=AXES)
    missing, unexpected = ref.load_state_dict(_hand_mapping(sd), strict=True)
    assert not missing and not unexpected
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    out, ref_out = _forward(model), _forward(ref)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)


def test_step1x_conversion_rejects_incomplete_checkpoint():
    sd = _original_checkpoint()
    del sd["single_blocks.1.linear2.weight"]
    with pytest.raises(KeyError):
        transformer_from_state_dict(sd, axes_dims_rope=AXES)


def test_step1x_conversion_rejects_wrong_rope():
    with pytest.raises(ValueError, match="axes_dims_rope"):
        transformer_from_state_dict(_original_checkpoint(), axes_dims_rope=(16, 56, 56))
