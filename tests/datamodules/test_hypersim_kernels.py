"""The fast Hypersim kernels against independent references: NumPy's own percentile, the tone-map
formula on every float16 bit pattern, and the float64 inward-normal formula on pixels placed within
float32 rounding of the threshold (where a plain float32 test is shown to get some wrong)."""

import numpy as np
import pytest

from datamodules import hypersim_kernels as K

T = -1e-3  # SPEC 5: n . u < -1e-3 is inward


def same_bits(a, b) -> bool:
    return np.asarray(a).dtype == np.asarray(b).dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _cases(rng):
    n = 786432
    x = (rng.random(n) ** 3 * 5).astype(np.float32)
    yield "continuous", x
    yield "heavy ties", np.round(x * 3).astype(np.float32)
    masked = x.copy()
    masked[rng.random(n) < 0.3] = np.nan
    yield "30% NaN (excluded)", masked
    yield "sorted", np.sort(x)
    flat = np.full(n, 2.5, np.float32)
    flat[::7] = 1.0
    yield "two values", flat
    neg = -x
    neg[rng.random(n) < 0.01] = np.inf
    yield "negative with inf", neg
    trap = (rng.random(n) * 100 + 1).astype(np.float32)
    trap[:: (n // 8192) | 1] = 0.0  # the strided sample sees only zeros: its bracket misses
    yield "sample-aliasing trap", trap
    yield "small", x[:1000]
    yield "5000 values", x[:5000]
    yield "single", x[:1]


def test_percentile90_is_numpys_nanpercentile_bit_for_bit():
    rng = np.random.default_rng(0)
    for name, values in _cases(rng):
        ref = np.nanpercentile(values, 90)
        got = K.percentile90(values.copy())
        assert same_bits(got, ref), (name, got, ref)
        assert type(got) is np.float32, name


def test_percentile90_many_sizes_and_fractions():
    """Sizes around the sample size, so that the interpolation weight covers both halves of [0, 1)."""
    rng = np.random.default_rng(1)
    for n in [*range(4096, 4296), 8191, 8192, 8193, 12345, 65537, 100003]:
        values = (rng.standard_normal(n) * np.exp(rng.standard_normal(n))).astype(np.float32)
        assert same_bits(K.percentile90(values), np.percentile(values, 90)), n
        k = int(np.floor((n - 1) * 0.9))  # a gap between ranks k and k+1: the interpolation shows
        gap = np.concatenate([rng.random(k + 1), 10 + rng.random(n - k - 1)]).astype(np.float32)
        assert same_bits(K.percentile90(rng.permutation(gap)), np.percentile(gap, 90)), n


def test_exposure_scale_ignores_invalid_pixels():
    rng = np.random.default_rng(2)
    b = (rng.random((300, 400)) * 4).astype(np.float32)
    valid = rng.random((300, 400)) > 0.2
    b[~valid] = 1e6  # would dominate p90 if counted
    p90 = np.percentile(b[valid], 90)
    assert same_bits(K.exposure_scale(b.copy(), valid), 0.8**2.2 / p90)
    assert K.exposure_scale(np.zeros((300, 400), np.float32), valid) == 0.0


def _tone_bytes_reference(scale):
    """round(clip(max(scale * x, 0) ^ (1/2.2), 0, 1) * 255) for every float16 x (NaN -> 0, inf ->
    float32 max), in float32, one value at a time over the whole table (SPEC 6)."""
    x = np.nan_to_num(np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32))
    with np.errstate(over="ignore", invalid="ignore"):
        tone = np.clip(np.maximum(scale * x, np.float32(0)) ** np.float32(1 / 2.2), 0, 1).astype(np.float32)
        return np.round(tone * np.float32(255)).astype(np.uint8)


@pytest.mark.parametrize("scale", [0.0, np.float32(1e-3), np.float32(0.37), np.float32(5.0), np.float32(3e4)])
def test_tone_table_matches_the_formula_on_every_bit_pattern(scale):
    assert np.array_equal(K.tone_table_uint8(scale), _tone_bytes_reference(scale))


def test_tone_scale_float16_nonfinite_at_valid_pixels_goes_through_nan_to_num():
    """As the release's float16 tone map: NaN -> 0, inf -> float32 max where a valid pixel is not finite."""
    rng = np.random.default_rng(3)
    hdr = (rng.random((64, 80, 3)) * 3).astype(np.float16)
    hdr[1, 1, 0], hdr[2, 2, 1] = np.nan, np.inf
    valid = np.ones((64, 80), bool)
    px = np.nan_to_num(hdr.astype(np.float32))
    with np.errstate(over="ignore"):
        brightness = np.float32(0.3) * px[..., 0] + np.float32(0.59) * px[..., 1] + np.float32(0.11) * px[..., 2]
    p90 = np.percentile(brightness[valid], 90)
    assert same_bits(K.tone_scale(hdr, valid), 0.8**2.2 / p90)
    hdr32 = hdr.astype(np.float32)  # float32 HDR: taken as is, a NaN p90 stays NaN
    hdr32[5, 5, 2] = np.nan
    valid[1, 1] = valid[2, 2] = False
    assert np.isnan(K.tone_scale(hdr32, valid))


def _inward_reference(normal, position, camera):
    """n . (camera - point) < T ||camera - point||, float64, written out (SPEC 5; Marigold)."""
    n, p = normal.astype(np.float64), position.astype(np.float64)
    t = np.asarray(camera, np.float64) - p
    with np.errstate(invalid="ignore"):
        facing = (n[..., 0] * t[..., 0] + n[..., 1] * t[..., 1]) + n[..., 2] * t[..., 2]
        return facing < T * np.sqrt((t[..., 0] * t[..., 0] + t[..., 1] * t[..., 1]) + t[..., 2] * t[..., 2])


def _near_threshold_frame(rng, h, w, camera):
    """float16 points 0.5-20 m from `camera` and float16 normals with n . u within ~1e-3 of T."""
    u = rng.standard_normal((h, w, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)  # unit vector from the point to the camera
    point = (camera - u * rng.uniform(0.5, 20.0, (h, w, 1))).astype(np.float16)
    u = camera - point.astype(np.float64)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    side = rng.standard_normal((h, w, 3))
    side -= (side * u).sum(-1, keepdims=True) * u
    side /= np.linalg.norm(side, axis=-1, keepdims=True)
    cos = T + rng.uniform(-1e-3, 1e-3, (h, w, 1))
    normal = (cos * u + np.sqrt(1 - cos * cos) * side).astype(np.float16)
    return normal, point


def test_inward_fast_gives_the_float64_booleans_where_float32_does_not():
    rng = np.random.default_rng(4)
    camera = np.array([1.2345678901234, -0.3000000001, 2.7182818284590])  # not float32-exact
    normal, point = _near_threshold_frame(rng, 512, 1024, camera)
    ref = _inward_reference(normal, point, camera)
    n32, p32 = normal.astype(np.float32), point.astype(np.float32)
    t32 = camera.astype(np.float32) - p32
    naive32 = (n32 * t32).sum(-1) < np.float32(T) * np.sqrt((t32 * t32).sum(-1))
    assert (naive32 != ref).sum() > 0  # the data reaches where float32 alone decides wrongly
    assert 0.2 < ref.mean() < 0.8
    got = K.inward_normals_fast(normal, point, camera)
    assert got.dtype == bool and np.array_equal(got, ref)
    assert np.array_equal(K.inward_normals(normal, point, camera), ref)


def test_inward_fast_points_next_to_the_camera():
    """|camera - point| ~1e-5 m beside coordinates ~10 m: float32's rounding of the camera (~4e-7) is
    larger than T |t|, so float32 gets the sign of n . t - T |t| wrong on both sides of 0."""
    rng = np.random.default_rng(7)
    camera = np.array([10.0 + 1.1e-5, 12.0 - 0.7e-5, 9.0 + 0.9e-5])
    grid = camera.astype(np.float16).astype(np.float64)
    ulp = np.spacing(np.float16(10.0)).astype(np.float64)
    steps = rng.integers(-1, 2, (256, 256, 3)) * (rng.random((256, 256, 1)) < 0.25)  # 3/4 on the nearest point
    point = (grid + steps * ulp).astype(np.float16)
    normal = rng.standard_normal((256, 256, 3))
    normal = (normal / np.linalg.norm(normal, axis=-1, keepdims=True)).astype(np.float16)
    ref = _inward_reference(normal, point, camera)
    n32, t32 = normal.astype(np.float32), camera.astype(np.float32) - point.astype(np.float32)
    naive32 = (n32 * t32).sum(-1) < np.float32(T) * np.sqrt((t32 * t32).sum(-1))
    assert (naive32 & ~ref).any() and (~naive32 & ref).any()
    assert np.array_equal(K.inward_normals_fast(normal, point, camera), ref)


def test_inward_fast_nan_inf_zero_and_blocks(monkeypatch):
    monkeypatch.setattr(K, "block_rows", lambda width: 5)  # uneven blocks of 5 rows over 23
    rng = np.random.default_rng(5)
    camera = np.array([0.5, 1.5, -2.0])
    normal, point = _near_threshold_frame(rng, 23, 31, camera)
    normal[0, :4] = np.nan  # no geometry
    point[1, :3] = np.nan
    normal[2, :5] = 0.0  # zero normals: facing 0, not inward
    point[12, 7] = np.inf  # one block with an infinite coordinate: decided in float64
    normal[20, 2, 1] = -np.inf
    out = np.ones((23, 31), bool)
    got = K.inward_normals_fast(normal, point, camera, out=out)
    assert got is out
    assert np.array_equal(got, _inward_reference(normal, point, camera))
    assert not got[0, :4].any() and not got[2, :5].any()


def test_inward_fast_other_dtypes_and_far_camera():
    rng = np.random.default_rng(6)
    camera = np.array([3e4, -2e4, 1e4])  # far from the points: a wide window, many pixels re-tested
    normal, point = _near_threshold_frame(rng, 40, 50, np.zeros(3))
    assert np.array_equal(K.inward_normals_fast(normal, point, camera), _inward_reference(normal, point, camera))
    n32, p32 = normal.astype(np.float32), point.astype(np.float32)  # not float16: the float64 test itself
    assert np.array_equal(K.inward_normals_fast(n32, p32, camera), _inward_reference(n32, p32, camera))


def test_scratch_is_reused_per_slot_and_reallocated_on_shape():
    a = K.scratch("test_slot", (4, 5), np.float32)
    assert K.scratch("test_slot", (4, 5), np.float32) is a
    b = K.scratch("test_slot", (5, 4), np.float32)
    assert b is not a and b.shape == (5, 4)
    assert K.scratch("test_slot", (5, 4), np.int32).dtype == np.int32


def test_to_float32_is_exact_for_every_float16():
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    got, ref = K.to_float32(x), x.astype(np.float32)
    finite = ~np.isnan(ref)
    assert np.array_equal(got.view(np.uint32)[finite], ref.view(np.uint32)[finite]) and np.isnan(got[~finite]).all()
