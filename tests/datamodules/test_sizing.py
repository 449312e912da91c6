"""Model input sizes: FE2E's buckets times input_scale, and aspect-keeping sizes for a user's images."""

import pytest

from datamodules.benchmarks.sizing import aspect_input_size, scaled_input_size


@pytest.mark.parametrize("size, scale, expected", [
    ((768, 1024), 1.0, (768, 1024)),
    ((768, 1024), 0.25, (192, 256)),
    ((352, 1216), 0.25, (96, 304)),      # 88 = 5.5 x 16 rounds (half to even) to 6 x 16; 304 = 19 x 16
    ((576, 864), 0.25, (144, 224)),      # 216 = 13.5 x 16 -> 14 x 16
    ((352, 1216), 0.125, (48, 160)),     # 44 = 2.75 x 16 -> 3 x 16; 152 = 9.5 x 16 -> 10 x 16
])
def test_scaled_bucket_sides_are_multiples_of_16(size, scale, expected):
    assert scaled_input_size(size, scale) == expected


@pytest.mark.parametrize("hw, scale, expected", [
    ((480, 640), 1.0, (768, 1024)),      # 4:3 landscape: exactly the bucket
    ((1024, 768), 1.0, (1024, 768)),     # portrait stays portrait (the bucket would squeeze it to 768x1024)
    ((4032, 3024), 1.0, (1024, 768)),    # a phone photo, portrait
    ((480, 640), 0.25, (192, 256)),      # a model trained at small scale predicts at its scale
    # KITTI-like 375x1242: h = sqrt(786432 * 375 / 1242) = 487.29 -> 480; w = 487.29 * 1242 / 375 = 1613.9 -> 1616
    ((375, 1242), 1.0, (480, 1616)),
])
def test_aspect_input_size_keeps_the_aspect_and_the_pixel_budget(hw, scale, expected):
    assert aspect_input_size(*hw, input_scale=scale) == expected


def test_sizes_refuse_bad_input():
    with pytest.raises(ValueError, match="input_scale"):
        scaled_input_size((768, 1024), 0)
    with pytest.raises(ValueError, match="image size"):
        aspect_input_size(0, 10)
