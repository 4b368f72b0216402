"""The stages of a Magnetic Tile run shared by ``magnetic_tile.py`` and ``mt_mixed.py``: the data and its split
(:func:`load_split`), the classifiers (:func:`classifier`) and the U-Net baseline on the true training masks
(:func:`train_unet_baseline`), all driven by ``magnetic_tile.py``'s options (:func:`magnetic_tile.build_parser`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import mt_eval
import numpy as np
import torch
from lrpseg.core.checkpoint import load_checkpoint, save_checkpoint
from lrpseg.core.models import IMAGENET_MEAN, IMAGENET_STD
from lrpseg.core.train import EpochCallback, TrainConfig, fit
from mt_data import eval_set, load_pairs
from mt_split import capture_groups, frame_run_check, group_report, list_samples, load_images, split_groups
from mt_train import fit_on_device
from unet import predict_unet, train_unet


def log(message: str) -> None:
    """Print a progress line at once (long runs are followed through their log)."""
    print(message, flush=True)


def train_head(head, args, device, trainer, train_images, train_targets, val_images, val_masks, val_targets,
               config: TrainConfig | None = None, on_epoch: EpochCallback | None = None):
    """Train one classifier with ``core.train.fit`` or :func:`benchmarks.mt_train.fit_on_device`; ``config``
    replaces the committed configuration built from ``args`` (core trainer: the device trainer validates on
    ImageNet-normalised crops); ``on_epoch`` goes to ``core.train.fit`` (core trainer only)."""
    config = config or TrainConfig(
        head=head, width=args.width, input_size=args.input_size, epochs=args.epochs,
        batch_size=args.batch_size, lr_fc=args.lr_fc, lr_conv=args.lr_conv, optimizer=args.optimizer,
        weight_decay=args.weight_decay, patience=args.patience, seed=args.seed, device=str(device),
        imagenet_weights=args.imagenet_weights, init_from=args.init_from,
        normalise="imagenet", min_epochs=0,  # the committed configuration: test crops are ImageNet-normalised
        augment="paper", extend_while_poor=False, clip_grad_norm=None,  # and exactly its epochs, unclipped
    )  # fmt: skip

    def progress(p):
        if p.message:
            bacc = "–" if p.val_balanced_accuracy is None else f"{p.val_balanced_accuracy:.3f}"
            log(f"  [{head}] epoch {p.epoch}/{p.epochs} loss {p.loss:.4f} val bal.acc {bacc}")

    if trainer == "device":
        val_batch, _, source = eval_set(val_images, val_masks, args.input_size, IMAGENET_MEAN, IMAGENET_STD)
        return fit_on_device(train_images, train_targets, val_batch, val_targets[source], config, args.amp, progress)
    # core.train.fit takes decoded images: validation = centre crops of the images and their mirror images
    flipped = [np.ascontiguousarray(im[:, ::-1]) for im in val_images] + [
        np.ascontiguousarray(im[::-1]) for im in val_images
    ]
    return fit(train_images, train_targets, list(val_images) + flipped, np.tile(val_targets, 3), config, progress,
               on_epoch=on_epoch)  # fmt: skip


def load_trained(folder: Path, head: str, args: argparse.Namespace, device: torch.device):
    """A classifier saved by ``--save-models`` and its training summary; refuses one of another shape."""
    path = folder / f"magnetic_tile_{head}.safetensors"
    model, meta = load_checkpoint(path, map_location=device)
    if (meta["width"], meta["input_size"]) != (args.width, args.input_size):
        raise SystemExit(
            f"{path}: trained at width {meta['width']}, input {meta['input_size']}; "
            f"this run asks for width {args.width}, input {args.input_size}"
        )
    return model, meta["training"]


@dataclass
class SplitData:
    """The images of one run, its split and the test crops every method is scored on (see :func:`load_split`)."""

    samples: list
    groups: np.ndarray
    split: np.ndarray
    dataset: dict
    images: list[np.ndarray]
    masks: list[np.ndarray]
    targets: np.ndarray
    sets: dict[str, np.ndarray]
    test_x: torch.Tensor
    test_targets: np.ndarray
    damaged: np.ndarray
    seg_x: torch.Tensor
    seg_truth: np.ndarray


def load_split(args: argparse.Namespace, timings: dict[str, float]) -> SplitData:
    """Read the dataset, group near-duplicate captures, split 60/20/20, prepare the crops (``args``' size and
    crop policy) and the damaged test crops; stage times go to ``timings``."""
    t = time.perf_counter()
    samples = list_samples(args.data, limit=args.limit)
    raw = load_images(samples)
    classes = [s.mt_class for s in samples]
    groups = capture_groups(raw, classes)
    split = split_groups(groups, classes, seed=args.seed)
    dataset = group_report(samples, groups, split)
    dataset["frame_runs"] = frame_run_check(samples, groups)
    timings["read + group + split"] = time.perf_counter() - t
    log(f"{len(samples)} images, {dataset['n_groups']} capture groups; " + ", ".join(
        f"{name}: {c['train']}/{c['val']}/{c['test']}" for name, c in dataset["classes"].items()
    ))  # fmt: skip
    del raw

    t = time.perf_counter()
    images, masks = load_pairs(samples, args.input_size, args.crop_policy)
    targets = np.array([s.target for s in samples], dtype=int)
    sets = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    test_x, test_m, test_src = eval_set(
        [images[i] for i in sets["test"]], [masks[i] for i in sets["test"]], args.input_size,
        IMAGENET_MEAN, IMAGENET_STD,
    )  # fmt: skip
    test_targets = targets[sets["test"]][test_src]
    damaged = np.flatnonzero(test_targets == 1)
    timings["prepare images"] = time.perf_counter() - t
    if len(damaged) == 0:
        raise SystemExit("no damaged test image: raise --limit")
    return SplitData(samples, groups, split, dataset, images, masks, targets, sets, test_x, test_targets, damaged,
                     test_x[damaged], test_m[damaged])  # fmt: skip


def train_unet_baseline(args: argparse.Namespace, data: SplitData, device: torch.device,
                        timings: dict[str, float]) -> dict:
    """The U-Net trained on the training split's true masks (``--unet-train``), scored on the test crops."""
    t = time.perf_counter()
    train_idx, val_idx, targets, images, masks = (data.sets["train"], data.sets["val"], data.targets, data.images,
                                                  data.masks)  # fmt: skip
    keep = train_idx if args.unet_train == "all" else train_idx[targets[train_idx] == 1]
    val_dam = val_idx[targets[val_idx] == 1]
    val_x, val_m, _ = eval_set(
        [images[i] for i in val_dam], [masks[i] for i in val_dam], args.input_size, IMAGENET_MEAN, IMAGENET_STD
    )
    log(f"Training U-Net on {len(keep)} images ({args.unet_epochs} epochs)")
    model, unet_summary = train_unet(
        [images[i] for i in keep], [masks[i] for i in keep], val_x, val_m, input_size=args.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, device=device, epochs=args.unet_epochs, base=args.unet_base,
        batch_size=args.unet_batch_size, lr=args.unet_lr, seed=args.seed, amp=args.amp,
        validate_every=max(1, min(5, args.unet_epochs // 10)), progress=log,
    )  # fmt: skip
    prob = predict_unet(model, data.seg_x, amp=args.amp)
    unet = mt_eval.score_maps(list(prob), list(prob >= 0.5), data.seg_truth)
    timings["U-Net train + score"] = time.perf_counter() - t
    m = unet["metrics"]
    log(f"  U-Net test: IoU {m['iou']:.3f} P {m['precision']:.3f} R {m['recall']:.3f}")
    return {"metrics": unet["metrics"], "curve": unet["curve"], "summary": unet_summary}


def classifier(head: str, args: argparse.Namespace, data: SplitData, device: torch.device, trainer: str,
               timings: dict[str, float], config: TrainConfig | None = None,
               on_epoch: EpochCallback | None = None):
    """The ``head`` classifier of this run and its training summary: loaded from ``--load-models``, or
    trained on the training split (with ``config`` and ``on_epoch`` if given, see :func:`train_head`; saved
    with ``--save-models``)."""
    t = time.perf_counter()
    if args.load_models is not None:
        model, summary = load_trained(args.load_models, head, args, device)
        log(f"Loaded VGG-A {head} from {args.load_models}")
        return model, summary
    log(f"Training VGG-A {head} ({trainer} trainer, {(config.epochs if config else args.epochs)} epochs max)")
    train_idx, val_idx, images, targets = data.sets["train"], data.sets["val"], data.images, data.targets
    result = train_head(
        head, args, device, trainer, [images[i] for i in train_idx], targets[train_idx],
        [images[i] for i in val_idx], [data.masks[i] for i in val_idx], targets[val_idx], config, on_epoch,
    )  # fmt: skip
    timings[f"train {head}"] = time.perf_counter() - t
    model, summary = result.model.to(device), result.summary
    if args.save_models:
        save_checkpoint(args.out / f"magnetic_tile_{head}.safetensors", model, training=summary)
    return model, summary
