"""Step1X-Edit's text connector against an independent NumPy float64 implementation of its equations."""

import numpy as np
import pytest
import torch

from lightning_modules.backbones.step1x_connector import (
    ConnectorConfig,
    Step1XConnector,
    connector_from_state_dict,
)
from lightning_modules.backbones.text import ConnectorText

C, H, HEADS, DEPTH, P = 12, 16, 2, 2, 6  # state width, token width, heads, blocks, pooled width


def _reference(sd, x, m, t, heads):
    """The connector's equations (module docstring / Step1X-Edit's source), in NumPy float64."""
    sd = {k: v.double().numpy() for k, v in sd.items()}

    def lin(name, v):
        return v @ sd[name + ".weight"].T + sd[name + ".bias"]

    def silu(v):
        return v / (1 + np.exp(-v))

    def layer_norm(name, v):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * sd[name + ".weight"] + sd[name + ".bias"]

    b, n, _ = x.shape
    hidden = sd["S.input_embedder.weight"].shape[0]
    d = hidden // heads
    mean = (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    pooled = lin("global_proj_out", mean * (1 + sd["scale_factor"][0]))
    freqs = 10000.0 ** (-np.arange(128) / 128)
    temb = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    c = lin("S.t_embedder.mlp.2", silu(lin("S.t_embedder.mlp.0", temb)))
    c = c + lin("S.c_embedder.linear_2", silu(lin("S.c_embedder.linear_1", mean)))
    allowed = m[:, :, None] & m[:, None, :]
    allowed[:, :, 0] = True
    h = lin("S.input_embedder", x)
    for i in range(DEPTH):
        p = f"S.individual_token_refiner.blocks.{i}."
        gates = lin(p + "adaLN_modulation.1", silu(c))
        qkv = lin(p + "self_attn_qkv", layer_norm(p + "norm1", h)).reshape(b, n, 3, heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(d)
        scores = np.where(allowed[:, None], scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("bhij,bjhd->bihd", probs, v).reshape(b, n, hidden)
        h = h + gates[:, None, :hidden] * lin(p + "self_attn_proj", attn)
        mlp = lin(p + "mlp.fc2", silu(lin(p + "mlp.fc1", layer_norm(p + "norm2", h))))
        h = h + gates[:, None, hidden:] * mlp
    return h, pooled


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, C, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    return x * mask[..., None], mask


def test_connector_matches_numpy_reference(make_connector_sd):
    sd = make_connector_sd(C, H, DEPTH, P, seed=0)
    connector = connector_from_state_dict(dict(sd), head_dim=H // HEADS).double()
    assert connector.config == ConnectorConfig(in_channels=C, hidden=H, heads=HEADS, depth=DEPTH, pooled=P)
    x, mask = _inputs()
    # The connector takes sigma and embeds t = 1000 * sigma (released connector_edit.py: t = t * 1000).
    # Step1X-Edit builds the sinusoid in float32: exact to ~1e-7 rad at t <= 1, ~1e-4 rad at t = 1000
    for sigma, tol in (([0.001, 0.00037], 1e-7), ([1.0, 0.37], 1e-4)):
        sigma = torch.tensor(sigma, dtype=torch.float64)
        with torch.no_grad():
            tokens, pooled = connector(x.double(), mask, sigma)
        ref_tokens, ref_pooled = _reference(sd, x.double().numpy(), mask.numpy(), 1000.0 * sigma.numpy(), HEADS)
        np.testing.assert_allclose(tokens.numpy(), ref_tokens, rtol=tol, atol=tol)  # padding rows included
        np.testing.assert_allclose(pooled.numpy(), ref_pooled, rtol=1e-12, atol=1e-12)


def test_connector_text_feeds_the_connector_sigma_times_1000(make_connector_sd):
    sd = make_connector_sd(C, H, DEPTH, P)
    connector = connector_from_state_dict(dict(sd), head_dim=H // HEADS)
    x, mask = _inputs()
    text = ConnectorText(connector, x[0], mask[0])
    tokens, pooled = text(torch.tensor([1.0, 0.25]))
    assert tokens.shape == (2, 5, H) and pooled.shape == (2, P) and text.num_tokens == 5
    assert tokens.dtype == torch.float32 and not tokens.requires_grad
    # independent reference at t = 1000 * sigma, as Step1X-Edit's and FE2E's connector_edit.py (training AND
    # inference); t = sigma itself (what the project wrongly used to score the released LoRA) differs.
    x0, m0 = x[:1].double().numpy(), mask[:1].numpy()
    for i, sigma in enumerate((1.0, 0.25)):
        ref, _ = _reference(sd, x0, m0, np.array([1000.0 * sigma]), HEADS)
        np.testing.assert_allclose(tokens[i : i + 1].double().numpy(), ref, rtol=2e-4, atol=2e-4)
    unscaled, _ = _reference(sd, x0, m0, np.array([1.0]), HEADS)
    assert np.abs(tokens[:1].double().numpy() - unscaled).max() > 1e-2
    with pytest.raises(ValueError, match="states"):
        ConnectorText(connector, x[0, :, :5], mask[0])


def test_full_size_connector_has_the_released_key_names_and_shapes():
    with torch.device("meta"):
        connector = Step1XConnector(ConnectorConfig())
    got = {k: tuple(v.shape) for k, v in connector.state_dict().items()}
    q, w = 3584, 4096  # Qwen2.5-VL-7B width, connector width
    expected = {"scale_factor": (1,), "global_proj_out.weight": (768, q), "global_proj_out.bias": (768,),
                "S.input_embedder.weight": (w, q), "S.input_embedder.bias": (w,),
                "S.t_embedder.mlp.0.weight": (w, 256), "S.t_embedder.mlp.0.bias": (w,),
                "S.t_embedder.mlp.2.weight": (w, w), "S.t_embedder.mlp.2.bias": (w,),
                "S.c_embedder.linear_1.weight": (w, q), "S.c_embedder.linear_1.bias": (w,),
                "S.c_embedder.linear_2.weight": (w, w), "S.c_embedder.linear_2.bias": (w,)}
    for i in range(2):
        p = f"S.individual_token_refiner.blocks.{i}."
        for name, shape in {"norm1": (w,), "norm2": (w,), "self_attn_qkv": (3 * w, w), "self_attn_proj": (w, w),
                            "mlp.fc1": (4 * w, w), "mlp.fc2": (w, 4 * w), "adaLN_modulation.1": (2 * w, w)}.items():
            expected[p + name + ".weight"] = shape
            expected[p + name + ".bias"] = shape[:1]
    assert got == expected
    assert connector.config.heads == 32


def test_connector_loading_errors(make_connector_sd):
    sd = make_connector_sd(C, H, DEPTH, P)
    incomplete = {k: v for k, v in sd.items() if k != "S.individual_token_refiner.blocks.1.norm2.bias"}
    with pytest.raises(ValueError, match="(?s)step1x.safetensors.*norm2"):
        connector_from_state_dict(incomplete, "step1x.safetensors")
    with pytest.raises(ValueError, match="not a Step1X-Edit connector"):
        connector_from_state_dict({"img_in.weight": torch.zeros(2, 2)}, "dit.safetensors")


def test_qwen_states_file_formats(tmp_path):
    import numpy as np

    from lightning_modules.backbones.prompt import load_qwen_states, random_qwen_states, save_qwen_states

    states, mask = random_qwen_states(8, C, seed=0)
    assert mask.tolist() == [True] * 6 + [False] * 2 and states[6:].abs().sum() == 0
    np.savez(tmp_path / "no_info.npz", embeds=states[None].numpy().astype(np.float16), masks=mask[None].numpy())
    got, got_mask = load_qwen_states(str(tmp_path / "no_info.npz"), C)  # FE2E-style, with a batch axis
    torch.testing.assert_close(got, states.half().float())
    assert got_mask.dtype == torch.bool and torch.equal(got_mask, mask)
    save_qwen_states(str(tmp_path / "s.safetensors"), states, mask)
    torch.testing.assert_close(load_qwen_states(str(tmp_path / "s.safetensors"), C)[0], states)
    np.savez(tmp_path / "bad.npz", embeds=states.numpy())
    with pytest.raises(ValueError, match=r"bad.npz: missing keys \['masks'\]"):
        load_qwen_states(str(tmp_path / "bad.npz"), C)
    save_qwen_states(str(tmp_path / "empty.safetensors"), states, torch.zeros(8))
    with pytest.raises(ValueError, match="no token"):
        load_qwen_states(str(tmp_path / "empty.safetensors"), C)
    with pytest.raises(FileNotFoundError, match="cache-prompt --family step1x"):
        load_qwen_states(str(tmp_path / "absent.npz"), C)
