"""Procedural scenes rendered by exact analytic ray casting (vectorised NumPy).

Two scene kinds:
- "room": an indoor room (floor, ceiling, four walls, boxes, spheres); about a quarter of the rooms
  have an opening in the far wall that looks into the void, so some pixels have no geometry.
  Depths ~0.5-10 m.
- "road": a street (ground plane, building facades on both sides, boxed cars) under an empty sky
  (no geometry). Depths up to ~80 m.

Frames: the camera frame used for `cam_to_world` is Hypersim's / OpenGL's (x right, y up, z toward
the viewer; the camera looks along -z). The world frame is y-up. Pixel (row i, col j) has its centre
at image coordinates (j, i) (OpenCV convention), so a centred camera has cx = (W-1)/2,
cy = (H-1)/2 (as Virtual KITTI 2's cx = 620.5 at W = 1242, and as Hypersim's
x = linspace(-W/2+0.5, W/2-0.5, W)).

Everything is deterministic per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROOM_HFOV_DEG = 60.0
VKITTI_FOCAL_PX = 725.0087
VKITTI_WIDTH = 1242


@dataclass(frozen=True)
class SceneParams:
    """Controls of a procedural scene beyond its seed (the miniature priors' classes and edits).

    Every field None keeps what the seed draws, so a default render is unchanged.
    """

    light_dir: tuple[float, float, float] | None = None
    """World-frame direction TOWARD the light (y up); normalised. Default (0.4, 1, 0.3)."""
    hue: float | None = None
    """Object colour in [0, 1) (HSV hue): the albedo of every object (boxes, spheres, cars) is pulled
    70% toward this hue at saturation 0.8, value 0.8. Walls, floor and road keep their albedo."""
    num_objects: int | None = None
    """Objects in the scene: a room gets num_objects - 1 boxes and 1 sphere (>= 2), a road num_objects cars."""
    object_shift: tuple[float, float] | None = None
    """(dx, dz) metres added to the first object's position (world x right, z toward the camera)."""
    exposure: float | None = None
    """Radiance multiplier (1 = as rendered)."""


def hue_rgb(hue: float, saturation: float = 0.8, value: float = 0.8) -> np.ndarray:
    """(3,) RGB in [0, 1] of an HSV colour (hue in [0, 1), wraps)."""
    h6 = (hue % 1.0) * 6.0
    i, f = int(h6) % 6, h6 - int(h6)
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    return np.array([(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][i])


@dataclass
class RenderedView:
    """One rendered frame; arrays are (H, W[, C]) with row 0 at the top of the image."""

    rgb_linear: np.ndarray
    """(H,W,3) float32 linear HDR radiance >= 0 (textured Lambertian shading; sky/void gets a
    background radiance)."""
    distance: np.ndarray
    """(H,W) float32 metres from the optical centre along the ray; nan where no geometry."""
    depth: np.ndarray
    """(H,W) float32 planar z-depth in metres; nan where no geometry."""
    normal: np.ndarray
    """(H,W,3) float32 unit outward normals, camera frame x LEFT, y UP, z TOWARD camera; 0 where none."""
    position: np.ndarray
    """(H,W,3) float32 world-frame hit points (metres, y up); nan where none."""
    entity_id: np.ndarray
    """(H,W) int32 object id, -1 where no geometry."""
    K: np.ndarray
    """(3,3) float64 pinhole intrinsics in pixels."""
    cam_to_world: np.ndarray
    """(4,4) float64, camera frame x right, y up, z toward the viewer (OpenGL / Hypersim)."""


def default_intrinsics(kind: str, height: int, width: int) -> np.ndarray:
    """Default K: 60 deg horizontal FOV for "room" (886.81 px at W=1024), VKITTI-like for "road"
    (725.0087 px at W=1242, scaled with W); principal point at the image centre ((W-1)/2, (H-1)/2)."""
    if kind == "room":
        f = width / 2.0 / math.tan(math.radians(ROOM_HFOV_DEG / 2.0))
    elif kind == "road":
        f = VKITTI_FOCAL_PX * width / VKITTI_WIDTH
    else:
        raise ValueError(f"render kind must be 'room' or 'road', got {kind!r}")
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------- primitives
# quad: axis-aligned rectangle: (axis, coord, lo(2), hi(2)) over the two other axes in order.
# box: axis-aligned box (lo(3), hi(3)); sphere: (centre(3), radius).


class _Scene:
    def __init__(self) -> None:
        self.quads: list[tuple[int, float, np.ndarray, np.ndarray, int]] = []
        self.boxes: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.spheres: list[tuple[np.ndarray, float, int]] = []
        self.albedo: dict[int, np.ndarray] = {}
        self.pattern: dict[int, float] = {}
        self.objects: list[int] = []
        """Entity ids of the movable objects (boxes, spheres, cars), in creation order."""

    def quad(self, axis, coord, lo, hi, eid):
        self.quads.append((axis, float(coord), np.asarray(lo, float), np.asarray(hi, float), eid))

    def box(self, lo, hi, eid):
        self.boxes.append((np.asarray(lo, float), np.asarray(hi, float), eid))

    def sphere(self, centre, radius, eid):
        self.spheres.append((np.asarray(centre, float), float(radius), eid))


def _others(axis: int) -> tuple[int, int]:
    return [(1, 2), (0, 2), (0, 1)][axis]


def _cast(scene: _Scene, o: np.ndarray, d: np.ndarray):
    """Nearest hit per ray. o (3,), d (N,3) unit. Returns t (N,), normal (N,3) world, eid (N,)."""
    n = d.shape[0]
    t_best = np.full(n, np.inf)
    nrm = np.zeros((n, 3))
    eid = np.full(n, -1, np.int32)
    eps = 1e-9
    dc = [np.ascontiguousarray(d[:, k]) for k in range(3)]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [1.0 / np.where(np.abs(c) < eps, eps, c) for c in dc]
        for axis, coord, lo, hi, e in scene.quads:
            t = (coord - o[axis]) * inv[axis]
            a, b = _others(axis)
            pa = o[a] + t * dc[a]
            pb = o[b] + t * dc[b]
            hit = (t > 1e-6) & (t < t_best) & (pa >= lo[0]) & (pa <= hi[0]) & (pb >= lo[1]) & (pb <= hi[1])
            t_best[hit] = t[hit]
            eid[hit] = e
            nv = np.zeros(3)
            nv[axis] = 1.0
            nrm[hit] = nv
        for lo, hi, e in scene.boxes:
            tmin3, tfar = [], None
            for k in range(3):
                t0 = (lo[k] - o[k]) * inv[k]
                t1 = (hi[k] - o[k]) * inv[k]
                tmin3.append(np.minimum(t0, t1))
                far = np.maximum(t0, t1)
                tfar = far if tfar is None else np.minimum(tfar, far)
            tnear = np.maximum(np.maximum(tmin3[0], tmin3[1]), tmin3[2])
            hit = (tnear <= tfar) & (tnear > 1e-6) & (tnear < t_best)
            if not hit.any():
                continue
            t_best[hit] = tnear[hit]
            eid[hit] = e
            face = np.stack([m[hit] for m in tmin3], axis=1).argmax(axis=1)
            nv = np.zeros((face.size, 3))
            nv[np.arange(face.size), face] = 1.0
            nrm[hit] = nv
        for c, r, e in scene.spheres:
            oc = o - c
            b = dc[0] * oc[0] + dc[1] * oc[1] + dc[2] * oc[2]
            disc = b * b - (oc @ oc - r * r)
            t = -b - np.sqrt(np.maximum(disc, 0.0))
            hit = (disc > 0) & (t > 1e-6) & (t < t_best)
            t_best[hit] = t[hit]
            eid[hit] = e
            nrm[hit] = (o + t[hit, None] * d[hit] - c) / r
    # outward = facing the camera (visible side)
    flip = np.einsum("ij,ij->i", nrm, d) > 0
    nrm[flip] *= -1.0
    return t_best, nrm, eid


def _look_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world rotation of a level camera (no roll) looking along yaw (about world y,
    0 = looking along world -z) and pitch (positive = up)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


def _shifted(lo, hi, shift):
    """Box corners moved by shift = (dx, dz) (None: unchanged)."""
    if shift is None:
        return lo, hi
    d = np.array([shift[0], 0.0, shift[1]])
    return tuple(np.asarray(lo, float) + d), tuple(np.asarray(hi, float) + d)


def _room(rng: np.random.Generator, params: SceneParams):
    s = _Scene()
    w, length, h = rng.uniform(4.0, 7.0), rng.uniform(6.0, 9.0), rng.uniform(2.6, 3.2)
    x0, x1, z0, z1 = -w / 2, w / 2, -length, 0.0
    s.quad(1, 0.0, (x0, z0), (x1, z1), 0)  # floor
    s.quad(1, h, (x0, z0), (x1, z1), 1)  # ceiling
    # far wall (z = z0), in about a quarter of the rooms with an opening to the void
    ox0 = rng.uniform(x0 + 0.3, x1 - 1.8)
    ox1, oy0, oy1 = ox0 + rng.uniform(1.0, 1.5), rng.uniform(0.6, 1.0), rng.uniform(1.8, 2.3)
    if rng.random() > 0.25:
        ox1 = ox0  # no opening
    s.quad(2, z0, (x0, 0), (ox0, h), 2)
    s.quad(2, z0, (ox1, 0), (x1, h), 2)
    s.quad(2, z0, (ox0, 0), (ox1, oy0), 2)
    s.quad(2, z0, (ox0, oy1), (ox1, h), 2)
    s.quad(2, z1, (x0, 0), (x1, h), 3)  # wall behind the camera
    s.quad(0, x0, (0, z0), (h, z1), 4)
    s.quad(0, x1, (0, z0), (h, z1), 5)
    eid = 6
    n_boxes = int(rng.integers(2, 5))
    if params.num_objects is not None:
        n_boxes = max(1, params.num_objects - 1)
    for _ in range(n_boxes):
        bw, bd, bh = rng.uniform(0.4, 1.2, 3)
        cx, cz = rng.uniform(x0 + bw, x1 - bw), rng.uniform(z0 + bd, z0 + 0.6 * length)
        lo, hi = (cx - bw / 2, 0, cz - bd / 2), (cx + bw / 2, bh, cz + bd / 2)
        s.box(*_shifted(lo, hi, params.object_shift if eid == 6 else None), eid)
        s.objects.append(eid)
        eid += 1
    n_spheres = int(rng.integers(1, 3)) if params.num_objects is None else 1
    for _ in range(n_spheres):
        r = rng.uniform(0.2, 0.5)
        s.sphere((rng.uniform(x0 + r, x1 - r), rng.uniform(r, 1.5), rng.uniform(z0 + r, z0 + 0.6 * length)), r, eid)
        s.objects.append(eid)
        eid += 1
    cam = np.array([rng.uniform(-0.3, 0.3) * w, rng.uniform(1.2, 1.7), -rng.uniform(0.3, 1.0)])
    return s, cam, rng.uniform(-0.35, 0.35), rng.uniform(-0.15, 0.05)


def _road(rng: np.random.Generator, params: SceneParams):
    s = _Scene()
    length, half = 75.0, rng.uniform(5.0, 8.0)
    s.quad(1, 0.0, (-half - 4, -length), (half + 4, 5), 0)  # ground (road + sidewalks)
    eid = 1
    for side in (-1, 1):
        z = 5.0
        while z > -length:
            seg = rng.uniform(8.0, 20.0)
            if rng.random() < 0.85:
                s.quad(0, side * (half + 4), (0, z - seg), (rng.uniform(6.0, 15.0), z), eid)
                eid += 1
            z -= seg + rng.uniform(0.0, 3.0)
    n_cars = int(rng.integers(3, 8)) if params.num_objects is None else params.num_objects
    for i in range(n_cars):
        lane = rng.choice([-1, 1]) * rng.uniform(1.5, half - 1.0)
        z = -rng.uniform(6.0, 60.0)
        cw, cl, ch = rng.uniform(1.6, 1.9), rng.uniform(3.8, 4.8), rng.uniform(1.4, 1.7)
        lo, hi = (lane - cw / 2, 0.15, z - cl / 2), (lane + cw / 2, 0.15 + ch, z + cl / 2)
        s.box(*_shifted(lo, hi, params.object_shift if i == 0 else None), eid)
        s.objects.append(eid)
        eid += 1
    cam = np.array([rng.uniform(-1.0, 1.0), 1.65, 0.0])
    return s, cam, rng.uniform(-0.08, 0.08), rng.uniform(-0.03, 0.01)


def _shade(pos, nrm, eid, valid, dirs, kind, rng, params: SceneParams, objects: list[int]):
    """Textured Lambertian radiance (linear HDR) plus a background where nothing was hit."""
    n_ent = int(eid.max()) + 1 if valid.any() else 1
    albedo = rng.uniform(0.15, 0.85, (max(n_ent, 1), 3))
    freq = rng.uniform(1.0, 4.0, max(n_ent, 1))
    if params.hue is not None:
        tinted = [e for e in objects if e < albedo.shape[0]]
        albedo[tinted] = 0.3 * albedo[tinted] + 0.7 * hue_rgb(params.hue)
    light = np.array(params.light_dir if params.light_dir is not None else [0.4, 1.0, 0.3], dtype=np.float64)
    light /= np.linalg.norm(light)
    power = 3.0 if kind == "road" else 1.6
    rgb = np.zeros((pos.shape[0], 3))
    p, e = pos[valid], eid[valid]
    tex = 0.75 + 0.25 * np.sign(np.sin(freq[e, None] * p * math.pi)).prod(axis=1, keepdims=True)
    lam = np.clip(nrm[valid] @ light, 0.0, None)[:, None]
    rgb[valid] = albedo[e] * tex * (0.25 + power * lam)
    up = np.clip(dirs[~valid, 1], 0, 1)[:, None]
    sky = np.array([0.5, 0.7, 1.2]) * (1.5 + up) if kind == "road" else np.array([0.02, 0.02, 0.03])
    rgb[~valid] = sky
    return rgb if params.exposure is None else rgb * params.exposure


def render_scene(
    kind: str,
    height: int,
    width: int,
    seed: int,
    K: np.ndarray | None = None,
    yaw_deg: float | None = None,
    pitch_deg: float | None = None,
    camera_offset: tuple[float, float, float] | None = None,
    params: SceneParams | None = None,
) -> RenderedView:
    """Render one frame of a procedural `kind` ("room" or "road") scene, deterministic in `seed`.

    `K` defaults to `default_intrinsics(kind, height, width)`. `yaw_deg` / `pitch_deg` override
    the random camera orientation (a level camera with yaw 0 looks straight at the far wall / down
    the road; the camera never rolls). `camera_offset` moves the camera by this vector in its own
    frame (x right, y up, z back; metres), e.g. (0.532, 0, 0) for a stereo right camera.
    `params` sets light, object colour, count, placement and exposure (`SceneParams`); two renders of
    one seed that differ in one field are an edit pair (same camera and layout otherwise).
    """
    params = params if params is not None else SceneParams()
    if K is None:
        K = default_intrinsics(kind, height, width)
    K = np.asarray(K, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if kind == "room":
        scene, cam, yaw, pitch = _room(rng, params)
    elif kind == "road":
        scene, cam, yaw, pitch = _road(rng, params)
    else:
        raise ValueError(f"render kind must be 'room' or 'road', got {kind!r}")
    yaw = math.radians(yaw_deg) if yaw_deg is not None else yaw
    pitch = math.radians(pitch_deg) if pitch_deg is not None else pitch
    rot = _look_rotation(yaw, pitch)
    c2w = np.eye(4)
    if camera_offset is not None:
        cam = cam + rot @ np.asarray(camera_offset, dtype=np.float64)
    c2w[:3, :3], c2w[:3, 3] = rot, cam

    jj, ii = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x_cv = (jj - K[0, 2]) / K[0, 0]
    y_cv = (ii - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x_cv, -y_cv, -np.ones_like(x_cv)], axis=-1).reshape(-1, 3)  # GL camera frame
    ray_len = np.linalg.norm(d_cam, axis=1)
    d_cam /= ray_len[:, None]
    d_world = d_cam @ rot.T
    t, nrm_w, eid = _cast(scene, cam, d_world)
    valid = eid >= 0
    t = np.where(valid, t, np.nan)
    pos = cam + t[:, None] * d_world
    rgb = _shade(pos, nrm_w, eid, valid, d_world, kind, rng, params, scene.objects)

    nrm_cam = nrm_w @ rot  # world -> GL camera (R^T n)
    nrm_cam[:, 0] *= -1.0  # project convention: x LEFT
    nrm_cam[~valid] = 0.0
    shape = (height, width)
    return RenderedView(
        rgb_linear=rgb.reshape(*shape, 3).astype(np.float32),
        distance=t.reshape(shape).astype(np.float32),
        depth=(t / ray_len).reshape(shape).astype(np.float32),
        normal=nrm_cam.reshape(*shape, 3).astype(np.float32),
        position=pos.reshape(*shape, 3).astype(np.float32),
        entity_id=eid.reshape(shape),
        K=K,
        cam_to_world=c2w,
    )
