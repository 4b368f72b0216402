"""Distil a student segmenter from a classifier's explanations, with image-level labels only.

1. Targets (:mod:`lrpseg.core.student.targets`): the explanation's mask with an ignore band for images labelled
   damaged (optionally also images the classifier calls damaged with high confidence), all background for
   images labelled undamaged, and any exact masks the caller passes (the hook for user-corrected masks).
2. Training: random input-size crops with flips, the classifier's normalisation, per-pixel weighted BCE + Dice,
   AdamW with cosine decay, a fixed number of epochs (no validation masks exist). Each exact mask is drawn
   several times per epoch (``DistilConfig.corrected_repeats``), each time a new crop.
3. Optionally self-training rounds: the student's own confident masks replace the explanation's, and training
   continues from the current weights.
4. The default threshold is measured, not fixed: the one at which the student marks on the damaged training
   images the same share of pixels as the teacher's masks do (coverage matching).

Progress goes through one callback (:class:`DistilProgress`, with the whole job's completed fraction so a GUI
can show time left); a :class:`~lrpseg.core.cancel.CancelToken` stops the job between steps, and
:func:`distil_to_file` writes the student only when distillation succeeds. Ground-truth mask files are never
read: this module sees images, labels, the classifier and explicitly passed exact masks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from lrpseg.core import __version__
from lrpseg.core.cancel import CancelToken, check
from lrpseg.core.device import describe_device, resolve_device
from lrpseg.core.export import file_sha256
from lrpseg.core.images import read_image
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.lrp import DEFAULT_RULE_SET, DEFAULT_VIEWS
from lrpseg.core.models import VGGA
from lrpseg.core.pipeline import explain_image, segment_explained
from lrpseg.core.segment import DEFAULT_SEGMENTER
from lrpseg.core.segment.sharp import EXPONENTS
from lrpseg.core.student.infer import classifier_probability, probability_map
from lrpseg.core.student.store import Student, classifier_identity, save_student
from lrpseg.core.student.targets import Example, background_target, band_target, crop_batch, make_example
from lrpseg.core.student.unet import UNet, dice_bce_loss

__all__ = ["DistilConfig", "DistilProgress", "coverage_threshold", "distil", "distil_to_file"]

# Share of the job's time per image spent explaining, in units of one training sample-step (measured on the
# demo with the slim classifier: LRP + segmenter of one 224² image costs about as much as 3 student steps).
EXPLAIN_COST = 3.0


@dataclass
class DistilConfig:
    """Everything that decides a distillation; stored in the student's training summary.

    ``band_low`` / ``band_high``: the ignore band ``[t - band_low, t + band_high)`` around the teacher
    segmenter's threshold ``t`` (score units); ``predicted_confidence``: also use unlabelled images the
    classifier calls damaged with at least this probability (and undamaged with at most ``1 -`` it);
    ``None`` uses labelled images only; ``corrected_weight``: the pixel weight callers give hand-corrected
    masks passed as ``exact`` targets (:mod:`lrpseg.core.student.corrected`); ``corrected_repeats``: how often
    each such image is drawn per epoch. A setting no distillation can run with (a count below 1, a learning rate
    or weight ≤ 0) raises ValueError naming it.
    """

    base: int = 16
    depth: int = 4
    stem_stride: int = 2
    epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # The product's explanation makes the best teacher (benchmarks/RESULTS.md, issue 13): on the demo, students
    # of epsilon_plus + bmm-sharp / ours + bmm-sharp / epsilon_plus + bmm / ours + bmm reached held-out IoU
    # 0.539 / 0.523 / 0.443 / 0.423.
    rule_set: str = DEFAULT_RULE_SET
    segmenter: str = DEFAULT_SEGMENTER
    # The relevance exponent of a sharpened teacher (None: the segmenter's own, core.segment.sharp.EXPONENTS).
    # The explanation's 0.75 widened the teacher's masks on Magnetic Tile and the student lost IoU by it (k = 0
    # corrected masks 0.357 -> 0.341, k = 10 0.416 -> 0.398; RESULTS.md, session 11), so the teacher fits the
    # relevance as is.
    teacher_exponent: float | None = 1.0
    maxpool: str = "wta"
    mode: str = "auto"
    views: int = DEFAULT_VIEWS
    band_low: float = 0.1
    band_high: float = 0.1
    self_training_rounds: int = 0
    self_training_epochs: int | None = None
    predicted_confidence: float | None = None
    # Weight of every pixel of an exact (hand-corrected) mask, where a confident pseudo-label pixel weighs 1.
    # Measured by benchmarks/mixed_weight.py (benchmarks/RESULTS.md, "Mixed supervision (issue 16)"): held-out
    # IoU on the demo with 5 corrected masks rose with the weight, 1: 0.332, 3: 0.370, 10: 0.394, 30: 0.422,
    # 100: 0.427 (none: 0.317; 3 seeds), flat from 30 on; 100 was best on every seed.
    corrected_weight: float = 100.0
    # Times each exact mask is drawn per epoch (a fresh random crop and flip each time). Magnetic Tile, k = 10
    # corrected masks of 99 damaged training images (benchmarks/RESULTS.md, session 12): once 0.416, five times
    # 0.464 test IoU (the U-Net on all 99 masks: 0.492).
    corrected_repeats: int = 5
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        at_least = {"epochs": 1, "batch_size": 1, "corrected_repeats": 1, "self_training_rounds": 0, "base": 1,
                    "depth": 1, "stem_stride": 1}  # fmt: skip
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"distillation setting {name} must be a whole number >= {low}, not {value!r}")
        for name in ("lr", "corrected_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"distillation setting {name} must be > 0, not {getattr(self, name)!r}")


@dataclass
class DistilProgress:
    """One step of a distillation: the stage, its count, and the whole job's completed ``fraction``."""

    stage: str
    done: int
    total: int
    fraction: float
    loss: float | None = None
    message: str = ""


ProgressCallback = Callable[[DistilProgress], None]


class _Meter:
    """The job's context for its stages: completed fraction, cancellation, the classifier's input geometry."""

    def __init__(self, total_units: float, progress: ProgressCallback | None, cancel: CancelToken | None,
                 model: VGGA) -> None:
        self.total, self.done, self.progress, self.cancel = max(total_units, 1e-9), 0.0, progress, cancel
        self.input_size, self.mean, self.std = model.input_size, model.mean, model.std

    def check(self) -> None:
        check(self.cancel)

    def advance(self, units: float, stage: str, done: int, total: int, loss=None, message: str = "") -> None:
        self.done += units
        if self.progress:
            self.progress(DistilProgress(stage, done, total, min(1.0, self.done / self.total), loss, message))


def coverage_threshold(maps: Sequence[np.ndarray], valids: Sequence[np.ndarray], coverage: float) -> float:
    """The threshold at which ``maps`` (over their ``valids`` pixels) mark a ``coverage`` share of pixels.

    Clipped to [0.02, 0.98] so a student always has a usable default.
    """
    values = np.concatenate([m[v] for m, v in zip(maps, valids, strict=True)]) if maps else np.zeros(0)
    if values.size == 0:
        return 0.5
    return float(np.clip(np.quantile(values, 1.0 - float(np.clip(coverage, 0.0, 1.0))), 0.02, 0.98))


def teacher_options(config: DistilConfig) -> dict:
    """The teacher segmenter's keywords: ``exponent`` for a sharpened segmenter when the config sets one."""
    if config.teacher_exponent is None or config.segmenter not in EXPONENTS:
        return {}
    return {"exponent": config.teacher_exponent}


def _teacher_examples(model, images, names, roles, config, meter):
    """Examples from the explanation (role "damaged") or all background (role "undamaged"); and the pixel
    counts (marked, valid) of the teacher's masks."""
    examples, marked, counted = [], 0, 0
    for i, (image, name, role) in enumerate(zip(images, names, roles, strict=True)):
        meter.check()
        if role == UNDAMAGED:
            examples.append(make_example(image, *background_target(image.shape[:2]), model.input_size,
                                         "background", name))  # fmt: skip
            meter.advance(0.0, "explain", i + 1, len(images))
            continue
        explained = explain_image(model, image, config.rule_set, config.maxpool, config.mode, views=config.views)
        analysis = segment_explained(explained, config.segmenter, seed=config.seed, **teacher_options(config))
        seg = analysis.segmentation
        target, weight = band_target(seg.score, seg.threshold, config.band_low, config.band_high, analysis.valid)
        examples.append(make_example(image, target, weight, model.input_size, "pseudo", name))
        marked += int(np.count_nonzero(seg.mask & analysis.valid))
        counted += int(np.count_nonzero(analysis.valid))
        meter.advance(EXPLAIN_COST, "explain", i + 1, len(images), message=f"explained {name}")
    return examples, marked, counted


def epoch_draws(examples: Sequence[Example], exact_repeats: int) -> np.ndarray:
    """Indices of ``examples`` one epoch visits: each once, and each exact one ``exact_repeats`` times in all."""
    exact = [i for i, example in enumerate(examples) if example.kind == "exact"]
    return np.asarray(list(range(len(examples))) + exact * max(0, exact_repeats - 1), dtype=int)


def _train(net, examples, config, epochs, device, rng, meter, stage, history):
    """``epochs`` epochs of weighted BCE + Dice on random crops; ``net`` ends in eval mode."""
    size, batch_size = meter.input_size, max(2, config.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    draws = epoch_draws(examples, config.corrected_repeats)
    steps = max(1, math.ceil(len(draws) / batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps, eta_min=config.lr * 0.02)
    for epoch in range(1, epochs + 1):
        net.train()
        order = draws[rng.permutation(len(draws))]
        total = 0.0
        for step in range(steps):
            meter.check()
            idx = order[step * batch_size : (step + 1) * batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                idx = order[:2] if len(order) >= 2 else np.concatenate([idx, idx])
            x, target, weight = crop_batch([examples[i] for i in idx], size, meter.mean, meter.std, rng)
            x, target, weight = x.to(device), target.to(device), weight.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = dice_bce_loss(net(x), target, weight)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            meter.advance(len(idx), stage, (epoch - 1) * steps + step + 1, epochs * steps, loss.item(),
                          f"{stage} epoch {epoch}/{epochs}")  # fmt: skip
        history.append({"stage": stage, "epoch": epoch, "loss": round(total / steps, 5)})
    net.eval()


def _self_examples(student, images, names, examples, config):
    """Pseudo examples replaced by the student's own confident masks (at its measured threshold)."""
    out = list(examples)
    for i, ex in enumerate(examples):
        if ex.kind != "pseudo":
            continue
        prob, valid, _ = probability_map(student, images[i], config.mode)
        target, weight = band_target(prob, student.threshold, config.band_low, config.band_high, valid)
        out[i] = make_example(images[i], target, weight, student.input_size, "self", names[i])
    return out


def _measure_threshold(student, images, examples, coverage, mode):
    maps, valids = [], []
    for image, ex in zip(images, examples, strict=True):
        if ex.kind in ("pseudo", "self"):
            prob, valid, _ = probability_map(student, image, mode)
            maps.append(prob)
            valids.append(valid)
    return coverage_threshold(maps, valids, coverage)


def _roles(model, images, labels, config):
    """Per image "damaged", "undamaged" or None (unused), and how many came from confident predictions."""
    roles, predicted = [], 0
    for image, label in zip(images, labels, strict=True):
        if label in (DAMAGED, UNDAMAGED):
            roles.append(label)
            continue
        if label is not None:
            raise ValueError(f"unknown label {label!r}; expected {DAMAGED!r}, {UNDAMAGED!r} or None")
        role = None
        if config.predicted_confidence is not None:
            p = classifier_probability(model, image, config.mode)
            confidence = config.predicted_confidence
            role = DAMAGED if p >= confidence else UNDAMAGED if p <= 1 - confidence else None
            predicted += role is not None
        roles.append(role)
    return roles, predicted


def distil(
    images: Sequence[np.ndarray],
    labels: Sequence[str | None],
    model: VGGA,
    config: DistilConfig,
    *,
    names: Sequence[str] | None = None,
    exact: Mapping[int, tuple[np.ndarray, float]] | None = None,
    classifier_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_round: Callable[[int, Student], None] | None = None,
) -> Student:
    """Train a student on decoded images.

    Parameters
    ----------
    images
        Decoded images (:func:`lrpseg.core.images.read_image`).
    labels
        ``"damaged"``, ``"undamaged"`` or None (unlabelled: used only with ``config.predicted_confidence``).
    model
        The classifier (teacher); it stays on its device.
    config
        The run's settings.
    names
        Image names for the summary (default: indices).
    exact
        ``{index: (bool mask (H, W), weight)}``: exact target masks (e.g. corrected by the user) that replace
        that image's explanation or background target, every pixel counting with ``weight``.
    classifier_sha256
        The classifier file's hash, recorded so the student is refused with any other classifier.
    progress, cancel
        Progress callback and cancel token (checked between steps; :class:`~lrpseg.core.cancel.Cancelled`
        propagates).
    on_round
        Called with (round, student) after the first training (round 0) and after each self-training round,
        before the next one changes the weights: to measure whether self-training helps.

    Returns
    -------
    Student
        In eval mode on the classifier's device, with its measured threshold and training summary.
    """
    started = time.perf_counter()
    names = list(names) if names is not None else [str(i) for i in range(len(images))]
    exact = dict(exact or {})
    if len(labels) != len(images) or len(names) != len(images):
        raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(names)} names")
    device = resolve_device(config.device)
    model.eval().to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    roles, n_predicted = _roles(model, images, labels, config)
    for i in exact:  # an exact mask replaces the image's target, so its explanation is never computed
        roles[i] = "exact"
    keep = [i for i, role in enumerate(roles) if role is not None]
    if not any(roles[i] == DAMAGED for i in keep) and not exact:
        raise ValueError("distillation needs images labelled damaged (their explanations are the targets)")
    images, names, roles = [images[i] for i in keep], [names[i] for i in keep], [roles[i] for i in keep]
    exact = {keep.index(i): value for i, value in exact.items()}
    rounds = max(0, config.self_training_rounds)
    st_epochs = config.self_training_epochs or max(1, config.epochs // 2)
    n_damaged = sum(role == DAMAGED for role in roles)
    visits = len(images) + len(exact) * max(0, config.corrected_repeats - 1)
    units = EXPLAIN_COST * n_damaged + visits * (config.epochs + rounds * st_epochs) + rounds * n_damaged
    meter = _Meter(units, progress, cancel, model)

    t = time.perf_counter()
    examples, marked, counted = _teacher_examples(model, images, names, [r if r != "exact" else UNDAMAGED
                                                                          for r in roles], config, meter)  # fmt: skip
    for i, (mask, weight) in exact.items():
        target = np.asarray(mask, bool).astype(np.float32)
        examples[i] = make_example(images[i], target, np.full(target.shape, float(weight), np.float32),
                                   model.input_size, "exact", names[i])  # fmt: skip
    coverage = marked / counted if counted else float(np.mean([e.target.mean() for e in examples if e.kind == "exact"]))
    explain_seconds = time.perf_counter() - t

    t = time.perf_counter()
    net = UNet(base=config.base, depth=config.depth, stem_stride=config.stem_stride).to(device)
    if model.input_size % net.granularity:
        raise ValueError(f"the classifier's input size {model.input_size} is not a multiple of the student's "
                         f"granularity {net.granularity} (stem stride × 2^depth)")  # fmt: skip
    history: list[dict] = []
    _train(net, examples, config, config.epochs, device, rng, meter, "train", history)
    identity = classifier_identity(model, classifier_sha256)
    student = Student(net, model.input_size, model.mean, model.std, 0.5, identity)
    student.threshold = _measure_threshold(student, images, examples, coverage, config.mode)
    thresholds = [student.threshold]
    if on_round:
        on_round(0, student)
    for round_ in range(1, rounds + 1):
        examples = _self_examples(student, images, names, examples, config)
        meter.advance(n_damaged, "self-train", round_, rounds, message=f"self-training round {round_}")
        _train(net, examples, config, st_epochs, device, rng, meter, f"self-train {round_}", history)
        student.threshold = _measure_threshold(student, images, examples, coverage, config.mode)
        thresholds.append(student.threshold)
        if on_round:
            on_round(round_, student)
    counts = {kind: sum(e.kind == kind for e in examples) for kind in ("pseudo", "self", "background", "exact")}
    student.training = {
        "config": asdict(config),
        "images": len(images),
        "counts": counts,
        "predicted_used": n_predicted,
        "confident_pixel_fraction": round(float(np.mean([e.confident_fraction for e in examples])), 4),
        "teacher_coverage": round(float(coverage), 6),
        "threshold_method": "coverage matching: the student marks the teacher masks' share of pixels on the "
        "damaged training images",
        "thresholds_per_round": [round(v, 4) for v in thresholds],
        "history": history,
        "explain_seconds": round(explain_seconds, 2),
        "train_seconds": round(time.perf_counter() - t, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "device": describe_device(device),
        "lrpseg_version": __version__,
        "torch_version": torch.__version__,
    }
    return student


def distil_to_file(
    paths: Sequence[Path],
    labels: Sequence[str | None],
    model: VGGA,
    model_path: Path | None,
    config: DistilConfig,
    out_path: Path,
    *,
    exact: Mapping[Path, tuple[np.ndarray, float]] | None = None,
    summary: Mapping[str, object] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Student:
    """Read the images, :func:`distil`, and write the student to ``out_path`` only when that succeeds.

    ``exact`` maps image paths to (mask, weight) (see :func:`distil`); ``summary`` entries are added to the
    student's training summary before it is written (e.g. ``corrected_masks``). Unreadable images raise
    :class:`lrpseg.core.images.ImageReadError` (callers filter with :func:`lrpseg.core.images.scan_folder`).
    """
    paths = [Path(p) for p in paths]
    images = []
    for path in paths:
        check(cancel)
        images.append(read_image(path))
    by_path = {Path(p): value for p, value in (exact or {}).items()}
    exact_idx = {i: by_path[p] for i, p in enumerate(paths) if p in by_path}
    sha = file_sha256(model_path) if model_path is not None and Path(model_path).exists() else None
    student = distil(images, labels, model, config, names=[p.name for p in paths], exact=exact_idx,
                     classifier_sha256=sha, progress=progress, cancel=cancel)  # fmt: skip
    student.training["classifier_path"] = str(model_path) if model_path else None
    student.training.update(summary or {})
    save_student(Path(out_path), student)
    return student
