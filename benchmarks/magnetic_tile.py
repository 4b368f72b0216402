"""Magnetic Tile benchmark: the paper's protocol (§3.4, §4.1) through the product's core functions.

Damaged (MT_Blowhole + MT_Crack) against undamaged (MT_Free); a 60/20/20 split that keeps class proportions
and keeps near-duplicate captures of one tile region in one set (``benchmarks/mt_split.py``); VGG-A 128N and
VGG-A one FC trained from image-level labels; both LRP rule sets × three segmenters × both heads scored on
the damaged test images; a supervised U-Net trained on the masks of the same training split as the baseline.
Writes ``<out>/magnetic_tile.md`` (last line ``RESULT ...``), ``<out>/magnetic_tile.json`` and the PR plots
``<out>/magnetic_tile_pr_<rule set>.png``.

Usage::

    .venv/bin/python benchmarks/magnetic_tile.py                 # full run (meant for a CUDA GPU)
    .venv/bin/python benchmarks/magnetic_tile.py --quick         # whole chain, tiny, CPU, temp folder
    .venv/bin/python benchmarks/magnetic_tile.py --width 0.25 --input-size 128 --epochs 20 ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import mt_eval
import numpy as np
import torch
from lrpseg.core.checkpoint import save_checkpoint
from lrpseg.core.device import describe_device, resolve_device
from lrpseg.core.lrp import RULE_SETS
from lrpseg.core.models import HEADS, IMAGENET_MEAN, IMAGENET_STD
from lrpseg.core.segment import SEGMENTERS
from lrpseg.core.student.distil import DistilConfig
from mt_data import CROP_POLICIES
from mt_pretrain import pretrain_encoder
from mt_report import write_report
from mt_stages import classifier, load_split, log, train_unet_baseline
from mt_student import evaluate_students

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
QUICK = {"width": 0.125, "input_size": 64, "limit": 18, "epochs": 2, "unet_epochs": 2, "unet_base": 8,
         "student_epochs": 1, "student_base": 4, "student_segmenters": ["gmm"]}


def build_parser(description: str = __doc__.split("\n\n")[0]) -> argparse.ArgumentParser:
    """The benchmark's options (shared with ``benchmarks/mt_mixed.py``); :func:`finish_args` fills defaults."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Magnetic Tile dataset folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results; --quick: temp)")
    p.add_argument("--quick", action="store_true", help=f"tiny CPU run of the whole chain: {QUICK}")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (default auto; --quick: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    p.add_argument("--width", type=float, default=None, help="VGG-A channel fraction (default 1.0)")
    p.add_argument("--input-size", type=int, default=None, help="network input side S (default 224)")
    p.add_argument("--limit", type=int, default=None, help="images per class (first in capture order)")
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--lr-conv",
        type=float,
        default=None,
        help="conv learning rate; default 1e-4 (the paper's) for ImageNet weights or width > 0.25, else 1e-3",
    )
    p.add_argument("--lr-fc", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=20, help="epochs without better val balanced accuracy")
    p.add_argument("--imagenet-weights", default=None, help="'auto' or a VGG-11 file (never downloaded)")
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        help="first pretrain the convs self-supervised (SimCLR, benchmarks/mt_pretrain.py) on the training images "
        "without their labels for this many epochs; 0: no pretraining",
    )
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument(
        "--init-from",
        default=None,
        help="start the convs from this lrpseg checkpoint (e.g. <out>/pretrained_encoder.safetensors of a run "
        "with --pretrain-epochs) instead of pretraining",
    )
    p.add_argument(
        "--trainer",
        choices=("auto", "core", "device"),
        default="auto",
        help="core: core.train.fit (CPU crops per step); device: data kept on the device (mt_train.py); "
        "auto: device on CUDA, core on the CPU",
    )
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (device trainer, U-Net)")
    p.add_argument("--crop-policy", choices=CROP_POLICIES, default="paper")
    p.add_argument("--maxpool", choices=("wta", "avg"), default="wta")
    p.add_argument(
        "--rule-sets",
        nargs="+",
        choices=sorted(RULE_SETS),
        default=list(mt_eval.RULE_SET_NAMES),
        help="LRP rule sets to score (default: the paper's two)",
    )
    p.add_argument("--lrp-batch", type=int, default=32)
    p.add_argument("--unet-epochs", type=int, default=None, help="U-Net epochs (default 200; 0 skips it)")
    p.add_argument("--unet-base", type=int, default=None, help="U-Net base channels (default 32)")
    p.add_argument("--unet-batch-size", type=int, default=8)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument(
        "--unet-train",
        choices=("damaged", "all"),
        default="damaged",
        help="damaged: the damaged training images (the paper's 119); all: undamaged ones too",
    )
    p.add_argument("--student-epochs", type=int, default=None, help="student epochs (default 30; 0 skips students)")
    p.add_argument("--student-base", type=int, default=None, help="student U-Net base channels (default 16)")
    p.add_argument("--student-heads", nargs="+", choices=HEADS, default=["128n"], help="classifiers to distil")
    p.add_argument(
        "--student-rule-sets",
        nargs="+",
        default=["ours", "best"],
        help="rule sets of the students' targets; 'best' = the head's best rule set by LRP IoU (default ours best)",
    )
    p.add_argument("--student-segmenters", nargs="+", choices=list(SEGMENTERS), default=None,
                   help="teacher segmenters, one student each (default: the paper's three; --quick: gmm)")  # fmt: skip
    p.add_argument("--student-self-training", type=int, default=1, help="self-training rounds, each scored")
    p.add_argument("--student-band", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                   help="ignore band around the teacher segmenter's threshold (default: DistilConfig's)")
    p.add_argument(
        "--save-models", action="store_true", help="write <out>/magnetic_tile_<head>.safetensors (core.checkpoint)"
    )
    p.add_argument(
        "--load-models",
        type=Path,
        default=None,
        help="score the classifiers saved by --save-models in this folder instead of training them",
    )
    p.add_argument("--label", default=None, help="headline of the report (default: describes device/size)")
    return p


def finish_args(args: argparse.Namespace, prefix: str = "mt_quick_") -> argparse.Namespace:
    """Fill the defaults that depend on ``--quick`` (and on each other) into parsed arguments."""
    defaults = {"width": 1.0, "input_size": 224, "limit": None, "epochs": 100, "unet_epochs": 200, "unet_base": 32,
                "student_epochs": 30, "student_base": 16, "student_segmenters": list(mt_eval.SEGMENTER_NAMES)}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else value)
    if args.lr_conv is None:
        # Full width from random init: 1e-4 trains, 3e-4 did not (H200 probe); width 0.125 from random init:
        # 1e-3 reached 0.83 test balanced accuracy in 25 epochs where 3e-4 reached 0.59 (2-core CPU probe).
        started_trained = args.imagenet_weights or args.pretrain_epochs or args.init_from
        args.lr_conv = 1e-4 if started_trained or args.width > 0.25 else 1e-3
    if args.device is None:
        args.device = "cpu" if args.quick else "auto"
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix=prefix)) if args.quick else DEFAULT_OUT
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return finish_args(build_parser().parse_args(argv))


def _label(args: argparse.Namespace, device: torch.device) -> str:
    if args.label:
        return args.label
    if args.quick:
        return "QUICK RUN (tiny smoke test of the chain, numbers meaningless)"
    full = args.width == 1.0 and args.input_size == 224 and args.limit is None
    if device.type == "cpu":
        return "CPU RUN: reduced configuration (see the settings below), not comparable with the paper"
    return "GPU run, full configuration" if full else "GPU run, reduced configuration (see the settings)"


def student_config(args: argparse.Namespace, device: torch.device) -> DistilConfig:
    """The students' settings from the command line (the rest are :class:`DistilConfig`'s defaults)."""
    band = {} if args.student_band is None else {"band_low": args.student_band[0], "band_high": args.student_band[1]}
    return DistilConfig(
        base=args.student_base, epochs=args.student_epochs, self_training_rounds=args.student_self_training,
        maxpool=args.maxpool, seed=args.seed, device=str(device), **band,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    device = resolve_device(args.device)
    trainer = args.trainer if args.trainer != "auto" else ("device" if device.type == "cuda" else "core")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    log(f"Magnetic Tile benchmark on {describe_device(device)}; output {args.out}")

    data = load_split(args, timings)
    samples, groups, split, dataset, images, targets, sets = (
        data.samples, data.groups, data.split, data.dataset, data.images, data.targets, data.sets)
    test_x, test_targets, damaged, seg_x, seg_truth = (
        data.test_x, data.test_targets, data.damaged, data.seg_x, data.seg_truth)

    pretraining = None
    if args.pretrain_epochs > 0 and args.load_models is None and args.init_from is None:
        t = time.perf_counter()
        log(f"Self-supervised pretraining on the {len(sets['train'])} training images, labels unused")
        encoder, pretraining = pretrain_encoder(
            [images[i] for i in sets["train"]], width=args.width, input_size=args.input_size,
            epochs=args.pretrain_epochs, lr=args.pretrain_lr, seed=args.seed, device=device, progress=log,
        )  # fmt: skip
        args.init_from = str(args.out / "pretrained_encoder.safetensors")
        save_checkpoint(args.init_from, encoder, training=pretraining)
        timings["self-supervised pretraining"] = time.perf_counter() - t
    classification, segmentation, curves, examples = {}, {}, {}, {}
    students, student_costs = {}, {}
    originals = np.arange(len(damaged) // 3)  # eval_set's order: all centre crops, then their two flips
    picks = originals[np.linspace(0, len(originals) - 1, min(8, len(originals))).round().astype(int)]
    train_idx = sets["train"]
    for head in args.heads:
        model, summary = classifier(head, args, data, device, trainer, timings)
        t = time.perf_counter()
        metrics, prob = mt_eval.classify(model, test_x, test_targets)
        classification[head] = {
            **{k: metrics[k] for k in ("balanced_accuracy", "tpr", "tnr", "tp", "fp", "fn", "tn")},
            "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
            "val_balanced_accuracy": summary["val_balanced_accuracy"],
        }  # fmt: skip
        log(f"  test: bal.acc {metrics['balanced_accuracy']:.3f} TPR {metrics['tpr']:.3f} TNR {metrics['tnr']:.3f}")
        results, lrp_timing = mt_eval.evaluate_lrp(
            model, seg_x, seg_truth, prob[damaged] >= 0.5, rule_sets=args.rule_sets, maxpool=args.maxpool,
            seed=args.seed,
            lrp_batch=args.lrp_batch, log=log,
        )  # fmt: skip
        for (rule_set, method), value in results.items():
            segmentation[f"{head}/{rule_set}/{method}"] = value["metrics"]
            curves[(head, rule_set, method)] = value
        best = max(results, key=lambda key: results[key]["metrics"]["iou"])
        examples[head] = mt_eval.example_figure(
            model, seg_x[picks], seg_truth[picks], IMAGENET_MEAN, IMAGENET_STD, (head, *best), args.maxpool,
            args.out / f"magnetic_tile_examples_{head}.png", args.seed,
        )  # fmt: skip
        timings[f"LRP + segment {head}"] = time.perf_counter() - t
        for rule_set, lt in lrp_timing.items():
            log(f"  {rule_set}: LRP {lt['lrp_s']} s, segmenters {lt['segment_s']} s for {lt['maps']} maps")
        if args.student_epochs > 0 and head in args.student_heads:
            t = time.perf_counter()
            rule_sets = list(dict.fromkeys(best[0] if rs == "best" else rs for rs in args.student_rule_sets))
            log(f"  Distilling students from {head} ({', '.join(rule_sets)} × {', '.join(args.student_segmenters)})")
            found, costs = evaluate_students(
                model, head, [images[i] for i in train_idx], targets[train_idx], seg_x, seg_truth,
                rule_sets=rule_sets, segmenters=args.student_segmenters, config=student_config(args, device),
                log=log,
            )  # fmt: skip
            students.update(found)
            costs["classifier_train_seconds"] = summary.get("seconds")
            student_costs[head] = costs
            timings[f"students {head}"] = time.perf_counter() - t
        del model

    unet = train_unet_baseline(args, data, device, timings) if args.unet_epochs > 0 else None

    figures = mt_eval.plot_figures(curves, unet, seg_truth, args.out, students=students)
    timings["total"] = time.perf_counter() - started
    run = {
        "label": _label(args, device),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/magnetic_tile.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "trainer": trainer,
        },
        "device": describe_device(device),
        "torch": torch.__version__,
        "dataset": dataset,
        "classification": classification,
        "segmentation": segmentation,
        "n_seg_crops": int(len(damaged)),
        "no_skill_precision": float(np.mean(seg_truth)),
        "pretraining": pretraining,
        "unet": None if unet is None else {"metrics": unet["metrics"], "summary": unet["summary"]},
        "students": {key: {"metrics": v["metrics"], "summary": v.get("summary")} for key, v in students.items()},
        "student_costs": student_costs,
        "figures": {k: str(v) for k, v in figures.items()},
        "examples": {head: str(path) for head, path in examples.items()},
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "notes": NOTES,
        "split": {s.name: str(name) for s, name in zip(samples, split, strict=True)},
        "groups": {s.name: int(g) for s, g in zip(samples, groups, strict=True)},
    }
    (args.out / "magnetic_tile.json").write_text(json.dumps(run, indent=1, default=float))
    result = write_report(run, args.out / "magnetic_tile.md")
    log(f"Report: {args.out / 'magnetic_tile.md'}")
    log(result)
    return 0


NOTES = [
    "Crop policy 'paper': the paper cropped the damaged images by hand so that every random 224 crop "
    "contains the damage; we derive that crop from the mask (benchmarks/mt_data.py). Undamaged images "
    "are not cropped. Images below the input size on a side are upscaled first (prepare_eval's rule).",
    "Masks are binarised with > 127 and carried through the same upscaling and cropping as their image; "
    "segmentation is scored on the S×S centre crop the classifier saw (the mask cut with the crop's "
    "Placement), and on the crop's horizontally and vertically flipped copies.",
    "Relevance: core.lrp.explain with target 'damaged' for every damaged test crop, whatever the "
    "classifier decided; segmenters core.segment with their default thresholds; PR curves and AP from the "
    "score maps (for 'simple' the normalised relevance).",
    "Classifiers from random (Kaiming) initialisation unless --imagenet-weights is given, or --pretrain-epochs "
    "(convolutions pretrained self-supervised with SimCLR on the training images, labels unused; "
    "benchmarks/mt_pretrain.py); the paper starts from ImageNet weights.",
    "Students (core.student): a U-Net distilled from each classifier's LRP + segmenter masks on the training "
    "split with image labels only (damaged: the mask with an ignore band around the segmenter's threshold; "
    "undamaged: all background), random crops and flips; scored at the threshold it measured on its training "
    "images (coverage matching) and at 0.5; rN = after N self-training rounds.",
    "U-Net: trained on the masks of the damaged training images (the paper's 119) with random crops, "
    "flips, affine and elastic deformation; best epoch by validation IoU; scored on the same crops.",
    "Full configuration (needs a CUDA GPU): `python benchmarks/magnetic_tile.py --amp` (width 1, input 224, "
    "all images, 100 epochs with patience 20, U-Net 32 base channels and 200 epochs); data stays on the GPU.",
]


if __name__ == "__main__":
    raise SystemExit(main())
