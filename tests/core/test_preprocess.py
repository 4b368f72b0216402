"""core.preprocess: §3.4 crops, the way back to the original grid, and tiling for big images."""

import numpy as np
import pytest
import torch
from lrpseg.core.preprocess import (
    Placement,
    prepare_eval,
    prepare_train,
    stitch,
    tile_grid,
    tiles,
    to_float_rgb,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _denormalise(tensor: torch.Tensor) -> np.ndarray:
    rgb = tensor.numpy().transpose(1, 2, 0) * np.array(STD, np.float32) + np.array(MEAN, np.float32)
    return rgb


def test_to_float_rgb_depths_and_gray():
    gray8 = np.array([[0, 255], [51, 102]], np.uint8)
    out = to_float_rgb(gray8)
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[..., 0], gray8 / 255.0, rtol=1e-6)
    assert np.array_equal(out[..., 0], out[..., 2])
    rgb16 = np.array([[[0, 65535, 32768]]], np.uint16)
    np.testing.assert_allclose(to_float_rgb(rgb16)[0, 0], [0.0, 1.0, 32768 / 65535], rtol=1e-6)
    with pytest.raises(TypeError):
        to_float_rgb(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError):
        to_float_rgb(np.zeros((2, 2, 4), np.uint8))


def test_eval_large_image_is_centre_cropped_without_scaling():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    tensor, placement = prepare_eval(image, 32, MEAN, STD)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert placement == Placement((40, 60), (40, 60), (4, 14), 32)
    np.testing.assert_allclose(_denormalise(tensor), image[4:36, 14:46] / 255.0, atol=1e-5)
    # A map of the crop goes back exactly where it came from, zeros elsewhere.
    score = rng.random((32, 32)).astype(np.float32)
    back = placement.to_original(score)
    assert back.shape == (40, 60)
    np.testing.assert_array_equal(back[4:36, 14:46], score)
    assert back.sum() == pytest.approx(score.sum())
    mask = placement.to_original(score > 0.5)
    assert mask.dtype == bool and mask.sum() == (score > 0.5).sum()
    assert placement.region() == (4, 14, 36, 46)


def test_eval_small_image_is_upscaled_short_side_to_s():
    image = np.zeros((20, 30), np.uint16)
    image[:, 15:] = 65535  # right half white
    tensor, placement = prepare_eval(image, 40, MEAN, STD)
    assert placement.resized_shape == (40, 60) and placement.offset == (0, 10)
    assert placement.scale == (2.0, 2.0)
    rgb = _denormalise(tensor)
    assert rgb.shape == (40, 40, 3)
    assert np.allclose(rgb[:, :18], 0, atol=1e-5) and np.allclose(rgb[:, 22:], 1, atol=1e-5)
    # A constant map on the crop comes back as that constant on the covered columns, 0 outside.
    back = placement.to_original(np.ones((40, 40), np.float32))
    assert back.shape == (20, 30)
    np.testing.assert_allclose(back[:, 6:24], 1.0, atol=1e-6)
    assert np.all(back[:, :4] == 0) and np.all(back[:, 26:] == 0)
    top, left, bottom, right = placement.region()
    assert (top, left, bottom, right) == (0, 5, 20, 25)
    with pytest.raises(ValueError):
        placement.to_original(np.ones((39, 40)))


def test_eval_tall_thin_image_keeps_aspect_ratio():
    image = np.full((300, 50, 3), 128, np.uint8)
    tensor, placement = prepare_eval(image, 100, MEAN, STD)
    assert placement.resized_shape == (600, 100) and placement.offset == (250, 0)
    assert tensor.shape == (3, 100, 100)
    back = placement.to_original(np.ones((100, 100), np.float32), fill=-1.0)
    assert back.shape == (300, 50)
    assert np.all(back[:120] == -1) and np.allclose(back[130:170], 1)


def test_prepare_train_crops_and_flips_reproducibly():
    image = np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) * 20
    seen = set()
    for seed in range(24):
        a = prepare_train(image, 16, MEAN, STD, np.random.default_rng(seed))
        b = prepare_train(image, 16, MEAN, STD, np.random.default_rng(seed))
        assert torch.equal(a, b) and a.shape == (3, 16, 16)
        gray = np.rint(_denormalise(a)[..., 0] * 65535 / 20).astype(int)
        # Every crop is a window of the ramp, possibly flipped: row steps ±48, column steps ±1.
        row_step, col_step = int(gray[1, 0] - gray[0, 0]), int(gray[0, 1] - gray[0, 0])
        assert abs(row_step) == 48 and abs(col_step) == 1
        seen.add((row_step, col_step, int(gray.min())))
    flips = {(r, c) for r, c, _ in seen}
    assert flips == {(48, 1), (-48, 1), (48, -1), (-48, -1)}
    assert len({start for _, _, start in seen}) > 10  # crop origins vary


def test_dihedral_augmentation_transposes_and_shifts_images_without_room():
    """A 32² ramp at input 32 has no room to crop: dihedral shifts it (mirrored at the border) and transposes."""
    image = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    steps, origins = set(), set()
    for seed in range(120):
        gray = np.rint(_denormalise(prepare_train(image, 32, MEAN, STD, np.random.default_rng(seed),
                                                  "dihedral"))[..., 0] * 65535 / 60).astype(int)
        row_step, col_step = int(gray[16, 16] - gray[15, 16]), int(gray[16, 16] - gray[16, 15])
        assert {abs(row_step), abs(col_step)} == {1, 32}  # a window of the ramp, flipped or transposed
        steps.add((row_step, col_step))
        origins.add(int(gray[16, 16]))
    assert len(steps) == 8  # all rotations and reflections of the square
    assert len(origins) > 10  # the centre moves: shifted although the image is exactly the input size
    paper = {int(np.rint(_denormalise(prepare_train(image, 32, MEAN, STD, np.random.default_rng(seed)))[16, 16, 0]
                         * 65535 / 60)) for seed in range(10)}
    assert len(paper) <= 4  # the paper's augmentation only flips such an image
    with pytest.raises(ValueError, match="unknown augmentation"):
        prepare_train(image, 32, MEAN, STD, np.random.default_rng(0), "rotate")


def test_prepare_train_upscales_small_images():
    tensor = prepare_train(np.zeros((10, 12, 3), np.uint8), 24, MEAN, STD, np.random.default_rng(1))
    assert tensor.shape == (3, 24, 24)


@pytest.mark.parametrize("shape", [(224, 224), (500, 300), (1000, 2345), (100, 700)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_tile_grid_covers_everything(shape, overlap):
    size = 224
    origins = tile_grid(*shape, size, overlap)
    covered = np.zeros((max(shape[0], size), max(shape[1], size)), int)
    for y, x in origins:
        covered[y : y + size, x : x + size] += 1
        assert y + size <= max(shape[0], size) and x + size <= max(shape[1], size)
    assert covered[: shape[0], : shape[1]].min() >= 1
    ys = sorted({y for y, _ in origins})
    if len(ys) > 1:
        assert max(np.diff(ys)) <= size * (1 - overlap) + 1e-9


@pytest.mark.parametrize("window", ["hann", "mean"])
def test_stitch_constant_stays_constant(window):
    shape, size = (300, 517), 64
    origins = tile_grid(*shape, size, 0.25)
    maps = np.full((len(origins), size, size), 0.7, np.float32)
    out = stitch(maps, origins, shape, size, window=window)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.7, rtol=1e-6)


def test_tiles_then_stitch_reproduces_the_image():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 150), dtype=np.uint8)
    batch, origins = tiles(image, 64, MEAN, STD, overlap=0.5)
    assert batch.shape == (len(origins), 3, 64, 64)
    maps = [_denormalise(t)[..., 1] for t in batch]
    np.testing.assert_allclose(stitch(maps, origins, image.shape, 64), image / 255.0, atol=1e-5)
    small = rng.integers(0, 256, (20, 50), dtype=np.uint8)  # shorter than S: padded, then cropped back
    batch, origins = tiles(small, 32, MEAN, STD)
    maps = [_denormalise(t)[..., 0] for t in batch]
    np.testing.assert_allclose(stitch(maps, origins, small.shape, 32), small / 255.0, atol=1e-5)
