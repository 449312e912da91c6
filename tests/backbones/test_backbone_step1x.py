"""Step1X-Edit original-layout checkpoint -> diffusers FluxTransformer2DModel (tiny random checkpoint)."""

import pytest
import torch
from diffusers import FluxTransformer2DModel

from lightning_modules.backbones.step1x import (
    split_connector,
    transformer_from_state_dict,
)

H, HD, D2, S1, TXT, VEC, IN = 32, 16, 2, 3, 32, 24, 64  # hidden, head dim, doubles, singles, text, pooled, in
CONN_IN = 12  # width of the (stand-in) Qwen states the connector reads
AXES = (4, 6, 6)


def _original_checkpoint(connector_state_dict, seed=0):
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
    sd.update({"connector." + k: v for k, v in connector_state_dict(CONN_IN, TXT, 2, VEC, seed).items()})
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


def test_step1x_conversion_matches_hand_mapping(make_connector_sd):
    sd = _original_checkpoint(make_connector_sd)
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


def test_step1x_conversion_rejects_incomplete_checkpoint(make_connector_sd):
    sd = _original_checkpoint(make_connector_sd)
    del sd["single_blocks.1.linear2.weight"]
    with pytest.raises(KeyError):
        transformer_from_state_dict(sd, axes_dims_rope=AXES)


def test_step1x_conversion_rejects_wrong_rope(make_connector_sd):
    with pytest.raises(ValueError, match="axes_dims_rope"):
        transformer_from_state_dict(_original_checkpoint(make_connector_sd), axes_dims_rope=(16, 56, 56))


def _step1x_folder(tmp_path, make_connector_sd, single_file: bool):
    """A weights folder in one of the two layouts load_step1x reads, + a tiny VAE."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from lightning_modules.backbones.step1x import save_connector
    from lightning_modules.backbones.tiny import TINY_VAE_CONFIG

    sd = _original_checkpoint(make_connector_sd)
    save_file(sd, str(tmp_path / "step1x-edit-i1258.safetensors"))
    if not single_file:
        transformer_from_state_dict(dict(sd), axes_dims_rope=AXES).save_pretrained(tmp_path / "transformer")
        assert save_connector(str(tmp_path / "step1x-edit-i1258.safetensors"), str(tmp_path / "connector.safetensors")) \
            == len([k for k in sd if k.startswith("connector.")])
        (tmp_path / "step1x-edit-i1258.safetensors").unlink()
    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE_CONFIG).save_pretrained(tmp_path / "vae")
    return sd


def test_load_step1x_single_file_gives_dit_and_connector(tmp_path, make_connector_sd):
    from lightning_modules.backbones.step1x import load_step1x

    sd = _step1x_folder(tmp_path, make_connector_sd, single_file=True)
    transformer, connector = load_step1x(str(tmp_path), torch.float32, axes_dims_rope=AXES)
    assert transformer.config.joint_attention_dim == TXT
    for key, value in connector.state_dict().items():
        assert torch.equal(value, sd["connector." + key]), key
    assert not any(p.requires_grad for p in connector.parameters())


def test_step1x_backbone_feeds_connector_tokens_to_the_dit(tmp_path, make_connector_sd):
    """step1x-edit from a converted folder + connector.safetensors + FE2E-style no_info.npz."""
    from lightning_modules.backbones import BackboneConfig, build_backbone
    from lightning_modules.backbones import tokens as tok
    from lightning_modules.backbones.prompt import save_qwen_states
    from lightning_modules.backbones.step1x_connector import connector_from_state_dict

    sd = _step1x_folder(tmp_path, make_connector_sd, single_file=False)
    g = torch.Generator().manual_seed(3)
    mask = torch.tensor([1, 1, 1, 1, 0, 0])
    states = torch.randn(6, CONN_IN, generator=g) * mask[:, None]
    save_qwen_states(str(tmp_path / "no_info.npz"), states, mask)
    cfg = BackboneConfig(name="step1x-edit", weights=str(tmp_path), prompt_embeds=str(tmp_path / "no_info.npz"),
                         finetune="full", dit_dtype="float32")
    backbone = build_backbone(cfg)
    target, image = torch.randn(2, 16, 4, 6, generator=g), torch.randn(2, 16, 4, 6, generator=g)
    sigma = torch.tensor([1.0, 0.4])
    connector = connector_from_state_dict({k[len("connector."):]: v for k, v in sd.items() if k.startswith("connector.")})
    with torch.no_grad():
        out = backbone(target, image, sigma)
        txt, pooled = connector(states[None].expand(2, -1, -1), mask[None].expand(2, -1).bool(), sigma)
        ids = tok.position_ids(4, 6)  # Step1X: image tokens share the target's ids
        ref = backbone.transformer(hidden_states=torch.cat([tok.pack(target), tok.pack(image)], 1),
                                   encoder_hidden_states=txt, pooled_projections=pooled, timestep=sigma,
                                   img_ids=torch.cat([ids, ids]), txt_ids=torch.zeros(6, 3), return_dict=False)[0]
    assert out.num_text_tokens == 6  # padding tokens go to the DiT too, unmasked, as in Step1X-Edit
    torch.testing.assert_close(out.target, tok.unpack(ref[:, :6], 4, 6))
    torch.testing.assert_close(out.image, tok.unpack(ref[:, 6:], 4, 6))


def test_step1x_loading_errors_name_the_file(tmp_path, make_connector_sd):
    from lightning_modules.backbones import BackboneConfig, build_backbone
    from lightning_modules.backbones.prompt import save_qwen_states

    _step1x_folder(tmp_path, make_connector_sd, single_file=False)
    save_qwen_states(str(tmp_path / "wide.safetensors"), torch.zeros(4, CONN_IN + 1), torch.ones(4))
    cfg = BackboneConfig(name="step1x-edit", weights=str(tmp_path), finetune="full", dit_dtype="float32",
                         prompt_embeds=str(tmp_path / "wide.safetensors"))
    with pytest.raises(ValueError, match=r"wide.safetensors.*\(T, 12\)"):
        build_backbone(cfg)
    cfg.prompt_embeds = None
    with pytest.raises(ValueError, match="prompt_embeds is required"):
        build_backbone(cfg)
    (tmp_path / "connector.safetensors").unlink()
    cfg.prompt_embeds = str(tmp_path / "wide.safetensors")
    with pytest.raises(FileNotFoundError, match="connector.safetensors"):
        build_backbone(cfg)
