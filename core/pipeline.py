"""From a decoded image to a probability, a relevance map and a mask on the original pixel grid.

This is the one place where the classifier, LRP and a segmenter meet; the command line, the GUI and the
benchmarks all call it. Two ways to cover an image:

- ``"crop"``: the paper's evaluation protocol (§3.4): upscale images below the input size, take the centre
  crop, explain it; pixels outside the crop get relevance 0 and an empty mask (``Analysis.valid`` says which
  pixels were explained).
- ``"tile"``: overlapping input-size windows over the whole (upscaled) image, relevance stitched, so the mask
  covers every pixel. The image's probability is the largest window probability.

An image has one probability, by the rule of its mode: :func:`predict` (the list, its sort and filters) and
:func:`explain_image` (the mask's gate) give the same decision.

Maps go back to the image's own grid with area averaging (``cv2.INTER_AREA``): the model's grid is never coarser
than the image's, and bilinear sampling would skip pixels at shrink factors above 2 and lose thin cracks.
No mask pixel lies outside the explained region (``Analysis.valid``), whatever the threshold: scores are 0 there,
and a mask pixel needs a positive score (:func:`mask_from_score`), so re-thresholding an exported score map
reproduces the exported mask exactly.

``"auto"`` tiles when the image is more than :data:`TILE_FACTOR` times the input size on a side, else crops.
Following the paper, only images the classifier calls damaged get a mask, unless the user's label says otherwise
(:func:`lrpseg.core.labels.gets_mask`); the relevance is computed either way when asked for, so a viewer can
still show it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lrpseg.core.device import resolve_device
from lrpseg.core.images import MAX_PIXELS
from lrpseg.core.labels import gets_mask, is_damaged
from lrpseg.core.lrp import DEFAULT_RULE_SET, DEFAULT_VIEWS, explain
from lrpseg.core.models import VGGA
from lrpseg.core.preprocess import prepare_eval, stitch, tile_grid, tiles
from lrpseg.core.segment import DEFAULT_SEGMENTER, SegmentationResult, segment
from lrpseg.core.train import predict_probabilities

MODES = ("auto", "crop", "tile")
TILE_FACTOR = 1.5
MAX_TILES = 1024

__all__ = [
    "MODES",
    "Analysis",
    "ExplainedImage",
    "Outcome",
    "analyse",
    "explain_image",
    "explain_windows",
    "prepare_image",
    "PreparedImage",
    "mask_from_score",
    "predict",
    "resegment",
    "resolve_device",
    "segment_explained",
    "upscaled_for_tiles",
]


@dataclass
class Analysis:
    """Everything lrpseg knows about one image, on the image's own pixel grid."""

    probability: float
    relevance: np.ndarray
    segmentation: SegmentationResult
    valid: np.ndarray
    rule_set: str
    segmenter: str
    maxpool: str
    mode: str
    explained: ExplainedImage | None = field(default=None, repr=False)

    @property
    def damaged(self) -> bool:
        """The classifier's decision (:func:`is_damaged`)."""
        return is_damaged(self.probability)

    @property
    def threshold(self) -> float:
        """The segmenter's default threshold on the score map."""
        return float(self.segmentation.threshold)

    def mask_at(self, threshold: float | None = None, label: str | None = None) -> np.ndarray:
        """The mask at ``threshold`` (default: the segmenter's); empty for an image labelled undamaged or, without
        a ``label``, classified undamaged (:func:`gets_mask`)."""
        if not gets_mask(self.probability, label):
            return np.zeros(self.relevance.shape, dtype=bool)
        return mask_from_score(self.segmentation.score, self.threshold if threshold is None else threshold)


def mask_from_score(score: np.ndarray, threshold: float) -> np.ndarray:
    """The mask of a score map at ``threshold``: score ≥ threshold and above 0.

    A score of 0 means no evidence at all (outside the explained region, the half of the map BMM drops), so even
    threshold 0 never marks such pixels.
    """
    return (score >= threshold) & (score > 0)


@dataclass
class Outcome:
    """The result of one file in a batch: an analysis, or the reason it could not be made."""

    path: Path
    analysis: Analysis | None = None
    error: str | None = None


def choose_mode(shape: tuple[int, ...], input_size: int, mode: str = "auto") -> str:
    """Resolve ``"auto"`` to ``"crop"`` or ``"tile"`` for an image of ``shape``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    height, width = shape[:2]
    scale = max(1.0, input_size / min(height, width))
    return "tile" if max(height, width) * scale > TILE_FACTOR * input_size else "crop"


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict(
    model: VGGA,
    images: Sequence[np.ndarray],
    device: torch.device | None = None,
    batch_size: int = 16,
    mode: str = "auto",
) -> np.ndarray:
    """P(damaged) per image by the rule of its mode, as :func:`explain_image` computes it: the centre crop's
    (the paper's evaluation protocol), or in tile mode the largest window probability."""
    device = device or _model_device(model)
    probabilities = np.zeros(len(images), dtype=np.float32)
    cropped = [i for i, img in enumerate(images) if choose_mode(img.shape, model.input_size, mode) == "crop"]
    for start in range(0, len(cropped), batch_size):
        chunk = cropped[start : start + batch_size]
        batch = torch.stack([prepare_eval(images[i], model.input_size, model.mean, model.std)[0] for i in chunk])
        probabilities[chunk] = predict_probabilities(model, batch, device, batch_size)
    for i in sorted(set(range(len(images))) - set(cropped)):
        windows, _ = tiles(upscaled_for_tiles(images[i], model.input_size), model.input_size, model.mean, model.std)
        probabilities[i] = predict_probabilities(model, windows, device, batch_size).max()
    return probabilities


def upscaled_for_tiles(image: np.ndarray, input_size: int) -> np.ndarray:
    """The image tile mode covers: upscaled so its short side is at least the input size (refused when the
    tiling would be unbounded work)."""
    height, width = image.shape[:2]
    scale = max(1.0, input_size / min(height, width))
    _check_tiling_work(height, width, scale, input_size)
    if scale == 1.0:
        return image
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)


def _check_tiling_work(height: int, width: int, scale: float, input_size: int) -> None:
    """Refuse images whose tiling would take unbounded time or memory (e.g. a 1×100,000 strip)."""
    pixels = height * width * scale * scale
    windows = len(tile_grid(round(height * scale), round(width * scale), input_size))
    if pixels > MAX_PIXELS or windows > MAX_TILES:
        raise ValueError(
            f"a {width}×{height} image needs {windows} windows of {input_size}² after upscaling "
            f"(limit {MAX_TILES} windows, {MAX_PIXELS:,} pixels); crop it or use --mode crop"
        )


def _to_grid(array: np.ndarray, height: int, width: int) -> np.ndarray:
    if array.shape == (height, width):
        return array.astype(np.float32)
    return cv2.resize(array.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)


LRP_BATCH = 8


def explain_windows(
    model: VGGA,
    windows: torch.Tensor,
    rule_set: str,
    maxpool: str,
    start: str = "logodds",
    batch_size: int = LRP_BATCH,
    pad: bool = False,
    views: int = DEFAULT_VIEWS,
) -> tuple[np.ndarray, np.ndarray]:
    """LRP relevance ``(K, S, S)`` and P(damaged) ``(K,)`` of ``K`` network inputs, ``batch_size`` at a time.

    With ``pad`` a last, partial batch is filled up with zeros: the kernels PyTorch picks depend on the batch
    size and differ in the last bits, so engines that always explain full batches give the same maps whatever
    images share a batch.
    """
    relevance, probability = [], []
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        count = len(chunk)
        if pad and count < batch_size:
            chunk = torch.cat([chunk, chunk.new_zeros((batch_size - count, *chunk.shape[1:]))])
        explanation = explain(model, chunk, target=1, rule_set=rule_set, maxpool=maxpool, start=start, views=views)
        relevance.append(explanation.relevance[:count].astype(np.float32))
        logits = torch.as_tensor(explanation.logits, dtype=torch.float64)
        probability.append(torch.softmax(logits[:count], dim=1)[:, 1].numpy())
    return np.concatenate(relevance), np.concatenate(probability)


@dataclass
class ExplainedImage:
    """One image classified and explained, before segmentation.

    ``relevance`` is the map the segmenter sees (the S×S crop, or the stitched map of the upscaled image);
    ``to_original`` puts any map of that shape back onto the image's own grid. Keep it to try other
    segmenters without running LRP again (:func:`segment_explained`), or cache ``relevance`` and
    ``probability`` and pass them back to :func:`explain_image`.
    """

    probability: float
    relevance: np.ndarray
    to_original: Callable[[np.ndarray], np.ndarray]
    valid: np.ndarray
    rule_set: str
    maxpool: str
    mode: str
    start: str = "logodds"
    views: int = DEFAULT_VIEWS


@dataclass
class PreparedImage:
    """One decoded image turned into network inputs, waiting for LRP (:func:`prepare_image`).

    ``windows`` is the ``(K, 3, S, S)`` batch to explain: one centre crop, or the K tiles of the upscaled
    image. :meth:`finish` turns the K windows' relevance maps and probabilities into an
    :class:`ExplainedImage`. Batched engines gather the windows of many images into one LRP batch.
    """

    windows: torch.Tensor | None
    mode: str
    to_original: Callable[[np.ndarray], np.ndarray]
    valid: np.ndarray
    combine: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, float]]

    def finish(
        self,
        relevance: np.ndarray,
        probability: np.ndarray,
        rule_set: str,
        maxpool: str,
        start: str = "logodds",
        views: int = DEFAULT_VIEWS,
    ) -> ExplainedImage:
        """The explained image from the windows' ``(K, S, S)`` relevance and ``(K,)`` probabilities."""
        stitched, image_probability = self.combine(relevance, probability)
        return ExplainedImage(
            float(image_probability), stitched, self.to_original, self.valid, rule_set, maxpool, self.mode, start,
            views,
        )


def prepare_image(model: VGGA, image: np.ndarray, mode: str = "auto", windows: bool = True) -> PreparedImage:
    """Resolve the mode of a decoded image and cut it into the network inputs LRP needs.

    With ``windows=False`` only the mapping back to the image grid is built (for maps already cached).
    Raises ``ValueError`` for images whose tiling would be unbounded work.
    """
    height, width = image.shape[:2]
    mode = choose_mode(image.shape, model.input_size, mode)
    if mode == "crop":
        tensor, placement = prepare_eval(image, model.input_size, model.mean, model.std)
        side = model.input_size
        valid = placement.to_original(np.ones((side, side), np.float32)) > 0.5
        return PreparedImage(
            tensor[None] if windows else None,
            mode,
            placement.to_original,
            valid,
            lambda relevance, probability: (relevance[0], float(probability[0])),
        )
    batch, origins, upscaled_shape = None, [], None
    if windows:
        upscaled = upscaled_for_tiles(image, model.input_size)
        batch, origins = tiles(upscaled, model.input_size, model.mean, model.std)
        upscaled_shape = upscaled.shape[:2]

    def to_original(array: np.ndarray) -> np.ndarray:
        return _to_grid(array, height, width)

    def combine(relevance: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, float]:
        called_damaged = is_damaged(probability)
        if called_damaged.any():  # the map explains the damaged decision: other windows add nothing
            relevance = np.where(called_damaged[:, None, None], relevance, np.float32(0.0))
        return stitch(relevance, origins, upscaled_shape, model.input_size), float(probability.max())

    return PreparedImage(batch, mode, to_original, np.ones((height, width), dtype=bool), combine)


def explain_image(
    model: VGGA,
    image: np.ndarray,
    rule_set: str = DEFAULT_RULE_SET,
    maxpool: str = "wta",
    mode: str = "auto",
    device: torch.device | None = None,
    cached: tuple[np.ndarray, float] | None = None,
    start: str = "logodds",
    views: int = DEFAULT_VIEWS,
) -> ExplainedImage:
    """Classify and explain one decoded image.

    Parameters
    ----------
    model
        A VGG-A classifier (class 1 = damaged); it stays on its device unless ``device`` moves it.
    image
        As :func:`core.images.read_image` returns it.
    rule_set, maxpool
        LRP choices (:data:`core.lrp.RULE_SETS`).
    mode
        ``"auto"``, ``"crop"`` or ``"tile"`` (see the module docstring).
    cached
        ``(relevance, probability)`` of an earlier call for the same image, model, rule set and mode: LRP is
        skipped and only the mapping back to the image grid is rebuilt.
    start
        Where relevance starts (:data:`core.lrp.STARTS`): the decision's log-odds (default) or the raw logit.
    views
        Views of each window explained and averaged (:data:`core.lrp.VIEWS`): 2 (default) adds the window
        turned by 180°, 1 is the paper's single pass.
    """
    if device is not None:
        model.to(device)
    device = _model_device(model)
    model.eval()
    prepared = prepare_image(model, image, mode, windows=cached is None)
    if cached is not None:
        relevance, probability = cached
        return ExplainedImage(
            float(probability), relevance, prepared.to_original, prepared.valid, rule_set, maxpool, prepared.mode,
            start, views,
        )
    relevance, probability = explain_windows(model, prepared.windows.to(device), rule_set, maxpool, start, views=views)
    return prepared.finish(relevance, probability, rule_set, maxpool, start, views)


def segment_explained(
    explained: ExplainedImage, segmenter: str = DEFAULT_SEGMENTER, seed: int = 0, **options: Any
) -> Analysis:
    """Segment an explained image and put relevance, score and mask on the image's own grid (``options``: the
    segmenter's keywords, see :func:`core.segment.segment`)."""
    result = segment(explained.relevance, method=segmenter, seed=seed, **options)
    score = explained.to_original(result.score).astype(np.float32)
    score[~explained.valid] = 0.0
    full = SegmentationResult(
        score=score,
        threshold=result.threshold,
        mask=mask_from_score(score, result.threshold),
        params=result.params,
        method=result.method,
    )
    return Analysis(
        probability=explained.probability,
        relevance=explained.to_original(explained.relevance).astype(np.float32),
        segmentation=full,
        valid=explained.valid,
        rule_set=explained.rule_set,
        segmenter=segmenter,
        maxpool=explained.maxpool,
        mode=explained.mode,
        explained=explained,
    )


def analyse(
    model: VGGA,
    image: np.ndarray,
    rule_set: str = DEFAULT_RULE_SET,
    segmenter: str = DEFAULT_SEGMENTER,
    maxpool: str = "wta",
    mode: str = "auto",
    device: torch.device | None = None,
    seed: int = 0,
    start: str = "logodds",
    views: int = DEFAULT_VIEWS,
) -> Analysis:
    """Classify, explain and segment one decoded image (:func:`explain_image` + :func:`segment_explained`).

    Returns
    -------
    Analysis
        Relevance, score, mask and ``valid`` on the original image grid.
    """
    explained = explain_image(model, image, rule_set, maxpool, mode, device, start=start, views=views)
    return segment_explained(explained, segmenter, seed)


def resegment(analysis: Analysis, segmenter: str, seed: int = 0) -> Analysis:
    """The same explanation segmented with another segmenter, without running LRP again."""
    return segment_explained(analysis.explained, segmenter, seed)
