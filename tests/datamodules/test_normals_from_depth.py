"""normals_from_depth (blocked, planar, closed-form eigenvectors) against a per-pixel reference written
from its docstring: window points, relative depth test, covariance, np.linalg.eigh, facing the camera."""

import numpy as np

import datamodules.normals_from_depth as nfd

RADIUS, REL_TOL = 2, 0.1


def reference_normals(depth, valid, K):
    """(H,W,3) project-convention normals, pixel by pixel; NaN where the plane is ill-defined (the two
    smallest eigenvalues within 1e-3 of each other: the fast path zeroes some of those)."""
    h, w = depth.shape
    out = np.zeros((h, w, 3))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    def point(i, j):
        z = float(depth[i, j])
        return np.array([(j - cx) / fx * z, (i - cy) / fy * z, z])

    for i in range(h):
        for j in range(w):
            if not valid[i, j]:
                continue
            zc, pc = float(depth[i, j]), point(i, j)
            qs = []
            for di in range(-RADIUS, RADIUS + 1):
                for dj in range(-RADIUS, RADIUS + 1):
                    a, b = i + di, j + dj
                    ring = max(abs(di), abs(dj), 1)
                    if 0 <= a < h and 0 <= b < w and valid[a, b] and abs(float(depth[a, b]) - zc) <= REL_TOL * zc * ring:
                        qs.append(point(a, b) - pc)
            if len(qs) < 4:
                continue
            q = np.array(qs)
            cov = q.T @ q / len(q) - np.outer(q.mean(0), q.mean(0))
            lam, vec = np.linalg.eigh(cov)
            if lam[1] - lam[0] <= 1e-3 * max(lam[2], 1e-300):
                out[i, j] = np.nan
                continue
            n = vec[:, 0]
            if n @ pc > 0:  # face the camera
                n = -n
            out[i, j] = -n  # OpenCV (right, down, forward) -> project (left, up, toward camera)
    return out


def test_blocks_of_rows_give_the_per_pixel_plane_fit(monkeypatch):
    rng = np.random.default_rng(3)
    h, w = 23, 29
    yy, xx = np.mgrid[0:h, 0:w]
    depth = 4.0 + 0.05 * xx + 0.08 * yy + 0.02 * np.sin(xx / 3.0) * np.cos(yy / 2.0) + 0.01 * rng.random((h, w))
    depth[8:14, 10:20] *= 1.5  # a depth edge: the relative test keeps its sides apart
    depth[rng.random((h, w)) < 0.08] = 0.0
    depth = depth.astype(np.float32)
    valid = depth > 0
    K = np.array([[30.0, 0.0, 14.0], [0.0, 30.0, 11.0], [0.0, 0.0, 1.0]])
    expected = reference_normals(depth, valid, K)
    monkeypatch.setattr(nfd, "ROW_BLOCK_PIXELS", 3 * w)  # blocks of 3 rows, the last one of 2
    got = nfd.normals_from_depth(depth, valid, K, radius=RADIUS, rel_tol=REL_TOL)
    defined = ~np.isnan(expected).any(-1)
    assert defined.sum() > 0.8 * valid.sum()
    np.testing.assert_allclose(got[defined], expected[defined], atol=1e-5)
    assert (got[~valid] == 0).all()
    monkeypatch.setattr(nfd, "ROW_BLOCK_PIXELS", h * w)  # one block: the same bits
    assert nfd.normals_from_depth(depth, valid, K).tobytes() == got.tobytes()


def test_bench_times_a_base_checkout_next_to_this_one(tmp_path):
    """experiments.bench.data.normals_before_after: a base whose function differs is reported as not the same bits."""
    from pathlib import Path

    from experiments.bench.data import normals_before_after

    root = Path(nfd.__file__).resolve().parents[1]
    depth = np.full((12, 16), 5.0, np.float32) + np.arange(16, dtype=np.float32) * 0.1
    K = np.array([[20.0, 0.0, 8.0], [0.0, 20.0, 6.0], [0.0, 0.0, 1.0]])
    same = normals_before_after(root, depth, K, repeats=1)
    assert same["vkitti_normals_identical"] == 1.0 and same["vkitti_normals_base_s"] > 0 and same["vkitti_normals_now_s"] > 0
    (tmp_path / "datamodules").mkdir()
    (tmp_path / "datamodules" / "__init__.py").write_text("")  # a package, as in a checkout
    src = (root / "datamodules" / "normals_from_depth.py").read_text()
    (tmp_path / "datamodules" / "normals_from_depth.py").write_text(src.replace("out[ok] = -nrm", "out[ok] = nrm"))
    assert normals_before_after(tmp_path, depth, K, repeats=1)["vkitti_normals_identical"] == 0.0
