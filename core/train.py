"""Fine-tune a VGG-A classifier from image-level labels (paper §3.2.1).

Class-balanced cross-entropy, augmentation (the paper's random crop + horizontal/vertical flips, images below
the input size upscaled first; by default also transpositions and small shifts,
:data:`~core.preprocess.AUGMENTATIONS`) and learning rates (1e-3 for the fully connected layers, 1e-4 for the
convolutions), early stopping on validation balanced accuracy, seeded. Progress is reported per step through
one callback shape that the command line and the GUI share; a :class:`~core.cancel.CancelToken` stops the run
between steps. :func:`train_to_checkpoint` writes the model only when training succeeds, so a cancelled or
failed run leaves the previous model in place.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from lrpseg.core import __version__
from lrpseg.core.batchnorm import BatchNormTraining
from lrpseg.core.calibration import apply_temperature, fit_temperature
from lrpseg.core.cancel import CancelToken, check
from lrpseg.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lrpseg.core.device import describe_device, resolve_device
from lrpseg.core.images import read_image
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.metrics import classification_metrics
from lrpseg.core.models import IMAGENET_MEAN, IMAGENET_STD, VGGA, build_vgg_a, load_imagenet_conv_weights
from lrpseg.core.preprocess import prepare_eval, prepare_train, to_float_rgb
from torch import nn

CLASS_NAMES = (UNDAMAGED, DAMAGED)


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in the checkpoint's training summary.

    ``lr_conv=None`` picks the convolutions' learning rate from the start: the paper's 1e-4 when they start
    from trained weights (fine-tuning), 3e-4 from random init.

    From random init a BN-free VGG sits on a loss plateau at ln 2 for its first 10-20 epochs on a small
    inspection set (64 training images of the demo: 40-80 steps), and then climbs to validation balanced
    accuracy 1.0 within a few epochs (benchmarks/RESULTS.md, "Training reliability"). Early stopping with
    a short patience used to end training inside that plateau. So training runs up to 60 epochs and early
    stopping never stops before ``min_epochs``; inputs are normalised by the training images' own
    statistics (``normalise``). ``augment="dihedral"`` adds transpositions and small shifts to the paper's crop
    and flips: a demo image as large as the input gave no crop room at all, and held-out balanced accuracy rose
    from 0.938 / 0.963 / 0.938 to 0.950 / 0.988 / 0.975 for seeds 0 / 1 / 2. Measured and rejected on the
    demo: conv learning rate 1e-3 with batches of 8 (no escape within 60 epochs on two seeds), and batch norm
    folded into the convolutions afterwards (``batch_norm=True``, kept as an option: training loss 2-6 in the
    first epochs, no escape within 8).

    Some seeds stay on the plateau longer: of five 128N runs on held-out demo folders two ended at validation
    balanced accuracy 0.688 (one stopped early at epoch 42 and escaped when left to run, one had not escaped by
    epoch 60). With ``extend_while_poor`` a run whose best validation balanced accuracy is still below
    ``good_enough`` is never stopped early and may run to twice ``epochs``; runs that reach it are unchanged.
    At 0.9 two of eight Magnetic Tile 128N runs on one split ended at test balanced accuracy 0.785 and 0.781
    while still climbing or swinging; at 0.95, with ``keep_tolerance`` 0.02, all eight pass (0.824-0.865,
    benchmarks/RESULTS.md, "Session 20"). Runs that stay below it take up to twice as long.

    Once out of the plateau, single steps have gradients hundreds to thousands of times the usual norm
    (1-5); such a step throws the model back (training loss 0.13 → 0.81 within two epochs) and inflates
    Adam's second-moment estimate, which then damps the steps after it. ``clip_grad_norm`` scales every
    step's gradient down to at most that norm (``None`` or 0: unclipped). At 1.0 the CLI contract's masks
    went from IoU 0.580 / 0.576 / 0.468 to 0.573 / 0.579 / 0.627 for seeds 0 / 1 / 2 (benchmarks/RESULTS.md,
    "Session 14").

    A run ends with the weights of the epoch with the lowest validation loss among those whose validation
    balanced accuracy is within ``keep_tolerance`` of the best (:class:`EarlyStopping`): at 0, the epoch with the
    best balanced accuracy; at 1, the one with the lowest loss. Early stopping follows the balanced accuracy
    whatever the tolerance. At 0.02 a lucky early spike of the balanced accuracy no longer holds the kept epoch
    when a later epoch is almost as accurate and more confident on the validation images; on the demo, whose
    validation balanced accuracy moves in steps of 1/16, it keeps the same epoch as 0.

    The convolutions start from torchvision's ImageNet VGG-11 (``imagenet_weights``: a local file or
    ``"auto"``), from the convolutions of another lrpseg checkpoint of the same width (``init_from``: another
    project's model, or a self-supervised encoder), or at random; the FC layers always start at random.
    """

    head: str = "128n"
    width: float = 1.0
    input_size: int = 224
    epochs: int = 60
    batch_size: int = 16
    lr_fc: float = 1e-3
    lr_conv: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    patience: int = 20
    min_epochs: int = 30
    seed: int = 0
    device: str = "auto"
    imagenet_weights: str | None = None
    init_from: str | None = None
    batch_norm: bool = False
    normalise: str = "auto"
    augment: str = "dihedral"
    good_enough: float = 0.95
    extend_while_poor: bool = True
    clip_grad_norm: float | None = 1.0
    keep_tolerance: float = 0.02

    def __post_init__(self) -> None:
        at_least = {"epochs": 1, "batch_size": 1, "patience": 1, "min_epochs": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"training setting {name} must be a whole number >= {low}, not {value!r}")
        positive = {"width": self.width, "lr_fc": self.lr_fc, "lr_conv": self.lr_conv}
        at_least_zero = {"weight_decay": self.weight_decay, "clip_grad_norm": self.clip_grad_norm}
        for name, value in positive.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"training setting {name} must be > 0, not {value!r}")
        for name, value in at_least_zero.items():  # a negative clip norm would reverse every step
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"training setting {name} must be >= 0, not {value!r}")
        if not 0 <= self.keep_tolerance <= 1:
            raise ValueError(f"training setting keep_tolerance must be in [0, 1], not {self.keep_tolerance!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"training setting val_fraction must be in [0, 1), not {self.val_fraction!r}")


@dataclass
class TrainProgress:
    """One training step (or the end of an epoch, where ``val_balanced_accuracy`` is set).

    ``seconds_left`` estimates the time to the last epoch from the pace so far; early stopping may end sooner.
    """

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    val_balanced_accuracy: float | None = None
    message: str = ""
    seconds_left: float | None = None


@dataclass
class TrainResult:
    """The trained model (eval mode, best validation epoch) and its training summary."""

    model: VGGA
    summary: dict = field(default_factory=dict)


ProgressCallback = Callable[[TrainProgress], None]
#: Called after every epoch with the model holding that epoch's weights and the epoch's record, which it
#: may extend (benchmarks add held-out scores); the record is kept in the training history.
EpochCallback = Callable[[VGGA, dict], None]


def label_to_target(label: str) -> int:
    """Map ``"damaged"`` to 1 and ``"undamaged"`` to 0; raise ``ValueError`` otherwise."""
    if label == DAMAGED:
        return 1
    if label == UNDAMAGED:
        return 0
    raise ValueError(f"unknown label {label!r}; expected {DAMAGED!r} or {UNDAMAGED!r}")


FEW_LABELS = 10


def label_warnings(labels: Sequence[str]) -> list[str]:
    """Warnings (not errors) about a label set: a class with fewer than :data:`FEW_LABELS` images."""
    out = []
    for name in CLASS_NAMES:
        count = sum(label == name for label in labels)
        if count < FEW_LABELS:
            out.append(
                f"only {count} images are labelled {name}; with fewer than {FEW_LABELS} per class the model "
                "is likely to be unreliable"
            )
    return out


def stratified_split(targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation sets keeping class proportions.

    Each class gives ``round(fraction * n)`` images to validation, at least one where the class has three or
    more images, so early stopping always sees both classes when it can.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == cls))
        n_val = int(round(fraction * len(idx)))
        if fraction > 0 and n_val == 0 and len(idx) >= 3:
            n_val = 1
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(val, dtype=int))


def data_hash(paths: Sequence[Path], targets: Sequence[int]) -> str:
    """SHA-256 over file names, sizes and labels: identifies the training data cheaply."""
    digest = hashlib.sha256()
    for path, target in sorted(zip((str(p) for p in paths), targets, strict=True)):
        size = Path(path).stat().st_size if Path(path).exists() else -1
        digest.update(f"{Path(path).name}\0{size}\0{target}\n".encode())
    return digest.hexdigest()


def predict_probabilities(
    model: nn.Module, batch: torch.Tensor, device: torch.device, batch_size: int = 32
) -> np.ndarray:
    """P(damaged) for a stack of normalised images, evaluated in chunks without gradients."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            logits = model(batch[start : start + batch_size].to(device))
            out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


RANDOM_INIT_LR_CONV = 3e-4
PAPER_LR_CONV = 1e-4


def conv_learning_rate(config: TrainConfig) -> float:
    """The convolutions' learning rate: the configured one, else by initialisation (see :class:`TrainConfig`)."""
    if config.lr_conv is not None:
        return config.lr_conv
    return PAPER_LR_CONV if config.imagenet_weights or config.init_from else RANDOM_INIT_LR_CONV


def input_statistics(config: TrainConfig, images: Sequence[np.ndarray]) -> tuple[tuple, tuple]:
    """Per-channel mean and std the model normalises its inputs with.

    ``normalise="dataset"`` (the default from random init): the training images' own statistics, so inputs
    have unit variance; inspection images are low in contrast (the demo's grey surfaces have a pixel std of
    a few per cent), and under ImageNet's statistics their damage signal enters the network tiny.
    ``"imagenet"`` (the default for ImageNet or ``init_from`` starts, whose convolutions expect it).
    """
    mode = config.normalise
    if mode == "auto":
        mode = "imagenet" if (config.imagenet_weights or config.init_from) else "dataset"
    if mode == "imagenet" or not len(images):
        return IMAGENET_MEAN, IMAGENET_STD
    if mode != "dataset":
        raise ValueError(f"unknown normalisation {config.normalise!r}; choose 'auto', 'dataset' or 'imagenet'")
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for image in images:
        rgb = to_float_rgb(image).reshape(-1, 3).astype(np.float64)
        total += rgb.sum(axis=0)
        total_sq += (rgb**2).sum(axis=0)
        count += len(rgb)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-3)) for s in std)


def uses_batch_norm(config: TrainConfig) -> bool:
    """Whether training inserts batch norm after every convolution (folded away afterwards)."""
    return bool(config.batch_norm)


def make_optimizer(model: VGGA | BatchNormTraining, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (or SGD with momentum 0.9) with the conv and FC learning rates as two parameter groups."""
    groups = [
        {"params": model.features.parameters(), "lr": conv_learning_rate(config)},
        {"params": model.classifier.parameters(), "lr": config.lr_fc},
    ]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose 'adam' or 'sgd'")


@dataclass
class TrainingSetup:
    """What every training loop starts from: a fresh model on its device, optimiser, class-balanced loss, rng."""

    model: VGGA
    device: torch.device
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    rng: np.random.Generator
    class_counts: np.ndarray
    network: nn.Module

    def deployed(self) -> VGGA:
        """``model`` holding the weights trained so far, folded when training runs with batch norm."""
        if self.network is not self.model:
            self.model.load_state_dict(self.network.folded_state_dict())
        return self.model


def prepare_training(
    config: TrainConfig, train_targets: np.ndarray, train_images: Sequence[np.ndarray] = ()
) -> TrainingSetup:
    """Seed, build the model (convs from ImageNet or ``init_from`` if configured), make optimiser and loss.

    Raises
    ------
    ValueError
        When a class has no training image, or both ``imagenet_weights`` and ``init_from`` are set.
    CheckpointError
        When ``init_from`` is not a loadable checkpoint or has another width.
    """
    counts = np.bincount(train_targets, minlength=2)
    if np.any(counts == 0):
        raise ValueError(f"training needs both classes; got {counts[0]} undamaged and {counts[1]} damaged images")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    mean, std = input_statistics(config, train_images)
    model = build_vgg_a(config.head, width=config.width, input_size=config.input_size, mean=mean, std=std)
    model.class_names = CLASS_NAMES
    if config.imagenet_weights and config.init_from:
        raise ValueError("start the convolutions from ImageNet weights or from a checkpoint, not both")
    if config.imagenet_weights:
        load_imagenet_conv_weights(model, None if config.imagenet_weights == "auto" else config.imagenet_weights)
    if config.init_from:
        copy_conv_weights(config.init_from, model)
    network = BatchNormTraining(copy.deepcopy(model)) if uses_batch_norm(config) else model
    model.to(device)
    network.to(device)
    class_weights = torch.tensor(len(train_targets) / (2.0 * counts), dtype=torch.float32, device=device)
    return TrainingSetup(
        model,
        device,
        make_optimizer(network, config),
        nn.CrossEntropyLoss(weight=class_weights),
        rng,
        counts,
        network,
    )


def copy_conv_weights(path: str | Path, model: VGGA) -> None:
    """Copy the convolution weights of the checkpoint at ``path`` into ``model`` (same width; any head or input).

    Raises
    ------
    CheckpointError
        The file is not a loadable checkpoint, or its convolutions have another width.
    """
    source, meta = load_checkpoint(path)
    if meta["width"] != model.width:
        raise CheckpointError(
            f"{path}: its convolutions have width {meta['width']}; this training uses width {model.width}"
        )
    model.features.load_state_dict(source.features.state_dict())


def validation_record(
    model: nn.Module, val_batch: torch.Tensor, val_targets: np.ndarray, device: torch.device, batch_size: int = 32
) -> dict:
    """Balanced accuracy, TPR, TNR and class-balanced cross-entropy (``val_loss``) on a stack of validation inputs."""
    probability = predict_probabilities(model, val_batch, device, batch_size)
    record = classification_metrics(val_targets, (probability >= 0.5).astype(int))
    p_true = np.clip(np.where(val_targets == 1, probability, 1.0 - probability), 1e-7, 1.0)
    record["val_loss"] = float(np.mean([-np.log(p_true[val_targets == c]).mean() for c in np.unique(val_targets)]))
    return record


class EarlyStopping:
    """Stops after ``patience`` epochs without a better validation balanced accuracy (ties: the lower validation
    loss), but not before epoch ``min_epochs`` and not while the best balanced accuracy is below ``good_enough``.

    Keeps the weights of the epoch with the lowest validation loss among those whose balanced accuracy is within
    ``tolerance`` of the best so far (the first such epoch on ties). At 0 that is the epoch with the best balanced
    accuracy, ties broken by the lower loss; at 1, the epoch with the lowest loss. Only epochs that may still be
    kept as the best balanced accuracy rises hold a copy of their weights: none with both a lower accuracy and a
    higher loss than another.
    """

    def __init__(
        self, model: nn.Module, patience: int, min_epochs: int = 0, good_enough: float = 0.0, tolerance: float = 0.0
    ) -> None:
        self.patience = patience
        self.min_epochs = min_epochs
        self.good_enough = good_enough
        self.tolerance = tolerance
        self.record_key = (-1.0, -np.inf)
        self.best = {"epoch": 0, "balanced_accuracy": -1.0, "tpr": None, "tnr": None, "val_loss": np.inf}
        self.best_state = copy.deepcopy(model.state_dict())
        self.candidates: list[tuple[dict, dict]] = []
        self.stale = 0

    def update(self, epoch: int, record: dict, model: nn.Module) -> bool:
        """Record one epoch's validation result; return whether training should stop."""
        accuracy_key = (record["balanced_accuracy"], -record.get("val_loss", np.inf))
        if accuracy_key > self.record_key:
            self.record_key = accuracy_key
            self.stale = 0
        else:
            self.stale += 1
        self.consider(epoch, record, model)
        return self.stale >= self.patience and epoch >= self.min_epochs and not self.still_poor()

    def consider(self, epoch: int, record: dict, model: nn.Module) -> None:
        """Add this epoch to the candidates it is not beaten by, drop those it beats or that fell out of reach."""
        new = {"epoch": epoch, **{k: record.get(k, np.inf) for k in ("balanced_accuracy", "tpr", "tnr", "val_loss")}}

        def beats(a: dict, b: dict) -> bool:
            return a["balanced_accuracy"] >= b["balanced_accuracy"] and a["val_loss"] <= b["val_loss"]

        floor = self.record_key[0] - self.tolerance - 1e-9  # 1e-9: a balanced accuracy exactly at the edge counts
        if new["balanced_accuracy"] >= floor and not any(beats(kept, new) for kept, _ in self.candidates):
            self.candidates = [(c, state) for c, state in self.candidates if not beats(new, c)]
            self.candidates.append((new, copy.deepcopy(model.state_dict())))
        self.candidates = [(c, state) for c, state in self.candidates if c["balanced_accuracy"] >= floor]
        if self.candidates:  # none while every balanced accuracy so far is undefined
            self.best, self.best_state = min(self.candidates, key=lambda pair: (pair[0]["val_loss"], pair[0]["epoch"]))

    def still_poor(self) -> bool:
        """Whether the best validation balanced accuracy so far is below ``good_enough``."""
        return self.record_key[0] < self.good_enough

    def keep_last(self, epoch: int, model: nn.Module) -> None:
        """Without validation data: the latest epoch is the one kept."""
        self.best["epoch"] = epoch
        self.best_state = copy.deepcopy(model.state_dict())

    def restore(self, model: nn.Module) -> None:
        """Load the kept weights into ``model`` and switch it to eval mode."""
        model.load_state_dict(self.best_state)
        model.eval()


def training_summary(
    config: TrainConfig,
    stopping: EarlyStopping,
    history: list[dict],
    class_counts: np.ndarray,
    n_train: int,
    n_val: int,
    device: torch.device,
    started: float,
) -> dict:
    """The summary a training loop stores with its model: settings, data sizes, best epoch, history, timing.

    ``started`` is the loop's ``time.perf_counter()`` at its start; without validation images (``n_val == 0``)
    the validation balanced accuracy is None.
    """
    best = stopping.best
    return {
        "config": {**asdict(config), "lr_conv": conv_learning_rate(config), "batch_norm": uses_batch_norm(config)},
        "n_train": n_train,
        "n_val": n_val,
        "train_class_counts": {"undamaged": int(class_counts[0]), "damaged": int(class_counts[1])},
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "val_balanced_accuracy": best["balanced_accuracy"] if n_val else None,
        "val_tpr": best["tpr"],
        "val_tnr": best["tnr"],
        "history": history,
        "device": describe_device(device),
        "seconds": round(time.perf_counter() - started, 2),
        "lrpseg_version": __version__,
        "torch_version": torch.__version__,
    }


def fit(
    train_images: Sequence[np.ndarray],
    train_targets: np.ndarray,
    val_images: Sequence[np.ndarray],
    val_targets: np.ndarray,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train on decoded images; keep the weights of the best validation epoch.

    Parameters
    ----------
    train_images, val_images
        Decoded images as :func:`core.images.read_image` returns them.
    train_targets, val_targets
        0 (undamaged) or 1 (damaged) per image. Without validation images the last epoch is kept.
    config
        The run's settings.
    progress
        Called after every step and at the end of every epoch.
    cancel
        Checked between steps; :class:`~core.cancel.Cancelled` propagates to the caller.
    on_epoch
        Called after every epoch's validation (:data:`EpochCallback`); it must not change the model.
    """
    started = time.perf_counter()
    train_targets = np.asarray(train_targets, dtype=int)
    val_targets = np.asarray(val_targets, dtype=int)
    if len(train_images) == 0:
        raise ValueError("no training images")
    setup = prepare_training(config, train_targets, train_images)
    network, device, optimizer, loss_fn, rng = setup.network, setup.device, setup.optimizer, setup.loss_fn, setup.rng
    model = setup.model
    counts = setup.class_counts
    mean, std = model.mean, model.std
    val_batch = (
        torch.stack([prepare_eval(img, config.input_size, mean, std)[0] for img in val_images])
        if len(val_images)
        else None
    )

    steps = int(np.ceil(len(train_images) / config.batch_size))
    extend = config.extend_while_poor and val_batch is not None
    good_enough = config.good_enough if extend else 0.0
    stopping = EarlyStopping(model, config.patience, config.min_epochs, good_enough, config.keep_tolerance)
    history = []
    stop = False
    loop_started = time.perf_counter()
    limit = config.epochs

    def seconds_left(epoch: int, step: int) -> float:
        done = (epoch - 1) * steps + step
        return (time.perf_counter() - loop_started) / done * (limit * steps - done)

    epoch = 0
    while epoch < limit:
        epoch += 1
        network.train()
        order = rng.permutation(len(train_images))
        epoch_loss = 0.0
        for step in range(steps):
            check(cancel)
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = torch.stack([prepare_train(train_images[i], config.input_size, mean, std, rng, config.augment)
                             for i in idx])
            y = torch.as_tensor(train_targets[idx], device=device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(x.to(device)), y)
            loss.backward()
            if config.clip_grad_norm:
                nn.utils.clip_grad_norm_(network.parameters(), config.clip_grad_norm)
            optimizer.step()
            epoch_loss += loss.item() * len(idx)
            if progress:
                progress(
                    TrainProgress(
                        epoch, limit, step + 1, steps, loss.item(), seconds_left=seconds_left(epoch, step + 1)
                    )
                )
        epoch_loss /= len(train_images)
        record = {"epoch": epoch, "loss": epoch_loss}
        setup.deployed()
        if val_batch is not None:
            check(cancel)
            record.update(validation_record(model, val_batch, val_targets, device))
            stop = stopping.update(epoch, record, model)
        else:
            stopping.keep_last(epoch, model)
        if on_epoch:
            on_epoch(model, record)
        history.append(record)
        if extend and epoch == config.epochs and stopping.still_poor():
            limit = 2 * config.epochs
        if progress:
            progress(
                TrainProgress(
                    epoch,
                    limit,
                    steps,
                    steps,
                    epoch_loss,
                    record.get("balanced_accuracy"),
                    f"epoch {epoch} done",
                    seconds_left(epoch, steps),
                )
            )
        if stop:
            break

    stopping.restore(model)
    temperature = calibrate(model, val_batch, val_targets, device)
    summary = training_summary(config, stopping, history, counts, len(train_images), len(val_images), device, started)
    summary["temperature"] = temperature
    return TrainResult(model=model, summary=summary)


def calibrate(model: VGGA, val_batch: torch.Tensor | None, val_targets: np.ndarray, device: torch.device) -> float:
    """Fit a temperature on the validation images and fold it into ``model`` (:mod:`core.calibration`)."""
    if val_batch is None:
        return 1.0
    with torch.no_grad():
        chunks = [model(val_batch[i : i + 32].to(device)).float().cpu() for i in range(0, len(val_batch), 32)]
    logits = torch.cat(chunks)
    temperature = fit_temperature(logits.numpy(), val_targets)
    apply_temperature(model, temperature)
    return temperature


def score_on(model: VGGA, images: Sequence[np.ndarray], targets: np.ndarray) -> float | None:
    """Balanced accuracy of ``model`` on decoded images (centre crops at its own input size); None if empty."""
    if len(images) == 0:
        return None
    batch = torch.stack([prepare_eval(img, model.input_size, model.mean, model.std)[0] for img in images])
    device = next(model.parameters()).device
    return validation_record(model, batch, np.asarray(targets), device)["balanced_accuracy"]


def train_classifier(
    paths: Sequence[Path],
    labels: Sequence[str],
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    current: VGGA | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Read labelled images, split them (stratified) into train and validation, and :func:`fit`.

    Unreadable images raise :class:`core.images.ImageReadError`; callers that want to skip them filter first
    (:func:`core.images.scan_folder`). With ``current`` (the model in use), the summary also holds its
    balanced accuracy on the same validation images (``current_val_balanced_accuracy``), so the two models
    can be compared (:func:`core.adoption.judge`). ``progress``, ``cancel`` and ``on_epoch`` go to :func:`fit`.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} images but {len(labels)} labels")
    targets = np.array([label_to_target(label) for label in labels], dtype=int)
    images = []
    for path in paths:
        check(cancel)
        images.append(read_image(path))
    train_idx, val_idx = stratified_split(targets, config.val_fraction, config.seed)
    result = fit(
        [images[i] for i in train_idx],
        targets[train_idx],
        [images[i] for i in val_idx],
        targets[val_idx],
        config,
        progress,
        cancel,
        on_epoch,
    )
    result.summary["data_hash"] = data_hash(paths, targets)
    result.summary["label_counts"] = {"damaged": int(targets.sum()), "undamaged": int(len(targets) - targets.sum())}
    if current is not None:
        result.summary["current_val_balanced_accuracy"] = score_on(
            current, [images[i] for i in val_idx], targets[val_idx]
        )
    return result


def train_to_checkpoint(
    paths: Sequence[Path],
    labels: Sequence[str],
    config: TrainConfig,
    out_path: Path,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train and write the checkpoint to ``out_path`` atomically, only when training succeeds."""
    result = train_classifier(paths, labels, config, progress, cancel)
    save_checkpoint(Path(out_path), result.model, training=result.summary)
    return result
