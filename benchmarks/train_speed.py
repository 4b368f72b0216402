"""Retraining time: 1,000 labelled images at 224², 30 epochs, VGG-A 128N at full width.

Times what a user waits for when retraining on 1,000 labelled images: the images are split as ``lrpseg
train`` splits them (:func:`core.train.stratified_split`, 20 % validation), then trained for exactly
``--epochs`` epochs (early stopping off: ``min_epochs = epochs``) by each trainer asked for:

- ``core``: :func:`core.train.fit`, the product's loop (``lrpseg train`` and the GUI), fp32, crops prepared on
  the CPU at every step, temperature calibration at the end; the product's settings otherwise.
- ``device``: :func:`benchmarks.mt_train.fit_on_device`, the images kept on the device as uint8 and cropped
  there, bfloat16 autocast with ``--amp`` (CUDA only), cuDNN autotuning on as in ``magnetic_tile.py``.

Images are synthetic, drawn like ``lrpseg demo`` draws them (:func:`core.demo.make_sample`, half damaged):
``--distinct`` different ones, repeated to ``--images`` (their content does not change the cost of a step).
Each trainer's time is the wall clock of the whole call (set-up, every epoch's validation, calibration),
after an untimed warm-up call of the same trainer (one epoch on two batches), which pays the one-off costs
(CUDA context, cuDNN autotuning, lazy imports: ~10 s on the CPU) that a running app has already paid.

Usage::

    python benchmarks/train_speed.py --device cuda --amp --json train.json    # the GPU figure
    .venv/bin/python benchmarks/train_speed.py --images 16 --size 64 --epochs 1 --width 0.125  # seconds, CPU

The last line reads ``RESULT core_s=<s> device_s=<s>`` (only the trainers that ran).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lrpseg.core.demo import make_sample
from lrpseg.core.device import describe_device, resolve_device
from lrpseg.core.models import IMAGENET_MEAN, IMAGENET_STD
from lrpseg.core.preprocess import prepare_eval
from lrpseg.core.train import TrainConfig, fit, stratified_split
from mt_train import fit_on_device

TRAINERS = ("core", "device")


def synthetic_images(n: int, size: int, distinct: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` demo-style grey images (``size``²) and targets, alternating damaged / undamaged.

    Only ``distinct`` images are drawn; the rest repeat them in order (drawing 1,000 takes longer than a GPU
    trains on them).
    """
    rng = np.random.default_rng(seed)
    drawn = [make_sample(rng, size, damaged=i % 2 == 0)[0] for i in range(min(n, distinct))]
    images = [drawn[i % len(drawn)] for i in range(n)]
    targets = np.array([1 if (i % len(drawn)) % 2 == 0 else 0 for i in range(n)], dtype=int)
    return images, targets


def run_trainer(trainer: str, images, targets, config: TrainConfig, amp: bool) -> dict:
    """Train once with ``trainer``; the wall clock of the whole call and what the summary says."""
    train_idx, val_idx = stratified_split(targets, config.val_fraction, config.seed)
    train_images, val_images = [images[i] for i in train_idx], [images[i] for i in val_idx]
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.backends.cudnn.benchmark = trainer == "device"
    started = time.perf_counter()
    if trainer == "core":
        result = fit(train_images, targets[train_idx], val_images, targets[val_idx], config)
    else:
        config = dataclasses.replace(config, normalise="imagenet")
        val_batch = torch.stack(
            [prepare_eval(im, config.input_size, IMAGENET_MEAN, IMAGENET_STD)[0] for im in val_images]
        )
        result = fit_on_device(train_images, targets[train_idx], val_batch, targets[val_idx], config, amp)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    summary = result.summary
    images_seen = len(train_idx) * summary["epochs_run"]
    return {
        "trainer": trainer,
        "amp": bool(amp and trainer == "device" and device.type == "cuda"),
        "seconds": round(seconds, 2),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "epochs_run": summary["epochs_run"],
        "train_images_per_s": round(images_seen / seconds, 1),
        "last_loss": summary["history"][-1]["loss"],
        "val_balanced_accuracy": summary["val_balanced_accuracy"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="labelled images (train + validation)")
    p.add_argument("--distinct", type=int, default=100, help="different synthetic images among them")
    p.add_argument("--size", type=int, default=224, help="image side = network input side")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--width", type=float, default=1.0, help="VGG-A channel fraction")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast for the device trainer (CUDA only)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = TrainConfig(
        width=args.width, input_size=args.size, epochs=args.epochs, min_epochs=args.epochs, extend_while_poor=False,
        batch_size=args.batch_size, seed=args.seed, device=str(device),
    )  # fmt: skip
    t = time.perf_counter()
    images, targets = synthetic_images(args.images, args.size, args.distinct, args.seed)
    print(
        f"train_speed {datetime.datetime.now():%Y-%m-%d %H:%M}; {describe_device(device)}, torch {torch.__version__}; "
        f"{args.images} images at {args.size}² ({args.distinct} distinct, drawn in {time.perf_counter() - t:.1f} s), "
        f"{args.epochs} epochs, width {args.width:g}, batch {args.batch_size}",
        flush=True,
    )
    runs = []
    warm = max(4, 2 * args.batch_size)
    warm_config = dataclasses.replace(config, epochs=1, min_epochs=1)
    for trainer in args.trainers:
        t = time.perf_counter()
        run_trainer(trainer, images[:warm], targets[:warm], warm_config, args.amp)
        warm_up_s = time.perf_counter() - t
        run = run_trainer(trainer, images, targets, config, args.amp)
        run["warm_up_s"] = round(warm_up_s, 2)
        runs.append(run)
        print(
            f"{trainer:<7} {run['seconds']:>8.1f} s  {run['train_images_per_s']:>8.1f} train images/s  "
            f"{run['n_train']} train / {run['n_val']} val, {run['epochs_run']} epochs, amp {run['amp']}, "
            f"last loss {run['last_loss']:.3f} (warm-up {run['warm_up_s']:.1f} s)",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "device": describe_device(device),
                    "torch": torch.__version__,
                    "settings": settings,
                    "runs": runs,
                },
                indent=1,
            )
        )
    print("RESULT " + " ".join(f"{run['trainer']}_s={run['seconds']:.1f}" for run in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
