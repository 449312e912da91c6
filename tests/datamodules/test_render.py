"""The procedural renderer against hand-derived geometry."""

import numpy as np
import pytest

from datamodules.synthetic.render import render_scene


@pytest.mark.parametrize("kind", ["room", "road"])
def test_floor_depth_matches_analytic_plane(kind):
    h, w = 48, 64
    v = render_scene(kind, h, w, seed=5, yaw_deg=0.0, pitch_deg=0.0)
    cam_h = v.cam_to_world[1, 3]
    f, cy = v.K[1, 1], v.K[1, 2]
    rows = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    cols = np.ones((h, 1)) * np.arange(w, dtype=np.float64)[None, :]
    floor = v.entity_id == 0
    assert floor.sum() > 50
    # level camera: a floor pixel at row i lies at planar depth cam_h * f / (i - cy)
    expected = cam_h * f / (rows - cy)
    np.testing.assert_allclose(v.depth[floor], expected[floor], rtol=1e-5)
    ray = np.sqrt(((cols - v.K[0, 2]) / v.K[0, 0]) ** 2 + ((rows - cy) / f) ** 2 + 1)
    np.testing.assert_allclose(v.distance[floor], (expected * ray)[floor], rtol=1e-5)
    np.testing.assert_allclose(v.normal[floor], np.tile([0.0, 1.0, 0.0], (floor.sum(), 1)), atol=1e-6)
    # hit points lie on the world floor plane y = 0
    np.testing.assert_allclose(v.position[floor][:, 1], 0.0, atol=1e-4)


def test_room_far_wall_faces_camera_and_void_is_nan():
    views = (render_scene("room", 96, 128, seed=s, yaw_deg=0.0, pitch_deg=0.0) for s in range(20))
    v = next(v for v in views if (v.entity_id == -1).any())
    wall = v.entity_id == 2
    assert wall.sum() > 100
    np.testing.assert_allclose(v.normal[wall], np.tile([0.0, 0.0, 1.0], (wall.sum(), 1)), atol=1e-6)
    # the far wall is a plane of constant planar depth
    assert np.ptp(v.depth[wall]) < 1e-3
    void = v.entity_id == -1
    assert void.any(), "the opening in the far wall should show the void"
    assert np.isnan(v.depth[void]).all() and np.isnan(v.distance[void]).all()
    assert (v.normal[void] == 0).all()
    assert np.isfinite(v.depth[~void]).all()


def test_side_wall_normal_points_into_room():
    v = render_scene("room", 96, 128, seed=3, yaw_deg=0.0, pitch_deg=0.0)
    left = v.entity_id == 4  # wall at world x = x0 (camera's left): its outward normal points to +x = right
    assert left.any()
    np.testing.assert_allclose(v.normal[left], np.tile([-1.0, 0.0, 0.0], (left.sum(), 1)), atol=1e-6)


def test_deterministic_and_sane_ranges():
    a = render_scene("road", 40, 132, seed=7)
    b = render_scene("road", 40, 132, seed=7)
    c = render_scene("road", 40, 132, seed=8)
    np.testing.assert_array_equal(a.rgb_linear, b.rgb_linear)
    assert not np.array_equal(a.entity_id, c.entity_id)
    assert (a.rgb_linear >= 0).all()
    assert np.nanmax(a.depth) < 100 and np.nanmin(a.depth) > 1
    assert (a.entity_id == -1).any()  # sky
    n = a.normal[a.entity_id >= 0]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    # outward: the normal faces the viewer, n . (ray towards the point) < 0 in the camera frame
    assert a.K.shape == (3, 3) and a.cam_to_world.shape == (4, 4)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="room"):
        render_scene("cave", 8, 8, 0)


def test_scene_params_make_edit_pairs():
    from datamodules.synthetic.render import SceneParams, hue_rgb

    base = SceneParams(hue=0.1, light_dir=(0.4, 1.0, 0.3), num_objects=3)
    a = render_scene("room", 48, 64, seed=11, params=base)
    # relight: same geometry, different shading
    b = render_scene("room", 48, 64, seed=11, params=SceneParams(hue=0.1, light_dir=(-1.0, 0.5, 0.2), num_objects=3))
    np.testing.assert_array_equal(a.depth, b.depth)
    assert np.abs(a.rgb_linear - b.rgb_linear).max() > 0.05
    # recolour: only object pixels change (room objects are entity ids >= 6)
    c = render_scene("room", 48, 64, seed=11, params=SceneParams(hue=0.6, light_dir=(0.4, 1.0, 0.3), num_objects=3))
    changed = np.abs(a.rgb_linear - c.rgb_linear).max(-1) > 0
    assert changed.any() and (a.entity_id[changed] >= 6).all()
    # exposure: radiance scaled exactly
    d = render_scene("room", 48, 64, seed=11, params=SceneParams(hue=0.1, light_dir=(0.4, 1.0, 0.3), num_objects=3,
                                                                 exposure=2.0))
    np.testing.assert_allclose(d.rgb_linear, 2.0 * a.rgb_linear, rtol=1e-6)
    # move: the first box moves, the room itself does not
    e = render_scene("room", 48, 64, seed=11, params=SceneParams(hue=0.1, light_dir=(0.4, 1.0, 0.3), num_objects=3,
                                                                 object_shift=(0.6, 0.0)))
    moved = (a.entity_id == 6) | (e.entity_id == 6)
    assert moved.any() and not np.array_equal(a.entity_id == 6, e.entity_id == 6)
    np.testing.assert_array_equal(np.nan_to_num(a.depth)[~moved], np.nan_to_num(e.depth)[~moved])
    # object count: 2 boxes + 1 sphere; road: that many cars
    assert set(np.unique(a.entity_id[a.entity_id >= 6])) <= {6, 7, 8}
    np.testing.assert_allclose(hue_rgb(0.0), [0.8, 0.16, 0.16])  # HSV (0, 0.8, 0.8) by hand
    np.testing.assert_allclose(hue_rgb(1 / 3), [0.16, 0.8, 0.16], atol=1e-12)
