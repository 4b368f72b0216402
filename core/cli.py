"""The ``lrpseg`` command line: demo data, training, batch segmentation, evaluation and labels.

Every subcommand ends with exit code 0 on success and 1 with a one-line reason on failure (argparse uses 2
for usage errors). Choices (rule sets, segmenters, heads) come from the core registries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

from lrpseg.core import __version__
from lrpseg.core.batched import EngineError
from lrpseg.core.cancel import Cancelled
from lrpseg.core.checkpoint import CheckpointError, load_checkpoint
from lrpseg.core.cli_distil import add_distil_parser, run_distil
from lrpseg.core.device import DEVICE_CHOICES, describe_device, resolve_device
from lrpseg.core.export_layout import EVALUATION_DIR
from lrpseg.core.export_run import ExportOptions, MaskExport, export_workflow, model_provenance, start_export
from lrpseg.core.images import ImageReadError, scan_folder
from lrpseg.core.labels import labels_from_folders, read_labels, write_labels
from lrpseg.core.lrp import DEFAULT_VIEWS, RULE_SETS, STARTS, VIEWS
from lrpseg.core.models import HEADS
from lrpseg.core.pipeline import LRP_BATCH, Outcome
from lrpseg.core.preprocess import AUGMENTATIONS
from lrpseg.core.project import ProjectError
from lrpseg.core.segment import SEGMENTERS, segmenter_provenance
from lrpseg.core.train import TrainConfig
from lrpseg.core.train_defaults import default_train_settings
from lrpseg.core.workflow import DEFAULT_RULE_SET, DEFAULT_SEGMENTER, WorkflowError
from tqdm import tqdm

ARCHS = {"vgg-a": 1.0, "slim": 0.25}
TRAIN_DEFAULTS = TrainConfig()


class CommandError(Exception):
    """A failure to report as one line and exit code 1."""


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="where torch runs: auto = CUDA when present, else CPU (default: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="lrpseg", description="Pixel masks from image-level labels via LRP.")
    parser.add_argument("--version", action="store_true", help="print version, torch, CUDA and device, then exit")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="write a synthetic damaged/undamaged image folder with known masks")
    demo.add_argument("dir", type=Path, help="output folder (images/damaged, images/undamaged, masks)")
    demo.add_argument("--damaged", type=int, default=40, help="number of damaged images (default 40)")
    demo.add_argument("--undamaged", type=int, default=40, help="number of undamaged images (default 40)")
    demo.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument(
        "--prelabel",
        type=float,
        default=0.75,
        help="fraction of images labelled in the folder's project, so the app can train at once (default 0.75)",
    )

    train = sub.add_parser("train", help="train a classifier from image-level labels")
    train.add_argument("images", type=Path, help="image folder (searched recursively)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="label = nearest parent folder named damaged/ or undamaged/",
    )
    source.add_argument("--labels", type=Path, help="CSV (image,label) or JSON ({image: label}) label file")
    train.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
    train.add_argument(
        "--arch",
        choices=sorted(ARCHS),
        default="vgg-a",
        help="vgg-a = full VGG-11 widths; slim = a quarter of the channels, for CPUs",
    )
    train.add_argument("--width", type=float, help="channel fraction, overrides --arch")
    train.add_argument("--head", choices=HEADS, default="128n", help="128n = FC128-FC128-2, onefc = one FC")
    train.add_argument("--input-size", type=int, default=224, help="model input side, multiple of 32")
    train.add_argument("--epochs", type=int, default=TRAIN_DEFAULTS.epochs,
                       help=f"maximum epochs (default {TRAIN_DEFAULTS.epochs})")
    train.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size,
                       help=f"images per step (default {TRAIN_DEFAULTS.batch_size})")
    train.add_argument("--lr-fc", type=float, default=1e-3, help="learning rate of the FC layers (paper: 1e-3)")
    train.add_argument(
        "--lr-conv",
        type=float,
        help="learning rate of the convs (default: the paper's 1e-4 with --imagenet or --init-from, 3e-4 from "
        "random init)",
    )
    train.add_argument("--patience", type=int, default=TRAIN_DEFAULTS.patience,
                       help=f"early-stopping patience in epochs (default {TRAIN_DEFAULTS.patience})")
    train.add_argument("--min-epochs", type=int, default=TRAIN_DEFAULTS.min_epochs,
                       help=f"early stopping never stops before this epoch (default {TRAIN_DEFAULTS.min_epochs})")
    train.add_argument("--normalise", choices=("auto", "dataset", "imagenet"), default="auto",
                       help="input statistics: the training images' own (dataset; default from random init) or "
                       "ImageNet's (default with --imagenet or --init-from)")
    train.add_argument("--augment", choices=AUGMENTATIONS, default=TRAIN_DEFAULTS.augment,
                       help="paper = random crop and flips; dihedral = also transpositions, and small shifts where "
                       f"the image leaves no room to crop (default {TRAIN_DEFAULTS.augment})")
    train.add_argument("--clip-grad-norm", type=float, default=TRAIN_DEFAULTS.clip_grad_norm,
                       help="scale each step's gradient down to at most this norm; 0 turns it off "
                       f"(default {TRAIN_DEFAULTS.clip_grad_norm})")
    train.add_argument("--keep-tolerance", type=float, default=TRAIN_DEFAULTS.keep_tolerance,
                       help="keep the epoch with the lowest validation loss among those within this of the best "
                       "validation balanced accuracy: 0 = the best accuracy, 1 = the lowest loss "
                       f"(default {TRAIN_DEFAULTS.keep_tolerance})")
    train.add_argument("--val-fraction", type=float, default=0.2, help="held out for early stopping")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--imagenet",
        metavar="PATH|auto",
        help="start the convs from torchvision's ImageNet VGG-11 weights (a local file)",
    )
    train.add_argument(
        "--init-from",
        type=Path,
        metavar="CHECKPOINT",
        help="start the convs from another lrpseg model of the same width (e.g. another project's)",
    )
    train.add_argument(
        "--accept-any",
        action="store_true",
        help="write the model even when it ends at chance level (default: refuse with exit code 1)",
    )
    _add_device(train)

    seg = sub.add_parser(
        "segment",
        help="classify, explain and segment every image of a folder",
        description="Either a folder (or one image) with --model, or --project FOLDER: the project's model, "
        "rule set, segmenter and per-image thresholds, exactly what the app exports for that folder.",
    )
    seg.add_argument("images", type=Path, nargs="?", help="image folder (searched recursively) or one image")
    seg.add_argument(
        "--project",
        type=Path,
        metavar="FOLDER",
        help="export an lrpseg project as the app does (its model unless --model, settings, thresholds, cache)",
    )
    seg.add_argument("--model", type=Path, help="checkpoint written by lrpseg train (required without --project)")
    seg.add_argument("--out", type=Path, required=True, help="export folder for masks and reports")
    seg.add_argument(
        "--rules", choices=list(RULE_SETS), help=f"LRP rule set (default: the project's, else {DEFAULT_RULE_SET})"
    )
    seg.add_argument("--segmenter", choices=list(SEGMENTERS), help=f"default: the project's, else {DEFAULT_SEGMENTER}")
    seg.add_argument(
        "--maxpool",
        choices=("wta", "avg"),
        default="wta",
        help="relevance through max-pool: winner-take-all or average (default wta)",
    )
    seg.add_argument(
        "--start",
        choices=STARTS,
        default="logodds",
        help="where relevance starts: logodds = the decision z_damaged - z_undamaged (default); logit = the "
        "paper's raw damaged logit",
    )
    seg.add_argument(
        "--views",
        type=int,
        choices=VIEWS,
        default=DEFAULT_VIEWS,
        help=f"explain each image once (1, the paper) or also turned by 180 degrees and average the two maps "
        f"(2: cleaner maps, twice the LRP work; default {DEFAULT_VIEWS})",
    )
    seg.add_argument(
        "--mode",
        choices=("auto", "crop", "tile"),
        default="auto",
        help="crop = the paper's centre crop; tile = cover big images with windows",
    )
    seg.add_argument(
        "--student",
        type=Path,
        help="masks from this student (lrpseg distil) instead of the explanation; its threshold is the default",
    )
    seg.add_argument(
        "--threshold", type=float, help="one score threshold for every image instead of the per-image ones"
    )
    seg.add_argument("--overwrite", action="store_true", help="replace existing masks (default: keep them)")
    seg.add_argument("--no-scores", action="store_true", help="do not write score maps")
    seg.add_argument("--coco", action="store_true", help="also write COCO JSON with RLE masks")
    seg.add_argument(
        "--batch-size", type=int, default=LRP_BATCH, help=f"network inputs per LRP batch (default {LRP_BATCH})"
    )
    _add_device(seg)
    engine = seg.add_argument_group("engine", "where the work runs (README: Many machines)")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local = this process; ray = a Ray cluster (pip install 'lrpseg[ray]')",
    )
    engine.add_argument(
        "--address",
        help="Ray cluster to join: 'auto' (started here with ray start) or ray://host:port "
        "(default: start a local cluster for this run)",
    )
    engine.add_argument("--workers", type=int, help="Ray workers, each holding the model (default: one per CPU)")
    engine.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray worker (default 0: explain on CPUs)"
    )

    add_distil_parser(sub, _add_device)

    ev = sub.add_parser("evaluate", help="score an export folder against ground-truth masks")
    ev.add_argument("out", type=Path, help="export folder written by lrpseg segment")
    ev.add_argument(
        "--truth",
        type=Path,
        required=True,
        help="folder of ground-truth masks, at the exported masks' relative paths (or <stem>.png in one flat folder)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ev.add_argument("--pr-curve", type=Path, help="PR-curve PNG (default: OUT/evaluation/pr-curve.png)")
    ev.add_argument(
        "--include-undamaged",
        action="store_true",
        help="also score images with empty ground truth (the paper scores damaged ones)",
    )

    lab = sub.add_parser("labels", help="import or export image-level labels")
    lab.add_argument("action", choices=("export", "import", "show"))
    lab.add_argument("folder", type=Path, help="image folder (a project is kept in FOLDER/.lrpseg)")
    lab.add_argument("--file", type=Path, help="CSV or JSON label file to import from / export to")
    lab.add_argument("--from-folders", action="store_true", help="import: labels from damaged/ undamaged/")
    return parser


def version_text() -> str:
    """Version line: lrpseg, torch, CUDA availability and the default device."""
    import torch

    device = resolve_device("auto")
    return (
        f"lrpseg {__version__} (torch {torch.__version__}, CUDA "
        f"{'available' if torch.cuda.is_available() else 'not available'}, device {describe_device(device)})"
    )


def _scan(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    if folder.is_file():
        return [folder], []
    if not folder.is_dir():
        raise CommandError(f"{folder}: no such folder")
    return scan_folder(folder)


def run_demo(args) -> int:
    from lrpseg.core.demo import make_demo
    from lrpseg.core.project import Project

    make_demo(args.dir, n_damaged=args.damaged, n_undamaged=args.undamaged, size=args.size, seed=args.seed)
    images = args.dir / "images"
    print(f"wrote {args.damaged + args.undamaged} images to {images}, masks to {args.dir / 'masks'}")
    if args.prelabel > 0:
        truth = labels_from_folders(images)
        names = sorted(truth)
        fraction = min(args.prelabel, 1.0)
        chosen = [name for i, name in enumerate(names) if int((i + 1) * fraction) > int(i * fraction)]
        with Project.open(images) as project:
            project.set_labels({name: truth[name] for name in chosen})
            project.set_setting("train_config", default_train_settings([(args.size, args.size)], "cpu"))
        print(f"labelled {len(chosen)} of {len(names)} images in the project {images / '.lrpseg'}")
    return 0


def run_train(args) -> int:
    from lrpseg.core.adoption import CHANCE_LEVEL, near_chance
    from lrpseg.core.checkpoint import save_checkpoint
    from lrpseg.core.train import label_warnings, train_classifier

    paths, problems = _scan(args.images)
    labels = labels_from_folders(args.images) if args.labels_from_folders else read_labels(args.labels)
    for path, reason in problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    chosen = [(p, labels[k]) for p in paths if (k := p.relative_to(args.images).as_posix()) in labels]
    if not chosen:
        raise CommandError(f"no labelled images found in {args.images}")
    for warning in label_warnings([label for _, label in chosen]):
        print(f"warning: {warning}", file=sys.stderr)
    config = TrainConfig(
        head=args.head,
        width=args.width or ARCHS[args.arch],
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_fc=args.lr_fc,
        lr_conv=args.lr_conv,
        val_fraction=args.val_fraction,
        patience=args.patience,
        min_epochs=args.min_epochs,
        normalise=args.normalise,
        augment=args.augment,
        clip_grad_norm=args.clip_grad_norm or None,
        keep_tolerance=args.keep_tolerance,
        seed=args.seed,
        device=args.device,
        imagenet_weights=args.imagenet,
        init_from=None if args.init_from is None else str(args.init_from),
    )
    bar = tqdm(total=config.epochs, unit="epoch", desc="training", file=sys.stderr)

    def progress(p):
        bar.set_postfix(loss=f"{p.loss:.3f}", step=f"{p.step}/{p.steps}")
        if p.val_balanced_accuracy is not None or p.message:
            bar.update(1)
            if p.val_balanced_accuracy is not None:
                bar.set_postfix(loss=f"{p.loss:.3f}", val_bacc=f"{p.val_balanced_accuracy:.3f}")

    try:
        result = train_classifier([p for p, _ in chosen], [label for _, label in chosen], config, progress)
    finally:  # the bar's last line must come before any error message
        bar.close()
    s = result.summary
    bacc = "n/a" if s["val_balanced_accuracy"] is None else f"{s['val_balanced_accuracy']:.3f}"
    if near_chance(s["val_balanced_accuracy"]) and not args.accept_any:
        raise CommandError(
            f"the model ended at chance level (validation balanced accuracy {bacc}, below {CHANCE_LEVEL}); "
            f"nothing written to {args.out}. Label more images, or train longer (--epochs, --patience); "
            "--accept-any writes it anyway"
        )
    save_checkpoint(args.out, result.model, training=s)
    print(
        f"trained on {s['n_train']} images ({s['epochs_run']} epochs, best {s['best_epoch']}, "
        f"validation balanced accuracy {bacc}) -> {args.out}"
    )
    return 0


def _export_options(args) -> ExportOptions:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold {args.threshold:g} is not a score in [0, 1]")
    return ExportOptions(
        overwrite=args.overwrite, write_scores=not args.no_scores, write_coco=args.coco, threshold=args.threshold
    )


def _segment_project(args, device, options: ExportOptions) -> MaskExport:
    """``segment --project``: the app's export of the folder (:func:`core.export_run.export_workflow`)."""
    from lrpseg.core.project import Project
    from lrpseg.core.workflow import Workflow

    with Project.open(args.project) as project:
        workflow = Workflow.from_project(
            project, device, model_path=args.model, rule_set=args.rules, segmenter=args.segmenter,
            maxpool=args.maxpool, mode=args.mode, start=args.start, views=args.views,
        )
        for path, reason in project.scan_problems:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        rels = project.images()
        export = start_export(workflow, args.out, options, tool="lrpseg segment")
        with tqdm(total=len(rels), unit="image", desc="segmenting", file=sys.stderr) as bar:
            export_workflow(workflow, rels, export, progress=lambda *_: bar.update(1))
    return export


RAY_INSTALL = "pip install 'lrpseg[ray]'"


def _ray_engine(args):
    """The Ray engine for ``args``; Ray is imported here only, so the local engine never needs it."""
    try:
        from lrpseg.core.ray_engine import RayEngine, RayOptions
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in ("ray", "pyarrow", "pandas"):
            raise
        raise CommandError(f"--engine ray needs Ray, which is not installed ({error.name}): {RAY_INSTALL}") from None
    if args.device == "cuda" and not args.gpus_per_worker:
        raise CommandError("with --engine ray, ask for GPUs with --gpus-per-worker (--device sets the local engine)")
    return RayEngine(RayOptions(args.address, args.workers, args.gpus_per_worker))


def _check_engine_options(args) -> None:
    if args.engine == "ray" and args.project is not None:
        raise CommandError("--engine ray segments an image folder; --project runs on the local engine")
    if args.engine == "ray" and args.student is not None:
        raise CommandError("--student runs on the local engine; drop --engine ray")
    if args.engine == "local":
        given = [flag for flag, value in (("--address", args.address), ("--workers", args.workers)) if value]
        given += ["--gpus-per-worker"] if args.gpus_per_worker else []
        if given:
            raise CommandError(f"{', '.join(given)} only apply with --engine ray")
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {args.batch_size}")


def _segment_folder(args, device, export_options: ExportOptions) -> MaskExport:
    """``segment IMAGES --model M``: every image of a folder, no project, on the local or the Ray engine."""
    from lrpseg.core.batched import SegmentOptions, segment_folder
    from lrpseg.core.student.infer import segment_folder_student
    from lrpseg.core.student.store import load_student_for, student_provenance

    if args.images is None or args.model is None:
        raise CommandError("segment needs an image folder and --model, or --project FOLDER")
    engine = _ray_engine(args) if args.engine == "ray" else None
    if engine is not None:
        device = resolve_device("cuda" if args.gpus_per_worker else "cpu")
    model, meta = load_checkpoint(args.model)
    student = None if args.student is None else load_student_for(args.student, model, args.model, device)
    paths, problems = _scan(args.images)
    options = SegmentOptions(
        args.rules or DEFAULT_RULE_SET,
        args.segmenter or DEFAULT_SEGMENTER,
        args.maxpool,
        args.mode,
        args.batch_size,
        start=args.start,
        views=args.views,
    )
    provenance = {
        **model_provenance(args.model),
        "model_config": {k: meta.get(k) for k in ("head", "width", "input_size")},
        "rule_set": options.rule_set,
        **segmenter_provenance(options.segmenter),
        "maxpool": args.maxpool,
        "mode": args.mode,
        "relevance_start": args.start,
        "views": args.views,
        "device": describe_device(device),
        "tool": "lrpseg segment",
        "engine": args.engine,
        **({} if student is None else student_provenance(args.student, student)),
    }
    root = args.images if args.images.is_dir() else args.images.parent
    # The outcome stream is closed before the engine: a Ray run interrupted by Ctrl+C must stop its executor
    # while still connected, or Ray Data reports errors (and reconnects) after the shutdown.
    with engine or contextlib.nullcontext(), contextlib.ExitStack() as streams:
        provenance["workers"] = 1 if engine is None else engine.workers
        export = MaskExport(args.out, provenance, export_options, root=root)
        for path, reason in problems:
            export.export_one(Outcome(path, error=f"{path}: {reason}"))
        complete = export.complete_images(paths)
        todo = [path for path in paths if path not in complete]
        if complete:
            print(f"{len(complete)} images already have every file in {args.out}: kept, not analysed again "
                  "(--overwrite redoes them)", file=sys.stderr)
        if not todo:
            outcomes = iter(())
        elif student is not None:
            outcomes = segment_folder_student(todo, model.to(device), student, mode=args.mode)
        elif engine is None:
            outcomes = segment_folder(todo, model, options, device=device)
        else:
            outcomes = streams.enter_context(contextlib.closing(engine.segment(todo, args.model, options)))
        with tqdm(outcomes, total=len(todo), unit="image", desc="segmenting", file=sys.stderr) as progress:
            outcomes = iter(progress)
            for path in paths:  # in order: export names depend on it
                if path in complete:
                    export.keep_complete(path)
                else:
                    export.export_one(next(outcomes))
            if next(outcomes, None) is not None:  # also lets the engine end its run
                raise RuntimeError("the engine returned more outcomes than images")
    export.finish()
    return export


def run_segment(args) -> int:
    _check_engine_options(args)
    options = _export_options(args)
    device = resolve_device(args.device)
    if args.project is not None:
        if args.images is not None:
            raise CommandError("give either an image folder or --project, not both")
        if args.student is not None:
            raise CommandError("--student works with an image folder and --model, not with --project")
        export = _segment_project(args, device, options)
    else:
        export = _segment_folder(args, device, options)
    for record in export.records:
        if record.error:
            print(f"error: {record.error}", file=sys.stderr)
    summary = export.summary
    print(
        f"{summary['images']} images: {summary['masks_written']} masks written, {summary['errors']} failed, "
        f"{summary['kept_existing']} with existing files kept -> {args.out}"
    )
    return 0


def run_evaluate(args) -> int:
    from lrpseg.core.evaluate import evaluate_folder, metrics_table
    from lrpseg.core.pr_plot import plot_pr_curves

    result = evaluate_folder(args.out, args.truth, include_undamaged=args.include_undamaged)
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if result.curve is not None:
        curve_path = args.pr_curve or args.out / EVALUATION_DIR / "pr-curve.png"
        curve_path.parent.mkdir(parents=True, exist_ok=True)
        plot_pr_curves({"lrpseg": result.curve}, result.metrics["no_skill_precision"], curve_path)
    if args.json:
        print(json.dumps(_strict_json(result.metrics), allow_nan=False))
    else:
        print(metrics_table(result.metrics))
    return 0


def _strict_json(value):
    """``value`` with every NaN or infinity replaced by None (``null``): strict JSON readers reject ``NaN``,
    and an undefined metric (precision when nothing is marked) is exactly what ``null`` says."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_labels(args) -> int:
    from lrpseg.core.project import Project

    project = Project.open(args.folder)
    try:
        if args.action == "import":
            if args.from_folders:
                labels = labels_from_folders(args.folder)
            elif args.file:
                labels = read_labels(args.file)
            else:
                raise CommandError("labels import needs --file or --from-folders")
            known = set(project.images())
            unknown = sorted(set(labels) - known)
            for name in unknown:
                print(f"warning: {name} is not an image of {args.folder}; skipped", file=sys.stderr)
            project.set_labels({name: label for name, label in labels.items() if name in known})
            print(f"imported {len(labels) - len(unknown)} labels into {args.folder}")
        elif args.action == "export":
            if not args.file:
                raise CommandError("labels export needs --file")
            write_labels(args.file, project.labels())
            print(f"wrote {len(project.labels())} labels to {args.file}")
        else:
            for name, label in sorted(project.labels().items()):
                print(f"{name},{label}")
    finally:
        project.close()
    return 0


COMMANDS = {
    "demo": run_demo,
    "train": run_train,
    "segment": run_segment,
    "distil": run_distil,
    "evaluate": run_evaluate,
    "labels": run_labels,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lrpseg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_text())
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except (
        CommandError, WorkflowError, CheckpointError, EngineError, ImageReadError, ProjectError, ValueError, OSError
    ) as error:
        print(f"lrpseg {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Cancelled:
        print(f"lrpseg {args.command}: cancelled", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lrpseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
