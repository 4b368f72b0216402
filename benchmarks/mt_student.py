"""Student rows of the Magnetic Tile benchmark: :func:`lrpseg.core.student.distil.distil` on the training split,
image labels only, scored on the same damaged test crops as LRP and the U-Net.

For each requested rule set × teacher segmenter one student is trained; with self-training rounds, the student
is scored after its first training and after every round (``distil``'s ``on_round`` hook), so "with and
without self-training" come from one run. Each student is scored at its measured default threshold (IoU, P,
R, mask share) and at 0.5, with AP and the PR curve from its probability maps. Costs are measured side by
side: distillation seconds against the classifier's training seconds, and the student's forward pass on the
test crops against the classifier's forward pass on the same crops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import mt_eval
import numpy as np
import torch
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.metrics import segmentation_metrics
from lrpseg.core.student.distil import DistilConfig, distil
from lrpseg.core.student.infer import predict_batch
from lrpseg.core.train import predict_probabilities


def _forward_seconds(fn: Callable[[], object], repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def evaluate_students(
    model: torch.nn.Module,
    head: str,
    train_images: Sequence[np.ndarray],
    train_targets: np.ndarray,
    seg_x: torch.Tensor,
    seg_truth: np.ndarray,
    *,
    rule_sets: Sequence[str],
    segmenters: Sequence[str],
    config: DistilConfig,
    exact: Mapping[int, tuple[np.ndarray, float]] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """Distil and score one student per (rule set, segmenter).

    ``exact`` (training image index -> (mask, weight)) is passed on to ``distil``: masks corrected by hand, or
    their stand-ins (``benchmarks/mt_mixed.py``).

    Returns
    -------
    results : dict
        ``{"head/rule_set/segmenter/rN": {"metrics": {...}, "curve": (P, R), "summary": {...}}}`` with N the
        self-training rounds done when scored.
    costs : dict
        ``distil_seconds`` per student key, and ``student_forward_s`` / ``classifier_forward_s`` for the test
        crops (best of two).
    """
    labels = [DAMAGED if t == 1 else UNDAMAGED for t in train_targets]
    results, costs = {}, {"distil_seconds": {}}
    last = None
    for rule_set in rule_sets:
        for segmenter in segmenters:
            cfg = DistilConfig(**{**config.__dict__, "rule_set": rule_set, "segmenter": segmenter})

            def scored(round_, student, rule_set=rule_set, segmenter=segmenter):
                prob = predict_batch(student, seg_x, batch_size=16)
                key = f"{head}/{rule_set}/{segmenter}/r{round_}"
                value = mt_eval.score_maps(list(prob), list(prob >= student.threshold), seg_truth)
                value["metrics"]["threshold"] = student.threshold
                value["metrics"]["iou_at_0.5"] = segmentation_metrics(list(prob >= 0.5), list(seg_truth))["iou"]
                results[key] = value
                m = value["metrics"]
                log(f"    student {key}: IoU {m['iou']:.3f} (t {student.threshold:.2f}) P {m['precision']:.3f} "
                    f"R {m['recall']:.3f} AP {m['ap']:.3f} IoU@0.5 {m['iou_at_0.5']:.3f}")  # fmt: skip

            started = time.perf_counter()
            student = distil(list(train_images), labels, model, cfg, exact=exact, on_round=scored)
            seconds = time.perf_counter() - started
            for key in results:
                if key.startswith(f"{head}/{rule_set}/{segmenter}/"):
                    results[key]["summary"] = {k: student.training[k] for k in (
                        "counts", "teacher_coverage", "thresholds_per_round", "explain_seconds", "train_seconds",
                        "confident_pixel_fraction")}  # fmt: skip
            costs["distil_seconds"][f"{head}/{rule_set}/{segmenter}"] = round(seconds, 1)
            last = student
    if last is not None:
        device = next(model.parameters()).device
        costs["student_forward_s"] = round(_forward_seconds(lambda: predict_batch(last, seg_x, 16)), 3)
        costs["classifier_forward_s"] = round(
            _forward_seconds(lambda: predict_probabilities(model, seg_x, device, 16)), 3
        )
        costs["crops"] = int(len(seg_x))
    return results, costs
