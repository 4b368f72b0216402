"""What the student learns from: per-pixel targets and weights on each training image's own grid.

- Damaged images: the classifier's explanation segmented (:func:`lrpseg.core.pipeline.explain_image` +
  :func:`~lrpseg.core.pipeline.segment_explained`) is the pseudo-mask. Pixels whose score lies in the ignore
  band around the segmenter's threshold, ``[t - band_low, t + band_high)``, get weight 0, as do pixels the
  explanation did not cover (outside the centre crop); only confident foreground and background count.
- Undamaged images: every pixel is background (free pixel-level negatives from an image label).
- Exact masks (e.g. drawn or corrected by the user): the mask is the target everywhere, with its own weight.

Ground-truth mask files are never read here: targets come from labels, the classifier and masks the caller
passes explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from lrpseg.core.preprocess import to_float_rgb, upscaled_shape

__all__ = ["Example", "band_target", "background_target", "crop_batch", "make_example"]

KINDS = ("pseudo", "background", "exact", "self")


@dataclass
class Example:
    """One training image, upscaled so its short side is at least the input size, with target and weight.

    Attributes
    ----------
    image : numpy.ndarray
        float32 RGB (H', W', 3) in [0, 1].
    target : numpy.ndarray
        float32 (H', W'), 1 = damage.
    weight : numpy.ndarray
        float32 (H', W'), 0 = ignored.
    kind : str
        ``"pseudo"`` (explanation), ``"background"`` (undamaged label), ``"exact"`` or ``"self"`` (the
        student's own confident mask, self-training).
    name : str
        The image's name, for summaries.
    """

    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    kind: str
    name: str = ""

    @property
    def confident_fraction(self) -> float:
        """Share of the pixels that count (weight > 0)."""
        return float(np.count_nonzero(self.weight > 0) / self.weight.size)


def band_target(
    score: np.ndarray, threshold: float, band_low: float, band_high: float, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Target (score ≥ threshold) and weight (1 outside the ignore band ``[t - band_low, t + band_high)`` and
    inside ``valid``, else 0) of a score map.

    Returns
    -------
    target, weight : numpy.ndarray
        float32 (H, W) each.
    """
    if band_low < 0 or band_high < 0:
        raise ValueError(f"ignore band edges must be >= 0, got {band_low} and {band_high}")
    score = np.asarray(score, np.float32)
    target = score >= threshold
    confident = (score >= threshold + band_high) | (score < threshold - band_low)
    if valid is not None:
        confident &= valid
    return target.astype(np.float32), confident.astype(np.float32)


def background_target(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All background, every pixel counts (an image labelled undamaged)."""
    return np.zeros(shape, np.float32), np.ones(shape, np.float32)


def make_example(
    image: np.ndarray, target: np.ndarray, weight: np.ndarray, input_size: int, kind: str, name: str = ""
) -> Example:
    """Bring an image (as :func:`lrpseg.core.images.read_image` returns it) and its maps (same H×W) to the
    training grid: upscaled like :func:`lrpseg.core.preprocess.prepare_eval` does when a side is below the
    input size (bilinear for the image, nearest for target and weight)."""
    if kind not in KINDS:
        raise ValueError(f"unknown example kind {kind!r}; choose one of {KINDS}")
    height, width = image.shape[:2]
    if target.shape != (height, width) or weight.shape != (height, width):
        raise ValueError(
            f"{name}: target {target.shape} / weight {weight.shape} differ from the image's {(height, width)}"
        )
    rgb = to_float_rgb(image)
    new_h, new_w = upscaled_shape(height, width, input_size)
    if (new_h, new_w) != (height, width):
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        target = cv2.resize(target, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        weight = cv2.resize(weight, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    return Example(rgb, target.astype(np.float32), weight.astype(np.float32), kind, name)


def crop_batch(
    examples: list[Example],
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random S×S crops with random horizontal and vertical flips (the classifier's augmentation,
    :func:`lrpseg.core.preprocess.prepare_train`), normalised like the classifier's inputs.

    Returns
    -------
    x, target, weight : torch.Tensor
        (N, 3, S, S) normalised, (N, 1, S, S), (N, 1, S, S).
    """
    xs, ts, ws = [], [], []
    for ex in examples:
        height, width = ex.target.shape
        y0, x0 = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        img = ex.image[y0 : y0 + size, x0 : x0 + size]
        tgt = ex.target[y0 : y0 + size, x0 : x0 + size]
        wgt = ex.weight[y0 : y0 + size, x0 : x0 + size]
        if rng.random() < 0.5:
            img, tgt, wgt = img[:, ::-1], tgt[:, ::-1], wgt[:, ::-1]
        if rng.random() < 0.5:
            img, tgt, wgt = img[::-1], tgt[::-1], wgt[::-1]
        xs.append(img.transpose(2, 0, 1))
        ts.append(tgt[None])
        ws.append(wgt[None])
    mean_arr = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std_arr = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    x = (np.stack(xs) - mean_arr) / std_arr
    return (
        torch.from_numpy(np.ascontiguousarray(x, np.float32)),
        torch.from_numpy(np.ascontiguousarray(np.stack(ts))),
        torch.from_numpy(np.ascontiguousarray(np.stack(ws))),
    )
