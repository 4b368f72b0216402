"""Scoring an export folder against ground-truth masks, the way the paper scores (§4).

Segmentation metrics (IoU, precision, recall of the damage class, micro over all pixels and per-image mean,
precision-recall curve and average precision from the score maps) are computed over the images whose ground
truth holds damage, as in the paper's Table 3; classification metrics (balanced accuracy, TPR, TNR) compare
each image's decision in the export report with whether its ground-truth mask is empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from lrpseg.core.export import REPORT_NAME
from lrpseg.core.export_layout import export_masks, score_files
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


def _truth_masks(truth_dir: Path) -> dict[str, Path]:
    """The ground-truth masks under ``truth_dir`` (sub-folders too), by relative path without suffix."""
    paths = (p for p in list_images(truth_dir) if p.suffix.lower() == ".png")
    return {p.relative_to(truth_dir).with_suffix("").as_posix(): p for p in paths}


def match_truth(predicted: dict[str, Path], truth: dict[str, Path], truth_dir: Path) -> tuple[dict, list[str]]:
    """Pair each exported mask with its ground truth: by relative path, else by stem in a flat truth folder.

    Parameters
    ----------
    predicted : dict of str to Path
        The export's masks by name (:func:`core.export_layout.export_masks`).
    truth : dict of str to Path
        The ground-truth masks by relative path without suffix.
    truth_dir : Path
        The ground-truth folder (for messages).

    Returns
    -------
    pairs : dict of str to (Path, Path)
        Mask name to (exported mask, ground-truth mask).
    problems : list of str
        A line per exported mask left without a partner, saying why. A stem shared by masks of several
        sub-folders, against a flat truth folder, pairs none of them: the message names them all.
    """
    pairs = {name: (predicted[name], truth[name]) for name in predicted if name in truth}
    flat = all("/" not in name for name in truth)
    problems, shared = [], set()
    by_stem: dict[str, list[str]] = {}
    for name in predicted if flat else ():
        if (stem := PurePosixPath(name).name) in truth:
            by_stem.setdefault(stem, []).append(name)
    for stem, names in by_stem.items():
        if len(names) == 1:
            pairs[names[0]] = (predicted[names[0]], truth[stem])
            continue
        shared.update(names)
        unpaired = [name for name in names if name not in pairs]
        problems.append(
            f"{' and '.join(str(predicted[name]) for name in names)} share the name {stem}.png, and the ground "
            f"truth in {truth_dir} is one flat folder: {', '.join(f'{name}.png' for name in unpaired)} not "
            f"scored; put the ground-truth masks in sub-folders like the images' ({truth_dir}/{unpaired[0]}.png)"
        )
    for name, path in predicted.items():
        if name not in pairs and name not in shared:
            problems.append(f"{path}: no ground-truth mask {name}.png in {truth_dir}")
    return dict(sorted(pairs.items())), problems


def _decisions(out_dir: Path) -> dict[str, bool]:
    """Each exported mask's classification (damaged or not) from the export report, by mask name."""
    report = out_dir / REPORT_NAME
    if not report.exists():
        return {}
    decisions = {}
    for record in json.loads(report.read_text())["images"]:
        if record.get("mask") and record.get("damaged") is not None:
            decisions[PurePosixPath(record["mask"]).with_suffix("").as_posix()] = bool(record["damaged"])
    return decisions


def evaluate_folder(out_dir: Path, truth_dir: Path, include_undamaged: bool = False) -> Evaluation:
    """Compare the masks in ``out_dir`` (its whole tree) with their ground-truth masks in ``truth_dir``.

    Parameters
    ----------
    out_dir
        An export folder written by :class:`core.export.Exporter`.
    truth_dir
        Ground-truth masks (``.png``, non-zero = damage): at the same relative path as the exported mask
        (``truth_dir/a/x.png`` for ``out_dir/a/x.png``), or, in a truth folder without sub-folders, under the
        mask's file name when no other exported mask shares it (:func:`match_truth`).
    include_undamaged
        Also score the segmentation of images whose truth is empty (the paper scores damaged images only).

    Raises
    ------
    ValueError
        When no predicted mask has a ground-truth partner.
    """
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    predicted = export_masks(out_dir)
    pairs, problems = match_truth(predicted, _truth_masks(truth_dir), truth_dir)
    if not pairs:
        reasons = "".join(f"; {problem}" for problem in problems[:3])
        raise ValueError(f"no mask in {out_dir} has a ground-truth partner in {truth_dir}{reasons}")
    preds, truths, scores, has_damage = [], [], [], {}
    for name, (pred_path, truth_path) in pairs.items():
        try:
            true_mask = read_mask(truth_path)
            pred_mask = read_mask(pred_path)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if true_mask.shape != pred_mask.shape:
            problems.append(f"{pred_path}: size {pred_mask.shape} differs from the truth's {true_mask.shape}")
            continue
        has_damage[name] = bool(true_mask.any())
        if not (has_damage[name] or include_undamaged):
            continue
        preds.append(pred_mask)
        truths.append(true_mask)
        score_path = score_files(out_dir, name)[0]
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
            problems.append(f"{out_dir}: score maps missing, so no PR curve or AP (segment without --no-scores)")
            metrics["ap"] = None
    decisions = _decisions(out_dir)
    judged = [name for name in has_damage if name in decisions]
    if judged:
        y_true = np.array([has_damage[n] for n in judged], dtype=int)
        y_pred = np.array([decisions[n] for n in judged], dtype=int)
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
