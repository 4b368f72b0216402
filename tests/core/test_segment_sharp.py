"""Sharpened GMM / BMM: the paper's fit, each pixel also judged on its own relevance."""

import numpy as np
import pytest
from lrpseg.core.metrics import SegmentationCounts
from lrpseg.core.segment import component_densities, domain_values, segment
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
def test_the_fit_is_the_papers_and_the_score_only_ever_drops(paper, sharp):
    relevance, _ = synthetic_relevance(kind="blob", size=20, seed=1, noise=0.15)
    wide, thin = segment(relevance, paper, seed=1), segment(relevance, sharp, seed=1)
    assert (thin.method, thin.threshold) == (sharp, wide.threshold)
    assert thin.params == {**wide.params, "sharpened": True}
    assert np.all(thin.score <= wide.score) and not np.any(thin.mask & ~wide.mask)
    x = np.linspace(0.01, 0.99, 5)
    assert component_densities(thin, x).keys() == component_densities(wide, x).keys() != set()
    np.testing.assert_array_equal(domain_values(relevance, sharp), domain_values(relevance, paper))


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
