import cv2
import numpy as np
import pytest
import torch
from lrpseg.core.batched import SegmentOptions, segment_files, segment_folder
from lrpseg.core.demo import make_sample
from lrpseg.core.models import build_vgg_a
from lrpseg.core.pipeline import (
    analyse,
    choose_mode,
    explain_image,
    predict,
    resegment,
    segment_explained,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_vgg_a("128n", width=0.125, input_size=32).eval()


def _image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = make_sample(rng, max(height, width), damaged=True)[0]
    return np.ascontiguousarray(image[:height, :width])


@pytest.mark.parametrize(
    ("shape", "expected"), [((32, 32), "crop"), ((30, 40), "crop"), ((32, 100), "tile"), ((20, 100), "tile")]
)
def test_auto_mode_tiles_only_images_much_larger_than_the_input(shape, expected):
    assert choose_mode(shape, 32) == expected


def test_crop_analysis_is_on_the_original_grid(model):
    image = _image(40, 44)
    a = analyse(model, image, rule_set="ours", segmenter="simple", mode="crop")
    assert a.relevance.shape == a.segmentation.score.shape == a.valid.shape == (40, 44)
    assert a.valid.sum() == 32 * 32 and not a.valid[:, :6].any()
    assert np.all(a.relevance[~a.valid] == 0) and np.all(a.segmentation.score[~a.valid] == 0)
    assert 0.0 <= a.probability <= 1.0 and a.mode == "crop"


def test_tiled_analysis_covers_every_pixel(model):
    image = _image(36, 90)
    a = analyse(model, image, segmenter="bmm", mode="tile")
    assert a.valid.all() and a.relevance.shape == (36, 90)
    assert np.count_nonzero(a.relevance[:, :30]) and np.count_nonzero(a.relevance[:, -30:])


def test_mask_only_for_images_classified_damaged(model):
    a = analyse(model, _image(32, 32), segmenter="simple")
    a.probability = 0.2
    assert not a.mask_at(0.0).any()
    a.probability = 0.8
    np.testing.assert_array_equal(a.mask_at(0.0), a.segmentation.score > 0)  # evidence only, never everything
    assert not a.mask_at(0.0).all()
    np.testing.assert_array_equal(a.mask_at(), a.segmentation.score >= a.threshold)


def test_predict_matches_the_analysis_probability(model):
    images = [_image(32, 32, seed) for seed in range(3)]
    probabilities = predict(model, images)
    for image, probability in zip(images, probabilities, strict=True):
        assert analyse(model, image, segmenter="simple").probability == pytest.approx(probability, abs=1e-5)


def test_segment_folder_reports_bad_files_and_goes_on(model, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), _image(32, 32))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    seen = []
    outcomes = list(segment_folder([bad, good], model, SegmentOptions(segmenter="simple"),
                                   progress=lambda *a: seen.append(a)))
    assert outcomes[0].analysis is None and "bad.png" in outcomes[0].error
    assert outcomes[1].error is None and outcomes[1].analysis.relevance.shape == (32, 32)
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)]


def test_parallel_lrp_streams_give_the_maps_of_one_stream_and_restore_torch_threads(model, tmp_path):
    shapes = [(32, 32), (30, 40), (32, 100), (32, 32), (20, 100), (32, 32), (40, 36)]
    paths = []
    for index, shape in enumerate(shapes):
        paths.append(tmp_path / f"img{index}.png")
        cv2.imwrite(str(paths[-1]), _image(*shape, seed=index))
    paths.insert(3, tmp_path / "missing.png")
    options = SegmentOptions(segmenter="simple", batch_size=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = list(segment_files(paths, model, options, threads=1))
        two = list(segment_files(paths, model, options, threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert [o.path for o in two] == paths
    assert "missing.png" in two[3].error and two[3].analysis is None
    for a, b in zip(one, two, strict=True):
        if a.analysis is not None:
            np.testing.assert_array_equal(a.analysis.relevance, b.analysis.relevance)
            np.testing.assert_array_equal(a.analysis.mask_at(), b.analysis.mask_at())
            assert a.analysis.probability == b.analysis.probability


def test_elongated_images_are_refused_instead_of_tiled_forever(model):
    strip = np.zeros((1, 40000), np.uint8)
    with pytest.raises(ValueError, match="windows"):
        analyse(model, strip, mode="tile")


@pytest.mark.parametrize("mode", ["crop", "tile"])
def test_resegment_and_cached_relevance_match_a_fresh_analysis(model, mode):
    image = _image(40, 80)
    first = analyse(model, image, segmenter="bmm", mode=mode)
    fresh = analyse(model, image, segmenter="simple", mode=mode)
    again = resegment(first, "simple")
    np.testing.assert_array_equal(again.segmentation.score, fresh.segmentation.score)
    assert again.threshold == fresh.threshold and again.segmenter == "simple"
    explained = first.explained
    cached = explain_image(model, image, mode=mode, cached=(explained.relevance, explained.probability))
    from_cache = segment_explained(cached, "bmm")
    np.testing.assert_array_equal(from_cache.segmentation.score, first.segmentation.score)
    np.testing.assert_array_equal(from_cache.relevance, first.relevance)
    np.testing.assert_array_equal(from_cache.valid, first.valid)
