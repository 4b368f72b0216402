"""Property tests of the segmenters (hypothesis): contract, monotone masks, exact scale invariance."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from lrpseg.core.segment import segment

METHODS = ("simple", "gmm", "bmm")
pytestmark = pytest.mark.filterwarnings("error")

_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))
_floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)
_small_ints = st.integers(-3, 3).map(float)  # many ties


@st.composite
def relevance_maps(draw):
    shape = draw(_shapes)
    kind = draw(st.sampled_from(["floats", "ties", "blob"]))
    if kind == "floats":
        return draw(arrays(np.float64, shape, elements=_floats))
    if kind == "ties":
        return draw(arrays(np.float64, shape, elements=_small_ints))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    relevance = rng.laplace(0.0, draw(st.floats(0.01, 1.0)), shape)
    h, w = shape
    relevance[h // 3: h // 3 + max(1, h // 4), w // 3: w // 3 + max(1, w // 4)] += draw(st.floats(0.0, 10.0))
    return relevance


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(relevance=relevance_maps(), seed=st.integers(0, 3))
def test_result_contract(method, relevance, seed):
    result = segment(relevance, method, seed=seed)
    assert result.score.shape == relevance.shape and result.mask.shape == relevance.shape
    assert result.score.dtype == np.float32 and result.mask.dtype == bool
    assert np.all((result.score >= 0) & (result.score <= 1))
    assert np.array_equal(result.mask, result.score >= np.float32(result.threshold))
    json.dumps(result.params, allow_nan=False)
    again = segment(relevance, method, seed=seed)
    assert np.array_equal(again.score, result.score) and again.threshold == result.threshold


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(relevance=relevance_maps(), thresholds=st.lists(st.floats(0, 1), min_size=2, max_size=6))
def test_masks_shrink_as_the_threshold_rises(method, relevance, thresholds):
    result = segment(relevance, method)
    masks = [result.mask_at(t) for t in sorted(thresholds)]
    for lower, higher in zip(masks, masks[1:], strict=False):
        assert not np.any(higher & ~lower)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(relevance=relevance_maps(), exponent=st.integers(-20, 20))
def test_scaling_by_a_power_of_two_changes_nothing(method, relevance, exponent):
    # Powers of two scale every float exactly, so every step of every method must give identical results
    # (general factors are checked with a tolerance in test_segment.py).
    a = segment(relevance, method)
    b = segment(relevance * 2.0**exponent, method)
    assert np.array_equal(a.score, b.score) and np.array_equal(a.mask, b.mask)
    assert a.threshold == b.threshold
