"""The student on ``lrpseg demo`` data: distil on one seed's folder, score on another's, beside the LRP masks.

Uses a classifier trained on the training folder (``lrpseg train``) and the folders' image labels
(``damaged/`` / ``undamaged/``); ground-truth masks are read only to score the test folder. For each teacher
rule set × segmenter × ignore band one student is distilled (:func:`lrpseg.core.student.distil.distil`) and scored after
its first training and after each self-training round; the explanation's own masks are scored on the same
images. Scores are on the damaged test images with the product's gating (an image the classifier calls
undamaged gets an empty mask), pixels pooled: IoU, precision, recall at the default threshold, AP from the
score maps. Costs are measured side by side: distillation against the classifier's recorded training time,
the student's forward pass against the classifier's on the same test crops.

Usage::

    lrpseg demo /tmp/d0 --seed 0 --size 128 && lrpseg demo /tmp/d1 --seed 1 --size 128
    lrpseg train /tmp/d0/images --labels-from-folders --arch slim --input-size 128 --epochs 40 --out clf.safetensors
    .venv/bin/python benchmarks/demo_student.py --train /tmp/d0 --test /tmp/d1 --model clf.safetensors
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.device import describe_device
from lrpseg.core.evaluate import read_mask
from lrpseg.core.images import read_image
from lrpseg.core.labels import DAMAGED, labels_from_folders
from lrpseg.core.lrp import DEFAULT_RULE_SET, RULE_SETS
from lrpseg.core.metrics import average_precision, segmentation_metrics
from lrpseg.core.pipeline import analyse
from lrpseg.core.preprocess import prepare_eval
from lrpseg.core.student.distil import DistilConfig, distil
from lrpseg.core.student.infer import predict_batch, student_analysis
from lrpseg.core.train import predict_probabilities


def labelled_folder(root: Path) -> tuple[list[Path], list[str]]:
    """Image paths of a demo folder (``root/images``) and their labels from the damaged/undamaged folders."""
    labels = labels_from_folders(root / "images")
    rels = sorted(labels)
    return [root / "images" / rel for rel in rels], [labels[rel] for rel in rels]


def score_analyses(analyses, truths) -> dict:
    """IoU, precision, recall (pixels pooled, the product's gating) and AP of ``analyses`` against ``truths``."""
    masks = [a.mask_at() for a in analyses]
    scores = [a.segmentation.score if a.damaged else np.zeros_like(a.segmentation.score) for a in analyses]
    m = segmentation_metrics(masks, truths)
    return {"iou": m["iou"], "precision": m["precision"], "recall": m["recall"],
            "ap": average_precision(scores, truths)}  # fmt: skip


@dataclass
class DemoData:
    """A classifier, its training folder's images and labels, and the test folder's damaged images and masks."""

    model: torch.nn.Module
    meta: dict
    train_paths: list[Path]
    train_labels: list[str]
    train_images: list[np.ndarray]
    test_images: list[np.ndarray]
    truths: list[np.ndarray]


def load_demo(train: Path, test: Path, model_path: Path) -> DemoData:
    """Read the classifier and both demo folders (ground-truth masks of the test folder only, for scoring)."""
    model, meta = load_checkpoint(model_path)
    train_paths, train_labels = labelled_folder(train)
    test_paths, test_labels = labelled_folder(test)
    damaged = [path for path, label in zip(test_paths, test_labels, strict=True) if label == DAMAGED]
    return DemoData(model, meta, train_paths, train_labels, [read_image(path) for path in train_paths],
                    [read_image(path) for path in damaged],
                    [read_mask(test / "masks" / f"{path.stem}.png") for path in damaged])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True, help="demo folder the classifier was trained on")
    p.add_argument("--test", type=Path, required=True, help="demo folder of another seed")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--rules", nargs="+", default=[DEFAULT_RULE_SET], choices=list(RULE_SETS),
                   help="LRP rule sets of the teachers")  # fmt: skip
    p.add_argument("--segmenters", nargs="+", default=["gmm", "bmm"])
    p.add_argument("--bands", nargs="+", default=["0.1,0.1", "0,0"], help="ignore bands LOW,HIGH")
    p.add_argument("--self-training", type=int, default=1)
    p.add_argument("--epochs", type=int, default=DistilConfig.epochs)
    p.add_argument("--out", type=Path, default=None, help="JSON of the results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    demo = load_demo(args.train, args.test, args.model)
    model, meta, train_images, train_labels = demo.model, demo.meta, demo.train_images, demo.train_labels
    test_images, truths = demo.test_images, demo.truths
    results = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": describe_device(torch.device("cpu")),
        "classifier_train_seconds": meta["training"].get("seconds"),
        "lrp": {},
        "students": {},
    }
    teachers = [(rules, segmenter) for rules in args.rules for segmenter in args.segmenters]
    for rules, segmenter in teachers:
        analyses = [analyse(model, image, rule_set=rules, segmenter=segmenter) for image in test_images]
        teacher = f"{rules}/{segmenter}"
        results["lrp"][teacher] = score_analyses(analyses, truths)
        print(f"LRP {teacher}: {results['lrp'][teacher]}", flush=True)
    for rules, segmenter in teachers:
        teacher = f"{rules}/{segmenter}"
        for band in args.bands:
            low, high = (float(v) for v in band.split(","))
            config = DistilConfig(rule_set=rules, segmenter=segmenter, band_low=low, band_high=high,
                                  epochs=args.epochs, self_training_rounds=args.self_training,
                                  device="cpu")  # fmt: skip

            def scored(round_, student, teacher=teacher, band=band):
                analyses = [student_analysis(model, student, image) for image in test_images]
                key = f"{teacher}/band {band}/r{round_}"
                results["students"][key] = {**score_analyses(analyses, truths), "threshold": student.threshold}
                print(f"student {key}: {results['students'][key]}", flush=True)

            started = time.perf_counter()
            student = distil(train_images, train_labels, model, config, on_round=scored)
            seconds = time.perf_counter() - started
            for key in results["students"]:
                if key.startswith(f"{teacher}/band {band}/"):
                    results["students"][key]["distil_seconds_all_rounds"] = round(seconds, 1)
            print(f"  distillation {seconds:.0f} s, {student.training['explain_seconds']:.0f} s of it explaining",
                  flush=True)
    batch = torch.stack([prepare_eval(image, model.input_size, model.mean, model.std)[0] for image in test_images])
    timings = {}
    for name, fn in (("student", lambda: predict_batch(student, batch, 16)),
                     ("classifier", lambda: predict_probabilities(model, batch, torch.device("cpu"), 16))):  # fmt: skip
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        timings[name] = best
    results["forward_seconds"] = timings
    print(f"forward pass on {len(batch)} crops: student {timings['student']:.3f} s, classifier "
          f"{timings['classifier']:.3f} s ({timings['student'] / timings['classifier']:.2f}×)")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
