"""Evaluation metrics (paper §4): damage-class IoU / precision / recall, PR curves, classification rates.

Pixel metrics come in two aggregations: micro (counts summed over every pixel of every image, then the
ratio) and per-image mean (the ratio per image, averaged over the images where it is defined). A ratio with
a zero denominator (e.g. precision of an empty predicted mask) is undefined: it is ``zero_division``
(default NaN) and NaN values are left out of the per-image means.

PR curves are computed from histograms of the scores on a fixed grid of thresholds by default, so many
large score maps never need to be concatenated; ``bins=None`` gives the exact curve through scikit-learn.
Drawing the curves is :mod:`lrpseg.core.pr_plot`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

DEFAULT_BINS = 1001


def _ratio(num: int, den: int, zero_division: float = np.nan) -> float:
    return num / den if den else float(zero_division)


def _as_list(arrays: np.ndarray | Iterable[np.ndarray]) -> list[np.ndarray]:
    """One array (H, W), a stack (N, H, W) or an iterable of arrays -> list of arrays."""
    if isinstance(arrays, np.ndarray):
        return [arrays] if arrays.ndim <= 2 else list(arrays)
    return [np.asarray(a) for a in arrays]


def _as_mask(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype.kind == "f" and np.any((mask != 0) & (mask != 1)):
        raise ValueError(f"{what} mask holds values other than 0 and 1; threshold score maps first")
    return mask.astype(bool, copy=False)


def _pairs(preds, truths) -> list[tuple[np.ndarray, np.ndarray]]:
    preds, truths = _as_list(preds), _as_list(truths)
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions but {len(truths)} ground-truth masks")
    for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
        if p.shape != t.shape:
            raise ValueError(f"image {i}: prediction shape {p.shape} != ground-truth shape {t.shape}")
    return list(zip(preds, [_as_mask(t, "ground truth") for t in truths], strict=True))


@dataclass(frozen=True)
class SegmentationCounts:
    """Confusion counts of the damage class; add them up over images for micro metrics.

    Attributes
    ----------
    tp, fp, fn, tn : int
        True positives, false positives, false negatives, true negatives (pixels).
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def from_masks(cls, pred: np.ndarray, truth: np.ndarray) -> SegmentationCounts:
        """Count one predicted mask against its ground truth (same shape, truthy = damage).

        Masks may be bool or integer (e.g. 0/255 PNGs); float arrays must hold only 0 and 1, so that a
        score map passed by mistake raises ``ValueError`` instead of counting as all damage.
        """
        pred, truth = _as_mask(pred, "prediction"), _as_mask(truth, "ground truth")
        if pred.shape != truth.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {truth.shape}")
        tp = int(np.count_nonzero(pred & truth))
        n_pred, n_true = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
        return cls(tp, n_pred - tp, n_true - tp, pred.size - n_pred - n_true + tp)

    def __add__(self, other: SegmentationCounts) -> SegmentationCounts:
        return SegmentationCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                                  self.tn + other.tn)

    def iou(self, zero_division: float = np.nan) -> float:
        """tp / (tp + fp + fn)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, zero_division)

    def precision(self, zero_division: float = np.nan) -> float:
        """tp / (tp + fp)."""
        return _ratio(self.tp, self.tp + self.fp, zero_division)

    def recall(self, zero_division: float = np.nan) -> float:
        """tp / (tp + fn)."""
        return _ratio(self.tp, self.tp + self.fn, zero_division)


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def segmentation_metrics(preds, truths, zero_division: float = np.nan) -> dict[str, float | int]:
    """IoU, precision and recall of the damage class, micro and per-image mean.

    Parameters
    ----------
    preds, truths : np.ndarray or iterable of np.ndarray
        Predicted and ground-truth masks: one (H, W) array, a stack (N, H, W) or a list of (H_i, W_i)
        arrays; truthy = damage. Pairs must have equal shapes.
    zero_division : float
        Value of a ratio whose denominator is 0 (NaN leaves that image out of the mean).

    Returns
    -------
    dict
        ``iou``, ``precision``, ``recall`` (micro); ``mean_iou``, ``mean_precision``, ``mean_recall``
        (per-image means over the images where the ratio is defined); ``n_images``; ``tp``, ``fp``,
        ``fn``, ``tn`` (summed pixel counts).
    """
    total = SegmentationCounts()
    ious, precisions, recalls = [], [], []
    pairs = _pairs(preds, truths)
    for pred, truth in pairs:
        c = SegmentationCounts.from_masks(pred, truth)
        total = total + c
        ious.append(c.iou(zero_division))
        precisions.append(c.precision(zero_division))
        recalls.append(c.recall(zero_division))
    return {
        "iou": total.iou(zero_division),
        "precision": total.precision(zero_division),
        "recall": total.recall(zero_division),
        "mean_iou": _nanmean(ious),
        "mean_precision": _nanmean(precisions),
        "mean_recall": _nanmean(recalls),
        "n_images": len(pairs),
        "tp": total.tp,
        "fp": total.fp,
        "fn": total.fn,
        "tn": total.tn,
    }


def _checked_scores(score: np.ndarray, index: int) -> np.ndarray:
    score = np.asarray(score)
    if score.size and not (float(score.min()) >= 0.0 and float(score.max()) <= 1.0):
        raise ValueError(f"image {index}: scores must lie in [0, 1] (and not be NaN)")
    return score


def score_histograms(scores, truths, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count damage and background pixels per threshold bin, image by image.

    Parameters
    ----------
    scores : np.ndarray or iterable of np.ndarray
        Score maps in [0, 1].
    truths : np.ndarray or iterable of np.ndarray
        Ground-truth masks of the same shapes.
    bins : int
        Number of thresholds ``t_j = j / (bins - 1)``; bin j holds scores in [t_j, t_{j+1}) (the last: = 1).

    Returns
    -------
    thresholds, positives, negatives : np.ndarray
        float64 (bins,), int64 (bins,), int64 (bins,).
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    thresholds = np.arange(bins) / (bins - 1)  # exactly j / (bins - 1): scores k / (bins - 1) hit an edge
    positives = np.zeros(bins, dtype=np.int64)
    negatives = np.zeros(bins, dtype=np.int64)
    for i, (score, truth) in enumerate(_pairs(scores, truths)):
        score = _checked_scores(score, i)
        # side="right" - 1 compares against the exact float thresholds: s >= t_j  <=>  bin index >= j.
        idx = np.searchsorted(thresholds, score.ravel(), side="right") - 1
        flat_truth = truth.ravel()
        positives += np.bincount(idx[flat_truth], minlength=bins)
        negatives += np.bincount(idx[~flat_truth], minlength=bins)
    return thresholds, positives, negatives


def pr_curve(scores, truths, bins: int | None = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve of the damage class over all pixels of all images.

    Parameters
    ----------
    scores : np.ndarray or iterable of np.ndarray
        Score maps in [0, 1] (for "simple": the normalised relevance).
    truths : np.ndarray or iterable of np.ndarray
        Ground-truth masks of the same shapes (at least one damage pixel in total).
    bins : int or None
        Thresholds on the grid ``j / (bins - 1)`` from per-image histograms (memory O(bins)); None:
        the exact curve from ``sklearn.metrics.precision_recall_curve`` on the concatenated pixels. Both
        agree exactly when every score lies on the grid.

    Returns
    -------
    precision, recall, thresholds : np.ndarray
        In scikit-learn's layout: thresholds increasing (only those some pixel reaches, i.e. non-empty
        bins), ``precision[i]``/``recall[i]`` for the mask ``score >= thresholds[i]``, and a final point
        (precision 1, recall 0) without threshold.

    Raises
    ------
    ValueError
        No damage pixel at all, scores outside [0, 1], or mismatched shapes.
    """
    if bins is None:
        pairs = _pairs(scores, truths)
        for i, (score, _) in enumerate(pairs):
            _checked_scores(score, i)
        y = np.concatenate([t.ravel() for _, t in pairs])
        if not y.any():
            raise ValueError("no damage pixel in the ground truth: the PR curve is undefined")
        s = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p, _ in pairs])
        return precision_recall_curve(y, s)
    thresholds, positives, negatives = score_histograms(scores, truths, bins)
    n_pos = int(positives.sum())
    if n_pos == 0:
        raise ValueError("no damage pixel in the ground truth: the PR curve is undefined")
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    used = (positives + negatives) > 0
    tp, fp = tp[used], fp[used]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return np.append(precision, 1.0), np.append(recall, 0.0), thresholds[used]


def average_precision(scores, truths, bins: int | None = DEFAULT_BINS) -> float:
    """Average precision, ``sum_n (R_n - R_{n+1}) P_n`` (scikit-learn's definition, no interpolation).

    Parameters
    ----------
    scores, truths, bins
        As in ``pr_curve``; ``bins=None`` calls ``sklearn.metrics.average_precision_score``.

    Returns
    -------
    float
    """
    if bins is None:
        pairs = _pairs(scores, truths)
        y = np.concatenate([t.ravel() for _, t in pairs])
        if not y.any():
            raise ValueError("no damage pixel in the ground truth: average precision is undefined")
        s = np.concatenate([_checked_scores(p, i).astype(np.float64).ravel()
                            for i, (p, _) in enumerate(pairs)])
        return float(average_precision_score(y, s))
    precision, recall, _ = pr_curve(scores, truths, bins)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def no_skill_precision(truths) -> float:
    """Precision of a segmenter that guesses: the fraction of damage pixels over all images.

    Parameters
    ----------
    truths : np.ndarray or iterable of np.ndarray
        Ground-truth masks.

    Returns
    -------
    float
        NaN when there are no pixels.
    """
    pos = total = 0
    for t in _as_list(truths):
        pos += int(np.count_nonzero(t))
        total += int(np.size(t))
    return _ratio(pos, total)


def classification_metrics(y_true: Sequence, y_pred: Sequence, positive=1) -> dict[str, float | int]:
    """Balanced accuracy, true-positive rate and true-negative rate of image-level decisions.

    Parameters
    ----------
    y_true, y_pred : sequence
        Labels per image (e.g. 0/1, bool, or "damaged"/"undamaged").
    positive : object
        The label of the positive class ("damaged").

    Returns
    -------
    dict
        ``balanced_accuracy`` (mean of the defined rates, as scikit-learn's ``balanced_accuracy_score``),
        ``tpr``, ``tnr`` (NaN when the class is absent from ``y_true``), ``tp``, ``fp``, ``fn``, ``tn``.
    """
    t = np.asarray(y_true) == positive
    p = np.asarray(y_pred) == positive
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    c = SegmentationCounts.from_masks(p, t)
    tpr = _ratio(c.tp, c.tp + c.fn)
    tnr = _ratio(c.tn, c.tn + c.fp)
    return {"balanced_accuracy": _nanmean([tpr, tnr]), "tpr": tpr, "tnr": tnr,
            "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}
