"""The student at work: a damage-probability map for any image, and the refined :class:`Analysis` built on it.

The image is covered the way the classifier covers it (:func:`lrpseg.core.pipeline.choose_mode`): the centre
crop of images near the input size, overlapping input-size windows stitched for larger ones, so the map is
always delivered on the image's own pixel grid. The refined analysis keeps the classifier's decision (an image
classified undamaged gets no mask unless labelled damaged, as with the explanation) and, when given, the
explanation's relevance for display; its ``segmentation`` is the student's map with the student's measured
default threshold, so a threshold slider, a histogram and an export work on it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from lrpseg.core.cancel import CancelToken, check
from lrpseg.core.images import ImageReadError, read_image
from lrpseg.core.models import VGGA
from lrpseg.core.pipeline import Analysis, Outcome, _to_grid, choose_mode, upscaled_for_tiles
from lrpseg.core.preprocess import prepare_eval, stitch, tiles
from lrpseg.core.segment import SegmentationResult
from lrpseg.core.student.store import Student
from lrpseg.core.train import predict_probabilities

__all__ = [
    "classifier_probability", "predict_batch", "probability_map", "refine", "segment_folder_student",
    "student_analysis",
]

SOURCE = "student"


@torch.no_grad()
def predict_batch(student: Student, batch: torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """P(damage) maps (N, S, S) float32 for normalised inputs (N, 3, S, S), on the student's device."""
    net = student.net
    net.eval()
    device = next(net.parameters()).device
    out = [torch.sigmoid(net(batch[i : i + batch_size].to(device)).float())[:, 0].cpu().numpy()
           for i in range(0, len(batch), batch_size)]  # fmt: skip
    return np.concatenate(out).astype(np.float32)


def probability_map(student: Student, image: np.ndarray, mode: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """P(damage) per pixel of a decoded image.

    Parameters
    ----------
    student
        The student (on any device).
    image
        As :func:`lrpseg.core.images.read_image` returns it.
    mode
        ``"auto"``, ``"crop"`` or ``"tile"``, as for the classifier.

    Returns
    -------
    probability : numpy.ndarray
        float32 (H, W) on the image's grid (0 outside the crop in crop mode).
    valid : numpy.ndarray
        bool (H, W): the pixels the student saw.
    mode : str
        The mode used (``"auto"`` resolved).
    """
    size = student.input_size
    mode = choose_mode(image.shape, size, mode)
    height, width = image.shape[:2]
    if mode == "crop":
        tensor, placement = prepare_eval(image, size, student.mean, student.std)
        prob = placement.to_original(predict_batch(student, tensor[None])[0])
        valid = placement.to_original(np.ones((size, size), np.float32)) > 0.5
        return prob.astype(np.float32), valid, mode
    upscaled = upscaled_for_tiles(image, size)
    batch, origins = tiles(upscaled, size, student.mean, student.std)
    prob = stitch(predict_batch(student, batch), origins, upscaled.shape[:2], size)
    return _to_grid(prob, height, width), np.ones((height, width), bool), mode


def classifier_probability(model: VGGA, image: np.ndarray, mode: str = "auto") -> float:
    """P(damaged) by plain forward passes (no LRP): the centre crop, or the largest window probability when
    tiling, as :func:`lrpseg.core.pipeline.explain_image` decides it."""
    device = next(model.parameters()).device
    mode = choose_mode(image.shape, model.input_size, mode)
    if mode == "crop":
        batch = prepare_eval(image, model.input_size, model.mean, model.std)[0][None]
    else:
        batch = tiles(upscaled_for_tiles(image, model.input_size), model.input_size, model.mean, model.std)[0]
    return float(predict_probabilities(model, batch, device, batch_size=16).max())


def _segmentation(student: Student, prob: np.ndarray) -> SegmentationResult:
    params = {"source": SOURCE, "student": student.describe(), "degenerate": None}
    return SegmentationResult(prob, float(student.threshold), prob >= np.float32(student.threshold), params, SOURCE)


def refine(analysis: Analysis, student: Student, image: np.ndarray) -> Analysis:
    """``analysis`` (an explanation) with its segmentation replaced by the student's map on the same image.

    The probability, relevance and explanation stay; ``segmenter`` becomes ``"student"``.
    """
    prob, valid, _ = probability_map(student, image, analysis.mode)
    return Analysis(
        probability=analysis.probability, relevance=analysis.relevance, segmentation=_segmentation(student, prob),
        valid=valid, rule_set=analysis.rule_set, segmenter=SOURCE, maxpool=analysis.maxpool, mode=analysis.mode,
        explained=analysis.explained,
    )  # fmt: skip


def student_analysis(model: VGGA, student: Student, image: np.ndarray, mode: str = "auto") -> Analysis:
    """Classify (forward only) and segment with the student; no LRP runs, ``relevance`` is all zero."""
    prob, valid, mode = probability_map(student, image, mode)
    return Analysis(
        probability=classifier_probability(model, image, mode), relevance=np.zeros(prob.shape, np.float32),
        segmentation=_segmentation(student, prob), valid=valid, rule_set="", segmenter=SOURCE, maxpool="",
        mode=mode,
    )  # fmt: skip


def segment_folder_student(
    paths: Sequence[Path],
    model: VGGA,
    student: Student,
    *,
    mode: str = "auto",
    progress: Callable[[int, int, Path], None] | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[Outcome]:
    """:func:`lrpseg.core.pipeline.segment_folder` with the student's masks: one :class:`Outcome` per file,
    a file that cannot be read or processed yields its error and the batch goes on."""
    total = len(paths)
    for done, path in enumerate(paths, start=1):
        check(cancel)
        path = Path(path)
        try:
            outcome = Outcome(path, analysis=student_analysis(model, student, read_image(path), mode))
        except ImageReadError as error:
            outcome = Outcome(path, error=str(error))
        except (ValueError, RuntimeError, MemoryError) as error:
            outcome = Outcome(path, error=f"{path}: {type(error).__name__}: {error}")
        if progress:
            progress(done, total, path)
        yield outcome
