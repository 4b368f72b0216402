"""Segmenters on synthetic relevance maps with known damage: accuracy, the paper's choices, bad input."""

import json

import cv2
import numpy as np
import pytest
from lrpseg.core.metrics import SegmentationCounts
from lrpseg.core.segment import (
    SEGMENTERS,
    SegmentationResult,
    bmm,
    component_densities,
    domain_values,
    gmm,
    segment,
    simple,
)
from lrpseg.core.segment.synthetic import synthetic_relevance
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

METHODS = ("simple", "gmm", "bmm")
pytestmark = pytest.mark.filterwarnings("error")  # a segmenter must not warn on any map here


def iou(mask, truth):
    return SegmentationCounts.from_masks(mask, truth).iou()


def test_registry_has_the_three_methods_their_sharpened_mixtures_and_rejects_others():
    assert set(SEGMENTERS) == set(METHODS) | {"gmm-sharp", "bmm-sharp"}
    with pytest.raises(ValueError, match="unknown segmenter"):
        segment(np.zeros((4, 4)), "otsu")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("background", ["laplace", "gaussian", "beta"])
def test_easy_blob_is_recovered(method, background):
    # A disk of radius 24 (3.6 % of the image) with relevance ~1 on background noise of std 0.1.
    for seed in (0, 1):
        relevance, truth = synthetic_relevance(kind="blob", size=24, seed=seed, noise=0.1,
                                               background=background)
        result = segment(relevance, method, seed=seed)
        assert iou(result.mask, truth) >= 0.8, (method, background, seed)


@pytest.mark.parametrize("method", METHODS)
def test_thin_curve_is_found_and_widened_only_by_the_filter(method):
    relevance, truth = synthetic_relevance(kind="curve", size=9, seed=3, noise=0.1)
    mask = segment(relevance, method).mask
    counts = SegmentationCounts.from_masks(mask, truth)
    if method == "simple":  # no filter
        assert counts.iou() >= 0.8
    else:
        assert counts.recall() >= 0.95
        # GMM and BMM see the 5x5 mean filter's output: what they add lies within its reach of the curve.
        reach = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert SegmentationCounts.from_masks(mask, reach).precision() >= 0.85


@pytest.mark.parametrize("method", METHODS)
def test_result_contract_determinism_and_json_params(method):
    relevance, _ = synthetic_relevance(kind="blob", seed=5, noise=0.1, interior=0.3)
    a = segment(relevance.astype(np.float32), method, seed=7)
    b = segment(relevance.astype(np.float32), method, seed=7)
    assert isinstance(a, SegmentationResult) and a.method == method
    assert a.score.dtype == np.float32 and a.score.shape == relevance.shape
    assert a.mask.dtype == bool and np.array_equal(a.mask, a.score >= np.float32(a.threshold))
    assert 0.0 <= a.score.min() and a.score.max() <= 1.0
    np.testing.assert_array_equal(a.score, b.score)
    assert a.threshold == b.threshold and a.params == b.params
    text = json.dumps(a.params, allow_nan=False)
    assert json.loads(text)["degenerate"] is None
    for key in ("domain", "domain_offset", "domain_scale", "iterations", "converged"):
        assert key in a.params
    assert np.array_equal(a.mask_at(a.threshold), a.mask)


def test_scaling_by_an_arbitrary_positive_factor_changes_nothing_that_matters():
    relevance, _ = synthetic_relevance(kind="blob", seed=2, noise=0.1, interior=0.5)
    for method in METHODS:
        a, b = segment(relevance, method), segment(relevance * 3.7e-4, method)
        np.testing.assert_allclose(a.score, b.score, atol=1e-5)
        assert np.mean(a.mask != b.mask) <= 1e-3
        assert a.threshold == pytest.approx(b.threshold, abs=1e-9)


# --- simple ------------------------------------------------------------------------------------------------

def test_simple_threshold_is_the_fixed_point_of_the_mean_rule():
    relevance, _ = synthetic_relevance(kind="curve", seed=1, noise=0.2)
    result = segment(relevance, "simple")
    x, offset, scale = simple.normalise(relevance)
    t = result.threshold
    assert t == pytest.approx(0.5 * (x[x > t].mean() + x[x <= t].mean()), abs=1e-12)
    assert result.params["converged"] and result.params["iterations"] < 100
    np.testing.assert_allclose(result.score, x, atol=1e-6)  # score = normalised relevance (float32)
    np.testing.assert_allclose(offset + scale * x, relevance, atol=1e-12)


def test_simple_is_affine_invariant():
    relevance, _ = synthetic_relevance(kind="blob", seed=4)
    a, b = segment(relevance, "simple"), segment(2.0 * relevance - 5.0, "simple")
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)
    assert a.threshold == pytest.approx(b.threshold, abs=1e-9)


# --- gmm ---------------------------------------------------------------------------------------------------

def _gmm_data(seed):
    relevance, _ = synthetic_relevance(kind=("blob", "curve")[seed % 2], seed=seed, noise=0.1, interior=0.4)
    return gmm.domain_values(relevance)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmm_kmeans_start_matches_sklearn_kmeans(seed):
    x = _gmm_data(seed)
    ours = gmm._kmeans_labels(x, seed)
    ref = KMeans(n_clusters=3, n_init=1, random_state=np.random.RandomState(seed)).fit(x[:, None]).labels_
    assert np.mean(ours == ref) >= 0.9999


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmm_fit_matches_sklearn_gaussian_mixture(seed):
    x = _gmm_data(seed)
    ours = gmm.fit_gmm(x, seed)
    ref = GaussianMixture(3, covariance_type="full", init_params="kmeans", random_state=seed, tol=1e-3,
                          reg_covar=1e-6, max_iter=100).fit(x[:, None])
    np.testing.assert_allclose(ours["weights"], ref.weights_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours["means"], ref.means_.ravel(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours["variances"], ref.covariances_.ravel(), rtol=1e-6, atol=1e-12)
    assert ours["iterations"] == ref.n_iter_ and ours["converged"] == ref.converged_
    post = gmm.posteriors(x, ours["weights"], ours["means"], ours["variances"], 0)
    np.testing.assert_allclose(post, ref.predict_proba(x[:, None])[:, 0], atol=1e-9)


def test_gmm_numpy_engine_equals_sklearn_engine():
    relevance, _ = synthetic_relevance(kind="blob", seed=8, noise=0.1, interior=0.5)
    a, b = segment(relevance, "gmm", engine="numpy"), segment(relevance, "gmm", engine="sklearn")
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)
    assert a.params["damage_component"] == b.params["damage_component"]
    assert abs(a.params["n_saturated"] - b.params["n_saturated"]) <= 2


def test_gmm_posteriors_saturate_at_exactly_one_as_in_the_paper():
    """Paper §4: two narrow background components near 0 and one wide damage component. For moderately large
    values the background densities fall below 2^-53 of the damage density, so the float64 posterior is
    exactly 1.0 for most damage pixels: no threshold tells them apart and the PR curve runs flat there.
    The map: two background textures (relevance ~N(0, 0.003) and ~N(0.03, 0.005)) and a 25x30 damage patch
    (1.5 % of the pixels) with relevance uniform in [0.2, 1]."""
    rng = np.random.default_rng(0)
    relevance = rng.normal(0.0, 0.003, (224, 224))
    relevance[:, 112:] = rng.normal(0.03, 0.005, (224, 112))
    relevance[60:85, 40:70] += rng.uniform(0.2, 1.0, (25, 30))
    result = segment(relevance, "gmm")
    p = result.params
    means, variances = np.array(p["means"]), np.array(p["variances"])
    damage = p["damage_component"]
    assert damage == 2 and p["component_names"][2] == "damage"  # components are sorted by mean
    assert np.all(np.abs(means[:2]) < 0.05) and np.all(variances[:2] < variances[2] / 1000)
    sat = p["n_saturated"]
    assert sat >= 0.6 * np.count_nonzero(result.mask)
    assert p["saturated_fraction"] == pytest.approx(sat / relevance.size)
    # However high the threshold, the saturated pixels stay in the mask.
    assert np.count_nonzero(result.mask_at(1.0)) >= sat
    # sklearn itself saturates the same pixels (up to a few at the rounding edge).
    ref = segment(relevance, "gmm", engine="sklearn").params["n_saturated"]
    assert abs(ref - sat) <= 0.01 * sat


def test_gmm_two_valued_map_marks_the_upper_value():
    relevance = np.zeros((40, 40))
    relevance[20, 20] = 3.0
    result = segment(relevance, "gmm")
    assert "two distinct" in result.params["degenerate"]
    assert result.mask.sum() == 25 and result.mask[18:23, 18:23].all()


# --- bmm ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a0", "b0", "a1", "b1", "w1"), [(2, 20, 16, 4, 0.05), (2, 20, 16, 4, 0.1),
                                                        (1.5, 30, 8, 3, 0.1), (3, 12, 12, 3, 0.15)])
def test_bmm_recovers_generating_beta_parameters(a0, b0, a1, b1, w1):
    """Values drawn i.i.d. from w0 Beta(a0, b0) + w1 Beta(a1, b1): the data the EM sees after filtering,
    clamping, dropping and normalising. With well separated components the hard E-step rules agree with the
    true memberships almost everywhere, so the moment estimates should land near the generating values."""
    rng = np.random.default_rng(0)
    n = 20000
    is_damage = rng.random(n) < w1
    y = np.where(is_damage, rng.beta(a1, b1, n), rng.beta(a0, b0, n))
    fit = bmm.fit_bmm(y)
    assert fit["converged"]
    np.testing.assert_allclose(fit["alpha"], [a0, a1], rtol=0.15)
    np.testing.assert_allclose(fit["beta"], [b0, b1], rtol=0.15)
    assert fit["weights"][1] == pytest.approx(w1, abs=0.01)


def kept_half(relevance):
    """The pixels BMM keeps, computed independently: filter, clamp, drop values <= the N//2-th smallest."""
    f = np.maximum(cv2.blur(relevance, (5, 5), borderType=cv2.BORDER_REFLECT), 0)
    return f, f > np.sort(f.ravel())[f.size // 2 - 1]


def test_bmm_drops_the_smaller_half_and_scores_it_zero():
    rng = np.random.default_rng(3)
    relevance = rng.normal(size=(64, 64))
    result = segment(relevance, "bmm")
    _, kept = kept_half(relevance)
    assert result.params["n_kept"] == np.count_nonzero(kept)
    assert np.all(result.score[~kept] == 0)
    assert domain_values(relevance, "bmm").size == np.count_nonzero(kept)
    # Ties at the cut are dropped too: a map that is zero on 70 % of its pixels keeps only the positives.
    sparse = np.where(rng.random((64, 64)) < 0.7, 0.0, rng.random((64, 64)))
    f, kept = kept_half(sparse)
    assert np.count_nonzero(kept) < sparse.size // 2
    assert segment(sparse, "bmm").params["n_kept"] == np.count_nonzero(kept)


def test_bmm_score_rises_with_relevance_and_is_not_forced_to_one():
    relevance, truth = synthetic_relevance(kind="blob", size=24, seed=6, noise=0.1)
    result = segment(relevance, "bmm")
    y = domain_values(relevance, "bmm")
    f, kept = kept_half(relevance)
    order = np.argsort(f[kept], kind="stable")
    assert np.all(np.diff(result.score[kept][order]) >= 0)  # non-decreasing in the filtered relevance
    # The score is the mixture posterior without the E-step's hard overrides ...
    p = result.params
    posterior = bmm.damage_posterior(y, p["alpha"], p["beta"], p["weights"])
    np.testing.assert_allclose(result.score[kept], posterior, atol=1e-6)
    # ... so where the damage is faint it is not forced to 1 above the damage component's mean.
    faint, _ = synthetic_relevance(kind="blob", size=24, seed=6, noise=0.1, interior=0.3)
    res = segment(faint, "bmm")
    y = domain_values(faint, "bmm")
    above_mean = res.score[kept_half(faint)[1]][y > res.params["damage_mean"]]
    assert above_mean.size > 100 and np.unique(above_mean).size > 100


def test_bmm_posterior_is_clamped_at_the_turning_point_when_densities_cross_twice():
    y = np.linspace(0.01, 0.99, 99)
    post = bmm.damage_posterior(y, [2.0, 5.0], [20.0, 30.0], [0.9, 0.1])  # log f1/f0 rises, then falls
    assert np.all(np.diff(post) >= 0)
    peak = 3.0 / (3.0 + 10.0)
    np.testing.assert_allclose(post[y > peak], post[y > peak][0])


def test_component_densities_integrate_to_the_weights():
    relevance, _ = synthetic_relevance(kind="blob", seed=1, noise=0.1, interior=0.5)
    for method, (lo, hi) in (("gmm", (-3.0, 3.0)), ("bmm", (0.0, 1.0))):
        result = segment(relevance, method)
        x = np.linspace(lo, hi, 200001)[1:-1]
        curves = component_densities(result, x)
        assert set(curves) == set(result.params["component_names"])
        for name, w in zip(result.params["component_names"], result.params["weights"], strict=True):
            assert np.trapezoid(curves[name], x) == pytest.approx(w, rel=2e-3, abs=1e-6)
        assert domain_values(relevance, method).ndim == 1
    assert component_densities(segment(relevance, "simple"), np.linspace(0, 1, 5)) == {}


# --- degenerate maps ---------------------------------------------------------------------------------------

DEGENERATE = {
    "zeros": np.zeros((32, 32)),
    "constant": np.full((32, 32), 0.7),
    "negative constant": np.full((32, 32), -2.0),
    "1x1": np.array([[5.0]]),
    "1x7": np.arange(7.0)[None, :],
    "integers": np.arange(16).reshape(4, 4),
    "bool": np.eye(6, dtype=bool),
    "tiny values": np.random.default_rng(0).random((16, 16)) * 1e-300,
    "huge values": np.random.default_rng(1).standard_normal((16, 16)) * 1e300,
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_maps_give_a_valid_result_without_warnings(method, name):
    relevance = DEGENERATE[name]
    result = segment(relevance, method)
    assert result.score.shape == relevance.shape and result.mask.shape == relevance.shape
    assert np.all((result.score >= 0) & (result.score <= 1))
    json.dumps(result.params, allow_nan=False)
    if name in ("zeros", "constant", "negative constant", "1x1"):
        assert not result.mask.any() and result.params["degenerate"]


@pytest.mark.parametrize("method", METHODS)
def test_one_hot_pixel(method):
    relevance = np.zeros((50, 50))
    relevance[10, 40] = 1e-3
    mask = segment(relevance, method).mask
    expected = 1 if method == "simple" else 25  # the 5x5 filter spreads it
    assert mask.sum() == expected and mask[10, 40]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise_a_clear_error(method, bad):
    relevance = np.zeros((8, 8))
    relevance[3, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        segment(relevance, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("relevance", [np.zeros(5), np.zeros((2, 3, 4)), np.zeros((0, 4)),
                                       np.ones((3, 3), complex)])
def test_wrong_shapes_and_types_raise(method, relevance):
    with pytest.raises(ValueError):
        segment(relevance, method)


@pytest.mark.parametrize("method", METHODS)
def test_4096_square_maps_finish_and_subsample_the_fit(method):
    relevance = np.zeros((4096, 4096))
    assert not segment(relevance, method).mask.any()
    relevance, truth = synthetic_relevance((2048, 2048), kind="blob", seed=0, noise=0.1, smooth=0)
    relevance = np.kron(relevance, np.ones((2, 2)))  # 4096², cheap to draw
    truth = np.kron(truth, np.ones((2, 2), bool))
    result = segment(relevance, method)  # speed is benchmarks/segment_speed.py's job, not a unit test's
    assert iou(result.mask, truth) >= 0.8
    if method != "simple":
        assert result.params["fit_samples"] == 1 << 20
