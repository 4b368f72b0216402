"""core.metrics against scikit-learn on random data, edge cases, and the OpenCV PR plot."""

import cv2
import numpy as np
import pytest
from lrpseg.core.metrics import (
    SegmentationCounts,
    average_precision,
    classification_metrics,
    no_skill_precision,
    pr_curve,
    score_histograms,
    segmentation_metrics,
)
from lrpseg.core.pr_plot import plot_pr_curves
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    jaccard_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)


def random_set(seed, n=4, grid=None):
    """Score maps of different sizes and truths correlated with them; scores on a k/grid grid if given."""
    rng = np.random.default_rng(seed)
    scores, truths = [], []
    for _ in range(n):
        shape = tuple(rng.integers(5, 40, 2))
        s = rng.random(shape)
        if grid:
            s = rng.integers(0, grid + 1, shape) / grid
        scores.append(s)
        truths.append(rng.random(shape) < 0.05 + 0.5 * s**2)
    return scores, truths


def flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


@pytest.mark.parametrize("seed", range(3))
def test_segmentation_metrics_match_sklearn(seed):
    scores, truths = random_set(seed)
    preds = [s > 0.6 for s in scores]
    m = segmentation_metrics(preds, truths)
    y, p = flat(truths), flat(preds)
    assert m["iou"] == pytest.approx(jaccard_score(y, p))
    assert m["precision"] == pytest.approx(precision_score(y, p))
    assert m["recall"] == pytest.approx(recall_score(y, p))
    assert m["mean_iou"] == pytest.approx(np.mean([jaccard_score(t.ravel(), q.ravel())
                                                   for t, q in zip(truths, preds, strict=True)]))
    assert m["mean_precision"] == pytest.approx(np.mean([precision_score(t.ravel(), q.ravel())
                                                         for t, q in zip(truths, preds, strict=True)]))
    assert m["mean_recall"] == pytest.approx(np.mean([recall_score(t.ravel(), q.ravel())
                                                      for t, q in zip(truths, preds, strict=True)]))
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == y.size and m["n_images"] == len(preds)


def test_stack_single_image_and_counts_addition_agree():
    rng = np.random.default_rng(5)
    scores = list(rng.random((3, 10, 12)))
    truths = [rng.random((10, 12)) < s for s in scores]
    preds = np.stack([s > 0.5 for s in scores])
    stacked = segmentation_metrics(preds, np.stack(truths))
    listed = segmentation_metrics(list(preds), truths)
    assert stacked == pytest.approx(listed, nan_ok=True)
    one = segmentation_metrics(preds[0], truths[0])
    assert one["n_images"] == 1 and one["iou"] == one["mean_iou"]
    total = sum((SegmentationCounts.from_masks(p, t) for p, t in zip(preds, truths, strict=True)),
                SegmentationCounts())
    assert (total.tp, total.fp, total.fn, total.tn) == tuple(stacked[k] for k in ("tp", "fp", "fn", "tn"))


def test_undefined_ratios_are_nan_and_left_out_of_means():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    m = segmentation_metrics([empty, full], [empty, full])  # image 0: nothing predicted, nothing there
    assert m["mean_iou"] == 1.0 and m["mean_precision"] == 1.0 and m["mean_recall"] == 1.0
    m = segmentation_metrics([empty], [empty])
    assert np.isnan(m["iou"]) and np.isnan(m["mean_iou"]) and np.isnan(m["precision"])
    assert segmentation_metrics([empty], [empty], zero_division=0.0)["iou"] == 0.0
    m = segmentation_metrics([full], [empty])  # false alarm on an undamaged image
    assert m["iou"] == 0.0 and m["precision"] == 0.0 and np.isnan(m["recall"])


def test_masks_may_be_integer_but_not_score_maps():
    truth = np.zeros((4, 4), np.uint8)
    truth[1, 1] = 255
    assert segmentation_metrics([truth.astype(bool)], [truth])["iou"] == 1.0
    assert segmentation_metrics([np.where(truth, 1.0, 0.0)], [truth])["iou"] == 1.0
    with pytest.raises(ValueError, match="0 and 1"):
        segmentation_metrics([np.full((4, 4), 0.3)], [truth])


def test_shape_mismatches_raise():
    with pytest.raises(ValueError, match="shape"):
        segmentation_metrics([np.zeros((3, 3), bool)], [np.zeros((3, 4), bool)])
    with pytest.raises(ValueError, match="predictions"):
        segmentation_metrics([np.zeros((3, 3), bool)] * 2, [np.zeros((3, 3), bool)])


@pytest.mark.parametrize("seed", range(3))
def test_histogram_pr_curve_equals_sklearn_on_grid_scores(seed):
    scores, truths = random_set(seed, grid=1000)
    precision, recall, thresholds = pr_curve(scores, truths)  # default: 1001-bin histograms
    ref_p, ref_r, ref_t = precision_recall_curve(flat(truths), flat(scores))
    np.testing.assert_allclose(precision, ref_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall, ref_r, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thresholds, ref_t)
    assert average_precision(scores, truths) == pytest.approx(
        average_precision_score(flat(truths), flat(scores)), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_exact_mode_is_sklearn_and_histograms_approximate_it(seed):
    scores, truths = random_set(seed)
    scores = [s.astype(np.float32) for s in scores]
    p, r, t = pr_curve(scores, truths, bins=None)
    ref_p, ref_r, ref_t = precision_recall_curve(flat(truths), flat(scores).astype(np.float64))
    np.testing.assert_array_equal(p, ref_p)
    np.testing.assert_array_equal(r, ref_r)
    exact = average_precision(scores, truths, bins=None)
    assert exact == pytest.approx(average_precision_score(flat(truths), flat(scores)), abs=1e-12)
    assert average_precision(scores, truths) == pytest.approx(exact, abs=5e-3)
    assert average_precision(scores, truths, bins=101) == pytest.approx(exact, abs=3e-2)


def test_score_histograms_count_every_pixel_once():
    scores, truths = random_set(9)
    thresholds, pos, neg = score_histograms(scores, truths, bins=11)
    assert thresholds[0] == 0.0 and thresholds[-1] == 1.0 and thresholds[3] == 0.3
    assert pos.sum() == flat(truths).sum() and pos.sum() + neg.sum() == flat(scores).size
    s, y = flat(scores), flat(truths)
    for j, t in enumerate(thresholds):
        assert pos[j:].sum() == np.count_nonzero(y & (s >= t))


def test_pr_curve_input_errors():
    s = np.full((4, 4), 0.5)
    with pytest.raises(ValueError, match="no damage"):
        pr_curve(s, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pr_curve(s + 1, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pr_curve(np.full((4, 4), np.nan), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="bins"):
        pr_curve(s, np.ones((4, 4), bool), bins=1)


def test_no_skill_precision_is_the_damage_fraction():
    _, truths = random_set(2)
    assert no_skill_precision(truths) == pytest.approx(flat(truths).mean())
    assert no_skill_precision(np.zeros((0, 0), bool)) != no_skill_precision(np.zeros((0, 0), bool))  # NaN


@pytest.mark.parametrize("seed", range(3))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, 200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, 1 - y_true)
    m = classification_metrics(y_true, y_pred)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["tpr"] == pytest.approx(recall_score(y_true, y_pred, pos_label=1))
    assert m["tnr"] == pytest.approx(recall_score(y_true, y_pred, pos_label=0))
    labels = np.array(["undamaged", "damaged"])
    named = classification_metrics(labels[y_true], labels[y_pred], positive="damaged")
    assert named == m


def test_classification_metrics_with_one_class_only():
    m = classification_metrics([1, 1, 1], [1, 0, 1])
    assert m["tpr"] == pytest.approx(2 / 3) and np.isnan(m["tnr"])
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        classification_metrics([1, 0], [1])


def test_plot_pr_curves_writes_a_png(tmp_path):
    scores, truths = random_set(1, grid=1000)
    p, r, _ = pr_curve(scores, truths)
    p2, r2, _ = pr_curve([np.sqrt(s) for s in scores], truths)
    path = plot_pr_curves({"gmm": (p, r), "bmm": (p2, r2)}, no_skill_precision(truths), tmp_path / "pr.png",
                          title="PR curves")
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (480, 640, 3)
    blue = np.all(img == (180, 119, 31), axis=2).sum()  # first curve's colour (BGR)
    orange = np.all(img == (14, 127, 255), axis=2).sum()
    assert blue > 100 and orange > 100
    assert (img < 128).all(axis=2).sum() > 500  # axes, ticks, labels, dashed no-skill line
    with pytest.raises(OSError):
        plot_pr_curves({"gmm": (p, r)}, None, tmp_path / "missing-folder" / "pr.png")
