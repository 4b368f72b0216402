"""The pixel weight of hand-corrected masks in a distillation, measured on ``lrpseg demo`` data (issue 16).

k damaged training images get their true masks as exact targets (stand-ins for masks corrected by hand, the
``exact`` argument of :func:`lrpseg.core.student.distil.distil`); every other image keeps its image-level
target (the explanation with its ignore band, or all background). One student per weight and number of draws
per epoch (``--repeats``), the rest of :class:`~lrpseg.core.student.distil.DistilConfig` at its defaults, and one
without corrected masks (k = 0) as the reference; each is scored on another seed's damaged images as
``benchmarks/demo_student.py`` scores its students (same folders, same gating, pixels pooled). The best weight is
``DistilConfig.corrected_weight``.

Usage::

    lrpseg demo /tmp/d0 --seed 0 --size 128 && lrpseg demo /tmp/d1 --seed 1 --size 128
    lrpseg train /tmp/d0/images --labels-from-folders --arch slim --input-size 128 --epochs 40 --out clf.safetensors
    nice -n 10 .venv/bin/python benchmarks/mixed_weight.py --train /tmp/d0 --test /tmp/d1 --model clf.safetensors
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch
from demo_student import load_demo, score_analyses
from lrpseg.core.device import describe_device
from lrpseg.core.evaluate import read_mask
from lrpseg.core.labels import DAMAGED
from lrpseg.core.student.distil import DistilConfig, distil
from lrpseg.core.student.infer import student_analysis


def stand_ins(root: Path, paths: list[Path], labels: list[str], k: int, seed: int) -> dict[int, np.ndarray]:
    """True masks of ``k`` damaged training images drawn with ``seed``, by index: the corrected-mask stand-ins."""
    damaged = [i for i, label in enumerate(labels) if label == DAMAGED]
    chosen = sorted(np.random.default_rng(seed).choice(damaged, size=min(k, len(damaged)), replace=False))
    return {int(i): read_mask(root / "masks" / f"{paths[i].stem}.png") for i in chosen}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True, help="demo folder the classifier was trained on")
    p.add_argument("--test", type=Path, required=True, help="demo folder of another seed")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--k", type=int, default=5, help="corrected-mask stand-ins (true masks of training images)")
    p.add_argument("--weights", nargs="+", type=float, default=[1.0, 3.0, 10.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="distillation seeds (and draws of the k)")
    p.add_argument("--repeats", nargs="+", type=int, default=[DistilConfig.corrected_repeats],
                   help="draws of each corrected mask per epoch (DistilConfig.corrected_repeats)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=DistilConfig.epochs)
    p.add_argument("--no-reference", action="store_true", help="skip the student without corrected masks")
    p.add_argument("--out", type=Path, default=None, help="JSON of the results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    demo = load_demo(args.train, args.test, args.model)
    model, meta, train_paths, train_labels = demo.model, demo.meta, demo.train_paths, demo.train_labels
    train_images, test_images, truths = demo.train_images, demo.test_images, demo.truths
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": describe_device(torch.device("cpu")),
        "classifier_val_balanced_accuracy": meta["training"].get("val_balanced_accuracy"),
        "k": args.k,
        "rows": [],
    }
    runs = ([] if args.no_reference else [(0, None, 1)]) + [(args.k, w, r) for w in args.weights for r in args.repeats]
    for seed in args.seeds:
        masks = stand_ins(args.train, train_paths, train_labels, args.k, seed)
        for k, weight, repeats in runs:
            exact = {i: (mask, weight) for i, mask in masks.items()} if k else None
            config = DistilConfig(epochs=args.epochs, seed=seed, device="cpu", corrected_repeats=repeats)
            started = time.perf_counter()
            student = distil(train_images, train_labels, model, config, exact=exact)
            seconds = time.perf_counter() - started
            analyses = [student_analysis(model, student, image) for image in test_images]
            row = {"seed": seed, "k": k, "weight": weight, "repeats": repeats, **score_analyses(analyses, truths),
                   "threshold": student.threshold, "seconds": round(seconds, 1),
                   "stand_ins": [train_paths[i].name for i in sorted(masks)] if k else []}  # fmt: skip
            results["rows"].append(row)
            print(f"seed {seed} k {k} weight {weight} repeats {repeats}: IoU {row['iou']:.3f} "
                  f"P {row['precision']:.3f} R {row['recall']:.3f} AP {row['ap']:.3f} t {student.threshold:.2f} "
                  f"({seconds:.0f} s)",
                  flush=True)  # fmt: skip
    print("\n| k | weight | repeats | IoU | precision | recall | AP | threshold |\n|---|---|---|---|---|---|---|---|")
    for k, weight, repeats in runs:
        rows = [r for r in results["rows"] if (r["k"], r["weight"], r["repeats"]) == (k, weight, repeats)]
        mean = {key: float(np.mean([r[key] for r in rows])) for key in ("iou", "precision", "recall", "ap",
                                                                          "threshold")}  # fmt: skip
        print(f"| {k} | {'–' if weight is None else f'{weight:g}'} | {repeats if k else '–'} | {mean['iou']:.3f} "
              f"| {mean['precision']:.3f} | {mean['recall']:.3f} | {mean['ap']:.3f} "
              f"| {mean['threshold']:.2f} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
