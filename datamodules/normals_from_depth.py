"""Surface normals from a depth map by a local plane fit (SPEC section 5, for Virtual KITTI)."""

from __future__ import annotations

import numpy as np


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H,W) planar depth -> (H,W,3) points in the OpenCV camera frame (x right, y down, z forward)."""
    h, w = depth.shape
    j = np.arange(w, dtype=np.float64)[None, :]
    i = np.arange(h, dtype=np.float64)[:, None]
    z = depth.astype(np.float64)
    return np.stack([(j - K[0, 2]) / K[0, 0] * z, (i - K[1, 2]) / K[1, 1] * z, z], axis=-1)


def normals_from_depth(
    depth: np.ndarray, valid: np.ndarray, K: np.ndarray, radius: int = 2, rel_tol: float = 0.1
) -> np.ndarray:
    """Unit outward normals (H,W,3) float32, project convention (x LEFT, y UP, z TOWARD camera).

    Each valid pixel fits a plane (least squares: the smallest-eigenvalue direction of the
    covariance) to the valid points of its (2*radius+1)^2 window whose depth differs from the centre
    by at most rel_tol * depth * (window ring index), which keeps depth edges apart. Normals face the
    camera. Pixels that are invalid or have fewer than 4 usable neighbours get the zero vector.
    """
    h, w = depth.shape
    pts = backproject(np.where(valid, depth, 0.0), K)
    z = np.where(valid, depth, np.nan).astype(np.float64)
    pad = radius
    pts_p = np.pad(pts, ((pad, pad), (pad, pad), (0, 0)))
    z_p = np.pad(z, pad, constant_values=np.nan)
    count = np.zeros((h, w))
    s1 = np.zeros((h, w, 3))
    s2 = np.zeros((h, w, 6))
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    with np.errstate(invalid="ignore"):
        for di in range(-radius, radius + 1):
            for dj in range(-radius, radius + 1):
                zn = z_p[pad + di : pad + di + h, pad + dj : pad + dj + w]
                ring = max(abs(di), abs(dj))
                use = np.abs(zn - z) <= rel_tol * z * max(ring, 1)  # False where either is nan
                q = (pts_p[pad + di : pad + di + h, pad + dj : pad + dj + w] - pts) * use[..., None]
                count += use
                s1 += q
                for k, (a, b) in enumerate(pairs):
                    s2[..., k] += q[..., a] * q[..., b]
    ok = valid & (count >= 4)
    n = count[ok][:, None]
    mean = s1[ok] / n
    cov = s2[ok] / n - np.stack([mean[:, a] * mean[:, b] for a, b in pairs], axis=1)
    nrm, good = _smallest_eigenvector(cov)
    facing = np.einsum("nc,nc->n", nrm, pts[ok]) > 0
    nrm[facing] *= -1.0
    nrm[~good] = 0.0
    out = np.zeros((h, w, 3), np.float32)
    out[ok] = -nrm  # OpenCV (right, down, forward) -> project (left, up, toward camera)
    return out


def _smallest_eigenvector(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit eigenvectors of the smallest eigenvalue of symmetric 3x3 matrices given as (N,6)
    upper triangles (00,01,02,11,12,22), in closed form; `good` is False where the two smallest
    eigenvalues are (nearly) equal, i.e. the points do not span a plane."""
    a00, a01, a02, a11, a12, a22 = c.T
    q = (a00 + a11 + a22) / 3.0
    p1 = a01**2 + a02**2 + a12**2
    p = np.sqrt(((a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * p1) / 6.0)
    ps = np.where(p > 0, p, 1.0)
    b00, b11, b22 = (a00 - q) / ps, (a11 - q) / ps, (a22 - q) / ps
    b01, b02, b12 = a01 / ps, a02 / ps, a12 / ps
    det = b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02)
    phi = np.arccos(np.clip(det / 2.0, -1.0, 1.0)) / 3.0
    lam = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    rows = np.stack(
        [np.stack([a00 - lam, a01, a02], -1), np.stack([a01, a11 - lam, a12], -1), np.stack([a02, a12, a22 - lam], -1)], 1
    )
    crosses = np.stack([np.cross(rows[:, 0], rows[:, 1]), np.cross(rows[:, 0], rows[:, 2]), np.cross(rows[:, 1], rows[:, 2])], 1)
    norms = np.linalg.norm(crosses, axis=-1)
    best = norms.argmax(axis=1)
    idx = np.arange(len(best))
    vec = crosses[idx, best]
    size = norms[idx, best]
    good = size > 1e-6 * (3.0 * p) ** 2
    return vec / np.where(good, size, 1.0)[:, None], good
