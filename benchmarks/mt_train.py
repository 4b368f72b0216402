"""Classifier training with the data on the device: :func:`core.train.fit` without the per-step CPU work.

:func:`fit_on_device` shares set-up, validation and early stopping with ``core.train.fit``
(:func:`core.train.prepare_training`, :func:`core.train.validation_record`, :class:`core.train.EarlyStopping`,
:func:`core.train.training_summary`),
but keeps the images on the device as uint8 (:class:`benchmarks.mt_data.DeviceImages`) and can run the forward
pass under bfloat16 autocast. On a GPU ``core.train.fit`` spends most of each step preparing crops on one CPU
core; this does not. It belongs in ``core.train`` once the product wants it (e.g. ``fit(..., on_device=True)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch
from lrpseg.core.train import (
    EarlyStopping,
    TrainConfig,
    TrainProgress,
    TrainResult,
    prepare_training,
    training_summary,
    validation_record,
)
from mt_data import DeviceImages


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when ``enabled``; a no-op context otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def fit_on_device(
    train_images: Sequence[np.ndarray],
    train_targets: np.ndarray,
    val_batch: torch.Tensor,
    val_targets: np.ndarray,
    config: TrainConfig,
    amp: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train a VGG-A classifier with the training images held on the device.

    Parameters
    ----------
    train_images
        uint8 images, each at least ``config.input_size`` on a side.
    train_targets
        0 (undamaged) / 1 (damaged) per training image.
    val_batch
        Normalised validation inputs (``prepare_eval`` centre crops, with flipped copies if wanted).
    val_targets
        Target of each row of ``val_batch``.
    config
        As for :func:`core.train.fit`.
    amp
        bfloat16 autocast for the forward pass on CUDA (ignored on the CPU).
    progress
        Called at the end of every epoch.
    """
    started = time.perf_counter()
    train_targets = np.asarray(train_targets, dtype=int)
    setup = prepare_training(config, train_targets, train_images)
    network, device, optimizer, loss_fn, rng = setup.network, setup.device, setup.optimizer, setup.loss_fn, setup.rng
    model = setup.model
    counts = setup.class_counts
    data = DeviceImages(train_images, None, model.mean, model.std, device)
    targets = torch.as_tensor(train_targets, device=device)
    val_batch = val_batch.to(device)
    steps = int(np.ceil(len(data) / config.batch_size))
    stopping = EarlyStopping(model, config.patience, config.min_epochs)
    history = []
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = rng.permutation(len(data))
        total = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, _ = data.random_crops(idx, config.input_size, rng)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp):
                logits = network(x)
            loss = loss_fn(logits.float(), targets[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        record = {"epoch": epoch, "loss": float(total) / len(data)}
        setup.deployed()
        record.update(validation_record(model, val_batch, val_targets, device, batch_size=64))
        stop = stopping.update(epoch, record, model)
        history.append(record)
        if progress:
            progress(
                TrainProgress(
                    epoch, config.epochs, steps, steps, record["loss"], record["balanced_accuracy"], "epoch done"
                )
            )
        if stop:
            break
    stopping.restore(model)
    summary = training_summary(config, stopping, history, counts, len(data), len(val_targets), device, started)
    summary.update(trainer="device", amp=bool(amp and device.type == "cuda"))
    return TrainResult(model=model, summary=summary)
