"""``lrpseg distil``: train a student segmenter from a classifier's explanations (image labels only).

Kept apart from :mod:`lrpseg.core.cli`, which registers the subcommand with :func:`add_distil_parser` and
runs it with :func:`run_distil`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.images import scan_folder
from lrpseg.core.labels import labels_from_folders, read_labels
from lrpseg.core.lrp import RULE_SETS
from lrpseg.core.segment import SEGMENTERS
from lrpseg.core.student.corrected import CorrectedTargets, corrected_targets, project_at
from lrpseg.core.student.distil import DistilConfig, distil_to_file
from tqdm import tqdm

_DEFAULTS = DistilConfig()


def add_distil_parser(sub, add_device) -> None:
    """Add the ``distil`` subcommand to ``sub`` (argparse subparsers); ``add_device`` adds ``--device``."""
    p = sub.add_parser("distil", help="train a student segmenter on the classifier's masks (image labels only)")
    p.add_argument("images", type=Path, help="image folder (searched recursively)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels-from-folders", action="store_true",
                        help="label = nearest parent folder named damaged/ or undamaged/")  # fmt: skip
    source.add_argument("--labels", type=Path, help="CSV (image,label) or JSON ({image: label}) label file")
    source.add_argument("--labels-from-project", action="store_true",
                        help="the labels given in the app (the folder's lrpseg project)")  # fmt: skip
    p.add_argument("--model", type=Path, required=True, help="the classifier (lrpseg train's checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="student file to write (.safetensors)")
    p.add_argument("--rules", choices=list(RULE_SETS), default=_DEFAULTS.rule_set, help="LRP rule set of the targets")
    p.add_argument("--segmenter", choices=list(SEGMENTERS), default=_DEFAULTS.segmenter,
                   help=f"segmenter that turns relevance into the target masks (default {_DEFAULTS.segmenter})")
    p.add_argument("--band-low", type=float, default=_DEFAULTS.band_low,
                   help="ignore scores in [t - LOW, t + HIGH) around the segmenter's threshold t")
    p.add_argument("--band-high", type=float, default=_DEFAULTS.band_high)
    p.add_argument("--base", type=int, default=_DEFAULTS.base, help="U-Net channels at the top level (width)")
    p.add_argument("--depth", type=int, default=_DEFAULTS.depth, help="U-Net down-/up-steps")
    p.add_argument("--stem-stride", type=int, default=_DEFAULTS.stem_stride,
                   help="run the U-Net at 1/STRIDE resolution (1 = full)")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs)
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr)
    p.add_argument("--self-training", type=int, default=0, metavar="ROUNDS",
                   help="rounds of retraining on the student's own confident masks (default 0)")
    p.add_argument("--include-predicted", type=float, metavar="CONFIDENCE",
                   help="also use unlabelled images the classifier calls damaged (undamaged) with at least this "
                   "probability")
    p.add_argument("--corrected-weight", type=float, default=_DEFAULTS.corrected_weight,
                   help="pixel weight of the masks corrected by hand in the folder's project, used as exact "
                   f"targets (a pseudo-label pixel weighs 1; default {_DEFAULTS.corrected_weight:g}, measured)")
    p.add_argument("--corrected-repeats", type=int, default=_DEFAULTS.corrected_repeats,
                   help="times each corrected mask is drawn per epoch, each a new random crop "
                   f"(default {_DEFAULTS.corrected_repeats}, measured)")
    p.add_argument("--mode", choices=("auto", "crop", "tile"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    add_device(p)


def run_distil(args: argparse.Namespace) -> int:
    """Body of ``lrpseg distil``.

    When IMAGES is an lrpseg project folder, every corrected mask of the project (as ``lrpseg segment
    --project`` exports them) is an exact target, weighted ``--corrected-weight``; one that cannot be used is
    named on stderr and skipped (never changed).
    """
    if not args.images.is_dir():
        raise ValueError(f"{args.images}: no such folder")
    paths, problems = scan_folder(args.images)
    for path, reason in problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    rels = [p.relative_to(args.images).as_posix() for p in paths]
    project = project_at(args.images)
    try:
        if args.labels_from_project and project is None:
            raise ValueError(f"{args.images} has no lrpseg project: label it in the app, or give --labels")
        labels = (project.labels() if args.labels_from_project else labels_from_folders(args.images)
                  if args.labels_from_folders else read_labels(args.labels))  # fmt: skip
        corrected = corrected_targets(project, rels) if project is not None else CorrectedTargets()
    finally:
        if project is not None:
            project.close()
    for message in corrected.skipped:
        print(f"warning: {message}", file=sys.stderr)
    chosen = [(p, labels.get(r)) for p, r in zip(paths, rels, strict=True)
              if r in labels or r in corrected.masks or args.include_predicted is not None]  # fmt: skip
    if not any(label for _, label in chosen) and not corrected.masks:
        raise ValueError(f"no labelled images found in {args.images}")
    model, _ = load_checkpoint(args.model)
    config = DistilConfig(
        base=args.base, depth=args.depth, stem_stride=args.stem_stride, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, rule_set=args.rules, segmenter=args.segmenter, mode=args.mode,
        band_low=args.band_low, band_high=args.band_high, self_training_rounds=args.self_training,
        predicted_confidence=args.include_predicted, corrected_weight=args.corrected_weight,
        corrected_repeats=args.corrected_repeats, seed=args.seed, device=args.device,
    )  # fmt: skip
    bar = tqdm(total=1000, desc="distilling", file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def progress(p) -> None:
        bar.n = round(1000 * p.fraction)
        bar.set_description(p.stage)
        if p.loss is not None:
            bar.set_postfix(loss=f"{p.loss:.3f}")
        bar.refresh()

    student = distil_to_file(
        [p for p, _ in chosen], [label for _, label in chosen], model, args.model, config, args.out,
        exact=corrected.exact(args.images, config.corrected_weight),
        summary={"corrected_masks": corrected.summary(config.corrected_weight)}, progress=progress,
    )  # fmt: skip
    bar.close()
    s = student.training
    print(
        f"distilled from {s['counts']['pseudo'] + s['counts']['self']} damaged and {s['counts']['background']} "
        f"undamaged images and {s['counts']['exact']} corrected masks (weight {config.corrected_weight:g}, "
        f"drawn {config.corrected_repeats}× per epoch"
        f"{f', {len(corrected.skipped)} skipped' if corrected.skipped else ''}) in {s['seconds']:.0f} s; "
        f"default threshold {student.threshold:.3f} "
        f"(teacher masks cover {100 * s['teacher_coverage']:.2f} % of damaged images) -> {args.out}"
    )
    return 0

