"""The GPU benchmark's FLOP formula against torch's FlopCounterMode on tiny FLUX models (CPU)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from experiments.bench.gpu import FluxDims, flux_forward_flops, main, train_step_flops

TINY = FluxDims(hidden=32, num_double=2, num_single=4, in_channels=64, text_dim=32, pooled_dim=32, guidance=True)


@pytest.mark.parametrize("rank", [0, 4])
def test_forward_flops_match_flop_counter(make_backbone, rank):
    bb = make_backbone("tiny-generator", finetune="lora" if rank else "full", lora_rank=max(rank, 1))
    target = torch.randn(1, 16, 6, 8)
    # the math SDPA kernel runs attention as matmuls the counter sees (the fused CPU kernel is not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        bb(target, target, torch.ones(1))
    n_image, n_text = 2 * 12, 8
    want = counter.get_total_flops()
    got = flux_forward_flops(TINY, n_image, n_text, lora_rank=rank)
    assert sum(got.values()) == want
    if not rank:
        assert got["lora"] == 0


def test_attention_term_by_hand():
    # L = 10 tokens, d = 32, 6 blocks: QK^T and AV are each L*L*d MACs = 2*L*L*d FLOPs
    assert flux_forward_flops(TINY, 6, 4)["attention"] == 6 * 2 * (2 * 10 * 10 * 32)


def test_train_step_multipliers():
    hw, model = train_step_flops({"linear": 1.0, "attention": 10.0, "lora": 100.0}, checkpointing=True)
    assert model == 2 + 30 + 300 and hw == model + 111


def test_bench_refuses_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(SystemExit, match="CUDA"):
        main([])


def test_bench_dry_run_on_cpu_with_tiny_dit():
    import argparse

    from experiments.bench.gpu import run
    from lightning_modules.backbones.tiny import TINY_FLUX_CONFIG

    args = argparse.Namespace(height=64, width=48, text_tokens=8, rank=4, steps=1, warmup=1, peak_tflops=989.0)
    out = run(args, torch, device="cpu", dit_config=TINY_FLUX_CONFIG)
    assert out["image_tokens"] == 2 * 4 * 3 and out["train_step_s"] > 0 and out["infer_forward_s"] > 0
    assert out["trainable_params"] == 4 * sum(i + o for i, o in _block_linear_shapes(32))


def _block_linear_shapes(d, f=4):
    double = [(d, 6 * d)] * 2 + [(d, d)] * 8 + [(d, f * d), (f * d, d)] * 2
    single = [(d, 3 * d)] + [(d, d)] * 3 + [(d, f * d), ((1 + f) * d, d)]
    return double * 2 + single * 4
