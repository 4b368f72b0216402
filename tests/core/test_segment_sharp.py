"""Sharpened GMM / BMM: the paper's fit, each pixel also judged on its own relevance."""

import numpy as np
import pytest
from lrpseg.core.metrics import SegmentationCounts
from lrpseg.core.segment import component_densities, domain_values, segment, segmenter_provenance
from lrpseg.core.segment.sharp import EXPONENTS, compress
from lrpseg.core.segment.synthetic import synthetic_relevance

PAIRS = [("gmm", "gmm-sharp"), ("bmm", "bmm-sharp")]
pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize(("paper", "sharp"), PAIRS)
def test_a_thin_curve_keeps_its_width_instead_of_the_filters(paper, sharp):
    for seed in (3, 4):
        relevance, truth = synthetic_relevance(kind="curve", size=9, seed=seed, noise=0.1)
        wide, thin = segment(relevance, paper, seed=seed), segment(relevance, sharp, seed=seed)
        wide_counts = SegmentationCounts.from_masks(wide.mask, truth)
        thin_counts = SegmentationCounts.from_masks(thin.mask, truth)
        assert thin_counts.recall() >= 0.9, (sharp, seed)
        assert thin_counts.precision() >= wide_counts.precision() + 0.1, (sharp, seed)
        assert thin_counts.iou() > wide_counts.iou(), (sharp, seed)


@pytest.mark.parametrize(("paper", "sharp"), PAIRS)
def test_the_fit_is_the_papers_on_the_compressed_map_and_the_score_only_ever_drops(paper, sharp):
    relevance, _ = synthetic_relevance(kind="blob", size=20, seed=1, noise=0.15)
    exponent = EXPONENTS[sharp]
    fitted = compress(relevance, exponent)
    wide, thin = segment(fitted, paper, seed=1), segment(relevance, sharp, seed=1)
    assert (thin.method, thin.threshold) == (sharp, wide.threshold)
    assert thin.params == {**wide.params, "sharpened": True, "exponent": exponent}
    assert np.all(thin.score <= wide.score) and not np.any(thin.mask & ~wide.mask)
    x = np.linspace(0.01, 0.99, 5)
    assert component_densities(thin, x).keys() == component_densities(wide, x).keys() != set()
    np.testing.assert_array_equal(domain_values(relevance, sharp), domain_values(fitted, paper))


def test_compression_keeps_sign_and_order_and_narrows_the_range():
    relevance = np.array([[-4.0, -1.0, 0.0], [0.25, 1.0, 16.0]])
    squeezed = compress(relevance, 0.5)
    np.testing.assert_allclose(squeezed, [[-2.0, -1.0, 0.0], [0.5, 1.0, 4.0]])
    assert np.array_equal(np.argsort(squeezed, axis=None), np.argsort(relevance, axis=None))
    np.testing.assert_array_equal(compress(relevance, 1.0), relevance)


def test_bmm_sharp_keeps_a_weaker_second_defect_that_the_uncompressed_fit_drops(monkeypatch):
    rng = np.random.default_rng(0)
    relevance = np.abs(rng.normal(0.0, 0.05, (64, 64)))
    truth = np.zeros((64, 64), bool)
    truth[10:18, 10:18] = truth[40:48, 40:48] = True
    relevance[10:18, 10:18] += 1.0  # the defect that decided
    relevance[40:48, 40:48] += 0.4  # a second one, less relevant
    compressed = segment(relevance, "bmm-sharp").mask
    monkeypatch.setitem(EXPONENTS, "bmm-sharp", 1.0)
    plain = segment(relevance, "bmm-sharp").mask
    monkeypatch.undo()
    asked = segment(relevance, "bmm-sharp", exponent=1.0)
    assert np.array_equal(asked.mask, plain) and asked.params["exponent"] == 1.0
    assert compressed[40:48, 40:48].mean() == 1.0 and plain[40:48, 40:48].mean() < 0.5
    counts = [SegmentationCounts.from_masks(mask, truth).iou() for mask in (compressed, plain)]
    assert counts[0] > 0.8 > counts[1]


@pytest.mark.parametrize(("paper", "sharp"), PAIRS)
@pytest.mark.parametrize("background", ["laplace", "gaussian", "beta"])
def test_an_easy_blob_is_still_recovered(paper, sharp, background):
    for seed in (0, 1):
        relevance, truth = synthetic_relevance(kind="blob", size=24, seed=seed, noise=0.1, background=background)
        assert SegmentationCounts.from_masks(segment(relevance, sharp, seed=seed).mask, truth).iou() >= 0.8


@pytest.mark.parametrize("sharp", ["gmm-sharp", "bmm-sharp"])
def test_a_map_without_positive_relevance_gives_an_empty_mask_under_the_sharpened_name(sharp):
    result = segment(-np.ones((16, 16)), sharp)
    assert result.method == sharp and not result.mask.any() and result.params["degenerate"]


def test_provenance_names_the_exponent_of_the_relevance_a_segmenter_fits():
    assert segmenter_provenance("bmm-sharp") == {"segmenter": "bmm-sharp", "relevance_exponent": 0.75}
    assert segmenter_provenance("bmm")["relevance_exponent"] == 1.0
    with pytest.raises(ValueError, match="unknown segmenter"):
        segmenter_provenance("otsu")
