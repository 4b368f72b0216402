"""Evaluation metrics (paper §4): damage-class IoU / precision / recall, PR curves, classification rates.

Pixel metrics come in two aggregations: micro (counts summed over every pixel of every image, then the
ratio) and per-image mean (the ratio per image, averaged over the images where it is defined). A ratio with
a zero denominator (e.g. precision of an empty predicted mask) is undefined: it is ``zero_division``
(default NaN) and NaN values are left out of the per-image means.

PR curves are computed from histograms of the scores on a fixed grid of thresholds by default, so many
large score maps never need to be concatenated; ``bins=None`` gives the exact curve through scikit-learn.
``plot_pr_curves`` draws curves with OpenCV (matplotlib is not a dependency).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
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


# ---------------------------------------------------------------------------------------------------------
# Plotting with OpenCV

_PALETTE_BGR = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
                (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=(0, 0, 0),
          anchor: str = "left") -> None:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = org
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, text, (x, y + h // 2), _FONT, scale, color, 1, cv2.LINE_AA)


def _vertical_text(img: np.ndarray, text: str, center: tuple[int, int], scale: float = 0.5) -> None:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    patch = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    cv2.putText(patch, text, (2, h + 2), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ph, pw = patch.shape[:2]
    y0, x0 = max(center[1] - ph // 2, 0), max(center[0] - pw // 2, 0)
    region = img[y0:y0 + ph, x0:x0 + pw]
    region[...] = np.minimum(region, patch[:region.shape[0], :region.shape[1]])


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], no_skill: float | None,
                   path: str | Path, size: tuple[int, int] = (640, 480), title: str | None = None) -> Path:
    """Draw precision-recall curves into a PNG with OpenCV.

    Parameters
    ----------
    curves : mapping of str to (precision, recall)
        One curve per name (e.g. the first two outputs of ``pr_curve``); at most 10 get distinct colours.
    no_skill : float or None
        Precision of the no-skill segmenter, drawn as a dashed horizontal line (None: not drawn).
    path : str or Path
        Output file (.png); its folder must exist.
    size : (int, int)
        Width and height in pixels.
    title : str, optional
        Text above the plot.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OSError
        If OpenCV cannot write the file.
    """
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    show_no_skill = no_skill is not None and bool(np.isfinite(no_skill))
    names = ([f"no skill ({no_skill:.3g})"] if show_no_skill else []) + list(curves)
    legend_w = max((cv2.getTextSize(name, _FONT, 0.45, 1)[0][0] for name in names), default=0) + 45
    left, right, top, bottom = 70, legend_w + 15, 40 if title else 20, 55
    x0, x1, y0, y1 = left, width - right, top, height - bottom

    def to_px(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
        xs = x0 + np.clip(recall, 0, 1) * (x1 - x0)
        ys = y1 - np.clip(precision, 0, 1) * (y1 - y0)
        return np.round(np.stack([xs, ys], axis=1)).astype(np.int32)

    for tick in np.linspace(0, 1, 6):
        px = int(round(x0 + tick * (x1 - x0)))
        py = int(round(y1 - tick * (y1 - y0)))
        cv2.line(img, (px, y0), (px, y1), (230, 230, 230), 1)
        cv2.line(img, (x0, py), (x1, py), (230, 230, 230), 1)
        _text(img, f"{tick:.1f}", (px, y1 + 14), anchor="center")
        _text(img, f"{tick:.1f}", (x0 - 8, py), anchor="right")
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    _text(img, "Recall", ((x0 + x1) // 2, height - 15), scale=0.55, anchor="center")
    _vertical_text(img, "Precision", (18, (y0 + y1) // 2), scale=0.55)
    if title:
        _text(img, title, (width // 2, 18), scale=0.55, anchor="center")

    legend: list[tuple[str, tuple[int, int, int], bool]] = []
    if show_no_skill:
        py = int(round(y1 - min(max(no_skill, 0.0), 1.0) * (y1 - y0)))
        for xs in range(x0, x1, 12):
            cv2.line(img, (xs, py), (min(xs + 6, x1), py), (0, 0, 0), 1, cv2.LINE_AA)
        legend.append((f"no skill ({no_skill:.3g})", (0, 0, 0), True))
    for i, (name, (precision, recall)) in enumerate(curves.items()):
        color = _PALETTE_BGR[i % len(_PALETTE_BGR)]
        pts = to_px(np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64))
        if len(pts):
            cv2.polylines(img, [pts[:, None, :]], False, color, 2, cv2.LINE_AA)
        legend.append((name, color, False))

    lx = x1 + 15
    ly = y0 + 8
    for name, color, dashed in legend:
        if dashed:
            cv2.line(img, (lx, ly), (lx + 8, ly), color, 1)
            cv2.line(img, (lx + 14, ly), (lx + 22, ly), color, 1)
        else:
            cv2.line(img, (lx, ly), (lx + 22, ly), color, 2, cv2.LINE_AA)
        _text(img, name, (lx + 30, ly))
        ly += 18
    path = Path(path)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write the PR plot to {path}")
    return path
