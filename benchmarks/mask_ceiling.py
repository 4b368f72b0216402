"""How good are the masks a relevance map could give, and how much of it does each segmenter get? (issue 12)

For a trained classifier and a folder with true masks (``lrpseg demo`` writes ``DIR/images`` and ``DIR/masks``),
explain every image of ``images/damaged`` once and report, pooled over the images:

* per segmenter: AP of its score map, IoU at its default threshold and at the best single threshold;
* for the raw positive relevance divided by each image's maximum (no filter, and Gaussian blurs): AP and IoU at
  the best single threshold, and the mean over images of the IoU at each image's best threshold (the ceiling
  of any per-image threshold rule on that map);
* BMM and GMM with the paper's 5×5 mean filter replaced by 1×1 and 3×3.

    python benchmarks/mask_ceiling.py MODEL.safetensors DEMO_DIR [--rules ours]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.images import read_image
from lrpseg.core.metrics import SegmentationCounts, average_precision
from lrpseg.core.pipeline import explain_image, mask_from_score
from lrpseg.core.segment import base, bmm, gmm, segment

THRESHOLDS = np.linspace(0.01, 0.99, 99)


def iou(masks: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Pooled (micro) IoU of the damage class."""
    counts = sum((SegmentationCounts.from_masks(m, t) for m, t in zip(masks, truths, strict=True)),
                 SegmentationCounts())
    return counts.iou()


def best_single_threshold(scores: list[np.ndarray], truths: list[np.ndarray]) -> tuple[float, float]:
    """The best pooled IoU over one threshold shared by every image, and that threshold."""
    return max((iou([mask_from_score(s, t) for s in scores], truths), float(t)) for t in THRESHOLDS)


def per_image_best(scores: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Mean over images of the IoU at each image's own best threshold."""
    return float(np.mean([max(iou([mask_from_score(s, t)], [m]) for t in THRESHOLDS)
                          for s, m in zip(scores, truths, strict=True)]))


def raw_score(relevance: np.ndarray, sigma: float) -> np.ndarray:
    """Positive relevance (optionally blurred) divided by its maximum."""
    positive = np.clip(relevance, 0, None).astype(np.float32)
    if sigma:
        positive = cv2.GaussianBlur(positive, (0, 0), sigma)
    return positive / max(float(positive.max()), 1e-12)


def segmenter_rows(maps: list[np.ndarray], truths: list[np.ndarray], label: str = "") -> list[str]:
    rows = []
    for name in ("simple", "gmm", "bmm"):
        results = [segment(r, name) for r in maps]
        scores = [r.score for r in results]
        default = iou([mask_from_score(r.score, r.threshold) for r in results], truths)
        best, at = best_single_threshold(scores, truths)
        rows.append(f"| {name}{label} | {average_precision(scores, truths):.3f} | {default:.3f} | "
                    f"{best:.3f} (at {at:.2f}) | {per_image_best(scores, truths):.3f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path, help="demo-style folder with images/damaged and masks/")
    parser.add_argument("--rules", default="ours")
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    model, _ = load_checkpoint(args.model)
    maps, truths = [], []
    for path in sorted((args.folder / "images" / "damaged").glob("*.png")):
        explained = explain_image(model, read_image(path), rule_set=args.rules)
        maps.append(explained.to_original(explained.relevance).astype(np.float32))
        truths.append(cv2.imread(str(args.folder / "masks" / path.name), cv2.IMREAD_GRAYSCALE) > 0)
    print(f"{len(maps)} damaged images, rule set {args.rules}, model {args.model}\n")
    print("| score map | AP | IoU at the default threshold | IoU at the best single threshold "
          "| mean IoU at each image's best threshold |")
    print("|---|---|---|---|---|")
    for sigma in (0, 1, 2):
        scores = [raw_score(r, sigma) for r in maps]
        best, at = best_single_threshold(scores, truths)
        print(f"| raw relevance / max, blur σ={sigma} | {average_precision(scores, truths):.3f} | – | "
              f"{best:.3f} (at {at:.2f}) | {per_image_best(scores, truths):.3f} |")
    for row in segmenter_rows(maps, truths):
        print(row)
    paper_filter = base.mean_filter
    try:
        for size in (1, 3):
            def smaller(values, size=size):
                return paper_filter(values, size) if size > 1 else values.copy()

            bmm.mean_filter = gmm.mean_filter = smaller
            for row in segmenter_rows(maps, truths, f", {size}×{size} filter"):
                if not row.startswith("| simple"):
                    print(row)
    finally:
        bmm.mean_filter = gmm.mean_filter = paper_filter
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
