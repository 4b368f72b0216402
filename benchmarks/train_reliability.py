"""Does training converge every time? Seeds × data sets × heads, with default settings (issue 12).

Per run: train with :class:`core.train.TrainConfig` defaults (only the seed, head, width and the data set's
input size set), then on held-out images report balanced accuracy, the median max-probability (confidence) and
the pooled IoU of the exported-style masks (default rule set and segmenter, masks of images called undamaged
empty) against the true masks. A run fails when held-out balanced accuracy is below the data set's bar.

Data:

- ``demo``: training on ``lrpseg demo --seed S`` (80 images of 224², 64 for training and 16 for validation),
  held out: ``lrpseg demo --seed 1000+S``. A run fails below balanced accuracy 0.9.
- ``mt``: Magnetic Tile (``../shared/datasets/magnetic_tile``) in the CPU configuration of
  ``benchmarks/magnetic_tile.py`` (its stages: MT_Free limited to 300 images, width 0.125, input 224; the split
  is drawn with the seed too, unless ``--mt-split-seed`` fixes it), trained like the demo with the
  ``TrainConfig`` defaults on that split (validation: the validation images and their mirrors).
  ``--mt-training committed`` trains with the benchmark's own pinned rules instead (50 epochs, conv LR 1e-3,
  ImageNet normalisation, the paper's augmentation, no minimum epochs): with those, seed 1 collapses (from
  epoch 5 its output no longer depends on the image) and never recovers.
  Held out: the test split's crops and flips; IoU and AP of the rule set and segmenter (default: the
  product's) on the damaged test crops. A run fails below the best committed test balanced accuracy of its
  head minus 0.05 (:data:`MT_BEST`). One run takes about 10-15 minutes on an idle 2-core CPU; ``--mt-quick``
  shrinks it to the benchmark's ``--quick`` sizes and epochs (a chain check; its numbers mean nothing).

``--trace-held-out`` also scores every epoch's model on the held-out images (its balanced accuracy goes into
the row's ``held_out_balanced_accuracy_per_epoch``); with ``--set patience=1000`` a run goes on to its last
epoch, and ``benchmarks/epoch_selection.py`` replays other ways of choosing the kept epoch on those rows.

``--quick`` runs seeds 0 and 1 with the 128N head on the demo only (two runs, about 3-4 minutes each on an idle
2-core CPU); the default is 10 seeds × both data sets × both heads. Results go to stdout as a table and to
``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import mt_eval
import numpy as np
import torch
from lrpseg.core.demo import make_demo
from lrpseg.core.images import read_image, scan_folder
from lrpseg.core.labels import labels_from_folders
from lrpseg.core.lrp import DEFAULT_RULE_SET
from lrpseg.core.metrics import SegmentationCounts, average_precision, classification_metrics
from lrpseg.core.models import IMAGENET_MEAN, IMAGENET_STD, VGGA
from lrpseg.core.pipeline import analyse, segment_explained
from lrpseg.core.preprocess import prepare_eval
from lrpseg.core.segment import DEFAULT_SEGMENTER
from lrpseg.core.train import EpochCallback, TrainConfig, data_hash, label_to_target, train_classifier

DEMO_BAR = 0.9
#: Best committed Magnetic Tile test balanced accuracy per head, CPU configuration (RESULTS.md, issue 13's run
#: of 2026-11-30 for 128N; benchmarks/results/magnetic_tile.md for one FC); a run fails 0.05 below it.
MT_BEST = {"128n": 0.838, "onefc": 0.779}
MT_CPU = ["--device", "cpu", "--limit", "300", "--width", "0.125", "--input-size", "224", "--epochs", "50",
          "--lr-conv", "1e-3", "--unet-epochs", "0", "--student-epochs", "0"]  # fmt: skip


def demo_folder(root: Path, seed: int) -> Path:
    """An ``lrpseg demo`` folder for ``seed`` under ``root`` (made once)."""
    folder = root / f"demo{seed}"
    if not (folder / "images").exists():  # what `lrpseg demo DIR --seed SEED` writes
        make_demo(folder, n_damaged=40, n_undamaged=40, size=224, seed=seed)
    return folder


def labelled(folder: Path) -> tuple[list[Path], list[str]]:
    """Images of ``folder/images`` with their labels from the damaged/undamaged folder names."""
    images = folder / "images"
    paths, _ = scan_folder(images)
    labels = labels_from_folders(images)
    paths = [p for p in paths if p.relative_to(images).as_posix() in labels]
    return paths, [labels[p.relative_to(images).as_posix()] for p in paths]


def held_out_scores(
    model, folder: Path, rule_set: str, segmenter: str, start: str, also: Sequence[str] = ()
) -> dict:
    """Balanced accuracy, median max-probability, pooled IoU and AP of ``model`` on a demo-style folder; IoU and
    AP also for each segmenter in ``also`` on the same explanations (keys ``iou_<name>``, ``ap_<name>``)."""
    paths, labels = labelled(folder)
    targets, predicted, confidence = [], [], []
    names = [segmenter, *also]
    counts = {name: SegmentationCounts() for name in names}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
    truths = []
    for path, label in zip(paths, labels, strict=True):
        analysis = analyse(model, read_image(path), rule_set=rule_set, segmenter=segmenter, start=start)
        targets.append(label_to_target(label))
        predicted.append(int(analysis.damaged))
        confidence.append(max(analysis.probability, 1 - analysis.probability))
        if label == "damaged":
            truth = read_image(folder / "masks" / f"{path.stem}.png") > 127
            truths.append(truth)
            for name in names:
                result = analysis if name == segmenter else segment_explained(analysis.explained, name)
                counts[name] = counts[name] + SegmentationCounts.from_masks(result.mask_at(), truth)
                score = result.segmentation.score
                scores[name].append(score if analysis.damaged else np.zeros(truth.shape, np.float32))
    cls = classification_metrics(np.array(targets), np.array(predicted))
    row = {
        "balanced_accuracy": cls["balanced_accuracy"],
        "median_confidence": float(np.median(confidence)),
        "iou": counts[segmenter].iou(zero_division=0.0),
        "ap": average_precision(scores[segmenter], truths),
    }
    for name in also:
        row[f"iou_{name}"] = counts[name].iou(zero_division=0.0)
        row[f"ap_{name}"] = average_precision(scores[name], truths)
    return row


def held_out_tracer(make_batch: Callable[[VGGA], torch.Tensor], targets: Sequence[int]) -> EpochCallback:
    """An ``on_epoch`` callback for :func:`core.train.fit` that adds each epoch's held-out balanced accuracy
    (``held_out_balanced_accuracy``) to its record; ``make_batch`` builds the held-out inputs in the model's
    normalisation, once."""
    made: list[torch.Tensor] = []

    def trace(model: VGGA, record: dict) -> None:
        if not made:
            made.append(make_batch(model))
        record["held_out_balanced_accuracy"] = mt_eval.classify(model, made[0], targets)[0]["balanced_accuracy"]

    return trace


def demo_tracer(folder: Path) -> EpochCallback:
    """:func:`held_out_tracer` on the labelled images of a demo folder."""
    paths, labels = labelled(folder)
    images = [read_image(p) for p in paths]

    def batch(model: VGGA) -> torch.Tensor:
        return torch.stack([prepare_eval(im, model.input_size, model.mean, model.std)[0] for im in images])

    return held_out_tracer(batch, [label_to_target(label) for label in labels])


def run_demo(seed: int, head: str, root: Path, args) -> dict:
    """Train on the demo folder of ``seed`` with defaults and score on the held-out folder."""
    paths, labels = labelled(demo_folder(root, seed))
    config = TrainConfig(head=head, width=args.width, input_size=args.input_size, seed=seed, **args.overrides)
    trace = demo_tracer(demo_folder(root, 1000 + seed)) if args.trace_held_out else None
    started = time.perf_counter()
    result = train_classifier(paths, labels, config, on_epoch=trace)
    seconds = time.perf_counter() - started
    held = held_out_scores(
        result.model, demo_folder(root, 1000 + seed), args.rules, args.segmenter, args.start, args.also_segmenters
    )
    return run_row("demo", seed, head, result.summary, seconds, held, DEMO_BAR)


def run_row(data: str, seed: int, head: str, summary: dict, seconds: float, held: dict, bar: float) -> dict:
    """One run's row: its training summary, the held-out scores, and whether it failed the data set's bar."""
    return {
        "data": data,
        "seed": seed,
        "head": head,
        "val_balanced_accuracy": summary["val_balanced_accuracy"],
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "train_seconds": round(seconds, 1),
        # Per epoch, to tell a run stuck on the loss plateau at ln 2 from one that learned and then overfitted.
        "loss_per_epoch": [round(r["loss"], 3) for r in summary.get("history", [])],
        # Six places, so that epoch_selection.py replays early stopping without ties the run itself did not see.
        "val_balanced_accuracy_per_epoch": [round(r.get("balanced_accuracy", float("nan")), 6)
                                            for r in summary.get("history", [])],
        "val_loss_per_epoch": [round(r.get("val_loss", float("nan")), 6) for r in summary.get("history", [])],
        **traced_per_epoch(summary.get("history", [])),
        **held,
        "failed": bool(held["balanced_accuracy"] < bar),
    }


def traced_per_epoch(history: list[dict]) -> dict:
    """``held_out_balanced_accuracy_per_epoch`` where :func:`held_out_tracer` watched the run, else nothing."""
    if not history or "held_out_balanced_accuracy" not in history[0]:
        return {}
    return {"held_out_balanced_accuracy_per_epoch": [round(r["held_out_balanced_accuracy"], 4) for r in history]}


def run_mt(seed: int, head: str, args) -> dict:
    """Train ``head`` on the Magnetic Tile split of ``seed`` with the benchmark's stages; score on its test set."""
    from magnetic_tile import build_parser, finish_args
    from mt_stages import classifier, load_split

    sizes = ["--quick", "--unet-epochs", "0", "--student-epochs", "0"] if args.mt_quick else MT_CPU
    split_seed = seed if args.mt_split_seed is None else args.mt_split_seed
    mt_args = [*sizes, "--seed", str(split_seed), "--heads", head]
    mt_args = finish_args(build_parser().parse_args(mt_args))
    torch.manual_seed(seed)
    device = torch.device("cpu")
    data = load_split(mt_args, {})
    started = time.perf_counter()
    config = None if args.mt_training == "committed" else mt_default_config(head, seed, mt_args, args)
    trace = held_out_tracer(lambda m: renormalised(data.test_x, m), data.test_targets) if args.trace_held_out else None
    model, summary = classifier(head, mt_args, data, device, "core", {}, config, trace)
    seconds = time.perf_counter() - started
    test_x, seg_x = (renormalised(x, model) for x in (data.test_x, data.seg_x))
    metrics, prob = mt_eval.classify(model, test_x, data.test_targets)
    maps = mt_eval.relevance_maps(model, seg_x, args.rules, start=args.start)
    scores, masks = mt_eval.segment_all(maps, args.segmenter, seed)
    seg = mt_eval.score_maps(scores, masks, data.seg_truth, gate=prob[data.damaged] >= 0.5)["metrics"]
    held = {
        "balanced_accuracy": metrics["balanced_accuracy"],
        "median_confidence": float(np.median(np.maximum(prob, 1 - prob))),
        "iou": seg["gated_iou"],  # masks of crops the classifier calls undamaged are empty, as exported
        "ap": seg["ap"],
    }
    row = run_row("mt" + ("-quick" if args.mt_quick else ""), seed, head, summary, seconds, held,
                  MT_BEST[head] - 0.05)  # fmt: skip
    return {**row, "split_seed": split_seed, "test_split": split_fingerprint(data)}


def split_fingerprint(data) -> str:
    """A short :func:`core.train.data_hash` of the test images: runs with equal fingerprints were scored on the
    same images."""
    test = data.sets["test"]
    return data_hash([data.samples[i].image for i in test], data.targets[test])[:12]


def mt_default_config(head: str, seed: int, mt_args, args) -> TrainConfig:
    """The ``TrainConfig`` defaults (only head, width, input size and seed set) for a Magnetic Tile run;
    ``--mt-quick`` keeps the benchmark's quick epochs and no minimum."""
    quick = {"epochs": mt_args.epochs, "min_epochs": 0, "extend_while_poor": False} if args.mt_quick else {}
    return TrainConfig(head=head, width=mt_args.width, input_size=mt_args.input_size, seed=seed, device="cpu",
                       **quick, **args.overrides)  # fmt: skip


def renormalised(batch: torch.Tensor, model) -> torch.Tensor:
    """Crops ``batch`` (ImageNet-normalised by the benchmark's stages) normalised as ``model`` expects."""
    imagenet_mean, imagenet_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    mean, std = (torch.tensor(v, dtype=batch.dtype).view(1, 3, 1, 1) for v in (model.mean, model.std))
    return ((batch * imagenet_std + imagenet_mean) - mean) / std


def table(rows: list[dict]) -> str:
    """Markdown table of the runs (IoU / AP of extra segmenters in extra columns, where a run has them)."""
    extra = sorted({key[4:] for r in rows for key in r if key.startswith("iou_")})
    lines = [
        "| data | head | seed | epochs (best) | val BA | held-out BA | median confidence | IoU | AP | "
        + "".join(f"IoU / AP {name} | " for name in extra) + "s | failed |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(extra) + "---|---|",
    ]
    for r in rows:
        others = "".join(
            f"{r[f'iou_{name}']:.3f} / {r[f'ap_{name}']:.3f} | " if f"iou_{name}" in r else "– | " for name in extra
        )
        lines.append(
            f"| {r['data']} | {r['head']} | {seed_cell(r)} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{r['val_balanced_accuracy']:.3f} | {r['balanced_accuracy']:.3f} | {r['median_confidence']:.3f} | "
            f"{r['iou']:.3f} | {r['ap']:.3f} | {others}{r['train_seconds']:.0f} | {'yes' if r['failed'] else 'no'} |"
        )
    return "\n".join(lines)


def seed_cell(row: dict) -> str:
    """The run's seed, and its split's where a fixed split seed differs from it."""
    split = row.get("split_seed", row["seed"])
    return str(row["seed"]) if split == row["seed"] else f"{row['seed']} (split {split})"


def parse_override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, json.loads(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seeds 0 and 1, 128N head only")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--heads", nargs="+", default=["128n", "onefc"])
    parser.add_argument("--width", type=float, default=0.25, help="channel fraction (default slim, 0.25)")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--rules", default=DEFAULT_RULE_SET, help="LRP rule set (default: the product's)")
    parser.add_argument("--segmenter", default=DEFAULT_SEGMENTER)
    parser.add_argument("--also-segmenters", nargs="*", default=[],
                        help="demo: also score these segmenters on the same explanations (iou_<name>, ap_<name>)")
    parser.add_argument("--start", default="logodds", help="relevance start: logodds or logit")
    parser.add_argument("--set", dest="overrides", type=parse_override, action="append", default=[],
                        metavar="KEY=JSON", help="TrainConfig override, e.g. --set batch_norm=false")
    parser.add_argument("--trace-held-out", action="store_true",
                        help="also score every epoch's model on the held-out images (for epoch_selection.py)")
    parser.add_argument("--data-root", type=Path, help="where demo folders are made (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the runs as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", nargs="+", choices=("demo", "mt"), default=["demo", "mt"])
    parser.add_argument("--mt-quick", action="store_true", help="Magnetic Tile at the benchmark's --quick sizes")
    parser.add_argument("--mt-split-seed", type=int,
                        help="Magnetic Tile: draw every run's split with this seed, so that runs differ only in "
                             "training (default: each run's own seed, which also draws its split)")
    parser.add_argument("--mt-training", choices=("defaults", "committed"), default="defaults",
                        help="Magnetic Tile: TrainConfig defaults (default) or the benchmark's pinned rules")
    args = parser.parse_args(argv)
    args.overrides = dict(args.overrides)
    if args.quick:
        args.seeds, args.heads, args.data = 2, ["128n"], ["demo"]
    torch.set_num_threads(args.threads)
    root = args.data_root or Path(tempfile.mkdtemp(prefix="lrpseg-reliability-"))
    print(f"# train_reliability {date.today()} on {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} threads; overrides {args.overrides or 'none'}", flush=True)
    rows = []
    for data in args.data:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for head in args.heads:
                row = run_demo(seed, head, root, args) if data == "demo" else run_mt(seed, head, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(table(rows))
    failed = sum(r["failed"] for r in rows)
    print(f"RESULT runs={len(rows)} failed={failed}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
