"""What every segmenter shares: the result type, input checks, the 5x5 mean filter and fit subsampling.

A segmenter turns a signed relevance map (H, W) into a score map in [0, 1] (how likely each pixel shows
damage), a default threshold on that score and the mask ``score >= threshold``. Degenerate maps (constant,
no positive relevance, too few distinct values) give an empty mask and say why in ``params["degenerate"]``;
maps that are not a finite 2-D real array raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

FILTER_SIZE = 5
"""Side of the square mean filter that GMM and BMM apply first (paper §3.3.2)."""

FILTER_BORDER = "reflect"
"""Border handling of the mean filter: mirror with the edge pixel repeated (``dcba|abcd|dcba``), the same as
``scipy.ndimage.uniform_filter(mode="reflect")`` and OpenCV's ``BORDER_REFLECT``."""

FIT_MAX_SAMPLES = 1 << 20
"""Maps with more values than this (1024 x 1024 still fits whole) fit their mixture on a seeded random
subsample of this size; the score is still computed for every pixel."""


@dataclass
class SegmentationResult:
    """The outcome of one segmenter on one relevance map.

    Attributes
    ----------
    score : np.ndarray
        float32 (H, W) in [0, 1]; larger means more likely damage.
    threshold : float
        The method's default threshold on ``score``.
    mask : np.ndarray
        bool (H, W), ``score >= threshold``.
    params : dict
        JSON-serialisable description of the fit (components, iterations, the domain they live in).
    method : str
        Name of the segmenter in ``core.segment.SEGMENTERS``.
    """

    score: np.ndarray
    threshold: float
    mask: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    method: str = ""

    def mask_at(self, threshold: float) -> np.ndarray:
        """Return the mask ``score >= threshold`` for another threshold.

        Parameters
        ----------
        threshold : float
            Threshold on the score, usually in [0, 1].

        Returns
        -------
        np.ndarray
            bool (H, W).
        """
        return self.score >= np.float32(threshold)


def as_relevance(relevance: np.ndarray) -> np.ndarray:
    """Check a relevance map and return it as a C-contiguous float64 (H, W) array.

    Parameters
    ----------
    relevance : array_like
        Real 2-D map, at least one pixel, every value finite.

    Returns
    -------
    np.ndarray
        float64 (H, W) (a copy only where the dtype or layout demands one).

    Raises
    ------
    ValueError
        If the map is not 2-D, is empty, is complex, or holds NaN or infinite values.
    """
    arr = np.asarray(relevance)
    if arr.ndim != 2:
        raise ValueError(f"relevance map must be 2-D (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"relevance map is empty, shape {arr.shape}")
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"relevance map must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = arr.size - int(np.count_nonzero(finite))
        raise ValueError(f"relevance map holds {bad} NaN or infinite value(s) out of {arr.size} pixels")
    return arr


def mean_filter(values: np.ndarray, size: int = FILTER_SIZE) -> np.ndarray:
    """Apply a ``size`` x ``size`` mean filter with mirrored borders (see ``FILTER_BORDER``).

    Parameters
    ----------
    values : np.ndarray
        float64 (H, W).
    size : int
        Side of the square window.

    Returns
    -------
    np.ndarray
        float64 (H, W).
    """
    return cv2.blur(values, (size, size), borderType=cv2.BORDER_REFLECT)


def fit_sample(values: np.ndarray, seed: int, max_samples: int = FIT_MAX_SAMPLES) -> np.ndarray:
    """Return ``values`` whole, or a seeded random subsample without replacement when it is larger.

    Parameters
    ----------
    values : np.ndarray
        1-D values a mixture is fitted to.
    seed : int
        Seed of ``numpy.random.default_rng``.
    max_samples : int
        Largest sample returned.

    Returns
    -------
    np.ndarray
        1-D, ``min(len(values), max_samples)`` values.
    """
    if values.size <= max_samples:
        return values
    rng = np.random.default_rng(seed)
    return values[np.sort(rng.choice(values.size, max_samples, replace=False, shuffle=False))]


def degenerate_result(shape: tuple[int, ...], method: str, reason: str, threshold: float = 0.5,
                      **params: Any) -> SegmentationResult:
    """Build the empty-mask result of a map the method cannot fit.

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the relevance map.
    method : str
        Segmenter name.
    reason : str
        Why nothing was fitted; stored as ``params["degenerate"]``.
    threshold : float
        Default threshold reported (the score is 0 everywhere, so the mask is empty for any threshold > 0).
    **params
        Further JSON-serialisable entries for ``params``.

    Returns
    -------
    SegmentationResult
    """
    score = np.zeros(shape, dtype=np.float32)
    info: dict[str, Any] = {"degenerate": reason, "iterations": 0, "converged": False}
    info.update(params)
    return SegmentationResult(score, float(threshold), score >= np.float32(threshold), info, method)


def finish(score: np.ndarray, threshold: float, params: dict[str, Any], method: str) -> SegmentationResult:
    """Cast the score to float32 in [0, 1] and build the result with its default mask.

    Parameters
    ----------
    score : np.ndarray
        (H, W) score, float64 or float32, already in [0, 1] up to rounding.
    threshold : float
        Default threshold.
    params : dict
        JSON-serialisable fit description; ``degenerate`` is set to None when absent.
    method : str
        Segmenter name.

    Returns
    -------
    SegmentationResult
    """
    score32 = np.clip(score, 0.0, 1.0).astype(np.float32, copy=False)
    params.setdefault("degenerate", None)
    return SegmentationResult(score32, float(threshold), score32 >= np.float32(threshold), params, method)


def score_to_uint8(score: np.ndarray) -> np.ndarray:
    """A score map in [0, 1] as uint8 0..255 (rounded; NaN counts as 0): index i stands for score i/255.

    The viewer draws these indices through a lookup table and exports store them as a quick-look PNG.
    """
    return np.rint(np.clip(np.nan_to_num(score), 0.0, 1.0) * 255.0).astype(np.uint8)
