"""Scoring for the Magnetic Tile benchmark: classification (Table 2) and segmentation (Table 3, Figures 4-5).

Everything runs through the product's functions: :func:`core.train.predict_probabilities` for P(damaged),
:func:`core.lrp.explain` (batched, on the model's device) for relevance, :func:`core.segment.segment` for
score maps and default masks, :mod:`core.metrics` for the numbers and the PR plots. ``core.pipeline.analyse``
does the same per image (explain the centre crop, segment the S×S relevance, map it to the image grid with
the crop's ``Placement``); here the maps stay on the S×S crop, where the masks were cut to (see
``benchmarks.mt_data``), and the relevance of many crops is computed in one batch.

Segmentation is scored on the damaged test crops (with their flipped copies), for every crop whether or not
the classifier called it damaged (the quality of the explanation itself). ``gated_iou`` is the product's
view instead: crops the classifier calls undamaged get an empty mask (``Analysis.mask_at``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from lrpseg.core.lrp import explain
from lrpseg.core.metrics import (
    average_precision,
    classification_metrics,
    no_skill_precision,
    pr_curve,
    segmentation_metrics,
)
from lrpseg.core.pr_plot import plot_pr_curves
from lrpseg.core.segment import segment
from lrpseg.core.train import predict_probabilities

PAPER_TABLE2 = {"128n": (0.961, 0.957, 0.965), "onefc": (0.985, 0.971, 0.999)}
"""Balanced accuracy, TPR, TNR per head (paper Table 2)."""
PAPER_TABLE3 = {
    ("128n", "ours", "simple"): (0.349, 0.352, 0.976),
    ("128n", "ours", "gmm"): (0.129, 0.129, 0.993),
    ("128n", "ours", "bmm"): (0.462, 0.638, 0.679),
    ("onefc", "ours", "simple"): (0.386, 0.404, 0.944),
    ("onefc", "ours", "gmm"): (0.168, 0.169, 0.991),
    ("onefc", "ours", "bmm"): (0.402, 0.669, 0.614),
    ("128n", "montavon", "simple"): (0.466, 0.497, 0.897),
    ("128n", "montavon", "gmm"): (0.216, 0.216, 0.996),
    ("128n", "montavon", "bmm"): (0.332, 0.703, 0.448),
    ("onefc", "montavon", "simple"): (0.425, 0.491, 0.808),
    ("onefc", "montavon", "gmm"): (0.238, 0.246, 0.947),
    ("onefc", "montavon", "bmm"): (0.317, 0.686, 0.470),
}
"""IoU, precision, recall per (head, rule set, segmenter) (paper Table 3)."""
PAPER_UNET = (0.461, 0.578, 0.699)
RULE_SET_NAMES = ("ours", "montavon")
SEGMENTER_NAMES = ("simple", "gmm", "bmm")
HEAD_LABELS = {"128n": "VGG-A 128N", "onefc": "VGG-A one FC"}


def classify(model: torch.nn.Module, batch: torch.Tensor, targets: np.ndarray) -> tuple[dict, np.ndarray]:
    """Balanced accuracy, TPR and TNR of the decision P(damaged) >= 0.5; also the probabilities."""
    device = next(model.parameters()).device
    prob = predict_probabilities(model, batch, device, batch_size=64)
    metrics = classification_metrics(np.asarray(targets, dtype=int), (prob >= 0.5).astype(int))
    return metrics, prob


def relevance_maps(
    model: torch.nn.Module,
    batch: torch.Tensor,
    rule_set: str,
    maxpool: str = "wta",
    batch_size: int = 32,
    start: str = "logodds",
) -> np.ndarray:
    """LRP relevance of the "damaged" decision from ``start``, (N, S, S) float32, computed batch by batch on the
    model's device."""
    device = next(model.parameters()).device
    out = []
    for first in range(0, len(batch), batch_size):
        chunk = batch[first : first + batch_size].to(device)
        out.append(explain(model, chunk, target=1, rule_set=rule_set, maxpool=maxpool, start=start).relevance)
    return np.concatenate(out).astype(np.float32)


def score_maps(
    score: Sequence[np.ndarray], masks: Sequence[np.ndarray], truths: np.ndarray, gate: np.ndarray | None = None
) -> dict:
    """IoU / precision / recall (micro and per-image mean) of ``masks``, AP of ``score``, and the PR curve.

    ``mask_fraction`` is the mean share of a crop's pixels the masks mark (the truth marks ``truths.mean()``).
    """
    metrics = segmentation_metrics(list(masks), list(truths))
    result = {
        "iou": metrics["iou"],
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "mean_iou": metrics["mean_iou"],
        "ap": average_precision(list(score), list(truths)),
        "mask_fraction": float(np.mean([np.count_nonzero(m) / m.size for m in masks])),
    }
    if gate is not None:
        gated = [m if keep else np.zeros_like(m) for m, keep in zip(masks, gate, strict=True)]
        result["gated_iou"] = segmentation_metrics(gated, list(truths))["iou"]
    precision, recall, _ = pr_curve(list(score), list(truths))
    return {"metrics": result, "curve": (precision, recall)}


def segment_all(
    relevance: np.ndarray, method: str, seed: int, workers: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Score maps and default masks of one segmenter for a stack of relevance maps (maps in threads)."""
    workers = workers or min(8, os.cpu_count() or 1)

    def one(rel: np.ndarray):
        result = segment(rel, method=method, seed=seed)
        return result.score, result.mask

    if workers == 1:
        results = [one(rel) for rel in relevance]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, relevance))
    return [score for score, _ in results], [mask for _, mask in results]


def evaluate_lrp(
    model: torch.nn.Module,
    batch: torch.Tensor,
    truths: np.ndarray,
    predicted_damaged: np.ndarray,
    *,
    rule_sets: Sequence[str] = RULE_SET_NAMES,
    segmenters: Sequence[str] = SEGMENTER_NAMES,
    maxpool: str = "wta",
    seed: int = 0,
    lrp_batch: int = 32,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """Every rule set × segmenter on the damaged test crops of one classifier.

    Returns
    -------
    results : dict
        ``{(rule_set, segmenter): {"metrics": {...}, "curve": (precision, recall)}}``.
    timing : dict
        Seconds spent in LRP and in segmentation, per rule set.
    """
    results, timing = {}, {}
    for rule_set in rule_sets:
        started = time.perf_counter()
        relevance = relevance_maps(model, batch, rule_set, maxpool, lrp_batch)
        lrp_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for method in segmenters:
            scores, masks = segment_all(relevance, method, seed)
            results[(rule_set, method)] = score_maps(scores, masks, truths, predicted_damaged)
            m = results[(rule_set, method)]["metrics"]
            log(f"    {rule_set:>8} {method:>6}: IoU {m['iou']:.3f} P {m['precision']:.3f} R {m['recall']:.3f}")
        timing[rule_set] = {
            "lrp_s": round(lrp_seconds, 2),
            "segment_s": round(time.perf_counter() - started, 2),
            "maps": len(relevance),
        }
    return results, timing


def plot_figures(
    lrp: dict,
    unet: dict | None,
    truths: np.ndarray,
    out_dir: Path,
    prefix: str = "magnetic_tile",
    students: dict | None = None,
) -> dict[str, Path]:
    """One PR plot per rule set (paper Figure 4: Montavon, Figure 5: ours) with the no-skill line.

    ``lrp`` maps ``(head, rule_set, segmenter)`` to a :func:`score_maps` result; the U-Net curve is drawn in
    every plot; ``students`` (``"head/rule_set/segmenter/rN"`` -> result) in the plot of their rule set.
    """
    no_skill = no_skill_precision(list(truths))
    paths = {}
    for rule_set in dict.fromkeys(key[1] for key in lrp):
        curves = {
            f"{HEAD_LABELS[head]} {method}": lrp[(head, rs, method)]["curve"]
            for head, rs, method in lrp
            if rs == rule_set
        }
        if unet is not None:
            curves["U-Net"] = unet["curve"]
        for key, value in (students or {}).items():
            head, rs, method, rounds = key.split("/")
            if rs == rule_set:
                curves[f"student {HEAD_LABELS[head]} {method} {rounds}"] = value["curve"]
        path = Path(out_dir) / f"{prefix}_pr_{rule_set}.png"
        title = f"Magnetic Tile PR curves, LRP rule set '{rule_set}'"
        paths[rule_set] = plot_pr_curves(curves, no_skill, path, size=(720, 540), title=title)
    return paths


def _signed_colours(relevance: np.ndarray) -> np.ndarray:
    """Relevance as BGR: positive red, negative blue, zero white, scaled by the map's largest magnitude."""
    scale = float(np.abs(relevance).max()) or 1.0
    r = np.clip(relevance / scale, -1.0, 1.0)
    fade_pos, fade_neg = 1.0 - np.clip(r, 0, 1), 1.0 + np.clip(r, -1, 0)
    bgr = np.stack([fade_pos, fade_pos * fade_neg, fade_neg], axis=-1)
    return (bgr * 255).astype(np.uint8)


def plot_examples(
    crops: np.ndarray, truths: np.ndarray, relevance: np.ndarray, masks: Sequence[np.ndarray], path: Path, title: str
) -> Path:
    """One row per crop: the crop with the true damage outlined, the signed relevance, the mask (IoU written on it).

    Parameters
    ----------
    crops : numpy.ndarray
        uint8 (N, S, S, 3) RGB crops as the classifier saw them.
    truths, masks : numpy.ndarray or sequence of numpy.ndarray
        bool (N, S, S): true damage and the segmenter's mask.
    relevance : numpy.ndarray
        (N, S, S) LRP relevance.
    path : Path
        Output PNG.
    title : str
        Text above the grid.
    """
    import cv2

    green, gap = (0, 200, 0), 4
    rows = []
    for crop, truth, rel, mask in zip(crops, truths, relevance, masks, strict=True):
        outline, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        image = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        shown = cv2.cvtColor(mask.astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR)
        for panel in (image, shown):
            cv2.drawContours(panel, outline, -1, green, 1)
        iou = segmentation_metrics([mask], [truth], zero_division=1.0)["iou"]
        cv2.putText(shown, f"IoU {iou:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 128, 255), 1, cv2.LINE_AA)
        spacer = np.full((crop.shape[0], gap, 3), 255, np.uint8)
        rows.append(np.hstack([image, spacer, _signed_colours(rel), spacer, shown]))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.vstack(rows[:-1])
    header = np.full((24, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    if not cv2.imwrite(str(path), np.vstack([header, grid])):
        raise OSError(f"{path}: OpenCV could not write the figure")
    return path


def example_figure(
    model: torch.nn.Module,
    crops: torch.Tensor,
    truths: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    config: tuple[str, str, str],
    maxpool: str,
    path: Path,
    seed: int = 0,
) -> Path:
    """:func:`plot_examples` for ``crops`` (normalised tensors) explained with ``config`` = (head, rule set, method)."""
    head, rule_set, method = config
    relevance = relevance_maps(model, crops, rule_set, maxpool)
    _, masks = segment_all(relevance, method, seed, workers=1)
    pixels = crops.permute(0, 2, 3, 1).numpy() * np.asarray(std) + np.asarray(mean)
    rgb = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    title = f"{HEAD_LABELS[head]}, {rule_set}, {method}"
    return plot_examples(rgb, truths, relevance, masks, path, title)
