"""Masks land where the defect is, at every image size and mode, and exports can be re-thresholded exactly.

A defect is planted in images that are non-square, smaller than the model input (upscaled, centre crop) and
larger (tiled). Its relevance is planted on the model's grid through the same geometry the pipeline uses
(:func:`explain_image` with a cached map skips only LRP), so the test checks the way back to the image grid, the
segmentation gate and the export, with nothing left to chance in a trained model.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from lrpseg.core.evaluate import read_mask
from lrpseg.core.export_run import ExportOptions, MaskExport
from lrpseg.core.models import build_vgg_a
from lrpseg.core.pipeline import Outcome, choose_mode, explain_image, mask_from_score, segment_explained
from lrpseg.core.preprocess import prepare_eval
from lrpseg.core.relevance_cache import model_grid_shape

SIZE = 32


@pytest.fixture(scope="module")
def model():
    return build_vgg_a(width=0.0625, input_size=SIZE).eval()


def _planted_relevance(image_shape, defect: np.ndarray, mode: str) -> np.ndarray:
    """The defect's relevance on the model's grid: 1 on the defect, 0 elsewhere, carried by the same resize
    and crop the pipeline applies to the image."""
    grid = model_grid_shape(image_shape, SIZE, mode)
    if mode == "tile":
        return cv2.resize(defect.astype(np.float32), grid[::-1], interpolation=cv2.INTER_LINEAR)
    _, placement = prepare_eval(np.zeros(image_shape, np.uint8), SIZE, (0, 0, 0), (1, 1, 1))
    resized = cv2.resize(defect.astype(np.float32), placement.resized_shape[::-1], interpolation=cv2.INTER_LINEAR)
    y0, x0 = placement.offset
    return np.ascontiguousarray(resized[y0 : y0 + SIZE, x0 : x0 + SIZE])


CASES = {
    # name: image (H, W), defect rows, defect cols, expected mode
    "small non-square, upscaled crop": ((24, 32), slice(8, 14), slice(14, 22), "crop"),
    "small, thin crack, upscaled crop": ((20, 20), slice(9, 10), slice(4, 16), "crop"),
    "wide strip, tiled": ((40, 150), slice(10, 20), slice(110, 130), "tile"),
    "tall, thin crack shrunk by 2.7, tiled": ((12, 60), slice(2, 10), slice(40, 41), "tile"),
    "large non-square, centre crop": ((45, 38), slice(20, 26), slice(15, 22), "crop"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exported_mask_has_the_image_size_and_covers_the_planted_defect(name, model, tmp_path):
    shape, rows, cols, expected_mode = CASES[name]
    image = np.full(shape, 100, np.uint8)
    defect = np.zeros(shape, bool)
    defect[rows, cols] = True
    mode = choose_mode(shape, SIZE)
    assert mode == expected_mode
    explained = explain_image(model, image, mode=mode, cached=(_planted_relevance(shape, defect, mode), 0.9))
    analysis = segment_explained(explained, "simple")
    export = MaskExport(tmp_path / "out", {}, ExportOptions(), root=tmp_path)  # never into the image folder
    record = export.export_one(Outcome(tmp_path / "image.png", analysis=analysis))
    export.finish()

    mask = read_mask(tmp_path / "out" / record.mask)
    assert mask.shape == shape
    assert mask[defect].mean() > 0.9  # every pixel of a crack one pixel wide is found, not skipped
    near = cv2.dilate(defect.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert not (mask & ~near).any()  # and nothing far from it
    assert not (mask & ~analysis.valid).any()


def test_no_mask_pixel_outside_the_explained_region_at_any_threshold(model):
    image = np.full((32, 96), 100, np.uint8)  # the centre crop explains columns 32..63 only
    relevance = np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32)
    explained = explain_image(model, image, mode="crop", cached=(relevance, 0.9))
    analysis = segment_explained(explained, "simple")
    assert 0 < analysis.valid.mean() < 1
    for threshold in (0.0, 1e-6, 0.25, analysis.threshold, 1.0):
        assert not (analysis.mask_at(threshold) & ~analysis.valid).any(), threshold
    assert analysis.mask_at(0.0).sum() < analysis.valid.sum()  # threshold 0 is not "everything"


def test_rethresholding_the_exported_score_map_reproduces_the_mask(model, tmp_path):
    image = np.full((50, 70), 100, np.uint8)
    relevance = np.random.default_rng(1).random(model_grid_shape(image.shape, SIZE, "tile")).astype(np.float32)
    explained = explain_image(model, image, mode="tile", cached=(relevance, 0.9))
    analysis = segment_explained(explained, "bmm")
    threshold = 0.37
    out = tmp_path / "out"  # never into the image folder
    export = MaskExport(out, {}, ExportOptions(threshold=threshold), root=tmp_path)
    record = export.export_one(Outcome(tmp_path / "image.png", analysis=analysis))
    export.finish()
    score = np.load(out / record.scores)
    assert score.dtype == np.float32
    np.testing.assert_array_equal(mask_from_score(score, threshold), read_mask(out / record.mask))
    assert read_mask(out / record.mask).any()
