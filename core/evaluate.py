"""Scoring an export folder against ground-truth masks, the way the paper scores (§4).

Segmentation metrics (IoU, precision, recall of the damage class, micro over all pixels and per-image mean,
precision-recall curve and average precision from the score maps) are computed over the images whose ground
truth holds damage, as in the paper's Table 3; classification metrics (balanced accuracy, TPR, TNR) compare
each image's decision in the export report with whether its ground-truth mask is empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lrpseg.core.export import REPORT_NAME, SCORES_DIR
from lrpseg.core.images import ImageReadError, list_images, read_image
from lrpseg.core.metrics import (
    average_precision,
    classification_metrics,
    no_skill_precision,
    pr_curve,
    segmentation_metrics,
)


@dataclass
class Evaluation:
    """Metrics of one export folder and the problems met while reading it."""

    metrics: dict
    curve: tuple[np.ndarray, np.ndarray] | None = None
    problems: list[str] = field(default_factory=list)


def read_mask(path: Path) -> np.ndarray:
    """A mask file as booleans (> 127 is damage, which also binarises anti-aliased edges)."""
    image = read_image(path)
    if image.ndim == 3:
        image = image.max(axis=2)
    limit = 127 if image.dtype == np.uint8 else 32767
    return image > limit


def _masks_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in list_images(folder, recursive=False) if p.suffix.lower() == ".png"}


def _decisions(out_dir: Path) -> dict[str, bool]:
    report = out_dir / REPORT_NAME
    if not report.exists():
        return {}
    decisions = {}
    for record in json.loads(report.read_text())["images"]:
        if record.get("mask") and record.get("damaged") is not None:
            decisions[Path(record["mask"]).stem] = bool(record["damaged"])
    return decisions


def evaluate_folder(out_dir: Path, truth_dir: Path, include_undamaged: bool = False) -> Evaluation:
    """Compare the masks in ``out_dir`` with the same-stem masks in ``truth_dir``.

    Parameters
    ----------
    out_dir
        An export folder written by :class:`core.export.Exporter`.
    truth_dir
        Ground-truth masks named ``<stem>.png`` (non-zero = damage).
    include_undamaged
        Also score the segmentation of images whose truth is empty (the paper scores damaged images only).

    Raises
    ------
    ValueError
        When no predicted mask has a ground-truth partner.
    """
    predicted = _masks_by_stem(Path(out_dir))
    truth = _masks_by_stem(Path(truth_dir))
    problems = [
        f"{path}: no ground-truth mask named {stem}.png in {truth_dir}"
        for stem, path in sorted(predicted.items())
        if stem not in truth
    ]
    stems = sorted(set(predicted) & set(truth))
    if not stems:
        raise ValueError(f"no mask in {out_dir} has a same-named ground-truth mask in {truth_dir}")
    preds, truths, scores, has_damage = [], [], [], {}
    for stem in stems:
        try:
            true_mask = read_mask(truth[stem])
            pred_mask = read_mask(predicted[stem])
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if true_mask.shape != pred_mask.shape:
            problems.append(
                f"{predicted[stem]}: size {pred_mask.shape} differs from the truth's {true_mask.shape}"
            )
            continue
        has_damage[stem] = bool(true_mask.any())
        if not (has_damage[stem] or include_undamaged):
            continue
        preds.append(pred_mask)
        truths.append(true_mask)
        score_path = Path(out_dir) / SCORES_DIR / f"{stem}.npy"
        scores.append(np.load(score_path).astype(np.float32) if score_path.exists() else None)

    metrics: dict = {"images_scored": len(preds)}
    curve = None
    if preds:
        metrics.update(segmentation_metrics(preds, truths))
        metrics["no_skill_precision"] = float(no_skill_precision(truths))
        if all(s is not None for s in scores):
            precision, recall, _ = pr_curve(scores, truths)
            curve = (precision, recall)
            metrics["ap"] = float(average_precision(scores, truths))
        else:
            problems.append(
                f"{out_dir}: score maps missing, so no PR curve or AP (segment without --no-scores)"
            )
            metrics["ap"] = None
    decisions = _decisions(Path(out_dir))
    judged = [stem for stem in has_damage if stem in decisions]
    if judged:
        y_true = np.array([has_damage[s] for s in judged], dtype=int)
        y_pred = np.array([decisions[s] for s in judged], dtype=int)
        judged_metrics = classification_metrics(y_true, y_pred)
        metrics.update({key: judged_metrics[key] for key in ("balanced_accuracy", "tpr", "tnr")})
        metrics["images_classified"] = len(judged)
    else:
        metrics.update({"balanced_accuracy": None, "tpr": None, "tnr": None})
    return Evaluation(metrics=metrics, curve=curve, problems=problems)


def metrics_table(metrics: dict) -> str:
    """The metrics as a two-column Markdown table."""
    rows = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        shown = "–" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        rows.append(f"| {key} | {shown} |")
    return "\n".join(rows)
