"""Geometry-aware transforms on the sample dict."""

import torch

from datamodules.transforms import crop, hflip, resize


def _sample(h=6, w=8):
    g = torch.Generator().manual_seed(0)
    n = torch.randn(3, h, w, generator=g)
    n = n / n.norm(dim=0, keepdim=True)
    n[:, 0, 0] = 0  # one unknown normal
    K = torch.tensor([[10.0, 0, (w - 1) / 2 + 0.7], [0, 11.0, (h - 1) / 2 - 0.3], [0, 0, 1]])
    return {
        "rgb": torch.rand(3, h, w, generator=g) * 2 - 1,
        "depth": torch.rand(1, h, w, generator=g) + 1,
        "valid_mask": torch.rand(1, h, w, generator=g) > 0.3,
        "normal": n,
        "intrinsics": K,
        "name": "x",
        "dataset": "d",
    }


def test_hflip_negates_normal_x_and_mirrors_cx():
    s = _sample()
    f = hflip(s)
    w = 8
    for j in range(w):
        assert torch.equal(f["rgb"][:, :, j], s["rgb"][:, :, w - 1 - j])
        assert torch.equal(f["depth"][:, :, j], s["depth"][:, :, w - 1 - j])
        assert torch.equal(f["normal"][0, :, j], -s["normal"][0, :, w - 1 - j])
        assert torch.equal(f["normal"][1:, :, j], s["normal"][1:, :, w - 1 - j])
    assert abs(f["intrinsics"][0, 2].item() - (7 - s["intrinsics"][0, 2].item())) < 1e-6
    assert torch.equal(f["intrinsics"][1], s["intrinsics"][1])
    # a point at column u projects to 7 - u after the flip: u = fx X/Z + cx -> fx (-X)/Z + (7 - cx)
    assert torch.equal(hflip(f)["normal"], s["normal"])


def test_crop_shifts_principal_point():
    s = _sample()
    c = crop(s, 1, 2, 4, 5)
    assert c["rgb"].shape == (3, 4, 5) and torch.equal(c["depth"], s["depth"][:, 1:5, 2:7])
    assert torch.allclose(c["intrinsics"][:2, 2], s["intrinsics"][:2, 2] - torch.tensor([2.0, 1.0]))


def test_resize_scales_intrinsics_and_keeps_unit_normals():
    s = _sample()
    r = resize(s, 12, 16)
    K0, K1 = s["intrinsics"], r["intrinsics"]
    assert torch.allclose(K1[0, 0], K0[0, 0] * 2) and torch.allclose(K1[0, 2], (K0[0, 2] + 0.5) * 2 - 0.5)
    norms = r["normal"].norm(dim=0)
    known = norms > 0
    assert torch.allclose(norms[known], torch.ones_like(norms[known]), atol=1e-5)
    # nearest for depth: every output value is one of the inputs
    assert torch.isin(r["depth"], s["depth"]).all()
    assert r["valid_mask"].dtype == torch.bool
