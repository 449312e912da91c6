"""Where each zero-shot benchmark's files live, as released (a small table, one row per dataset).

Depth benchmarks use Marigold's packaging: one tar per dataset under the data root, members named
'./<relative path>', and a filename list (Marigold's `data_split/...`) whose lines are
whitespace-separated relative paths: column 0 the RGB image, column 1 the ground truth ('None'
when the frame has none: KITTI Eigen lists 697 frames of which 45 lack ground truth), and a
dataset-specific column 2 (NYU: the filled depth, unused here; KITTI: the focal length in pixels;
DIODE: the validity mask .npy).

Normal benchmarks use DSINE's evaluation packaging: `dsine_eval/<dataset>/<scene>/<id>_img.png`
with `<id>_normal.png|.exr` (or `.npy`) and `<id>_intrins.npy` beside it, and a split list (DSINE's
`data/datasets/<dataset>/split/<split>.txt`) of image paths relative to `dsine_eval/<dataset>`.

Filename lists are looked up under `split_root` (a Marigold or DSINE checkout, or the data root,
where the synthetic writers put them), with exactly the relative paths of those repositories.
Decoding constants (scale, valid range, crop rule) come from the protocol table, not from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def scale_intrinsics(K: np.ndarray, ref_hw: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """K given at resolution ref_hw (H, W), rescaled to hw (pixel-centre convention kept)."""
    sy, sx = hw[0] / ref_hw[0], hw[1] / ref_hw[1]
    out = K.astype(np.float64).copy()
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


@dataclass(frozen=True)
class DepthLayout:
    """One depth benchmark's released packaging."""

    tar: str
    """Tar archive relative to the data root."""
    filename_list: str
    """Filename list relative to split_root (Marigold's data_split path)."""
    gt_format: str
    """'png16' (uint16 PNG, divide by protocol.depth_scale), 'raw_f32' (headerless little-endian
    float32 of the RGB's size, inf = no data) or 'npy' (float array, divide by depth_scale)."""
    size_hw: tuple[int, int]
    """Native (H, W) of the released images (what the synthetic writer renders by default)."""
    ref_K: np.ndarray
    """Intrinsics at size_hw; scaled to the actual image size when that differs."""
    K_known: bool
    """False when ref_K is only a nominal value (the tar ships no per-image calibration)."""
    extra_column: str = "none"
    """Meaning of list column 2: 'none', 'filled' (NYU filled depth, unused), 'focal' (KITTI focal
    length in pixels, overrides ref_K's fx, fy) or 'mask' (DIODE validity mask .npy)."""
    rgb_ext: str = ".png"
    """Extension of the RGB members (what the synthetic writer produces)."""
    render_kind: str = "room"
    """Procedural scene kind used by the synthetic writer: 'room' or 'road'."""


# NYU Depth v2 toolbox (camera_params.m) RGB intrinsics at 480x640.
_NYU_K = pinhole(518.8579, 519.4696, 325.5824, 253.7362)
# KITTI raw 2011_09_26 P_rect_02 focal; the list's column 2 carries each frame's focal. The tar has
# no principal point, so it is taken at the image centre (real cx ~609.6, cy ~172.9 at 375x1242).
_KITTI_K = pinhole(721.5377, 721.5377, (1242 - 1) / 2, (375 - 1) / 2)
# ETH3D DSLR: per-image cameras.txt is not in Marigold's tar; nominal ~3430 px focal at 6048 wide.
_ETH3D_K = pinhole(3430.0, 3430.0, (6048 - 1) / 2, (4032 - 1) / 2)
# ScanNet: per-scene calibration is not in the tar; nominal colour-to-depth-resolution intrinsics.
_SCANNET_K = pinhole(577.87, 577.87, 319.5, 239.5)
# DIODE's published intrinsics at 768x1024.
_DIODE_K = pinhole(886.81, 927.06, 512.0, 384.0)

DEPTH_LAYOUTS: dict[str, DepthLayout] = {
    "nyuv2": DepthLayout("nyuv2/nyu_labeled_extracted.tar", "data_split/nyu/labeled/filename_list_test.txt",
                         "png16", (480, 640), _NYU_K, True, extra_column="filled"),
    "kitti": DepthLayout("kitti/kitti_eigen_split_test.tar", "data_split/kitti/eigen_test_files_with_gt.txt",
                         "png16", (375, 1242), _KITTI_K, True, extra_column="focal", render_kind="road"),
    "eth3d": DepthLayout("eth3d/eth3d.tar", "data_split/eth3d/eth3d_filename_list.txt",
                         "raw_f32", (4032, 6048), _ETH3D_K, False, rgb_ext=".JPG", render_kind="road"),
    "scannet": DepthLayout("scannet/scannet_val_sampled_800_1.tar",
                           "data_split/scannet/scannet_val_sampled_list_800_1.txt",
                           "png16", (480, 640), _SCANNET_K, False, rgb_ext=".jpg"),
    "diode": DepthLayout("diode/diode_val.tar", "data_split/diode/diode_val_all_filename_list.txt",
                         "npy", (768, 1024), _DIODE_K, True, extra_column="mask"),
}


@dataclass(frozen=True)
class NormalLayout:
    """One normal benchmark's DSINE evaluation packaging."""

    folder: str
    """Dataset folder relative to the data root."""
    filename_list: str
    """Split list relative to split_root (DSINE's repository path)."""
    size_hw: tuple[int, int]
    """Native (H, W) (what the synthetic writer renders by default)."""
    render_kind: str = "room"


NORMAL_LAYOUTS: dict[str, NormalLayout] = {
    "nyuv2_normal": NormalLayout("dsine_eval/nyuv2", "data/datasets/nyuv2/split/test.txt", (480, 640)),
    "scannet_normal": NormalLayout("dsine_eval/scannet", "data/datasets/scannet/split/test.txt", (480, 640)),
    "ibims_normal": NormalLayout("dsine_eval/ibims", "data/datasets/ibims/split/ibims.txt", (480, 640)),
    "sintel_normal": NormalLayout("dsine_eval/sintel", "data/datasets/sintel/split/sintel.txt", (436, 1024),
                                  render_kind="road"),
}

NORMAL_SUFFIX = {"png": "_normal.png", "exr": "_normal.exr", "npy": "_normal.npy"}
"""Ground-truth file suffix per NormalProtocol.gt_format, replacing the image's '_img.<ext>'."""


def layout_for(table: dict, name: str, what: str):
    """Look a dataset up in a layout table; raises KeyError naming the known ones."""
    if name not in table:
        raise KeyError(f"no {what} packaging layout for benchmark '{name}'; known: {sorted(table)}")
    return table[name]
